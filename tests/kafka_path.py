"""Running the three services as real processes, publishing with a client that is not ours,
waiting until the views have caught up, and the embedded path's views they must then equal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from confluent_kafka import Producer

from consumers.topics import ensure_topics
from lifecycle.audit import AUDIT
from lifecycle.config import Settings
from lifecycle.runtime import Runtime
from projections.catalog import REPORTS, build_report
from projections.tables import ALL_TABLES
from tests.backends import runtime_factory
from tests.kafka import end_offsets  # right on Tansu, whose ListOffsets is not

SERVICES = ("ingest", "relay", "project")
TIME_COLUMNS = {"updated_at", "recorded_at"}


@dataclass
class ServiceProcesses:
    env: dict[str, str]
    logs: Path
    running: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    kills: int = 0

    def start(self, name: str) -> None:
        """Start ``name``: a service, or ``<service>-<n>`` for another process of it."""
        service = name.partition("-")[0]
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        self.running[name] = subprocess.Popen(
            [sys.executable, "-m", "lifecycle", "run", service], env=self.env, stdout=log, stderr=log
        )

    def start_all(self) -> None:
        for name in SERVICES:
            self.start(name)

    def kill(self, name: str) -> None:
        process = self.running.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        self.kills += 1

    def check_alive(self) -> None:
        for name, process in self.running.items():
            if process.poll() is not None:
                raise AssertionError(f"{name} exited with {process.returncode}:\n{self.tail(name)}")

    def stop_all(self) -> dict[str, int]:
        codes = {}
        for name, process in list(self.running.items()):
            process.send_signal(signal.SIGTERM)
        for name, process in list(self.running.items()):
            try:
                codes[name] = process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                codes[name] = -9
        self.running.clear()
        return codes

    def tail(self, name: str, lines: int = 30) -> str:
        path = self.logs / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def service_env(settings_env: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIFECYCLE_")}
    env.update(settings_env)
    env["LIFECYCLE_LOG_FORMAT"] = "json"
    return env


def publish(bootstrap: str, topic: str, lines: list[bytes]) -> None:
    """An upstream producer that is not our code: confluent-kafka (librdkafka), idempotent, acks=all."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                         "linger.ms": 5, "client.id": "upstream-shop"})
    failures: list[str] = []

    def on_delivery(err, _msg) -> None:  # type: ignore[no-untyped-def]
        if err is not None:
            failures.append(str(err))

    for line in lines:
        try:
            key = json.loads(line).get("subject")
        except (ValueError, AttributeError):
            key = None
        producer.produce(topic, value=line, key=key.encode() if isinstance(key, str) else None,
                         on_delivery=on_delivery)
        producer.poll(0)
    remaining = producer.flush(60)
    assert remaining == 0 and not failures, (remaining, failures[:3])


def lag(rt: Runtime, bootstrap: str) -> dict[str, int]:
    s = rt.settings
    inbound = sum(
        offset - (rt.engine.recorder.max_tracking_id(f"kafka:{s.topic_inbound}:{p}") or 0)
        for p, offset in end_offsets(bootstrap, s.topic_inbound).items()
    )
    stored = rt.engine.recorder.max_notification_id() or 0
    relay = stored - (rt.views.position(f"relay:{s.topic_events}") or 0)
    project = sum(
        offset - (rt.views.position(f"kafka:{s.topic_events}:{p}") or 0)
        for p, offset in end_offsets(bootstrap, s.topic_events).items()
    )
    # The relay seals each page it sends, and when idle whatever a kill left unsealed.
    seal = stored - (rt.views.position(AUDIT) or 0)
    return {"ingest": inbound, "relay": relay, "project": project, "seal": seal}


def view_store_positions(rt: Runtime) -> dict[str, int]:
    """Where the relay, its sealer and ``project`` (each partition) stand in the view store: the
    positions a crash of the server can send back (they commit without waiting for the disk)."""
    s = rt.settings
    names = [f"relay:{s.topic_events}", AUDIT, *(f"kafka:{s.topic_events}:{p}" for p in range(s.topic_partitions))]
    return {name: rt.views.position(name) or 0 for name in names}


def wait_caught_up(rt: Runtime, bootstrap: str, services: ServiceProcesses, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    settled = 0
    while time.monotonic() < deadline:
        services.check_alive()
        behind = lag(rt, bootstrap)
        settled = settled + 1 if not any(behind.values()) else 0
        if settled >= 3:  # three quiet looks in a row: nothing was still on its way
            return
        time.sleep(1)
    raise AssertionError(f"not caught up after {timeout}s: {lag(rt, bootstrap)}\n"
                         + "\n".join(services.tail(n) for n in SERVICES))


def snapshot(rt: Runtime, as_of: date) -> dict:
    """Every analyst view (minus recorded-time columns) and every report."""
    views = {}
    for table in ALL_TABLES:
        if table.internal or table.name in ("pipeline_funnel", "deal_forecast", "retention_cohorts",
                                            "advocacy_nps", "customer_rfm"):
            continue  # summary tables are refreshed as of today, asynchronously: compare reports
        rows = [{k: v for k, v in r.items() if k not in TIME_COLUMNS} for r in rt.views.rows(table.name)]
        views[table.name] = sorted(rows, key=repr)
    reports = {kind: build_report(kind, rt.views, rt.engine.model, as_of) for kind in REPORTS}
    return {"views": views, "reports": reports}


def kafka_settings_env(database_url: str, bootstrap: str, suffix: str) -> dict[str, str]:
    return {
        "LIFECYCLE_DATABASE_URL": database_url,
        "LIFECYCLE_KAFKA_BOOTSTRAP": bootstrap,
        "LIFECYCLE_TOPIC_INBOUND": f"lifecycle.inbound.{suffix}",
        "LIFECYCLE_TOPIC_EVENTS": f"lifecycle.events.{suffix}",
        "LIFECYCLE_TOPIC_REJECTED": f"lifecycle.rejected.{suffix}",
        "LIFECYCLE_TOPIC_PARTITIONS": "3",
        "LIFECYCLE_BATCH_SIZE": "200",
        "LIFECYCLE_KAFKA_GROUP_TIMEOUT_MS": "2000",
        "LIFECYCLE_KAFKA_GROUP_PREFIX": f"test-{suffix}",
    }


def open_runtime(env: dict[str, str]) -> Runtime:
    """A runtime on the services' database; creates their topics first, as an operator would
    (a broker that auto-creates topics on first use would otherwise pick the partition count)."""
    settings = Settings.from_env(env)
    ensure_topics(env["LIFECYCLE_KAFKA_BOOTSTRAP"], settings)
    return Runtime.open(settings)


def embedded_snapshot(lines: list[bytes], directory: Path, as_of: date) -> dict:
    """The reference: the same lines through the embedded path (SQLite in ``directory``)."""
    rt = runtime_factory("sqlite", directory, lambda: "")()
    try:
        rt.ingest_lines(lines)
        rt.runner.catch_up()
        return snapshot(rt, as_of)
    finally:
        rt.close()
