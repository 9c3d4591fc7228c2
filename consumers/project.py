"""``lifecycle run project``: lifecycle.events → the views, exactly once.

Each partition's batch is written with ``kafka:<topic>:<partition>`` = next
offset in one view-store transaction; on every assignment the consumer seeks
there. A message that is not the outbound contract, or that names a customer's
or deal's event the event store does not hold, is set aside in that transaction
(``consumers.unreadable``) and the partition goes on. The summary tables are
refreshed when the consumer is idle.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from consumers.clients import GroupConsumer, Partition, Record
from consumers.outbound import UnreadableMessage, from_record, named_event
from consumers.positions import StoredPositions
from consumers.service import HealthFile, StopSignal, run_until_stopped
from consumers.unreadable import UNREADABLE_MESSAGES, unreadable_row
from lifecycle.runtime import Runtime
from projections.log import DeferredEvent, LogEvent

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
        # Made by the first step, not here: a database failure while the service starts would end
        # the process, where a step's failure is waited out and the step done again.
        self._unreadable_table = False
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

    def apply(self, tp: Partition, records: Sequence[Record]) -> None:
        """1. read (position = offset + 1; an entity's event is decoded only if the runner
              lacks its version); a message that is not the contract is set aside
              (``_set_aside``)
           2. views, set-aside messages and position in one transaction; an entity's event
              that the runner finds unreadable when it decodes it is set aside too, and the
              step is done again; one the event store does not hold where the runner reads it
              (another producer's message in the contract's form) is set aside in the step
           3. Kafka commit (lag only)"""
        if not self._unreadable_table:
            self.rt.views.create([UNREADABLE_MESSAGES])
            self._unreadable_table = True
        name = position_name(tp.topic, tp.partition)
        stored = self.rt.views.position(name) or 0
        fresh = [r for r in records if r.offset + 1 > stored]
        if not fresh:
            return
        # 1. read
        events: dict[int, LogEvent | DeferredEvent | None] = {}  # by position; None: set aside
        set_aside: list[dict[str, Any]] = []
        for r in fresh:
            try:
                events[r.offset + 1] = from_record(r.value, r.headers, r.offset + 1)
            except UnreadableMessage as e:
                events[r.offset + 1] = self._set_aside(tp, r, e, set_aside)
        end = fresh[-1].offset + 1
        # 2. one transaction (an event whose aggregate version is already applied is ignored).
        # The runner decodes a deferred event only when it lacks its version; one it cannot
        # decode is set aside and the step done again (a failed step writes nothing).
        def set_aside_at(error: UnreadableMessage) -> None:
            record = next(r for r in fresh if r.offset + 1 == error.position)
            events[error.position] = self._set_aside(tp, record, error, set_aside)

        def unstored(found: list[LogEvent | DeferredEvent]) -> None:
            for event in found:
                set_aside_at(UnreadableMessage(event.position, (
                    f"names version {event.version} of {event.aggregate_type} {event.aggregate_id}, "
                    "which the event store does not hold")))

        while True:
            try:
                self.rt.runner.apply([e for e in events.values() if e is not None],
                                     expected_position=stored or None, consumer=name, position=end,
                                     append={UNREADABLE_MESSAGES.name: set_aside}, on_unstored=unstored)
                break
            except UnreadableMessage as e:
                if type(events.get(e.position)) is not DeferredEvent:
                    raise  # not one of this step's deferred events: a fault, not a message
                set_aside_at(e)
        self._dirty = True
        # 3. monitoring only: not waited for (a failed commit is made good by the next one)
        self.consumer.commit_async({tp: end})
        self.log.info("batch_projected", partition=tp.partition, next_offset=end, count=len(fresh))

    def _set_aside(self, tp: Partition, record: Record, error: UnreadableMessage,
                   set_aside: list[dict[str, Any]]) -> LogEvent | None:
        """A row for ``unreadable_messages``, and the stored event the message's headers name,
        read from the event store (None when they name none)."""
        named = named_event(record.headers)
        recovered = None
        if named is not None:
            aggregate_type, aggregate_id, version, _ = named
            stored = self.rt.runner.source.histories_of([aggregate_id]).get(aggregate_id, [])
            recovered = next((event._replace(position=error.position) for event in stored
                              if event.version == version and event.aggregate_type == aggregate_type), None)
        set_aside.append(unreadable_row(tp.topic, tp.partition, record, error.reason, recovered is not None))
        self.log.warning("message_unreadable", partition=tp.partition, offset=record.offset,
                         reason=error.reason, recovered=recovered is not None)
        return recovered
