"""The projections' view of the log: neutral, JSON-able records in commit order.

A ``LogSource`` yields ``LogEvent``s after a position. The embedded source
reads the event store's notification log; the Kafka consumer (another issue)
builds the same records from ``lifecycle.events`` messages. Projections never
see eventsourcing objects, only these.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, NamedTuple, Protocol
from uuid import UUID

import orjson
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import resolve_topic

from lifecycle.lookup import (
    id_as_text,
    notifications_after,
    notifications_by_aggregate,
    stored_states_of_many,
)

_BASE_ATTRIBUTES = frozenset({"originator_id", "originator_version", "timestamp", "originator_topic"})
_UNSEEN: Any = object()  # a topic not looked at yet (its names may be None: the library decodes it)
_new_tuple = tuple.__new__


class LogEvent(NamedTuple):
    """One stored event as the projections see it. A named tuple, not a frozen dataclass: a
    rebuild makes two per stored event, and a frozen dataclass's __init__ cost a fifth of
    reading the log."""

    position: int
    aggregate_type: str  # Customer | Deal | InboundReceipt
    aggregate_id: str
    version: int
    name: str  # the event's class name, e.g. PurchaseRecorded
    recorded_at: datetime
    payload: Mapping[str, Any]  # JSON-able: decimals, dates and times as strings


#: The aggregates whose events the runner derives views from, each by its version; every other
#: stored event is a receipt (``InboundReceipt``), read for the rejections.
ENTITY_TYPES = ("Customer", "Deal")


class DeferredEvent(NamedTuple):
    """An entity's event known by its place and identity, its body not decoded yet: a
    ``lifecycle.events`` message whose headers name its aggregate and version
    (``consumers.outbound.from_record``). The runner decodes it only when it does not hold that
    version already. The projector runs behind ingest and reads a customer's whole stored
    history when it first meets it, so most messages bring versions it holds (~83k of 110k in
    an ``e2e_kafka`` run): reading one by its headers costs 1.7 µs of CPU, decoding it 5.4."""

    position: int
    aggregate_type: str  # one of ENTITY_TYPES
    aggregate_id: str
    version: int
    name: str
    body: bytes
    decoder: Callable[[DeferredEvent], LogEvent]  # raises if the body is not this event

    def decoded(self) -> LogEvent:
        return self.decoder(self)


class Clocked(NamedTuple):
    """A stored event with what its JSON shows of it without decoding (``EngineLogSource.clocks``)."""

    version: int
    topic: str
    state: bytes
    name: str
    recorded_at: datetime
    occurred_at: datetime | None


class LogSource(Protocol):
    def read(self, after: int | None, limit: int) -> Sequence[LogEvent]:
        """Events with a position greater than ``after`` (all when None), oldest first."""
        ...

    def last_position(self) -> int:
        """The position of the newest event (0 when there is none)."""
        ...

    def histories(
        self, last: int, page: int, start: str | None = None, stop: str | None = None
    ) -> Iterator[list[LogEvent]]:
        """Every aggregate's events with a position up to ``last``, one aggregate's whole
        history (in version order) at a time, in the order of their ids, reading ``page``
        events per query; with ``start`` and ``stop`` (ids as text), only the aggregates with
        ``start <= id < stop`` (a part of a rebuild)."""
        ...

    def histories_of(self, aggregate_ids: Collection[str]) -> dict[str, list[LogEvent]]:
        """Every stored event of each of these aggregates, in version order (their position not
        given: 0); aggregates with none are left out."""
        ...


def to_jsonable(value: Any) -> Any:
    """Decimals, dates and times as ISO strings; the exact value survives a round trip."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    return value


def log_event_of(domain_event: Any, position: int) -> LogEvent:
    """Turn an eventsourcing domain event into a LogEvent."""
    aggregate_type, _, name = type(domain_event).__qualname__.rpartition(".")
    payload = {
        k: to_jsonable(v) for k, v in vars(domain_event).items() if k not in _BASE_ATTRIBUTES
    }
    return LogEvent(
        position=position,
        aggregate_type=aggregate_type,
        aggregate_id=str(domain_event.originator_id),
        version=int(domain_event.originator_version),
        name=name,
        recorded_at=domain_event.timestamp,
        payload=payload,
    )


class EngineLogSource:
    """Follows an engine's notification log by polling (works on every backend)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        mapper = engine.mapper
        # The shortcut reads the library's plain JSON; compressed or enciphered state, or an
        # event class that upcasts, goes the library's way.
        self._plain = not mapper.compressor and not mapper.cipher
        self._names: dict[str, tuple[str, str] | None] = {}

    def read(self, after: int | None, limit: int) -> list[LogEvent]:
        return self.events_of(notifications_after(self.engine.recorder, after or 0, limit))

    def events_of(self, rows: Iterable[tuple[int, str, int, str, bytes]]) -> list[LogEvent]:
        """The LogEvents of stored rows as ``lookup.notifications_after`` gives them."""
        return [self._event(aggregate_id, version, topic, state, position)
                for position, aggregate_id, version, topic, state in rows]

    def last_position(self) -> int:
        return self.engine.recorder.max_notification_id() or 0

    def histories(
        self, last: int, page: int, start: str | None = None, stop: str | None = None
    ) -> Iterator[list[LogEvent]]:
        """Pages in the events table's key order; an aggregate whose history runs on into the
        next page is held back until it is complete. A recorder in memory has no such order to
        read along: its log is read whole and sorted (it is in memory already)."""
        # Version -1 comes before every stored version: the first page starts at ``start``.
        after, held = None if start is None else (start, -1), []
        stored_id: Any = None  # the id of the held aggregate as stored, and as shown
        shown_id = ""
        while True:
            rows = notifications_by_aggregate(self.engine.recorder, last, after, page, below=stop)
            if rows is None:
                events = sorted(
                    (e for e in (self.read(0, last) if last else [])
                     if (start is None or e.aggregate_id >= start) and (stop is None or e.aggregate_id < stop)),
                    key=lambda e: (e.aggregate_id, e.version))
                yield from _grouped(events)
                return
            if not rows:
                break
            # In key order an aggregate's rows come together: one pass makes its events, shows
            # its id once and closes its group where the next aggregate's rows begin.
            event, groups, group = self._event, [], held
            for r in rows:
                if r[1] != stored_id:
                    if group:
                        groups.append(group)
                    stored_id, shown_id, group = r[1], id_as_text(r[1]), []
                group.append(event(shown_id, r[2], r[3], bytes(r[4]), r[0]))
            after = (shown_id, rows[-1][2])
            held = group  # may go on in the next page
            yield from groups
        if held:
            yield held

    def histories_of(self, aggregate_ids: Collection[str]) -> dict[str, list[LogEvent]]:
        # An id that is not an engine id as the engine writes it (a message someone else
        # published) has no events in the log.
        wanted = [u for u in map(_engine_id, aggregate_ids) if u is not None]
        found = stored_states_of_many(self.engine.recorder, wanted)
        return {str(u): self.aggregate_events(u, rows) for u, rows in found.items()}

    def aggregate_events(self, aggregate_id: UUID, stored: Iterable[tuple[int, str, bytes]]) -> list[LogEvent]:
        """One aggregate's events from its stored ``(version, topic, state)`` rows (position 0)."""
        shown_id = str(aggregate_id)
        return [self._event(shown_id, version, topic, state, 0) for version, topic, state in stored]

    def _event(self, aggregate_id: str, version: int, topic: str, state: bytes, position: int) -> LogEvent:
        """The same LogEvent as ``log_event_of(mapper.to_domain_event(stored))``, from the stored
        JSON straight to JSON-able values where it can (building domain objects and converting
        them back was a third of a rebuild), else the library's way. (Every stored event of a
        rebuild comes through here: it is written for speed, without a call it can spare.)"""
        names = self._names.get(topic, _UNSEEN)
        if names is _UNSEEN:
            names = self._names_of(topic)
        payload = None if names is None else _plain_json(state)
        if payload is None:
            stored = StoredEvent(UUID(aggregate_id), version, topic, state)
            return log_event_of(self.engine.mapper.to_domain_event(stored), position)
        recorded_at = datetime.fromisoformat(payload.pop("timestamp"))
        if "originator_topic" in payload:  # a created event's (no other base attribute is stored)
            for name in _BASE_ATTRIBUTES:
                payload.pop(name, None)
        # The tuple made directly: a named tuple's __new__ is a Python function (a frame per event).
        return _new_tuple(LogEvent, (position, names[0], aggregate_id, int(version), names[1], recorded_at, payload))

    def shows_later(self, state: bytes, as_of: datetime | None, known_at: datetime | None) -> bool:
        """True when the stored JSON already shows that the event happened after ``as_of`` or
        was recorded after ``known_at``: a point-in-time answer can skip it without decoding it
        (decoding was most of such an answer). False when it does not show it; the decoded
        event then decides."""
        if not self._plain:
            return False
        if known_at is not None:
            recorded = _RECORDED_AT.match(state)
            if recorded is not None and datetime.fromisoformat(recorded[1].decode()) > known_at:
                return True
        if as_of is not None:
            occurred = _OCCURRED_AT.search(state)
            if occurred is not None and datetime.fromisoformat(occurred[1].decode()) > as_of:
                return True
        return False

    def clocks(self, stored: Iterable[tuple[int, str, bytes]]) -> list[Clocked] | None:
        """Each stored ``(version, topic, state)`` with the event's name, recorded time and
        business time (None: it has none), read from the JSON without decoding it; None when
        the JSON of one of them does not show them plainly."""
        match, search, at = _RECORDED_AT.match, _OCCURRED_AT.search, datetime.fromisoformat
        clocked = []
        for version, topic, state in stored:
            names = self._names[topic] if topic in self._names else self._names_of(topic)
            recorded = match(state)
            if names is None or recorded is None:
                return None
            occurred = search(state)
            if occurred is not None:
                clocked.append(Clocked(version, topic, state, names[1], at(recorded[1].decode()),
                                       at(occurred[1].decode())))
            elif b'"occurred_at"' in state:
                return None  # there, but not as the library writes a datetime
            else:
                clocked.append(Clocked(version, topic, state, names[1], at(recorded[1].decode()), None))
        return clocked

    def _names_of(self, topic: str) -> tuple[str, str] | None:
        if topic not in self._names:
            cls = resolve_topic(topic)
            aggregate_type, _, name = cls.__qualname__.rpartition(".")
            upcasts = getattr(cls, "class_version", 1) != 1
            self._names[topic] = None if upcasts or not self._plain else (aggregate_type, name)
        return self._names[topic]


def _engine_id(text: str) -> UUID | None:
    """The UUID whose text ``text`` is, exactly as ``str(UUID)`` writes it; else None."""
    try:
        u = UUID(text)
    except ValueError:
        return None
    return u if str(u) == text else None


def _grouped(events: list[LogEvent]) -> Iterator[list[LogEvent]]:
    """Runs of consecutive events of one aggregate."""
    group: list[LogEvent] = []
    for event in events:
        if group and event.aggregate_id != group[0].aggregate_id:
            yield group
            group = []
        group.append(event)
    if group:
        yield group


# The library writes ``timestamp`` first, then the event's fields in the order of its class. The
# fields before ``occurred_at`` are strings in every event of the lifecycle, and JSON escapes the
# quotes inside strings, so the first match is the event's own (tests/test_log_source.py checks
# this on every kind of stored event).
_RECORDED_AT = re.compile(rb'\{"timestamp":\{"_type_":"datetime_iso","_data_":"([^"]+)"\}')
_OCCURRED_AT = re.compile(rb'"occurred_at":\{"_type_":"datetime_iso","_data_":"([^"]+)"\}')


class _NotPlain(Exception):
    """A value the shortcut does not know how to show: use the library's decoding."""


# The library's transcodings, shown as ``to_jsonable`` shows the decoded values.
_AS_JSONABLE = {
    "uuid_hex": lambda data: str(UUID(data)),
    "decimal_str": str,
    "datetime_iso": str,
    "date_iso": str,
}


def _plain_json(state: bytes) -> dict[str, Any] | None:
    """The stored JSON with the library's ``{"_type_", "_data_"}`` values shown as JSON-able
    values; None when it holds something else (the library's decoding then decides, and
    raises where it must). orjson, then one walk: the standard decoder with an object hook was
    half of a point-in-time answer. A float anywhere goes the library's way too: orjson reads an
    integer beyond 64 bits as a float (see fastjson), and the lifecycle's events hold none."""
    try:
        payload = orjson.loads(state)
        if type(payload) is not dict:
            return None
        _unwrap_in(payload)
    except (orjson.JSONDecodeError, _NotPlain):
        return None
    return payload


def _unwrap_in(container: dict[Any, Any] | list[Any]) -> None:
    for k, v in container.items() if type(container) is dict else enumerate(container):
        kind = type(v)
        if kind is str:
            continue  # most values
        if kind is dict:
            if len(v) == 2 and "_type_" in v and "_data_" in v:
                transcoded, data = v["_type_"], v["_data_"]
                if (transcoded == "datetime_iso" or transcoded == "decimal_str") and type(data) is str:
                    container[k] = data  # shown as stored (nearly every one: a call less)
                    continue
                convert = _AS_JSONABLE.get(transcoded)
                if convert is None:
                    raise _NotPlain(transcoded)
                container[k] = convert(data)
            else:
                _unwrap_in(v)
        elif kind is list:
            _unwrap_in(v)
        elif kind is float:
            raise _NotPlain("float")
