"""Re-enqueue lost work: running jobs whose worker went silent, and runnable jobs never sent.

Run by every worker every ``reconcile_interval_s`` and by the API at start. With the embedded
runner, a fresh process owns no job, so at start every running job is lost by definition.

A broker (Redis) that restarts without its data loses every message it held: jobs queued but not
started are sent again when they were sent before the broker's start (its ``uptime_in_seconds``),
on the first pass after it is back — within ``reconcile_interval_s``. A job sent twice runs once
(the runner's claim). While the broker is unreachable a pass sends nothing (it would only wait on
publish retries) and the next one tries again.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime

from searchsvc.db.session import session_scope
from searchsvc.jobs import repository
from searchsvc.jobs.dispatch import send
from searchsvc.settings import Settings

__all__ = ["reconcile", "Reconciler", "broker_started", "BrokerDown"]

log = logging.getLogger(__name__)
_RESEND_FACTOR = 10  # a queued job sent this many heartbeat timeouts ago is sent again
_UNSENT_GRACE_S = 5.0  # a job never sent this long after its commit was not sent by its creator
_CLOCK_SKEW_S = 2.0  # hosts' clocks may differ this much: a job sent so close to a broker's
#                      restart is sent again (harmless) rather than maybe lost


class BrokerDown(Exception):
    """The broker cannot be reached: nothing can be sent now."""


def broker_started(settings: Settings) -> datetime | None:
    """When the broker last started (None without one: the embedded runner loses nothing)."""
    if settings.broker_url is None:
        return None
    import redis

    try:
        client = redis.Redis.from_url(
            settings.broker_url, socket_timeout=2, socket_connect_timeout=2
        )
        try:
            uptime = float(client.info("server")["uptime_in_seconds"])
        finally:
            client.close()
    except (redis.RedisError, OSError, KeyError, ValueError) as exc:
        raise BrokerDown(f"{type(exc).__name__}: {exc}") from None
    return repository.older_than(uptime - _CLOCK_SKEW_S)


def reconcile(settings: Settings, *, fresh_process: bool = False) -> list[int]:
    """Re-queue lost running jobs and send runnable queued ones; returns the ids sent."""
    try:
        since = broker_started(settings)
    except BrokerDown as exc:
        log.warning("reconciler: the broker is unreachable (%s); next pass retries", exc)
        return []
    timeout = settings.heartbeat_timeout_s
    to_send: list[tuple[str, int]] = []
    with session_scope(settings.database) as session:
        cutoff = repository.older_than(0 if fresh_process else timeout)
        for job in repository.stale_running(session, cutoff):
            reason = f"re-queued: its worker ({job.worker}) stopped sending heartbeats"
            if repository.requeue(session, job, reason):
                log.warning("job %s (%s): %s", job.id, job.kind, reason)
                to_send.append((job.kind, job.id))
        created = repository.older_than(0 if fresh_process else min(timeout, _UNSENT_GRACE_S))
        resend = repository.older_than(0 if fresh_process else timeout * _RESEND_FACTOR)
        for job_id in repository.unsent_queued(session, created, resend, since):
            queued = repository.get(session, job_id)
            if queued is not None and (queued.kind, queued.id) not in to_send:
                to_send.append((queued.kind, queued.id))
    send(settings, to_send)
    return [job_id for _, job_id in to_send]


class Reconciler:
    """A daemon thread that calls ``reconcile`` every ``reconcile_interval_s``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bb-reconciler", daemon=True)

    def start(self) -> Reconciler:
        """Start the loop (the first pass runs immediately)."""
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                reconcile(self.settings)
            except Exception:  # the database may be briefly away; try again next round
                log.exception("reconciler pass failed")
            self._stop.wait(self.settings.reconcile_interval_s)

    def stop(self) -> None:
        """End the loop."""
        self._stop.set()
        self._thread.join(timeout=5)
