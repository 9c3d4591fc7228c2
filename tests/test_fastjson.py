"""orjson is used only where it gives exactly what the standard library gives."""

from __future__ import annotations

import enum
import json
import math
import uuid
from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from projections import fastjson
from projections.store.tables import Column, Table
from projections.store.values import normalise_row

json_values = st.recursive(
    st.none() | st.booleans() | st.text()
    | st.integers(min_value=-(2**80), max_value=2**80)  # beyond 64 bits on both sides
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_reading_equals_the_standard_library(value):
    text = json.dumps(value)
    expected = json.loads(text)
    assert fastjson.loads(text) == expected
    assert fastjson.loads(text.encode()) == expected
    assert _same_types(fastjson.loads(text), expected)


@given(json_values)
def test_writing_reads_back_as_the_standard_library_writes(value):
    assert json.loads(fastjson.dumps(value)) == json.loads(json.dumps(value, ensure_ascii=False))


def test_the_cases_orjson_gets_wrong_or_refuses():
    big = 123456789012345678901234567890
    assert fastjson.loads(f'{{"n": {big}}}') == {"n": big}  # orjson alone gives a float
    assert fastjson.loads(b"[-9223372036854775809]") == [-9223372036854775809]
    assert fastjson.dumps({"n": big}) == f'{{"n":{big}}}'  # orjson alone refuses
    assert fastjson.dumps({1: "a"}) == '{"1":"a"}'  # orjson alone refuses keys that are not text
    assert fastjson.dumps({"é": "ü"}) == '{"é":"ü"}'
    with pytest.raises(ValueError):
        fastjson.loads("{not json")


TABLE = Table("t", (Column("id", "int", "id", nullable=False), Column("doc", "json", "a document")), key=("id",),
              description="t")


class Size(enum.IntEnum):
    BIG = 2


class Tone(str, enum.Enum):
    WARM = "warm"


# What the standard library writes by converting: tuples, keys that are not text, members of
# int and str enums (beside everything a JSON document holds).
cell_values = st.recursive(
    st.none() | st.booleans() | st.text() | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from([Size.BIG, Tone.WARM]),
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=8) | st.integers() | st.sampled_from([Tone.WARM, True, None]),
                      inner, max_size=4),
    max_leaves=20,
)


@given(cell_values)
def test_a_json_cell_is_normalised_as_by_a_standard_library_round_trip(value):
    expected = json.loads(json.dumps(value, allow_nan=False))
    (_, cell) = normalise_row(TABLE, {"id": 1, "doc": value})
    assert cell == expected
    assert _same_types(cell, expected)


def test_a_json_cell_is_a_copy():
    doc = {"a": [1, {"b": "c"}]}
    (_, cell) = normalise_row(TABLE, {"id": 1, "doc": doc})
    doc["a"][1]["b"] = "changed"
    assert cell == {"a": [1, {"b": "c"}]}


class Colour(enum.Enum):
    RED = 1


# Things orjson would write (a UUID as text, an enum member as its value, a time as text, a
# dataclass as an object, NaN as null) but that are not JSON values: still refused.
@pytest.mark.parametrize("bad", [
    math.nan, math.inf, [1.0, -math.inf], {"x": math.nan}, {1, 2}, object(),
    uuid.uuid4(), Colour.RED, {"at": datetime(2024, 1, 1, tzinfo=UTC)}, [date(2024, 1, 1)], TABLE,
])
def test_a_json_cell_that_is_not_json_is_refused(bad):
    from projections.store.errors import ViewStoreError

    with pytest.raises(ViewStoreError, match="t.doc"):
        normalise_row(TABLE, {"id": 1, "doc": bad})


def _same_types(a, b) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_types(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same_types(x, y) for x, y in zip(a, b, strict=True))
    return True
