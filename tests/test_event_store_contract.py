"""One contract for the event store, run on memory, SQLite and the real PostgreSQL server."""

from __future__ import annotations

import pytest
from eventsourcing.persistence import Tracking

from lifecycle.ids import customer_id
from tests.backends import runtime_factory
from tests.events import interaction, purchase

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
def test_which_aggregates_exist_is_answered_for_many_at_once(open_runtime, monkeypatch):
    import uuid

    from lifecycle import lookup
    from lifecycle.ids import receipt_id

    rt = open_runtime()
    rt.ingest_lines(LINES)
    monkeypatch.setattr(lookup, "CHUNK", 3)  # several chunks, so the chunking is exercised too
    stored = [customer_id("shop:1"), customer_id("shop:2"), receipt_id("test/suite", "e-3")]
    unknown = [customer_id("shop:404"), uuid.uuid4(), receipt_id("test/suite", "e-404")]
    asked = [*unknown[:2], *stored, stored[0], unknown[2]]
    assert lookup.existing_aggregates(rt.engine.recorder, asked) == set(stored)
    assert lookup.existing_aggregates(rt.engine.recorder, []) == set()


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
