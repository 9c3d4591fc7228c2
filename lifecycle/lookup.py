"""Reads of the event store that the library's recorders make too dear.

``existing_aggregates``: which of many aggregates exist, in one query instead of one per
aggregate. The library reads one aggregate at a time; ingest asks, for every event of a batch,
whether its receipt exists (a duplicate) and whether its customer exists (a load or a creation).
Asking per event was the largest cost of ingest on PostgreSQL (one round trip each), so the
question is put once per batch, in the recorder's own database connection.

``stored_states_of`` (one aggregate) and ``stored_states_of_many`` (many, in one query): stored
rows without building a ``StoredEvent`` per row. The library's ``select_events`` turns every
row's id back into a UUID and builds a frozen dataclass around it; for a point-in-time answer
over 1,000 events that was three quarters of the select, and the id is the one asked for. Ingest
reloads the customers its cache has dropped with the second, one query per batch instead of one
per customer.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any
from uuid import UUID

from eventsourcing.persistence import PersistenceError
from eventsourcing.postgres import PostgresAggregateRecorder
from eventsourcing.sqlite import SQLiteAggregateRecorder

from lifecycle.errors import StoreError

# Well under SQLite's default limit of host parameters (32766) and kind to PostgreSQL's planner.
CHUNK = 2000


def existing_aggregates(recorder: Any, aggregate_ids: Collection[UUID]) -> set[UUID]:
    """The subset of ``aggregate_ids`` that has at least one stored event."""
    wanted = list(dict.fromkeys(aggregate_ids))
    found: set[UUID] = set()
    try:
        for start in range(0, len(wanted), CHUNK):
            found |= _existing(recorder, wanted[start:start + CHUNK])
    except PersistenceError as e:  # the library's datastores translate their driver's errors
        raise StoreError(f"event store failed: {e}") from e
    return found


def _existing(recorder: Any, chunk: list[UUID]) -> set[UUID]:
    if not chunk:
        return set()
    if isinstance(recorder, PostgresAggregateRecorder):
        table = f"{_quoted(recorder.datastore.schema)}.{_quoted(recorder.events_table_name)}"
        statement = f"SELECT DISTINCT originator_id FROM {table} WHERE originator_id = ANY(%s)"  # noqa: S608
        with recorder.datastore.get_connection() as conn, conn.cursor() as cursor:
            cursor.execute(statement, (chunk,))
            return {_uuid(row["originator_id"]) for row in cursor.fetchall()}
    if isinstance(recorder, SQLiteAggregateRecorder):
        marks = ",".join("?" * len(chunk))
        statement = (
            f"SELECT DISTINCT originator_id FROM {recorder.events_table_name} "  # noqa: S608 - the library's table name
            f"WHERE originator_id IN ({marks})"
        )
        with recorder.datastore.transaction(commit=False) as cursor:
            cursor.execute(statement, [u.hex for u in chunk])
            return {_uuid(row["originator_id"]) for row in cursor.fetchall()}
    # In memory (and any other recorder): one read per aggregate, which costs nothing there.
    return {u for u in chunk if recorder.select_events(u, limit=1)}


def stored_states_of(recorder: Any, aggregate_id: UUID) -> list[tuple[int, str, bytes]]:
    """The aggregate's stored events as ``(version, topic, state)``, in version order."""
    try:
        if isinstance(recorder, PostgresAggregateRecorder):
            table = f"{_quoted(recorder.datastore.schema)}.{_quoted(recorder.events_table_name)}"
            statement = (
                f"SELECT originator_version, topic, state FROM {table} "  # noqa: S608 - the library's names
                "WHERE originator_id = %s ORDER BY originator_version"
            )
            with recorder.datastore.get_connection() as conn, conn.cursor() as cursor:
                cursor.execute(statement, (aggregate_id,), prepare=True)
                return [(r["originator_version"], r["topic"], bytes(r["state"])) for r in cursor.fetchall()]
        if isinstance(recorder, SQLiteAggregateRecorder):
            statement = (
                f"SELECT originator_version, topic, state FROM {recorder.events_table_name} "  # noqa: S608
                "WHERE originator_id = ? ORDER BY originator_version"
            )
            with recorder.datastore.transaction(commit=False) as cursor:
                cursor.execute(statement, (aggregate_id.hex,))
                return [(r[0], r[1], r[2]) for r in cursor.fetchall()]
        return [(e.originator_version, e.topic, e.state) for e in recorder.select_events(aggregate_id)]
    except PersistenceError as e:
        raise StoreError(f"event store failed: {e}") from e


def stored_states_of_many(
    recorder: Any, aggregate_ids: Collection[UUID]
) -> dict[UUID, list[tuple[int, str, bytes]]]:
    """Each stored aggregate's events as ``(version, topic, state)`` in version order, in one
    query per chunk; aggregates without events are left out."""
    wanted = list(dict.fromkeys(aggregate_ids))
    found: dict[UUID, list[tuple[int, str, bytes]]] = {}
    try:
        for start in range(0, len(wanted), CHUNK):
            for aggregate_id, version, topic, state in _states(recorder, wanted[start:start + CHUNK]):
                found.setdefault(aggregate_id, []).append((version, topic, state))
    except PersistenceError as e:
        raise StoreError(f"event store failed: {e}") from e
    return found


def _states(recorder: Any, chunk: list[UUID]) -> list[tuple[UUID, int, str, bytes]]:
    if not chunk:
        return []
    if isinstance(recorder, PostgresAggregateRecorder):
        table = f"{_quoted(recorder.datastore.schema)}.{_quoted(recorder.events_table_name)}"
        statement = (
            f"SELECT originator_id, originator_version, topic, state FROM {table} "  # noqa: S608
            "WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version"
        )
        with recorder.datastore.get_connection() as conn, conn.cursor() as cursor:
            cursor.execute(statement, (chunk,))
            return [
                (_uuid(r["originator_id"]), r["originator_version"], r["topic"], bytes(r["state"]))
                for r in cursor.fetchall()
            ]
    if isinstance(recorder, SQLiteAggregateRecorder):
        marks = ",".join("?" * len(chunk))
        statement = (
            f"SELECT originator_id, originator_version, topic, state FROM {recorder.events_table_name} "  # noqa: S608
            f"WHERE originator_id IN ({marks}) ORDER BY originator_id, originator_version"
        )
        by_hex = {u.hex: u for u in chunk}
        with recorder.datastore.transaction(commit=False) as cursor:
            cursor.execute(statement, list(by_hex))
            return [(by_hex[r[0]], r[1], r[2], r[3]) for r in cursor.fetchall()]
    # In memory (and any other recorder): one read per aggregate, which costs nothing there.
    return [(u, e.originator_version, e.topic, e.state) for u in chunk for e in recorder.select_events(u)]


def notifications_after(recorder: Any, after: int, limit: int) -> list[tuple[int, str, int, str, bytes]]:
    """Up to ``limit`` stored events with a notification id above ``after``, in id order, as
    ``(id, aggregate id as text, version, topic, state)``: ``select_notifications``' rows
    without a UUID and a frozen dataclass per row (a fifth of reading the log for a rebuild)."""
    try:
        if isinstance(recorder, PostgresAggregateRecorder):
            table = f"{_quoted(recorder.datastore.schema)}.{_quoted(recorder.events_table_name)}"
            statement = (
                f"SELECT notification_id, originator_id, originator_version, topic, state FROM {table} "  # noqa: S608
                "WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
            )
            with recorder.datastore.get_connection() as conn, conn.cursor() as cursor:
                cursor.execute(statement, (after, limit), prepare=True)
                return [
                    (r["notification_id"], str(r["originator_id"]), r["originator_version"], r["topic"],
                     bytes(r["state"]))
                    for r in cursor.fetchall()
                ]
        if isinstance(recorder, SQLiteAggregateRecorder):
            statement = (
                f"SELECT rowid, originator_id, originator_version, topic, state "  # noqa: S608
                f"FROM {recorder.events_table_name} WHERE rowid > ? ORDER BY rowid LIMIT ?"
            )
            with recorder.datastore.transaction(commit=False) as cursor:
                cursor.execute(statement, (after, limit))
                return [(r[0], _hex_as_text(r[1]), r[2], r[3], r[4]) for r in cursor.fetchall()]
        return [
            (n.id, str(n.originator_id), n.originator_version, n.topic, n.state)
            for n in recorder.select_notifications(start=after + 1, limit=limit)
        ]
    except PersistenceError as e:
        raise StoreError(f"event store failed: {e}") from e


def _hex_as_text(value: str) -> str:
    """SQLite's stored id (32 hex digits) as ``str(UUID)`` shows it, without building the UUID."""
    if len(value) == 32:
        return f"{value[:8]}-{value[8:12]}-{value[12:16]}-{value[16:20]}-{value[20:]}"
    return str(UUID(value))


def _quoted(identifier: str) -> str:
    """A PostgreSQL identifier, quoted (the library's own names, from its settings)."""
    return '"' + identifier.replace('"', '""') + '"'


def _uuid(value: Any) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))
