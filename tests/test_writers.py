"""The SQLite event store's writers take turns (lifecycle.writers) and checkpoint less often."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from lifecycle.writers import WriterQueue
from tests.backends import runtime_factory
from tests.events import interaction


def test_a_writer_in_another_process_waits_for_the_one_writing(tmp_path: Path) -> None:
    db = tmp_path / "events.sqlite"
    log = tmp_path / "log"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parent.parent)!r})
        from lifecycle.writers import WriterQueue
        with WriterQueue.beside({str(db)!r}):
            open({str(log)!r}, "a").write("held\\n")
            time.sleep(0.5)
            open({str(log)!r}, "a").write("released\\n")
    """)])
    try:
        deadline = time.monotonic() + 30
        while not (log.exists() and "held" in log.read_text()):
            assert time.monotonic() < deadline and holder.poll() is None, "the holder never took the queue"
            time.sleep(0.01)
        queue = WriterQueue.beside(str(db))
        with queue:
            assert log.read_text() == "held\nreleased\n"  # it waited for the other to finish
        queue.close()
    finally:
        assert holder.wait(30) == 0


def test_threads_of_one_process_take_turns_too(tmp_path: Path) -> None:
    queue = WriterQueue.beside(str(tmp_path / "events.sqlite"))
    inside, most = [0], [0]

    def write() -> None:
        for _ in range(200):
            with queue:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
                time.sleep(0)
                inside[0] -= 1

    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    queue.close()
    assert most[0] == 1


def test_an_in_memory_database_has_no_queue_file(tmp_path: Path) -> None:
    for name in (":memory:", "file:x?mode=memory&cache=shared"):
        queue = WriterQueue.beside(name)
        with queue:
            pass
        assert queue.path is None


def test_the_embedded_store_writes_through_the_queue_and_checkpoints_every_10k_pages(tmp_path, request):
    from lifecycle.ledger import WAL_CHECKPOINT_PAGES

    rt = runtime_factory("sqlite", tmp_path, lambda: request.getfixturevalue("postgres_url"))()
    try:
        rt.engine.ingest([interaction("shop:1", "2026-01-01T10:00:00Z", id="w-1")])
        writers = rt.engine.recorder.writers
        assert writers.path is not None and writers.path.exists()
        with rt.engine.recorder.datastore.transaction(commit=False) as c:
            c.execute("PRAGMA wal_autocheckpoint")
            assert c.fetchone()[0] == WAL_CHECKPOINT_PAGES == 10_000
    finally:
        rt.close()
    assert writers._fd is None  # closed with the engine
