"""The CloudEvents 1.0 envelope (structured mode, JSON).

:class:`Envelope` is the generic envelope: any known type, ``data`` any JSON
object. :func:`envelope_model` derives from it, for one (type, data version),
the envelope whose ``type`` is fixed and whose ``data`` is that version's
model; it is what :func:`schemas.parse` validates with and what the exported
JSON Schemas describe, so both say the same thing.

The only extension attribute accepted is ``dataversion``; any other top-level
attribute is refused. ``null`` for an optional attribute means absent.
"""

from functools import cache
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, create_model
from pydantic_core import PydanticCustomError

from schemas.fields import CustomerKey, DataVersion, Text, Timestamp, UriReference, coerce_version
from schemas.versions import DATA_MODELS, EVENT_TYPES, LATEST_VERSION

EventType = Literal[EVENT_TYPES]  # type: ignore[valid-type]


class Envelope(BaseModel):
    """A CloudEvents 1.0 event of one of the known types; ``data`` not yet typed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    specversion: Literal["1.0"]
    id: Text(256, min_length=1)  # type: ignore[valid-type]
    source: UriReference(256)  # type: ignore[valid-type]
    type: EventType
    subject: CustomerKey = Field(description="The customer key, e.g. shop:42.")
    time: Timestamp = Field(description="When it happened: RFC 3339 with an offset; stored in UTC.")
    datacontenttype: Literal["application/json"] | None = None
    dataschema: UriReference(512) | None = None  # type: ignore[valid-type]
    dataversion: DataVersion | None = None
    data: dict[str, Any]


def _version_type(version: int, latest: bool) -> Any:
    """The ``dataversion`` attribute of the envelope for one version: that version only."""

    def check(value: int) -> int:
        if value != version:
            raise PydanticCustomError("dataversion", "must be {version}", {"version": version})
        return value

    description = f"Version of the data model: {version}."
    if latest:
        description += " The latest version: may be left out."
    return Annotated[
        int,
        BeforeValidator(coerce_version),
        AfterValidator(check),
        WithJsonSchema(
            {
                "anyOf": [{"const": version, "type": "integer"}, {"const": str(version), "type": "string"}],
                "description": description,
            }
        ),
    ]


@cache
def envelope_model(event_type: str, version: int) -> type[Envelope]:
    """The envelope of ``event_type`` with ``data`` of the given version, as a model."""
    data_model = DATA_MODELS[event_type][version]
    latest = version == LATEST_VERSION[event_type]
    version_type = _version_type(version, latest)
    return create_model(  # type: ignore[call-overload, no-any-return]
        f"{data_model.__name__}Event",
        __base__=Envelope,
        __module__=__name__,
        __doc__=f"A CloudEvents 1.0 event of type {event_type}, data version {version}.",
        type=(Literal[event_type], ...),  # type: ignore[valid-type]
        dataversion=(version_type | None, None) if latest else (version_type, ...),
        data=(data_model, ...),
    )
