"""The outbound contract: what ``lifecycle.events`` carries, for consumers in any language.

One message per stored domain event, in commit order per key (the customer
id). ``payload`` holds the event's attributes: decimals, dates and times as
strings so that no value loses precision. ``schema_version`` changes only
when a field changes meaning; new optional fields are added compatibly.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

OUTBOUND_SCHEMA_VERSION = 1


class OutboundEvent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", title="lifecycle.events message v1")

    schema_version: Literal[1] = Field(1, description="Version of this contract")
    notification_id: int = Field(ge=1, description="Position in the event store's log (commit order)")
    aggregate_type: Literal["Customer", "Deal", "InboundReceipt"] = Field(
        description=(
            "Customer, Deal, or InboundReceipt (one per refused or malformed inbound event; an "
            "accepted one is known by the source and inbound_id of the facts it caused)"
        )
    )
    aggregate_id: str = Field(min_length=1, max_length=64, description="Engine id of the aggregate")
    version: int = Field(ge=1, description="Version of the aggregate this event produced")
    name: str = Field(min_length=1, max_length=64, description="Event name, e.g. PurchaseRecorded")
    recorded_at: AwareDatetime = Field(description="Recorded time: when the engine stored it")
    occurred_at: AwareDatetime | None = Field(None, description="Business time, when the event has one")
    payload: dict[str, Any] = Field(description="The event's attributes")
