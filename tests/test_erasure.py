"""Erasure in an immutable log: after `customer forget`, no readable copy of the person's data
is left anywhere the engine controls, while reports keep their totals and the chains verify."""

from __future__ import annotations

import base64
import json
import subprocess
from datetime import UTC, datetime

import pytest

from tests.backends import runtime_factory
from tests.events import ev, feedback, purchase
from tests.test_cli import lifecycle

ADA = {"name": "Ada Zyxwvut", "email": "ada.zyxwvut@example.org", "phone": "+44 7700 900123"}
BOB = {"name": "Bob Qwertyuiop", "email": "bob.qwertyuiop@example.org"}
REFUSED = ev(
    "crm.stage.change.requested", "shop:1", "2026-01-06T10:00:00Z",
    {"to_stage": "advocate", "reason": "manual_override", "note": "asked by ada.zyxwvut@example.org"})
LINES = [
    ev("crm.customer.registered", "shop:1", "2026-01-01T10:00:00Z", ADA),
    ev("crm.profile.updated", "shop:1", "2026-01-02T10:00:00Z", {"address": "12 Quillfeather Lane"}),
    purchase("shop:1", "2026-01-03T10:00:00Z", "o-1", amount="40.00"),
    purchase("shop:1", "2026-01-09T10:00:00Z", "o-2", amount="60.00"),
    feedback("shop:1", "2026-01-10T10:00:00Z", 10),
    ev("crm.feedback.submitted", "shop:1", "2026-01-11T10:00:00Z", {"score": 3, "comment": "Ada here, parcel late"}),
    REFUSED,
    ev("crm.customer.registered", "shop:2", "2026-01-01T11:00:00Z", BOB),
    purchase("shop:2", "2026-01-04T10:00:00Z", "o-3", amount="25.00"),
]
SECRETS = [ADA["name"], ADA["email"], ADA["phone"], "Quillfeather", "parcel late"]
KINDS = ("funnel", "retention", "cohorts", "advocacy", "rfm")


def _readable(blob: bytes, secret: str) -> bool:
    """Plain, or base64 of a whole line that carried it (how raw bytes used to be kept)."""
    return secret.encode() in blob or base64.b64encode(REFUSED) in blob


def _reports(tmp_path) -> dict:
    return {k: json.loads(lifecycle(tmp_path, "report", k, "--as-of", "2026-02-01", "--format", "json").stdout)
            for k in KINDS}


def test_forget_on_the_embedded_store(tmp_path):
    done = lifecycle(tmp_path, "ingest", "-", stdin=b"\n".join(LINES))
    assert done.returncode == 1  # the refused request
    before = _reports(tmp_path)
    shown = json.loads(lifecycle(tmp_path, "customer", "show", "shop:1", "--format", "json").stdout)[0]
    assert shown["email"] == ADA["email"]  # readable until forgotten

    done = lifecycle(tmp_path, "customer", "forget", "shop:1")
    assert done.returncode == 0, done.stderr

    dump = b"".join(p.read_bytes() for p in (tmp_path / "data").iterdir() if p.is_file())
    for secret in SECRETS:
        assert not _readable(dump, secret), secret
    # Bob's data is encrypted in the log and readable in the views: only Ada was forgotten.
    assert BOB["email"].encode() not in (tmp_path / "data" / "events.sqlite").read_bytes()
    bob = json.loads(lifecycle(tmp_path, "customer", "show", "shop:2", "--format", "json").stdout)[0]
    assert bob["email"] == BOB["email"]

    assert _reports(tmp_path) == before
    ada = json.loads(lifecycle(tmp_path, "customer", "show", "shop:1", "--format", "json").stdout)[0]
    assert ada["erased"] is True and ada["email"] is None and ada["orders"] == 2
    history = json.loads(lifecycle(tmp_path, "customer", "history", "shop:1", "--format", "json").stdout)
    assert any(row["event"] == "Erased" for row in history)
    assert lifecycle(tmp_path, "audit", "verify").returncode == 0
    assert lifecycle(tmp_path, "customer", "forget", "shop:404").returncode == 1


@pytest.mark.integration
def test_forget_on_postgres_leaves_nothing_in_a_full_dump(tmp_path, postgres_url):
    rt = runtime_factory("postgres", tmp_path, lambda: postgres_url)()
    try:
        rt.ingest_lines(LINES)
        rt.catch_up()
        from projections.catalog import build_report
        from datetime import date
        before = {k: build_report(k, rt.views, rt.engine.model, date(2026, 2, 1)) for k in KINDS}
        assert rt.forget("shop:1")
        rt.catch_up()
        after = {k: build_report(k, rt.views, rt.engine.model, date(2026, 2, 1)) for k in KINDS}
    finally:
        rt.close()
    dump = subprocess.run(["pg_dump", "--no-owner", postgres_url], capture_output=True, check=True).stdout
    assert b"customer_current" in dump and len(dump) > 10_000
    for secret in SECRETS:
        assert not _readable(dump, secret), secret
    assert after == before


def test_an_inbound_erasure_request_is_honoured_at_once(tmp_path):
    lines = [*LINES, ev("crm.customer.erasure.requested", "shop:1", "2026-01-20T10:00:00Z", {"reason": "GDPR art. 17"})]
    lifecycle(tmp_path, "ingest", "-", stdin=b"\n".join(lines))
    ada = json.loads(lifecycle(tmp_path, "customer", "show", "shop:1", "--format", "json").stdout)[0]
    assert ada["erased"] is True and ada["erasure_requested"] is True and ada["email"] is None
    dump = b"".join(p.read_bytes() for p in (tmp_path / "data").iterdir() if p.is_file())
    for secret in SECRETS:
        assert not _readable(dump, secret), secret
    assert lifecycle(tmp_path, "audit", "verify").returncode == 0


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def test_a_running_service_does_not_use_a_key_erased_by_another_process(tmp_path, request, kind):
    """A long-running process (ingest and views, keys warm in memory) while the CLI forgets the
    customer: the process must neither seal new data with the destroyed key (it would be lost)
    nor open anything with it."""
    factory = runtime_factory(kind, tmp_path, lambda: request.getfixturevalue("postgres_url"))
    service, cli = factory(), factory()
    try:
        service.ingest_lines(LINES)
        service.catch_up()
        assert service.views.rows("customer_current", where={"customer_key": "shop:1"})[0]["name"] == ADA["name"]

        assert cli.forget("shop:1")  # another process

        came_back = {"name": "Ada Returned", "email": "ada.returned@example.org"}
        after_erasure = datetime.now(UTC).isoformat()  # the erasure's business time is its moment
        service.ingest_lines([ev("crm.profile.updated", "shop:1", after_erasure, came_back)])
        service.catch_up()
        row = service.views.rows("customer_current", where={"customer_key": "shop:1"})[0]
        # What was known before the erasure is gone; what came after is readable, under a new key.
        assert row["erased"] is True
        assert (row["name"], row["email"]) == (came_back["name"], came_back["email"])
        assert row["phone"] is None  # only before the erasure
        cli.runner.rebuild()
        rebuilt = cli.views.rows("customer_current", where={"customer_key": "shop:1"})[0]
        assert (rebuilt["name"], rebuilt["phone"]) == (came_back["name"], None)
    finally:
        service.close()
        cli.close()


def test_the_embedded_key_ring_syncs_every_commit_and_the_views_need_not(tmp_path):
    """A key lost to a power cut after its events were committed would erase personal data: the
    key store is synced on every commit (FULL); the views can be rebuilt (NORMAL)."""
    from lifecycle.keys import open_key_store
    from projections.store import open_view_store

    keys, views = open_key_store(None, tmp_path), open_view_store(None, tmp_path)
    try:
        assert keys._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert views._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    finally:
        keys.close()
        views.close()


def test_the_key_ring_keeps_a_whole_step_of_keys_and_no_more_than_its_bound_besides():
    """Each batch re-reads its customers' keys in one query, then uses them: a step with more
    customers than the bound must not lose some of them again (one query per key), and keys of
    earlier steps are dropped oldest first."""
    from lifecycle.keys import KeyRing
    from projections.store import InMemoryViewStore

    class CountingStore(InMemoryViewStore):
        reads = 0

        def rows(self, *args, **kwargs):
            CountingStore.reads += 1
            return super().rows(*args, **kwargs)

    ring = KeyRing(CountingStore(), cached=3)
    step = [f"c{i}" for i in range(5)]
    ring.preload((), create=step)
    CountingStore.reads = 0
    assert all(ring.key(c) is not None for c in step)
    assert CountingStore.reads == 0  # all five kept, though the bound is three

    ring.refresh(["d1"])  # the next step: back to the bound, the oldest first
    assert list(ring._cache) == ["c3", "c4", "d1"]


def test_a_key_ring_seals_with_the_key_another_process_made_after_an_erasure():
    """Two rings on one key store, as two processes: one keeps a customer's cipher warm while
    the other erases the customer and then makes a new key for it. After its next read of the
    key, the first must seal with the new key (the old cipher would make data nobody can open)
    and, before that read, must not open anything once it has read that the key is gone."""
    from lifecycle.keys import KeyRing
    from projections.store import InMemoryViewStore

    store = InMemoryViewStore()
    warm, other = KeyRing(store), KeyRing(store)
    before = warm.seal("c1", "ada@example.org")
    assert other.reveal("c1", before) == "ada@example.org"

    other.destroy("c1")
    warm.refresh(["c1"])  # what every batch and projection step does first
    assert warm.reveal("c1", before) is None
    assert warm.key("c1") is None

    other.seal("c1", "x")  # the other process makes the customer a new key
    warm.refresh(["c1"])
    after = warm.seal("c1", "ada.returned@example.org")
    assert other.reveal("c1", after) == "ada.returned@example.org"
    assert warm.reveal("c1", before) is None  # the old token stays unreadable


def test_a_key_ring_drops_a_cipher_with_its_evicted_key():
    from lifecycle.keys import KeyRing
    from projections.store import InMemoryViewStore

    ring = KeyRing(InMemoryViewStore(), cached=2)
    for c in ("c1", "c2", "c3"):
        ring.seal(c, "v")
    ring.refresh(["c3"])
    assert set(ring._ciphers) <= set(ring._cache) == {"c2", "c3"}
