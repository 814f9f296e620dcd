"""Shared fixtures: tiny real-architecture models, and a guard that nothing leaves loopback."""

from __future__ import annotations

import ipaddress
import socket

import pytest

_real_connect = socket.socket.connect


def _guarded_connect(self: socket.socket, address: object) -> object:
    host = address[0] if isinstance(address, tuple) else None
    if host is not None and self.family in (socket.AF_INET, socket.AF_INET6):
        try:
            loop = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loop = host == "localhost"
        if not loop:
            raise RuntimeError(f"test tried to reach the network: {address!r}")
    return _real_connect(self, address)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test: connecting anywhere but loopback is an error."""
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)


@pytest.fixture(scope="session")
def sam2_micro():
    from profiling.models import ModelSpec, build_model

    return build_model(ModelSpec("sam2-micro"))


@pytest.fixture(scope="session")
def sam_micro():
    from profiling.models import ModelSpec, build_model

    return build_model(ModelSpec("sam-micro"))
