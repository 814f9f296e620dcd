"""``python -m searchsvc.cli``."""

from searchsvc.cli import main

main()
