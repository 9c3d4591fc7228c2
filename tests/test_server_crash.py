"""A crash of the PostgreSQL server under the Kafka path: what was lost is done again, the same.

The relay and ``project`` commit their view-store transactions without waiting for the disk
(``VIEWS_SYNCHRONOUS_COMMIT = False``): everything they write there is made from a log they read
again from the position written in the same transaction. This test makes the server lose such
commits for certain and checks that claim: a server of its own (``tests.pg.EmbeddedServer``)
whose WAL writer is stopped, so that the relay's and ``project``'s last commits stay in its memory
(ingest's commits wait for the disk, and write everything before them); then SIGKILL of every
server process, and a restart that recovers from the log on disk.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime

import psycopg
import pytest

from lifecycle.audit import verify
from lifecycle.errors import StoreError
from lifecycle.simulate import simulate
from tests.backends import runtime_factory
from tests.kafka_path import (
    SERVICES,
    ServiceProcesses,
    embedded_snapshot,
    kafka_settings_env,
    open_runtime,
    publish,
    service_env,
    snapshot,
    view_store_positions,
    wait_caught_up,
)
from tests.pg import LOG_WRITTEN_BY_COMMITS_ONLY, EmbeddedServer, create_database

pytestmark = pytest.mark.integration
AS_OF = date(2025, 1, 1)


@pytest.fixture(scope="module")
def lines() -> list[bytes]:
    return simulate(customers=60, seed=5, start=date(2024, 1, 1), days=366)


@pytest.fixture(scope="module")
def embedded(lines, tmp_path_factory) -> dict:
    return embedded_snapshot(lines, tmp_path_factory.mktemp("embedded"), AS_OF)


@pytest.fixture
def crashable_server():
    server = EmbeddedServer(LOG_WRITTEN_BY_COMMITS_ONLY)
    server.start()
    yield server
    server.close()


def _end_sessions(database_url: str) -> int:
    """End every other session on the database, as a restart of the server would."""
    with psycopg.connect(database_url, autocommit=True) as admin:
        return admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                             "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchone()[0]


def _failures(log: str) -> list[datetime]:
    """When a service's step failed on the database (its log's timestamps)."""
    return [datetime.fromisoformat(json.loads(line)["timestamp"])
            for line in log.splitlines() if '"database_unavailable"' in line]


def test_commits_a_server_crash_lost_are_done_again_with_the_same_views_and_seals(
        crashable_server, kafka_bootstrap, tmp_path, lines, embedded):
    env = kafka_settings_env(create_database(crashable_server.url), kafka_bootstrap, uuid.uuid4().hex[:10])
    services = ServiceProcesses(service_env(env), tmp_path)
    rt = open_runtime(env)
    try:
        services.start_all()
        half = len(lines) // 2
        publish(kafka_bootstrap, env["LIFECYCLE_TOPIC_INBOUND"], lines[:half])
        wait_caught_up(rt, kafka_bootstrap, services)

        # 1. the rest goes all the way through while the WAL writer is stopped
        crashable_server.pause_wal_writer()
        publish(kafka_bootstrap, env["LIFECYCLE_TOPIC_INBOUND"], lines[half:])
        wait_caught_up(rt, kafka_bootstrap, services)
        before = view_store_positions(rt)
        rt.close()
        rt = None

        # 2. the crash, and a restart on the same port (the services keep their URL)
        crashable_server.crash()
        crashable_server.start()
        back = datetime.now(UTC)
        rt = open_runtime(env)
        after = view_store_positions(rt)
        lost = [name for name in before if after[name] < before[name]]
        assert lost, f"the crash lost no commit ({before} -> {after}): the test did not test anything"

        # 3. the services saw their connections fail, read their positions again, and redid the rest
        wait_caught_up(rt, kafka_bootstrap, services)
        assert snapshot(rt, AS_OF) == embedded
        verdict = verify(rt.engine.recorder, rt.views)
        stored = len(rt.engine.recorder.select_notifications(start=1, limit=10**9))
        assert verdict.ok and verdict.unsealed == 0 and verdict.checked == stored > 0, verdict.broken
        # Each connection a service held broke in the crash: after its first failure it replaced them
        # all (``Runtime.replace_broken_connections``), instead of failing once for each, with a
        # longer wait after every failure (the relay failed six times after the restart before).
        failures = {name: _failures(services.tail(name, lines=100_000)) for name in SERVICES}
        assert any(failures.values()), "no service saw the crash"
        assert all(sum(at > back for at in times) <= 2 for times in failures.values()), (back, failures)
        assert services.stop_all() == {name: 0 for name in SERVICES}
    finally:
        services.stop_all()
        if rt is not None:
            rt.close()


def test_after_a_failure_every_broken_connection_is_replaced_at_once(tmp_path, postgres_url, lines):
    """What the services do after a database failure (``Runtime.replace_broken_connections``): the
    event store's pool holds several connections, and a restart of the server breaks them all."""
    rt = runtime_factory("postgres", tmp_path, lambda: postgres_url)()
    try:
        batches = [lines[i:i + 100] for i in range(0, 600, 100)]
        for batch in batches[:3]:  # the pool's connections, the views' and the keys' in use
            rt.ingest_lines(batch)
        rt.catch_up()
        assert _end_sessions(postgres_url) >= 3
        with pytest.raises(StoreError):
            rt.ingest_lines(batches[3])  # a broken pooled connection: failed, nothing written

        rt.replace_broken_connections()
        for batch in batches[3:]:  # more than one pooled connection, without a failure
            rt.ingest_lines(batch)
        rt.catch_up()  # the views' connections and the keys' (to reveal) as well
        assert len(rt.views.rows("customer_current")) > 0
    finally:
        rt.close()
