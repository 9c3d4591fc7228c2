"""The log source's shortcut (stored JSON straight to JSON-able values) gives exactly what the
library's decoding followed by ``log_event_of`` gives, for every kind of stored event."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from uuid import uuid4

import pytest

from lifecycle.ids import customer_id
from lifecycle.inspect import customer_state
from lifecycle.simulate import simulate
from lifecycle.parallel import key_ranges
from projections.customers import derive_customer
from projections.log import EngineLogSource, log_event_of
from projections.runner import CONSUMER, ProjectionRunner
from tests.backends import runtime_factory


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_the_shortcut_equals_the_library_decoding(kind, tmp_path):
    rt = runtime_factory(kind, tmp_path, lambda: "")()
    try:
        lines = simulate(customers=60, seed=8, start=date(2024, 1, 1), days=400)
        rt.ingest_lines(lines)
        rt.forget("shop:1003")  # an erasure, too
        notifications = rt.engine.recorder.select_notifications(start=1, limit=100_000)
        source = EngineLogSource(rt.engine)
        read = source.read(0, 100_000)
        assert len(read) == len(notifications)
        names = set()
        for n, event in zip(notifications, read, strict=True):
            expected = log_event_of(rt.engine.mapper.to_domain_event(n), n.id)
            assert event == expected
            names.add(expected.name)
        # Every kind of event was compared, not only the common ones.
        assert {"FirstSeen", "PurchaseRecorded", "StageChanged", "Received", "Erased"} <= names
        assert len(names) >= 12, names
    finally:
        rt.close()


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_the_times_read_from_stored_json_are_the_decoded_ones(kind, tmp_path):
    """``shows_later`` skips an event only when its decoded times would have excluded it too, on
    every kind of stored event (it reads them from the JSON without decoding it)."""
    rt = runtime_factory(kind, tmp_path, lambda: "")()
    try:
        rt.ingest_lines(simulate(customers=40, seed=3, start=date(2024, 1, 1), days=300))
        rt.forget("shop:1002")
        source = EngineLogSource(rt.engine)
        tick = timedelta(microseconds=1)
        checked = 0
        notifications = rt.engine.recorder.select_notifications(start=1, limit=100_000)
        for n, event in zip(notifications, source.read(0, 100_000), strict=True):
            recorded = event.recorded_at
            assert not source.shows_later(n.state, None, recorded)
            assert source.shows_later(n.state, None, recorded - tick)
            occurred = event.payload.get("occurred_at")
            if isinstance(occurred, str):
                at = datetime.fromisoformat(occurred)
                assert not source.shows_later(n.state, at, None)
                assert source.shows_later(n.state, at - tick, None)
                checked += 1
            else:
                assert not source.shows_later(n.state, datetime(1970, 1, 1, tzinfo=UTC), None)
        assert checked > 500
    finally:
        rt.close()


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_point_in_time_answer_equals_the_fold_of_every_decoded_event(kind, tmp_path):
    """The shortcut (lean select, events skipped undecoded) changes no answer."""
    rt = runtime_factory(kind, tmp_path, lambda: "")()
    try:
        rt.ingest_lines(simulate(customers=30, seed=5, start=date(2024, 1, 1), days=400))
        rt.catch_up()
        key = max(
            (r["customer_key"] for r in rt.views.rows("customer_current")),
            key=lambda k: len(rt.engine.recorder.select_events(customer_id(k))),
        )
        cid = customer_id(key)
        events = [log_event_of(rt.engine.mapper.to_domain_event(e), 0) for e in rt.engine.recorder.select_events(cid)]
        assert len(events) > 20
        moments = sorted({datetime.fromisoformat(e.payload["occurred_at"]) for e in events})

        def fold(kept):
            rows = derive_customer(rt.engine.model, str(cid), kept, rt.engine.keyring.reveal)
            return (rows.customer_current[0], rows.stage_history) if rows.customer_current else None

        answers = []
        for as_of in (moments[0] - timedelta(days=1), *moments[:: max(1, len(moments) // 7)], moments[-1]):
            kept = [e for e in events if datetime.fromisoformat(e.payload["occurred_at"]) <= as_of]
            answers.append(customer_state(rt, key, as_of=as_of))
            assert answers[-1] == fold(kept)
        for known_at in (events[0].recorded_at, events[len(events) // 2].recorded_at, events[-1].recorded_at):
            kept = [e for e in events if e.recorded_at <= known_at]
            answers.append(customer_state(rt, key, known_at=known_at))
            assert answers[-1] == fold(kept)
        assert answers[0] is None and len({a[0]["stage"] for a in answers if a}) >= 2  # not all alike
    finally:
        rt.close()


@pytest.mark.parametrize("extra", [123456789012345678901234567890, -9223372036854775809, 0.25, [1, {"x": 2.5}]])
def test_numbers_orjson_would_misread_go_the_library_way(extra, tmp_path):
    """orjson reads an integer beyond 64 bits as a float; such state is decoded by the library."""
    import json

    from eventsourcing.persistence import StoredEvent

    rt = runtime_factory("sqlite", tmp_path, lambda: "")()
    try:
        rt.ingest_lines(simulate(customers=40, seed=1, start=date(2024, 1, 1), days=300))
        stored = next(
            e for n in rt.engine.recorder.select_notifications(start=1, limit=10_000)
            if n.topic.endswith("PurchaseRecorded")
            for e in [StoredEvent(n.originator_id, n.originator_version, n.topic, n.state)]
        )
        state = json.loads(stored.state)
        state["data"]["extra"] = extra
        altered = StoredEvent(stored.originator_id, stored.originator_version, stored.topic,
                              json.dumps(state).encode())
        source = EngineLogSource(rt.engine)
        expected = log_event_of(rt.engine.mapper.to_domain_event(altered), 0)
        assert expected.payload["data"]["extra"] == extra
        assert source.aggregate_events(altered.originator_id, [(altered.originator_version, altered.topic, altered.state)]) == [expected]
    finally:
        rt.close()


@pytest.mark.parametrize("kind", ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def test_histories_give_each_aggregate_whole_up_to_the_last_position(kind, tmp_path, request):
    """What a rebuild reads: every event up to ``last`` exactly once, each aggregate's history
    together and in version order, however the pages cut through the histories."""
    rt = runtime_factory(kind, tmp_path, lambda: request.getfixturevalue("postgres_url"))()
    try:
        rt.ingest_lines(simulate(customers=30, seed=5, start=date(2024, 1, 1), days=200))
        source = EngineLogSource(rt.engine)
        everything = source.read(0, 100_000)
        last = source.last_position()
        assert last == everything[-1].position
        cut = everything[len(everything) * 2 // 3].position  # a rebuild that began earlier
        for upto in (last, cut):
            expected = sorted((e for e in everything if e.position <= upto), key=lambda e: (e.aggregate_id, e.version))
            for page in (1, 7, 100_000):
                histories = list(source.histories(upto, page))
                assert [e for history in histories for e in history] == expected
                ids = [history[0].aggregate_id for history in histories]
                assert len(ids) == len(set(ids))  # never split
                assert all({e.aggregate_id for e in history} == {history[0].aggregate_id} for history in histories)
        assert list(source.histories(0, 10)) == []
        # The parts of a rebuild: ranges of ids that together give the whole, each entity once.
        for parts in (2, 3, 7):
            ranges = key_ranges(parts)
            pieces = [list(source.histories(last, 7, start, stop)) for start, stop in ranges]
            assert [h for piece in pieces for h in piece] == list(source.histories(last, 100_000))
            for (start, stop), piece in zip(ranges, pieces, strict=True):
                assert all((start is None or h[0].aggregate_id >= start) and (stop is None or h[0].aggregate_id < stop)
                           for h in piece)
            assert sum(1 for piece in pieces if piece) > 1  # the ids are spread over the ranges
    finally:
        rt.close()


@pytest.mark.parametrize("kind", ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def test_steps_after_a_rebuild_read_each_history_once_from_the_store(kind, tmp_path, request):
    """After a rebuild, a new runner (no cached histories) steps through the rest of the log:
    each customer it touches is read whole from the event store once (including events of
    later steps, which then change nothing), and the views equal a rebuild of the whole log."""
    rt = runtime_factory(kind, tmp_path, lambda: request.getfixturevalue("postgres_url"))()
    try:
        lines = simulate(customers=30, seed=11, start=date(2024, 1, 1), days=300)
        today = date(2025, 1, 1)
        rt.engine.ingest(lines[: len(lines) // 2])
        rt.runner.rebuild(today)

        rt.engine.ingest(lines[len(lines) // 2:])
        runner = ProjectionRunner(rt.runner.source, rt.views, rt.engine.model, reveal=rt.runner.reveal,
                                  batch_size=37)
        read: list[str] = []
        source_histories_of = runner.source.histories_of
        runner.source.histories_of = lambda ids: (read.extend(ids), source_histories_of(ids))[1]
        runner.catch_up(today)
        assert read and len(read) == len(set(read))  # each entity read once, then cached
        stepped = {name: sorted(rt.views.rows(name), key=repr) for name in _ENTITY_VIEWS}
        rt.runner.rebuild(today)
        assert {name: sorted(rt.views.rows(name), key=repr) for name in _ENTITY_VIEWS} == stepped
    finally:
        rt.close()


@pytest.mark.parametrize("kind", ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def test_histories_of_give_every_stored_event(kind, tmp_path, request):
    """``histories_of`` gives each aggregate's stored events, exactly those ``read`` gives for
    it, in version order; an aggregate with none is left out."""
    rt = runtime_factory(kind, tmp_path, lambda: request.getfixturevalue("postgres_url"))()
    try:
        rt.engine.ingest(simulate(customers=12, seed=5, start=date(2024, 1, 1), days=200))
        source = EngineLogSource(rt.engine)
        log = source.read(0, 100_000)
        ids = sorted({e.aggregate_id for e in log})
        expected: dict[str, list] = {}
        for e in log:
            expected.setdefault(e.aggregate_id, []).append(e._replace(position=0))
        asked = ids[::2] + [str(uuid4())]  # some of them, and one with no events
        assert source.histories_of(asked) == {i: sorted(expected[i], key=lambda e: e.version) for i in ids[::2]}
        # Ids the engine never writes (a message someone else published) have no history.
        assert source.histories_of(["not-a-uuid", ids[0].upper(), ids[0].replace("-", "")]) == {}
    finally:
        rt.close()


_ENTITY_VIEWS = ("customer_current", "stage_history", "customer_purchases", "deal_current")
