"""SQLite view store: the embedded default (stdlib sqlite3, one file, WAL).

Types: SQLite has no decimal, date, timestamp, bool or json, so they are stored as
decimal -> TEXT (``str`` of the Decimal: exact, unlike REAL), date -> ISO TEXT,
timestamp -> ISO-8601 UTC TEXT with microseconds (fixed width, so text order is time order),
bool -> INTEGER 0/1, json -> TEXT. Decimal text does not compare as numbers, so ``rows()`` filters
and sorts decimal columns with a decimal collation registered on the connection (not declared on
the column: other SQLite clients, e.g. an analyst's sqlite3 shell, could not read the table).
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from projections import fastjson
from projections.store.change import ViewChange
from projections.store.errors import PositionConflict, UnknownTable, ViewStoreError
from projections.store.tables import POSITIONS_TABLE, Column, Table
from projections.store.values import (
    ROWS_PAGE,
    Condition,
    Ordering,
    Values,
    check_definitions,
    check_existing_columns,
    lookup,
    prepare_change,
    prepare_columns,
    prepare_order,
    prepare_where,
)

_SQL_TYPES = {
    "text": "TEXT",
    "int": "INTEGER",
    "decimal": "TEXT",
    "date": "TEXT",
    "timestamp": "TEXT",
    "bool": "INTEGER",
    "json": "TEXT",
}


def utc_text(moment: dt.datetime) -> str:
    """``moment.isoformat(timespec="microseconds")`` of a time normalised to UTC: orjson writes
    the same text for a UTC time (without the fraction when it is zero) in about 0.35 µs
    against 0.86; a rebuild writes several per row (a property test compares the two)."""
    if moment.tzinfo is not dt.timezone.utc:
        return moment.isoformat(timespec="microseconds")
    text = orjson.dumps(moment)  # b'"YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00"'
    return text[1:-1].decode() if moment.microsecond else text[1:-7].decode() + ".000000+00:00"


_ENCODERS: dict[str, Callable[[Any], Any]] = {
    "text": lambda v: v,
    "int": lambda v: v,
    "decimal": str,
    "date": lambda v: v.isoformat(),
    "timestamp": utc_text,  # normalised to UTC already
    "bool": int,
    "json": fastjson.dumps,
}

def _timestamp(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text)
    # Stored in UTC (``_ENCODERS``); a row written otherwise is converted.
    return moment if moment.tzinfo is dt.timezone.utc else moment.astimezone(dt.timezone.utc)


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "text": lambda v: v,
    "int": lambda v: v,
    "decimal": Decimal,
    "date": dt.date.fromisoformat,
    "timestamp": _timestamp,
    "bool": bool,
    "json": fastjson.loads,
}

_DECIMAL_COLLATION = "lifecycle_decimal"
DEFAULT_BUSY_TIMEOUT_MS = 10_000


def _compare_decimals(a: str, b: str) -> int:
    x, y = Decimal(a), Decimal(b)
    return (x > y) - (x < y)


def _q(name: str) -> str:
    """Quote an identifier (names are already restricted to [a-z0-9_] by tables.py)."""
    return f'"{name}"'


def _collated(column: Column) -> str:
    suffix = f" COLLATE {_DECIMAL_COLLATION}" if column.type == "decimal" else ""
    return _q(column.name) + suffix


def _encode(value: Any, column: Column) -> Any:
    return None if value is None else _ENCODERS[column.type](value)


def _encode_row(table: Table, values: Values) -> tuple[Any, ...]:
    """The row as SQLite takes it: text and integers as they are, the other types converted
    (a call per value was most of encoding a row)."""
    encoded = list(values)
    for kind, places in table.places_by_type.items():
        if kind == "text" or kind == "int":
            continue
        encode = _ENCODERS[kind]
        for i in places:
            if encoded[i] is not None:
                encoded[i] = encode(encoded[i])
    return tuple(encoded)


def _row_decoder(names_and_types: Sequence[tuple[str, str]]) -> Callable[[Sequence[Any]], dict[str, Any]]:
    """A function from a stored row of these columns to the row as the other stores give it:
    text and integers as SQLite gives them, the other types converted (a call per value was
    most of reading a row)."""
    names = tuple(name for name, _ in names_and_types)
    converted = tuple((name, _DECODERS[kind]) for name, kind in names_and_types if kind not in ("text", "int"))

    def decode(raw: Sequence[Any]) -> dict[str, Any]:
        row = dict(zip(names, raw))
        for name, convert in converted:
            value = row[name]
            if value is not None:
                row[name] = convert(value)
        return row

    return decode


def _create_sql(table: Table) -> list[str]:
    columns = [
        f"{_q(c.name)} {_SQL_TYPES[c.type]}{' NOT NULL' if table.is_required(c) else ''}"
        for c in table.columns
    ]
    columns.append(f"PRIMARY KEY ({', '.join(map(_q, table.key))})")
    statements = [f"CREATE TABLE IF NOT EXISTS {_q(table.name)} ({', '.join(columns)})"]
    # Entity replacements delete by the entity column. When it leads the key, the primary key's
    # index already serves that delete, and a second index would only slow down writes.
    if table.entity and table.key[0] != table.entity:
        statements.append(
            f"CREATE INDEX IF NOT EXISTS {_q(table.name + '_' + table.entity + '_idx')} "
            f"ON {_q(table.name)} ({_q(table.entity)})"
        )
    return statements


def _insert_sql(table: Table, *, ignore_existing: bool) -> str:
    names = ", ".join(map(_q, table.column_names))
    marks = ", ".join("?" * len(table.columns))
    # ON CONFLICT DO NOTHING, not INSERT OR IGNORE: OR IGNORE would also drop rows violating
    # NOT NULL silently, where they must fail the write.
    conflict = " ON CONFLICT DO NOTHING" if ignore_existing else ""
    return f"INSERT INTO {_q(table.name)} ({names}) VALUES ({marks}){conflict}"


def _where_sql(conditions: Sequence[Condition]) -> tuple[str, list[Any]]:
    clauses, params = [], []
    for condition in conditions:
        column = condition.column
        target = _collated(column)
        present = [_encode(v, column) for v in condition.values if v is not None]
        has_null = len(present) < len(condition.values)
        if not condition.many:
            clauses.append(f"{_q(column.name)} IS NULL" if has_null else f"{target} = ?")
        else:
            # The list as one JSON parameter, not a placeholder per value: the statement's text
            # is then the same for every length, and the connection's statement cache keeps one
            # (a cached statement per length held 14 MiB in the key ring after a rebuild).
            parts = [f"{target} IN (SELECT value FROM json_each(?))"] if present else []
            parts += [f"{_q(column.name)} IS NULL"] if has_null else []
            clauses.append(f"({' OR '.join(parts)})" if parts else "0")  # IN () matches nothing
            present = [json.dumps(present)] if present else []
        params.extend(present)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _order_sql(orderings: Sequence[Ordering]) -> str:
    terms = [
        f"{_collated(o.column)} {'DESC NULLS FIRST' if o.descending else 'ASC NULLS LAST'}"
        for o in orderings
    ]
    return " ORDER BY " + ", ".join(terms)


class SQLiteViewStore:
    """Views in one SQLite file, table names as declared (SQLite has no schemas)."""

    def __init__(
        self,
        path: str | Path,
        *,
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
        durable: bool = False,
        cache_kib: int | None = None,
    ) -> None:
        """1. make the folder; 2. open in autocommit mode (transactions are explicit);
        3. WAL and busy timeout; 4. the decimal collation; 5. the positions table."""
        self.path = path if str(path) == ":memory:" else Path(path)
        self._busy_timeout_ms = int(busy_timeout_ms)
        self._closed = False
        self._lock = threading.RLock()
        self._tables: dict[str, Table] = {}
        try:
            if isinstance(self.path, Path):
                self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: the driver must not open transactions behind our back; every
            # write is an explicit BEGIN IMMEDIATE ... COMMIT. check_same_thread=False: a lock
            # serialises use of the one connection across threads.
            self._conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as e:
            raise ViewStoreError(f"cannot open the SQLite view store {path}: {e}") from e
        with self._translate():
            # WAL: analysts and the CLI read while a projection writes. NORMAL sync is safe with
            # WAL (no corruption); a power loss may lose the last commits, views and position
            # together, and the consumer then replays them. ``durable``: FULL, for what cannot
            # be derived again (the key ring: a key lost after its events were committed would
            # erase that customer's personal data).
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            if cache_kib is not None:
                self._conn.execute(f"PRAGMA cache_size=-{int(cache_kib)}")
            # Erasure scrubs rows in place: freed pages must not keep the old bytes.
            self._conn.execute("PRAGMA secure_delete=ON")
            # Another process writing (a second runner, a rebuild) makes us wait, not fail.
            self._conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            self._conn.create_collation(_DECIMAL_COLLATION, _compare_decimals)
            with self._transaction() as cur:
                for statement in _create_sql(POSITIONS_TABLE):
                    cur.execute(statement)

    # --- schema -------------------------------------------------------------------------------

    def create(self, tables: Sequence[Table]) -> None:
        tables = check_definitions(tables)
        with self._transaction() as cur:
            for table in tables:
                existing = [r[1] for r in cur.execute(f"PRAGMA table_info({_q(table.name)})")]
                if existing:
                    check_existing_columns(table, existing)
                for statement in _create_sql(table):
                    cur.execute(statement)
        with self._lock:
            self._tables.update((t.name, t) for t in tables)

    def drop(self, tables: Sequence[Table]) -> None:
        tables = check_definitions(tables)
        with self._transaction() as cur:
            for table in tables:
                cur.execute(f"DROP TABLE IF EXISTS {_q(table.name)}")
        with self._lock:
            for table in tables:
                self._tables.pop(table.name, None)

    # --- positions ----------------------------------------------------------------------------

    def position(self, consumer: str) -> int | None:
        with self._lock, self._translate():
            row = self._conn.execute(
                "SELECT position FROM view_positions WHERE consumer = ?", (consumer,)
            ).fetchone()
        return None if row is None else row[0]

    def positions(self) -> dict[str, int]:
        with self._lock, self._translate():
            rows = self._conn.execute(
                "SELECT consumer, position FROM view_positions WHERE position IS NOT NULL"
            ).fetchall()
        return dict(rows)

    # --- writing ------------------------------------------------------------------------------

    def write(self, change: ViewChange) -> None:
        """Steps as in ``ViewStore.write``."""
        # 0. check everything against the definitions, before taking the write lock.
        with self._lock:
            prepared = prepare_change(change, self._tables)
        # BEGIN IMMEDIATE takes SQLite's write lock now, not at the first write: a concurrent
        # writer of the same consumer waits here (busy_timeout) and then reads our position.
        with self._transaction() as cur:
            # 1. check the position.
            if prepared.check_position:
                row = cur.execute(
                    "SELECT position FROM view_positions WHERE consumer = ?", (prepared.consumer,)
                ).fetchone()
                stored = None if row is None else row[0]
                if stored != prepared.expected_position:
                    raise PositionConflict(prepared.consumer, prepared.expected_position, stored)
            # 2. appends: existing keys are ignored (idempotent redelivery).
            for append in prepared.appends:
                cur.executemany(
                    _insert_sql(append.table, ignore_existing=True),
                    [_encode_row(append.table, v) for v in append.rows],
                )
            # 3. entity replacements.
            for replacement in prepared.entity_replacements:
                table = replacement.table
                entity = table.column(table.entity or "")
                cur.executemany(
                    f"DELETE FROM {_q(table.name)} WHERE {_collated(entity)} = ?",
                    [(_encode(e, entity),) for e in replacement.entities],
                )
                cur.executemany(
                    _insert_sql(table, ignore_existing=False),
                    [_encode_row(table, v) for v in replacement.rows],
                )
            # 4. table replacements.
            for replacement in prepared.table_replacements:
                cur.execute(f"DELETE FROM {_q(replacement.table.name)}")
                cur.executemany(
                    _insert_sql(replacement.table, ignore_existing=False),
                    [_encode_row(replacement.table, v) for v in replacement.rows],
                )
            # 5. the position.
            if prepared.position is not None:
                cur.execute(
                    "INSERT INTO view_positions (consumer, position, updated_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (consumer) DO UPDATE"
                    " SET position = excluded.position, updated_at = excluded.updated_at",
                    (
                        prepared.consumer,
                        prepared.position,
                        _ENCODERS["timestamp"](dt.datetime.now(dt.timezone.utc)),
                    ),
                )
        # 6. committed when the transaction block ended without an error.

    # --- reading ------------------------------------------------------------------------------

    def rows(
        self,
        table: str,
        *,
        where: Mapping[str, Any] | None = None,
        order_by: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        selected, query, params = self._select(table, where, order_by)
        with self._lock, self._translate():
            raw = self._conn.execute(query, params).fetchall()
        return list(map(_row_decoder(selected), raw))

    def iter_rows(
        self,
        table: str,
        *,
        where: Mapping[str, Any] | None = None,
        order_by: Sequence[str] = (),
        columns: Sequence[str] | None = None,
    ) -> Generator[dict[str, Any], None, None]:
        """Steps as in ``ViewStore.iter_rows``: a connection of its own, so that neither the lock
        nor the store's connection is held between pages; its read transaction is the snapshot
        (WAL: writers go on meanwhile)."""
        if not isinstance(self.path, Path):
            # ":memory:" is private to its connection: one read (which also refuses a closed
            # store).
            selected, query, params = self._select(table, where, order_by, columns)
            with self._lock, self._translate():
                raw = self._conn.execute(query, params).fetchall()
            decode = _row_decoder(selected)
            return (decode(r) for r in raw)
        selected, query, params = self._select(table, where, order_by, columns)
        if self._closed:
            raise ViewStoreError(f"the SQLite view store {self.path} is closed")
        return self._stream(selected, query, params)

    def _stream(self, selected: Sequence[tuple[str, str]], query: str, params: list[Any]) -> Generator[dict[str, Any], None, None]:
        decode = _row_decoder(selected)
        with self._translate():
            reader = self._open_reader()
        try:
            with self._translate():
                reader.execute("BEGIN")
                cursor = reader.execute(query, params)
            while True:
                with self._translate():
                    raw = cursor.fetchmany(ROWS_PAGE)
                if not raw:
                    return
                yield from map(decode, raw)
        finally:
            reader.close()  # ends the read transaction too

    def _open_reader(self) -> sqlite3.Connection:
        reader = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        try:
            reader.execute("PRAGMA query_only=ON")
            reader.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
            reader.create_collation(_DECIMAL_COLLATION, _compare_decimals)
        except BaseException:
            reader.close()
            raise
        return reader

    def _select(
        self, table: str, where: Mapping[str, Any] | None, order_by: Sequence[str],
        columns: Sequence[str] | None = None,
    ) -> tuple[tuple[tuple[str, str], ...], str, list[Any]]:
        """The columns selected (name and type), the SELECT and its parameters (checked against
        the definition)."""
        with self._lock:
            definition = lookup(self._tables, table)
        selected = tuple((c.name, c.type) for c in prepare_columns(definition, columns))
        conditions, params = _where_sql(prepare_where(definition, where))
        query = (
            f"SELECT {', '.join(_q(name) for name, _ in selected)} FROM {_q(definition.name)}"
            f"{conditions}{_order_sql(prepare_order(definition, order_by))}"
        )
        return selected, query, params

    def drop_connections(self) -> None:
        pass  # a file, not a server: its connection does not break with one

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._conn.close()

    # --- plumbing -----------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Cursor]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any error (ours or the driver's)."""
        with self._lock, self._translate():
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
                cur.execute("COMMIT")
            except BaseException:
                # SQLite rolls some failures back by itself; a second ROLLBACK would raise.
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            finally:
                cur.close()

    @contextmanager
    def _translate(self) -> Iterator[None]:
        """Driver errors become ViewStoreError at this edge; ours pass through unchanged."""
        try:
            yield
        except sqlite3.OperationalError as e:
            message = str(e)
            if message.startswith("no such table: "):
                raise UnknownTable(message.removeprefix("no such table: ")) from e
            raise ViewStoreError(f"SQLite view store {self.path}: {message}") from e
        except sqlite3.IntegrityError as e:
            raise ViewStoreError(f"constraint violated in {self.path}: {e}") from e
        except sqlite3.Error as e:
            raise ViewStoreError(f"SQLite view store {self.path}: {e}") from e
