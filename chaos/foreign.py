"""Another producer's messages on ``lifecycle.events`` while the chaos goes on.

None of them is an event the relay sent: four are not the outbound contract, and one is, about
a customer the event store does not hold. ``project`` must set each aside exactly once
(``consumers.unreadable``: the row is written with the step's position, in one transaction) and
go on, through its kills, the terminated connections and the server's crash; the views must
show no such customer (they are compared with an undisturbed run's).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Producer

from consumers.outbound import to_message
from consumers.unreadable import UNREADABLE_MESSAGES
from lifecycle.runtime import Runtime
from projections.log import LogEvent

#: Rounds in a run, spread over the publishing.
ROUNDS = 5

#: A customer's first event in the contract's form, as another producer might write it: the
#: customer is made up, and no store holds it.
STRANGER = to_message(LogEvent(
    position=1, aggregate_type="Customer", aggregate_id=str(uuid.UUID(int=0xC4A05)), version=1,
    name="FirstSeen", recorded_at=datetime(2026, 1, 1, tzinfo=UTC),
    payload={"key": "chaos:stranger", "occurred_at": "2026-01-01T00:00:00+00:00"},
), "chaos:stranger")[1]

#: What one round sends, one message per partition in turn: an error page, bytes that are not
#: UTF-8, JSON that is not the contract, a tombstone, the stranger.
VALUES: tuple[bytes | None, ...] = (
    b"<html>502 Bad Gateway</html>", b"\x00\xff\xfe", b'{"schema_version": 1}', None, STRANGER,
)


class ForeignProducer:
    """Sends rounds of foreign messages and counts what the broker acknowledged."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self.topic, self.partitions = topic, partitions
        self.producer = Producer({"bootstrap.servers": bootstrap, "client.id": "chaos-foreign", "acks": "all"})
        self.sent = 0
        self.failures: list[str] = []

    def send_round(self) -> None:
        for i, value in enumerate(VALUES):
            self.producer.produce(self.topic, value=value, key=b"foreign", partition=i % self.partitions,
                                  on_delivery=self._delivered)
        self.producer.flush(30)

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is None:
            self.sent += 1
        else:
            self.failures.append(str(err))


def set_aside(rt: Runtime, topic: str) -> int:
    """How many messages of ``topic`` ``project`` has set aside."""
    rt.views.create([UNREADABLE_MESSAGES])
    return len(rt.views.rows(UNREADABLE_MESSAGES.name, where={"topic": topic}))
