"""The Customer aggregate: records facts and the stage transitions they cause.

A command checks the rules first (``lifecycle.rules.decide``), then records a
past-tense fact event, then the StageChanged event the fact caused, if any.
A refused command raises RuleViolation before anything is recorded.
"""

from __future__ import annotations

import sys
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

from eventsourcing.domain import Aggregate

from lifecycle.errors import RuleViolation
from lifecycle.rules import SWEEP, Fact, Progress, Transition, advance, decide, shared_day
from lifecycle.stages import StageModel

#: The shape of ``Customer.snapshot_state``: raise it whenever the state, or what an event does
#: to it, changes; stored snapshots of another format are then ignored (``lifecycle.snapshots``).
SNAPSHOT_FORMAT = 1


class Customer(Aggregate):
    class FirstSeen(Aggregate.Created):
        key: str
        stage: str
        occurred_at: datetime
        source: str
        inbound_id: str

    class FactRecorded(Aggregate.Event):
        """Base of every fact event; ``kind`` names the fact for the rules."""

        KIND: ClassVar[str] = ""
        occurred_at: datetime
        source: str
        inbound_id: str
        data: dict[str, Any]

        def apply(self, aggregate: Aggregate) -> None:
            assert isinstance(aggregate, Customer)
            aggregate._absorb(self.fact())

        def fact(self) -> Fact:
            return Fact(self.KIND, self.occurred_at, self.source, self.inbound_id, self.data)

    class Registered(FactRecorded):
        KIND = "registered"

    class ProfileUpdated(FactRecorded):
        KIND = "profile_updated"

    class ConsentChanged(FactRecorded):
        KIND = "consent_changed"

    class InteractionRecorded(FactRecorded):
        KIND = "interaction"

    class LeadQualified(FactRecorded):
        KIND = "qualification"

    class StageChangeRequested(FactRecorded):
        KIND = "stage_requested"

    class PurchaseRecorded(FactRecorded):
        KIND = "purchase"

    class RefundRecorded(FactRecorded):
        KIND = "refund"

    class FeedbackSubmitted(FactRecorded):
        KIND = "feedback"

    class ReferralMade(FactRecorded):
        KIND = "referral"

    class TicketOpened(FactRecorded):
        KIND = "ticket_opened"

    class TicketResolved(FactRecorded):
        KIND = "ticket_resolved"

    class DealOpenedRecorded(FactRecorded):
        KIND = "deal_opened"

    class DealWonRecorded(FactRecorded):
        KIND = "deal_won"

    class InactivityObserved(FactRecorded):
        KIND = "sweep"

    class ErasureRequested(FactRecorded):
        KIND = "erasure_requested"

    class Erased(FactRecorded):
        """Personal data was erased (its key destroyed); the event itself holds none."""

        KIND = "erased"

    class StageChanged(Aggregate.Event):
        from_stage: str
        to_stage: str
        reason: str
        trigger: str
        occurred_at: datetime
        source: str
        inbound_id: str

        def apply(self, aggregate: Aggregate) -> None:
            assert isinstance(aggregate, Customer)
            aggregate.progress = advance(aggregate.progress, _NO_FACT, self.transition())

        def transition(self) -> Transition:
            return Transition(
                self.from_stage, self.to_stage, self.reason, self.trigger, self.occurred_at
            )

    def __init__(
        self, key: str, stage: str, occurred_at: datetime, source: str, inbound_id: str
    ) -> None:
        self.key = key
        self.progress = Progress(stage=stage, stage_since=occurred_at, last_activity_at=occurred_at)
        self.paid: dict[str, tuple[Decimal, str]] = {}
        self.refunded: dict[str, Decimal] = {}
        self.erasure_requested = False
        self.erased = False

    @property
    def stage(self) -> str:
        return self.progress.stage

    # -- commands -------------------------------------------------------------

    def record(self, model: StageModel, fact: Fact) -> Transition | None:
        """Record ``fact`` and the transition it causes; refuse it whole if a rule says no.

        1. check the rules (raises RuleViolation, nothing recorded)
        2. record the fact
        3. record the transition it caused, if any
        """
        # 1. check
        if fact.kind == "refund":
            self._check_refund(fact)
        transition = decide(model, self.progress, fact)
        # 2. record the fact
        self.trigger_event(
            FACT_EVENTS[fact.kind],
            occurred_at=fact.occurred_at,
            source=fact.source,
            inbound_id=fact.inbound_id,
            data=dict(fact.data),
        )
        # 3. record the transition
        if transition is not None:
            self._record_transition(transition, fact)
        return transition

    def sweep(self, model: StageModel, fact: Fact) -> Transition | None:
        """Mark the customer churned if inactive past the model's threshold at ``fact``'s time.

        Records nothing when the customer is active or has no edge to follow, so
        that repeated sweeps leave no trace.
        """
        assert fact.kind == "sweep"
        transition = decide(model, self.progress, fact)
        if transition is None or transition.trigger != SWEEP:
            return None
        self.trigger_event(
            Customer.InactivityObserved,
            occurred_at=fact.occurred_at,
            source=fact.source,
            inbound_id=fact.inbound_id,
            data=dict(fact.data),
        )
        self._record_transition(transition, fact)
        return transition

    # -- snapshots -----------------------------------------------------------------

    def snapshot_state(self) -> dict[str, Any]:
        """Everything the rules and a reload need, as plain values: the engine stores it every
        few events so that reloading a long-lived customer replays only the events after it."""
        p = self.progress
        return {
            "format": SNAPSHOT_FORMAT,
            "id": self.id,
            "version": self.version,
            "created_on": self.created_on,
            "modified_on": self.modified_on,
            "key": self.key,
            "stage": p.stage,
            "stage_since": p.stage_since,
            "last_activity_at": p.last_activity_at,
            "purchase_days": sorted(p.purchase_days),
            "orders": sorted(p.orders),
            "paid": {order: [amount, currency] for order, (amount, currency) in self.paid.items()},
            "refunded": dict(self.refunded),
            "erasure_requested": self.erasure_requested,
            "erased": self.erased,
        }

    @classmethod
    def from_snapshot_state(cls, state: dict[str, Any]) -> Customer | None:
        """The customer as it was when ``state`` was taken; None for another format (the
        caller then replays the whole history)."""
        if state.get("format") != SNAPSHOT_FORMAT:
            return None
        customer = object.__new__(cls)
        paid = {order: (amount, sys.intern(currency)) for order, (amount, currency) in state["paid"].items()}
        # The orders are (nearly always) the paid orders: one string per order id, not two, in
        # each of the thousands of cached customers.
        same = {order: order for order in paid}
        orders = frozenset(same.get(order, order) for order in state["orders"])
        customer.__dict__.update(
            _id=state["id"],
            _version=state["version"],
            _created_on=state["created_on"],
            _modified_on=state["modified_on"],
            _pending_events=[],
            key=state["key"],
            progress=Progress(
                stage=sys.intern(state["stage"]),  # one string per stage name, as rules.advance
                stage_since=state["stage_since"],
                last_activity_at=state["last_activity_at"],
                purchase_days=frozenset(shared_day(day) for day in state["purchase_days"]),
                orders=orders,
            ),
            paid=paid,
            refunded=dict(state["refunded"]),
            erasure_requested=state["erasure_requested"],
            erased=state["erased"],
        )
        return customer

    # -- rules and state ---------------------------------------------------------

    def _record_transition(self, transition: Transition, fact: Fact) -> None:
        self.trigger_event(
            Customer.StageChanged,
            from_stage=transition.from_stage,
            to_stage=transition.to_stage,
            reason=transition.reason,
            trigger=transition.trigger,
            occurred_at=transition.occurred_at,
            source=fact.source,
            inbound_id=fact.inbound_id,
        )

    def _check_refund(self, fact: Fact) -> None:
        order_id = str(fact.data["order_id"])
        if order_id not in self.paid:
            return  # the purchase may arrive late; the refund is kept as a fact
        paid, currency = self.paid[order_id]
        if fact.data["currency"] != currency:
            raise RuleViolation(
                f"refund currency {fact.data['currency']} differs from order {order_id}'s {currency}"
            )
        total = self.refunded.get(order_id, Decimal(0)) + Decimal(fact.data["amount"])
        if total > paid:
            raise RuleViolation(f"refunds of order {order_id} would exceed its amount {paid}")

    def _absorb(self, fact: Fact) -> None:
        self.progress = advance(self.progress, fact, None)
        if fact.kind == "purchase":
            self.paid[str(fact.data["order_id"])] = (
                Decimal(fact.data["amount"]),
                # A handful of currencies over thousands of cached orders: one string each.
                sys.intern(str(fact.data["currency"])),
            )
        elif fact.kind == "refund":
            order_id = str(fact.data["order_id"])
            self.refunded[order_id] = self.refunded.get(order_id, Decimal(0)) + Decimal(
                fact.data["amount"]
            )
        elif fact.kind == "erasure_requested":
            self.erasure_requested = True
        elif fact.kind == "erased":
            self.erased = True


FACT_EVENTS: dict[str, type[Customer.FactRecorded]] = {
    cls.KIND: cls
    for cls in vars(Customer).values()
    if isinstance(cls, type) and issubclass(cls, Customer.FactRecorded) and cls.KIND
}

# StageChanged only moves the stage; it is not a fact about activity or purchases.
_NO_FACT = Fact("transition", datetime.min, "", "")
