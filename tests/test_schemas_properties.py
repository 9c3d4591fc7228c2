"""Properties of ``schemas.parse``: it never raises, and what it accepts round-trips exactly."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import EVENT_TYPES, InboundEvent, Rejection, parse
from tests.test_schemas import EXAMPLE_DATA, encode, event

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ENVELOPE_KEYS = ["specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema", "dataversion", "data"]
DATA_KEYS = sorted({key for data in EXAMPLE_DATA.values() for key in data} | {"nps", "score", "amount"})

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.sampled_from(["1.0", "0.3", "", "2026-03-01T10:15:00Z", "USD", "29.33", "-1", "NaN", "1", "2", *EVENT_TYPES])
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(DATA_KEYS) | st.text(max_size=8), children, max_size=5),
    max_leaves=12,
)


def check_contract(raw: bytes) -> InboundEvent | Rejection:
    result = parse(raw)
    assert isinstance(result, InboundEvent | Rejection)
    assert result.raw == raw
    if isinstance(result, Rejection):
        assert result.reason.strip() and "\n" not in result.reason
        result.reason.encode("utf-8")  # storable as is: no lone surrogates
        for hint in (result.source, result.event_id, result.type, result.subject):
            assert hint is None or (isinstance(hint, str) and hint)
    else:
        assert result.time.tzinfo is timezone.utc
        assert 1970 <= result.time.year <= 2100
        assert result.type in EVENT_TYPES
    return result


@FAST
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(raw):
    check_contract(raw)


@FAST
@given(st.dictionaries(st.sampled_from(ENVELOPE_KEYS) | st.text(max_size=10), json_values, max_size=12))
def test_arbitrary_json_objects_never_raise(document):
    check_contract(json.dumps(document).encode("utf-8", "surrogatepass"))


@FAST
@given(
    event_type=st.sampled_from(EVENT_TYPES),
    where=st.sampled_from(["envelope", "data"]),
    key=st.sampled_from(ENVELOPE_KEYS + DATA_KEYS),
    value=json_values,
    delete=st.booleans(),
)
def test_mutated_valid_events_never_raise(event_type, where, key, value, delete):
    document = event(event_type)
    target = document if where == "envelope" else document["data"]
    if delete:
        target.pop(key, None)
    else:
        target[key] = value
    check_contract(json.dumps(document).encode("utf-8", "surrogatepass"))


@FAST
@given(
    event_type=st.sampled_from(EVENT_TYPES),
    cut=st.integers(min_value=0, max_value=2000),
    byte=st.integers(min_value=0, max_value=255),
)
def test_corrupted_valid_events_never_raise(event_type, cut, byte):
    raw = bytearray(encode(event(event_type)))
    raw[cut % len(raw)] = byte
    check_contract(bytes(raw))
    check_contract(bytes(raw[: cut % len(raw)]))


amounts = st.decimals(min_value=0, max_value=Decimal("999999999999.9999"), places=4, allow_nan=False, allow_infinity=False)


@FAST
@given(amount=amounts, as_string=st.booleans())
def test_valid_amounts_are_kept_exactly(amount, as_string):
    literal = json.dumps(str(amount)) if as_string else str(amount)
    raw = encode(event()).replace(b'"29.33"', literal.encode())
    result = check_contract(raw)
    assert isinstance(result, InboundEvent), result
    assert result.data.amount == amount


@FAST
@given(
    moment=st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2100, 12, 30)),
    offset_minutes=st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59),
)
def test_times_with_any_offset_become_the_same_utc_instant(moment, offset_minutes):
    zone = timezone(timedelta(minutes=offset_minutes))
    local = moment.replace(tzinfo=zone)
    result = check_contract(encode(event(time=local.isoformat())))
    assert isinstance(result, InboundEvent), result
    assert result.time == local and result.time.tzinfo is timezone.utc


@FAST
@given(nps=st.integers(min_value=0, max_value=10), comment=st.none() | st.text(max_size=50))
def test_feedback_v1_and_v2_agree(nps, comment):
    v1 = {"nps": nps} if comment is None else {"nps": nps, "comment": comment}
    v2 = {"score": nps} if comment is None else {"score": nps, "comment": comment}
    old = parse(json.dumps(event("crm.feedback.submitted", v1, dataversion="1")).encode("utf-8", "surrogatepass"))
    new = parse(json.dumps(event("crm.feedback.submitted", copy.deepcopy(v2))).encode("utf-8", "surrogatepass"))
    assert type(old) is type(new)
    if isinstance(old, InboundEvent):
        assert old.data == new.data
    else:
        assert old.reason.replace("nps", "score") == new.reason


def _two(low: int, high: int) -> st.SearchStrategy[str]:
    return st.integers(low, high).map("{:02d}".format)


# Texts the RFC 3339 pattern admits, near and beyond the edges of every field.
rfc3339_texts = st.builds(
    lambda year, month, day, t, hour, minute, second, fraction, zone:
        f"{year}-{month}-{day}{t}{hour}:{minute}:{second}{fraction}{zone}",
    st.integers(1968, 2102).map(str), _two(0, 13), _two(0, 32), st.sampled_from("Tt"),
    _two(0, 24), _two(0, 60), _two(0, 61),
    st.just("") | st.from_regex(r"\A\.[0-9]{1,12}\Z"),
    st.sampled_from("Zz") | st.builds(lambda sign, h, m: f"{sign}{h}:{m}", st.sampled_from("+-"), _two(0, 25),
                                      _two(0, 99)),
)


@FAST
@given(text=rfc3339_texts | st.datetimes(min_value=datetime(1969, 12, 30), max_value=datetime(2101, 1, 2),
                                          timezones=st.timezones()).map(datetime.isoformat))
def test_the_timestamp_parser_means_what_the_field_by_field_construction_means(text):
    """``_timestamp`` lets the C parser read what the RFC 3339 pattern admits; built field by
    field instead (the C parser made to refuse everything), every text gives the same instant,
    or the same refusal."""
    from unittest import mock

    from pydantic_core import PydanticCustomError

    from schemas import fields

    class FieldByField(datetime):
        @classmethod
        def fromisoformat(cls, text):
            raise ValueError(text)

    def outcome():
        try:
            return fields._timestamp(text)
        except PydanticCustomError as error:
            return error.type

    found = outcome()
    with mock.patch.object(fields, "datetime", FieldByField):
        expected = outcome()
    assert found == expected
    if isinstance(found, datetime):
        assert found.tzinfo is timezone.utc and found.utcoffset() == timedelta(0)
