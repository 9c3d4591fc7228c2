"""The read-only analyst role: reads every view in `reporting`, writes nothing anywhere, and cannot
read the event store or the engine's bookkeeping. Proved with a real login connection."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import errors, sql

from deploy.analyst import SQL_FILE, analyst_role_script, grant_analyst_role
from tests.backends import runtime_factory
from tests.events import feedback, interaction, purchase, request

pytestmark = pytest.mark.integration

LINES = [
    interaction("shop:1", "2025-01-01T10:00:00Z"),
    purchase("shop:1", "2025-01-02T10:00:00Z", "o-1"),
    purchase("shop:1", "2025-01-09T10:00:00Z", "o-2"),
    feedback("shop:1", "2025-01-10T10:00:00Z", 10),
    interaction("shop:2", "2025-01-03T10:00:00Z"),
    request("shop:2", "2025-01-04T10:00:00Z", "advocate"),  # refused: a rejection row
]
SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")


def as_user(url: str, user: str, password: str = "any") -> str:
    """The same database, logging in as ``user`` (trust auth on loopback accepts any password)."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    return parts._replace(netloc=f"{user}:{password}@{host}:{parts.port or 5432}").geturl()


def tables(conn: psycopg.Connection, where: str) -> list[tuple[str, str]]:
    return conn.execute(
        "SELECT table_schema, table_name FROM information_schema.tables"
        f" WHERE table_type = 'BASE TABLE' AND {where} ORDER BY 1, 2"
    ).fetchall()


def qualified(schema: str, table: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))


@pytest.fixture
def roles(postgres_url: str) -> Iterator[tuple[str, str]]:
    """Unique (group, login) role names for this run; dropped afterwards (roles are cluster-wide)."""
    suffix = uuid.uuid4().hex[:10]
    group, login = f"lifecycle_analyst_t{suffix}", f"lifecycle_alice_t{suffix}"
    try:
        yield group, login
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            for role in (login, group):
                if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                    conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                    conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.fixture
def views_built(postgres_url: str, tmp_path) -> str:
    """The engine and projections run on the database: events, views and bookkeeping exist."""
    rt = runtime_factory("postgres", tmp_path, lambda: postgres_url)()
    try:
        rt.ingest_lines(LINES)
        rt.runner.catch_up()
    finally:
        rt.close()
    return postgres_url


def expect_denied(conn: psycopg.Connection, statement: sql.Composable | str) -> None:
    with pytest.raises(errors.InsufficientPrivilege):
        with conn.transaction():
            conn.execute(statement)


def test_the_analyst_reads_reporting_and_nothing_else(views_built, roles, tmp_path):
    url = views_built
    group, login = roles
    grant_analyst_role(url, group, login=login, password="secret")
    grant_analyst_role(url, group, login=login, password="secret")  # idempotent

    with psycopg.connect(url, autocommit=True) as admin:
        reporting = tables(admin, "table_schema = 'reporting'")
        elsewhere = tables(admin, f"table_schema NOT IN {SYSTEM_SCHEMAS!r} AND table_schema <> 'reporting'")
        first_column = {(s, t): c for s, t, c in admin.execute(
            "SELECT table_schema, table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'reporting' AND ordinal_position = 1")}
        attributes = admin.execute(
            "SELECT rolcanlogin, rolsuper FROM pg_roles WHERE rolname = %s", (group,)).fetchone()
    assert attributes == (False, False)  # a NOLOGIN group
    names = {t for _, t in reporting}
    assert {"customer_current", "stage_history", "customer_purchases", "pipeline_funnel", "rejections"} <= names
    event_store = [t for t in elsewhere if t[0] == "public"]
    internal = [t for t in elsewhere if t[0] == "lifecycle_internal"]
    assert any("events" in t for _, t in event_store), event_store  # eventsourcing's tables
    assert ("lifecycle_internal", "view_positions") in internal

    with psycopg.connect(as_user(url, login, "secret"), autocommit=True) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (login,)
        assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
        # Reads every view, by its unqualified name too (search_path = reporting).
        for schema, table in reporting:
            conn.execute(sql.SQL("SELECT * FROM {}").format(qualified(schema, table))).fetchall()
        assert conn.execute("SELECT count(*) FROM customer_current").fetchone() == (2,)
        assert conn.execute("SELECT count(*) FROM rejections").fetchone()[0] >= 1

        # The session is read-only by default...
        with pytest.raises(errors.ReadOnlySqlTransaction):
            conn.execute("DELETE FROM reporting.customer_current")
        # ...and without that setting (any user may turn it off) the privileges still refuse.
        conn.execute("SET default_transaction_read_only = off")
        for schema, table in reporting:
            name = qualified(schema, table)
            expect_denied(conn, sql.SQL("INSERT INTO {} DEFAULT VALUES").format(name))
            column = sql.Identifier(first_column[(schema, table)])
            expect_denied(conn, sql.SQL("UPDATE {} SET {} = {}").format(name, column, column))
            expect_denied(conn, sql.SQL("DELETE FROM {}").format(name))
            expect_denied(conn, sql.SQL("TRUNCATE {}").format(name))
        expect_denied(conn, "UPDATE reporting.stage_history SET stage = 'advocate'")
        expect_denied(conn, "ALTER TABLE reporting.customer_current ADD COLUMN x int")
        expect_denied(conn, "DROP TABLE reporting.customer_current")
        expect_denied(conn, "CREATE TABLE reporting.mine (i int)")
        expect_denied(conn, "CREATE TABLE public.mine (i int)")
        expect_denied(conn, "CREATE TABLE mine (i int)")
        expect_denied(conn, "CREATE TEMPORARY TABLE mine (i int)")
        expect_denied(conn, "CREATE SCHEMA mine")
        expect_denied(conn, "CREATE VIEW reporting.mine AS SELECT 1")

        # Neither the event store nor the bookkeeping (nor anything else outside reporting).
        for schema, table in elsewhere:
            expect_denied(conn, sql.SQL("SELECT * FROM {} LIMIT 1").format(qualified(schema, table)))
            expect_denied(conn, sql.SQL("DELETE FROM {}").format(qualified(schema, table)))
        expect_denied(conn, "SET ROLE postgres")

    # The engine still works after the grant, and a view it creates later (a rebuild drops and
    # re-creates them) is readable at once: default privileges.
    rt = runtime_factory("postgres", tmp_path, lambda: url)()
    try:
        rt.ingest_lines([purchase("shop:3", "2025-01-11T10:00:00Z", "o-3")])
        rt.runner.catch_up()
    finally:
        rt.close()
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("DROP TABLE reporting.customer_current")
        admin.execute("CREATE TABLE reporting.customer_current (customer_id text)")
        admin.execute("INSERT INTO reporting.customer_current VALUES ('x')")
    with psycopg.connect(as_user(url, login), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM reporting.customer_current").fetchone() == (1,)


def test_the_group_role_itself_cannot_log_in_and_a_privileged_login_is_refused(views_built, roles):
    url = views_built
    group, login = roles
    grant_analyst_role(url, group)
    with pytest.raises(psycopg.OperationalError, match="not permitted to log in"):
        psycopg.connect(as_user(url, group)).close()
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEDB").format(sql.Identifier(login)))
    with pytest.raises(ValueError, match="privileged attributes"):
        grant_analyst_role(url, group, login=login)


def test_the_sql_file_runs_in_psql_too(postgres_url, roles):
    """The file is for psql first: variables with defaults, ON_ERROR_STOP, run twice."""
    group, _ = roles
    if shutil.which("psql") is None:
        pytest.skip("psql (the PostgreSQL client) is not installed; the psycopg path is tested above")
    command = ["psql", postgres_url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", f"analyst_role={group}",
               "-f", str(SQL_FILE)]
    for _ in range(2):
        done = subprocess.run(command, capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr.decode()
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        assert admin.execute(
            "SELECT has_schema_privilege(%s, 'reporting', 'USAGE'),"
            " has_schema_privilege(%s, 'reporting', 'CREATE'),"
            " has_schema_privilege(%s, 'lifecycle_internal', 'USAGE'),"
            " has_database_privilege(%s, current_database(), 'TEMPORARY')",
            (group,) * 4,
        ).fetchone() == (True, False, False, False)
    # The psycopg path runs the same statements, variables filled in.
    script = analyst_role_script(group)
    assert "\\if" not in script and f"'{group}'" in script


def test_the_cli_grants_the_role_and_refuses_without_postgres(views_built, roles, tmp_path):
    from urllib.parse import urlsplit, urlunsplit

    from tests.test_cli import lifecycle

    group, login = roles
    done = lifecycle(tmp_path, "analysts", "grant", "--role", group, "--login", login,
                     LIFECYCLE_DATABASE_URL=views_built, LIFECYCLE_ANALYST_PASSWORD="s3cret")
    assert done.returncode == 0, done.stderr
    parts = urlsplit(views_built)
    as_login = urlunsplit(parts._replace(netloc=f"{login}:s3cret@{parts.hostname}:{parts.port}"))
    with psycopg.connect(as_login, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM reporting.customer_current").fetchone()[0] > 0
        expect_denied(conn, "SELECT * FROM lifecycle_internal.view_positions")

    embedded = lifecycle(tmp_path, "analysts", "grant")
    assert embedded.returncode == 2 and b"PostgreSQL feature" in embedded.stderr
    unreachable = lifecycle(tmp_path, "analysts", "grant",
                            LIFECYCLE_DATABASE_URL="postgresql://postgres@127.0.0.1:1/nothing")
    assert unreachable.returncode == 2 and b"cannot grant the analyst role" in unreachable.stderr
    assert b"Traceback" not in unreachable.stderr
