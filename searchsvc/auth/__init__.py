"""Bearer tokens, stored as sha256 hashes; every write needs one once any exists."""
