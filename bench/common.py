"""What the benchmarks share: sizes, the run context, input data, the raw-library baseline,
throw-away PostgreSQL databases and a description of the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from lifecycle.collection import fewer_collections
from lifecycle.config import DEFAULT_BATCH_SIZE, event_store_env
from lifecycle.simulate import simulate

SEED = 7
#: Events per customer that ``simulate()`` produces over its default 730 days (measured: ~30.9).
EVENTS_PER_CUSTOMER = 30


@dataclass(frozen=True)
class Sizes:
    """How much work each benchmark does. ``full`` is what ``make bench`` runs."""

    ingest: int  # inbound events for ingest_sqlite / ingest_postgres
    e2e: int  # inbound events published for e2e_kafka
    kafka_scale: int  # inbound events per run of the 1/2/4 ingest processes curve
    kafka_processes: tuple[int, ...]
    store_points: tuple[int, ...]  # inbound events per subprocess: RSS, rebuild, embedded curve
    rss_base: int  # the 1x point of rss_growth (must be in store_points)
    rss_factor: int  # rss_growth compares rss_base * rss_factor with rss_base
    rebuild_point: int  # inbound events whose stored events are rebuilt (~1.1 stored per inbound)
    replay_events: int  # events of the replayed customer
    replay_background: int  # customers of other traffic in the replay store
    replay_repeats: int
    batch: int = DEFAULT_BATCH_SIZE  # LIFECYCLE_BATCH_SIZE's default: ours and the baselines use it
    kafka_partitions: int = 4  # enough for 4 ingest processes to each own one
    kafka_timeout: float = 900.0  # seconds a Kafka run may take before it is reported incomplete


FULL = Sizes(
    ingest=100_000, e2e=100_000, kafka_scale=40_000, kafka_processes=(1, 2, 4),
    # The sizes: ingest at 1M inbound events against 100k, and a rebuild of ~1M stored
    # events (500k inbound events store 1.05M).
    store_points=(10_000, 100_000, 500_000, 1_000_000), rss_base=100_000, rss_factor=10, rebuild_point=1_000_000,
    replay_events=1_000, replay_background=300, replay_repeats=15,
)
QUICK = Sizes(
    ingest=10_000, e2e=5_000, kafka_scale=4_000, kafka_processes=(1, 2, 4),
    store_points=(2_000, 20_000), rss_base=2_000, rss_factor=10, rebuild_point=20_000,
    replay_events=1_000, replay_background=60, replay_repeats=5, kafka_timeout=240.0,
)
#: For the smoke test: the quick benchmarks at the smallest sizes that still exercise everything.
TINY = Sizes(
    ingest=2_000, e2e=1_000, kafka_scale=1_000, kafka_processes=(1, 2),
    store_points=(500, 5_000), rss_base=500, rss_factor=10, rebuild_point=5_000,
    replay_events=200, replay_background=20, replay_repeats=3, kafka_timeout=120.0,
)


@dataclass
class Context:
    """One run: its sizes, a scratch folder, what earlier benchmarks left for later ones."""

    sizes: Sizes
    mode: str
    workdir: Path
    log: Callable[[str], None]
    started: float = field(default_factory=time.monotonic)
    shared: dict[str, Any] = field(default_factory=dict)
    _broker: Any = None

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def pg_server(self) -> str:
        if "pg_server" not in self.shared:
            from tests.pg import postgres_server_url

            self.shared["pg_server"] = postgres_server_url()
        return self.shared["pg_server"]

    def broker(self) -> Any:
        """The development Kafka broker, started on first use, stopped by ``close``."""
        if self._broker is None:
            from deploy.broker import start_broker

            self._broker = start_broker(ready_timeout=60)
        return self._broker

    def close(self) -> None:
        if self._broker is not None:
            self._broker.stop()
            self._broker = None


@contextlib.contextmanager
def scratch(parent: Path, name: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def fresh_database(ctx: Context) -> Iterator[str]:
    """A new empty PostgreSQL database (tests/pg.py), dropped afterwards."""
    from tests.pg import create_database, database_name, drop_database

    server = ctx.pg_server()
    url = create_database(server)
    try:
        yield url
    finally:
        drop_database(server, database_name(url))


# -- input ---------------------------------------------------------------------------------


def inbound_lines(n: int, seed: int = SEED) -> list[bytes]:
    """Exactly ``n`` lines of a simulated population (mixed types, ~0.2% malformed, 2% late),
    with a customer count that grows with ``n`` (~30 events per customer over two years)."""
    customers = max(20, n // EVENTS_PER_CUSTOMER + 10)
    while True:
        lines = simulate(customers=customers, seed=seed)
        if len(lines) >= n:
            return lines[:n]
        customers = int(customers * 1.2) + 10


def subjects_of(lines: Sequence[bytes]) -> list[str]:
    """Each line's customer key (``?`` when it has none): the baseline writes to as many
    aggregates as there are customers, in the same order."""
    keys = []
    for line in lines:
        try:
            subject = json.loads(line).get("subject")
        except (ValueError, AttributeError):
            subject = None
        keys.append(subject if isinstance(subject, str) else "?")
    return keys


# -- the raw-library baseline ------------------------------------------------------------------


class Counter(Aggregate):
    """The raw library's side: one aggregate per customer, one event type with a small dict."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.count = 0

    @event("Happened")
    def happened(self, data: dict) -> None:
        self.count += 1


class RawApplication(Application):
    name = "raw_baseline"


@dataclass(frozen=True)
class RawRun:
    events: int
    transactions: int
    seconds: float

    @property
    def per_s(self) -> float:
        return self.events / self.seconds


def raw_save(env: dict[str, str], keys: Sequence[str], events: int, transactions: int,
             ingest_gc: bool = True) -> RawRun:
    """``events`` events saved with ``app.save(*aggregates)`` in ``transactions`` equal batches;
    event i goes to the aggregate of ``keys[i % len(keys)]`` (its first event creates it).
    Aggregates stay in memory, as our engine's cache keeps them: only writes are timed.
    ``ingest_gc``: under the garbage collector's setting our ingest runs with
    (``lifecycle.collection``, entered inside the timing as ours is): the baseline gets the same
    help as ours, so the figure shows our ingest's work, not the collector's."""
    app = RawApplication(env=env)
    try:
        aggregates: dict[str, Counter] = {}
        bounds = [round(events * t / transactions) for t in range(transactions + 1)]
        started = time.perf_counter()
        with fewer_collections() if ingest_gc else contextlib.nullcontext():
            for lo, hi in zip(bounds, bounds[1:], strict=False):
                touched: dict[str, Counter] = {}
                for i in range(lo, hi):
                    key = keys[i % len(keys)]
                    aggregate = aggregates.get(key)
                    if aggregate is None:
                        aggregate = aggregates[key] = Counter(key)
                    else:
                        aggregate.happened({"n": i, "amount": "29.33", "currency": "USD", "items": 2})
                    touched[key] = aggregate
                app.save(*touched.values())
        seconds = time.perf_counter() - started
        assert app.recorder.max_notification_id() == events
        return RawRun(events, transactions, seconds)
    finally:
        app.close()


def sqlite_env(path: Path) -> dict[str, str]:
    """The same eventsourcing settings the product uses for an embedded store."""
    return event_store_env(f"sqlite:///{path}", path.parent)


def mean_rate(runs: Sequence[RawRun]) -> float:
    """Events per second over all the runs (total events / total seconds)."""
    return sum(r.events for r in runs) / sum(r.seconds for r in runs)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


# -- memory --------------------------------------------------------------------------------


def proc_status_kib(field_name: str, pid: int | str = "self") -> int | None:
    """A ``kB`` field of /proc/PID/status (VmHWM = peak resident set, VmRSS = now)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


# -- CPU -------------------------------------------------------------------------------------


def process_cpu_seconds(pid: int | str = "self") -> float | None:
    """User + system CPU seconds of one process so far (/proc/PID/stat), None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds(database: str) -> float:
    """CPU seconds of the PostgreSQL backends connected to ``database`` now (their titles name
    it), so that a run's share of the server can be told from the rest of the machine."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            title = stat.read_bytes()
        except OSError:
            continue
        if title.startswith(b"postgres:") and f" {database} ".encode() in title:
            total += process_cpu_seconds(stat.parent.name) or 0.0
    return total


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, every core added (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    ticks = os.sysconf("SC_CLK_TCK")
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / ticks, sum(values) / ticks


# -- the machine ---------------------------------------------------------------------------


def machine_info(ctx: Context | None = None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": _mem_total_gib(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "os": platform.platform(),
        "hostname": socket.gethostname(),
        "sqlite": sqlite3.sqlite_version,
        "eventsourcing": _version("eventsourcing"),
        "psycopg": _version("psycopg"),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_at_start": list(os.getloadavg()),
        "git_commit": _git_commit(),
    }
    if ctx is not None and "pg_server" in ctx.shared:
        info["postgresql"] = _pg_info(ctx.shared["pg_server"])
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_total_gib() -> float | None:
    kib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                kib = int(line.split()[1])
    except OSError:
        return None
    return round(kib / 1024 / 1024, 1) if kib else None


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=Path(__file__).resolve().parent.parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _pg_info(server_url: str) -> dict[str, Any]:
    import psycopg

    from tests.pg import _redact

    try:
        with psycopg.connect(server_url, connect_timeout=3) as conn:
            settings = {name: conn.execute(f"SHOW {name}").fetchone()[0]
                        for name in ("server_version", "fsync", "synchronous_commit", "shared_buffers")}
    except psycopg.Error as e:
        settings = {"error": str(e)}
    return {"server": _redact(server_url), **settings}


def python_command() -> str:
    """The command line of this run, as a user would type it."""
    return " ".join(["python", "-m", "bench.run", *sys.argv[1:]])
