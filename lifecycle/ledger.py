"""The inbound ledger: one row per inbound event ever received, written with what it caused.

A row holds the inbound event's receipt id (from ``source`` + ``id``, or from the bytes of a
malformed event) and its outcome. It is inserted in the same transaction as the batch's events,
by the event store's recorder, the way the library stores a tracking position. Its primary key
is what makes deduplication exact: a second delivery finds the row, and two writers racing on
the same inbound event collide on it (the batch is then retried from a fresh read).

Why a row and not an event: an accepted inbound event's facts already carry its ``source`` and
``id``, so a receipt event per accepted event doubled the log (and the work of every reader of
it: relay, projections, seals) to hold one id. Refused and malformed events still get an
``InboundReceipt`` event beside their row, for the reason and the original bytes.

A store written before the ledger existed has a receipt event per inbound event instead: the
first start copies their ids into the ledger (``_ADOPT_*``), in the transaction that creates it.

The same recorders keep the aggregates' latest snapshots (``snapshot_rows=[(aggregate id,
version, state), ...]``), one row per aggregate, replaced in the same transaction as the events
of the version it holds: a snapshot never runs ahead of the events, and an older one never
replaces a newer one. They are the engine's cache, not part of the record: an auditor replays
events, and dropping every snapshot changes nothing but the time a reload takes.

One recorder per backend (memory, SQLite, PostgreSQL: ``lifecycle.ledger_postgres``, imported
only for a PostgreSQL store), each the library's process recorder plus the ledger and the
snapshots; ``process_recorder`` picks the one for the application's factory.
"""

from __future__ import annotations

import sys
from collections.abc import Collection, Mapping, Sequence
from typing import Any, NamedTuple
from uuid import UUID

from eventsourcing.persistence import InfrastructureFactory, IntegrityError, ProcessRecorder
from eventsourcing.popo import POPOFactory, POPOProcessRecorder
from eventsourcing.sqlite import SQLiteFactory, SQLiteProcessRecorder
from eventsourcing.utils import get_topic

from lifecycle.errors import StoreError
from lifecycle.writers import WriterQueue
from lifecycle import lookup
from lifecycle.receipt import InboundReceipt

#: What ``put`` takes beside the events: ``ledger_rows=[(receipt id, outcome), ...]``.
ROWS = "ledger_rows"
#: And ``snapshot_rows=[(aggregate id, version, state bytes), ...]``.
SNAPSHOTS = "snapshot_rows"
RECEIPT_TOPIC = get_topic(InboundReceipt.Received)

# A receipt event is version 1 of its aggregate; its JSON holds the outcome at the top level.
_ADOPT_SQLITE = (
    "INSERT OR IGNORE INTO {ledger} (receipt_id, outcome) "
    "SELECT originator_id, json_extract(CAST(state AS TEXT), '$.outcome') FROM {events} "
    "WHERE topic = ? AND originator_version = 1"
)
_ADOPT_POSTGRES = (
    "INSERT INTO {ledger} (receipt_id, outcome) "
    "SELECT originator_id, convert_from(state, 'UTF8')::jsonb ->> 'outcome' FROM {events} "
    "WHERE topic = %s AND originator_version = 1 ON CONFLICT DO NOTHING"
)


def process_recorder(factory: InfrastructureFactory[Any]) -> ProcessRecorder:
    """The library's process recorder for this factory's backend, with the ledger."""
    if isinstance(factory, POPOFactory):
        return MemoryLedgerRecorder()
    postgres = sys.modules.get("eventsourcing.postgres")  # imported if the factory is one of its
    if isinstance(factory, SQLiteFactory):
        chosen: type = SQLiteLedgerRecorder
    elif postgres is not None and isinstance(factory, postgres.PostgresFactory):
        from lifecycle.ledger_postgres import PostgresLedgerRecorder

        chosen = PostgresLedgerRecorder
    else:
        raise StoreError(f"no inbound ledger for the event store {type(factory).__name__}")
    # The library's own way to choose a recorder class (it then creates the tables).
    factory.env[factory.PROCESS_RECORDER_TOPIC] = get_topic(chosen)
    return factory.process_recorder()


def _in_id_order(rows: Sequence[tuple[UUID, *tuple[Any, ...]]]) -> list[tuple[UUID, *tuple[Any, ...]]]:
    # Two writers inserting overlapping ids wait on each other in the same order (no deadlock),
    # and the later one fails on the primary key.
    return sorted(rows, key=lambda row: row[0].bytes)


class MemoryLedgerRecorder(POPOProcessRecorder):
    def __init__(self) -> None:
        super().__init__()
        self._ledger: dict[UUID, str] = {}
        self._snapshots: dict[UUID, tuple[int, bytes]] = {}

    def _assert_uniqueness(self, stored_events: Sequence[Any], **kwargs: Any) -> None:
        super()._assert_uniqueness(stored_events, **kwargs)
        ids = [rid for rid, _ in kwargs.get(ROWS) or ()]
        if len(set(ids)) < len(ids) or any(rid in self._ledger for rid in ids):
            raise IntegrityError(f"inbound event already recorded: {ids}")

    def _update_table(self, stored_events: Sequence[Any], **kwargs: Any) -> Sequence[int] | None:
        notification_ids = super()._update_table(stored_events, **kwargs)
        self._ledger.update(kwargs.get(ROWS) or ())
        for aggregate_id, version, state in kwargs.get(SNAPSHOTS) or ():
            if version > self._snapshots.get(aggregate_id, (0, b""))[0]:
                self._snapshots[aggregate_id] = (version, state)
        return notification_ids

    def snapshots(self, aggregate_ids: Collection[UUID]) -> dict[UUID, tuple[int, bytes]]:
        with self._database_lock:
            return {i: self._snapshots[i] for i in aggregate_ids if i in self._snapshots}

    def seen(self, receipt_ids: Collection[UUID]) -> dict[UUID, str]:
        with self._database_lock:
            return {rid: self._ledger[rid] for rid in receipt_ids if rid in self._ledger}

    def ledger(self) -> dict[UUID, str]:
        with self._database_lock:
            return dict(self._ledger)


WAL_CHECKPOINT_PAGES = 10_000  # pages of 4 KiB
_PREPARED = "_sqlite_rows"  # insert_events' rows, made before the write lock, to _insert_events


class _SQLiteRows(NamedTuple):
    """A batch's rows as the SQLite tables take them."""

    events: list[tuple[str, int, str, bytes]]
    ledger: list[tuple[str, str]]
    snapshots: list[tuple[str, int, bytes]]

    @classmethod
    def of(cls, stored_events: Sequence[Any], kwargs: Mapping[str, Any]) -> _SQLiteRows:
        return cls(
            [(s.originator_id.hex if isinstance(s.originator_id, UUID) else s.originator_id,
              s.originator_version, s.topic, s.state) for s in stored_events],
            # Sorted by the hex text, which sorts as the ids' bytes do (_in_id_order's order).
            sorted([(rid.hex, outcome) for rid, outcome in kwargs.get(ROWS) or ()]),
            [(i.hex, version, state) for i, version, state in _in_id_order(kwargs.get(SNAPSHOTS) or ())],
        )


class SQLiteLedgerRecorder(SQLiteProcessRecorder):
    def __init__(self, datastore: Any, *, events_table_name: str = "stored_events") -> None:
        self.ledger_table_name = "inbound_ledger"
        self.snapshots_table_name = "aggregate_snapshots"
        super().__init__(datastore, events_table_name=events_table_name)
        self.writers = WriterQueue.beside(datastore.pool.db_name)

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(),
                f"CREATE TABLE IF NOT EXISTS {self.ledger_table_name} "
                "(receipt_id TEXT PRIMARY KEY, outcome TEXT NOT NULL) WITHOUT ROWID",
                f"CREATE TABLE IF NOT EXISTS {self.snapshots_table_name} "
                "(aggregate_id TEXT PRIMARY KEY, version INTEGER NOT NULL, state BLOB NOT NULL)"]

    def _create_table(self, c: Any) -> None:
        c.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (self.ledger_table_name,))
        new = c.fetchone() is None
        super()._create_table(c)
        if new:  # same transaction as the CREATE: adopted once, or not at all
            c.execute(_ADOPT_SQLITE.format(ledger=self.ledger_table_name, events=self.events_table_name),
                      (RECEIPT_TOPIC,))

    def insert_events(self, stored_events: Sequence[Any], **kwargs: Any) -> Sequence[int] | None:
        # The rows are made before the write lock is taken: the other writers wait only for
        # SQLite's work, not for Python's (making them was ~6% of the time a batch held it).
        kwargs[_PREPARED] = _SQLiteRows.of(stored_events, kwargs)
        # Our writers take turns without SQLite's busy polling (lifecycle.writers)
        with self.writers:
            return super().insert_events(stored_events, **kwargs)

    def _insert_events(self, c: Any, stored_events: Sequence[Any], **kwargs: Any) -> Sequence[int] | None:
        """0. the log's checkpoints  1. the events, numbered  2. the position  3. the ledger's
        rows  4. the snapshots; the library's datastore commits them together."""
        rows = kwargs.get(_PREPARED) or _SQLiteRows.of(stored_events, kwargs)
        # 0. Checkpoint the write-ahead log every ~40 MiB, not SQLite's 4 MiB: a batch dirties
        # pages all over the indexes (ids are hashes), so at the default nearly every commit
        # also copied the log back into the database and synced it (a commit took ~40% less
        # time at 100k events, bench/PROFILE.md). A connection setting: cheap to say per batch.
        c.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        # 1. One executemany, not the library's execute per event (a tenth of a batch's writing):
        # the batch holds the write lock, so its rows take the next rowids one after another
        # (tests/test_event_store_contract.py: numbered in the order given).
        if rows.events:
            c.executemany(self.insert_events_statement, rows.events)
            c.execute("SELECT last_insert_rowid()")
            last = c.fetchone()[0]
            returning: Sequence[int] = list(range(last - len(rows.events) + 1, last + 1))
        else:
            returning = []
        # 2. what the library's process recorder adds
        if (tracking := kwargs.get("tracking")) is not None:
            self._insert_tracking(c, tracking)
        # 3. and 4.
        if rows.ledger:
            c.executemany(f"INSERT INTO {self.ledger_table_name} (receipt_id, outcome) VALUES (?, ?)", rows.ledger)
        if rows.snapshots:
            c.executemany(f"INSERT INTO {self.snapshots_table_name} AS s (aggregate_id, version, state) "
                          "VALUES (?, ?, ?) ON CONFLICT (aggregate_id) DO UPDATE "
                          "SET version = excluded.version, state = excluded.state "
                          "WHERE excluded.version > s.version", rows.snapshots)
        return returning

    def snapshots(self, aggregate_ids: Collection[UUID]) -> dict[UUID, tuple[int, bytes]]:
        return {UUID(i): (version, bytes(state)) for i, version, state in lookup.sqlite_rows_for(
            self, f"SELECT aggregate_id, version, state FROM {self.snapshots_table_name} "
            "WHERE aggregate_id IN (SELECT value FROM json_each(?))", aggregate_ids)}

    def seen(self, receipt_ids: Collection[UUID]) -> dict[UUID, str]:
        return {UUID(rid): outcome for rid, outcome in lookup.sqlite_rows_for(
            self, f"SELECT receipt_id, outcome FROM {self.ledger_table_name} "
            "WHERE receipt_id IN (SELECT value FROM json_each(?))", receipt_ids)}

    def ledger(self) -> dict[UUID, str]:
        return {UUID(rid): outcome for rid, outcome in
                lookup.sqlite_rows(self, f"SELECT receipt_id, outcome FROM {self.ledger_table_name}", ())}
