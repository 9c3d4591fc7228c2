"""One writer at a time on an SQLite event store, in turn, without SQLite's busy polling.

SQLite lets one transaction write at a time; a writer that finds the lock taken polls for it,
sleeping 1, 2, 5, 10, 15, 20, 25... ms between tries (its default busy handler). The workers of
a parallel ingest write a batch every few milliseconds each, so they met the lock often and
slept past its release: cores idle while work waited. ``WriterQueue`` makes the store's writers
in this engine wait for each other on an ``flock`` of a file beside the store instead: the
kernel wakes the next writer the moment the lock is released.

It is a courtesy among our own writers, not the store's safety: anything else that writes
(another tool, an older version) still takes SQLite's lock, which remains the guarantee.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path
from types import TracebackType

from eventsourcing.sqlite import SQLiteConnectionPool


class WriterQueue:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._fd: int | None = None
        self._pid = -1
        self._threads = threading.Lock()  # flock does not exclude threads sharing one descriptor

    @classmethod
    def beside(cls, db_name: str) -> WriterQueue:
        """The queue of the SQLite file ``db_name`` (none for an in-memory database)."""
        # A ``file:`` URI's path is not simply its text: such a store keeps SQLite's polling.
        if not db_name or SQLiteConnectionPool.detect_memory_mode(db_name) or db_name.startswith("file:"):
            return cls(None)
        return cls(Path(f"{db_name}.writers"))

    def __enter__(self) -> WriterQueue:
        self._threads.acquire()
        if self.path is None:
            return self
        try:
            fcntl.flock(self._descriptor(), fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if self.path is not None and self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def close(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None

    def _descriptor(self) -> int:
        # Opened in the process that writes: a descriptor inherited across fork would share
        # its lock with the parent's.
        if self._fd is None or self._pid != os.getpid():
            assert self.path is not None
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            self._pid = os.getpid()
        return self._fd
