"""What every service shares: structured logs, a clean stop on SIGTERM/SIGINT, a health file."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import structlog
from eventsourcing.persistence import PersistenceError

from lifecycle.errors import StoreError
from projections.store.errors import ViewStoreError

# What a database restart, failover or killed connection looks like from the services. They wait
# it out and resume from the positions stored in the database, which never went ahead of the writes.
DATABASE_ERRORS: tuple[type[Exception], ...] = (StoreError, ViewStoreError, PersistenceError, psycopg.Error)
STARTUP_ATTEMPTS = 6  # waits 0.5 + 1 + 2 + 4 + 8 s between them
T = TypeVar("T")


def configure_logging(fmt: str | None = None) -> structlog.stdlib.BoundLogger:
    """JSON lines for machines (the default off a terminal), readable lines on a terminal."""
    fmt = fmt or os.environ.get("LIFECYCLE_LOG_FORMAT") or ("console" if sys.stderr.isatty() else "json")
    renderer = structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # The Kafka clients log through the standard library (librdkafka as `librdkafka`): keep their
    # warnings, not their chatter.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    return structlog.get_logger()


class StopSignal:
    """Set by SIGTERM or SIGINT; loops check it between batches, so no batch is cut in half."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def install(self) -> StopSignal:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.event.set())
        return self

    @property
    def requested(self) -> bool:
        return self.event.is_set()

    def wait(self, seconds: float) -> bool:
        return self.event.wait(seconds)


class HealthFile:
    """Touched after every healthy loop; an orchestrator checks its age."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._last = 0.0

    def beat(self) -> None:
        now = time.monotonic()
        if self.path is not None and now - self._last >= 1.0:
            self.path.touch()
            self._last = now


class Backoff:
    """Waits longer after each consecutive failure (up to ``longest``); a success resets it."""

    def __init__(self, stop: StopSignal, log: Any, first: float = 0.5, longest: float = 15.0) -> None:
        self.stop, self.log = stop, log
        self.first, self.longest = first, longest
        self.delay = first
        self.failures = 0

    def failed(self, error: Exception) -> None:
        self.failures += 1
        self.log.warning("database_unavailable", error=" ".join(str(error).split()),
                         failures=self.failures, retry_in_s=self.delay)
        self.stop.wait(self.delay)
        self.delay = min(self.delay * 2, self.longest)

    def succeeded(self) -> None:
        if self.failures:
            self.log.info("database_recovered", after_failures=self.failures)
        self.delay, self.failures = self.first, 0


def open_when_available(stop: StopSignal, log: Any, open_: Callable[[], T], attempts: int = STARTUP_ATTEMPTS) -> T:
    """``open_()``, waiting out a database that drops connections while the service starts (a
    failover, a restart): up to ``attempts`` tries with backoff, then the last error is raised
    (a wrong address or database name still ends the service, with its message)."""
    backoff = Backoff(stop, log)
    for attempt in range(1, attempts + 1):
        try:
            return open_()
        except DATABASE_ERRORS as e:
            if attempt == attempts or stop.requested:
                raise
            backoff.failed(e)
    raise AssertionError("unreachable")


def run_until_stopped(
    stop: StopSignal, health: HealthFile, log: Any, step: Callable[[], object],
    after_failure: Callable[[], None] = lambda: None,
) -> None:
    """Run ``step`` until a stop is requested; a database failure is waited out, not fatal:
    ``after_failure`` arranges for the failed step's input to be read again from stored positions,
    and for the broken connections to be replaced (``Runtime.replace_broken_connections``)."""
    backoff = Backoff(stop, log)
    while not stop.requested:
        try:
            step()
        except DATABASE_ERRORS as e:
            after_failure()
            backoff.failed(e)
            continue
        backoff.succeeded()
        health.beat()
