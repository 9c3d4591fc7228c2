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
