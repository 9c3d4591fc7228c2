"""The relay's messages: ``to_message`` writes the outbound contract's JSON without building the
model, and must write exactly the bytes the model writes (a consumer in another language reads
them), for every event the engine stores and for any JSON-able payload."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from consumers.outbound import MessageMismatch, _contract_json, from_message, from_record, to_message
from lifecycle.simulate import simulate
from projections.log import DeferredEvent, EngineLogSource, LogEvent
from schemas.outbound import OutboundEvent
from tests.backends import runtime_factory


def model_bytes(event: LogEvent) -> bytes:
    occurred = event.payload.get("occurred_at")
    return OutboundEvent(
        notification_id=event.position, aggregate_type=event.aggregate_type, aggregate_id=event.aggregate_id,
        version=event.version, name=event.name, recorded_at=event.recorded_at,
        occurred_at=datetime.fromisoformat(occurred) if isinstance(occurred, str) else None,
        payload=dict(event.payload),
    ).model_dump_json().encode()


def test_every_stored_event_is_written_as_the_model_writes_it(tmp_path):
    rt = runtime_factory("sqlite", tmp_path, lambda: "")()
    try:
        rt.ingest_lines(simulate(customers=40, seed=3, start=date(2024, 1, 1), days=300))
        rt.forget("shop:1002")
        events = EngineLogSource(rt.engine).read(0, 100_000)
        assert {e.aggregate_type for e in events} == {"Customer", "Deal", "InboundReceipt"}
        for event in events:
            key, value, headers = to_message(event, "k")
            assert value == model_bytes(event)
            occurred = event.payload.get("occurred_at")
            occurred_at = datetime.fromisoformat(occurred) if occurred else None
            assert _contract_json(event, occurred_at) == value  # the fast way, not the model's
            assert from_message(value, 7) == event._replace(position=7)
            assert headers == [("event_type", f"{event.aggregate_type}.{event.name}".encode()),
                               ("aggregate_id", event.aggregate_id.encode()), ("version", str(event.version).encode())]
            read = from_record(value, headers, 7)
            if event.aggregate_type == "InboundReceipt":  # its body makes the rejections: read now
                assert read == event._replace(position=7)
            else:
                assert type(read) is DeferredEvent
                assert read[:5] == (7, event.aggregate_type, event.aggregate_id, event.version, event.name)
                assert read.decoded() == event._replace(position=7)
    finally:
        rt.close()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=12,
)
offsets = st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-9, minutes=-30)),
                           timezone(timedelta(seconds=5)), None])


@settings(max_examples=400, deadline=None)
@given(
    payload=st.dictionaries(st.text(), json_values, max_size=5),
    occurred=st.none() | st.datetimes(timezones=offsets),
    recorded=st.datetimes(timezones=offsets),
    aggregate_type=st.sampled_from(["Customer", "Deal", "InboundReceipt", "Other"]),
    name=st.text(max_size=70),
    numbers=st.tuples(st.integers(-1, 2**40), st.integers(-1, 2**40)),
)
def test_any_event_is_written_as_the_model_writes_it_or_refused_as_it_refuses(
    payload, occurred, recorded, aggregate_type, name, numbers
):
    if occurred is not None:
        payload = {**payload, "occurred_at": occurred.isoformat()}
    event = LogEvent(numbers[0], aggregate_type, "a" * (numbers[1] % 70), numbers[1], name, recorded, payload)
    try:
        expected = model_bytes(event)
    except (ValidationError, ValueError):
        with pytest.raises((ValidationError, ValueError)):
            to_message(event, "k")
        return
    assert to_message(event, "k")[1] == expected


def test_a_payload_orjson_refuses_is_left_to_the_model():
    big = LogEvent(1, "Customer", "id", 1, "Noted", datetime(2026, 1, 1, tzinfo=UTC), {"big": 2**70})
    assert to_message(big, "k")[1] == model_bytes(big) == (
        b'{"schema_version":1,"notification_id":1,"aggregate_type":"Customer","aggregate_id":"id",'
        b'"version":1,"name":"Noted","recorded_at":"2026-01-01T00:00:00Z","occurred_at":null,'
        b'"payload":{"big":1180591620717411303424}}')
    lone = big._replace(payload={"lone": "\ud800"})  # not Unicode: neither can write it
    with pytest.raises(ValueError, match="surrogates not allowed"):
        to_message(lone, "k")


def _customer_event(version: int = 3) -> LogEvent:
    return LogEvent(position=1, aggregate_type="Customer", aggregate_id="c-1", version=version, name="FactRecorded",
                    recorded_at=datetime(2026, 1, 2, tzinfo=UTC), payload={"occurred_at": None})


@pytest.mark.parametrize("headers", [
    None,  # a relay from before the aggregate headers
    [("event_type", b"Customer.FactRecorded")],
    [("event_type", b"Customer.FactRecorded"), ("aggregate_id", b"c-1"), ("version", b"three")],
    [("event_type", b"Customer.FactRecorded"), ("aggregate_id", None), ("version", b"3")],
    [("event_type", b"\xff"), ("aggregate_id", b"c-1"), ("version", b"3")],
])
def test_a_message_without_usable_aggregate_headers_is_decoded_at_once(headers):
    _, value, _ = to_message(_customer_event(), "k")
    assert from_record(value, headers, 9) == _customer_event()._replace(position=9)


def test_a_message_whose_headers_name_another_event_is_refused_when_decoded():
    _, value, headers = to_message(_customer_event(version=3), "k")
    wrong = [(k, b"4" if k == "version" else v) for k, v in headers]
    deferred = from_record(value, wrong, 9)
    assert type(deferred) is DeferredEvent and deferred.version == 4
    with pytest.raises(MessageMismatch, match="offset 8"):
        deferred.decoded()
