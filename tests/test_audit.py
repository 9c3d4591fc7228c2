"""Tamper evidence: edit the database behind the engine's back, and `audit verify` says where."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest

from lifecycle.audit import verify
from tests.backends import runtime_factory
from tests.events import interaction, purchase
from tests.test_cli import lifecycle

LINES = [
    interaction("shop:1", "2026-01-01T10:00:00Z"),
    purchase("shop:1", "2026-01-02T10:00:00Z", "o-1", amount="10.00"),
    purchase("shop:2", "2026-01-03T10:00:00Z", "o-2", amount="20.00"),
    purchase("shop:1", "2026-01-09T10:00:00Z", "o-3", amount="30.00"),
]


def _embedded(tmp_path):
    done = lifecycle(tmp_path, "ingest", "-", stdin=b"\n".join(LINES))
    assert done.returncode == 0, done.stderr
    return sqlite3.connect(tmp_path / "data" / "events.sqlite")


def _purchase_row(db, amount: str):
    rows = db.execute("SELECT rowid, originator_version, state FROM stored_events").fetchall()
    return next(r for r in rows if f'"{amount}"'.encode() in bytes(r[2]))


def test_an_untouched_log_verifies(tmp_path):
    _embedded(tmp_path)
    done = lifecycle(tmp_path, "audit", "verify")
    assert done.returncode == 0, done.stderr
    assert b"intact:" in done.stdout and b"0 not yet sealed" in done.stdout


def test_an_altered_amount_is_named(tmp_path):
    db = _embedded(tmp_path)
    rowid, version, state = _purchase_row(db, "20.00")
    db.execute("UPDATE stored_events SET state = ? WHERE rowid = ?", (bytes(state).replace(b'"20.00"', b'"2.00"'), rowid))
    db.commit()
    done = lifecycle(tmp_path, "audit", "verify")
    assert done.returncode == 1
    first = done.stderr.decode().splitlines()[0]
    assert "PurchaseRecorded of customer shop:2, version" in first and "altered" in first


def test_a_removed_event_is_named(tmp_path):
    db = _embedded(tmp_path)
    rowid, version, _ = _purchase_row(db, "10.00")
    db.execute("DELETE FROM stored_events WHERE rowid = ?", (rowid,))
    db.commit()
    done = lifecycle(tmp_path, "audit", "verify")
    assert done.returncode == 1
    first = done.stderr.decode().splitlines()[0]
    assert f"version {version} of customer shop:1" in first and "removed" in first


def test_reordered_events_are_caught(tmp_path):
    db = _embedded(tmp_path)
    a = _purchase_row(db, "10.00")
    b = _purchase_row(db, "30.00")
    db.execute("UPDATE stored_events SET state = ? WHERE rowid = ?", (bytes(b[2]), a[0]))
    db.execute("UPDATE stored_events SET state = ? WHERE rowid = ?", (bytes(a[2]), b[0]))
    db.commit()
    done = lifecycle(tmp_path, "audit", "verify")
    assert done.returncode == 1 and b"customer shop:1" in done.stderr


@pytest.mark.integration
def test_tampering_on_postgres_is_caught(tmp_path, postgres_url):
    rt = runtime_factory("postgres", tmp_path, lambda: postgres_url)()
    try:
        rt.ingest_lines(LINES)
        rt.catch_up()
        assert verify(rt.engine.recorder, rt.views).ok
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            table = conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
                "AND table_name LIKE '%events'").fetchone()[0]
            changed = conn.execute(
                f"UPDATE {table} SET state = convert_to(replace(convert_from(state, 'UTF8'), "
                "'\"30.00\"', '\"3.00\"'), 'UTF8') WHERE convert_from(state, 'UTF8') LIKE '%\"30.00\"%'")
            assert changed.rowcount == 1
        verdict = verify(rt.engine.recorder, rt.views)
        assert not verdict.ok and "altered" in verdict.broken[0]
    finally:
        rt.close()
