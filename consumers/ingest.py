"""``lifecycle run ingest``: lifecycle.inbound → the engine, exactly once.

The database, not Kafka, holds the position: each partition's batch is applied
in one transaction together with ``kafka:<topic>:<partition>`` = next offset,
and on every assignment the consumer seeks there. Kafka's committed offsets
are written afterwards only so that lag can be watched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import Tracking

from consumers.clients import GroupConsumer, Partition
from consumers.positions import StoredPositions
from consumers.publisher import Message, Publisher
from consumers.service import HealthFile, StopSignal, run_until_stopped
from lifecycle.engine import LifecycleEngine
from lifecycle.runtime import Runtime
from schemas import Rejection, parse


def tracking_name(topic: str, partition: int) -> str:
    return f"kafka:{topic}:{partition}"


class IngestService:
    # Nothing ingest writes is redone from a log (it writes the log: the events, in the event
    # store, and the keys, in the key store, both always waiting for the disk): its view store
    # waits for the disk too.
    VIEWS_SYNCHRONOUS_COMMIT = True

    def __init__(self, rt: Runtime, log: Any) -> None:
        self.rt = rt
        self.engine: LifecycleEngine = rt.engine
        self.settings = rt.settings
        self.log = log.bind(service="ingest")
        self.consumer = GroupConsumer(self.settings, f"{self.settings.group_prefix}-ingest")
        self.dead_letters = Publisher(self.settings.kafka_bootstrap, "lifecycle-ingest-dlq")
        self.positions = StoredPositions(self.consumer, self.stored_position, self.log)

    def stored_position(self, tp: Partition) -> int:
        return self.engine.recorder.max_tracking_id(tracking_name(tp.topic, tp.partition)) or 0

    def run(self, stop: StopSignal, health: HealthFile) -> None:
        self.positions.subscribe(self.settings.topic_inbound)
        try:
            # After a database failure, what was fetched but not stored is fetched again.
            run_until_stopped(stop, health, self.log, self.poll_once, after_failure=self.after_failure)
        finally:
            # Leave the group at once so the partitions move without waiting for a timeout.
            self.consumer.close()
            self.dead_letters.close()

    def after_failure(self) -> None:
        self.positions.seek_later()
        self.rt.replace_broken_connections()

    def poll_once(self) -> None:
        for tp, records in self.positions.poll(timeout_ms=1000).items():
            for start in range(0, len(records), self.settings.batch_size):
                self.apply(tp, records[start:start + self.settings.batch_size])

    def apply(self, tp: Partition, records: Sequence[Any]) -> None:
        """1. publish malformed events to the dead-letter topic (at least once, before the commit)
        2. apply the batch and store the next offset in ONE database transaction
        3. commit the offset to Kafka too, for lag monitoring only
        """
        name = tracking_name(tp.topic, tp.partition)
        next_offset = records[-1].offset + 1
        if self.engine.recorder.has_tracking_id(name, next_offset):
            return  # a redelivery of what the database already holds
        parsed = [parse(bytes(r.value or b"")) for r in records]
        # 1. dead letters first: after a crash they are sent again, never lost
        dead: list[Message] = [
            (record.key, item.raw, [
                ("reason", item.reason.encode()),
                ("source_topic", tp.topic.encode()),
                ("source_partition", str(tp.partition).encode()),
                ("source_offset", str(record.offset).encode()),
            ])
            for record, item in zip(records, parsed, strict=True) if isinstance(item, Rejection)
        ]
        if dead:  # sent at once, not after a linger; raises if the broker did not acknowledge
            self.dead_letters.publish(self.settings.topic_rejected, dead)
        # 2. one transaction
        result = self.engine.ingest_parsed(parsed, tracking=Tracking(name, next_offset), position_checked=True)
        # 3. monitoring only: not waited for (a failed commit is made good by the next one)
        self.consumer.commit_async({tp: next_offset})
        self.log.info(
            "batch_applied", partition=tp.partition, next_offset=next_offset, accepted=result.accepted,
            duplicates=result.duplicates, rejected=result.rejected, dead_lettered=len(dead),
        )
