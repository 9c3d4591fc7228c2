"""Step 0 of every store operation, shared by all adapters: check and normalise the input.

Everything here is pure. Adapters receive rows as tuples of Python values in the table's column
order, already checked against the column types, so each adapter only encodes them for its driver
and every store accepts and refuses exactly the same input. NOT NULL is deliberately left to the
stores (the databases enforce it inside the transaction, which is what the all-or-nothing tests
exercise).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from projections.store.change import ViewChange
from projections.store.errors import UnknownTable, ViewStoreError
from projections.store.tables import POSITIONS_TABLE, Column, Table

Values = tuple[Any, ...]  # one row: a value per column, in the table's column order

# Rows per fetch of ``iter_rows``: decoded rows held at once, whatever the table's size.
ROWS_PAGE = 5_000

_INT64 = (-(2**63), 2**63 - 1)  # BIGINT / SQLite INTEGER: refuse here rather than overflow later


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError
    if "\x00" in value:  # PostgreSQL text cannot hold NUL; refuse it everywhere alike
        raise ValueError("NUL character in text")
    return value


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError
    if not _INT64[0] <= value <= _INT64[1]:
        raise ValueError("outside the 64-bit integer range")
    return value


def _decimal(value: Any) -> Decimal:
    # Money is exact: a float would already have lost digits, so it is refused, not converted.
    if isinstance(value, bool) or not isinstance(value, (Decimal, int)):
        raise TypeError
    value = Decimal(value)
    if not value.is_finite():
        raise ValueError("not a finite number")
    return value


def _date(value: Any) -> dt.date:
    # datetime is a subclass of date; silently dropping its time would hide a bug.
    if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
        raise TypeError
    return value


def _timestamp(value: Any) -> dt.datetime:
    if type(value) is dt.datetime and value.tzinfo is dt.timezone.utc:
        return value  # already what the rest gives (nearly every value: the log's times are UTC)
    if not isinstance(value, dt.datetime):
        raise TypeError
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("naive datetime: give a time zone (UTC)")
    return value.astimezone(dt.timezone.utc)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError
    return value


class _NotPlain(Exception):
    """A value ``_plain_copy`` leaves to the standard library's judgement."""


def _plain_copy(value: Any) -> Any:
    """The copy ``_json`` makes, for values made only of dicts with text keys, lists, tuples,
    text, integers, booleans, None and finite floats: the only values the standard library
    writes without converting anything, so the copy is what its round trip would give."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is dict:
        copied = {}
        for key, item in value.items():
            if type(key) is not str:
                raise _NotPlain  # the standard library turns 1, 1.5, True, None keys into text
            copied[key] = _plain_copy(item)
        return copied
    if kind is list or kind is tuple:
        return [_plain_copy(item) for item in value]
    if kind is float and math.isfinite(value):
        return value
    raise _NotPlain  # NaN, subclasses (enum members), any other type


def _json(value: Any) -> Any:
    """0. plain values (nearly all: the projections' payloads) are copied in one walk, 10.7 ->
          2.6 µs for a typical payload
    Otherwise:
       1. the standard library decides what is JSON, exactly as it always has (orjson would also
          take UUIDs, enum members and dataclasses, and write NaN as null)
       2. the copy: a round trip, which also normalises tuples to lists and gives the store its
          own value, so a caller mutating a dict later cannot change a stored row. orjson's
          (the standard library's round trip was a tenth of a rebuild); it refuses integers
          beyond 64 bits and keys that are not text, which then take the standard way."""
    # 0. plain
    try:
        return _plain_copy(value)
    except (_NotPlain, RecursionError):
        pass
    # 1. what is JSON
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"not JSON-serialisable ({e})") from None
    # 2. the copy
    try:
        return orjson.loads(orjson.dumps(value))
    except TypeError:
        return json.loads(text)


_NORMALISERS: dict[str, Callable[[Any], Any]] = {
    "text": _text,
    "int": _int,
    "decimal": _decimal,
    "date": _date,
    "timestamp": _timestamp,
    "bool": _bool,
    "json": _json,
}

PYTHON_TYPES = {
    "text": "str",
    "int": "int",
    "decimal": "Decimal or int",
    "date": "datetime.date",
    "timestamp": "aware datetime",
    "bool": "bool",
    "json": "a JSON value",
}


def normalise_value(table: Table, column: Column, value: Any) -> Any:
    """The canonical Python value for a column (None stays None), or ViewStoreError."""
    if value is None:
        return None
    try:
        return _NORMALISERS[column.type](value)
    except (TypeError, ValueError) as e:
        shown = repr(value)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        reason = f": {e}" if str(e) else ""
        raise ViewStoreError(
            f"{table.name}.{column.name} ({column.type}) expects {PYTHON_TYPES[column.type]}, "
            f"got {type(value).__name__} {shown}{reason}"
        ) from None


def normalise_row(table: Table, row: Mapping[str, Any]) -> Values:
    """The row as a tuple in column order; omitted columns are None (NULL)."""
    if type(row) is not dict and not isinstance(row, Mapping):  # the ABC check costs; rows are dicts
        raise ViewStoreError(f"a row of {table.name!r} must be a mapping, got {type(row).__name__}")
    if not row.keys() <= table.column_name_set:
        unknown = set(row) - table.column_name_set
        raise ViewStoreError(f"table {table.name!r} has no column(s) {sorted(map(str, unknown))}")
    try:
        return _row_normaliser(table)(row)
    except (TypeError, ValueError):
        # Again cell by cell, for the message that names the column.
        return tuple(normalise_value(table, c, row.get(c.name)) for c in table.columns)


def normalise_rows(table: Table, rows: Iterable[Mapping[str, Any]]) -> tuple[Values, ...]:
    return tuple(normalise_row(table, row) for row in rows)


# A value each normaliser returns as it is, tested inline: most values are already canonical, and
# a call per cell was most of normalising a row (a seal row of seven cells: 1.7 -> 0.8 µs).
_CANONICAL = {
    "text": "type({v}) is str and '\\x00' not in {v}",
    "int": f"type({{v}}) is int and {_INT64[0]} <= {{v}} <= {_INT64[1]}",
    "decimal": "type({v}) is Decimal and {v}.is_finite()",
    "date": "type({v}) is date",
    "timestamp": "type({v}) is datetime and {v}.tzinfo is utc",
    "bool": "type({v}) is bool",
}


# Each table's written normaliser, by the table's id, with the table itself: held, so that its
# id is not given to another table. Not in the table's ``__dict__``: a table holding a function
# written by ``exec`` could no longer be pickled. (Hashing a table, for a dict keyed by it, would
# cost more than the call it saves.)
_WRITTEN: dict[int, tuple[Table, Callable[[Mapping[str, Any]], Values]]] = {}


def _row_normaliser(table: Table) -> Callable[[Mapping[str, Any]], Values]:
    """``table``'s row normaliser: one function, written once per table (as ``dataclasses``
    writes ``__init__``), that takes each column's value from the row, keeps it when it is
    already canonical (``_CANONICAL``) and otherwise calls the column type's normaliser, which
    converts it or raises TypeError or ValueError."""
    written = _WRITTEN.get(id(table))
    if written is None or written[0] is not table:
        written = _WRITTEN[id(table)] = (table, _write_row_normaliser(table))
    return written[1]


def _write_row_normaliser(table: Table) -> Callable[[Mapping[str, Any]], Values]:
    lines, names = ["def normalise_row(row):", "    get = row.get"], []
    for i, (column, kind) in enumerate(table.names_and_types):
        v = f"v{i}"
        kept = _CANONICAL.get(kind, "False").format(v=v)
        # Column names are checked identifiers (``tables.check_identifier``); repr quotes them.
        lines += [f"    {v} = get({column!r})",
                  f"    if {v} is not None and not ({kept}):",
                  f"        {v} = n{i}({v})"]
        names.append(v)
    lines.append(f"    return ({', '.join(names)},)")
    scope: dict[str, Any] = {"Decimal": Decimal, "date": dt.date, "datetime": dt.datetime, "utc": dt.timezone.utc}
    scope.update((f"n{i}", _NORMALISERS[kind]) for i, (_, kind) in enumerate(table.names_and_types))
    exec("\n".join(lines), scope)  # noqa: S102 - source made above from checked names
    return scope["normalise_row"]


def missing_required(table: Table, values: Values) -> str | None:
    """The first NOT NULL column that is None, for stores without a database to enforce it."""
    for column, value in zip(table.columns, values):
        if value is None and table.is_required(column):
            return column.name
    return None


def key_of(table: Table, values: Values) -> Values:
    index = table.column_names
    return tuple(values[index.index(name)] for name in table.key)


def lookup(tables: Mapping[str, Table], name: str) -> Table:
    try:
        return tables[name]
    except (KeyError, TypeError):
        raise UnknownTable(name) from None


def check_definitions(tables: Sequence[Table]) -> tuple[Table, ...]:
    """Definitions a store may create: Tables, names unique, the store's own name not taken."""
    tables = tuple(tables)
    seen: dict[str, Table] = {}
    for table in tables:
        if not isinstance(table, Table):
            raise ViewStoreError(f"not a table definition: {table!r}")
        if table.name == POSITIONS_TABLE.name:
            raise ViewStoreError(f"{table.name!r} is the store's own table; choose another name")
        if table.name in seen and seen[table.name] != table:
            raise ViewStoreError(f"two different definitions of table {table.name!r}")
        seen[table.name] = table
    return tuple(seen.values())


def check_existing_columns(table: Table, existing: Iterable[str]) -> None:
    """A table already stored must have the defined columns, else writes would fail obscurely later."""
    existing = set(existing)
    if existing != set(table.column_names):
        raise ViewStoreError(
            f"table {table.name!r} exists with columns {sorted(existing)}, but its definition has "
            f"{sorted(table.column_names)}: drop it and rebuild the view"
        )


# --- change sets ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableRows:
    table: Table
    rows: tuple[Values, ...]


@dataclass(frozen=True)
class EntityReplacement:
    table: Table
    entities: tuple[Any, ...]  # normalised entity values whose rows are deleted
    rows: tuple[Values, ...]  # the rows inserted instead, for all those entities


@dataclass(frozen=True)
class PreparedChange:
    """A ViewChange checked against the table definitions, in the order the steps apply it."""

    consumer: str
    position: int | None
    expected_position: int | None
    check_position: bool
    appends: tuple[TableRows, ...]
    entity_replacements: tuple[EntityReplacement, ...]
    table_replacements: tuple[TableRows, ...]

    @property
    def touches_position(self) -> bool:
        return self.check_position or self.position is not None


def _entity_rows(table: Table, entity: Any, rows: Sequence[Mapping[str, Any]]) -> list[Values]:
    assert table.entity is not None
    index = table.column_names.index(table.entity)
    prepared = []
    for row in rows:
        values = normalise_row(table, row)
        # The entity column may be omitted (it is implied by the mapping key) but not contradict it:
        # such a row would survive the next replacement of its entity.
        if values[index] is None:
            values = values[:index] + (entity,) + values[index + 1 :]
        elif values[index] != entity:
            raise ViewStoreError(
                f"{table.name}: row for {table.entity}={values[index]!r} "
                f"given in the replacement of {entity!r}"
            )
        prepared.append(values)
    return prepared


def prepare_change(change: ViewChange, tables: Mapping[str, Table]) -> PreparedChange:
    """Step 0: check every table, column and value of ``change``; nothing is written yet."""
    appends = tuple(
        TableRows(table, normalise_rows(table, rows))
        for table, rows in ((lookup(tables, name), rows) for name, rows in change.append.items())
    )
    replacements = []
    for name, by_entity in change.replace_entities.items():
        table = lookup(tables, name)
        if table.entity is None:
            raise ViewStoreError(f"table {name!r} has no entity column: replace the table instead")
        entity_column = table.column(table.entity)
        entities, rows = [], []
        for raw_entity, entity_rows in by_entity.items():
            entity = normalise_value(table, entity_column, raw_entity)
            if entity is None:
                raise ViewStoreError(f"{name}: cannot replace the rows of entity None")
            entities.append(entity)
            rows.extend(_entity_rows(table, entity, entity_rows))
        replacements.append(EntityReplacement(table, tuple(entities), tuple(rows)))
    table_replacements = tuple(
        TableRows(table, normalise_rows(table, rows))
        for table, rows in ((lookup(tables, n), r) for n, r in change.replace_tables.items())
    )
    return PreparedChange(
        consumer=change.consumer,
        position=change.position,
        expected_position=change.expected_position,
        check_position=change.check_position,
        appends=appends,
        entity_replacements=tuple(replacements),
        table_replacements=table_replacements,
    )


# --- queries ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    """``column = value`` (or IS NULL), or with ``many`` ``column IN values`` (NULL in it matches NULL)."""

    column: Column
    values: tuple[Any, ...]
    many: bool

    def matches(self, value: Any) -> bool:
        return value in self.values if self.many else value == self.values[0]


@dataclass(frozen=True)
class Ordering:
    column: Column
    descending: bool = False


def _queryable(table: Table, name: str, purpose: str) -> Column:
    column = table.column(name)
    # JSON compares differently in every store (jsonb, text, Python objects): refuse it.
    if column.type == "json":
        raise ViewStoreError(f"cannot {purpose} json column {table.name}.{name}")
    return column


def prepare_where(table: Table, where: Mapping[str, Any] | None) -> tuple[Condition, ...]:
    conditions = []
    for name, wanted in (where or {}).items():
        column = _queryable(table, name, "filter on")
        many = isinstance(wanted, (list, tuple, set, frozenset))
        raw = tuple(wanted) if many else (wanted,)
        values = tuple(normalise_value(table, column, v) for v in raw)
        conditions.append(Condition(column, values, many))
    return tuple(conditions)


def prepare_order(table: Table, order_by: Sequence[str]) -> tuple[Ordering, ...]:
    """The requested order ("-name" for descending), then the key, so results are deterministic.

    NULLs sort last ascending and first descending (PostgreSQL's default), in every store.
    """
    if isinstance(order_by, str):
        order_by = (order_by,)
    orderings = []
    for spec in order_by:
        descending = spec.startswith("-")
        orderings.append(Ordering(_queryable(table, spec.lstrip("-"), "order by"), descending))
    named = {o.column.name for o in orderings}
    orderings.extend(Ordering(table.column(k)) for k in table.key if k not in named)
    return tuple(orderings)


def prepare_columns(table: Table, columns: Sequence[str] | None) -> tuple[Column, ...]:
    """The columns to read, in the order asked (every column, in the table's order, for None);
    an unknown one raises ViewStoreError."""
    if columns is None:
        return table.columns
    if isinstance(columns, str):
        columns = (columns,)
    chosen = tuple(table.column(name) for name in columns)
    if not chosen:
        raise ViewStoreError(f"no column asked of {table.name!r}")
    return chosen
