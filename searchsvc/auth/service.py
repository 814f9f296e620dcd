"""Creating and checking bearer tokens (only their sha256 is stored)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time

from sqlalchemy.orm import Session

from searchsvc.auth import repository
from searchsvc.db.tables import ApiTokenRow
from searchsvc.errors import Unauthorized
from searchsvc.settings import Settings

__all__ = [
    "hash_token",
    "create_token",
    "tokens_exist",
    "authorize_write",
    "recently_verified",
    "forget_verified",
]

_PREFIX = "bb_"
VERIFIED_TTL_S = 5.0  # a verified token is trusted this long without a lookup
_verified: dict[tuple[str, str], float] = {}  # (database, token sha256) -> trusted until
_verified_lock = threading.Lock()


def hash_token(token: str) -> str:
    """sha256 hex of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, *, name: str) -> tuple[ApiTokenRow, str]:
    """A new random token; the plain text is returned once and never stored."""
    token = _PREFIX + secrets.token_urlsafe(32)
    return repository.add(session, name, hash_token(token)), token


def tokens_exist(session: Session, *, settings: Settings) -> bool:
    """True when any token is configured (environment or database)."""
    return bool(settings.api_tokens) or repository.count_active(session) > 0


def _valid(session: Session, settings: Settings, token: str) -> bool:
    digest = hash_token(token)
    if any(hmac.compare_digest(digest, hash_token(t)) for t in settings.api_tokens):
        return True
    return repository.by_hash(session, digest) is not None


def _bearer(authorization: str | None) -> str | None:
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def recently_verified(settings: Settings, authorization: str | None) -> bool:
    """True when this bearer token was verified less than ``VERIFIED_TTL_S`` ago: the API's
    write guard then skips the database (a revoked token stops working within that time)."""
    token = _bearer(authorization)
    if token is None:
        return False
    key = (settings.database, hash_token(token))
    with _verified_lock:
        until = _verified.get(key)
    return until is not None and until > time.monotonic()


def forget_verified() -> None:
    """Forget every remembered verification (the next write looks its token up again)."""
    with _verified_lock:
        _verified.clear()


def _remember(settings: Settings, token: str) -> None:
    now = time.monotonic()
    with _verified_lock:
        if len(_verified) > 1024:  # drop expired entries (and all, if many are live)
            for key in [k for k, until in _verified.items() if until <= now] or list(_verified):
                del _verified[key]
        _verified[(settings.database, hash_token(token))] = now + VERIFIED_TTL_S


def authorize_write(session: Session, *, settings: Settings, authorization: str | None) -> None:
    """Raise ``Unauthorized`` unless the request may write."""
    token = _bearer(authorization) or ""
    scheme = (authorization or "").partition(" ")[0]
    if token and _valid(session, settings, token):
        _remember(settings, token)
        return  # the common case costs one lookup
    if not tokens_exist(session, settings=settings):
        if settings.open_writes:
            return
        raise Unauthorized(
            "this server has no API token yet: create one with `bitbudget token create` "
            "and send it as `Authorization: Bearer <token>`"
        )
    if not authorization:
        raise Unauthorized("missing bearer token: send `Authorization: Bearer <token>`")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("malformed Authorization header: expected `Bearer <token>`")
    raise Unauthorized("invalid or revoked token: check the token or create a new one")
