"""The inbound ledger's PostgreSQL recorder (``lifecycle.ledger`` says what the ledger is).

A module of its own so that an embedded process never imports psycopg.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.postgres import PostgresProcessRecorder

from lifecycle import lookup
from lifecycle.ledger import _ADOPT_POSTGRES, RECEIPT_TOPIC, ROWS, SNAPSHOTS, _in_id_order


class PostgresLedgerRecorder(PostgresProcessRecorder):
    def __init__(self, datastore: Any, *, events_table_name: str = "stored_events",
                 tracking_table_name: str = "notification_tracking") -> None:
        super().__init__(datastore, events_table_name=events_table_name,
                         tracking_table_name=tracking_table_name)
        schema = lookup.quoted_identifier(datastore.schema)

        def beside_events(suffix: str) -> tuple[str, str]:
            """A table named after the events table's prefix: (name, qualified and quoted)."""
            name = events_table_name.removesuffix("_events") + suffix
            self.check_identifier_length(name)
            return name, f"{schema}.{lookup.quoted_identifier(name)}"

        self.ledger_table_name, self.ledger_table = beside_events("_inbound_ledger")
        _, self.snapshots_table = beside_events("_aggregate_snapshots")
        self.events_table = f"{schema}.{lookup.quoted_identifier(events_table_name)}"

        # The library's insert sends the batch as an array of a composite type, which psycopg
        # writes as text in Python, escaping every state's bytes (a quarter of ingest's CPU);
        # four arrays of plain types go in psycopg's binary array format. ``%b``, not ``%s``: for
        # a list ``%s`` chose the text format and escaped every state all the same (550 events:
        # 26 ms as text, 13 ms binary). The other arrays below are bound with ``%b`` for the
        # same reason.
        self.insert_columns_statement = (
            f"INSERT INTO {self.events_table} (originator_id, originator_version, topic, state) "
            f"SELECT * FROM unnest(%b::{datastore.originator_id_type}[], %b::bigint[], %b::text[], "
            "%b::bytea[]) RETURNING notification_id"
        )

    def create_table(self) -> None:
        super().create_table()
        with self.datastore.transaction(commit=True) as curs:
            curs.execute("SELECT to_regclass(%s) IS NULL AS new", (self.ledger_table,))
            new = curs.fetchone()["new"]
            curs.execute(f"CREATE TABLE IF NOT EXISTS {self.ledger_table} "
                         "(receipt_id uuid PRIMARY KEY, outcome text NOT NULL)")
            if new:  # same transaction as the CREATE: adopted once, or not at all
                curs.execute(_ADOPT_POSTGRES.format(ledger=self.ledger_table, events=self.events_table),
                             (RECEIPT_TOPIC,))
            curs.execute(f"CREATE TABLE IF NOT EXISTS {self.snapshots_table} "
                         "(aggregate_id uuid PRIMARY KEY, version bigint NOT NULL, state bytea NOT NULL)")

    def _insert_events(self, curs: Any, stored_events: Sequence[Any], **kwargs: Any) -> None:
        if rows := kwargs.get(ROWS):
            rows = _in_id_order(rows)
            curs.execute(f"INSERT INTO {self.ledger_table} (receipt_id, outcome) "
                         "SELECT * FROM unnest(%b::uuid[], %b::text[])",
                         ([rid for rid, _ in rows], [outcome for _, outcome in rows]), prepare=True)
        if snapshots := kwargs.get(SNAPSHOTS):
            snapshots = _in_id_order(snapshots)
            curs.execute(f"INSERT INTO {self.snapshots_table} AS s (aggregate_id, version, state) "
                         "SELECT * FROM unnest(%b::uuid[], %b::bigint[], %b::bytea[]) "
                         "ON CONFLICT (aggregate_id) DO UPDATE SET version = excluded.version, "
                         "state = excluded.state WHERE excluded.version > s.version",
                         ([i for i, _, _ in snapshots], [v for _, v, _ in snapshots],
                          [state for _, _, state in snapshots]), prepare=True)
        super()._insert_events(curs, stored_events, **kwargs)

    def _insert_stored_events(self, curs: Any, stored_events: Sequence[Any], **kwargs: Any) -> None:
        """The library's steps (lock the table so ids follow commit order, notify listeners,
        insert returning the notification ids, which it then fetches), with the binary insert."""
        self._lock_table(curs)
        self._notify_channel(curs)
        curs.execute(self.insert_columns_statement, (
            [e.originator_id for e in stored_events], [e.originator_version for e in stored_events],
            [e.topic for e in stored_events], [e.state for e in stored_events],
        ), prepare=True, binary=True)

    def seen(self, receipt_ids: Collection[UUID]) -> dict[UUID, str]:
        return dict(lookup.postgres_rows_for(
            self, f"SELECT receipt_id, outcome FROM {self.ledger_table} WHERE receipt_id = ANY(%b)", receipt_ids))

    def ledger(self) -> dict[UUID, str]:
        return dict(lookup.postgres_rows(self, f"SELECT receipt_id, outcome FROM {self.ledger_table}", ()))

    def snapshots(self, aggregate_ids: Collection[UUID]) -> dict[UUID, tuple[int, bytes]]:
        return {i: (version, bytes(state)) for i, version, state in lookup.postgres_rows_for(
            self, f"SELECT aggregate_id, version, state FROM {self.snapshots_table} "
            "WHERE aggregate_id = ANY(%b)", aggregate_ids)}
