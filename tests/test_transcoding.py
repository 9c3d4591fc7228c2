"""The engine's transcoder writes what the library's JSON transcoder writes, in meaning."""

from __future__ import annotations

import enum
import math
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import JSONTranscoder, Mapper, TranscodingNotRegisteredError
from hypothesis import given, settings
from hypothesis import strategies as st

from lifecycle.engine import LifecycleEngine
from lifecycle.transcoding import EventMapper, FastJSONTranscoder


class Colour(str, enum.Enum):
    RED = "red"


def _pair() -> tuple[JSONTranscoder, FastJSONTranscoder]:
    engine = LifecycleEngine(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    library = JSONTranscoder()
    engine.register_transcodings(library)
    assert isinstance(engine.mapper.transcoder, FastJSONTranscoder)
    return library, engine.mapper.transcoder


LIBRARY, FAST = _pair()

leaves = st.one_of(
    st.none(), st.booleans(), st.text(), st.integers(),  # beyond 64 bits too
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(),  # NaN and infinities too
    st.decimals(allow_nan=False), st.datetimes(timezones=st.just(None) | st.timezones() | st.just(UTC)),
    st.dates(), st.uuids(), st.sampled_from([Colour.RED]),
)
values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@settings(max_examples=400, deadline=None)
@given(values)
def test_what_it_writes_reads_back_as_what_the_library_writes(value):
    try:
        expected = LIBRARY.decode(LIBRARY.encode(value))
    except Exception as error:  # the library refuses: so must we, the same way
        with pytest.raises(type(error)):
            FAST.encode(value)
        return
    assert _same(LIBRARY.decode(FAST.encode(value)), expected)


@settings(max_examples=1000, deadline=None)
@given(st.datetimes(min_value=datetime(1, 1, 1), timezones=st.just(UTC)), st.datetimes(timezones=st.timezones()))
def test_times_are_written_byte_for_byte_as_the_library_writes_them(utc, elsewhere):
    """A UTC time is written by orjson (the library's isoformat, cheaper), any other by the
    library's transcoding: both exactly as the library writes them."""
    state = {"timestamp": utc, "data": [elsewhere, {"at": utc.replace(microsecond=0)}]}
    assert FAST.encode(state) == LIBRARY.encode(state)


def test_a_typical_fact_is_written_byte_for_byte_as_the_library_writes_it():
    state = {"timestamp": datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC), "source": "shop/web",
             "data": {"amount": Decimal("29.30"), "items": 2, "detail": "é", "ok": True, "none": None}}
    assert FAST.encode(state) == LIBRARY.encode(state)


@pytest.mark.parametrize("value", [float("nan"), 2**70, {1: "a"}, Colour.RED, "\ud800", {"x": object()}])
def test_what_orjson_would_write_differently_is_left_to_the_library(value):
    try:
        expected = LIBRARY.encode(value)
    except (TranscodingNotRegisteredError, UnicodeEncodeError) as error:
        with pytest.raises(type(error)):
            FAST.encode(value)
    else:
        assert FAST.encode(value) == expected


class _Versioned(Aggregate):
    class Happened(Aggregate.Event):
        class_version = 2
        amount: Decimal

    @event(Happened)
    def happen(self, amount: Decimal) -> None:
        pass


def test_the_engine_mapper_stores_what_the_library_mapper_stores() -> None:
    """Same topic, ids, version and state bytes, for events with and without a class version."""
    engine = LifecycleEngine(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    assert isinstance(engine.mapper, EventMapper)
    library = Mapper(transcoder=engine.mapper.transcoder)
    aggregate = _Versioned()
    aggregate.happen(Decimal("29.33"))
    aggregate.happen(Decimal("1"))
    events = aggregate.collect_events()
    for domain_event in events:
        assert engine.mapper.to_stored_event(domain_event) == library.to_stored_event(domain_event)
    stored = engine.mapper.to_stored_event(events[1])
    assert b'"class_version":2' in stored.state
    assert engine.mapper.to_domain_event(stored) == events[1]
