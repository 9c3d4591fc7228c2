"""Kafka consumers configured the way every service needs them (producing: ``consumers.publisher``).

confluent-kafka (librdkafka): reading a record costs ~1 µs of CPU in C against ~6 in kafka-python
(bench/PROFILE.md, "Session of 2026-12-04 (Intel, once more)"). The settings every service needs:
nothing committed by itself (positions live in the database; Kafka's committed offsets are for
watching lag), a new group reads from the start, and a transactional producer's aborted records
are never delivered (read_committed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import NamedTuple

from confluent_kafka import Consumer, KafkaException, TopicPartition

from consumers.errors import ConsumersError
from lifecycle.config import Settings

POLL_BATCHES = 4


class Partition(NamedTuple):
    topic: str
    partition: int


class Record(NamedTuple):
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None = None  # read only by a consumer made with headers=True


#: Told the partitions just assigned; answers the offset to start each at, or None when it
#: cannot say yet (then the group's committed offsets apply until ``GroupConsumer.seek``).
OnAssigned = Callable[[list[Partition]], Mapping[Partition, int] | None]
OnRevoked = Callable[[list[Partition]], None]


class GroupConsumer:
    """A member of a consumer group that starts its partitions where it is told, hands over the
    records of a poll by partition, and commits only when asked."""

    def __init__(self, settings: Settings, group_id: str, poll_batches: int = POLL_BATCHES, *,
                 fetch_min_bytes: int = 1, fetch_max_wait_ms: int = 500, headers: bool = False) -> None:
        timeout = settings.group_timeout_ms
        self.headers = headers
        # A poll spreads over the partitions: room for a full batch from several of them, cut
        # back to batches of batch_size by the services.
        self.max_records = settings.batch_size * poll_batches
        self.log = logging.getLogger("librdkafka")
        try:
            self._consumer = Consumer({
                "bootstrap.servers": settings.kafka_bootstrap,
                "group.id": group_id,
                "client.id": f"{group_id}-consumer",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "max.partition.fetch.bytes": 4 * 1024 * 1024,  # a poll's share of a busy partition
                "fetch.min.bytes": fetch_min_bytes,
                "fetch.wait.max.ms": fetch_max_wait_ms,
                "session.timeout.ms": timeout,
                "heartbeat.interval.ms": max(100, timeout // 3),
                "max.poll.interval.ms": max(timeout, 10_000),
                "logger": self.log,
            })
        except KafkaException as e:
            raise ConsumersError(f"cannot configure a Kafka consumer for {settings.kafka_bootstrap}: {e}") from e

    def subscribe(self, topic: str, on_assigned: OnAssigned, on_revoked: OnRevoked) -> None:
        def assign(consumer: Consumer, partitions: list[TopicPartition]) -> None:
            offsets = on_assigned([Partition(p.topic, p.partition) for p in partitions])
            if offsets is not None:
                for p in partitions:
                    p.offset = offsets[Partition(p.topic, p.partition)]
            consumer.assign(partitions)

        def revoke(consumer: Consumer, partitions: list[TopicPartition]) -> None:
            on_revoked([Partition(p.topic, p.partition) for p in partitions])
            consumer.unassign()

        self._consumer.subscribe([topic], on_assign=assign, on_revoke=revoke)

    def assignment(self) -> list[Partition]:
        return [Partition(p.topic, p.partition) for p in self._consumer.assignment()]

    def seek(self, offsets: Mapping[Partition, int]) -> None:
        """Start these partitions (those assigned) again at these offsets; what was fetched
        beyond is dropped. (Assigned again with their offsets: librdkafka's ``seek`` refuses a
        partition whose fetching has not started yet.)"""
        if offsets:
            self._consumer.assign([TopicPartition(p.topic, p.partition, offset) for p, offset in offsets.items()])

    def poll(self, timeout_ms: int) -> dict[Partition, list[Record]]:
        """The records of one poll by partition, in offset order (an assignment may happen in it):
        what has arrived, waiting up to ``timeout_ms`` only while nothing has. (librdkafka's
        ``consume(n, timeout)`` waits until it has ``n`` messages or the time is up: a service
        would sit out the timeout whenever fewer than a full poll were waiting.)"""
        first = self._consumer.poll(timeout_ms / 1000)
        if first is None:
            return {}
        polled: dict[Partition, list[Record]] = {}
        for message in (first, *self._consumer.consume(self.max_records - 1, 0)):
            error = message.error()
            if error is not None:
                if error.fatal():
                    raise ConsumersError(f"Kafka consumer failed: {error}")
                self.log.warning("consume error (retried by the client): %s", error)
                continue
            key = Partition(message.topic(), message.partition())
            records = polled.get(key)
            if records is None:
                records = polled[key] = []
            records.append(Record(message.offset(), message.key(), message.value(),
                                  message.headers() if self.headers else None))
        return polled

    def commit_async(self, offsets: Mapping[Partition, int]) -> None:
        """Kafka's committed offsets, for watching lag only: not waited for, and a commit refused
        (a partition taken away meanwhile, a group rebalancing) is only logged."""
        try:
            self._consumer.commit(offsets=[TopicPartition(p.topic, p.partition, o) for p, o in offsets.items()],
                                  asynchronous=True)
        except KafkaException as e:
            self.log.warning("offset commit refused (lag monitoring only): %s", e)

    def close(self) -> None:
        """Leaves the group at once, so the partitions move without waiting for a timeout."""
        self._consumer.close()

