"""The shared store: files every worker can read by content hash (checkpoints by weights hash,
calibration sets by their key). A folder (local, NFS, a mounted volume) or an S3-compatible
bucket, from ``BITBUDGET_SHARED_STORE``; ``check`` at start-up turns a store that cannot be
reached into one clear line."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, urlparse

from profiling.errors import BitbudgetError

__all__ = ["SharedStore", "FolderStore", "S3Store", "StoreUnreachable", "open_store", "SCHEMES"]


class StoreUnreachable(BitbudgetError):
    """The shared store cannot be read or written."""

    http_status = 503


class SharedStore(Protocol):
    """Named files: ``has``, ``put`` (from a local file), ``fetch`` (to a local file)."""

    url: str

    def check(self) -> None: ...

    def has(self, name: str) -> bool: ...

    def put(self, name: str, source: Path) -> None: ...

    def fetch(self, name: str, target: Path) -> bool: ...


class FolderStore:
    """A folder; writes go through a temporary file and a rename."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.root = Path(url.removeprefix("file://")).expanduser().resolve()

    def check(self) -> None:
        """The folder exists (made when missing) and is writable."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".probe{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise StoreUnreachable(
                f"BITBUDGET_SHARED_STORE: cannot write to the folder {self.root}: {exc.strerror}"
            ) from None

    def has(self, name: str) -> bool:
        return (self.root / name).is_file()

    def put(self, name: str, source: Path) -> None:
        target = self.root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)

    def fetch(self, name: str, target: Path) -> bool:
        if not self.has(name):
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.root / name, target)
        return True


class S3Store:
    """An S3-compatible bucket through boto3: ``s3://bucket/prefix?endpoint=http://host:9000``
    (credentials from the usual AWS_* variables)."""

    def __init__(self, url: str) -> None:
        self.url = url
        parsed = urlparse(url)
        self.bucket, self.prefix = parsed.netloc, parsed.path.strip("/")
        self.endpoint = parse_qs(parsed.query).get("endpoint", [None])[0]
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise StoreUnreachable(
                "BITBUDGET_SHARED_STORE: an s3:// store needs boto3 (pip install boto3==1.44.5)"
            ) from None
        config = Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 2})
        self.client = boto3.client("s3", endpoint_url=self.endpoint, config=config)

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def check(self) -> None:
        """The bucket answers (``HeadBucket``)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            raise StoreUnreachable(
                f"BITBUDGET_SHARED_STORE: cannot reach bucket {self.bucket!r}"
                f"{' at ' + self.endpoint if self.endpoint else ''}: {exc}"
            ) from None

    def has(self, name: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(name))
        except ClientError:
            return False
        return True

    def put(self, name: str, source: Path) -> None:
        self.client.upload_file(str(source), self.bucket, self._key(name))

    def fetch(self, name: str, target: Path) -> bool:
        if not self.has(name):
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
        self.client.download_file(self.bucket, self._key(name), str(tmp))
        os.replace(tmp, target)
        return True


SCHEMES: dict[str, type[FolderStore] | type[S3Store]] = {
    "": FolderStore,
    "file": FolderStore,
    "s3": S3Store,
}


def open_store(url: str) -> SharedStore:
    """The store for ``url``: a folder path, ``file://…`` or ``s3://bucket/prefix``."""
    scheme = urlparse(url).scheme if "://" in url else ""
    if scheme not in SCHEMES:
        known = ", ".join(s + "://" for s in SCHEMES if s)
        raise StoreUnreachable(
            f"BITBUDGET_SHARED_STORE: unknown scheme {scheme!r} in {url!r}; use a folder or {known}"
        )
    return SCHEMES[scheme](url)
