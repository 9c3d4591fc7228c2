"""The ``data`` models of the customer-side event types (one class per type and version).

Every model is an immutable value that refuses unknown keys. ``event_type`` and
``version`` say which (type, data version) a class validates; the registry in
``schemas.versions`` collects them. An old version stays here, next to its
successor, for as long as producers may send it; ``schemas.versions`` upcasts it.
"""

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator
from pydantic_core import PydanticCustomError

from schemas.fields import Code, Country, CustomerKey, Email, FreeText, Identifier, Text


class EventData(BaseModel):
    """Base of every data model: frozen, no extra keys."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[str]
    version: ClassVar[int]

    def present(self) -> dict[str, Any]:
        """The fields that have a value, as validated, in declaration order: what
        ``model_dump(exclude_none=True)`` gives for these flat models (every field a scalar,
        no serializers: tests/test_schemas.py keeps them so), in a quarter of the time."""
        return {name: value for name, value in self.__dict__.items() if value is not None}


Name = Text(200)
Phone = Text(40)
Label = Text(64)
Note = FreeText(1000)
Score0To10 = Annotated[int, Field(strict=True, ge=0, le=10)]


class CustomerRegistered(EventData):
    """crm.customer.registered v1: the customer signed up; every field optional."""

    event_type: ClassVar[str] = "crm.customer.registered"
    version: ClassVar[int] = 1

    name: Name | None = None
    email: Email | None = None
    phone: Phone | None = None
    country: Country | None = None
    channel: Label | None = None


class ProfileUpdated(EventData):
    """crm.profile.updated v1: new values for the given fields; at least one field."""

    event_type: ClassVar[str] = "crm.profile.updated"
    version: ClassVar[int] = 1

    name: Name | None = None
    email: Email | None = None
    phone: Phone | None = None
    address: FreeText(500) | None = None  # type: ignore[valid-type]
    country: Country | None = None
    company: Text(200) | None = None  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _something_changed(self) -> "ProfileUpdated":
        if all(getattr(self, name) is None for name in type(self).model_fields):
            fields = ", ".join(type(self).model_fields)
            raise PydanticCustomError("at_least_one", "at least one of {fields} must be given", {"fields": fields})
        return self


class ConsentChanged(EventData):
    """crm.consent.changed v1: consent for a purpose granted or withdrawn ("all" = any contact)."""

    event_type: ClassVar[str] = "crm.consent.changed"
    version: ClassVar[int] = 1

    purpose: Literal["all", "marketing", "email", "sms", "phone"]
    granted: StrictBool


class InteractionRecorded(EventData):
    """crm.interaction.recorded v1: any touch point (visit, open, call, meeting...)."""

    event_type: ClassVar[str] = "crm.interaction.recorded"
    version: ClassVar[int] = 1

    channel: Literal["web", "email", "call", "meeting", "chat", "social", "event", "other"]
    kind: Text(64, min_length=1)  # type: ignore[valid-type]
    detail: Note | None = None


class LeadQualified(EventData):
    """crm.lead.qualified v1: a BANT assessment (budget, authority, need, timeline)."""

    event_type: ClassVar[str] = "crm.lead.qualified"
    version: ClassVar[int] = 1

    budget: StrictBool
    authority: StrictBool
    need: StrictBool
    timeline: StrictBool
    score: Annotated[int, Field(strict=True, ge=0, le=100)] | None = None
    note: Note | None = None


class StageChangeRequested(EventData):
    """crm.stage.change.requested v1: upstream asks for a lifecycle stage; the rules decide."""

    event_type: ClassVar[str] = "crm.stage.change.requested"
    version: ClassVar[int] = 1

    to_stage: Code
    reason: Code
    note: Note | None = None


class FeedbackSubmittedV1(EventData):
    """crm.feedback.submitted v1 (old): the score was called ``nps``. Upcast to v2."""

    event_type: ClassVar[str] = "crm.feedback.submitted"
    version: ClassVar[int] = 1

    nps: Score0To10
    comment: FreeText(2000) | None = None  # type: ignore[valid-type]


class FeedbackSubmitted(EventData):
    """crm.feedback.submitted v2: a Net Promoter Score answer, 0-10 (9-10 promoter)."""

    event_type: ClassVar[str] = "crm.feedback.submitted"
    version: ClassVar[int] = 2

    score: Score0To10
    comment: FreeText(2000) | None = None  # type: ignore[valid-type]


class ReferralMade(EventData):
    """crm.referral.made v1: the customer (subject) referred another customer key."""

    event_type: ClassVar[str] = "crm.referral.made"
    version: ClassVar[int] = 1

    referred_key: CustomerKey
    channel: Label | None = None


class TicketOpened(EventData):
    """crm.ticket.opened v1: a support ticket was opened."""

    event_type: ClassVar[str] = "crm.ticket.opened"
    version: ClassVar[int] = 1

    ticket_id: Identifier
    priority: Literal["low", "normal", "high", "urgent"] = "normal"
    topic: Text(200) | None = None  # type: ignore[valid-type]


class TicketResolved(EventData):
    """crm.ticket.resolved v1: a support ticket was resolved."""

    event_type: ClassVar[str] = "crm.ticket.resolved"
    version: ClassVar[int] = 1

    ticket_id: Identifier
    resolution: Note | None = None
    satisfied: StrictBool | None = None


class CustomerErasureRequested(EventData):
    """crm.customer.erasure.requested v1: forget the customer's personal data."""

    event_type: ClassVar[str] = "crm.customer.erasure.requested"
    version: ClassVar[int] = 1

    reason: Text(500) | None = None  # type: ignore[valid-type]
