"""Work shared by several processes (lifecycle.parallel) ends exactly as in one process: an
ingest gives the same outcomes in stream order and the same views, duplicates across processes
found; a rebuild by ranges of entity ids gives the same views; a worker's failure is reported,
not hidden."""

from __future__ import annotations

import dataclasses
import json
import re
from contextlib import ExitStack
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as settings_
from hypothesis import strategies as st

from lifecycle.batch import IngestTotals
from lifecycle.config import Settings, default_workers
from lifecycle.parallel import START_BATCHES, WorkerError, _Pool, ingest_in_parallel, worker_of
from lifecycle.runtime import Runtime
from lifecycle.simulate import simulate
from tests.events import ev
from tests.pg import create_database, database_name, drop_database
from tests.test_backends_agree import AS_OF, snapshot
from tests.test_cli import lifecycle

BATCH = 40
WORKERS = 3


def settings(kind: str, tmp_path: Path, request, workers: int) -> Settings:
    url = request.getfixturevalue("postgres_url") if kind == "postgres" else None
    return Settings(database_url=url, data_dir=tmp_path, stage_model_path=None, batch_size=BATCH,
                    kafka_bootstrap=None, workers=workers)


def twin(subject: str, n: int, detail: str = "/") -> bytes:
    return ev("crm.interaction.recorded", subject, "2024-03-01T10:00:00Z",
              {"channel": "web", "kind": "page_view", "detail": detail}, id=f"twin-{n}", source="test/twins")


def stream() -> list[bytes]:
    lines = simulate(customers=80, seed=11, start=date(2024, 1, 1), days=300)
    # The same inbound event (source + id) with different content, in one subject: the first
    # in the stream is accepted, as in one process.
    twins = [twin("shop:1001", 1, "/first"), twin("shop:1001", 1, "/second")]
    garbage = [b"not json", b'{"subject": "shop:1001", "truncated'] * 3
    return lines[:500] + twins + garbage + lines[500:] + twins


def ingest(rt: Runtime, lines: list[bytes]) -> tuple[object, list[tuple]]:
    outcomes: list[tuple] = []
    totals = rt.ingest_lines(lines, lambda result: outcomes.extend(
        (o.outcome, o.source, o.event_id, o.subject) for o in result.outcomes))
    rt.sweep(AS_OF)
    rt.runner.catch_up(AS_OF)
    return totals, outcomes


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def test_several_processes_end_as_one_does(kind, tmp_path, request):
    lines = stream()
    assert len(lines) > START_BATCHES * WORKERS * BATCH  # long enough to start the processes
    ends = {}
    for workers in (1, WORKERS):
        with ExitStack() as stack:
            opened = settings(kind, tmp_path / str(workers), request, workers)
            if kind == "postgres" and workers > 1:  # a database of its own
                server = request.getfixturevalue("pg_server")
                opened = dataclasses.replace(opened, database_url=create_database(server))
                stack.callback(drop_database, server, database_name(opened.database_url))
            rt = Runtime.open(opened)
            stack.callback(rt.close)
            totals, outcomes = ingest(rt, lines)
            ends[workers] = (totals, outcomes, snapshot(rt))
    (one_totals, one_outcomes, one_end), (many_totals, many_outcomes, many_end) = ends[1], ends[WORKERS]
    assert many_outcomes == one_outcomes  # every line's outcome, in stream order
    assert len(many_outcomes) == len(lines)
    assert [o[0] for o in many_outcomes if o[1] == "test/twins"] == ["accepted"] + ["duplicate"] * 3
    assert dataclasses.replace(many_totals, batches=0) == dataclasses.replace(one_totals, batches=0)
    assert many_totals.batches > one_totals.batches  # each process made its own transactions
    assert many_end == one_end


def test_an_ingest_without_outcomes_asked_for_counts_as_one_with_them(tmp_path, request):
    """Its workers answer with counts only (lifecycle.parallel._answer_of)."""
    lines = stream()
    counts = {}
    for asked in (True, False):
        rt = Runtime.open(settings("sqlite", tmp_path / str(asked), request, WORKERS))
        try:
            outcomes: list[str] = []

            def collect(result, into=outcomes):
                into.extend(o.outcome for o in result.outcomes)

            totals = rt.ingest_lines(lines, collect if asked else None)
            counts[asked] = dataclasses.replace(totals, batches=0)
            if asked:
                assert [totals.accepted, totals.duplicates, totals.rejected] == [
                    outcomes.count("accepted"), outcomes.count("duplicate"),
                    outcomes.count("refused") + outcomes.count("malformed")]
        finally:
            rt.close()
    assert counts[False] == counts[True]
    assert counts[False].inbound == len(lines) and counts[False].duplicates == 3 and counts[False].rejected >= 6


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def test_one_inbound_event_under_several_subjects_is_accepted_once(kind, tmp_path, request):
    """Its copies go to different processes, which race for it: exactly one is accepted
    (which one depends on timing, as with Kafka partitions), whatever the interleaving."""
    subjects = [f"shop:race-{k}" for k in range(6)]
    copies = [twin(subject, n) for n in range(START_BATCHES * WORKERS * BATCH // 4) for subject in subjects[:4]]
    rt = Runtime.open(settings(kind, tmp_path, request, WORKERS))
    try:
        outcomes: dict[str, list[str]] = {}
        for _ in range(2):  # the second time, every copy is a duplicate
            rt.ingest_lines(copies, lambda result: [outcomes.setdefault(o.event_id, []).append(o.outcome)
                                                    for o in result.outcomes])
        assert len(outcomes) == len(copies) // 4
        for each in outcomes.values():
            assert sorted(each) == ["accepted"] + ["duplicate"] * 7, each
    finally:
        rt.close()


def test_the_command_line_names_rejected_lines_in_file_order(tmp_path):
    """``lifecycle ingest`` with two processes: the reasons it prints name the right lines."""
    lines = simulate(customers=30, seed=2, start=date(2024, 1, 1), days=200)[:300]
    bad = {7: b"not json", 150: b'{"truncated', 299: b"[]"}
    for number, line in bad.items():
        lines[number - 1] = line
    lines.insert(20, b"")  # a blank line is no event, but it is a line of the file
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    done = lifecycle(tmp_path, "ingest", str(path), LIFECYCLE_BATCH_SIZE="10", LIFECYCLE_WORKERS="2")
    assert done.returncode == 1, done.stderr
    assert b"rejected 3" in done.stdout
    named = re.findall(rb"rejected line (\d+)", done.stderr)
    assert named == [b"7", b"151", b"300"]  # after the blank line, one more


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def test_a_rebuild_by_several_processes_gives_the_views_of_one(kind, tmp_path, request, monkeypatch):
    monkeypatch.setattr("lifecycle.runtime.PARALLEL_REBUILD_EVENTS", 0)  # a small log is shared too
    unknown_type = json.dumps({"specversion": "1.0", "id": "u-1", "source": "test/suite", "type": "crm.no.such",
                               "subject": "shop:1001", "time": "2024-02-01T00:00:00Z", "data": {}}).encode()
    lines = stream() + [unknown_type]
    rt = Runtime.open(settings(kind, tmp_path, request, 1))
    try:
        rt.ingest_lines(lines)
        rt.forget("shop:1001")  # an erased customer with a malformed event: its bytes go
        rt.runner.catch_up(AS_OF)
        followed = snapshot(rt)
        assert rt.views.rows("rejections", where={"subject": "shop:1001"})
        rt.settings = dataclasses.replace(rt.settings, workers=WORKERS)
        counted: list[int] = []
        read = rt.rebuild(progress=counted.append, today=AS_OF)  # summaries by the workers too
        assert snapshot(rt) == followed
        assert read == sum(counted) == rt.engine.recorder.max_notification_id()
        assert rt.runner.store.position(rt.runner.consumer) == read
        assert all(r["raw"] == "" for r in rt.views.rows("rejections", where={"subject": "shop:1001"}))
    finally:
        rt.close()


def test_a_short_stream_stays_in_the_calling_process(tmp_path, request):
    calls = []

    def here(lines, on_batch):
        calls.append(list(lines))
        return "in process"

    short = stream()[: START_BATCHES * WORKERS * BATCH - 1]
    found = ingest_in_parallel(settings("sqlite", tmp_path, request, WORKERS), iter(short), WORKERS, here)
    assert found == "in process" and calls == [short]


def test_a_worker_that_cannot_open_the_store_is_reported(tmp_path, request):
    # Nothing listens on port 1 of the loopback: each worker's Runtime.open fails at once.
    broken = dataclasses.replace(settings("sqlite", tmp_path, request, 2),
                                 database_url="postgresql://postgres@127.0.0.1:1/nowhere")
    with pytest.raises(WorkerError, match=r"worker process \d failed: StoreError: cannot open the event store"):
        ingest_in_parallel(broken, iter(stream()), 2, lambda lines, on_batch: IngestTotals())


def test_a_worker_that_dies_is_reported_and_the_others_are_stopped(tmp_path, request):
    opened = settings("sqlite", tmp_path, request, 2)
    Runtime.open(opened).close()  # the store exists, as when the caller has opened it
    pool = _Pool(opened, 2, on_batch=None)
    with pytest.raises(WorkerError, match=r"worker process 0 (exited|stopped taking work)"):
        with pool:
            pool.processes[0].kill()  # as the kernel's OOM killer would
            lines = stream()[:BATCH]
            pool.send(0, lines, list(range(BATCH)))
            pool.send(1, lines, list(range(BATCH)))
            pool.finish()
    assert all(process.poll() is not None for process in pool.processes)


def test_lines_of_one_subject_go_to_one_worker():
    def line(subject: str, **data) -> bytes:
        return json.dumps({"id": "x", "subject": subject, "data": data}).encode()

    for workers in (2, 3, 4):
        for n in range(50):
            subject = f"shop:{n}"
            assert worker_of(line(subject), workers) == worker_of(line(subject, amount=n), workers)
            assert worker_of(b'{"subject" : "%s"}' % subject.encode(), workers) == worker_of(line(subject), workers)
    assert len({worker_of(line(f"shop:{n}"), 3) for n in range(50)}) == 3  # they are shared out
    assert worker_of(b"not json", 3) == worker_of(b"not json", 3)


def test_the_default_is_one_process_more_than_the_cores_at_most_four(monkeypatch):
    for cores, expected in ((1, 2), (2, 3), (3, 4), (16, 4), (None, 2)):
        monkeypatch.setattr("os.cpu_count", lambda cores=cores: cores)
        assert default_workers() == expected
    assert Settings.from_env({"LIFECYCLE_WORKERS": "1"}).workers == 1


def test_the_zygote_started_by_hand_says_how_it_is_used():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "lifecycle.worker"], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "usage: python -m lifecycle.worker --fork" in done.stderr and "Traceback" not in done.stderr


def test_workers_are_forked_from_the_zygote_not_from_the_caller(tmp_path, request):
    import os

    from lifecycle.zygote import Zygote

    zygote = Zygote(2)
    try:
        pids = []
        for worker in zygote.workers:
            assert worker._forked.wait(60)
            pids.append(worker.pid)
        assert len(set(pids)) == 2 and os.getpid() not in pids
        for pid in pids:  # each one's parent is the zygote
            with open(f"/proc/{pid}/stat") as stat:
                assert int(stat.read().rsplit(")", 1)[1].split()[1]) == zygote.process.pid
    finally:
        for worker in zygote.workers:
            worker.tasks.close()  # end of tasks: each worker reads EOF and ends
        for worker in zygote.workers:
            assert worker.wait(60) == 0  # a quiet end: no work was given
        zygote.wait()
    assert zygote.process.returncode == 0


@settings_(max_examples=300, deadline=None)
@given(st.text(max_size=30), st.sampled_from([(",", ":"), (", ", ": "), (",", " : ")]))
def test_a_subject_is_found_as_the_regular_expression_finds_it(subject, separators):
    """The quick search for a compact ``"subject":"..."`` and the expression agree, escapes,
    quotes and spaced separators included."""
    import zlib

    from lifecycle.parallel import _SUBJECT

    line = json.dumps({"id": "e-1", "subject": subject, "data": {"k": "v"}}, separators=separators).encode()
    found = _SUBJECT.search(line)
    assert found is not None
    assert worker_of(line, 1_000_003) == zlib.crc32(found[1]) % 1_000_003
