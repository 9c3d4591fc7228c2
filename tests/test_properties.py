"""Invariants, checked on generated populations (in memory: the same code runs on every store)."""

from __future__ import annotations

from unittest.mock import patch

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.outbound import _decode_deferred, from_record, to_message
from lifecycle.simulate import simulate
from lifecycle.stages import load_stage_model
from projections.log import DeferredEvent
from projections.runner import CONSUMER, _chunks
from projections.tables import ALL_TABLES
from tests.backends import runtime_factory
from tests.events import interaction, request
from tests.strategies import populations

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Recorded time depends on when events arrived; everything else must not.
ARRIVAL_COLUMNS = {"updated_at", "recorded_at"}
COMPARED = [t.name for t in ALL_TABLES if not t.internal and t.name != "rejections"]


def fresh():
    return runtime_factory("memory", None, lambda: "")()


def views(rt) -> dict[str, list[dict]]:
    snapshot = {}
    for name in COMPARED:
        rows = [{k: v for k, v in r.items() if k not in ARRIVAL_COLUMNS} for r in rt.views.rows(name)]
        snapshot[name] = sorted(rows, key=repr)
    return snapshot


def run(lines, batch_sizes=(50,)) -> object:
    rt = fresh()
    i = 0
    sizes = list(batch_sizes)
    while i < len(lines):
        size = sizes[0] if len(sizes) == 1 else sizes.pop(0) if sizes else 50
        rt.engine.ingest(lines[i:i + size])
        rt.runner.catch_up(TODAY)
        i += size
    rt.runner.catch_up(TODAY)
    return rt


from datetime import date  # noqa: E402

TODAY = date(2026, 6, 1)


@SETTINGS
@given(populations(), st.randoms(use_true_random=False))
def test_arrival_order_does_not_change_any_view(lines, rnd):
    shuffled = list(lines)
    rnd.shuffle(shuffled)
    assert views(run(lines)) == views(run(shuffled))


@SETTINGS
@given(populations(), st.lists(st.integers(1, 7), min_size=1, max_size=8))
def test_incremental_views_equal_a_rebuild(lines, batch_sizes):
    rt = run(lines, batch_sizes)
    incremental = views(rt)
    rt.runner.rebuild(TODAY)
    assert views(rt) == incremental


@SETTINGS
@given(populations(), st.integers(1, 3), st.integers(1, 12))
def test_a_rebuild_in_small_chunks_equals_one_in_a_single_chunk(lines, entities, events):
    """Chunk boundaries (by entities and by events) change nothing."""
    rt = run(lines)
    rt.runner.rebuild(TODAY)
    whole = views(rt)
    with patch.multiple("projections.runner", REBUILD_ENTITIES=entities, REBUILD_EVENTS=events):
        rt.runner.rebuild(TODAY)
    assert views(rt) == whole


def test_rebuild_chunks_are_bounded_by_entities_and_by_events():
    with patch.multiple("projections.runner", REBUILD_ENTITIES=3, REBUILD_EVENTS=10):
        counts = {"a": 4, "b": 4, "c": 4, "d": 30, "e": 1, "f": 1, "g": 1, "h": 1}
        histories = [[name] * count for name, count in counts.items()]  # an event per item
        chunks = [[history[0] for history in chunk] for chunk in _chunks(histories)]
        assert chunks == [["a", "b"], ["c"], ["d"], ["e", "f", "g"], ["h"]]
    assert list(_chunks([])) == []


@SETTINGS
@given(populations(), st.data())
def test_a_duplicate_changes_nothing(lines, data):
    rt = run(lines)
    before = views(rt)
    again = data.draw(st.lists(st.sampled_from(lines), min_size=1, max_size=10))
    result = rt.engine.ingest(again)
    rt.runner.catch_up(TODAY)
    assert result.accepted == 0
    assert views(rt) == before


@SETTINGS
@given(populations(), st.lists(st.tuples(st.booleans(), st.integers(1, 40), st.booleans()), min_size=1, max_size=12))
def test_a_delivering_consumer_beside_the_logs_own_gives_the_views_of_a_rebuild(lines, steps):
    """Events are stored while two consumers step: the runner's own, following the log, and a
    Kafka partition's, delivering what a relay sent (at offsets of its own; each page starts
    half a page back, as a relay that crashed before recording its position sends again).
    Whatever the interleaving, whichever applied an event first, and with the cached histories
    dropped at any step (an entity not cached is read whole from the event store, ahead of
    both consumers), the views at the end equal a rebuild's. The partition's events go through
    the relay's messages and are read as ``project`` reads them (``from_record``)."""
    rt = fresh()
    partition = "kafka:lifecycle.events:0"
    chunk = -(-len(lines) // (len(steps) + 1))
    sent: list = []  # the partition: what the relay has sent, in order
    relayed = 0  # the relay's position in the log
    for i, (own, count, forget) in enumerate(steps + [(True, 10**6, False), (False, 10**6, False)]):
        rt.engine.ingest(lines[i * chunk:(i + 1) * chunk])
        log = rt.runner.source.read(0, 10**6)
        if not own:
            sent += log[max(0, relayed - count // 2):relayed + count]
            relayed = min(len(log), relayed + count)
        if forget:
            rt.runner._forget()
        consumer = CONSUMER if own else partition
        at = rt.views.position(consumer) or 0
        if own:
            events = rt.runner.source.read(at, count)
        else:  # as ``project`` reads the messages: an entity's event decoded only if it is new
            events = [from_record(value, headers, offset)
                      for offset, (_, value, headers) in enumerate(map(_as_message, sent[at:at + count]), at + 1)]
        if events:
            rt.runner.apply(events, expected_position=at or None, consumer=consumer)
    assert relayed == len(log) and rt.views.position(CONSUMER) == log[-1].position
    rt.runner.refresh_summaries(TODAY)
    stepped = views(rt)
    rt.runner.rebuild(TODAY)
    assert views(rt) == stepped


@SETTINGS
@given(populations(), st.integers(2, 8), st.randoms(use_true_random=False))
def test_a_partition_that_loses_deliveries_heals_at_each_entitys_next_version(lines, steps, rnd):
    """Events are stored in chunks while a Kafka partition's consumer steps through what a relay
    sent, and some of the messages never arrive (a message set aside that named nothing): any
    entity event but its entity's last. Each loss shows as a gap when the entity's next version
    arrives, and the entity is read from the event store again: the views at the end equal a
    rebuild's."""
    reference = fresh()
    reference.engine.ingest(lines)
    last = {}
    for event in reference.runner.source.read(0, 10**6):
        last[event.aggregate_id] = max(last.get(event.aggregate_id, 0), event.version)
    rt = fresh()
    partition = "kafka:lifecycle.events:0"
    chunk = -(-len(lines) // steps)
    delivered = 0  # the log's events sent so far, lost or not
    for i in range(steps):
        rt.engine.ingest(lines[i * chunk:(i + 1) * chunk])
        log = rt.runner.source.read(0, 10**6)
        if delivered == len(log):
            continue
        arrived = [e for e in log[delivered:] if e.aggregate_type not in ("Customer", "Deal")
                   or e.version == last[e.aggregate_id] or rnd.random() > 0.2]
        messages = [(e.position, to_message(e, "key")) for e in arrived]  # the relay's position: the offset + 1
        events = [from_record(value, headers, position) for position, (_, value, headers) in messages]
        rt.runner.apply(events, expected_position=delivered or None, consumer=partition, position=len(log))
        delivered = len(log)
    assert delivered == len(reference.runner.source.read(0, 10**6))
    rt.runner.refresh_summaries(TODAY)
    stepped = views(rt)
    rt.runner.rebuild(TODAY)
    assert views(rt) == stepped


def _as_message(event):
    return to_message(event, "key")


def test_a_delivered_event_is_decoded_only_when_its_version_is_new():
    """A partition's customer and deal events come deferred (``from_record``): one whose version
    the runner holds, read ahead from the store or delivered before, is never decoded."""
    rt = fresh()
    partition = "kafka:lifecycle.events:0"
    lines = simulate(customers=8, seed=11, start=date(2024, 1, 1), days=300)
    decoded = []

    def counted(deferred):
        decoded.append((deferred.aggregate_id, deferred.version))
        return _decode_deferred(deferred)

    def deliver(events, at):
        read = [from_record(value, headers, offset)
                for offset, (_, value, headers) in enumerate(map(_as_message, events), at + 1)]
        read = [e._replace(decoder=counted) if type(e) is DeferredEvent else e for e in read]
        rt.runner.apply(read, expected_position=at or None, consumer=partition)
        return at + len(events)

    rt.engine.ingest(lines[: len(lines) // 2])
    first = rt.runner.source.read(0, 10**6)
    at = deliver(first, 0)
    assert decoded == []  # every entity was read whole from the store when first met
    cached = {e.aggregate_id for e in first}
    rt.engine.ingest(lines[len(lines) // 2:])
    later = rt.runner.source.read(first[-1].position, 10**6)
    deliver(first[-20:] + later, at)  # a relay's re-send of 20 events, then the later ones
    expected = [(e.aggregate_id, e.version) for e in later
                if e.aggregate_type in ("Customer", "Deal") and e.aggregate_id in cached]
    assert expected and sorted(decoded) == sorted(expected)
    rt.runner.refresh_summaries(TODAY)
    delivered = views(rt)
    rt.runner.rebuild(TODAY)
    assert views(rt) == delivered


@SETTINGS
@given(populations())
def test_replay_from_the_store_gives_the_state_the_engine_holds(lines):
    rt = run(lines)
    for key in {f"shop:{n}" for n in range(4)}:
        cached = rt.engine.customer(key)
        if cached is None:
            continue
        replayed = rt.engine.repository.get(cached.id)
        assert (replayed.version, replayed.progress, replayed.paid, replayed.refunded) == (
            cached.version, cached.progress, cached.paid, cached.refunded)


MODEL = load_stage_model()


def _request_closure() -> set[str]:
    reachable, frontier = {MODEL.initial}, [MODEL.initial]
    while frontier:
        here = frontier.pop()
        for edge in MODEL.edges:
            if edge.source == here and "request" in edge.guards and edge.target not in reachable:
                reachable.add(edge.target)
                frontier.append(edge.target)
    return reachable


@SETTINGS
@given(st.lists(st.sampled_from(MODEL.stage_names + ("nonsense",)), max_size=25))
def test_no_sequence_of_requests_reaches_a_stage_the_model_forbids(targets):
    rt = fresh()
    allowed = _request_closure()
    rt.engine.ingest([interaction("shop:1", "2025-01-01T00:00:00Z")])
    for i, target in enumerate(targets):
        before = rt.engine.customer("shop:1").stage
        result = rt.engine.ingest([request("shop:1", f"2025-01-02T00:{i:02d}:00Z", target)])
        after = rt.engine.customer("shop:1").stage
        if result.accepted:
            assert MODEL.edge(before, "request", after) is not None
        else:
            assert after == before
        assert after in allowed
    assert {"customer", "retained", "advocate"}.isdisjoint(allowed)


@SETTINGS
@given(populations(), st.integers(2, 6))
def test_a_customer_from_its_snapshot_equals_one_replayed_from_every_event(lines, every):
    from lifecycle.ids import customer_id
    from lifecycle.lookup import stored_states_of

    with patch("lifecycle.snapshots.EVERY", every):
        rt = run(lines)
    engine = rt.engine
    for key in {f"shop:{n}" for n in range(4)}:
        cid = customer_id(key)
        rows = stored_states_of(engine.recorder, cid)
        snapshot = engine.recorder.snapshots([cid]).get(cid)
        if snapshot is None:
            continue
        assert every <= snapshot[0] <= rows[-1][0]
        from_every_event = engine._replay(None, cid, rows)
        assert vars(engine._reload([cid])[cid]) == vars(from_every_event)


def test_a_step_writes_only_the_customer_tables_its_new_facts_changed():
    from tests.events import purchase

    rt = fresh()
    rt.engine.ingest([purchase("shop:1", "2026-01-02T10:00:00Z", "o-1", id="p-1")])
    rt.runner.catch_up(TODAY)
    written = []
    original = rt.views.write
    with patch.object(rt.views, "write", side_effect=lambda change: written.append(change) or original(change)):
        rt.engine.ingest([interaction("shop:1", "2026-01-03T10:00:00Z", id="i-1")])
        rt.runner.catch_up(TODAY)
        step = next(c for c in written if c.consumer == rt.runner.consumer and c.replace_entities)
        assert set(step.replace_entities) == {"customer_current"}  # the purchase rows stand
        # A fact earlier in business time than those taken: the whole history again, every table.
        written.clear()
        rt.engine.ingest([interaction("shop:1", "2026-01-01T10:00:00Z", id="i-0")])
        rt.runner.catch_up(TODAY)
        step = next(c for c in written if c.consumer == rt.runner.consumer and c.replace_entities)
        assert {"customer_current", "customer_purchases", "stage_history"} <= set(step.replace_entities)
    assert views(rt) == views(run([purchase("shop:1", "2026-01-02T10:00:00Z", "o-1", id="p-1"),
                                   interaction("shop:1", "2026-01-03T10:00:00Z", id="i-1"),
                                   interaction("shop:1", "2026-01-01T10:00:00Z", id="i-0")]))
