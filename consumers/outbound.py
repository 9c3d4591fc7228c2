"""LogEvent <-> a ``lifecycle.events`` message (value, key and headers)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, get_args

import orjson

from consumers.errors import ConsumersError
from projections.log import ENTITY_TYPES, DeferredEvent, LogEvent
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
    # Headers to route on without parsing the value: the event's type, and its aggregate and
    # version, by which the projector drops what it holds without decoding it (``from_record``).
    # (Until 2026-12-04 these two and three more, the schema version, notification id and
    # business time, were sent; with kafka-python, which read every header, the five tripled the
    # cost of a record and were dropped. confluent-kafka builds headers only when asked.)
    return key.encode(), value, [
        ("event_type", f"{event.aggregate_type}.{event.name}".encode()),
        ("aggregate_id", event.aggregate_id.encode()),
        ("version", str(event.version).encode()),
    ]


def _contract_json(event: LogEvent, occurred_at: datetime | None) -> bytes | None:
    """The bytes ``OutboundEvent(...).model_dump_json()`` writes for ``event``, written by orjson
    without building the model (which was a sixth of the relay's CPU); None when the event is
    not plainly within the contract, so that the model decides. orjson writes a payload, and an
    aware time whose offset is whole minutes (UTC as ``Z``), exactly as pydantic does: a property
    test compares them."""
    if (
        not _plain_time(event.recorded_at)
        or (occurred_at is not None and not _plain_time(occurred_at))
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
        "recorded_at": event.recorded_at,
        "occurred_at": occurred_at,
        "payload": event.payload,
    }
    try:
        return orjson.dumps(message, option=orjson.OPT_UTC_Z)
    except (orjson.JSONEncodeError, TypeError):
        return None  # a value orjson refuses (an integer beyond 64 bits, a lone surrogate...)


def _plain_time(moment: datetime) -> bool:
    """Whether orjson writes ``moment`` as pydantic does: an aware time in UTC, or at an offset
    of whole minutes other than zero (UTC under another name orjson would not write as ``Z``)."""
    if type(moment) is not datetime:
        return False
    if moment.tzinfo is timezone.utc:
        return True
    offset = moment.utcoffset()
    return offset is not None and bool(offset) and not offset.seconds % 60 and not offset.microseconds


def from_message(value: bytes, position: int) -> LogEvent:
    """The LogEvent a message carries; ``position`` is where it sits in the topic (offset + 1).
    (The model reads a message faster than orjson and checks in Python could: 4.8 against
    6.1 µs.)"""
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


class MessageMismatch(ConsumersError):
    """A message's headers name another event than its value holds."""


def from_record(value: bytes, headers: list[tuple[str, bytes]] | None, position: int) -> LogEvent | DeferredEvent:
    """What the projector takes from a message: a customer's or deal's event as its headers
    name it, decoded only if the runner needs it (``DeferredEvent``); anything else, or a
    message without those headers (an older relay's), decoded now."""
    if headers:
        named = dict(headers)
        try:
            aggregate_type, _, name = named["event_type"].decode().partition(".")
            aggregate_id = named["aggregate_id"].decode()
            version = int(named["version"])
        except (KeyError, ValueError, AttributeError):  # missing, not text, not a number, None
            return from_message(value, position)
        if aggregate_type in ENTITY_TYPES and name:  # a receipt's body is read now (rejections)
            return DeferredEvent(position, aggregate_type, aggregate_id, version, name, value, _decode_deferred)
    return from_message(value, position)


def _decode_deferred(deferred: DeferredEvent) -> LogEvent:
    event = from_message(deferred.body, deferred.position)
    named = (deferred.aggregate_type, deferred.aggregate_id, deferred.version, deferred.name)
    held = (event.aggregate_type, event.aggregate_id, event.version, event.name)
    if held != named:
        raise MessageMismatch(f"the message at offset {deferred.position - 1} is named {named} by its "
                              f"headers but holds {held}")
    return event
