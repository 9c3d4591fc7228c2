"""LogEvent <-> a ``lifecycle.events`` message (value, key and headers)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, get_args

import orjson

from projections.log import LogEvent
from schemas.outbound import OUTBOUND_SCHEMA_VERSION, OutboundEvent

_AGGREGATE_TYPES = frozenset(get_args(OutboundEvent.model_fields["aggregate_type"].annotation))


def to_message(event: LogEvent, key: str) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """(key, value, headers) for one event; the value is the documented outbound contract."""
    occurred = event.payload.get("occurred_at")
    occurred_at = datetime.fromisoformat(occurred) if isinstance(occurred, str) else None
    value = _contract_json(event, occurred_at)
    if value is None:  # the model decides, and refuses what the contract does not allow
        value = OutboundEvent(
            notification_id=event.position,
            aggregate_type=event.aggregate_type,  # type: ignore[arg-type]
            aggregate_id=event.aggregate_id,
            version=event.version,
            name=event.name,
            recorded_at=event.recorded_at,
            occurred_at=occurred_at,
            payload=dict(event.payload),
        ).model_dump_json().encode()
    headers = [
        ("event_type", f"{event.aggregate_type}.{event.name}".encode()),
        ("schema_version", str(OUTBOUND_SCHEMA_VERSION).encode()),
        ("aggregate_id", event.aggregate_id.encode()),
        ("aggregate_version", str(event.version).encode()),
        ("notification_id", str(event.position).encode()),
    ]
    if isinstance(occurred, str):
        headers.append(("business_time", occurred.encode()))
    return key.encode(), value, headers


def _contract_json(event: LogEvent, occurred_at: datetime | None) -> bytes | None:
    """The bytes ``OutboundEvent(...).model_dump_json()`` writes for ``event``, written by orjson
    without building the model (which was a sixth of the relay's CPU); None when the event is
    not plainly within the contract, so that the model decides. orjson writes a payload exactly
    as pydantic does (a property test compares them); times are written as pydantic writes
    them."""
    recorded_at = _contract_time(event.recorded_at)
    occurred_text = None if occurred_at is None else _contract_time(occurred_at)
    if (
        recorded_at is None
        or (occurred_at is not None and occurred_text is None)
        or event.aggregate_type not in _AGGREGATE_TYPES
        or not 0 < len(event.aggregate_id) <= 64
        or not 0 < len(event.name) <= 64
        or type(event.position) is not int or event.position < 1
        or type(event.version) is not int or event.version < 1
    ):
        return None
    message: dict[str, Any] = {
        "schema_version": OUTBOUND_SCHEMA_VERSION,
        "notification_id": event.position,
        "aggregate_type": event.aggregate_type,
        "aggregate_id": event.aggregate_id,
        "version": event.version,
        "name": event.name,
        "recorded_at": recorded_at,
        "occurred_at": occurred_text,
        "payload": event.payload,
    }
    try:
        return orjson.dumps(message)
    except (orjson.JSONEncodeError, TypeError):
        return None  # a value orjson refuses (an integer beyond 64 bits, a lone surrogate...)


def _contract_time(moment: datetime) -> str | None:
    """An aware time as pydantic writes it: ISO 8601, UTC as ``Z``; None for a naive time or an
    offset of seconds (left to the model)."""
    offset = moment.utcoffset() if type(moment) is datetime else None
    if offset is None or offset.seconds % 60 or offset.microseconds:
        return None
    text = moment.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


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
