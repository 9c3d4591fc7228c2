"""``lifecycle run relay``: the store's notification log → lifecycle.events, at least once.

The relay's position (the last notification id the broker acknowledged) is
kept in the view store's positions table: it is recorded only after every
message of the batch was acknowledged, so a crash re-sends, never skips. The
``project`` consumer ignores an aggregate version it has already applied, so
a re-send changes nothing downstream.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from consumers.outbound import to_message
from consumers.publisher import Publisher
from consumers.service import HealthFile, StopSignal, run_until_stopped
from lifecycle import ids
from lifecycle.lookup import notifications_after
from lifecycle.runtime import Runtime
from projections.log import EngineLogSource, LogEvent
from projections.store import ViewChange

POLL_SECONDS = 0.1  # idle: how soon a new event leaves (a position read, ten a second)
PAGE = 5000  # notifications per round: one read, one flush, one position write


class RelayService:
    # Its view-store writes (its position, the seals) are redone after a lost commit: the page
    # is sent and sealed again from the older position, and the seals come out the same.
    VIEWS_SYNCHRONOUS_COMMIT = False

    def __init__(self, rt: Runtime, log: Any) -> None:
        self.rt = rt
        self.settings = rt.settings
        self.log = log.bind(service="relay")
        self.publisher = Publisher(self.settings.kafka_bootstrap, "lifecycle-relay")
        self.consumer_name = f"relay:{self.settings.topic_events}"
        self._deal_customers: dict[str, str] = {}
        self.source = EngineLogSource(rt.engine)

    def run(self, stop: StopSignal, health: HealthFile) -> None:
        def step() -> None:
            if not self.relay_once():
                stop.wait(POLL_SECONDS)

        try:
            # After a database failure the stored position has not moved: the page is sent again.
            run_until_stopped(stop, health, self.log, step, after_failure=self.rt.replace_broken_connections)
        finally:
            self.publisher.close()

    def relay_once(self) -> int:
        """1. read notifications after the stored position
        2. send each, keyed by customer id, and wait for every acknowledgement
        3. record the position
        4. seal what was sent, from the rows already read (tamper evidence follows the log in
           commit order too); a sealer that is behind (a crash between 3 and 4) reads the log
        """
        # 1. read
        position = self.rt.views.position(self.consumer_name) or 0
        rows = notifications_after(self.rt.engine.recorder, position, PAGE)
        if not rows:
            self.rt.sealer.seal()  # idle: nothing is left unsealed
            return 0
        events = self.source.events_of(rows)
        # 2. send and wait (raises if the broker did not acknowledge: position not recorded)
        self.publisher.publish(self.settings.topic_events, (to_message(e, self.key_of(e)) for e in events))
        # 3. record
        last = events[-1].position
        self.rt.views.write(ViewChange(consumer=self.consumer_name, position=last))
        # 4. seal
        sealed = self.rt.sealer.position()
        if sealed == position:
            self.rt.sealer.seal_page(position, rows)
        elif sealed < position:
            self.rt.sealer.seal()
        self.log.info("relayed", count=len(events), position=last)
        return len(events)

    def key_of(self, event: LogEvent) -> str:
        """The customer id, so one customer's events stay in order on one partition."""
        if event.aggregate_type == "Customer":
            return event.aggregate_id
        if event.aggregate_type == "Deal":
            if event.name == "FirstSeen":
                self._deal_customers[event.aggregate_id] = event.payload["customer_id"]
            customer = self._deal_customers.get(event.aggregate_id)
            if customer is None:
                deal = self.rt.engine.repository.get(UUID(event.aggregate_id))
                customer = self._deal_customers[event.aggregate_id] = deal.customer_id
            return customer
        subject = event.payload.get("subject")
        return str(ids.customer_id(subject)) if subject else event.aggregate_id
