"""The ``data`` models of money-bearing event types: purchases, refunds, deals.

Amounts are ``Decimal`` (never float) with an ISO 4217 currency; see
``schemas.fields.Money`` for the exact rules.
"""

from typing import Annotated, ClassVar, Literal, get_args

from pydantic import Field

from schemas.data import EventData
from schemas.fields import CalendarDate, Currency, Identifier, Money, Text

#: The open stages of the sales pipeline, in order. Closing is done by
#: ``crm.deal.won`` / ``crm.deal.lost``, never by a stage change.
DealStage = Literal["initial_contact", "qualification", "needs_assessment", "proposal", "negotiation"]
DEAL_STAGES: tuple[str, ...] = get_args(DealStage)


class PurchaseRecorded(EventData):
    """crm.purchase.recorded v1: an order was paid."""

    event_type: ClassVar[str] = "crm.purchase.recorded"
    version: ClassVar[int] = 1

    order_id: Identifier
    amount: Money
    currency: Currency
    items: Annotated[int, Field(strict=True, ge=1, le=10000)] = 1


class RefundRecorded(EventData):
    """crm.refund.recorded v1: money was paid back for an order."""

    event_type: ClassVar[str] = "crm.refund.recorded"
    version: ClassVar[int] = 1

    order_id: Identifier
    amount: Money
    currency: Currency
    reason: Text(1000) | None = None  # type: ignore[valid-type]


class DealOpened(EventData):
    """crm.deal.opened v1: a sales opportunity entered the pipeline."""

    event_type: ClassVar[str] = "crm.deal.opened"
    version: ClassVar[int] = 1

    deal_id: Identifier
    name: Text(200) | None = None  # type: ignore[valid-type]
    amount: Money
    currency: Currency
    expected_close: CalendarDate
    stage: DealStage = "initial_contact"
    owner: Text(128) | None = None  # type: ignore[valid-type]


class DealStageChanged(EventData):
    """crm.deal.stage.changed v1: the deal moved to another open stage, maybe re-estimated."""

    event_type: ClassVar[str] = "crm.deal.stage.changed"
    version: ClassVar[int] = 1

    deal_id: Identifier
    stage: DealStage
    amount: Money | None = None
    expected_close: CalendarDate | None = None


class DealWon(EventData):
    """crm.deal.won v1: closed won; ``amount`` is the final amount in the deal's currency."""

    event_type: ClassVar[str] = "crm.deal.won"
    version: ClassVar[int] = 1

    deal_id: Identifier
    amount: Money | None = None


class DealLost(EventData):
    """crm.deal.lost v1: closed lost, with the reason."""

    event_type: ClassVar[str] = "crm.deal.lost"
    version: ClassVar[int] = 1

    deal_id: Identifier
    reason: Text(200, min_length=1)  # type: ignore[valid-type]
