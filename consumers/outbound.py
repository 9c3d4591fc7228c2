"""LogEvent <-> a ``lifecycle.events`` message (value, key and headers)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, get_args

import orjson
from pydantic import ValidationError

from consumers.errors import ConsumersError
from projections.log import ENTITY_TYPES, DeferredEvent, LogEvent
from schemas.outbound import OUTBOUND_SCHEMA_VERSION, OutboundEvent
from schemas.parse import describe_problems

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


class UnreadableMessage(ConsumersError):
    """A ``lifecycle.events`` message that is not an event of the outbound contract, or whose
    headers name another event than its value holds; ``position`` is its offset + 1."""

    def __init__(self, position: int, reason: str) -> None:
        super().__init__(f"the message at offset {position - 1} {reason}")
        self.position = position
        self.reason = reason


def from_message(value: bytes | None, position: int) -> LogEvent:
    """The LogEvent a message carries; ``position`` is where it sits in the topic (offset + 1).
    Raises ``UnreadableMessage`` when the value is not the contract.
    (The model reads a message faster than orjson and checks in Python could: 4.8 against
    6.1 µs.)"""
    if value is None:
        raise UnreadableMessage(position, "has no value")
    try:
        message = OutboundEvent.model_validate_json(value)
    except ValidationError as e:
        raise UnreadableMessage(position, f"is not a lifecycle.events message: {describe_problems(e)}") from e
    return LogEvent(
        position=position,
        aggregate_type=message.aggregate_type,
        aggregate_id=message.aggregate_id,
        version=message.version,
        name=message.name,
        recorded_at=message.recorded_at,
        payload=message.payload,
    )


class MessageMismatch(UnreadableMessage):
    """A message's headers name another event than its value holds."""


def named_event(headers: list[tuple[str, bytes]] | None) -> tuple[str, str, int, str] | None:
    """The event the relay's headers name, as DeferredEvent holds it: (aggregate type, aggregate
    id, version, name); None without them (an older relay's message, or not the relay's) or
    when they are not usable."""
    if not headers:
        return None
    named = dict(headers)
    try:
        aggregate_type, _, name = named["event_type"].decode().partition(".")
        return aggregate_type, named["aggregate_id"].decode(), int(named["version"]), name
    except (KeyError, ValueError, AttributeError):  # missing, not text, not a number, None
        return None


def from_record(value: bytes | None, headers: list[tuple[str, bytes]] | None,
                position: int) -> LogEvent | DeferredEvent:
    """What the projector takes from a message: a customer's or deal's event as its headers
    name it, decoded only if the runner needs it (``DeferredEvent``); anything else, or a
    message without those headers (an older relay's), decoded now. Decoding raises
    ``UnreadableMessage`` for a value that is not the contract."""
    named = named_event(headers)
    # A receipt's body is read now: it makes the rejections.
    if named is not None and named[0] in ENTITY_TYPES and named[3] and value is not None:
        return DeferredEvent(position, *named, value, _decode_deferred)
    return from_message(value, position)


def _decode_deferred(deferred: DeferredEvent) -> LogEvent:
    event = from_message(deferred.body, deferred.position)
    named = (deferred.aggregate_type, deferred.aggregate_id, deferred.version, deferred.name)
    held = (event.aggregate_type, event.aggregate_id, event.version, event.name)
    if held != named:
        raise MessageMismatch(deferred.position, f"is named {named} by its headers but holds {held}")
    return event
