"""One customer's rows, re-derived from its facts sorted by business time.

The aggregate decided in arrival order; here the same rules run over the facts
in business-time order, so a late event lands where it belongs and no view
depends on the order in which events arrived.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from operator import itemgetter
from typing import Any

from lifecycle.customer import FACT_EVENTS
from lifecycle.errors import RuleViolation
from lifecycle.rules import Fact, Progress, Transition, advance, decide, sort_key_of
from lifecycle.stages import StageModel
from projections.log import LogEvent

SortKey = tuple[datetime, int, str, str]
_KIND_OF_EVENT = {cls.__name__: kind for kind, cls in FACT_EVENTS.items()}
PERSONAL_FIELDS = ("name", "email", "phone", "address", "company", "country")


@dataclass(frozen=True)
class CustomerRows:
    customer_current: list[dict[str, Any]]
    stage_history: list[dict[str, Any]]
    customer_purchases: list[dict[str, Any]]
    customer_feedback: list[dict[str, Any]]
    customer_referrals: list[dict[str, Any]]


def is_fact(event_name: str) -> bool:
    """Whether a customer's event of this name is a fact (else a decision, re-derived)."""
    return event_name in _KIND_OF_EVENT


def facts_of(events: Sequence[LogEvent]) -> list[Fact]:
    return [fact for _, fact, _ in _timed_facts(events)]


def _timed_facts(events: Sequence[LogEvent]) -> list[tuple[SortKey, Fact, datetime]]:
    """The facts among ``events`` in business-time order, each with its sort key and its event's
    recorded time (the sort is stable: facts that sort level keep their version order). The key
    is made once per fact, not by a key function calling the fact's property."""
    timed = []
    for e in events:
        kind = _KIND_OF_EVENT.get(e.name)
        if kind is None:
            continue  # FirstSeen and StageChanged are decisions, re-derived below
        p = e.payload
        occurred_at, source, inbound_id = datetime.fromisoformat(p["occurred_at"]), p["source"], p["inbound_id"]
        timed.append((sort_key_of(kind, occurred_at, source, inbound_id),
                      Fact(kind, occurred_at, source, inbound_id, p["data"]), e.recorded_at))
    timed.sort(key=_SORT_KEY)
    return timed


_SORT_KEY = itemgetter(0)


#: A fold is kept (a ``FoldPoint``) after every FOLD_EVERY facts, and beyond 8 x FOLD_EVERY facts
#: eight times per doubling: a point-in-time answer folds at most about an eighth of a long
#: history after its nearest point, and the points of a customer with n facts hold O(n log n).
FOLD_EVERY = 64


def _fold_step(facts: int) -> int:
    return max(FOLD_EVERY, (1 << (facts.bit_length() - 1)) // 8)


def is_fold_point(facts: int) -> bool:
    """Whether the fold after ``facts`` facts is kept."""
    return facts > 0 and facts % _fold_step(facts) == 0


def next_fold_point(facts: int) -> int:
    """The first fold point after ``facts`` facts: below the next power of two the step is the
    same, so the point is the first multiple of it; if that reaches the power of two, the search
    goes on from there with the step of the next range."""
    n = facts + 1
    while True:
        step = _fold_step(n)
        point = -(-n // step) * step
        limit = 1 << n.bit_length()
        if point < limit:
            return point
        n = limit


def fold_points_below(facts: int, most: int) -> list[int]:
    """The ``most`` largest fold points at or below ``facts``, largest first."""
    points: list[int] = []
    while facts > 0 and len(points) < most:
        facts -= facts % _fold_step(facts)  # a multiple of its step below the next power of two
        if facts > 0:
            points.append(facts)
            facts -= 1
    return points


@dataclass(frozen=True)
class FoldPoint:
    """A customer's fold after its first ``facts`` facts in business-time order: ``last`` is the
    sort key of the last of them, ``recorded_at`` the latest recorded time among them, ``state``
    the fold as JSON-able values (``_Fold.state``; personal fields as stored, sealed)."""

    facts: int
    last: SortKey
    recorded_at: datetime
    state: dict[str, Any]


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
    last: SortKey | None = None  # sort key of the last fact taken
    recorded_at: datetime | None = None
    facts: int = 0  # facts taken (refused ones included: they were looked at)
    facts_recorded_at: datetime | None = None  # the latest recorded time among them
    points: list[FoldPoint] = field(default_factory=list)  # kept by this derivation, not yet written


def start_customer(
    model: StageModel, customer_id: str, events: Sequence[LogEvent], reveal: Reveal = _as_is,
    keep_points: bool = False,
) -> CustomerDerivation:
    """The customer's rows from its whole history (events in version order); with
    ``keep_points``, the fold at every fold point on the way too (``is_fold_point``)."""
    created = next((e for e in events if e.name == "FirstSeen"), None)
    timed = _timed_facts(events)
    if created is None or not timed:
        return CustomerDerivation(CustomerRows([], [], [], [], []), None)
    key = created.payload["key"]
    fold = _Fold(model, customer_id, key, timed[0][1].occurred_at, reveal)
    derivation = CustomerDerivation(CustomerRows([], [], [], [], []), fold)
    _take(derivation, fold, timed, keep_points)
    derivation.recorded_at = max(e.recorded_at for e in events)
    derivation.rows = fold.rows(derivation.recorded_at)
    return derivation


def _take(
    derivation: CustomerDerivation, fold: _Fold, timed: Sequence[tuple[SortKey, Fact, datetime]], keep_points: bool
) -> None:
    """Fold ``timed`` (in business-time order, after what ``derivation`` took), counting them
    and keeping the fold at each fold point passed."""
    n, latest = derivation.facts, derivation.facts_recorded_at
    point = next_fold_point(n) if keep_points else 0  # 0: none (n is at least 1 below)
    for sort_key, fact, recorded in timed:
        fold.take(fact)
        n += 1
        if latest is None or recorded > latest:
            latest = recorded
        if n == point:
            derivation.points.append(FoldPoint(n, sort_key, latest, fold.state()))
            point = next_fold_point(n)
    derivation.facts, derivation.facts_recorded_at = n, latest
    if timed:
        derivation.last = timed[-1][0]


def resume_customer(
    model: StageModel, customer_id: str, point: FoldPoint, facts: Sequence[Fact], recorded_at: datetime,
    reveal: Reveal = _as_is,
) -> CustomerRows:
    """The rows ``start_customer`` gives on a history whose facts are the point's and then
    ``facts`` (sorted, all after ``point.last``), the newest of its events recorded at
    ``recorded_at``."""
    fold = _Fold.restored(model, customer_id, point.state, reveal)
    for fact in facts:
        fold.take(fact)
    return fold.rows(recorded_at)


def continue_customer(derivation: CustomerDerivation, added: Sequence[LogEvent], keep_points: bool = False) -> bool:
    """Carry ``derivation`` on with events it has not seen (in version order); False, with
    nothing changed, when that would not give what ``start_customer`` gives on the whole history:
    a fact that sorts before (or level with) the last one taken, a FirstSeen, nothing folded yet.

    The projector's steps bring a few new facts for a customer with a long history, nearly always
    later in business time than all before: folding only them instead of the whole history each
    step was most of the projector's time (bench/PROFILE.md)."""
    fold, last = derivation.fold, derivation.last
    if fold is None or last is None or any(e.name == "FirstSeen" for e in added):
        return False
    timed = _timed_facts(added)
    if timed and timed[0][0] <= last:
        return False
    _take(derivation, fold, timed, keep_points)
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
    # The personal fields revealed, None until the rows ask for them: a later fact may replace
    # a field again, and revealing each as it came was most of a rebuild's decrypting.
    profile: dict[str, Any] | None = None
    consent: dict[str, bool] = field(default_factory=dict)
    purchases: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, Decimal] = field(default_factory=dict)
    feedback: list[dict[str, Any]] = field(default_factory=list)
    referrals: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    open_tickets: set[str] = field(default_factory=set)
    sealed: dict[str, Any] = field(default_factory=dict)  # the personal fields as stored
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
        kind = fact.kind
        if kind == "interaction":
            return  # most facts (three in four): nothing here, not eleven comparisons to find that
        data = fact.data
        if kind in ("registered", "profile_updated"):
            self.sealed.update({k: data[k] for k in PERSONAL_FIELDS if k in data})
            self.profile = None
        elif kind == "consent_changed":
            self.consent[str(data["purpose"])] = bool(data["granted"])
        elif kind == "qualification":
            self.bant_passed = all(data.get(c) for c in ("budget", "authority", "need", "timeline"))
        elif kind == "purchase":
            self.purchases[str(data["order_id"])] = {
                "occurred_at": fact.occurred_at,
                "amount": Decimal(str(data["amount"])),
                "currency": str(data["currency"]),
                "items": int(data.get("items", 1)),
            }
        elif kind == "refund":
            order = str(data["order_id"])
            self.refunds[order] = self.refunds.get(order, Decimal(0)) + Decimal(str(data["amount"]))
        elif kind == "feedback":
            self.feedback.append({"occurred_at": fact.occurred_at, "score": int(data["score"])})
        elif kind == "referral":
            self.referrals.append({"occurred_at": fact.occurred_at, "referred_key": str(data["referred_key"])})
        elif kind == "ticket_opened":
            self.open_tickets.add(str(data["ticket_id"]))
        elif kind == "ticket_resolved":
            self.open_tickets.discard(str(data["ticket_id"]))
        elif kind == "erasure_requested":
            self.erasure_requested = True
        elif kind == "erased":
            # Whatever was known before the erasure is gone, even where a key survived.
            self.profile, self.sealed = None, {}
            self.erased = True

    def state(self) -> dict[str, Any]:
        """The fold as JSON-able values, personal fields as stored (sealed where the store
        seals them: a kept fold reveals nothing once the customer's key is destroyed)."""
        p = self.progress
        return {
            "key": self.key,
            "first_seen_at": self.first_seen_at.isoformat(),
            "progress": [p.stage, p.stage_since.isoformat(), p.last_activity_at.isoformat(),
                         sorted(d.isoformat() for d in p.purchase_days), sorted(p.orders)],
            "transitions": [[t.from_stage, t.to_stage, t.reason, t.trigger, t.occurred_at.isoformat()]
                            for t in self.transitions],
            "sealed": dict(self.sealed),
            "consent": dict(self.consent),
            "purchases": [[order, v["occurred_at"].isoformat(), str(v["amount"]), v["currency"], v["items"]]
                          for order, v in self.purchases.items()],
            "refunds": [[order, str(amount)] for order, amount in self.refunds.items()],
            "feedback": [[f["occurred_at"].isoformat(), f["score"]] for f in self.feedback],
            "referrals": [[r["occurred_at"].isoformat(), r["referred_key"]] for r in self.referrals],
            "counts": dict(self.counts),
            "open_tickets": sorted(self.open_tickets),
            "flags": [self.bant_passed, self.erasure_requested, self.erased],
        }

    @classmethod
    def restored(cls, model: StageModel, customer_id: str, state: dict[str, Any], reveal: Reveal) -> _Fold:
        """The fold ``state()`` was taken of (its personal fields are revealed again when its
        rows are asked for)."""
        at = datetime.fromisoformat
        fold = cls(model, customer_id, state["key"], at(state["first_seen_at"]), reveal)
        stage, since, active, days, orders = state["progress"]
        fold.progress = Progress(sys.intern(stage), at(since), at(active),
                                 frozenset(date.fromisoformat(d) for d in days), frozenset(orders))
        fold.transitions = [Transition(a, b, reason, trigger, at(when)) for a, b, reason, trigger, when in state["transitions"]]
        fold.sealed = dict(state["sealed"])
        fold.consent = dict(state["consent"])
        fold.purchases = {order: {"occurred_at": at(when), "amount": Decimal(amount), "currency": currency,
                                  "items": items} for order, when, amount, currency, items in state["purchases"]}
        fold.refunds = {order: Decimal(amount) for order, amount in state["refunds"]}
        fold.feedback = [{"occurred_at": at(when), "score": score} for when, score in state["feedback"]]
        fold.referrals = [{"occurred_at": at(when), "referred_key": key} for when, key in state["referrals"]]
        fold.counts = dict(state["counts"])
        fold.open_tickets = set(state["open_tickets"])
        fold.bant_passed, fold.erasure_requested, fold.erased = state["flags"]
        return fold

    def rows(self, recorded_at: datetime) -> CustomerRows:
        if self.profile is None:
            self.profile = {k: self.reveal(self.customer_id, v) for k, v in self.sealed.items()}
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
