"""Reads of the event store that the library's recorders make too dear.

``stored_states_of`` (one aggregate) and ``stored_states_of_many`` (many, in one query): stored
rows without building a ``StoredEvent`` per row. The library's ``select_events`` turns every
row's id back into a UUID and builds a frozen dataclass around it; for a point-in-time answer
over 1,000 events that was three quarters of the select, and the id is the one asked for. Ingest
reloads the customers its cache has dropped with the second, one query per batch instead of one
per customer.

``notifications_after``: the log in id order, as ``select_notifications`` reads it, without a
UUID and a frozen dataclass per row (a fifth of reading the log for a rebuild).
``notifications_by_aggregate``: the log up to a position in the events table's key order, each
aggregate's history together (a rebuild derives each entity once without holding the log), its
rows as the store gives them: the caller groups them and shows each id once (``id_as_text``).

Each runs one statement in the recorder's own connection (``_select``, through ``postgres_rows``
or ``sqlite_rows``, which the inbound ledger reads with too, as with their ``*_for`` many-id forms); a recorder of another kind (in
memory) is asked through the library, which costs nothing there.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import PersistenceError
from eventsourcing.sqlite import SQLiteAggregateRecorder

from lifecycle.errors import StoreError

# Well under SQLite's default limit of host parameters (32766) and kind to PostgreSQL's planner.
CHUNK = 2000
# PostgreSQL's aggregate ids selected as text, as ``str(UUID)`` writes them (``_TEXT_ID``) or as
# SQLite keeps them (``_HEX_ID``): psycopg builds a UUID of a uuid column's value in Python, and
# the readers here only want its text (0.9 µs a row for the UUID, 0.25 for the text, and a
# ``str`` or ``.hex`` of it less). Named otherwise: a cast keeps the column's name, and ORDER BY
# originator_id would then sort by the text instead of reading along the column's index.
_TEXT_ID = "originator_id::text AS originator_text"


def _hex_id(column: str = "originator_id") -> str:
    return f"replace({column}::text, '-', '') AS originator_hex"


_HEX_ID = _hex_id()


def stored_states_of(recorder: Any, aggregate_id: UUID) -> list[tuple[int, str, bytes]]:
    """The aggregate's stored events as ``(version, topic, state)``, in version order."""
    rows = _select(
        recorder,
        "SELECT originator_version, topic, state FROM {table} WHERE originator_id = %s ORDER BY originator_version",
        "SELECT originator_version, topic, state FROM {table} WHERE originator_id = ? ORDER BY originator_version",
        (aggregate_id,), (aggregate_id.hex,),
    )
    if rows is None:
        return [(e.originator_version, e.topic, e.state) for e in recorder.select_events(aggregate_id)]
    return [(r[0], r[1], bytes(r[2])) for r in rows]


def stored_states_of_many(
    recorder: Any, aggregate_ids: Collection[UUID], after: Mapping[UUID, int] | None = None
) -> dict[UUID, list[tuple[int, str, bytes]]]:
    """Each stored aggregate's events as ``(version, topic, state)`` in version order, in one
    query per chunk; aggregates without events are left out. With ``after``, only an aggregate's
    events above its version there (a snapshot's: the rows before it are not read at all)."""
    wanted = list(dict.fromkeys(aggregate_ids))
    if after:
        versions = {u: after.get(u, 0) for u in wanted}
        return _in_chunks(wanted, lambda by_key: _states_after(recorder, by_key, versions))
    return _in_chunks(wanted, lambda by_key: _states_of(recorder, by_key))


def _in_chunks(
    wanted: Sequence[UUID], select: Callable[[Mapping[str, UUID]], Iterable[Sequence[Any]]]
) -> dict[UUID, list[tuple[int, str, bytes]]]:
    """``select``'s ``(aggregate id, version, topic, state)`` rows of ``CHUNK`` ids at a time
    (given by their hex form, as SQLite keeps them), grouped by aggregate."""
    found: dict[UUID, list[tuple[int, str, bytes]]] = {}
    for start in range(0, len(wanted), CHUNK):
        by_key = {u.hex: u for u in wanted[start:start + CHUNK]}
        _group_states(select(by_key), by_key, found)
    return found


def _states_of(recorder: Any, by_key: Mapping[str, UUID]) -> Iterable[Sequence[Any]]:
    """Every stored event of these aggregates, in the events table's key order."""
    chunk = list(by_key.values())
    rows = _select(
        recorder,
        f"SELECT {_HEX_ID}, originator_version, topic, state FROM {{table}} "
        "WHERE originator_id = ANY(%b) ORDER BY originator_id, originator_version",
        "SELECT originator_id, originator_version, topic, state FROM {table} "
        "WHERE originator_id IN ({marks}) ORDER BY originator_id, originator_version",
        (chunk,), list(by_key),
    )
    if rows is None:
        return [(u.hex, e.originator_version, e.topic, e.state) for u in chunk for e in recorder.select_events(u)]
    return rows


def _states_after(
    recorder: Any, by_key: Mapping[str, UUID], after: Mapping[UUID, int]
) -> Iterable[Sequence[Any]]:
    """The stored events of these aggregates above each one's version in ``after``: the ids and
    versions joined to the events table's key (a range of its index per aggregate)."""
    chunk = list(by_key.values())
    versions = [after[u] for u in chunk]
    rows = _select(
        recorder,
        f"SELECT {_hex_id('e.originator_id')}, e.originator_version, e.topic, e.state "
        "FROM unnest(%b::uuid[], %b::int8[]) AS w(id, after) JOIN {table} AS e "
        "ON e.originator_id = w.id AND e.originator_version > w.after "
        "ORDER BY e.originator_id, e.originator_version",
        # CROSS JOIN: SQLite then loops over the wanted ids and reads a range of the key for each.
        "SELECT e.originator_id, e.originator_version, e.topic, e.state "
        "FROM json_each(?) AS w CROSS JOIN {table} AS e "
        "ON e.originator_id = w.key AND e.originator_version > w.value "
        "ORDER BY e.originator_id, e.originator_version",
        (chunk, versions), (json.dumps(dict(zip(by_key, versions))),),
    )
    if rows is None:
        return [(u.hex, e.originator_version, e.topic, e.state)
                for u in chunk for e in recorder.select_events(u, gt=after[u])]
    return rows


def _group_states(
    rows: Iterable[Sequence[Any]], by_key: Mapping[str, UUID], found: dict[UUID, list[tuple[int, str, bytes]]]
) -> None:
    """Add ``(aggregate id, version, topic, state)`` rows, in key order, to ``found`` as each
    aggregate's ``(version, topic, state)``; ``by_key`` gives the UUID of each id's hex form
    (SQLite's ids are hex text, PostgreSQL's UUIDs)."""
    for aggregate_id, version, topic, state in rows:
        key = aggregate_id.hex if isinstance(aggregate_id, UUID) else aggregate_id
        found.setdefault(by_key[key], []).append((version, topic, bytes(state)))


def notifications_after(recorder: Any, after: int, limit: int) -> list[tuple[int, str, int, str, bytes]]:
    """Up to ``limit`` stored events with a notification id above ``after``, in id order, as
    ``(id, aggregate id as text, version, topic, state)``."""
    rows = _select(
        recorder,
        f"SELECT notification_id, {_TEXT_ID}, originator_version, topic, state FROM {{table}} "
        "WHERE notification_id > %s ORDER BY notification_id LIMIT %s",
        "SELECT rowid, originator_id, originator_version, topic, state FROM {table} "
        "WHERE rowid > ? ORDER BY rowid LIMIT ?",
        (after, limit), (after, limit),
    )
    if rows is None:
        return [
            (n.id, str(n.originator_id), n.originator_version, n.topic, n.state)
            for n in recorder.select_notifications(start=after + 1, limit=limit)
        ]
    return [(r[0], id_as_text(r[1]), r[2], r[3], bytes(r[4])) for r in rows]


def notifications_by_aggregate(
    recorder: Any, last: int, after: tuple[str, int] | None, limit: int, below: str | None = None
) -> list[Sequence[Any]] | None:
    """Up to ``limit`` stored events with a notification id up to ``last``, in the order of the
    events table's key (aggregate id, version), from just after the key ``after`` (aggregate id
    as text, version; None: from the first) and, with ``below``, of aggregates whose id comes
    before it, as ``(id, stored aggregate id, version, topic, state)``: the id as the store
    keeps it (``id_as_text`` shows it), the state bytes. Each aggregate's history comes
    together, read along the key's index. None for a recorder of another kind. (The rows are
    not made again: a rebuild reads every stored event through here.)"""
    postgres = (f"SELECT notification_id, {_TEXT_ID}, originator_version, topic, state FROM {{table}} "
                "WHERE notification_id <= %s{after}{below} ORDER BY originator_id, originator_version LIMIT %s")
    sqlite = ("SELECT rowid, originator_id, originator_version, topic, state FROM {table} "
              "WHERE rowid <= ?{after}{below} ORDER BY originator_id, originator_version LIMIT ?")
    postgres_params: list[Any] = [last]
    sqlite_params: list[Any] = [last]
    clauses = {"after": ("", ""), "below": ("", "")}
    if after is not None:
        aggregate_id = UUID(after[0])
        postgres_params += [aggregate_id, after[1]]
        sqlite_params += [aggregate_id.hex, after[1]]
        clauses["after"] = (" AND (originator_id, originator_version) > (%s, %s)",
                            " AND (originator_id, originator_version) > (?, ?)")
    if below is not None:
        postgres_params.append(UUID(below))
        sqlite_params.append(UUID(below).hex)
        clauses["below"] = (" AND originator_id < %s", " AND originator_id < ?")
    postgres_params.append(limit)
    sqlite_params.append(limit)
    for name, (in_postgres, in_sqlite) in clauses.items():
        postgres = postgres.replace("{" + name + "}", in_postgres)
        sqlite = sqlite.replace("{" + name + "}", in_sqlite)
    return _select(recorder, postgres, sqlite, postgres_params, sqlite_params)


def _select(
    recorder: Any, postgres: str, sqlite: str, postgres_params: Sequence[Any], sqlite_params: Sequence[Any]
) -> list[Sequence[Any]] | None:
    """Rows of one statement (columns in the order selected) in the recorder's own connection;
    None for a recorder that is neither PostgreSQL nor SQLite. ``{table}`` is the library's
    events table; ``{marks}`` (SQLite) as many placeholders as ``sqlite_params``."""
    if _is_postgres(recorder):
        table = f"{quoted_identifier(recorder.datastore.schema)}.{quoted_identifier(recorder.events_table_name)}"
        return postgres_rows(recorder, postgres.format(table=table), postgres_params)
    if isinstance(recorder, SQLiteAggregateRecorder):
        statement = sqlite.format(table=recorder.events_table_name, marks=",".join("?" * len(sqlite_params)))
        return sqlite_rows(recorder, statement, sqlite_params)
    return None


def _is_postgres(recorder: Any) -> bool:
    # A PostgreSQL recorder exists only once its module is imported: an embedded process need
    # not import psycopg to know it has none (it starts ~0.1 s sooner).
    postgres = sys.modules.get("eventsourcing.postgres")
    return postgres is not None and isinstance(recorder, postgres.PostgresAggregateRecorder)


def postgres_rows(recorder: Any, statement: str, params: Sequence[Any]) -> list[Sequence[Any]]:
    """Rows (tuples, columns in the order selected) of one statement in a PostgreSQL recorder's
    own connection."""
    try:
        # Tuples: the library's connections make a dict of every row (a tenth of the relay's
        # reading was making them and taking them apart again).
        with recorder.datastore.get_connection() as conn, conn.cursor(row_factory=_tuple_row) as cursor:
            cursor.execute(statement, params, prepare=True)
            return cursor.fetchall()
    except PersistenceError as e:  # the library's datastores translate their driver's errors
        raise StoreError(f"event store failed: {e}") from e


def _tuple_row(_cursor: Any) -> type[tuple[Any, ...]]:
    """A psycopg row factory (called with the cursor, it gives what makes a row of a record's
    values): rows as plain tuples, as psycopg's own ``tuple_row`` makes them, without this
    module importing the driver."""
    return tuple


def postgres_rows_for(recorder: Any, statement: str, ids: Collection[UUID]) -> list[Sequence[Any]]:
    """Rows of ``statement`` for many ids (its one parameter, ``= ANY(%b)``), CHUNK ids a query."""
    wanted = list(dict.fromkeys(ids))
    rows: list[Sequence[Any]] = []
    for start in range(0, len(wanted), CHUNK):
        rows += postgres_rows(recorder, statement, (wanted[start:start + CHUNK],))
    return rows


def sqlite_rows_for(recorder: Any, statement: str, ids: Collection[UUID]) -> list[Sequence[Any]]:
    """Rows of ``statement`` for many ids, given as one JSON list of hex ids (``IN (SELECT value
    FROM json_each(?))``): one prepared statement for every number of ids, not one per length.
    An id given twice changes nothing (``IN``), so they are not made unique first (each UUID's
    hash is Python code: a batch's 500 receipt ids were hashed for nothing)."""
    return sqlite_rows(recorder, statement, (json.dumps([i.hex for i in ids]),))


def sqlite_rows(recorder: Any, statement: str, params: Sequence[Any]) -> list[Sequence[Any]]:
    """Rows of one statement in a SQLite recorder's own connection (a read transaction)."""
    try:
        with recorder.datastore.transaction(commit=False) as cursor:
            cursor.execute(statement, params)
            return cursor.fetchall()
    except PersistenceError as e:  # the library's datastores translate their driver's errors
        raise StoreError(f"event store failed: {e}") from e


def id_as_text(value: Any) -> str:
    """A stored id as ``str(UUID)`` shows it, without building the UUID: SQLite's 32 hex digits
    dashed, PostgreSQL's ``_TEXT_ID`` as it is."""
    if type(value) is str:
        if len(value) == 32:
            return f"{value[:8]}-{value[8:12]}-{value[12:16]}-{value[16:20]}-{value[20:]}"
        if len(value) == 36:
            return value
    return str(value if isinstance(value, UUID) else UUID(value))


def quoted_identifier(identifier: str) -> str:
    """A PostgreSQL identifier, quoted (the library's own names, from its settings)."""
    return '"' + identifier.replace('"', '""') + '"'

