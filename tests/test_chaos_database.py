"""The chaos run's crash of the database server (chaos.database): commits that did not wait for
the disk are lost, and the positions they held are reported as sent back."""

from __future__ import annotations

import psycopg
import pytest

from chaos.database import ChaosDatabase

pytestmark = pytest.mark.integration


@pytest.fixture
def crashable():
    db = ChaosDatabase(crashable=True)
    db.open()
    yield db
    db.close()


def test_a_crash_loses_the_commits_that_did_not_wait_for_the_disk(crashable):
    with psycopg.connect(crashable.url, autocommit=True) as setup:
        setup.execute("CREATE TABLE positions (name text PRIMARY KEY, position int NOT NULL)")
        setup.execute("INSERT INTO positions VALUES ('relay', 10), ('project', 7)")  # waits for the disk
    writer = psycopg.connect(crashable.url, autocommit=True)
    writer.execute("SET synchronous_commit = off")  # as the relay's and project's view stores

    def advance() -> None:  # what the relay and project do while ingest is held
        writer.execute("UPDATE positions SET position = position + 5")

    def positions() -> dict[str, int]:
        with psycopg.connect(crashable.url, autocommit=True) as reader:
            return dict(reader.execute("SELECT name, position FROM positions").fetchall())

    try:
        crash = crashable.crash_and_restart(advance, positions)
    finally:
        writer.close()
    assert crash["positions_sent_back"] == {"relay": 5, "project": 5}
    assert positions() == {"relay": 10, "project": 7}  # what waited for the disk survived
    assert crash["down_seconds"] >= 0


def test_a_database_on_the_shared_server_cannot_be_crashed():
    db = ChaosDatabase(crashable=False)
    db.open()
    try:
        with pytest.raises(RuntimeError, match="not a crashable database"):
            db.crash_and_restart(lambda: None, dict)
    finally:
        db.close()


def test_a_failure_before_the_crash_still_crashes_the_server_it_stopped_the_wal_writer_of(crashable):
    def fail() -> None:
        raise OSError("the harness could not hold ingest")

    with pytest.raises(OSError, match="could not hold ingest"):
        crashable.crash_and_restart(fail, dict)
    assert not crashable.server.running  # crashed, not left running with a stopped WAL writer
