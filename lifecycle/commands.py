"""From a validated inbound event to commands on the aggregates it concerns.

This is the only place that knows which inbound type drives which aggregate;
it works on a ``Workspace`` (the aggregates loaded for one batch) and raises
RuleViolation, before recording anything, when a rule refuses the event.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from lifecycle.customer import Customer
from lifecycle.deal import Deal
from lifecycle.rules import Fact
from lifecycle.stages import StageModel


class InboundLike(Protocol):
    """What the engine needs of ``schemas.InboundEvent``."""

    id: str
    source: str
    type: str
    subject: str
    time: datetime
    data: Any


class Workspace(Protocol):
    model: StageModel

    def customer(self, key: str, fact: Fact) -> Customer: ...

    def deal(self, upstream_deal_id: str, customer_key: str) -> Deal: ...

    def keep(self, *aggregates: Customer | Deal) -> None: ...

    def protect(self, customer_key: str, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        """``data`` with its personal fields encrypted under the customer's key."""
        ...

    def erase_after_commit(self, customer: Customer) -> None:
        """Destroy the customer's key once this batch is committed."""
        ...


#: Inbound types that record one fact on the customer, by fact kind.
CUSTOMER_FACTS: dict[str, str] = {
    "crm.customer.registered": "registered",
    "crm.profile.updated": "profile_updated",
    "crm.consent.changed": "consent_changed",
    "crm.interaction.recorded": "interaction",
    "crm.lead.qualified": "qualification",
    "crm.stage.change.requested": "stage_requested",
    "crm.purchase.recorded": "purchase",
    "crm.refund.recorded": "refund",
    "crm.feedback.submitted": "feedback",
    "crm.referral.made": "referral",
    "crm.ticket.opened": "ticket_opened",
    "crm.ticket.resolved": "ticket_resolved",
    "crm.customer.erasure.requested": "erasure_requested",
}

DEAL_FACTS: dict[str, str] = {
    "crm.deal.opened": "opened",
    "crm.deal.stage.changed": "stage_changed",
    "crm.deal.won": "won",
    "crm.deal.lost": "lost",
}


def data_of(event: InboundLike) -> dict[str, Any]:
    """The event's data as plain typed values (Decimal, date, str...), without absent fields."""
    data = event.data
    if hasattr(data, "present"):  # schemas.EventData
        return data.present()  # a new dict: the caller may change it
    return dict(data)


def fact_of(event: InboundLike, kind: str, data: dict[str, Any] | None = None) -> Fact:
    return Fact(kind, event.time, event.source, event.id, data_of(event) if data is None else data)


def apply_inbound(ws: Workspace, event: InboundLike) -> None:
    """Apply one inbound event; raise RuleViolation (nothing kept) if refused."""
    handler = _HANDLERS.get(event.type)
    if handler is not None:
        handler(ws, event)
        return
    kind = CUSTOMER_FACTS[event.type]
    fact = fact_of(event, kind, ws.protect(event.subject, kind, data_of(event)))
    customer = ws.customer(event.subject, fact)
    customer.record(ws.model, fact)
    if kind == "erasure_requested":
        # Honoured at once: the erasure is recorded in this batch and the key is destroyed
        # as soon as the batch is committed.
        customer.record(ws.model, Fact("erased", event.time, event.source, event.id, {}))
        ws.erase_after_commit(customer)
    ws.keep(customer)


def _deal_event(ws: Workspace, event: InboundLike) -> None:
    data = data_of(event)
    deal = ws.deal(str(data["deal_id"]), event.subject)
    kind = DEAL_FACTS[event.type]
    deal.record(kind, event.subject, event.time, event.source, event.id, data)
    touched: list[Customer | Deal] = [deal]
    if kind in ("opened", "won"):
        # A won deal converts its customer in the same transaction; an opened
        # deal makes its customer known (and active) like any other event.
        fact = fact_of(event, "deal_won" if kind == "won" else "deal_opened", data)
        customer = ws.customer(event.subject, fact)
        customer.record(ws.model, fact)
        touched.append(customer)
    ws.keep(*touched)


_HANDLERS: dict[str, Callable[[Workspace, InboundLike], None]] = {
    inbound_type: _deal_event for inbound_type in DEAL_FACTS
}
