"""``lifecycle run project``: lifecycle.events → the views, exactly once.

Each partition's batch is written with ``kafka:<topic>:<partition>`` = next
offset in one view-store transaction; on every assignment the consumer seeks
there. The summary tables are refreshed when the consumer is idle.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from consumers.clients import GroupConsumer, Partition
from consumers.outbound import from_record
from consumers.positions import StoredPositions
from consumers.service import HealthFile, StopSignal, run_until_stopped
from lifecycle.runtime import Runtime

REFRESH_SECONDS = 5.0


def position_name(topic: str, partition: int) -> str:
    return f"kafka:{topic}:{partition}"


class ProjectService:
    # Its view-store writes (views, rejections, summaries and each partition's position, in one
    # transaction) are redone after a lost commit, from the older position in Kafka.
    VIEWS_SYNCHRONOUS_COMMIT = False

    def __init__(self, rt: Runtime, log: Any) -> None:
        self.rt = rt
        self.settings = rt.settings
        self.log = log.bind(service="project")
        # Bigger steps while events pour in: a step re-derives every customer it touches from its
        # whole history, so a step costs by its customers more than by its events (110k events
        # through the runner: 30 s in steps of 500, 21 s in 2,000, 12 s in 10,000). A poll may
        # return 20 batches, and the broker waits up to 300 ms to gather half a MiB.
        self.consumer = GroupConsumer(
            self.settings, f"{self.settings.group_prefix}-project", poll_batches=20,
            fetch_min_bytes=512 * 1024, fetch_max_wait_ms=300, headers=True,
        )
        self._dirty = False
        self._last_refresh = 0.0
        # After a rebalance another process may have written these partitions: the runner drops
        # its cached histories when a stored position is not the one it last wrote itself.
        self.positions = StoredPositions(self.consumer, self.stored_position, self.log)

    def stored_position(self, tp: Partition) -> int:
        return self.rt.views.position(position_name(tp.topic, tp.partition)) or 0

    def run(self, stop: StopSignal, health: HealthFile) -> None:
        self.positions.subscribe(self.settings.topic_events)
        try:
            # After a database failure, what was fetched but not written is fetched again (a
            # failed write also cleared the runner's cached histories).
            run_until_stopped(stop, health, self.log, self.poll_once, after_failure=self.after_failure)
        finally:
            self.consumer.close()

    def after_failure(self) -> None:
        self.positions.seek_later()
        self.rt.replace_broken_connections()

    def poll_once(self) -> None:
        polled = self.positions.poll(timeout_ms=1000)
        for tp, records in polled.items():
            self.apply(tp, records)
        if self._dirty and (not polled or time.monotonic() - self._last_refresh > REFRESH_SECONDS):
            self.rt.runner.refresh_summaries()
            self._dirty, self._last_refresh = False, time.monotonic()

    def apply(self, tp: Partition, records: Sequence[Any]) -> None:
        """1. read (position = offset + 1; an entity's event is decoded only if the runner
              lacks its version)  2. views + position in one transaction  3. Kafka commit (lag only)"""
        name = position_name(tp.topic, tp.partition)
        stored = self.rt.views.position(name) or 0
        fresh = [r for r in records if r.offset + 1 > stored]
        if not fresh:
            return
        # 1. read
        events = [from_record(r.value, r.headers, r.offset + 1) for r in fresh]
        # 2. one transaction (an event whose aggregate version is already applied is ignored)
        self.rt.runner.apply(events, expected_position=stored or None, consumer=name)
        self._dirty = True
        # 3. monitoring only: not waited for (a failed commit is made good by the next one)
        self.consumer.commit_async({tp: events[-1].position})
        self.log.info("batch_projected", partition=tp.partition, next_offset=events[-1].position, count=len(events))
