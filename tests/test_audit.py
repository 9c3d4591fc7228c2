"""Tamper evidence: edit the database behind the engine's back, and `audit verify` says where."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest

from lifecycle.audit import AUDIT, AUDIT_CHAIN, verify
from projections.store import ViewChange
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


def _lose_seals_after(store, position: int) -> None:
    """What a server crash does to a sealer's asynchronous commits after ``position``: its seals and
    its position are as they were at ``position`` (the events themselves were committed durably)."""
    rows = store.rows(AUDIT_CHAIN.name)
    lost = {r["originator_id"] for r in rows if r["notification_id"] > position}
    kept = {a: [r for r in rows if r["originator_id"] == a and r["notification_id"] <= position] for a in lost}
    store.write(ViewChange(consumer=AUDIT, position=position, replace_entities={AUDIT_CHAIN.name: kept}))


@pytest.mark.parametrize("backend", ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def test_pages_sealed_again_after_their_commits_were_lost_chain_as_before(backend, tmp_path, request):
    """The relay seals with asynchronous commits (`RelayService.VIEWS_SYNCHRONOUS_COMMIT`): a server
    crash may lose its last pages, and the same process then seals them again from the older
    position, with the heads it cached while sealing the lost ones."""
    rt = runtime_factory(backend, tmp_path, lambda: request.getfixturevalue("postgres_url"))()
    try:
        rt.ingest_lines(LINES[:2])
        rt.sealer.seal()
        kept = rt.sealer.position()
        # New customers, later versions of a sealed one, and receipts (each its aggregate's version 1).
        rt.ingest_lines([*LINES[2:], b"not json", interaction("shop:3", "2026-01-10T10:00:00Z")])
        assert rt.sealer.seal() > 0
        before = {r["notification_id"]: r for r in rt.views.rows(AUDIT_CHAIN.name)}

        _lose_seals_after(rt.views, kept)
        assert rt.sealer.position() == kept and len(rt.views.rows(AUDIT_CHAIN.name)) < len(before)
        rt.sealer.seal()

        assert {r["notification_id"]: r for r in rt.views.rows(AUDIT_CHAIN.name)} == before
        verdict = verify(rt.engine.recorder, rt.views)
        assert verdict.ok and verdict.unsealed == 0, verdict.broken
    finally:
        rt.close()
