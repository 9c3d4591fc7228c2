"""``lifecycle.events`` messages the projector could not read, kept with why and their bytes.

The relay writes every message of ``lifecycle.events``, so one that is not the outbound contract
(another producer's, a broken relay's, damaged on its way) is rare; ``project`` must not stop at
it, nor read it again for ever. It sets the message aside in the same transaction as the step
that passed it, here, and goes on. The views lose nothing the event store holds: when the
message's headers name a stored event, that event is read from the event store in its place
(``recovered``). A message without usable headers names nothing to recover: if it was the
relay's, its entity's next version shows the gap and the runner reads the entity from the store
again; only an entity's last version lost so waits for that (or for ``lifecycle projections
rebuild``). The row tells an operator where it was.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from consumers.clients import Record
from projections.store.tables import Column, Table

UNREADABLE_MESSAGES = Table(
    "unreadable_messages",
    (
        Column("topic", "text", "Kafka topic", False),
        Column("kafka_partition", "int", "Kafka partition", False),
        Column("kafka_offset", "int", "Offset of the message in its partition", False),
        Column("reason", "text", "Why it could not be read, in one line", False),
        Column("headers", "json", "The message's headers as [name, text] pairs", False),
        Column("value", "text", "The value as text (invalid UTF-8 and NUL replaced)", False),
        Column("value_base64", "text", "The value, exactly, base64", False),
        Column("recovered", "bool", "The event its headers name was read from the event store instead", False),
        Column("seen_at", "timestamp", "When project set it aside", False),
    ),
    key=("topic", "kafka_partition", "kafka_offset"),
    description="lifecycle.events messages that project could not read and went past.",
    internal=True,
)


def unreadable_row(topic: str, partition: int, record: Record, reason: str, recovered: bool) -> dict[str, Any]:
    value = record.value or b""
    return {
        "topic": topic,
        "kafka_partition": partition,
        "kafka_offset": record.offset,
        "reason": reason,
        "headers": [[name, _text(raw or b"")] for name, raw in record.headers or []],
        "value": _text(value),
        "value_base64": base64.b64encode(value).decode("ascii"),
        "recovered": recovered,
        "seen_at": datetime.now(UTC),
    }


def _text(raw: bytes) -> str:
    # PostgreSQL text and jsonb cannot hold NUL; the exact bytes stay in value_base64.
    return raw.decode("utf-8", errors="replace").replace("\x00", "\ufffd")
