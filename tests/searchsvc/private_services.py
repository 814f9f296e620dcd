"""PostgreSQL and Redis instances of a test's own, on free ports in a temporary folder, for the
fault tests that stop and restart them (the shared servers are never touched)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from svc_helpers import free_port

__all__ = ["PrivatePostgres", "PrivateRedis", "pg_bin"]


def pg_bin() -> Path | None:
    """The folder of PostgreSQL's server programs (initdb, pg_ctl), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path else None


def _as_owner() -> list[str]:
    """PostgreSQL refuses to run as root: as root, run its programs as the ``postgres`` user."""
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", "postgres", "--"]


class PrivatePostgres:
    """``initdb`` + ``pg_ctl`` in a temporary folder of its own (readable by the ``postgres``
    user when the tests run as root): trust auth for ``postgres``, loopback only."""

    def __init__(self, binaries: Path) -> None:
        self.bin = binaries
        self.folder = Path(tempfile.mkdtemp(prefix="bitbudget-pg-"))
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
        self.port = free_port()
        self.data = self.folder / "pgdata"
        self.log = self.folder / "postgres.log"
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust")
        self.start()

    def _run(self, program: str, *args: str) -> None:
        command = [*_as_owner(), str(self.bin / program), *args]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of ``database`` on this instance."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _ctl(self, *args: str) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "60", *args)

    def start(self) -> None:
        """Start (and wait until it accepts connections)."""
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder}"
        self._ctl("-l", str(self.log), "-o", options, "start")

    def stop(self) -> None:
        """A fast shutdown: connections are cut, as when the server goes down."""
        self._ctl("-m", "fast", "stop")

    def create_database(self, name: str) -> str:
        """A new database; returns its URL."""
        import psycopg

        admin = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self) -> None:
        """Stop it if it runs (immediate mode) and remove its folder."""
        command = [*_as_owner(), str(self.bin / "pg_ctl"), "-D", str(self.data)]
        subprocess.run([*command, "-m", "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.folder, ignore_errors=True)


class PrivateRedis:
    """``redis-server`` without persistence on a free port."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        """Start (the same port every time) and wait until it answers."""
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--dir", str(self.folder)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not self._ping():
            if time.monotonic() > deadline:
                raise RuntimeError("private redis-server did not start")
            time.sleep(0.05)

    def _ping(self) -> bool:
        done = subprocess.run(
            ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True
        )
        return done.stdout.strip() == "PONG"

    def shutdown_nosave(self) -> None:
        """``redis-cli shutdown nosave``: every message it held is lost."""
        subprocess.run(["redis-cli", "-p", str(self.port), "shutdown", "nosave"], timeout=30)
        if self.proc is not None:
            self.proc.wait(timeout=30)

    def close(self) -> None:
        """Stop it if it runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
