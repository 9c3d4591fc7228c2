"""One contract for the event store, run on memory, SQLite and the real PostgreSQL server."""

from __future__ import annotations

import pytest
from eventsourcing.persistence import Tracking

from lifecycle.ids import customer_id
from schemas import parse
from tests.backends import runtime_factory
from tests.events import interaction, purchase, request

BACKENDS = [
    pytest.param("memory"),
    pytest.param("sqlite"),
    pytest.param("postgres", marks=pytest.mark.integration),
]
DURABLE = BACKENDS[1:]


@pytest.fixture
def open_runtime(request, tmp_path):
    kind = request.param
    opened = []
    url = {}

    def postgres_url():
        url.setdefault("pg", request.getfixturevalue("postgres_url"))
        return url["pg"]

    factory = runtime_factory(kind, tmp_path, postgres_url)

    def open_one():
        rt = factory()
        opened.append(rt)
        return rt

    yield open_one
    for rt in opened:
        rt.close()


LINES = [
    interaction("shop:1", "2026-01-01T10:00:00Z", id="e-1"),
    purchase("shop:1", "2026-01-02T10:00:00Z", "o-1", id="e-2"),
    purchase("shop:1", "2026-01-09T10:00:00Z", "o-2", id="e-3"),
    purchase("shop:2", "2026-01-03T10:00:00Z", "o-3", id="e-4"),
]


@pytest.mark.parametrize("open_runtime", BACKENDS, indirect=True)
def test_events_carry_both_clocks_and_their_cause(open_runtime):
    rt = open_runtime()
    rt.engine.ingest(LINES)
    history = rt.engine.history(customer_id("shop:1"))
    facts = [e for e in history if hasattr(e, "data")]
    assert [e.inbound_id for e in facts] == ["e-1", "e-2", "e-3"]
    assert all(e.source == "test/suite" for e in facts)
    assert facts[1].occurred_at.isoformat() == "2026-01-02T10:00:00+00:00"
    assert all(e.timestamp >= facts[0].timestamp for e in facts)  # recorded time, in order


@pytest.mark.parametrize("open_runtime", DURABLE, indirect=True)
def test_replay_by_a_fresh_engine_gives_the_same_state(open_runtime):
    first = open_runtime()
    first.engine.ingest(LINES)
    second = open_runtime()
    for key in ("shop:1", "shop:2"):
        a, b = first.engine.customer(key), second.engine.customer(key)
        assert (a.version, a.progress, a.paid) == (b.version, b.progress, b.paid)


@pytest.mark.parametrize("open_runtime", DURABLE, indirect=True)
def test_dedup_is_for_ever_across_processes(open_runtime):
    open_runtime().engine.ingest(LINES)
    result = open_runtime().engine.ingest(LINES)
    assert (result.accepted, result.duplicates) == (0, len(LINES))


@pytest.mark.parametrize("open_runtime", BACKENDS, indirect=True)
def test_the_inbound_position_is_stored_with_the_events(open_runtime):
    engine = open_runtime().engine
    name = "kafka:lifecycle.inbound:0"
    engine.ingest(LINES[:2], tracking=Tracking(name, 41))
    assert engine.recorder.max_tracking_id(name) == 41
    # The same batch again (a consumer that crashed before committing to Kafka): nothing new.
    before = engine.recorder.max_notification_id()
    again = engine.ingest(LINES[:2], tracking=Tracking(name, 41))
    assert again.duplicates == 2 and engine.recorder.max_notification_id() == before


@pytest.mark.parametrize("open_runtime", DURABLE, indirect=True)
def test_a_concurrent_writer_conflict_is_retried_and_nothing_is_lost(open_runtime):
    a, b = open_runtime().engine, open_runtime().engine
    a.ingest([interaction("shop:1", "2026-01-01T10:00:00Z", id="x-1")])
    b.customer("shop:1")  # b caches version 2 of shop:1 ...
    a.ingest([purchase("shop:1", "2026-01-02T10:00:00Z", "o-1", id="x-2")])  # ... which a moves on
    result = b.ingest([purchase("shop:1", "2026-01-05T10:00:00Z", "o-2", id="x-3"), interaction("shop:7", "2026-01-05T10:00:00Z", id="x-4")])
    # b's first attempt conflicted and rolled back whole (its receipts too), then succeeded:
    assert result.accepted == 2
    customer = open_runtime().engine.customer("shop:1")
    assert customer.stage == "retained" and customer.progress.orders == {"o-1", "o-2"}


@pytest.mark.parametrize("open_runtime", BACKENDS, indirect=True)
def test_the_ledger_holds_every_inbound_event_once_and_receipts_only_what_was_not_accepted(
    open_runtime, monkeypatch
):
    from lifecycle import lookup
    from lifecycle.ids import malformed_receipt_id, receipt_id
    from lifecycle.receipt import ACCEPTED, MALFORMED, REFUSED

    monkeypatch.setattr(lookup, "CHUNK", 2)  # PostgreSQL looks ids up in chunks: several here
    rt = open_runtime()
    refused = request("shop:1", "2026-01-03T10:00:00Z", "advocate", id="e-5")
    malformed = b'{"not": "an event"'
    rt.ingest_lines([*LINES, refused, malformed, LINES[0]])
    expected = {receipt_id("test/suite", f"e-{n}"): ACCEPTED for n in range(1, 5)}
    expected |= {receipt_id("test/suite", "e-5"): REFUSED, malformed_receipt_id(malformed): MALFORMED}
    recorder = rt.engine.recorder
    assert recorder.ledger() == expected
    assert recorder.seen([*expected, customer_id("shop:1")]) == expected
    assert recorder.seen([]) == {}
    # The reasons and bytes of what was not accepted are receipt events; accepted events have none
    # (their facts carry source and id).
    with_events = {rid for rid in expected if recorder.select_events(rid, limit=1)}
    assert with_events == {receipt_id("test/suite", "e-5"), malformed_receipt_id(malformed)}


@pytest.mark.parametrize("open_runtime", BACKENDS, indirect=True)
def test_a_second_row_for_an_inbound_event_fails_the_whole_transaction(open_runtime):
    from eventsourcing.persistence import IntegrityError

    from lifecycle import ledger
    from lifecycle.ids import receipt_id

    engine = open_runtime().engine
    engine.ingest(LINES[:1])
    before = engine.recorder.max_notification_id()
    customer = engine.customer("shop:1")
    customer.record(engine.model, customer_fact("2026-01-04T10:00:00Z"))
    # What a writer that raced another one on e-1 would write: the ledger's key refuses it, and
    # the events of its transaction are not stored either (the engine then retries the batch).
    with pytest.raises(IntegrityError):
        engine.events.put(customer.collect_events(), **{ledger.ROWS: [(receipt_id("test/suite", "e-1"), "accepted")]})
    assert engine.recorder.max_notification_id() == before


@pytest.mark.parametrize("open_runtime", DURABLE, indirect=True)
def test_a_store_written_before_the_ledger_adopts_its_receipt_events(open_runtime):
    """Before the ledger, every inbound event had a receipt event: the first start copies them."""
    from lifecycle.ids import receipt_id

    first = open_runtime()
    first.ingest_lines([LINES[0], request("shop:1", "2026-01-03T10:00:00Z", "advocate", id="e-5")])
    engine = first.engine
    old_style = engine._receipt(receipt_id("test/suite", "e-2"), parse(LINES[1]), "accepted", None)
    engine.events.put(old_style.collect_events())  # a receipt event without a ledger row
    _drop_ledger(engine.recorder)
    second = open_runtime()
    # Adopted: the receipt events (e-1 was written with a ledger row only, which was dropped).
    assert second.engine.recorder.ledger() == {
        receipt_id("test/suite", "e-5"): "refused", receipt_id("test/suite", "e-2"): "accepted"}
    assert second.engine.ingest([LINES[1]]).duplicates == 1
    assert open_runtime().engine.recorder.ledger() == second.engine.recorder.ledger()  # adopted once


def _drop_ledger(recorder) -> None:
    table = getattr(recorder, "ledger_table", None) or recorder.ledger_table_name  # PostgreSQL: qualified
    with recorder.datastore.transaction(commit=True) as cursor:
        cursor.execute(f"DROP TABLE {table}")


def customer_fact(time: str):
    from datetime import datetime

    from lifecycle.rules import Fact

    return Fact("interaction", datetime.fromisoformat(time), "test/suite", "e-raced", {})


@pytest.mark.parametrize("open_runtime", BACKENDS, indirect=True)
def test_one_aggregates_stored_rows_are_read_as_the_library_reads_them(open_runtime):
    import uuid

    from lifecycle.lookup import stored_states_of

    rt = open_runtime()
    rt.ingest_lines(LINES)
    rt.ingest_lines([purchase("shop:1", "2026-01-10T10:00:00Z", "o-9", id="x-9")])
    recorder = rt.engine.recorder
    for aggregate_id in (customer_id("shop:1"), customer_id("shop:2")):
        expected = [(e.originator_version, e.topic, bytes(e.state)) for e in recorder.select_events(aggregate_id)]
        assert len(expected) >= 2
        assert stored_states_of(recorder, aggregate_id) == expected
    assert stored_states_of(recorder, uuid.uuid4()) == []


@pytest.mark.parametrize("open_runtime", BACKENDS, indirect=True)
def test_the_log_is_read_as_the_library_reads_it(open_runtime):
    from lifecycle.lookup import notifications_after

    rt = open_runtime()
    rt.ingest_lines(LINES)
    recorder = rt.engine.recorder
    expected = [(n.id, str(n.originator_id), n.originator_version, n.topic, bytes(n.state))
                for n in recorder.select_notifications(start=1, limit=1000)]
    assert len(expected) >= 8
    assert [(*r[:4], bytes(r[4])) for r in notifications_after(recorder, 0, 1000)] == expected
    assert [r[0] for r in notifications_after(recorder, expected[2][0], 3)] == [e[0] for e in expected[3:6]]
    assert notifications_after(recorder, expected[-1][0], 10) == []


@pytest.mark.parametrize("open_runtime", BACKENDS[2:], indirect=True)
def test_postgres_reads_histories_along_the_events_tables_index(open_runtime, monkeypatch):
    """The ids are selected as text, under another name: a cast keeps the column's name, and
    ``ORDER BY originator_id`` then sorted every row up to the position by the text."""
    from lifecycle import lookup

    rt = open_runtime()
    rt.ingest_lines(LINES)
    recorder = rt.engine.recorder
    statements = []
    read = lookup.postgres_rows

    def postgres_rows(recorder, statement, params):
        statements.append((statement, params))
        return read(recorder, statement, params)

    monkeypatch.setattr(lookup, "postgres_rows", postgres_rows)
    last = recorder.max_notification_id()
    first = lookup.notifications_by_aggregate(recorder, last, None, 2)
    lookup.notifications_by_aggregate(recorder, last, (lookup.id_as_text(first[-1][1]), first[-1][2]), 2)
    ids = {customer_id("shop:1"), customer_id("shop:2")}
    lookup.stored_states_of_many(recorder, ids)
    lookup.stored_states_of_many(recorder, ids, after={customer_id("shop:1"): 1})
    assert len(statements) == 4

    def sort_keys(plan):
        return [*plan.get("Sort Key", []), *(k for p in plan.get("Plans", []) for k in sort_keys(p))]

    for statement, params in statements:
        with recorder.datastore.get_connection() as conn:
            plan = conn.execute("EXPLAIN (FORMAT JSON) " + statement, params).fetchone()
        plan = plan[0] if not isinstance(plan, dict) else plan["QUERY PLAN"]
        assert [k for k in sort_keys(plan[0]["Plan"]) if "text" in k] == [], statement


@pytest.mark.parametrize("open_runtime", BACKENDS, indirect=True)
def test_a_batch_is_numbered_in_the_order_it_was_given(open_runtime):
    """The log's order is the order of the batch (PostgreSQL's insert is ours, in binary)."""
    engine = open_runtime().engine
    engine.ingest([interaction(f"shop:{n}", "2026-01-01T10:00:00Z", id=f"n-{n}") for n in range(1, 6)])
    customers = [engine.customer(f"shop:{n}") for n in range(1, 6)]
    before = engine.recorder.max_notification_id()
    pending = []
    for turn in range(3):  # interleaved aggregates, each in version order
        for customer in reversed(customers):
            customer.record(engine.model, customer_fact(f"2026-01-0{turn + 2}T10:00:00Z"))
            pending.extend(customer.collect_events())
    recordings = engine.events.put(pending)
    logged = engine.recorder.select_notifications(start=before + 1, limit=100)
    assert [(n.originator_id, n.originator_version) for n in logged] == \
        [(e.originator_id, e.originator_version) for e in pending]
    assert [r.notification.id for r in recordings] == [n.id for n in logged]


@pytest.mark.parametrize("open_runtime", BACKENDS, indirect=True)
def test_a_snapshot_is_kept_at_its_latest_version_and_only_with_its_transaction(open_runtime):
    from eventsourcing.persistence import IntegrityError

    from lifecycle import ledger
    from lifecycle.ids import receipt_id

    engine = open_runtime().engine
    engine.ingest(LINES[:1])
    cid = customer_id("shop:1")
    customer = engine.customer("shop:1")

    def put(time: str, snapshot: tuple, **rows) -> None:
        customer.record(engine.model, customer_fact(time))
        engine.events.put(customer.collect_events(), **{ledger.SNAPSHOTS: [snapshot]}, **rows)

    put("2026-01-04T10:00:00Z", (cid, 2, b"two"))
    assert engine.recorder.snapshots([cid, customer_id("shop:2")]) == {cid: (2, b"two")}
    put("2026-01-05T10:00:00Z", (cid, 1, b"one"))  # an older one never replaces a newer one
    assert engine.recorder.snapshots([cid]) == {cid: (2, b"two")}
    put("2026-01-06T10:00:00Z", (cid, 4, b"four"))
    assert engine.recorder.snapshots([cid]) == {cid: (4, b"four")}
    # A transaction that fails (here on the ledger's key) stores its snapshot no more than its events.
    with pytest.raises(IntegrityError):
        put("2026-01-07T10:00:00Z", (cid, 5, b"five"), **{ledger.ROWS: [(receipt_id("test/suite", "e-1"), "accepted")]})
    assert engine.recorder.snapshots([cid]) == {cid: (4, b"four")}


@pytest.mark.parametrize("open_runtime", DURABLE, indirect=True)
def test_a_long_lived_customer_is_reloaded_from_its_snapshot_and_the_events_after_it(open_runtime):
    from unittest.mock import patch

    from lifecycle.snapshots import EVERY as SNAPSHOT_EVERY

    lines = [interaction("shop:9", f"2026-02-{day:02d}T10:00:00Z", id=f"long-{day}")
             for day in range(1, SNAPSHOT_EVERY + 6)]
    first = open_runtime()
    first.engine.ingest(lines[:SNAPSHOT_EVERY])  # passes SNAPSHOT_EVERY (facts and transitions)
    first.engine.ingest(lines[SNAPSHOT_EVERY:])  # events after the snapshot
    held = first.engine.customer("shop:9")
    cid = customer_id("shop:9")
    snapshot_version = first.engine.recorder.snapshots([cid])[cid][0]
    assert SNAPSHOT_EVERY <= snapshot_version < held.version
    second = open_runtime().engine
    read: list[int] = []
    with patch.object(second.mapper, "to_domain_event", wraps=second.mapper.to_domain_event) as decoded, \
            patch("lifecycle.engine.stored_states_of_many", new=_noting_versions(read)):
        reloaded = second.customer("shop:9")
    assert decoded.call_count == held.version - snapshot_version  # only the events after it
    assert read == list(range(snapshot_version + 1, held.version + 1))  # and only those read
    assert vars(reloaded) == vars(held)


@pytest.mark.parametrize("open_runtime", BACKENDS, indirect=True)
def test_many_aggregates_stored_rows_after_given_versions_are_read_as_the_library_reads_them(open_runtime):
    import uuid

    from lifecycle.lookup import stored_states_of_many

    rt = open_runtime()
    rt.ingest_lines(LINES)
    recorder = rt.engine.recorder
    one, two, nobody = customer_id("shop:1"), customer_id("shop:2"), uuid.uuid4()

    def library(aggregate_id, after):
        events = recorder.select_events(aggregate_id, gt=after)
        return [(e.originator_version, e.topic, bytes(e.state)) for e in events]

    assert len(library(one, 0)) >= 3
    found = stored_states_of_many(recorder, [one, two, nobody], after={one: 2})
    assert found == {one: library(one, 2), two: library(two, 0)}  # an id not in ``after``: every row
    everything = stored_states_of_many(recorder, [one, two], after={one: len(library(one, 0))})
    assert everything == {two: library(two, 0)}  # none after the last version: left out
    assert stored_states_of_many(recorder, [one, two]) == {one: library(one, 0), two: library(two, 0)}


def _noting_versions(read: list[int]):
    """``stored_states_of_many`` that also adds the versions of the rows it found to ``read``."""
    from lifecycle.lookup import stored_states_of_many

    def noting(*args, **kwargs):
        found = stored_states_of_many(*args, **kwargs)
        read.extend(version for rows in found.values() for version, _, _ in rows)
        return found

    return noting


def _reloaded_in_a_batch(open_runtime, restore=None):
    """A customer past its snapshot, reloaded by another runtime's batch (not from its cache),
    with ``restore`` in place of ``snapshots.restore`` if given: the versions of the rows that
    batch read, the snapshot's version, the customer as that runtime holds it after the batch,
    and the same customer replayed from every stored event."""
    from contextlib import ExitStack
    from unittest.mock import patch

    from lifecycle.lookup import stored_states_of
    from lifecycle.snapshots import EVERY as SNAPSHOT_EVERY

    lines = [interaction("shop:9", f"2026-02-{day:02d}T10:00:00Z", id=f"long-{day}")
             for day in range(1, SNAPSHOT_EVERY + 6)]
    first = open_runtime().engine
    first.ingest(lines[:SNAPSHOT_EVERY])
    first.ingest(lines[SNAPSHOT_EVERY:-1])
    cid = customer_id("shop:9")
    snapshot_version = first.recorder.snapshots([cid])[cid][0]
    second = open_runtime().engine
    read: list[int] = []
    with ExitStack() as patches:
        patches.enter_context(patch("lifecycle.engine.stored_states_of_many", new=_noting_versions(read)))
        if restore is not None:
            patches.enter_context(patch("lifecycle.snapshots.restore", new=restore))
        assert second.ingest(lines[-1:]).accepted == 1
    replayed = second._replay(None, cid, stored_states_of(second.recorder, cid))
    return read, snapshot_version, second.customer("shop:9"), replayed


@pytest.mark.parametrize("open_runtime", DURABLE, indirect=True)
def test_a_batch_reloads_a_customer_from_its_snapshot_without_reading_the_events_before_it(open_runtime):
    read, snapshot_version, reloaded, replayed = _reloaded_in_a_batch(open_runtime)
    assert read and min(read) == snapshot_version + 1  # the events after it, none before
    assert vars(reloaded) == vars(replayed)


@pytest.mark.parametrize("open_runtime", DURABLE, indirect=True)
def test_a_batch_reloads_a_customer_whose_snapshot_does_not_restore_from_every_event(open_runtime):
    read, _, reloaded, replayed = _reloaded_in_a_batch(open_runtime, restore=lambda mapper, data: None)
    assert min(read) == 1
    assert vars(reloaded) == vars(replayed)
