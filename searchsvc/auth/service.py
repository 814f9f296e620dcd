"""Creating and checking bearer tokens (only their sha256 is stored)."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy.orm import Session

from searchsvc.auth import repository
from searchsvc.db.tables import ApiTokenRow
from searchsvc.errors import Unauthorized
from searchsvc.settings import Settings

__all__ = ["hash_token", "create_token", "tokens_exist", "authorize_write"]

_PREFIX = "bb_"


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


def authorize_write(session: Session, *, settings: Settings, authorization: str | None) -> None:
    """Raise ``Unauthorized`` unless the request may write."""
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() == "bearer" and token and _valid(session, settings, token):
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
