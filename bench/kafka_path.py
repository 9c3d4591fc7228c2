"""e2e_kafka and the ingest-processes half of scale_curve: the Kafka path on real processes.

Each run takes a fresh PostgreSQL database and fresh topics (4 partitions) on the development
broker (Tansu, deploy/broker.py), starts the services as ``python -m lifecycle run ...``
processes (tests/kafka_path.py's harness), waits until the consumer groups hold every partition,
waits until the upstream producer holds its producer id (``_Upstream``), then starts the clock
and publishes the feed with confluent-kafka (an upstream producer that is not our code,
idempotent, acks=all, keyed by customer).

- ``e2e_kafka``: the path as the production-like stack runs it: as many ``ingest`` processes as
  ``deploy/compose.yaml`` has replicas (3; they share the partitions in one group), one relay,
  one ``project``. The clock stops when the views hold every event: ingest's stored offsets reach
  what was published, the relay has sent every stored event and ``project`` has stored the end
  offset of every ``lifecycle.events`` partition. Inbound events/s ÷ the raw library saving the
  same number of events in batches of ``LIFECYCLE_BATCH_SIZE``'s default (which the services run
  with too) on PostgreSQL (the per-inbound baseline of ``ingest_postgres``). The path runs twice,
  the baseline three times, alternating (until 2026-12-05 one path against ``ingest_postgres``'s
  baseline, measured a minute or more earlier). The summary tables (refreshed when ``project``
  is idle) are not waited for. Then the same run with one ``ingest`` process,
  ``e2e_kafka_1_ingest`` (information, no target; the headline until 2026-12-04).
- scale curve: only 1, 2, 4 ``ingest`` processes in one group; the clock stops when their stored
  offsets reach what was published. Inbound events/s, and each ÷ the 1-process figure.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import (
    Context,
    fresh_database,
    inbound_lines,
    machine_busy_seconds,
    mean_rate,
    postgres_cpu_seconds,
    process_cpu_seconds,
    scratch,
    subjects_of,
)

# How often the clock looks for the end: a mark is late by up to this much (0.25 until 2026-12-04,
# when each look at the views also opened a Kafka consumer for the topic's end offsets).
POLL_S = 0.1
COMPOSE_FILE = Path(__file__).resolve().parent.parent / "deploy" / "compose.yaml"


def deployed_ingest_processes() -> int:
    """The ``ingest`` replicas of the production-like stack (deploy/compose.yaml)."""
    import yaml

    return int(yaml.safe_load(COMPOSE_FILE.read_text())["services"]["ingest"]["deploy"]["replicas"])


def _settings_env(ctx: Context, url: str, bootstrap: str) -> dict[str, str]:
    from tests.kafka_path import kafka_settings_env

    env = kafka_settings_env(url, bootstrap, uuid.uuid4().hex[:10])
    env["LIFECYCLE_TOPIC_PARTITIONS"] = str(ctx.sizes.kafka_partitions)
    env["LIFECYCLE_BATCH_SIZE"] = str(ctx.sizes.batch)
    env["LIFECYCLE_KAFKA_GROUP_PREFIX"] = "bench-" + env["LIFECYCLE_TOPIC_INBOUND"].rsplit(".", 1)[1]
    return env


class _Upstream:
    """The upstream system's producer (idempotent, acks=all, keyed by customer), made ready before
    the clock starts, as a long-running upstream system's would be.

    librdkafka's idempotent producer gets its producer id about 0.5 s after it is made (its
    ``eos.idemp_state`` stays ``WaitTransport``; the first message waits for it: 0.50 s against
    0.001 s for a producer made a second earlier, measured on the development broker). Made
    inside the timed window, as until 2026-12-05, that half second left the whole machine idle
    at the start of every run (``/proc/stat`` in 0.1 s windows: 0.0 of 2 cores busy from 0.3 to
    0.5 s after the clock started): 6% of an ``e2e_kafka`` run of 8 s that was not our engine's.
    """

    READY_TIMEOUT_S = 30.0

    def __init__(self, bootstrap: str) -> None:
        from confluent_kafka import Producer

        self._assigned = threading.Event()
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                                  "linger.ms": 5, "client.id": "upstream-bench",
                                  "statistics.interval.ms": 50, "stats_cb": self._on_stats,
                                  # its notices (an idle connection closed by the broker after the
                                  # run) go to logging, as the services' do, not to stderr
                                  "logger": logging.getLogger("librdkafka")})

    def _on_stats(self, raw: str) -> None:
        if not self._assigned.is_set() and json.loads(raw).get("eos", {}).get("idemp_state") == "Assigned":
            self._assigned.set()

    def wait_ready(self) -> float:
        """Serve the producer's callbacks until it holds a producer id; the seconds waited."""
        started = time.monotonic()
        while not self._assigned.is_set():
            if time.monotonic() - started > self.READY_TIMEOUT_S:
                raise RuntimeError(f"the bench's producer got no producer id from the broker within "
                                   f"{self.READY_TIMEOUT_S:g}s")
            self.producer.poll(0.02)
        return time.monotonic() - started

    def publish(self, topic: str, lines: list[bytes], keys: list[str]) -> dict[int, int]:
        """Publish every line; return partition → next offset after the last acknowledged record."""
        producer = self.producer
        ends: dict[int, int] = {}
        failures: list[str] = []

        def on_delivery(err, msg) -> None:  # type: ignore[no-untyped-def]
            if err is not None:
                failures.append(str(err))
            else:
                ends[msg.partition()] = max(ends.get(msg.partition(), 0), msg.offset() + 1)

        for line, key in zip(lines, keys, strict=True):
            while True:
                try:
                    producer.produce(topic, value=line, key=None if key == "?" else key.encode(),
                                     on_delivery=on_delivery)
                    break
                except BufferError:  # the local queue is full: let deliveries drain
                    producer.poll(0.1)
            producer.poll(0)
        remaining = producer.flush(120)
        if remaining or failures:
            raise RuntimeError(f"publishing failed: {remaining} unsent, {failures[:3]}")
        return ends


def _assignments(logs: Path, names: list[str]) -> dict[str, set[int]]:
    """Each process's partitions according to its last rebalance log lines."""
    held: dict[str, set[int]] = {}
    for name in names:
        path = logs / f"{name}.log"
        current: set[int] = set()
        if path.exists():
            for raw in path.read_text(errors="replace").splitlines():
                try:
                    entry = json.loads(raw)
                except ValueError:
                    continue
                if entry.get("event") == "partitions_assigned":
                    current = set(entry.get("partitions") or [])
                elif entry.get("event") == "partitions_revoked":
                    current = set()
        held[name] = current
    return held


def _wait_ready(ctx: Context, services: Any, logs: Path, ingest: list[str], project: bool,
                timeout: float = 90.0) -> tuple[float, bool]:
    """Until every partition of each group is held, without overlap, twice in a row."""
    partitions = set(range(ctx.sizes.kafka_partitions))
    started = time.monotonic()
    last = None
    while time.monotonic() - started < timeout:
        services.check_alive()
        held = _assignments(logs, ingest + (["project"] if project else []))
        ingest_parts = [held[n] for n in ingest]
        ok = set().union(*ingest_parts) == partitions and sum(map(len, ingest_parts)) == len(partitions)
        ok = ok and all(ingest_parts[: len(partitions)])
        if project:
            ok = ok and held["project"] == partitions
        state = repr(sorted((k, sorted(v)) for k, v in held.items()))
        if ok and state == last:
            return time.monotonic() - started, True
        last = state if ok else None
        time.sleep(1.0)
    return time.monotonic() - started, False


class CPUMeter:
    """CPU seconds spent during a run: by each service process, by the database's backends and by
    the whole machine (every core; ``busy_share`` is the busy fraction of all cores)."""

    def __init__(self, services: Any, database: str) -> None:
        self.services, self.database = services, database
        self.start = self._read()

    def _read(self) -> dict[str, float]:
        seconds = {name: process_cpu_seconds(p.pid) or 0.0 for name, p in self.services.running.items()}
        seconds["postgresql"] = postgres_cpu_seconds(self.database)
        seconds["bench_publisher"] = process_cpu_seconds() or 0.0  # publishing and polling
        seconds["machine_busy"], seconds["machine_total"] = machine_busy_seconds()
        return seconds

    def spent(self) -> dict[str, float]:
        end = self._read()
        spent = {name: round(end[name] - self.start.get(name, 0.0), 2) for name in end}
        total = spent.pop("machine_total")
        spent["busy_share"] = round(spent["machine_busy"] / total, 3) if total else 0.0
        return spent


def _ingest_done(rt: Any, topic: str, ends: dict[int, int]) -> bool:
    recorder = rt.engine.recorder
    return all((recorder.max_tracking_id(f"kafka:{topic}:{p}") or 0) >= end for p, end in ends.items())


def _run(ctx: Context, lines: list[bytes], keys: list[str], ingest_processes: int, full_path: bool,
         label: str) -> dict[str, Any]:
    from tests.kafka import end_offsets
    from tests.kafka_path import ServiceProcesses, open_runtime, service_env

    bootstrap = ctx.broker().bootstrap
    with scratch(ctx.workdir, f"kafka-{label}") as logs, fresh_database(ctx) as url:
        env = _settings_env(ctx, url, bootstrap)
        services = ServiceProcesses(service_env(env), logs)
        rt = open_runtime(env)
        try:
            ingest = ["ingest"] + [f"ingest-{i}" for i in range(2, ingest_processes + 1)]
            for name in ingest:
                services.start(name)
            if full_path:
                services.start("relay")
                services.start("project")
            upstream = _Upstream(bootstrap)  # gets its producer id while the services start
            ready_s, ready = _wait_ready(ctx, services, logs, ingest, project=full_path)
            upstream_wait_s = upstream.wait_ready()
            ctx.log(f"{label}: {'ready' if ready else 'NOT all partitions assigned'} after {ready_s:.1f}s; "
                    f"publishing {len(lines)} events")
            inbound, events_topic = env["LIFECYCLE_TOPIC_INBOUND"], env["LIFECYCLE_TOPIC_EVENTS"]
            meter = CPUMeter(services, url.rsplit("/", 1)[1])
            started = time.perf_counter()
            ends = upstream.publish(inbound, lines, keys)
            published_s = time.perf_counter() - started
            marks: dict[str, float] = {}
            highs: dict[int, int] | None = None  # lifecycle.events' end offsets, once final
            deadline = started + ctx.sizes.kafka_timeout
            while time.perf_counter() < deadline:
                services.check_alive()
                now = time.perf_counter() - started
                if "ingest" not in marks and _ingest_done(rt, inbound, ends):
                    marks["ingest"] = now
                    if not full_path:
                        break
                if full_path and "ingest" in marks and "relay" not in marks:
                    stored = rt.engine.recorder.max_notification_id() or 0
                    if (rt.views.position(f"relay:{events_topic}") or 0) >= stored:
                        marks["relay"] = now
                if "relay" in marks:
                    # Ingest and the relay are done: nothing more is published, the ends are final.
                    highs = highs or end_offsets(bootstrap, events_topic)
                    if all((rt.views.position(f"kafka:{events_topic}:{p}") or 0) >= h for p, h in highs.items()):
                        marks["views"] = now
                        break
                time.sleep(POLL_S)
            cpu = meter.spent()
            stored = rt.engine.recorder.max_notification_id() or 0
            customers = len(rt.views.rows("customer_current")) if full_path else None
            codes = services.stop_all()
        finally:
            services.stop_all()
            rt.close()
    done = marks.get("views" if full_path else "ingest")
    return {
        "events": len(lines), "ingest_processes": ingest_processes, "partitions": ctx.sizes.kafka_partitions,
        "batch_size": ctx.sizes.batch, "assignment_wait_s": ready_s, "assigned_before_start": ready,
        "upstream_ready_wait_s": upstream_wait_s,
        "publish_seconds": published_s, "marks_seconds": marks, "complete": done is not None,
        "seconds": done, "per_s": len(lines) / done if done else None, "stored_events": stored,
        "customers_in_views": customers, "exit_codes": codes, "cpu_seconds": cpu,
    }


def e2e_kafka(ctx: Context) -> tuple[dict[str, float], dict[str, Any]]:
    """The raw baseline and the path alternate, B P B P B (as ``ingest_*`` alternate theirs): the
    figure is the two paths' events over their seconds against the three baselines'. The raw
    save (a commit per batch) moved by a quarter within a minute on the AMD machine, while the
    CPU-bound path moved ±5%: ``ingest_postgres``'s baseline, measured a minute or more earlier,
    moved the figure as much as the code did. It stays in the details, with the figure against
    it, for comparison."""
    from bench.ingest import raw_postgres_run

    n = ctx.sizes.e2e
    lines = inbound_lines(n)
    keys = subjects_of(lines)
    deployed = deployed_ingest_processes()
    bracket, paths = [], []
    for attempt in range(2):
        ctx.log(f"e2e_kafka: raw PostgreSQL baseline ({n} events)")
        bracket.append(raw_postgres_run(ctx, keys))
        paths.append(_run(ctx, lines, keys, deployed, full_path=True, label=f"e2e_kafka_{attempt + 1}"))
    ctx.log("e2e_kafka: raw PostgreSQL baseline, last")
    bracket.append(raw_postgres_run(ctx, keys))
    baseline = mean_rate(bracket)
    complete = all(p["seconds"] for p in paths)
    per_s = len(paths) * n / sum(p["seconds"] for p in paths) if complete else None
    value = per_s / baseline if per_s else float("nan")
    ctx.shared["kafka_e2e_run"] = paths[0]
    # The same path with one ingest process, as the headline was measured until 2026-12-04.
    one = _run(ctx, lines, keys, 1, full_path=True, label="e2e_kafka_x1")
    value_one = one["per_s"] / baseline if one["per_s"] else float("nan")
    ctx.log(f"e2e_kafka: with 1 ingest process e2e_kafka_1_ingest={value_one:.3f}")
    earlier = ctx.shared.get("raw_postgres_per_inbound_s")
    return ({"e2e_kafka": value, "e2e_kafka_1_ingest": value_one}, {
        "run": paths[0], "run_again": paths[1], "runs_per_s": [p["per_s"] for p in paths], "per_s": per_s,
        "run_1_ingest": one, "baseline_per_s": baseline,
        "baseline": f"the raw library on PostgreSQL, {n} events, before, between and after the two paths",
        "baseline_runs_per_s": [r.events / r.seconds for r in bracket],
        "ingest_postgres_baseline_per_s": earlier,
        "e2e_kafka_against_ingest_postgres_baseline": per_s / earlier if per_s and earlier else None,
    })


def kafka_scale(ctx: Context) -> tuple[dict[str, float], dict[str, Any]]:
    n = ctx.sizes.kafka_scale
    lines = inbound_lines(n)
    keys = subjects_of(lines)
    runs = {}
    for k in ctx.sizes.kafka_processes:
        runs[k] = _run(ctx, lines, keys, k, full_path=False, label=f"kafka_ingest_x{k}")
        ctx.log(f"kafka_scale: {k} ingest process(es): "
                + (f"{runs[k]['per_s']:.0f} events/s" if runs[k]["per_s"] else "incomplete"))
    ctx.shared["kafka_points"] = {k: r["per_s"] for k, r in runs.items()}
    return {}, {"runs": {str(k): r for k, r in runs.items()}}
