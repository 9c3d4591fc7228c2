"""Kafka consumers that start where the database says, not where Kafka's committed offsets say.

The database holds each partition's next offset, written in the same transaction as what was
made of the records; Kafka's committed offsets are only for watching lag.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition

from consumers.service import DATABASE_ERRORS


class StoredPositions(ConsumerRebalanceListener):
    """Seeks every assigned partition to its stored position, on assignment and after a failure."""

    def __init__(
        self,
        consumer: KafkaConsumer,
        stored_position: Callable[[TopicPartition], int],
        log: Any,
    ) -> None:
        self.consumer = consumer
        self.stored_position = stored_position
        self.log = log
        self.must_seek = False

    def poll(self, timeout_ms: int) -> dict[TopicPartition, list[Any]]:
        """Records to apply: none while the stored positions could not be read."""
        if self.must_seek:
            self.seek()
        polled = self.consumer.poll(timeout_ms=timeout_ms)
        return {} if self.must_seek else polled  # a rebalance inside poll could not seek

    def seek_later(self) -> None:
        """Seek before the next records are applied (what was fetched may not have been stored)."""
        self.must_seek = True

    def seek(self) -> None:
        for tp in self.consumer.assignment():
            self.consumer.seek(tp, self.stored_position(tp))
        self.must_seek = False

    def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        self.log.info("partitions_revoked", partitions=sorted(tp.partition for tp in revoked))

    def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        # An exception here would fail the poll: if the database cannot say where to start,
        # nothing is applied until a later poll has sought to the stored positions.
        self.must_seek = True
        try:
            self.seek()
        except DATABASE_ERRORS as e:
            self.log.warning("positions_unreadable", error=" ".join(str(e).split()))
        self.log.info("partitions_assigned", partitions=sorted(tp.partition for tp in assigned))
