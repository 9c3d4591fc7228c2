"""The Deal aggregate and the sales pipeline it moves through.

Deal events may arrive out of business order (a late "opened" after a
"stage changed"), so the first event for an unknown deal id creates the deal,
and closing is judged on business time: a stage change dated after the close is
refused, one dated before it is history and is kept; a late "opened" is history too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

from eventsourcing.domain import Aggregate

from lifecycle.errors import RuleViolation


@dataclass(frozen=True)
class PipelineStage:
    name: str
    probability: Decimal
    forecast_category: str
    is_closed: bool = False


PIPELINE: tuple[PipelineStage, ...] = (
    PipelineStage("initial_contact", Decimal("0.10"), "pipeline"),
    PipelineStage("qualification", Decimal("0.20"), "pipeline"),
    PipelineStage("needs_assessment", Decimal("0.40"), "best_case"),
    PipelineStage("proposal", Decimal("0.60"), "best_case"),
    PipelineStage("negotiation", Decimal("0.80"), "commit"),
    PipelineStage("closed_won", Decimal("1.00"), "closed", is_closed=True),
    PipelineStage("closed_lost", Decimal("0.00"), "omitted", is_closed=True),
)
PIPELINE_BY_NAME = {stage.name: stage for stage in PIPELINE}
OPEN_STAGES = tuple(stage.name for stage in PIPELINE if not stage.is_closed)


class Deal(Aggregate):
    class FirstSeen(Aggregate.Created):
        deal_id: str
        customer_key: str
        customer_id: str

    class FactRecorded(Aggregate.Event):
        KIND: ClassVar[str] = ""
        occurred_at: datetime
        source: str
        inbound_id: str
        data: dict[str, Any]

        def apply(self, aggregate: Aggregate) -> None:
            assert isinstance(aggregate, Deal)
            aggregate._absorb(self.KIND, self.occurred_at)

    class Opened(FactRecorded):
        KIND = "opened"

    class StageMoved(FactRecorded):
        KIND = "stage_changed"

    class Won(FactRecorded):
        KIND = "won"

    class Lost(FactRecorded):
        KIND = "lost"

    def __init__(self, deal_id: str, customer_key: str, customer_id: str) -> None:
        self.deal_id = deal_id
        self.customer_key = customer_key
        self.customer_id = customer_id
        self.opened = False
        self.closed: tuple[str, datetime] | None = None

    def record(
        self, kind: str, customer_key: str, occurred_at: datetime, source: str, inbound_id: str,
        data: dict[str, Any],
    ) -> None:
        """Check the pipeline rules, then record the fact (or raise RuleViolation)."""
        if customer_key != self.customer_key:
            raise RuleViolation(
                f"deal {self.deal_id} belongs to customer {self.customer_key}, not {customer_key}"
            )
        if kind == "opened" and self.opened:
            raise RuleViolation(f"deal {self.deal_id} is already opened")
        if self.closed is not None:
            outcome, closed_at = self.closed
            if kind in ("won", "lost"):
                raise RuleViolation(f"deal {self.deal_id} is already closed ({outcome})")
            if kind == "stage_changed" and occurred_at > closed_at:
                raise RuleViolation(
                    f"deal {self.deal_id} was closed ({outcome}) at {closed_at.isoformat()}; "
                    "it cannot change afterwards"
                )
        self.trigger_event(
            _DEAL_EVENTS[kind],
            occurred_at=occurred_at,
            source=source,
            inbound_id=inbound_id,
            data=data,
        )

    def _absorb(self, kind: str, occurred_at: datetime) -> None:
        if kind == "opened":
            self.opened = True
        elif kind in ("won", "lost"):
            self.closed = (kind, occurred_at)


_DEAL_EVENTS: dict[str, type[Deal.FactRecorded]] = {
    cls.KIND: cls for cls in (Deal.Opened, Deal.StageMoved, Deal.Won, Deal.Lost)
}
