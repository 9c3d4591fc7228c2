"""PostgreSQL view store (psycopg 3).

Views analysts read go in schema ``reporting`` (a read-only role is granted that schema and
nothing else); bookkeeping, including ``view_positions``, goes in ``lifecycle_internal``.
Descriptions become ``COMMENT ON TABLE/COLUMN`` so BI tools show them.

Bulk inserts, measured on ~10k rows of 8 columns (local server): ``executemany`` (which psycopg
3 already pipelines) ~150-200 ms, ``COPY`` ~45-70 ms, ``COPY`` into a temporary table then
``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` ~80-100 ms. Replacements (plain inserts) always
COPY. Appends must skip existing keys: below ``COPY_APPEND_THRESHOLD`` rows one ``INSERT ...
SELECT * FROM unnest(<one array per column>) ON CONFLICT DO NOTHING``, the arrays in binary;
from there a plain ``COPY`` under a savepoint, since the rows of a large append are nearly
always all new (a step's kept folds; until 2026-12-05 a relay's page of seals, a row per event,
guarded by its position), and only when a key exists the temporary table. Per row of the
sealer's table of then (7 columns), Python + PostgreSQL CPU, µs:
300 rows 10.6 against executemany's 18.8; 600 rows 15.0-17.5 for the savepoint's COPY against
16.3-19.8 for the arrays, 1,000 rows 13.7-16.9 against 19.6-21.0 (a slower phase of the
machine); 110k rows in pages of 5,000, PostgreSQL alone, 0.56-0.58 s by plain COPY against
0.86-1.09 s through the temporary table (which also leaves dead rows in the catalog, for
autovacuum to clear, at every write).
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import Jsonb

from projections import fastjson
from projections.store.change import ViewChange
from projections.store.errors import PositionConflict, UnknownTable, ViewStoreError
from projections.store.statistics import STATISTICS_TARGET, AnalyzeSchedule
from projections.store.tables import POSITIONS_TABLE, Column, Table, check_identifier
from projections.store.values import (
    ROWS_PAGE,
    Condition,
    Ordering,
    PreparedChange,
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
    "int": "BIGINT",
    "decimal": "NUMERIC",
    "date": "DATE",
    "timestamp": "TIMESTAMPTZ",
    "bool": "BOOLEAN",
    "json": "JSONB",
}

COPY_APPEND_THRESHOLD = 500  # rows; about where the arrays and the savepoint's COPY cost the same
# Serialises DDL of all view stores on a database: concurrent CREATE TABLE IF NOT EXISTS of the
# same table can otherwise fail with a unique violation in the catalog.
_DDL_LOCK_KEY = 0x6C69_6665_7677  # "lifevw"
# Serialises the event store's table creation (eventsourcing runs CREATE TABLE IF NOT EXISTS on
# every start, which fails with "tuple concurrently updated" when services start together).
# Not the DDL lock: view stores take that inside their own transactions.
_SETUP_LOCK_KEY = 0x6C69_6665_6573  # "lifees"
SCHEMA_COMMENTS = {
    "reporting": "Customer lifecycle views for analysts (current state, rebuilt from the event log).",
    "lifecycle_internal": "Bookkeeping of the customer lifecycle engine; not for analysis.",
}


def _encode_row(table: Table, values: Values) -> Values:
    """psycopg adapts every type itself but JSON: dicts and lists need telling which JSON type.
    Written with orjson where it gives what the standard library gives (psycopg's default is
    json.dumps). A row without a JSON column goes as it is (a call per value was a tenth of the
    Kafka projector's CPU)."""
    places = table.places_by_type.get("json")
    if not places:
        return values
    encoded = list(values)
    for i in places:
        if encoded[i] is not None:
            encoded[i] = Jsonb(encoded[i], dumps=fastjson.dumps)
    return tuple(encoded)


def _decode_row(columns: Sequence[Column], raw: Sequence[Any]) -> dict[str, Any]:
    row = {column.name: value for column, value in zip(columns, raw)}
    for column in columns:
        # The session runs in UTC, but say so in the value's tzinfo whatever the server does.
        if column.type == "timestamp" and row[column.name] is not None:
            row[column.name] = row[column.name].astimezone(dt.timezone.utc)
    return row


def _describe(url: str) -> str:
    """Where we connect, without the password, for error messages."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.Error:
        return "PostgreSQL (unparsable URL)"
    return f"postgresql://{info.get('host', '')}:{info.get('port', 5432)}/{info.get('dbname', '')}"


class PostgresViewStore:
    def __init__(
        self,
        url: str,
        schema: str = "reporting",
        internal_schema: str = "lifecycle_internal",
        *,
        connect_timeout: int = 10,
        synchronous_commit: bool = True,
    ) -> None:
        """1. connect; 2. create the schemas if missing; 3. create the positions table.

        ``synchronous_commit=False``: a write returns once committed, without waiting for
        PostgreSQL to flush it to disk (``SET synchronous_commit = off`` on the writing
        connection). Consistency is unchanged: a transaction and the position it stores are
        still all or nothing. A crash of the server can lose the last commits (up to three times
        ``wal_writer_delay``, 0.6 s by default), positions with them, so only a writer that
        derives everything it writes from a log it can read again from its stored position may
        ask for it: the relay and ``project`` do (``consumers``), and redo the lost steps. The
        key store and ingest never do. Waiting for a flush at every commit cost the Kafka path ~4%
        of its time (``bench/PROFILE.md``, 2026-12-05)."""
        self.schema = check_identifier(schema, "schema")
        self.internal_schema = check_identifier(internal_schema, "schema")
        self._url = url
        self._where = _describe(url)
        self._connect_timeout = connect_timeout
        self._synchronous_commit = synchronous_commit
        self._lock = threading.RLock()
        self._tables: dict[str, Table] = {}
        self._conn: psycopg.Connection[Any] | None = None
        self._idle_reader: psycopg.Connection[Any] | None = None  # see _take_reader
        self._closed = False
        self._schedule = AnalyzeSchedule()
        with self._transaction() as cur:
            self._lock_ddl(cur)
            for name in (self.schema, self.internal_schema):
                self._ensure_schema(cur, name)
            self._create_table(cur, POSITIONS_TABLE)

    # --- schema -------------------------------------------------------------------------------

    def create(self, tables: Sequence[Table]) -> None:
        tables = check_definitions(tables)
        with self._transaction() as cur:
            self._lock_ddl(cur)
            for table in tables:
                self._create_table(cur, table)
        with self._lock:
            self._tables.update((t.name, t) for t in tables)

    def drop(self, tables: Sequence[Table]) -> None:
        tables = check_definitions(tables)
        with self._transaction() as cur:
            self._lock_ddl(cur)
            for table in tables:
                cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self._name(table)))
        with self._lock:
            for table in tables:
                self._tables.pop(table.name, None)

    # --- positions ----------------------------------------------------------------------------

    def position(self, consumer: str) -> int | None:
        with self._lock, self._translate():
            row = self._connection().execute(
                sql.SQL("SELECT position FROM {} WHERE consumer = %s").format(self._positions),
                (consumer,),
            ).fetchone()
        return None if row is None else row[0]

    def positions(self) -> dict[str, int]:
        with self._lock, self._translate():
            rows = self._connection().execute(
                sql.SQL("SELECT consumer, position FROM {} WHERE position IS NOT NULL").format(
                    self._positions
                )
            ).fetchall()
        return dict(rows)

    # --- writing ------------------------------------------------------------------------------

    def write(self, change: ViewChange) -> None:
        """Steps as in ``ViewStore.write``; then 7. ``ANALYZE`` the tables whose writes have
        doubled (``projections.store.statistics``), outside the transaction."""
        # 0. check everything against the definitions, before opening a transaction.
        with self._lock:
            prepared = prepare_change(change, self._tables)
        with self._transaction() as cur:
            # 1. lock the position row: concurrent writers of one consumer queue here, and each
            # sees the position its predecessor committed. The row is inserted empty first when
            # a position will be stored, so there is a row to lock even the first time.
            if prepared.touches_position:
                if prepared.position is not None:
                    cur.execute(
                        sql.SQL("INSERT INTO {} (consumer) VALUES (%s) ON CONFLICT DO NOTHING").format(
                            self._positions
                        ),
                        (prepared.consumer,),
                    )
                row = cur.execute(
                    sql.SQL("SELECT position FROM {} WHERE consumer = %s FOR UPDATE").format(
                        self._positions
                    ),
                    (prepared.consumer,),
                ).fetchone()
                stored = None if row is None else row[0]
                if prepared.check_position and stored != prepared.expected_position:
                    raise PositionConflict(prepared.consumer, prepared.expected_position, stored)
            # 2. appends: existing keys are ignored (idempotent redelivery).
            for append in prepared.appends:
                self._append(cur, append.table, append.rows)
            # 3. entity replacements.
            for replacement in prepared.entity_replacements:
                table = replacement.table
                entity = table.column(table.entity or "")
                cur.execute(
                    sql.SQL("DELETE FROM {} WHERE {} = ANY(%s::{}[])").format(
                        self._name(table),
                        sql.Identifier(entity.name),
                        sql.SQL(_SQL_TYPES[entity.type]),
                    ),
                    (list(replacement.entities),),
                )
                self._copy(cur, table, replacement.rows)
            # 4. table replacements. DELETE, not TRUNCATE: TRUNCATE's exclusive lock would block
            # analysts' queries, DELETE lets them read the old rows until we commit.
            for replacement in prepared.table_replacements:
                cur.execute(sql.SQL("DELETE FROM {}").format(self._name(replacement.table)))
                self._copy(cur, replacement.table, replacement.rows)
            # 5. the position (its row exists since step 1).
            if prepared.position is not None:
                cur.execute(
                    sql.SQL("UPDATE {} SET position = %s, updated_at = now() WHERE consumer = %s").format(
                        self._positions
                    ),
                    (prepared.position, prepared.consumer),
                )
        # 6. committed when the transaction block ended without an error.
        # 7. the planner's statistics of the tables that have grown
        self._analyze_grown(prepared)

    def _analyze_grown(self, prepared: PreparedChange) -> None:
        with self._lock:
            for written in (*prepared.appends, *prepared.entity_replacements, *prepared.table_replacements):
                self._schedule.wrote(written.table.name, len(written.rows))
            for name in self._schedule.due():
                table = self._tables.get(name)
                if table is None:  # dropped meanwhile
                    self._schedule.analyzed(name)
                    continue
                try:
                    conn = self._connection()
                    with conn.transaction():  # the sample's size for this ANALYZE only
                        conn.execute("SELECT set_config('default_statistics_target', %s, true)",
                                     (str(STATISTICS_TARGET),))
                        # SKIP_LOCKED: another process analysing it now does the job for both.
                        conn.execute(sql.SQL("ANALYZE (SKIP_LOCKED) {}").format(self._name(table)))
                except psycopg.Error:
                    continue  # advice to the planner only: the write has committed; tried again later
                self._schedule.analyzed(name)

    def _append(self, cur: psycopg.Cursor[Any], table: Table, rows: tuple[Values, ...]) -> None:
        """Rows whose key exists are skipped: ``INSERT ... ON CONFLICT DO NOTHING`` from the
        columns sent as arrays (below ``COPY_APPEND_THRESHOLD`` rows), else COPY (module
        docstring)."""
        if not rows:
            return
        columns = sql.SQL(", ").join(map(sql.Identifier, table.column_names))
        if len(rows) < COPY_APPEND_THRESHOLD:
            # Each column one array in psycopg's binary format; ``unnest`` makes rows of them.
            arrays = sql.SQL(", ").join(
                sql.SQL("%b::{}[]").format(sql.SQL(_SQL_TYPES[c.type])) for c in table.columns
            )
            cur.execute(
                sql.SQL("INSERT INTO {} ({}) SELECT * FROM unnest({}) ON CONFLICT DO NOTHING").format(
                    self._name(table), columns, arrays
                ),
                [list(column) for column in zip(*(_encode_row(table, v) for v in rows))],
            )
            return
        # 1. Usually every row is new (a step's kept folds, written with its position): COPY
        # them straight in, under a savepoint. 2. When a key exists, back to the savepoint, and
        # skip the existing keys through a temporary twin of the table.
        try:
            with cur.connection.transaction():
                self._copy(cur, table, rows)
            return
        except psycopg.errors.UniqueViolation:
            pass
        staging = sql.Identifier(f"append_{table.name}")
        cur.execute(
            sql.SQL("CREATE TEMPORARY TABLE {} (LIKE {}) ON COMMIT DROP").format(
                staging, self._name(table)
            )
        )
        self._copy(cur, table, rows, into=staging)
        cur.execute(
            sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT DO NOTHING").format(
                self._name(table), columns, columns, staging
            )
        )

    def _copy(
        self,
        cur: psycopg.Cursor[Any],
        table: Table,
        rows: tuple[Values, ...],
        *,
        into: sql.Composable | None = None,
    ) -> None:
        if not rows:
            return
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
            into or self._name(table), sql.SQL(", ").join(map(sql.Identifier, table.column_names))
        )
        with cur.copy(statement) as copy:
            for values in rows:
                copy.write_row(_encode_row(table, values))

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
            raw = self._connection().execute(query, params).fetchall()
        return [_decode_row(selected, r) for r in raw]

    def iter_rows(
        self,
        table: str,
        *,
        where: Mapping[str, Any] | None = None,
        order_by: Sequence[str] = (),
        columns: Sequence[str] | None = None,
    ) -> Generator[dict[str, Any], None, None]:
        """Steps as in ``ViewStore.iter_rows``: a reader connection of its own, so that neither the
        lock nor the store's connection is held between pages, and a server-side cursor in its
        one read-only transaction (one snapshot), fetched a page at a time."""
        selected, query, params = self._select(table, where, order_by, columns)
        if self._closed:
            raise ViewStoreError("the view store is closed")
        return self._stream(selected, query, params)

    def _stream(self, selected: Sequence[Column], query: sql.Composable, params: list[Any]) -> Generator[dict[str, Any], None, None]:
        reader = self._take_reader()
        try:
            with self._translate():
                cursor = reader.cursor(name="lifecycle_iter_rows")  # server-side
                cursor.execute(query, params)  # opens the read-only transaction: the snapshot
            while True:
                with self._translate():
                    raw = cursor.fetchmany(ROWS_PAGE)
                if not raw:
                    return
                for r in raw:
                    yield _decode_row(selected, r)
        finally:
            self._give_back(reader)

    def _take_reader(self) -> psycopg.Connection[Any]:
        """The idle reader connection, or a new one (a summary refresh makes eight scans: a
        connection each cost more than the reads of a small store)."""
        with self._lock:
            if self._closed:
                raise ViewStoreError("the view store is closed")
            reader, self._idle_reader = self._idle_reader, None
        if reader is not None:
            if not reader.closed and not reader.broken:
                return reader
            reader.close()
        with self._translate():
            reader = psycopg.connect(self._url, connect_timeout=self._connect_timeout,
                                     application_name="lifecycle-views-reader")
            reader.read_only = True  # every transaction it opens
            reader.execute("SET TIME ZONE 'UTC'")
            reader.commit()
        return reader

    def _give_back(self, reader: psycopg.Connection[Any]) -> None:
        """End the reader's transaction (and its snapshot) and keep it for the next scan, unless
        one is kept already, the store is closed, or the connection failed."""
        try:
            reader.rollback()
        except psycopg.Error:
            reader.close()
            return
        with self._lock:
            if self._idle_reader is None and not self._closed:
                self._idle_reader = reader
                return
        reader.close()

    def _select(
        self, table: str, where: Mapping[str, Any] | None, order_by: Sequence[str],
        columns: Sequence[str] | None = None,
    ) -> tuple[tuple[Column, ...], sql.Composable, list[Any]]:
        """The columns selected, the SELECT and its parameters (checked against the definition)."""
        with self._lock:
            definition = lookup(self._tables, table)
        selected = prepare_columns(definition, columns)
        conditions, params = _where_sql(prepare_where(definition, where))
        query = sql.SQL("SELECT {} FROM {}{}{}").format(
            sql.SQL(", ").join(sql.Identifier(c.name) for c in selected),
            self._name(definition),
            conditions,
            _order_sql(prepare_order(definition, order_by)),
        )
        return selected, query, params

    def drop_connections(self) -> None:
        with self._lock:
            for conn in (self._conn, self._idle_reader):
                if conn is not None:
                    conn.close()
            self._conn = self._idle_reader = None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for conn in (self._conn, self._idle_reader):
                if conn is not None:
                    conn.close()

    # --- plumbing -----------------------------------------------------------------------------

    @property
    def _positions(self) -> sql.Composable:
        return self._name(POSITIONS_TABLE)

    def _name(self, table: Table) -> sql.Composable:
        return sql.Identifier(self.internal_schema if table.internal else self.schema, table.name)

    def _connection(self) -> psycopg.Connection[Any]:
        """The connection, reopened if the last one broke (server restart, network)."""
        if self._closed:
            raise ViewStoreError("the view store is closed")
        if self._conn is None or self._conn.closed or self._conn.broken:
            # autocommit: reads are single statements; writes open explicit transactions.
            conn = psycopg.connect(
                self._url,
                autocommit=True,
                connect_timeout=self._connect_timeout,
                application_name="lifecycle-views",
            )
            # Timestamps come back in UTC, and now() is stored as such.
            conn.execute("SET TIME ZONE 'UTC'")
            if not self._synchronous_commit:  # see __init__; set again on every reconnection
                conn.execute("SET synchronous_commit = off")
            self._conn = conn
        return self._conn

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Cursor[Any]]:
        """One transaction: committed if the block ends normally, rolled back on any error."""
        with self._lock, self._translate():
            conn = self._connection()
            with conn.transaction(), conn.cursor() as cur:
                yield cur

    def _lock_ddl(self, cur: psycopg.Cursor[Any]) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK_KEY,))

    def _ensure_schema(self, cur: psycopg.Cursor[Any], name: str) -> None:
        # Look first: CREATE SCHEMA IF NOT EXISTS needs the CREATE privilege on the database even
        # when the schema exists, which a service role given only its schemas does not have.
        if cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (name,)).fetchone():
            return
        cur.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        if name in SCHEMA_COMMENTS:
            cur.execute(
                sql.SQL("COMMENT ON SCHEMA {} IS {}").format(
                    sql.Identifier(name), sql.Literal(SCHEMA_COMMENTS[name])
                )
            )

    def _create_table(self, cur: psycopg.Cursor[Any], table: Table) -> None:
        """1. compare an existing table's columns; 2. create (columns that do not compress
        stored so); 3. entity index; 4. comments."""
        schema = self.internal_schema if table.internal else self.schema
        existing = cur.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = %s",
            (schema, table.name),
        ).fetchall()
        if existing:
            check_existing_columns(table, (r[0] for r in existing))
        columns = [
            sql.SQL("{} {}{}").format(
                sql.Identifier(c.name),
                sql.SQL(_SQL_TYPES[c.type]),
                sql.SQL(" NOT NULL" if table.is_required(c) else ""),
            )
            for c in table.columns
        ]
        columns.append(
            sql.SQL("PRIMARY KEY ({})").format(sql.SQL(", ").join(map(sql.Identifier, table.key)))
        )
        cur.execute(
            sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
                self._name(table), sql.SQL(", ").join(columns)
            )
        )
        for column in table.columns:
            if not column.compressible and cur.execute(  # out of line, uncompressed (the default tries pglz)
                "SELECT attstorage <> 'e' FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = %s",
                (self._name(table).as_string(cur), column.name),
            ).fetchone()[0]:  # altered once: ALTER TABLE locks the table
                cur.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET STORAGE EXTERNAL").format(
                    self._name(table), sql.Identifier(column.name)))
        # Entity replacements delete by the entity column; when it leads the key the primary
        # key's index serves that already.
        if table.entity and table.key[0] != table.entity:
            cur.execute(
                sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
                    sql.Identifier(f"{table.name}_{table.entity}_idx"[:63]),
                    self._name(table),
                    sql.Identifier(table.entity),
                )
            )
        # Always (re)set: descriptions may have been improved since the table was created.
        cur.execute(
            sql.SQL("COMMENT ON TABLE {} IS {}").format(self._name(table), sql.Literal(table.description))
        )
        for column in table.columns:
            cur.execute(
                sql.SQL("COMMENT ON COLUMN {} IS {}").format(
                    sql.Identifier(schema, table.name, column.name), sql.Literal(column.description)
                )
            )

    @contextmanager
    def _translate(self) -> Iterator[None]:
        """Driver errors become ViewStoreError at this edge; ours pass through unchanged."""
        try:
            yield
        except psycopg.errors.UndefinedTable as e:
            match = re.search(r'relation "([^"]+)" does not exist', str(e))
            raise UnknownTable(match.group(1) if match else str(e)) from e
        except psycopg.errors.IntegrityError as e:
            raise ViewStoreError(f"constraint violated in {self._where}: {e}") from e
        except psycopg.OperationalError as e:
            raise ViewStoreError(f"PostgreSQL view store {self._where} unavailable: {e}") from e
        except psycopg.Error as e:
            raise ViewStoreError(f"PostgreSQL view store {self._where}: {e}") from e


@contextmanager
def exclusive_setup(database_url: str | None) -> Iterator[None]:
    """One process at a time in the block, on a PostgreSQL database (elsewhere: no lock)."""
    if database_url is None or not database_url.startswith(("postgresql:", "postgres:")):
        yield
        return
    try:
        conn = psycopg.connect(database_url, autocommit=True, connect_timeout=5)
    except psycopg.Error as e:
        raise ViewStoreError(str(e)) from e
    with conn:
        try:
            conn.execute("SELECT pg_advisory_lock(%s)", (_SETUP_LOCK_KEY,))
        except psycopg.Error as e:
            raise ViewStoreError(str(e)) from e
        try:
            yield
        finally:
            # A connection lost meanwhile took its session's lock with it; an error here would
            # hide the one that ended the block.
            with suppress(psycopg.Error):
                conn.execute("SELECT pg_advisory_unlock(%s)", (_SETUP_LOCK_KEY,))


def _where_sql(conditions: Sequence[Condition]) -> tuple[sql.Composable, list[Any]]:
    clauses: list[sql.Composable] = []
    params: list[Any] = []
    for condition in conditions:
        column = sql.Identifier(condition.column.name)
        present = [v for v in condition.values if v is not None]
        has_null = len(present) < len(condition.values)
        if not condition.many:
            if has_null:
                clauses.append(sql.SQL("{} IS NULL").format(column))
            else:
                clauses.append(sql.SQL("{} = %s").format(column))
                params.append(present[0])
            continue
        # One array parameter whatever the list length; cast, or an empty or all-int list would
        # be typed from its contents instead of the column.
        clause = sql.SQL("{} = ANY(%s::{}[])").format(column, sql.SQL(_SQL_TYPES[condition.column.type]))
        params.append(present)
        if has_null:
            clause = sql.SQL("({} OR {} IS NULL)").format(clause, column)
        clauses.append(clause)
    if not clauses:
        return sql.SQL(""), params
    return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(clauses), params


def _order_sql(orderings: Sequence[Ordering]) -> sql.Composable:
    terms = [
        sql.SQL("{}{} {}").format(
            sql.Identifier(o.column.name),
            # Byte order for text, as SQLite and Python compare, whatever the database's locale.
            sql.SQL(' COLLATE "C"' if o.column.type == "text" else ""),
            sql.SQL("DESC NULLS FIRST" if o.descending else "ASC NULLS LAST"),
        )
        for o in orderings
    ]
    return sql.SQL(" ORDER BY ") + sql.SQL(", ").join(terms)
