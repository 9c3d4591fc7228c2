"""Another producer's messages on ``lifecycle.events`` while the chaos goes on.

None of them is the outbound contract, and none names an event, so ``project`` must set each
aside exactly once (``consumers.unreadable``: the row is written with the step's position, in one
transaction) and go on, through its kills, the terminated connections and the server's crash.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import Producer

from consumers.unreadable import UNREADABLE_MESSAGES
from lifecycle.runtime import Runtime

#: Rounds in a run, spread over the publishing.
ROUNDS = 5

#: What one round sends, one message per partition in turn: an error page, bytes that are not
#: UTF-8, JSON that is not the contract, a tombstone.
VALUES: tuple[bytes | None, ...] = (b"<html>502 Bad Gateway</html>", b"\x00\xff\xfe", b'{"schema_version": 1}', None)


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
