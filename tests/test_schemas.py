"""The inbound contract: examples that parse, and one refusing test per rule."""

from __future__ import annotations

import copy
import json
from dataclasses import FrozenInstanceError
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

import schemas
from schemas import (
    EVENT_TYPES,
    LATEST_VERSION,
    MAX_EVENT_BYTES,
    FeedbackSubmitted,
    InboundEvent,
    PurchaseRecorded,
    Rejection,
    export_json_schemas,
    parse,
)
from schemas.data import EventData
from schemas.export import render, schema_documents
from schemas.versions import DATA_MODELS, UPCASTERS, upcast

SCHEMA_DIR = Path(schemas.__file__).parent / "json"

#: One valid ``data`` per event type (latest version).
EXAMPLE_DATA: dict[str, dict[str, Any]] = {
    "crm.customer.registered": {
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "phone": "+44 20 7946 0000",
        "country": "GB",
        "channel": "web",
    },
    "crm.profile.updated": {"address": "1 Analytical Way\nLondon", "company": "Engines Ltd"},
    "crm.consent.changed": {"purpose": "marketing", "granted": False},
    "crm.interaction.recorded": {"channel": "web", "kind": "page_view", "detail": "/pricing"},
    "crm.lead.qualified": {"budget": True, "authority": True, "need": True, "timeline": False, "score": 70},
    "crm.stage.change.requested": {"to_stage": "churned", "reason": "cancelled", "note": "asked by phone"},
    "crm.purchase.recorded": {"order_id": "o-1", "amount": "29.33", "currency": "USD", "items": 2},
    "crm.refund.recorded": {"order_id": "o-1", "amount": "10", "currency": "USD", "reason": "damaged"},
    "crm.feedback.submitted": {"score": 9, "comment": "Great\tservice\nthanks"},
    "crm.referral.made": {"referred_key": "shop:77", "channel": "email"},
    "crm.ticket.opened": {"ticket_id": "t-1", "priority": "high", "topic": "delivery"},
    "crm.ticket.resolved": {"ticket_id": "t-1", "resolution": "resent", "satisfied": True},
    "crm.deal.opened": {
        "deal_id": "d-1",
        "name": "Fleet renewal",
        "amount": "12000.00",
        "currency": "EUR",
        "expected_close": "2026-06-30",
        "owner": "sales:jo",
    },
    "crm.deal.stage.changed": {"deal_id": "d-1", "stage": "proposal", "amount": 11000, "expected_close": "2026-07-15"},
    "crm.deal.won": {"deal_id": "d-1", "amount": "10500.50"},
    "crm.deal.lost": {"deal_id": "d-2", "reason": "price"},
    "crm.customer.erasure.requested": {"reason": "GDPR art. 17 request"},
}


def event(event_type: str = "crm.purchase.recorded", data: dict[str, Any] | None = None, **attributes: Any) -> dict:
    """A valid event (as a dict) of the type, with attributes overridden."""
    document: dict[str, Any] = {
        "specversion": "1.0",
        "id": "evt-9f2",
        "source": "shop/checkout",
        "type": event_type,
        "subject": "shop:42",
        "time": "2026-03-01T10:15:00Z",
        "datacontenttype": "application/json",
        "data": copy.deepcopy(EXAMPLE_DATA[event_type]) if data is None else data,
    }
    document.update(attributes)
    return document


def encode(document: Any) -> bytes:
    return json.dumps(document, default=str).encode("utf-8")


def with_data(event_type: str, **changes: Any) -> bytes:
    data = copy.deepcopy(EXAMPLE_DATA[event_type])
    data.update(changes)
    return encode(event(event_type, data))


def rejected(raw: bytes) -> Rejection:
    result = parse(raw)
    assert isinstance(result, Rejection), result
    assert result.raw == raw
    assert result.reason and "\n" not in result.reason
    return result


def accepted(raw: bytes) -> InboundEvent:
    result = parse(raw)
    assert isinstance(result, InboundEvent), result
    return result


# -- what the engine reads of the data ---------------------------------------------------------


_SCALARS = (str, int, bool, Decimal, date, type(None))


@pytest.mark.parametrize("model", [m for versions in DATA_MODELS.values() for m in versions.values()],
                         ids=lambda m: f"{m.event_type}-v{m.version}")
def test_data_models_are_flat_so_present_is_their_dump(model):
    # ``EventData.present`` reads the validated values straight from the model: right only
    # while no field holds a model, a list or a dict, and nothing serializes differently.
    for name, info in model.model_fields.items():
        assert _is_scalar(info.annotation), (name, info.annotation)
    assert not model.__pydantic_decorators__.field_serializers
    assert not model.__pydantic_decorators__.model_serializers
    assert not model.model_computed_fields


def _is_scalar(annotation: Any) -> bool:
    import types
    import typing

    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _is_scalar(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return all(_is_scalar(arg) for arg in typing.get_args(annotation))
    if origin is typing.Literal:
        return all(isinstance(value, _SCALARS) for value in typing.get_args(annotation))
    return origin is None and isinstance(annotation, type) and issubclass(annotation, _SCALARS)


def test_a_nested_field_is_not_scalar():
    assert not _is_scalar(list[str]) and not _is_scalar(dict[str, int] | None)
    assert not _is_scalar(EventData) and _is_scalar(Decimal | None)


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_present_equals_the_dump_without_nones(event_type):
    data = accepted(encode(event(event_type)) + b"\n").data
    assert data.present() == data.model_dump(exclude_none=True)
    assert list(data.present()) == list(data.model_dump(exclude_none=True))
    assert data.present() is not data.present()  # callers may change theirs


# -- what parses --------------------------------------------------------------------------------


def test_every_type_has_an_example():
    assert set(EXAMPLE_DATA) == set(EVENT_TYPES)
    assert len(EVENT_TYPES) == 17


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_type_has_a_valid_example_that_parses(event_type):
    raw = encode(event(event_type)) + b"\n"
    parsed = accepted(raw)
    assert parsed.type == event_type
    assert parsed.raw == raw
    assert parsed.subject == "shop:42" and parsed.source == "shop/checkout" and parsed.id == "evt-9f2"
    assert type(parsed.data) is DATA_MODELS[event_type][LATEST_VERSION[event_type]]
    assert parsed.dataversion == LATEST_VERSION[event_type]


def test_the_design_example_parses_exactly():
    raw = (
        b'{"specversion": "1.0", "id": "evt-9f2", "source": "shop/checkout", "type": "crm.purchase.recorded",'
        b' "subject": "shop:42", "time": "2026-03-01T10:15:00Z", "datacontenttype": "application/json",'
        b' "data": {"order_id": "o-1", "amount": "29.33", "currency": "USD", "items": 2}}'
    )
    parsed = accepted(raw)
    assert parsed.data == PurchaseRecorded(order_id="o-1", amount=Decimal("29.33"), currency="USD", items=2)
    assert parsed.time == datetime(2026, 3, 1, 10, 15, tzinfo=timezone.utc)


def test_amount_as_json_number_is_the_exact_decimal():
    raw = b'{"specversion":"1.0","id":"1","source":"s","type":"crm.purchase.recorded","subject":"k",' \
          b'"time":"2026-03-01T10:15:00Z","data":{"order_id":"o","amount":29.33,"currency":"USD"}}'
    data = accepted(raw).data
    assert isinstance(data.amount, Decimal) and data.amount == Decimal("29.33")
    assert str(data.amount) == "29.33"
    assert data.items == 1  # default


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ('"29.30"', "29.30"),  # the scale as sent
        ("0", "0"),
        ("1e3", "1000"),  # exponent expanded
        ('"-0"', "0"),
        ('"0.000000"', "0.0000"),
        ('"12.340000"', "12.3400"),  # surplus trailing zeros dropped
        ('"999999999999.9999"', "999999999999.9999"),
    ],
)
def test_amount_canonical_forms(given, expected):
    raw = encode(event(data={"order_id": "o", "currency": "USD", "amount": 0})).replace(
        b'"amount": 0', b'"amount": ' + given.encode()
    )
    assert str(accepted(raw).data.amount) == expected


def test_time_with_offset_is_normalised_to_utc():
    parsed = accepted(encode(event(time="2026-03-01T12:15:00+02:00")))
    assert parsed.time == datetime(2026, 3, 1, 10, 15, tzinfo=timezone.utc)
    assert parsed.time.utcoffset().total_seconds() == 0 and parsed.time.tzinfo is timezone.utc


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("2026-03-01t10:15:00z", datetime(2026, 3, 1, 10, 15, tzinfo=timezone.utc)),
        ("2026-03-01T10:15:00.123456789-05:30", datetime(2026, 3, 1, 15, 45, 0, 123456, tzinfo=timezone.utc)),
        ("1970-01-01T00:00:00Z", datetime(1970, 1, 1, tzinfo=timezone.utc)),
        ("2100-12-31T23:59:59Z", datetime(2100, 12, 31, 23, 59, 59, tzinfo=timezone.utc)),
    ],
)
def test_rfc3339_variants(given, expected):
    assert accepted(encode(event(time=given))).time == expected


def test_crlf_line_ending_is_stripped():
    raw = encode(event()) + b"\r\n"
    assert accepted(raw).raw == raw


def test_optional_attributes_may_be_null_or_absent():
    document = event(datacontenttype=None, dataschema=None, dataversion=None)
    assert accepted(encode(document)).dataversion == 1
    del document["datacontenttype"], document["dataschema"], document["dataversion"]
    accepted(encode(document))


def test_dataschema_and_dataversion_as_string_or_number():
    parsed = accepted(encode(event(dataschema="https://example.com/purchase.json", dataversion="1")))
    assert parsed.dataschema == "https://example.com/purchase.json" and parsed.dataversion == 1
    assert accepted(encode(event(dataversion=1))).dataversion == 1


def test_defaults_are_applied():
    deal = accepted(encode(event("crm.deal.opened"))).data
    assert deal.stage == "initial_contact" and deal.expected_close == date(2026, 6, 30)
    ticket = accepted(encode(event("crm.ticket.opened", {"ticket_id": "t"}))).data
    assert ticket.priority == "normal"


def test_free_text_keeps_newlines_and_tabs():
    data = accepted(encode(event("crm.feedback.submitted"))).data
    assert data.comment == "Great\tservice\nthanks"


def test_values_are_immutable():
    parsed = accepted(encode(event()))
    with pytest.raises(FrozenInstanceError):
        parsed.subject = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        parsed.data.amount = Decimal(1)  # type: ignore[misc]


# -- versions and upcasting --------------------------------------------------------------------------


def test_feedback_v1_is_upcast_to_score():
    raw = encode(event("crm.feedback.submitted", {"nps": 10, "comment": "love it"}, dataversion="1"))
    parsed = accepted(raw)
    assert parsed.data == FeedbackSubmitted(score=10, comment="love it")
    assert parsed.dataversion == 1
    assert accepted(encode(event("crm.feedback.submitted", {"nps": 3}, dataversion=1))).data.score == 3


def test_feedback_v1_is_validated_as_v1():
    assert rejected(encode(event("crm.feedback.submitted", {"score": 9}, dataversion="1"))).reason.startswith(
        "data.nps: field required"
    )
    assert "data.nps: must be <= 10" in rejected(
        encode(event("crm.feedback.submitted", {"nps": 11}, dataversion="1"))
    ).reason


def test_feedback_without_dataversion_is_latest():
    assert LATEST_VERSION["crm.feedback.submitted"] == 2
    assert "data.nps: unknown attribute" in rejected(encode(event("crm.feedback.submitted", {"nps": 9}))).reason


def test_upcast_registry_is_a_chain_of_dict_functions():
    assert ("crm.feedback.submitted", 1) in UPCASTERS
    assert upcast("crm.feedback.submitted", 1, {"nps": 7, "comment": "x"}) == {"score": 7, "comment": "x"}
    assert upcast("crm.feedback.submitted", 2, {"score": 7}) == {"score": 7}
    for event_type, latest in LATEST_VERSION.items():
        assert sorted(DATA_MODELS[event_type]) == list(range(1, latest + 1))
        assert all((event_type, v) in UPCASTERS for v in range(1, latest))


# -- what is refused ---------------------------------------------------------------------------------

REFUSALS = [
    # (name, raw bytes, expected text in the reason)
    ("naive time", encode(event(time="2026-03-01T10:15:00")), "time: must carry a time zone offset"),
    ("year 1800", encode(event(time="1800-03-01T10:15:00Z")), "time: year must be between 1970 and 2100"),
    ("year 2101", encode(event(time="2101-01-01T00:00:00Z")), "time: year must be between"),
    ("before 1970 in UTC", encode(event(time="1970-01-01T00:30:00+01:00")), "time: year must be between"),
    ("time as number", encode(event(time=1767225600)), "time: must be an RFC 3339 timestamp"),
    ("time not a date", encode(event(time="2026-02-30T10:15:00Z")), "time: must be an RFC 3339 timestamp"),
    ("leap second", encode(event(time="2026-06-30T23:59:60Z")), "time: must be an RFC 3339"),
    ("NaN amount string", with_data("crm.purchase.recorded", amount="NaN"), "data.amount: must be a decimal number"),
    ("NaN literal", encode(event()).replace(b'"29.33"', b"NaN"), "not valid JSON: NaN is not allowed"),
    ("Infinity literal", encode(event()).replace(b'"29.33"', b"-Infinity"), "-Infinity is not allowed"),
    ("negative amount", with_data("crm.purchase.recorded", amount="-1.5"), "data.amount: must be >= 0"),
    ("negative number", encode(event()).replace(b'"29.33"', b"-0.01"), "data.amount: must be >= 0"),
    ("too many decimals", with_data("crm.purchase.recorded", amount="12.34567"), "data.amount: must have at most 4 decimal"),
    ("13 integer digits", with_data("crm.purchase.recorded", amount="1234567890123"), "at most 12 digits before"),
    ("amount exponent string", with_data("crm.purchase.recorded", amount="1e3"), "data.amount: must be a decimal"),
    ("amount bool", with_data("crm.purchase.recorded", amount=True), "data.amount: must be a decimal"),
    ("amount padded", with_data("crm.purchase.recorded", amount=" 1"), "data.amount: must be a decimal"),
    ("refund negative", with_data("crm.refund.recorded", amount="-3"), "data.amount: must be >= 0"),
    ("deal amount decimals", with_data("crm.deal.won", amount="1.00001"), "data.amount: must have at most 4"),
    ("NPS 11", with_data("crm.feedback.submitted", score=11), "data.score: must be <= 10"),
    ("NPS -1", with_data("crm.feedback.submitted", score=-1), "data.score: must be >= 0"),
    ("NPS 7.5", encode(event("crm.feedback.submitted", {"score": 0})).replace(b'"score": 0', b'"score": 7.5'), "data.score: must be an integer"),
    ("NPS 7.0", encode(event("crm.feedback.submitted", {"score": 0})).replace(b'"score": 0', b'"score": 7.0'), "data.score: must be an integer"),
    ("NPS string", with_data("crm.feedback.submitted", score="7"), "data.score: must be an integer"),
    ("NPS true", with_data("crm.feedback.submitted", score=True), "data.score: must be an integer"),
    ("currency XXY", with_data("crm.purchase.recorded", currency="XXY"), "data.currency: must be an active upper-case ISO 4217"),
    ("currency lower case", with_data("crm.purchase.recorded", currency="usd"), "data.currency:"),
    ("currency withdrawn", with_data("crm.refund.recorded", currency="HRK"), "data.currency:"),
    ("extra top-level key", encode(event(junk=1)), "junk: unknown attribute (not allowed)"),
    ("extra data key", with_data("crm.purchase.recorded", coupon="X"), "data.coupon: unknown attribute"),
    ("unknown type", encode({**event(), "type": "crm.purchase.deleted"}), "unknown event type 'crm.purchase.deleted'"),
    ("type not a string", encode({**event(), "type": ["x"]}), "unknown event type an array"),
    ("missing type", encode({k: v for k, v in event().items() if k != "type"}), "type: field required"),
    ("specversion 0.3", encode(event(specversion="0.3")), "unknown specversion '0.3'"),
    ("specversion number", encode(event(specversion=1.0)), "unknown specversion 1.0"),
    ("missing specversion", encode({k: v for k, v in event().items() if k != "specversion"}), "specversion: field required"),
    ("non-UTF-8", encode(event(subject="shop:X")).replace(b"shop:X", b"shop:\xe9"), "not valid UTF-8: byte 0xe9"),
    ("UTF-8 surrogate", b'{"a": "\xed\xa0\x80"}', "not valid UTF-8"),
    ("oversized", encode(event()) + b" " * MAX_EVENT_BYTES, f"event exceeds {MAX_EVENT_BYTES} bytes"),
    ("duplicate keys", b'{"specversion": "1.0", "specversion": "1.0"}', "not valid JSON: duplicate key 'specversion'"),
    ("duplicate data keys", encode(event()).replace(b'"items": 2', b'"items": 2, "items": 3'), "duplicate key 'items'"),
    ("control char in subject", encode(event(subject="shop:\u000742")), "subject: must not contain control characters"),
    ("newline in subject", encode(event(subject="shop:\n42")), "subject: must not contain control"),
    ("C1 control in id", encode(event(id="a\u0085b")), "id: must not contain control"),
    ("NUL in comment", with_data("crm.feedback.submitted", comment="ok\u0000"), "data.comment: must not contain control characters other than tab"),
    ("CR in note", with_data("crm.lead.qualified", note="a\rb"), "data.note: must not contain control"),
    ("newline in name", with_data("crm.customer.registered", name="Ada\nL"), "data.name: must not contain control"),
    ("whitespace in source", encode(event(source="shop checkout")), "source: must not contain whitespace"),
    ("lone surrogate", encode(event(subject="shop:\ud800")), "subject: must be valid Unicode"),
    ("truncated JSON", encode(event())[:-7], "not valid JSON: Unterminated string starting at line 1"),
    ("JSON array", b'[{"specversion": "1.0"}]', "not a JSON object: got an array"),
    ("JSON string", b'"hello"', "not a JSON object: got a string"),
    ("empty line", b"\n", "empty event"),
    ("empty bytes", b"", "empty event"),
    ("blank line", b"   \r\n", "empty event"),
    ("garbage", b"hello", "not valid JSON: Expecting value at line 1 column 1"),
    ("deep nesting", b"[" * 50000 + b"]" * 50000, "event exceeds"),
    ("deep but small", b'{"a":' * 5000 + b"1" + b"}" * 5000, "not valid JSON"),
    ("huge integer", b'{"a": ' + b"9" * 5000 + b"}", "not valid JSON: a number has too many digits"),
    ("exponent out of range", b'{"a": 1e999999999999999999999}', "not valid JSON: a number is out of range"),
    ("huge exponent amount", encode(event()).replace(b'"29.33"', b"1e999999999"), "data.amount: must have at most 12"),
    ("unknown dataversion", encode(event(dataversion="3")), "unknown dataversion 3 for crm.purchase.recorded (known: 1)"),
    ("bad dataversion", encode(event(dataversion="v1")), "dataversion: must be a positive integer"),
    ("dataversion zero", encode(event(dataversion=0)), "dataversion: must be a positive integer"),
    ("dataversion float", encode(event()).replace(b'"data":', b'"dataversion": 1.0, "data":'), "dataversion: must be"),
    ("dataversion bool", encode(event(dataversion=True)), "dataversion: must be a positive integer"),
    ("datacontenttype", encode(event(datacontenttype="text/plain")), "datacontenttype: must be 'application/json'"),
    ("missing subject", encode({k: v for k, v in event().items() if k != "subject"}), "subject: field required"),
    ("empty subject", encode(event(subject="")), "subject: must not be empty"),
    ("long subject", encode(event(subject="k" * 257)), "subject: must be at most 256 characters"),
    ("empty id", encode(event(id="")), "id: must not be empty"),
    ("missing data", encode({k: v for k, v in event().items() if k != "data"}), "data: field required"),
    ("data array", encode(event(data=[1])), "data: must be a JSON object"),
    ("data null", encode({**event(), "data": None}), "data: must be a JSON object"),
    ("missing data field", encode(event(data={"order_id": "o", "currency": "USD"})), "data.amount: field required"),
    ("items zero", with_data("crm.purchase.recorded", items=0), "data.items: must be >= 1"),
    ("items too many", with_data("crm.purchase.recorded", items=10001), "data.items: must be <= 10000"),
    ("order_id empty", with_data("crm.purchase.recorded", order_id=""), "data.order_id: must not be empty"),
    ("order_id number", with_data("crm.purchase.recorded", order_id=1), "data.order_id: must be a string"),
    ("country lower", with_data("crm.customer.registered", country="gb"), "data.country: must be an upper-case ISO 3166-1"),
    ("country unknown", with_data("crm.customer.registered", country="ZZ"), "data.country:"),
    ("email", with_data("crm.customer.registered", email="ada at example.com"), "data.email: must be an e-mail address"),
    ("email no domain dot", with_data("crm.customer.registered", email="ada@localhost"), "data.email:"),
    ("profile empty", encode(event("crm.profile.updated", {})), "data: at least one of name, email"),
    ("profile all null", encode(event("crm.profile.updated", {"name": None})), "data: at least one of"),
    ("consent purpose", with_data("crm.consent.changed", purpose="fax"), "data.purpose: must be 'all', 'marketing'"),
    ("consent granted string", with_data("crm.consent.changed", granted="true"), "data.granted: must be true or false"),
    ("interaction channel", with_data("crm.interaction.recorded", channel="pigeon"), "data.channel: must be"),
    ("lead score", with_data("crm.lead.qualified", score=101), "data.score: must be <= 100"),
    ("lead bool as int", with_data("crm.lead.qualified", need=1), "data.need: must be true or false"),
    ("stage pattern", with_data("crm.stage.change.requested", to_stage="Churned"), "data.to_stage: must match"),
    ("reason code pattern", with_data("crm.stage.change.requested", reason="price too high"), "data.reason: must match"),
    ("ticket priority", with_data("crm.ticket.opened", priority="asap"), "data.priority: must be"),
    ("deal stage closed", with_data("crm.deal.stage.changed", stage="closed_won"), "data.stage: must be 'initial_contact'"),
    ("expected_close format", with_data("crm.deal.opened", expected_close="30/06/2026"), "data.expected_close: must be a calendar date"),
    ("expected_close datetime", with_data("crm.deal.opened", expected_close="2026-06-30T00:00:00Z"), "data.expected_close:"),
    ("expected_close absurd", with_data("crm.deal.opened", expected_close="9999-01-01"), "data.expected_close: year must be"),
    ("deal lost no reason", with_data("crm.deal.lost", reason=""), "data.reason: must not be empty"),
    ("referral empty key", with_data("crm.referral.made", referred_key=""), "data.referred_key: must not be empty"),
    ("comment too long", with_data("crm.feedback.submitted", comment="x" * 2001), "data.comment: must be at most 2000"),
]


@pytest.mark.parametrize(("raw", "expected"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_refused(raw, expected):
    reason = rejected(raw).reason
    assert expected in reason


def test_several_problems_are_listed_in_one_line():
    raw = encode(event(time="2026-03-01T10:15:00", data={"order_id": "", "amount": "-1", "currency": "XXY"}, x=1))
    reason = rejected(raw).reason
    assert reason.count("; ") == 2 and reason.endswith("(and 2 more)")
    assert reason.startswith("time: ")


def test_size_limit_is_on_the_event_without_its_line_ending():
    base = encode(event())
    exactly = base + b" " * (MAX_EVENT_BYTES - len(base))
    assert len(exactly) == MAX_EVENT_BYTES
    accepted(exactly + b"\n")
    assert "exceeds" in rejected(exactly + b" ").reason


def test_rejection_keeps_the_identity_when_recoverable():
    rejection = rejected(with_data("crm.purchase.recorded", amount="-1"))
    assert (rejection.source, rejection.event_id, rejection.type, rejection.subject) == (
        "shop/checkout",
        "evt-9f2",
        "crm.purchase.recorded",
        "shop:42",
    )
    unknown = rejected(encode({**event(), "type": "crm.nope", "subject": 42}))
    assert unknown.type == "crm.nope" and unknown.subject is None
    garbage = rejected(b"{")
    assert (garbage.source, garbage.event_id, garbage.type, garbage.subject) == (None, None, None, None)


def test_reasons_escape_what_they_quote():
    reason = rejected(encode({**event(), "type": "bad\ntype\ud800"})).reason
    assert "\n" not in reason and "\\n" in reason
    reason.encode("utf-8")  # no lone surrogate left
    reason = rejected(encode(event(**{"x\u0000\ud800": 1}))).reason
    reason.encode("utf-8")


def test_bytes_like_input_is_accepted():
    raw = encode(event())
    assert isinstance(parse(bytearray(raw)), InboundEvent)
    assert isinstance(parse(memoryview(raw)), InboundEvent)


# -- JSON Schemas ---------------------------------------------------------------------------------


def test_committed_json_schemas_are_up_to_date():
    expected = {name: render(document) for name, document in schema_documents().items()}
    committed = {path.name: path.read_text(encoding="utf-8") for path in SCHEMA_DIR.glob("*.json")}
    hint = "the models changed: run `lifecycle schemas export schemas/json` and commit the result"
    assert sorted(committed) == sorted(expected), hint
    for name, text in expected.items():
        assert committed[name] == text, f"{name} is stale; {hint}"


def test_export_writes_deterministic_files(tmp_path):
    first = export_json_schemas(tmp_path / "a")
    second = export_json_schemas(tmp_path / "b")
    names = [path.name for path in first]
    assert names == sorted(names) == [path.name for path in second]
    assert "envelope.schema.json" in names and "crm.purchase.recorded.v1.schema.json" in names
    assert "crm.feedback.submitted.v1.schema.json" in names and "crm.feedback.submitted.v2.schema.json" in names
    assert "outbound.v1.schema.json" in names  # the lifecycle.events contract
    assert len(names) == 2 + sum(len(versions) for versions in DATA_MODELS.values())
    for a, b in zip(first, second):
        text = a.read_text(encoding="utf-8")
        assert text == b.read_text(encoding="utf-8") and text.endswith("}\n")
        assert json.loads(text)["$schema"].startswith("https://json-schema.org/")


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_schema_describes_the_example(event_type):
    """A light consistency check (no JSON Schema validator installed): keys and requirements."""
    version = LATEST_VERSION[event_type]
    schema = json.loads(render(schema_documents()[f"{event_type}.v{version}.schema.json"]))
    example = event(event_type)
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) <= set(example) <= set(schema["properties"])
    assert schema["properties"]["type"]["const"] == event_type
    data_schema = schema["$defs"][schema["properties"]["data"]["$ref"].rsplit("/", 1)[1]]
    assert data_schema["additionalProperties"] is False
    assert set(data_schema.get("required", [])) <= set(example["data"]) <= set(data_schema["properties"])
