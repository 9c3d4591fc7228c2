"""The row normaliser written per table (``values._row_normaliser``) does exactly what normalising
cell by cell does: the same values, of the same types, and for a value it refuses the same
error naming the same column."""

from __future__ import annotations

import datetime as dt
import enum
import pickle
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from projections.store import ViewStoreError
from projections.store.tables import Column, Table
from projections.store.values import normalise_row, normalise_value

TYPES = ("text", "int", "decimal", "date", "timestamp", "bool", "json")
TABLE = Table(
    "every_type",
    tuple(Column(f"{kind}_1", kind, kind, True) for kind in TYPES),
    key=("text_1",),
    description="a column of every type",
)


class Label(str):
    pass


class Level(enum.IntEnum):
    HIGH = 3


class Money(Decimal):
    pass


class Day(dt.date):
    pass


ZONES = st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=-5)), dt.timezone(dt.timedelta(0), "Z")])
VALUES = st.one_of(
    st.none(),
    st.text(max_size=8),  # NUL included
    st.text(max_size=8).map(Label),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.just(Level.HIGH),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([Decimal("1.50"), Decimal("-0"), Decimal("NaN"), Decimal("-Infinity"), Decimal("1E+30")]),
    st.just(Money("2.5")),
    st.dates(),
    st.dates().map(lambda d: Day(d.year, d.month, d.day)),
    st.datetimes(),
    st.datetimes(timezones=ZONES),
    st.dictionaries(st.text(max_size=3), st.integers() | st.text(max_size=3), max_size=3),
    st.lists(st.integers() | st.floats(), max_size=3),
    st.just(object()),
)
# At the edges of what each type takes, and of every type: each in every column.
EDGES = [
    None, "", "a\x00b", Label("l"), Label("\x00"), 0, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, True,
    Level.HIGH, 1.5, float("nan"), Decimal("1.50"), Decimal("NaN"), Decimal("-Infinity"), Money("2.5"),
    dt.date(2026, 1, 2), Day(2026, 1, 2), dt.datetime(2026, 1, 2, 3), dt.datetime(2026, 1, 2, 3, tzinfo=dt.UTC),
    dt.datetime(2026, 1, 2, 3, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    dt.datetime(2026, 1, 2, 3, tzinfo=dt.timezone(dt.timedelta(0), "Z")),
    {"a": [1, 2.5]}, {1: "a"}, [float("inf")], (1, 2), object(),
]


def cell_by_cell(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(normalise_value(TABLE, c, row.get(c.name)) for c in TABLE.columns)


def outcome(normalise: Any, row: dict[str, Any]) -> tuple[str, Any]:
    try:
        values = normalise(row)
    except ViewStoreError as e:
        return "refused", str(e)
    # Types too: True == 1 and a Label equals its text.
    return "normalised", [(type(v), v) for v in values]


@given(st.fixed_dictionaries({}, optional={c.name: VALUES for c in TABLE.columns}))
def test_the_written_normaliser_does_what_cell_by_cell_does(row: dict[str, Any]) -> None:
    assert outcome(lambda r: normalise_row(TABLE, r), row) == outcome(cell_by_cell, row)


@pytest.mark.parametrize("column", TABLE.column_names)
def test_each_edge_value_in_each_column(column: str) -> None:
    for value in EDGES:
        row = {column: value}
        assert outcome(lambda r: normalise_row(TABLE, r), row) == outcome(cell_by_cell, row), value


def test_a_refused_value_is_named_by_its_column() -> None:
    with pytest.raises(ViewStoreError, match=r"every_type\.int_1 \(int\) expects int, got bool True"):
        normalise_row(TABLE, {"text_1": "a", "int_1": True})
    with pytest.raises(ViewStoreError, match=r"every_type\.text_1 \(text\).*NUL character"):
        normalise_row(TABLE, {"text_1": "a\x00b"})
    with pytest.raises(ViewStoreError, match=r"every_type\.timestamp_1 \(timestamp\).*naive datetime"):
        normalise_row(TABLE, {"timestamp_1": dt.datetime(2026, 1, 1)})


def test_a_time_elsewhere_is_given_in_utc_an_integer_decimal_made_a_decimal_text_kept() -> None:
    row = normalise_row(TABLE, {
        "timestamp_1": dt.datetime(2026, 1, 1, 7, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        "decimal_1": 3, "text_1": Label("x"),
    })
    names = TABLE.column_names
    assert row[names.index("timestamp_1")] == dt.datetime(2026, 1, 1, 5, tzinfo=dt.UTC)
    assert row[names.index("timestamp_1")].tzinfo is dt.UTC
    assert type(row[names.index("decimal_1")]) is Decimal
    assert type(row[names.index("text_1")]) is Label


def test_a_table_used_for_rows_can_still_be_pickled() -> None:
    """Worker processes are sent what they need pickled; the written function stays out of it."""
    normalise_row(TABLE, {"text_1": "a"})
    copied = pickle.loads(pickle.dumps(TABLE))
    assert copied == TABLE
    assert normalise_row(copied, {"text_1": "a", "int_1": 2})[:2] == ("a", 2)
