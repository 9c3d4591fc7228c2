"""Shared fixtures: PostgreSQL databases and the view stores under contract."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from projections.store import InMemoryViewStore, PostgresViewStore, SQLiteViewStore, ViewStore
from tests.pg import create_database, database_name, drop_database, postgres_server_url

VIEW_STORE_KINDS = ("memory", "sqlite", "postgres")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "integration: needs real infrastructure (PostgreSQL, a Kafka-protocol broker); "
        "deselect with -m 'not integration'",
    )


@pytest.fixture(scope="session")
def pg_server() -> str:
    """URL of a PostgreSQL server for this run (see tests/pg.py); fails, never skips, without one."""
    return postgres_server_url()


@pytest.fixture
def postgres_url(pg_server: str) -> Iterator[str]:
    """A fresh empty database for one test, dropped afterwards."""
    url = create_database(pg_server)
    try:
        yield url
    finally:
        drop_database(pg_server, database_name(url))


def _build_view_store(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> ViewStore:
    if kind == "memory":
        return InMemoryViewStore()
    if kind == "sqlite":
        return SQLiteViewStore(tmp_path / "views.sqlite")
    # Asked for lazily, so memory and sqlite runs need no PostgreSQL.
    return PostgresViewStore(request.getfixturevalue("postgres_url"))


@pytest.fixture(
    params=[
        pytest.param("memory"),
        pytest.param("sqlite"),
        pytest.param("postgres", marks=pytest.mark.integration),
    ]
)
def view_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ViewStore]:
    """Each view store implementation in turn, empty."""
    store = _build_view_store(request.param, request, tmp_path)
    try:
        yield store
    finally:
        store.close()


# --- Kafka: one development broker per session (tests/kafka.py, deploy/broker.py) -------------
# Tests that use these fixtures must be marked ``integration`` (kafka_bootstrap checks).

from deploy.broker import Broker  # noqa: E402
from lifecycle.config import Settings  # noqa: E402
from tests.kafka import KafkaUnavailable, start_session_broker, unique_topics  # noqa: E402


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[Broker]:
    """The session's Tansu broker on a free loopback port; fails, never skips, without one."""
    try:
        broker = start_session_broker()
    except KafkaUnavailable as e:
        pytest.fail(str(e), pytrace=False)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def kafka_bootstrap(kafka_broker: Broker, request: pytest.FixtureRequest) -> str:
    """``127.0.0.1:PORT`` of the session broker; topics and groups there outlive the test, so
    take fresh names (``kafka_settings`` or ``tests.kafka.unique_topics``)."""
    if request.node.get_closest_marker("integration") is None:
        pytest.fail(f"{request.node.nodeid} uses the Kafka broker: mark it @pytest.mark.integration",
                    pytrace=False)
    if not kafka_broker.running():
        pytest.fail(f"the session's Kafka broker died (exit {kafka_broker.process.returncode}):\n"
                    f"{kafka_broker.log_tail()}", pytrace=False)
    return kafka_broker.bootstrap


@pytest.fixture
def kafka_settings(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    """Settings for the session broker with this test's own topic names and group prefix,
    an embedded store in ``tmp_path`` and the consumer-group timeout that suits Tansu."""
    settings = Settings.from_env({
        "LIFECYCLE_DATA_DIR": str(tmp_path / "data"),
        "LIFECYCLE_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "LIFECYCLE_KAFKA_GROUP_TIMEOUT_MS": "2000",
    })
    return unique_topics(settings)
