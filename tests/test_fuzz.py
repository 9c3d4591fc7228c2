"""Hypothesis fuzz of the parser and the engine: arbitrary bytes, arbitrary JSON, and valid events
mutated (fields dropped, replaced, retyped, added; ids reused; bytes flipped or cut).

The invariants are those of tests/test_hostile_inputs.py: the parser returns an event or a
rejection with a one-line reason and never raises; the engine puts every input in exactly one of
accepted / duplicate / refused / malformed, with a reason when rejected; in = accepted +
duplicates + rejected; nothing stalls; the projections then build from whatever was accepted.
Bounded: modest example counts, well under 30 s in total.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lifecycle.receipt import ACCEPTED, DUPLICATE, MALFORMED, REFUSED
from schemas import InboundEvent, Rejection
from tests.backends import runtime_factory
from tests.test_hostile_inputs import VALID_DATA, check_parse, deadline, ingest_checked, memory_engine

def fuzz(max_examples: int) -> settings:
    return settings(max_examples=max_examples, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TYPES = sorted(VALID_DATA)
ENVELOPE_KEYS = ["specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema",
                 "dataversion", "data"]
DATA_KEYS = sorted({k for data in VALID_DATA.values() for k in data} | {"score", "nps", "comment", "note"})

# -- values that upstream systems get wrong ---------------------------------------------------------

nasty_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec=None, categories=["Cc", "Cs", "Zl", "Zp", "Cf"]), max_size=8),
    st.sampled_from(["", " ", "NaN", "Infinity", "-1", "1e999", "0.00001", "2025-03-01T10:15:00",
                     "2025-03-01T10:15:00Z", "1969-12-31T23:59:59Z", "9999-12-31T23:59:59+23:59", "USD", "usd",
                     "shop:1", "shop:2", "crm.purchase.recorded", "1.0", "1", "2", "99", "d-1", "o-1", "t-1",
                     "customer", "advocate", "churned", "proposal", "x" * 300]),
)
json_scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([0, -1, 11, 10**4000, -(10**19)]),
    st.floats(allow_nan=True, allow_infinity=True),
    nasty_text,
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(nasty_text, children, max_size=4)),
    max_leaves=12,
)


def valid_event(type_: str, n: int, subject: str) -> dict[str, Any]:
    return {"specversion": "1.0", "id": f"f-{n}", "source": "fuzz/source", "type": type_, "subject": subject,
            "time": f"2025-{1 + n % 12:02d}-{1 + n % 28:02d}T{n % 24:02d}:00:00Z",
            "datacontenttype": "application/json", "data": dict(VALID_DATA[type_])}


@st.composite
def mutated_events(draw: st.DrawFn, n: int = 0) -> bytes:
    """A valid event of some type, then 0-4 mutations, then JSON (maybe with broken bytes)."""
    type_ = draw(st.sampled_from(TYPES))
    body: dict[str, Any] = valid_event(type_, draw(st.integers(0, 50)) if draw(st.booleans()) else 1000 + n,
                                       draw(st.sampled_from(["shop:1", "shop:2", "shop:3"])))
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["drop", "replace", "retype", "add", "data_drop", "data_replace",
                                   "data_retype", "data_add", "other_type"]))
        target = body if not op.startswith("data_") or not isinstance(body.get("data"), dict) else body["data"]
        keys = sorted(target) or ["id"]
        if op in ("drop", "data_drop") and target:
            target.pop(draw(st.sampled_from(keys)), None)
        elif op in ("replace", "data_replace"):
            target[draw(st.sampled_from(keys))] = draw(json_values)
        elif op in ("retype", "data_retype") and target:
            key = draw(st.sampled_from(keys))
            value = target[key]
            target[key] = draw(st.sampled_from([str(value), [value], {"value": value}, None,
                                                len(str(value)), str(value).isdigit()]))
        elif op in ("add", "data_add"):
            pool = ENVELOPE_KEYS if op == "add" else DATA_KEYS
            target[draw(st.one_of(st.sampled_from(pool), nasty_text))] = draw(json_values)
        elif op == "other_type":
            body["type"] = draw(st.sampled_from(TYPES))
    try:
        raw = json.dumps(body, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    except (ValueError, OverflowError):  # an integer too long for str(): send something else
        raw = b'{"specversion":"1.0"}'
    cut = draw(st.sampled_from(["none", "none", "none", "truncate", "flip", "insert"]))
    if cut == "truncate" and raw:
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
    elif cut == "flip" and raw:
        at = draw(st.integers(0, len(raw) - 1))
        raw = raw[:at] + bytes([raw[at] ^ draw(st.integers(1, 255))]) + raw[at + 1:]
    elif cut == "insert":
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.binary(min_size=1, max_size=4)) + raw[at:]
    return raw


any_input = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
    json_values.map(lambda v: json.dumps(v).encode()),
    mutated_events(),
)


# -- the parser ---------------------------------------------------------------------------------------


@fuzz(1500)
@given(raw=st.binary(max_size=500))
def test_parser_on_arbitrary_bytes(raw: bytes):
    check_parse(raw)


@fuzz(1000)
@given(value=json_values)
def test_parser_on_arbitrary_json(value: Any):
    check_parse(json.dumps(value).encode())


@fuzz(2000)
@given(raw=mutated_events())
def test_parser_on_mutated_events(raw: bytes):
    parsed = check_parse(raw)
    if isinstance(parsed, InboundEvent):  # what passes is what the contract describes
        assert parsed.time.tzinfo is not None and parsed.subject and parsed.id and parsed.source


# -- the engine ---------------------------------------------------------------------------------------


@fuzz(500)
@given(raws=st.lists(any_input, min_size=1, max_size=25), cuts=st.lists(st.integers(1, 25), max_size=3))
def test_engine_on_mixed_batches(raws: list[bytes], cuts: list[int]):
    """Any mix of inputs in 1-4 batches: the invariants per batch; each ``source`` + ``id`` is
    decided once (accepted or refused), every later copy is a duplicate; a second delivery of
    everything accepts nothing."""
    engine = memory_engine()
    decided: set[tuple[str | None, str | None]] = set()
    bounds = sorted({0, len(raws), *(c for c in cuts if c < len(raws))})
    batches = [raws[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    for batch in batches:
        result = ingest_checked(engine, batch, 30, "ingest")
        for raw, outcome in zip(batch, result.outcomes, strict=True):
            if isinstance(check_parse(raw), Rejection):
                assert outcome.outcome == MALFORMED
            elif outcome.outcome in (ACCEPTED, REFUSED):
                assert (outcome.source, outcome.event_id) not in decided, outcome
                decided.add((outcome.source, outcome.event_id))
    again = ingest_checked(engine, raws, 30, "ingest again")
    assert all(o.outcome in (DUPLICATE, MALFORMED) for o in again.outcomes)


@fuzz(150)
@given(raws=st.lists(mutated_events(), min_size=1, max_size=40))
def test_engine_and_projections_on_mutated_events(raws: list[bytes]):
    """Mutated events for three customers through a runtime, then the views: no crash, no stall,
    one customer row per customer with an accepted event, every rejection in its view."""
    rt = runtime_factory("memory", Path("."), lambda: "")()
    try:
        result = ingest_checked(rt.engine, raws, 60, "ingest")
        with deadline(60, "catch up"):
            rt.catch_up()
        customers = {r["customer_key"] for r in rt.views.rows("customer_current")}
        # Every accepted event that names a customer made that customer known (deal stage changes
        # and closes other than won only touch the deal).
        makes_customer = {o.subject for o in result.outcomes if o.outcome == ACCEPTED
                          and o.type not in ("crm.deal.stage.changed", "crm.deal.lost")}
        assert makes_customer <= customers
        distinct_rejected = {raw for raw, o in zip(raws, result.outcomes, strict=True) if o.outcome == MALFORMED}
        refused = sum(1 for o in result.outcomes if o.outcome == REFUSED)
        assert len(rt.views.rows("rejections")) == len(distinct_rejected) + refused
    finally:
        rt.close()
