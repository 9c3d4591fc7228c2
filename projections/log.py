"""The projections' view of the log: neutral, JSON-able records in commit order.

A ``LogSource`` yields ``LogEvent``s after a position. The embedded source
reads the event store's notification log; the Kafka consumer (another issue)
builds the same records from ``lifecycle.events`` messages. Projections never
see eventsourcing objects, only these.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol
from uuid import UUID

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

    def read(self, after: int | None, limit: int) -> list[LogEvent]:
        start = (after or 0) + 1
        notifications = self.engine.recorder.select_notifications(start=start, limit=limit)
        to_domain_event = self.engine.mapper.to_domain_event
        return [log_event_of(to_domain_event(n), n.id) for n in notifications]
