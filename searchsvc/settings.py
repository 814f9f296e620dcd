"""The one service configuration: environment variables prefixed ``BITBUDGET_`` (or a .env file)."""

from __future__ import annotations

import ipaddress
import os
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

__all__ = ["Settings", "get_settings", "DEFAULT_CANDIDATES", "is_loopback", "QUEUES"]

# the Celery queues: jobs, the units of profiles fanned out over workers, and latency
# measurements (a worker on the target machine consumes only ``latency``: docs/latency.md)
QUEUES = ("bitbudget", "profile-units", "latency")

DEFAULT_CANDIDATES = ("w8a8", "w6a8", "w4a8", "w8a16", "w4a16", "w2a16")
_WEAK_TOKENS = {"changeme", "change-me", "secret", "token", "password", "admin", "test"}
_MIN_TOKEN_CHARS = 16


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _split_list(value: Any) -> Any:
    """Comma-separated environment strings become lists; lists pass through."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Everything the API, the worker and the CLI read from the environment."""

    model_config = SettingsConfigDict(
        env_prefix="BITBUDGET_", env_file=".env", extra="ignore", validate_default=True
    )

    data_dir: Path = Field(
        default=Path("data"), description="profiles, artifacts and the SQLite file"
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default sqlite in data_dir"
    )
    broker_url: str | None = Field(
        default=None, description="redis://… ; unset = in-process job runner"
    )
    artifact_dir: Path | None = Field(
        default=None, description="packed artifacts; default data_dir/artifacts"
    )
    api_tokens: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="extra accepted bearer tokens (comma-separated)"
    )
    checkpoint_dirs: Annotated[list[Path], NoDecode] = Field(
        default_factory=list, description="directories a checkpoint path may come from"
    )
    dev: bool = Field(default=False, description="development mode (open writes on loopback)")
    host: str = Field(default="127.0.0.1", description="address the API binds to")
    port: int = Field(default=8000, ge=1, le=65535)
    embedded_workers: int = Field(
        default=1, ge=1, le=64, description="threads of the in-process runner"
    )
    heartbeat_timeout_s: float = Field(
        default=60.0, gt=0, description="a running job this silent is lost"
    )
    reconcile_interval_s: float = Field(
        default=30.0, gt=0, description="how often the worker reconciles"
    )
    solve_time_limit_s: float = Field(default=10.0, gt=0, le=3600)
    solve_processes: int | None = Field(
        default=None,
        ge=0,
        le=64,
        description="worker processes the API solves in (0: its own threads; default: cores - 1)",
    )
    max_body_bytes: int = Field(
        default=1_048_576,
        ge=1024,
        le=1 << 30,
        description="largest request body accepted (413 beyond, before reading it)",
    )
    profile_processes: int | None = Field(
        default=None, ge=1, le=256, description="local processes a profile's units run on"
    )
    profile_threads: int | None = Field(
        default=None, ge=1, le=256, description="torch threads per profiling process"
    )
    shared_store: str | None = Field(
        default=None, description="folder or s3://bucket/prefix; default data_dir/store"
    )
    worker_queues: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(QUEUES), description="queues a worker consumes"
    )
    default_metric: str = "fisher_kl"
    default_images: int = Field(default=8, ge=1, le=1024)
    default_candidates: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_CANDIDATES)
    )
    default_solver: str = "cpsat"
    calibration_source: str = "shipped"

    @field_validator(
        "api_tokens", "checkpoint_dirs", "default_candidates", "worker_queues", mode="before"
    )
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("api_tokens")
    @classmethod
    def _strong_tokens(cls, tokens: list[str]) -> list[str]:
        for token in tokens:
            if token.lower() in _WEAK_TOKENS or len(token) < _MIN_TOKEN_CHARS:
                raise ValueError(
                    f"BITBUDGET_API_TOKENS: refusing a weak token ({len(token)} chars); use "
                    f"at least {_MIN_TOKEN_CHARS} random characters, e.g. `bitbudget token create`"
                )
        return tokens

    @field_validator("database_url")
    @classmethod
    def _database(cls, url: str | None) -> str | None:
        if url is None or not url.strip():
            return None
        try:
            parsed = make_url(url.strip())
        except ArgumentError:
            raise ValueError(f"BITBUDGET_DATABASE_URL: {url!r} is not a database URL") from None
        if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        if parsed.drivername not in ("sqlite", "sqlite+pysqlite", "postgresql+psycopg"):
            raise ValueError(
                f"BITBUDGET_DATABASE_URL: unsupported driver {parsed.drivername!r}; "
                "use sqlite:///path.db or postgresql+psycopg://user@host/db"
            )
        return parsed.render_as_string(hide_password=False)

    @field_validator("broker_url")
    @classmethod
    def _broker(cls, url: str | None) -> str | None:
        if url is None or not url.strip():
            return None
        if not url.startswith(("redis://", "rediss://")):
            raise ValueError(
                f"BITBUDGET_BROKER_URL: {url!r} is not a Redis URL (redis://host:6379/0); "
                "leave it unset for the in-process runner"
            )
        return url.strip()

    @field_validator("worker_queues")
    @classmethod
    def _queues(cls, names: list[str]) -> list[str]:
        for name in names:
            if name not in QUEUES:
                raise ValueError(
                    f"BITBUDGET_WORKER_QUEUES: unknown queue {name!r}; known: {', '.join(QUEUES)}"
                )
        if not names:
            raise ValueError(f"BITBUDGET_WORKER_QUEUES: name at least one of {', '.join(QUEUES)}")
        return names

    @field_validator("shared_store")
    @classmethod
    def _store(cls, url: str | None) -> str | None:
        return url.strip() if url and url.strip() else None

    @field_validator("checkpoint_dirs")
    @classmethod
    def _absolute_dirs(cls, dirs: list[Path]) -> list[Path]:
        return [d.expanduser().resolve() for d in dirs]

    @field_validator("default_candidates")
    @classmethod
    def _candidates(cls, values: list[str]) -> list[str]:
        from solvers.costs import parse_candidate

        if not values:
            raise ValueError("BITBUDGET_DEFAULT_CANDIDATES: needs at least one candidate")
        for value in values:
            parse_candidate(value)
        return values

    @model_validator(mode="after")
    def _paths(self) -> Settings:
        if self.data_dir.exists() and not self.data_dir.is_dir():
            raise ValueError(f"BITBUDGET_DATA_DIR: {self.data_dir} exists and is not a directory")
        return self

    @cached_property
    def database(self) -> str:
        """The database URL, defaulting to ``data_dir/bitbudget.db`` (computed once: every
        request asks for it, and resolving the path costs a few system calls)."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'bitbudget.db').resolve()}"

    @property
    def artifacts(self) -> Path:
        """Where packed artifacts and pareto documents go."""
        return (self.artifact_dir or self.data_dir / "artifacts").resolve()

    @property
    def profile_dir(self) -> Path:
        """The profiler's work dir (per-layer checkpoints, shared by every worker)."""
        return (self.data_dir / "profiles").resolve()

    @property
    def store_url(self) -> str:
        """The shared store (checkpoints, calibration sets): a folder or an s3:// URL."""
        return self.shared_store or str((self.data_dir / "store").resolve())

    @property
    def profile_pool_processes(self) -> int:
        """Local processes a profile's units run on without a broker (default: the cores)."""
        return self.profile_processes or os.cpu_count() or 1

    @property
    def solver_processes(self) -> int:
        """Worker processes the API server solves plans in (0: threads of its own process).

        By default one less than the cores (at least one): a CPU-bound solve then never holds
        the server's GIL while it answers other requests."""
        if self.solve_processes is not None:
            return self.solve_processes
        return max(1, min(4, (os.cpu_count() or 1) - 1))

    @property
    def embedded(self) -> bool:
        """True when jobs run in-process (no broker configured)."""
        return self.broker_url is None

    @property
    def open_writes(self) -> bool:
        """Writes without a token are allowed only in dev mode on a loopback address."""
        return self.dev and is_loopback(self.host)


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (read once from the environment)."""
    return Settings()
