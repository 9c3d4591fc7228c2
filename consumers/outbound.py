"""LogEvent <-> a ``lifecycle.events`` message (value, key and headers)."""

from __future__ import annotations

from datetime import datetime

from projections.log import LogEvent
from schemas.outbound import OUTBOUND_SCHEMA_VERSION, OutboundEvent


def to_message(event: LogEvent, key: str) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """(key, value, headers) for one event; the value is the documented outbound contract."""
    occurred = event.payload.get("occurred_at")
    message = OutboundEvent(
        notification_id=event.position,
        aggregate_type=event.aggregate_type,  # type: ignore[arg-type]
        aggregate_id=event.aggregate_id,
        version=event.version,
        name=event.name,
        recorded_at=event.recorded_at,
        occurred_at=datetime.fromisoformat(occurred) if isinstance(occurred, str) else None,
        payload=dict(event.payload),
    )
    headers = [
        ("event_type", f"{event.aggregate_type}.{event.name}".encode()),
        ("schema_version", str(OUTBOUND_SCHEMA_VERSION).encode()),
        ("aggregate_id", event.aggregate_id.encode()),
        ("aggregate_version", str(event.version).encode()),
        ("notification_id", str(event.position).encode()),
    ]
    if isinstance(occurred, str):
        headers.append(("business_time", occurred.encode()))
    return key.encode(), message.model_dump_json().encode(), headers


def from_message(value: bytes, position: int) -> LogEvent:
    """The LogEvent a message carries; ``position`` is where it sits in the topic (offset + 1)."""
    message = OutboundEvent.model_validate_json(value)
    return LogEvent(
        position=position,
        aggregate_type=message.aggregate_type,
        aggregate_id=message.aggregate_id,
        version=message.version,
        name=message.name,
        recorded_at=message.recorded_at,
        payload=message.payload,
    )
