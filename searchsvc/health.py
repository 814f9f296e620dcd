"""GET /healthz: the database answers, and the broker when one is configured."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from searchsvc.db.session import get_engine
from searchsvc.deps import SettingsDep
from searchsvc.errors import RETRY_AFTER_S, error_body
from searchsvc.settings import Settings

router = APIRouter(tags=["health"])


def check_database(settings: Settings) -> str:
    """'ok' or the error text."""
    try:
        with get_engine(settings.database).connect() as connection:
            connection.execute(text("SELECT 1"))
        return "ok"
    except Exception as exc:  # reported, not raised: this is the health check
        return f"{type(exc).__name__}: {exc}"


def check_broker(settings: Settings) -> str:
    """'ok', 'embedded' (no broker configured) or the error text."""
    if settings.broker_url is None:
        return "embedded"
    import redis

    try:
        client = redis.Redis.from_url(
            settings.broker_url, socket_timeout=2, socket_connect_timeout=2
        )
        client.ping()
        client.close()
        return "ok"
    except Exception as exc:  # reported, not raised
        return f"{type(exc).__name__}: {exc}"


@router.get("/healthz")
def healthz(settings: SettingsDep) -> Any:
    """200 when everything answers; 503 with the failing part otherwise."""
    checks = {"database": check_database(settings), "broker": check_broker(settings)}
    if all(v in ("ok", "embedded") for v in checks.values()):
        return {"status": "ok", **checks}
    failing = "; ".join(f"{k}: {v}" for k, v in checks.items() if v not in ("ok", "embedded"))
    body = error_body("Unavailable", f"unhealthy: {failing}") | {"status": "unhealthy", **checks}
    return JSONResponse(body, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})
