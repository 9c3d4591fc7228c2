"""The registry: event types, their data-model versions, and the upcasters between versions.

An upcaster turns the ``data`` of version *n* of a type into the ``data`` of
version *n + 1*: a plain function ``dict -> dict`` registered under
``(event_type, n)``. :func:`upcast` applies them in a chain up to the latest
version; the result is then validated with the latest model. Adding a version:
write the new model, keep the old one, register the upcaster from the previous
version, regenerate the JSON Schemas. The registry checks itself at import.
"""

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

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
    DealLost,
    DealOpened,
    DealStageChanged,
    DealWon,
    PurchaseRecorded,
    RefundRecorded,
)
from schemas.errors import RegistryError

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

#: Every data model, every version, in the order the event types are listed in the design.
ALL_MODELS: tuple[type[EventData], ...] = (
    CustomerRegistered,
    ProfileUpdated,
    ConsentChanged,
    InteractionRecorded,
    LeadQualified,
    StageChangeRequested,
    PurchaseRecorded,
    RefundRecorded,
    FeedbackSubmittedV1,
    FeedbackSubmitted,
    ReferralMade,
    TicketOpened,
    TicketResolved,
    DealOpened,
    DealStageChanged,
    DealWon,
    DealLost,
    CustomerErasureRequested,
)

_upcasters: dict[tuple[str, int], Upcaster] = {}


def upcaster(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register the function that turns ``data`` of ``from_version`` into ``from_version + 1``."""

    def register(function: Upcaster) -> Upcaster:
        key = (event_type, from_version)
        if key in _upcasters:
            raise RegistryError(f"two upcasters for {event_type} v{from_version}")
        _upcasters[key] = function
        return function

    return register


@upcaster("crm.feedback.submitted", 1)
def _feedback_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v2 renamed ``nps`` to ``score``; nothing else changed."""
    upgraded = {key: value for key, value in data.items() if key != "nps"}
    if "nps" in data:
        upgraded["score"] = data["nps"]
    return upgraded


def _build() -> tuple[Mapping[str, Mapping[int, type[EventData]]], Mapping[str, int]]:
    by_type: dict[str, dict[int, type[EventData]]] = {}
    for model in ALL_MODELS:
        versions = by_type.setdefault(model.event_type, {})
        if model.version in versions:
            raise RegistryError(f"two models for {model.event_type} v{model.version}")
        versions[model.version] = model
    latest: dict[str, int] = {}
    for event_type, versions in by_type.items():
        if sorted(versions) != list(range(1, len(versions) + 1)):
            raise RegistryError(f"{event_type}: versions must be 1..n without gaps, got {sorted(versions)}")
        latest[event_type] = len(versions)
        for version in range(1, len(versions)):
            if (event_type, version) not in _upcasters:
                raise RegistryError(f"{event_type}: no upcaster from v{version} to v{version + 1}")
    for event_type, version in _upcasters:
        if event_type not in latest or version >= latest[event_type]:
            raise RegistryError(f"upcaster for unknown {event_type} v{version}")
    frozen = {t: MappingProxyType(dict(sorted(v.items()))) for t, v in by_type.items()}
    return MappingProxyType(frozen), MappingProxyType(latest)


#: event type -> {data version -> model}
DATA_MODELS, LATEST_VERSION = _build()
#: The event types, in the order of the design.
EVENT_TYPES: tuple[str, ...] = tuple(LATEST_VERSION)
#: (event type, from version) -> upcaster to the next version.
UPCASTERS: Mapping[tuple[str, int], Upcaster] = MappingProxyType(_upcasters)


def latest_model(event_type: str) -> type[EventData]:
    """The model that validates the latest version of ``event_type``'s data."""
    return DATA_MODELS[event_type][LATEST_VERSION[event_type]]


def upcast(event_type: str, version: int, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` of ``version`` turned into ``data`` of the latest version (a new dict)."""
    current = dict(data)
    for step in range(version, LATEST_VERSION[event_type]):
        current = UPCASTERS[(event_type, step)](current)
    return current
