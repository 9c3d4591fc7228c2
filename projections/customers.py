"""One customer's rows, re-derived from its facts sorted by business time.

The aggregate decided in arrival order; here the same rules run over the facts
in business-time order, so a late event lands where it belongs and no view
depends on the order in which events arrived.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from lifecycle.customer import FACT_EVENTS
from lifecycle.errors import RuleViolation
from lifecycle.rules import Fact, Progress, Transition, advance, decide
from lifecycle.stages import StageModel
from projections.log import LogEvent

_KIND_OF_EVENT = {cls.__name__: kind for kind, cls in FACT_EVENTS.items()}
PERSONAL_FIELDS = ("name", "email", "phone", "address", "company", "country")


@dataclass(frozen=True)
class CustomerRows:
    customer_current: list[dict[str, Any]]
    stage_history: list[dict[str, Any]]
    customer_purchases: list[dict[str, Any]]
    customer_feedback: list[dict[str, Any]]
    customer_referrals: list[dict[str, Any]]


def facts_of(events: Sequence[LogEvent]) -> list[Fact]:
    facts = []
    for e in events:
        kind = _KIND_OF_EVENT.get(e.name)
        if kind is None:
            continue  # FirstSeen and StageChanged are decisions, re-derived below
        p = e.payload
        facts.append(
            Fact(kind, datetime.fromisoformat(p["occurred_at"]), p["source"], p["inbound_id"], p["data"])
        )
    return sorted(facts, key=lambda f: f.sort_key)


Reveal = Callable[[str, Any], Any]


def _as_is(_customer_id: str, value: Any) -> Any:
    return value


def derive_customer(
    model: StageModel, customer_id: str, events: Sequence[LogEvent], reveal: Reveal = _as_is
) -> CustomerRows:
    """The customer's rows; ``reveal(customer_id, value)`` opens encrypted personal fields
    (None once the customer's key is destroyed)."""
    return start_customer(model, customer_id, events, reveal).rows


@dataclass
class CustomerDerivation:
    """A customer's rows and the fold that made them, to carry on with later facts."""

    rows: CustomerRows
    fold: _Fold | None  # None: nothing to fold yet (no FirstSeen or no fact)
    last: tuple[datetime, int, str, str] | None = None  # sort key of the last fact taken
    recorded_at: datetime | None = None


def start_customer(
    model: StageModel, customer_id: str, events: Sequence[LogEvent], reveal: Reveal = _as_is
) -> CustomerDerivation:
    """The customer's rows from its whole history (events in version order)."""
    created = next((e for e in events if e.name == "FirstSeen"), None)
    facts = facts_of(events)
    if created is None or not facts:
        return CustomerDerivation(CustomerRows([], [], [], [], []), None)
    key = created.payload["key"]
    fold = _Fold(model, customer_id, key, facts[0].occurred_at, reveal)
    for fact in facts:
        fold.take(fact)
    recorded = max(e.recorded_at for e in events)
    return CustomerDerivation(fold.rows(recorded), fold, facts[-1].sort_key, recorded)


def continue_customer(derivation: CustomerDerivation, added: Sequence[LogEvent]) -> bool:
    """Carry ``derivation`` on with events it has not seen (in version order); False, with
    nothing changed, when that would not give what ``start_customer`` gives on the whole history:
    a fact that sorts before (or level with) the last one taken, a FirstSeen, nothing folded yet.

    The projector's steps bring a few new facts for a customer with a long history, nearly always
    later in business time than all before: folding only them instead of the whole history each
    step was most of the projector's time (bench/PROFILE.md)."""
    fold, last = derivation.fold, derivation.last
    if fold is None or last is None or any(e.name == "FirstSeen" for e in added):
        return False
    facts = facts_of(added)
    if facts and facts[0].sort_key <= last:
        return False
    for fact in facts:
        fold.take(fact)
    if facts:
        derivation.last = facts[-1].sort_key
    derivation.recorded_at = max([derivation.recorded_at, *(e.recorded_at for e in added)])
    derivation.rows = fold.rows(derivation.recorded_at)
    return True


@dataclass
class _Fold:
    model: StageModel
    customer_id: str
    key: str
    first_seen_at: datetime
    reveal: Reveal
    progress: Progress = field(init=False)
    transitions: list[Transition] = field(default_factory=list)
    profile: dict[str, Any] = field(default_factory=dict)
    consent: dict[str, bool] = field(default_factory=dict)
    purchases: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, Decimal] = field(default_factory=dict)
    feedback: list[dict[str, Any]] = field(default_factory=list)
    referrals: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    open_tickets: set[str] = field(default_factory=set)
    bant_passed: bool | None = None
    erasure_requested: bool = False
    erased: bool = False

    def __post_init__(self) -> None:
        self.progress = Progress.start(self.model, self.first_seen_at)

    def take(self, fact: Fact) -> None:
        try:
            transition = decide(self.model, self.progress, fact)
        except RuleViolation:
            return  # refused in business order (a request, or an order id seen before)
        self.progress = advance(self.progress, fact, transition)
        if transition is not None:
            self.transitions.append(transition)
        self.counts[fact.kind] = self.counts.get(fact.kind, 0) + 1
        self._absorb(fact)

    def _absorb(self, fact: Fact) -> None:
        data = fact.data
        if fact.kind in ("registered", "profile_updated"):
            self.profile.update({k: self.reveal(self.customer_id, data[k]) for k in PERSONAL_FIELDS if k in data})
        elif fact.kind == "consent_changed":
            self.consent[str(data["purpose"])] = bool(data["granted"])
        elif fact.kind == "qualification":
            self.bant_passed = all(data.get(c) for c in ("budget", "authority", "need", "timeline"))
        elif fact.kind == "purchase":
            self.purchases[str(data["order_id"])] = {
                "occurred_at": fact.occurred_at,
                "amount": Decimal(str(data["amount"])),
                "currency": str(data["currency"]),
                "items": int(data.get("items", 1)),
            }
        elif fact.kind == "refund":
            order = str(data["order_id"])
            self.refunds[order] = self.refunds.get(order, Decimal(0)) + Decimal(str(data["amount"]))
        elif fact.kind == "feedback":
            self.feedback.append({"occurred_at": fact.occurred_at, "score": int(data["score"])})
        elif fact.kind == "referral":
            self.referrals.append({"occurred_at": fact.occurred_at, "referred_key": str(data["referred_key"])})
        elif fact.kind == "ticket_opened":
            self.open_tickets.add(str(data["ticket_id"]))
        elif fact.kind == "ticket_resolved":
            self.open_tickets.discard(str(data["ticket_id"]))
        elif fact.kind == "erasure_requested":
            self.erasure_requested = True
        elif fact.kind == "erased":
            # Whatever was known before the erasure is gone, even where a key survived.
            self.profile = {}
            self.erased = True

    def rows(self, recorded_at: datetime) -> CustomerRows:
        ident = {"customer_id": self.customer_id, "customer_key": self.key}
        purchases = sorted(self.purchases.items(), key=lambda kv: (kv[1]["occurred_at"], kv[0]))
        currency = purchases[0][1]["currency"] if purchases else None
        spent = sum((p["amount"] for _, p in purchases if p["currency"] == currency), Decimal(0))
        refunded = sum(
            (amt for order, amt in self.refunds.items()
             if order in self.purchases and self.purchases[order]["currency"] == currency),
            Decimal(0),
        )
        current = {
            **ident,
            "stage": self.progress.stage,
            "stage_since": self.progress.stage_since,
            "first_seen_at": self.first_seen_at,
            "last_activity_at": self.progress.last_activity_at,
            **{f: self.profile.get(f) for f in PERSONAL_FIELDS},
            "consent": dict(sorted(self.consent.items())),
            "bant_passed": self.bant_passed,
            "interactions": self.counts.get("interaction", 0),
            "orders": len(purchases),
            "purchase_days": len(self.progress.purchase_days),
            "first_purchase_at": purchases[0][1]["occurred_at"] if purchases else None,
            "last_purchase_at": purchases[-1][1]["occurred_at"] if purchases else None,
            "currency": currency,
            "total_spent": spent,
            "total_refunded": refunded,
            "net_spent": spent - refunded,
            "last_nps": self.feedback[-1]["score"] if self.feedback else None,
            "feedback_count": len(self.feedback),
            "referrals_made": self.counts.get("referral", 0),
            "open_tickets": len(self.open_tickets),
            "erasure_requested": self.erasure_requested,
            "erased": self.erased,
            "updated_at": recorded_at,
        }
        return CustomerRows(
            customer_current=[current],
            stage_history=self._stage_history(ident),
            customer_purchases=[
                {**ident, "order_id": order, "occurred_at": p["occurred_at"],
                 "purchase_date": p["occurred_at"].date(), "amount": p["amount"],
                 "currency": p["currency"], "items": p["items"],
                 "refunded": self.refunds.get(order, Decimal(0))}
                for order, p in purchases
            ],
            customer_feedback=[
                {**ident, "seq": i, "occurred_at": f["occurred_at"], "score": f["score"],
                 "category": nps_category(f["score"])}
                for i, f in enumerate(self.feedback)
            ],
            customer_referrals=[{**ident, "seq": i, **r} for i, r in enumerate(self.referrals)],
        )

    def _stage_history(self, ident: dict[str, str]) -> list[dict[str, Any]]:
        entries = [(self.model.initial, self.first_seen_at, None, "first_seen", "derived")]
        entries += [(t.to_stage, t.occurred_at, t.from_stage, t.reason, t.trigger) for t in self.transitions]
        rows = []
        for seq, (stage, entered, from_stage, reason, trigger) in enumerate(entries):
            exited = entries[seq + 1][1] if seq + 1 < len(entries) else None
            rows.append({
                **ident, "seq": seq, "stage": stage, "from_stage": from_stage,
                "entered_at": entered, "exited_at": exited,
                "seconds_in_stage": int((exited - entered).total_seconds()) if exited else None,
                "reason": reason, "trigger": trigger,
            })
        return rows


def nps_category(score: int) -> str:
    return "promoter" if score >= 9 else "passive" if score >= 7 else "detractor"
