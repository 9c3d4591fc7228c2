"""Kafka consumers that start where the database says, not where Kafka's committed offsets say.

The database holds each partition's next offset, written in the same transaction as what was
made of the records; Kafka's committed offsets are only for watching lag.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from consumers.clients import GroupConsumer, Partition, Record
from consumers.service import DATABASE_ERRORS


class StoredPositions:
    """Starts every assigned partition at its stored position, on assignment and after a failure."""

    def __init__(
        self,
        consumer: GroupConsumer,
        stored_position: Callable[[Partition], int],
        log: Any,
    ) -> None:
        self.consumer = consumer
        self.stored_position = stored_position
        self.log = log
        self.must_seek = False

    def subscribe(self, topic: str) -> None:
        self.consumer.subscribe(topic, self.on_partitions_assigned, self.on_partitions_revoked)

    def poll(self, timeout_ms: int) -> dict[Partition, list[Record]]:
        """Records to apply: none while the stored positions could not be read."""
        if self.must_seek:
            self.seek()
        polled = self.consumer.poll(timeout_ms=timeout_ms)
        return {} if self.must_seek else polled  # an assignment inside poll could not read them

    def seek_later(self) -> None:
        """Seek before the next records are applied (what was fetched may not have been stored)."""
        self.must_seek = True

    def seek(self) -> None:
        self.consumer.seek({p: self.stored_position(p) for p in self.consumer.assignment()})
        self.must_seek = False

    def on_partitions_revoked(self, revoked: list[Partition]) -> None:
        self.log.info("partitions_revoked", partitions=sorted(p.partition for p in revoked))

    def on_partitions_assigned(self, assigned: list[Partition]) -> Mapping[Partition, int] | None:
        # An exception here would fail the poll: if the database cannot say where to start,
        # nothing is applied until a later poll has sought to the stored positions.
        offsets = None
        try:
            offsets = {p: self.stored_position(p) for p in assigned}
        except DATABASE_ERRORS as e:
            self.log.warning("positions_unreadable", error=" ".join(str(e).split()))
        self.must_seek = offsets is None
        self.log.info("partitions_assigned", partitions=sorted(p.partition for p in assigned))
        return offsets
