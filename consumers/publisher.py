"""Producing to Kafka, at least once: confluent-kafka (librdkafka), not kafka-python.

kafka-python's producer spends ~13 µs of CPU per record in Python (its checks, partitioner and
record accumulator, and a future per record), most of the relay's CPU; librdkafka does the same
work in C for ~2 µs (bench/PROFILE.md, "Session of 2026-12-04 (Intel, once more)"). The
consumers are librdkafka's too (``consumers.clients``); kafka-python only creates the topics.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from confluent_kafka import KafkaException, Producer

from consumers.errors import ConsumersError

#: (key, value, headers) of one message.
Message = tuple[bytes | None, bytes, list[tuple[str, bytes]]]

ACK_TIMEOUT_S = 60.0  # how long ``publish`` waits for the broker's acknowledgements
QUEUE_FULL_WAIT_S = 0.1


class PublishError(ConsumersError):
    """Messages were not acknowledged by the broker; whoever published them must not record
    them as sent (they may still arrive: at-least-once)."""


class Publisher:
    """An idempotent producer (acks=all, retries, order kept per partition) whose ``publish``
    returns only once the broker acknowledged every message given."""

    def __init__(self, bootstrap: str, client_id: str, *, linger_ms: int = 20,
                 ack_timeout_s: float = ACK_TIMEOUT_S) -> None:
        self.bootstrap = bootstrap
        self.ack_timeout_s = ack_timeout_s
        try:
            self._producer = Producer({
                "bootstrap.servers": bootstrap,
                "client.id": client_id,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": linger_ms,
                # The Java client's partitioner (murmur2 of the key), as kafka-python's default:
                # librdkafka's own (CRC32) would move every customer to another partition.
                "partitioner": "murmur2_random",
                # Its log lines go through the standard library, as kafka-python's did.
                "logger": logging.getLogger("librdkafka"),
            })
        except KafkaException as e:
            raise ConsumersError(f"cannot configure a Kafka producer for {bootstrap}: {e}") from e

    def publish(self, topic: str, messages: Iterable[Message]) -> int:
        """Every message on ``topic``, acknowledged; the number sent.

        1. queue each message (waiting for room when librdkafka's queue is full)
        2. flush: wait until each is acknowledged or has failed, up to ``ack_timeout_s``
        3. raise ``PublishError`` if one failed or is still unacknowledged
        """
        failures: list[str] = []

        def delivered(error: object, _message: object) -> None:
            if error is not None:
                failures.append(str(error))

        queued = 0
        try:
            for key, value, headers in messages:  # 1.
                while True:
                    try:
                        self._producer.produce(topic, value=value, key=key, headers=headers,
                                               on_delivery=delivered)
                        break
                    except BufferError:  # its queue is full: deliveries make room
                        self._producer.poll(QUEUE_FULL_WAIT_S)
                queued += 1
            unacknowledged = self._producer.flush(self.ack_timeout_s) if queued else 0  # 2.
        except KafkaException as e:  # a message the broker can never take (too large, bad topic)
            raise PublishError(f"cannot publish to {topic} at {self.bootstrap}: {e}") from e
        if failures or unacknowledged:  # 3.
            shown = "; ".join(sorted(set(failures))[:3]) or "no answer"
            raise PublishError(
                f"{len(failures) + unacknowledged} of {queued} messages to {topic} at {self.bootstrap} "
                f"not acknowledged within {self.ack_timeout_s:g}s ({shown})")
        return queued

    def close(self, timeout_s: float = 10.0) -> None:
        """Waits up to ``timeout_s`` for what is still queued (``publish`` leaves nothing queued
        unless it raised)."""
        self._producer.flush(timeout_s)
