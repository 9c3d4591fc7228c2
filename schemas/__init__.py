"""The inbound contract: CloudEvents 1.0 events, their typed ``data``, and parsing.

``parse(raw)`` turns the bytes of one event into an :class:`InboundEvent` (with
``data`` as the latest version's model) or a :class:`Rejection` with a reason.
"""

from schemas.data import (
    ConsentChanged,
    CustomerErasureRequested,
    CustomerRegistered,
    EventData,
    FeedbackSubmitted,
    FeedbackSubmittedV1,
    InteractionRecorded,
    LeadQualified,
    ProfileUpdated,
    ReferralMade,
    StageChangeRequested,
    TicketOpened,
    TicketResolved,
)
from schemas.data_commerce import (
    DEAL_STAGES,
    DealLost,
    DealOpened,
    DealStageChanged,
    DealWon,
    PurchaseRecorded,
    RefundRecorded,
)
from schemas.envelope import Envelope
from schemas.errors import RegistryError, SchemaError
from schemas.export import export_json_schemas
from schemas.parse import MAX_EVENT_BYTES, InboundEvent, Rejection, parse
from schemas.versions import DATA_MODELS, EVENT_TYPES, LATEST_VERSION, latest_model

__all__ = [
    "DATA_MODELS",
    "DEAL_STAGES",
    "EVENT_TYPES",
    "LATEST_VERSION",
    "MAX_EVENT_BYTES",
    "ConsentChanged",
    "CustomerErasureRequested",
    "CustomerRegistered",
    "DealLost",
    "DealOpened",
    "DealStageChanged",
    "DealWon",
    "Envelope",
    "EventData",
    "FeedbackSubmitted",
    "FeedbackSubmittedV1",
    "InboundEvent",
    "InteractionRecorded",
    "LeadQualified",
    "ProfileUpdated",
    "PurchaseRecorded",
    "ReferralMade",
    "Rejection",
    "RefundRecorded",
    "RegistryError",
    "SchemaError",
    "StageChangeRequested",
    "TicketOpened",
    "TicketResolved",
    "export_json_schemas",
    "latest_model",
    "parse",
]
