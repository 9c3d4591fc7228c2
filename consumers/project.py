"""``lifecycle run project``: lifecycle.events → the views, exactly once.

Each partition's batch is written with ``kafka:<topic>:<partition>`` = next
offset in one view-store transaction; on every assignment the consumer seeks
there. The summary tables are refreshed when the consumer is idle.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from kafka import ConsumerRebalanceListener, TopicPartition
from kafka.structs import OffsetAndMetadata

from consumers import clients
from consumers.outbound import from_message
from consumers.service import DATABASE_ERRORS, Backoff, HealthFile, StopSignal
from lifecycle.runtime import Runtime

REFRESH_SECONDS = 5.0


def position_name(topic: str, partition: int) -> str:
    return f"kafka:{topic}:{partition}"


class _SeekToStoredPosition(ConsumerRebalanceListener):
    def __init__(self, service: ProjectService) -> None:
        self.service = service

    def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        # Another process will write these customers now: never trust our copies again.
        self.service.rt.runner.forget_cached_histories()

    def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        self.service.rt.runner.forget_cached_histories()
        # An exception here would fail the poll; if the database cannot say where to start,
        # nothing is applied until the run loop has sought to the stored positions.
        self.service.must_seek = True
        try:
            self.service.seek_to_stored_positions()
        except DATABASE_ERRORS as e:
            self.service.log.warning("positions_unreadable", error=" ".join(str(e).split()))
        self.service.log.info("partitions_assigned", partitions=sorted(tp.partition for tp in assigned))


class ProjectService:
    def __init__(self, rt: Runtime, log: Any) -> None:
        self.rt = rt
        self.settings = rt.settings
        self.log = log.bind(service="project")
        self.consumer = clients.consumer(self.settings, f"{self.settings.group_prefix}-project")
        self._dirty = False
        self._last_refresh = 0.0
        self.must_seek = False

    def stored_position(self, tp: TopicPartition) -> int:
        return self.rt.views.position(position_name(tp.topic, tp.partition)) or 0

    def seek_to_stored_positions(self) -> None:
        for tp in self.consumer.assignment():
            self.consumer.seek(tp, self.stored_position(tp))
        self.must_seek = False

    def run(self, stop: StopSignal, health: HealthFile) -> None:
        self.consumer.subscribe([self.settings.topic_events], listener=_SeekToStoredPosition(self))
        backoff = Backoff(stop, self.log)
        try:
            while not stop.requested:
                try:
                    self.poll_once()
                except DATABASE_ERRORS as e:
                    # What was fetched but not written is fetched again from the stored positions;
                    # a failed write also cleared the runner's cached histories.
                    self.must_seek = True
                    backoff.failed(e)
                    continue
                backoff.succeeded()
                health.beat()
        finally:
            self.consumer.close()

    def poll_once(self) -> None:
        if self.must_seek:
            self.seek_to_stored_positions()
        polled = self.consumer.poll(timeout_ms=1000)
        for tp, records in polled.items():
            if self.must_seek:
                return  # a rebalance inside poll could not read the positions
            self.apply(tp, records)
        if self._dirty and (not polled or time.monotonic() - self._last_refresh > REFRESH_SECONDS):
            self.rt.runner.refresh_summaries()
            self._dirty, self._last_refresh = False, time.monotonic()

    def apply(self, tp: TopicPartition, records: Sequence[Any]) -> None:
        """1. decode (position = offset + 1)  2. views + position in one transaction  3. Kafka commit (lag only)"""
        name = position_name(tp.topic, tp.partition)
        stored = self.rt.views.position(name) or 0
        fresh = [r for r in records if r.offset + 1 > stored]
        if not fresh:
            return
        # 1. decode
        events = [from_message(r.value, r.offset + 1) for r in fresh]
        # 2. one transaction (an event whose aggregate version is already applied is ignored)
        self.rt.runner.apply(events, expected_position=stored or None, consumer=name)
        self._dirty = True
        # 3. monitoring only
        self.consumer.commit({tp: OffsetAndMetadata(events[-1].position, "", -1)})
        self.log.info("batch_projected", partition=tp.partition, next_offset=events[-1].position, count=len(events))
