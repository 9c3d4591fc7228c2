"""The projections' view of the log: neutral, JSON-able records in commit order.

A ``LogSource`` yields ``LogEvent``s after a position. The embedded source
reads the event store's notification log; the Kafka consumer (another issue)
builds the same records from ``lifecycle.events`` messages. Projections never
see eventsourcing objects, only these.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.utils import resolve_topic

_BASE_ATTRIBUTES = frozenset({"originator_id", "originator_version", "timestamp", "originator_topic"})


@dataclass(frozen=True)
class LogEvent:
    position: int
    aggregate_type: str  # Customer | Deal | InboundReceipt
    aggregate_id: str
    version: int
    name: str  # the event's class name, e.g. PurchaseRecorded
    recorded_at: datetime
    payload: Mapping[str, Any]  # JSON-able: decimals, dates and times as strings


class LogSource(Protocol):
    def read(self, after: int | None, limit: int) -> Sequence[LogEvent]:
        """Events with a position greater than ``after`` (all when None), oldest first."""
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
        start = (after or 0) + 1
        notifications = self.engine.recorder.select_notifications(start=start, limit=limit)
        return [self.log_event(n) for n in notifications]

    def log_event(self, notification: Any, position: int | None = None) -> LogEvent:
        """The same LogEvent as ``log_event_of(mapper.to_domain_event(n))``, from the stored JSON
        straight to JSON-able values: building domain objects and converting them back was a
        third of a rebuild. ``position``: the notification id, unless given (a stored event
        read by aggregate has none)."""
        position = notification.id if position is None else position
        names = self._names_of(notification.topic)
        if names is not None:
            try:
                state = _JSONABLE_DECODER.decode(bytes(notification.state).decode("utf-8"))
            except _NotPlain:
                state = None
            if state is not None:
                recorded_at = datetime.fromisoformat(state.pop("timestamp"))
                for name in _BASE_ATTRIBUTES:
                    state.pop(name, None)
                return LogEvent(
                    position=position,
                    aggregate_type=names[0],
                    aggregate_id=str(notification.originator_id),
                    version=int(notification.originator_version),
                    name=names[1],
                    recorded_at=recorded_at,
                    payload=state,
                )
        return log_event_of(self.engine.mapper.to_domain_event(notification), position)

    def _names_of(self, topic: str) -> tuple[str, str] | None:
        if topic not in self._names:
            cls = resolve_topic(topic)
            aggregate_type, _, name = cls.__qualname__.rpartition(".")
            upcasts = getattr(cls, "class_version", 1) != 1
            self._names[topic] = None if upcasts or not self._plain else (aggregate_type, name)
        return self._names[topic]


class _NotPlain(Exception):
    """A value the shortcut does not know how to show: use the library's decoding."""


# The library's transcodings, shown as ``to_jsonable`` shows the decoded values.
_AS_JSONABLE = {
    "uuid_hex": lambda data: str(UUID(data)),
    "decimal_str": str,
    "datetime_iso": str,
    "date_iso": str,
}


def _as_jsonable(d: dict[str, Any]) -> Any:
    if len(d) == 2 and "_type_" in d and "_data_" in d:
        convert = _AS_JSONABLE.get(d["_type_"])
        if convert is None:
            raise _NotPlain(d["_type_"])
        return convert(d["_data_"])
    return d


_JSONABLE_DECODER = json.JSONDecoder(object_hook=_as_jsonable)
