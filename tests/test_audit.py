"""Tamper evidence: edit the database behind the engine's back, and `audit verify` says where."""

from __future__ import annotations

import contextlib
import sqlite3
from typing import Any

import psycopg
import pytest

from lifecycle.audit import (
    AUDIT,
    AUDIT_CHAIN,
    AUDIT_SEALS,
    GENESIS,
    Seal,
    Sealer,
    event_hash,
    link,
    seals_of,
    verify,
)
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
    kept = [r for r in store.rows(AUDIT_SEALS.name) if r["last_id"] <= position]
    store.write(ViewChange(consumer=AUDIT, position=position, replace_tables={AUDIT_SEALS.name: kept}))


@pytest.mark.parametrize("backend", ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def test_pages_sealed_again_after_their_commits_were_lost_chain_as_before(backend, tmp_path, request):
    """The relay seals with asynchronous commits (`RelayService.VIEWS_SYNCHRONOUS_COMMIT`): a server
    crash may lose its last pages, and the same process then seals them again from the older
    position, from the head it read back."""
    rt = runtime_factory(backend, tmp_path, lambda: request.getfixturevalue("postgres_url"))()
    try:
        rt.ingest_lines(LINES[:2])
        rt.sealer.seal()
        kept = rt.sealer.position()
        # New customers, later versions of a sealed one, and receipts (each its aggregate's version 1).
        rt.ingest_lines([*LINES[2:], b"not json", interaction("shop:3", "2026-01-10T10:00:00Z")])
        assert rt.sealer.seal() > 0
        before = {r["last_id"]: r for r in rt.views.rows(AUDIT_SEALS.name)}

        _lose_seals_after(rt.views, kept)
        assert rt.sealer.position() == kept and len(rt.views.rows(AUDIT_SEALS.name)) < len(before)
        rt.sealer.seal()

        assert {r["last_id"]: r for r in rt.views.rows(AUDIT_SEALS.name)} == before
        verdict = verify(rt.engine.recorder, rt.views)
        assert verdict.ok and verdict.unsealed == 0, verdict.broken
    finally:
        rt.close()


def _sealed_runtime(backend, tmp_path, request):
    rt = runtime_factory(backend, tmp_path, lambda: request.getfixturevalue("postgres_url"))()
    rt.ingest_lines([*LINES, b"not json"])
    rt.catch_up()
    return rt


def _chain_of(recorder) -> list[tuple[Any, str, str]]:
    """Each stored event, its hash and the log chain after it, computed here from the event store."""
    chained, head = [], GENESIS
    for n in recorder.select_notifications(start=1, limit=1000):
        digest = event_hash(n.originator_id, n.originator_version, n.topic, n.state)
        head = link(head, digest)
        chained.append((n, digest, head))
    return chained


def test_a_page_of_events_is_sealed_in_one_row_on_the_chain_as_before(tmp_path, request):
    rt = _sealed_runtime("sqlite", tmp_path, request)
    try:
        chained = _chain_of(rt.engine.recorder)
        [row] = rt.views.rows(AUDIT_SEALS.name)
        assert (row["first_id"], row["last_id"]) == (chained[0][0].id, chained[-1][0].id)
        assert seals_of(row) == [Seal(n.id, str(n.originator_id), n.originator_version, digest)
                                 for n, digest, _ in chained]
        # The head is the one the sealer of a row per event wrote, so a head recorded then still compares.
        assert row["log_hash"] == chained[-1][2] == verify(rt.engine.recorder, rt.views).head
    finally:
        rt.close()


def _page_rewritten(store, rewrite) -> None:
    [row] = store.rows(AUDIT_SEALS.name)
    lines = row["seals"].split("\n")
    store.write(ViewChange(consumer=AUDIT, position=row["last_id"],
                           replace_tables={AUDIT_SEALS.name: [{**row, "seals": "\n".join(rewrite(lines))}]}))


def test_rewritten_seals_are_named(tmp_path, request):
    rt = _sealed_runtime("sqlite", tmp_path, request)
    try:
        _page_rewritten(rt.views, lambda lines: [*lines[:2], lines[2][:-64] + "0" * 64, *lines[3:]])
        broken = verify(rt.engine.recorder, rt.views).broken
        assert any("chain does not end at their page's head (rewritten)" in b for b in broken), broken
        assert any("altered" in b for b in broken), broken
    finally:
        rt.close()


def test_an_event_left_out_of_the_seals_is_named_as_added(tmp_path, request):
    rt = _sealed_runtime("sqlite", tmp_path, request)
    try:
        left_out = int(rt.views.rows(AUDIT_SEALS.name)[0]["seals"].split("\n")[2].split(" ")[0])
        _page_rewritten(rt.views, lambda lines: [*lines[:2], *lines[3:]])
        broken = verify(rt.engine.recorder, rt.views).broken
        assert any(b.startswith(f"event {left_out} ") and "(added)" in b for b in broken), broken
        assert any("(rewritten)" in b for b in broken), broken
    finally:
        rt.close()


def _sealed_the_old_way(store, chained, rewrite=lambda rows: rows) -> str:
    """``audit_chain`` as the sealer wrote it until 2026-12-05 (a row per event, with a chain per
    aggregate too), through ``rewrite``; the head it recorded last."""
    rows, heads = [], {}
    for n, digest, head in chained:
        aggregate = str(n.originator_id)
        heads[aggregate] = link(heads.get(aggregate, GENESIS), digest)
        rows.append({"notification_id": n.id, "originator_id": aggregate, "originator_version": n.originator_version,
                     "topic": n.topic, "event_hash": digest, "aggregate_hash": heads[aggregate], "log_hash": head})
    rows = rewrite(rows)
    store.create([AUDIT_CHAIN])
    store.write(ViewChange(consumer=AUDIT, position=rows[-1]["notification_id"], append={AUDIT_CHAIN.name: rows}))
    return rows[-1]["log_hash"]


def _resealed(rows, at, digest):
    """The rows with row ``at``'s event hash replaced and every later log hash chained on it:
    seals a forger rewrote consistently."""
    head = rows[at - 1]["log_hash"] if at else GENESIS
    out = rows[:at]
    for i, row in enumerate(rows[at:], start=at):
        event = digest if i == at else row["event_hash"]
        head = link(head, event)
        out.append({**row, "event_hash": event, "log_hash": head})
    return out


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
@pytest.mark.parametrize("tampered", ["none", "event hash", "log hash"])
def test_a_store_sealed_a_row_per_event_is_converted_keeping_its_hashes(backend, tampered, tmp_path, request):
    opened = runtime_factory(backend, tmp_path, lambda: request.getfixturevalue("postgres_url"))
    rt = opened()
    try:
        rt.ingest_lines([*LINES, b"not json"])  # not sealed: no pages
        chained = _chain_of(rt.engine.recorder)
        rewrite = {
            "none": lambda rows: rows,
            # What the store holds for event 2 is not what was sealed, and its seals agree with each other.
            "event hash": lambda rows: _resealed(rows, 1, "f" * 64),
            "log hash": lambda rows: [*rows[:2], {**rows[2], "log_hash": "e" * 64}, *rows[3:]],
        }[tampered]
        head = _sealed_the_old_way(rt.views, chained, rewrite)
    finally:
        rt.close()

    rt = opened()  # converts
    try:
        rows = rt.views.rows(AUDIT_SEALS.name)
        assert sum(len(seals_of(r)) for r in rows) == len(chained)
        rt.views.create([AUDIT_CHAIN])
        assert rt.views.rows(AUDIT_CHAIN.name) == []  # dropped, and made again here empty
        verdict = verify(rt.engine.recorder, rt.views)
        assert verdict.checked == len(chained) and verdict.unsealed == 0 and verdict.head == head
        if tampered == "none":
            assert verdict.ok, verdict.broken
            assert head == chained[-1][2]
        elif tampered == "event hash":
            assert verdict.broken == [f"event {chained[1][0].id} ({chained[1][0].topic.rpartition(':')[2]} of "
                                      f"{chained[1][0].originator_id}, version 1): stored content differs from "
                                      "when it was sealed (altered)"]
        else:
            # Named where the rewritten hash ends a page, and where the next page chains on it (the
            # old verify named that event and the next one too).
            assert all("(rewritten)" in b for b in verdict.broken) and len(verdict.broken) == 2, verdict.broken
            assert verdict.broken[0].startswith(f"the seals of events {chained[0][0].id}-{chained[2][0].id} ")
        rt.ingest_lines([interaction("shop:4", "2026-01-11T10:00:00Z")])
        rt.catch_up()  # sealed on from the converted head
        assert verify(rt.engine.recorder, rt.views).broken == verdict.broken
    finally:
        rt.close()


@pytest.mark.integration
def test_seals_are_stored_on_postgres_without_compression(tmp_path, postgres_url):
    rt = runtime_factory("postgres", tmp_path, lambda: postgres_url)()
    try:
        with psycopg.connect(postgres_url) as conn:
            storage = conn.execute("SELECT attstorage FROM pg_attribute WHERE attrelid = "
                                   "'lifecycle_internal.audit_seals'::regclass AND attname = 'seals'").fetchone()
        assert storage == ("e",)
    finally:
        rt.close()


def test_the_sealer_takes_the_exclusive_lock_only_to_convert(tmp_path, request):
    opened = runtime_factory("sqlite", tmp_path, lambda: request.getfixturevalue("postgres_url"))
    rt = opened()
    try:
        rt.ingest_lines([*LINES, b"not json"])
        taken = []

        def exclusive():
            taken.append(1)
            return contextlib.nullcontext()

        Sealer(rt.engine.recorder, rt.views, exclusive=exclusive)  # nothing sealed: nothing to convert
        assert taken == []
        _sealed_the_old_way(rt.views, _chain_of(rt.engine.recorder))
        Sealer(rt.engine.recorder, rt.views, exclusive=exclusive)
        assert taken == [1] and verify(rt.engine.recorder, rt.views).ok
        Sealer(rt.engine.recorder, rt.views, exclusive=exclusive)  # converted already
        assert taken == [1]
    finally:
        rt.close()
