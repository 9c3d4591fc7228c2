"""The committed JSON Schemas, read by a real validator, agree with the parser on real events."""

from __future__ import annotations

import functools
import json
from datetime import date
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from lifecycle.simulate import simulate_annotated
from schemas import LATEST_VERSION, InboundEvent, parse

SCHEMAS = Path(__file__).parent.parent / "schemas" / "json"


def validator_for(event: dict) -> Draft202012Validator:
    version = int(event.get("dataversion") or LATEST_VERSION[event["type"]])
    return _validator(f"{event['type']}.v{version}.schema.json")


@functools.cache
def _validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / name).read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


@pytest.fixture(scope="module")
def population():
    return [s for s in simulate_annotated(customers=300, seed=4, start=date(2024, 1, 1), days=365)]


def test_every_event_the_parser_accepts_is_valid_against_its_schema_file(population):
    checked = set()
    for item in population:
        if item.malformed:
            continue
        parsed = parse(item.line)
        assert isinstance(parsed, InboundEvent), parsed
        event = json.loads(item.line)
        errors = list(validator_for(event).iter_errors(event))
        assert not errors, (event["type"], [e.message for e in errors])
        checked.add(event["type"])
    assert len(checked) == len(LATEST_VERSION)


@pytest.mark.parametrize(
    "change",
    [
        {"data": {"order_id": "o-1", "amount": "29.33", "currency": "USD", "items": 2, "junk": 1}},
        {"data": {"order_id": "o-1", "currency": "USD"}},
        {"unknown_attribute": "x"},
        {"specversion": "0.3"},
    ],
)
def test_events_the_schema_files_refuse_the_parser_refuses_too(change):
    event = {"specversion": "1.0", "id": "e-1", "source": "shop/checkout", "type": "crm.purchase.recorded",
             "subject": "shop:1", "time": "2026-03-01T10:15:00Z",
             "data": {"order_id": "o-1", "amount": "29.33", "currency": "USD", "items": 2}, **change}
    assert list(validator_for(event).iter_errors(event))
    assert not isinstance(parse(json.dumps(event).encode()), InboundEvent)
