"""Raw bytes in, a typed :class:`InboundEvent` or a :class:`Rejection` out.

:func:`parse` never raises for bad input: whatever the bytes, the caller gets a
value it can store (the event) or dead-letter (the rejection, with a one-line
reason naming the field, and whatever identity could be recovered).

Checks, in order: size, UTF-8, JSON (no duplicate keys, no NaN/Infinity), a
JSON object, ``specversion``, ``type``, ``dataversion``, then the envelope
and ``data`` together with the model of that (type, version). Old data
versions are upcast to the latest one and validated again.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticCustomError

from schemas.data import EventData
from schemas.envelope import envelope_model
from schemas.fields import coerce_version, forbidden_character
from schemas.versions import DATA_MODELS, EVENT_TYPES, LATEST_VERSION, latest_model, upcast

__all__ = ["MAX_EVENT_BYTES", "EVENT_TYPES", "LATEST_VERSION", "InboundEvent", "Rejection", "describe_problems",
           "parse"]

#: Largest accepted event, in bytes, without its line ending.
MAX_EVENT_BYTES = 65536

#: How many validation problems a rejection reason lists.
MAX_PROBLEMS = 3


_set = object.__setattr__


@dataclass(frozen=True, init=False)
class InboundEvent:
    """A valid inbound event. ``data`` is the latest version's model, whatever version was sent."""

    id: str
    source: str
    type: str
    subject: str
    time: datetime  # aware, UTC
    data: EventData
    dataversion: int  # the version as sent (the latest one when left out)
    raw: bytes = field(repr=False)
    dataschema: str | None = None

    def __init__(self, id: str, source: str, type: str, subject: str, time: datetime,  # noqa: A002
                 data: EventData, dataversion: int, raw: bytes, dataschema: str | None = None) -> None:
        # One per inbound event: its fields set in one step instead of the generated __init__'s
        # call per field (1.35 -> 0.80 µs); frozen all the same (assignment raises).
        _set(self, "__dict__", {"id": id, "source": source, "type": type, "subject": subject, "time": time,
                                "data": data, "dataversion": dataversion, "raw": raw, "dataschema": dataschema})


@dataclass(frozen=True, slots=True)
class Rejection:
    """An event that cannot be accepted: why, the bytes, and the identity when recoverable."""

    reason: str
    raw: bytes = field(repr=False)
    source: str | None = None
    event_id: str | None = None
    type: str | None = None
    subject: str | None = None


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class _ForbiddenConstant(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)  # in C; only an object with a repeated key takes the loop below
    if len(result) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return result


def _refuse_constant(name: str) -> Any:
    raise _ForbiddenConstant(name)


class _NumberOutOfRange(Exception):
    pass


def _decimal(text: str) -> Decimal:
    """JSON numbers with a fraction or exponent, exactly (29.33 stays 29.33, never a float)."""
    try:
        return Decimal(text)
    except ArithmeticError:  # an exponent beyond what decimal can represent
        raise _NumberOutOfRange(text) from None


# What ``json.loads(text, **hooks)`` would build for every line (and throw away).
_DECODER = json.JSONDecoder(
    parse_float=_decimal,
    parse_constant=_refuse_constant,
    object_pairs_hook=_object_without_duplicates,
)


def parse(raw: bytes) -> InboundEvent | Rejection:
    """Parse one CloudEvents 1.0 JSON event (one Kafka message or one line of a file)."""
    raw = raw if isinstance(raw, bytes) else bytes(raw)
    body = raw
    if body.endswith(b"\r\n"):
        body = body[:-2]
    elif body.endswith(b"\n"):
        body = body[:-1]
    if len(body) > MAX_EVENT_BYTES:
        return Rejection(f"event exceeds {MAX_EVENT_BYTES} bytes ({len(body)} bytes)", raw)
    if not body.strip():
        return Rejection("empty event: expected one JSON object", raw)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        return Rejection(f"not valid UTF-8: byte 0x{body[error.start]:02x} at offset {error.start}", raw)
    try:
        document = _DECODER.decode(text)
    except _DuplicateKey as error:
        return Rejection(_one_line(f"not valid JSON: duplicate key {_show(error.key)} in an object"), raw)
    except _ForbiddenConstant as error:
        return Rejection(f"not valid JSON: {error.name} is not allowed", raw)
    except json.JSONDecodeError as error:
        at = "" if error.msg.endswith(" at") else " at"
        return Rejection(f"not valid JSON: {error.msg}{at} line {error.lineno} column {error.colno}", raw)
    except _NumberOutOfRange:
        return Rejection("not valid JSON: a number is out of range", raw)
    except RecursionError:
        return Rejection("not valid JSON: nested too deeply", raw)
    except ValueError:  # the only other one: an integer with more digits than Python converts
        return Rejection("not valid JSON: a number has too many digits", raw)
    if not isinstance(document, dict):
        return Rejection(f"not a JSON object: got {_kind(document)}", raw)
    return _parse_document(document, raw)


def _parse_document(document: dict[str, Any], raw: bytes) -> InboundEvent | Rejection:
    def reject(reason: str) -> Rejection:
        return Rejection(
            _one_line(reason),
            raw,
            source=_hint(document, "source"),
            event_id=_hint(document, "id"),
            type=_hint(document, "type"),
            subject=_hint(document, "subject"),
        )

    if "specversion" not in document:
        return reject("specversion: field required")
    if not (isinstance(document["specversion"], str) and document["specversion"] == "1.0"):
        return reject(f"unknown specversion {_show(document['specversion'])} (expected '1.0')")
    if "type" not in document:
        return reject("type: field required")
    event_type = document["type"]
    if not (isinstance(event_type, str) and event_type in LATEST_VERSION):
        return reject(f"unknown event type {_show(event_type)}")
    latest = LATEST_VERSION[event_type]
    version = latest
    if document.get("dataversion") is not None:
        try:
            version = coerce_version(document["dataversion"])
        except PydanticCustomError as error:
            return reject(f"dataversion: {error.message()}")
        if version not in DATA_MODELS[event_type]:
            known = ", ".join(str(v) for v in DATA_MODELS[event_type])
            return reject(f"unknown dataversion {version} for {event_type} (known: {known})")
    try:
        envelope = envelope_model(event_type, version).model_validate(document)
    except ValidationError as error:
        return reject(describe_problems(error))
    data: EventData = envelope.data  # type: ignore[attr-defined]
    if version != latest:
        try:
            data = latest_model(event_type).model_validate(
                upcast(event_type, version, data.model_dump(exclude_unset=True))
            )
        except ValidationError as error:
            return reject(f"data upcast from v{version} to v{latest} is invalid: {describe_problems(error)}")
    return InboundEvent(
        id=envelope.id,
        source=envelope.source,
        type=event_type,
        subject=envelope.subject,
        time=envelope.time,
        data=data,
        dataversion=version,
        raw=raw,
        dataschema=envelope.dataschema,
    )


# -- reasons --------------------------------------------------------------------------------------

_PLAIN_MESSAGES = {
    "missing": "field required",
    "extra_forbidden": "unknown attribute (not allowed)",
    "string_type": "must be a string",
    "string_unicode": "must be valid Unicode (lone surrogate)",
    "int_type": "must be an integer",
    "bool_type": "must be true or false",
    "dict_type": "must be a JSON object",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "string_too_long": "must be at most {max_length} characters",
    "greater_than_equal": "must be >= {ge}",
    "less_than_equal": "must be <= {le}",
    "literal_error": "must be {expected}",
    "string_pattern_mismatch": "must match {pattern}",
}


def _message(problem: Any) -> str:
    kind, context = problem["type"], problem.get("ctx") or {}
    if kind == "string_pattern_mismatch":
        forbidden = forbidden_character(context.get("pattern"), problem.get("input"))
        if forbidden is not None:
            return forbidden
    if kind == "string_too_short":
        minimum = context.get("min_length", 1)
        return "must not be empty" if minimum == 1 else f"must be at least {minimum} characters"
    template = _PLAIN_MESSAGES.get(kind)
    if template is not None:
        try:
            return template.format(**context)
        except (KeyError, IndexError, ValueError):
            pass
    message = str(problem["msg"])
    return message[:1].lower() + message[1:]


def describe_problems(error: ValidationError) -> str:
    """The first problems of a validation error, each as ``where: what``, in plain words, on
    one printable line."""
    problems = []
    for problem in error.errors(include_url=False):  # the input: which character a pattern refused
        where = ".".join(_clip(str(part)) for part in problem["loc"])
        problems.append(f"{where}: {_message(problem)}" if where else _message(problem))
    reason = "; ".join(problems[:MAX_PROBLEMS])
    if len(problems) > MAX_PROBLEMS:
        reason += f" (and {len(problems) - MAX_PROBLEMS} more)"
    return _one_line(reason)


_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def _one_line(text: str) -> str:
    """One printable line: control characters and lone surrogates escaped; at most 1000 characters."""
    text = _UNSAFE.sub(lambda found: f"\\u{ord(found.group()):04x}", text)
    return text if len(text) <= 1000 else text[:997] + "..."


def _clip(text: str, limit: int = 64) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _show(value: Any) -> str:
    """A short one-line rendition of a JSON value for a reason."""
    if isinstance(value, str):
        return _one_line(repr(_clip(value)))
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | Decimal):
        return _clip(str(value), 32)
    return _kind(value)


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


def _hint(document: dict[str, Any], key: str) -> str | None:
    """A top-level string attribute, if it is usable as an identity (for the dead-letter record)."""
    value = document.get(key)
    if isinstance(value, str) and 0 < len(value) <= 256 and not _UNSAFE.search(value):
        return value
    return None
