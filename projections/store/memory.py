"""In-memory view store: for unit tests and as the reference behaviour of the contract."""

from __future__ import annotations

import copy
import threading
from collections.abc import Generator, Mapping, Sequence
from typing import Any

from projections.store.change import ViewChange
from projections.store.errors import PositionConflict, ViewStoreError
from projections.store.tables import Table
from projections.store.values import (
    Values,
    check_definitions,
    check_existing_columns,
    key_of,
    lookup,
    missing_required,
    prepare_change,
    prepare_columns,
    prepare_order,
    prepare_where,
)

TableData = dict[Values, Values]  # key -> row


class InMemoryViewStore:
    """Dicts, replaced copy-on-write: a write builds new dicts and swaps them in at the end, so a
    write that fails halfway changes nothing (the all-or-nothing a database transaction gives)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tables: dict[str, Table] = {}
        self._data: dict[str, TableData] = {}
        self._positions: dict[str, int] = {}
        self._closed = False

    # --- schema -------------------------------------------------------------------------------

    def create(self, tables: Sequence[Table]) -> None:
        tables = check_definitions(tables)
        with self._lock:
            self._check_open()
            known, data = dict(self._tables), dict(self._data)
            for table in tables:
                if table.name in data:
                    check_existing_columns(table, known[table.name].column_names)
                else:
                    data[table.name] = {}
                known[table.name] = table
            self._tables, self._data = known, data

    def drop(self, tables: Sequence[Table]) -> None:
        tables = check_definitions(tables)
        with self._lock:
            self._check_open()
            names = {t.name for t in tables}
            self._tables = {n: t for n, t in self._tables.items() if n not in names}
            self._data = {n: d for n, d in self._data.items() if n not in names}

    # --- positions ----------------------------------------------------------------------------

    def position(self, consumer: str) -> int | None:
        with self._lock:
            self._check_open()
            return self._positions.get(consumer)

    def positions(self) -> dict[str, int]:
        with self._lock:
            self._check_open()
            return dict(self._positions)

    # --- writing ------------------------------------------------------------------------------

    def write(self, change: ViewChange) -> None:
        """Steps as in ``ViewStore.write``; "commit" is swapping in the new dicts."""
        with self._lock:
            self._check_open()
            # 0. check everything against the definitions.
            prepared = prepare_change(change, self._tables)
            data = dict(self._data)  # copied again per table on first touch (copy-on-write)
            touched: set[str] = set()

            def table_data(table: Table) -> TableData:
                if table.name not in touched:
                    data[table.name] = dict(data[table.name])
                    touched.add(table.name)
                return data[table.name]

            # 1. check the position.
            stored = self._positions.get(prepared.consumer)
            if prepared.check_position and stored != prepared.expected_position:
                raise PositionConflict(prepared.consumer, prepared.expected_position, stored)
            # 2. appends: existing keys are ignored (idempotent redelivery).
            for append in prepared.appends:
                rows = table_data(append.table)
                for values in append.rows:
                    _check_required(append.table, values)
                    rows.setdefault(key_of(append.table, values), values)
            # 3. entity replacements.
            for replacement in prepared.entity_replacements:
                table = replacement.table
                rows = table_data(table)
                index = table.column_names.index(table.entity or "")
                doomed = set(replacement.entities)
                for key in [k for k, v in rows.items() if v[index] in doomed]:
                    del rows[key]
                _insert(table, rows, replacement.rows)
            # 4. table replacements.
            for replacement in prepared.table_replacements:
                rows = table_data(replacement.table)
                rows.clear()
                _insert(replacement.table, rows, replacement.rows)
            # 5. the position.
            positions = self._positions
            if prepared.position is not None:
                positions = {**positions, prepared.consumer: prepared.position}
            # 6. commit: nothing above touched the current state, swap it in whole.
            self._data, self._positions = data, positions

    # --- reading ------------------------------------------------------------------------------

    def rows(
        self,
        table: str,
        *,
        where: Mapping[str, Any] | None = None,
        order_by: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        with self._lock:
            self._check_open()
            definition = lookup(self._tables, table)
            stored = list(self._data[table].values())
        conditions = prepare_where(definition, where)
        names = definition.column_names
        positions = [names.index(c.column.name) for c in conditions]
        selected = [
            v for v in stored if all(c.matches(v[i]) for c, i in zip(conditions, positions))
        ]
        # Stable sorts from the last ordering to the first give the combined order. (is None, v)
        # puts NULLs last ascending and, reversed, first descending, like PostgreSQL.
        for ordering in reversed(prepare_order(definition, order_by)):
            i = names.index(ordering.column.name)
            selected.sort(
                key=lambda v: (True, 0) if v[i] is None else (False, v[i]),
                reverse=ordering.descending,
            )
        # Copies of the json values: a caller mutating one must not change the stored row (the
        # other types are immutable).
        documents = [c.name for c in definition.columns if c.type == "json"]
        result = [dict(zip(names, v)) for v in selected]
        for row in result:
            for name in documents:
                row[name] = copy.deepcopy(row[name])
        return result

    def iter_rows(
        self,
        table: str,
        *,
        where: Mapping[str, Any] | None = None,
        order_by: Sequence[str] = (),
        columns: Sequence[str] | None = None,
    ) -> Generator[dict[str, Any], None, None]:
        # The rows are in memory already; ``rows`` takes the snapshot (and checks the arguments).
        with self._lock:
            self._check_open()
            names = [c.name for c in prepare_columns(lookup(self._tables, table), columns)]
        rows = self.rows(table, where=where, order_by=order_by)
        if columns is None:
            return (row for row in rows)
        return ({name: row[name] for name in names} for row in rows)

    def drop_connections(self) -> None:
        pass  # no server

    def close(self) -> None:
        with self._lock:
            self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise ViewStoreError("the view store is closed")


def _check_required(table: Table, values: Values) -> None:
    column = missing_required(table, values)
    if column is not None:
        raise ViewStoreError(f"NOT NULL violation: {table.name}.{column} is None")


def _insert(table: Table, rows: TableData, new_rows: tuple[Values, ...]) -> None:
    """Insert replacement rows; a key twice is an error, as the databases' primary keys make it."""
    for values in new_rows:
        _check_required(table, values)
        key = key_of(table, values)
        if key in rows:
            raise ViewStoreError(f"duplicate key {key!r} in {table.name}")
        rows[key] = values
