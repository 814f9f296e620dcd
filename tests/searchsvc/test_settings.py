"""Settings: defaults, typed URLs, and validators that refuse nonsense with a clear message."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from searchsvc.settings import Settings, is_loopback


def _env(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for key, value in values.items():
        monkeypatch.setenv(f"BITBUDGET_{key.upper()}", value)


def test_defaults_are_the_embedded_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = Settings()
    assert s.embedded and s.broker_url is None
    assert s.database == f"sqlite:///{(tmp_path / 'data' / 'bitbudget.db').resolve()}"
    assert s.artifacts == (tmp_path / "data" / "artifacts").resolve()
    assert not s.open_writes


def test_environment_is_read_with_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _env(
        monkeypatch,
        database_url="postgresql://postgres@127.0.0.1/x",
        broker_url="redis://127.0.0.1:6379/3",
        api_tokens="a" * 20 + ",b" + "c" * 20,
        checkpoint_dirs=f"{tmp_path},{tmp_path}/sub",
        default_candidates="w8a8,w4a8",
    )
    s = Settings()
    assert s.database == "postgresql+psycopg://postgres@127.0.0.1/x"  # psycopg 3 driver
    assert not s.embedded
    assert s.api_tokens == ["a" * 20, "b" + "c" * 20]
    assert s.checkpoint_dirs == [tmp_path.resolve(), (tmp_path / "sub").resolve()]
    assert s.default_candidates == ["w8a8", "w4a8"]


@pytest.mark.parametrize(
    "key, value, needle",
    [
        ("database_url", "mysql://x@y/z", "unsupported driver"),
        ("database_url", "not a url", "not a database URL"),
        ("broker_url", "amqp://guest@localhost//", "not a Redis URL"),
        ("api_tokens", "changeme", "weak token"),
        ("api_tokens", "short", "weak token"),
        ("default_candidates", "w9a8", "bits must be"),
        ("heartbeat_timeout_s", "-1", "greater than 0"),
        ("port", "70000", "less than or equal"),
    ],
)
def test_nonsense_is_refused(
    monkeypatch: pytest.MonkeyPatch, key: str, value: str, needle: str
) -> None:
    _env(monkeypatch, **{key: value})
    with pytest.raises(ValidationError, match=needle):
        Settings()


def test_data_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValidationError, match="not a directory"):
        Settings(data_dir=tmp_path / "f")


def test_open_writes_only_in_dev_on_loopback() -> None:
    assert Settings(dev=True, host="127.0.0.1").open_writes
    assert not Settings(dev=True, host="0.0.0.0").open_writes
    assert not Settings(dev=False, host="127.0.0.1").open_writes
    assert is_loopback("::1") and is_loopback("localhost") and not is_loopback("10.0.0.1")
