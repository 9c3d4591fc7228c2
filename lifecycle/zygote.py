"""The worker processes of a parallel ingest or rebuild, forked from one fresh interpreter.

Each worker needs the whole engine imported (pydantic's validators, the event classes, the
views): about half a second of CPU per process, on the cores the workers are about to need.
So one fresh interpreter (``python -m lifecycle.worker --fork ...``, the zygote) imports it once
and forks the workers: copies of an interpreter that has imported modules and nothing else (no
thread, no connection, no open store), which is what makes forking it safe. The caller is
never forked (it has connections, pools and threads).

1. the caller makes two pipes per worker (tasks in, answers out) and starts the zygote with the
   workers' ends (``pass_fds``); it keeps its own ends, which no other process holds
2. the zygote imports the engine, then forks one worker per pair; each worker closes every other
   pair (else a dead worker's answers would never end) and runs ``lifecycle.parallel.work``
3. the zygote closes the pairs, reports ``forked W PID`` and, as each worker ends,
   ``exited W STATUS`` on its standard output; it exits after the last worker

``WorkerProcess`` is the caller's handle on one worker: its pipes and what ``subprocess.Popen``
offers that ``lifecycle.parallel`` uses (``kill``, ``poll``, ``wait``).
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import threading
import traceback
from pathlib import Path
from typing import IO

import lifecycle

FORK_REPORT_TIMEOUT = 60.0  # seconds for the zygote to import the engine and fork a worker


class WorkerProcess:
    def __init__(self, tasks: IO[bytes], answers: IO[bytes]) -> None:
        self.tasks = tasks  # the caller writes pickled tasks here
        self.answers = answers  # and reads pickled answers here
        self.pid: int | None = None
        self.returncode: int | None = None  # as Popen's: negative for the signal that ended it
        self._forked = threading.Event()
        self._exited = threading.Event()
        self._pidfd: int | None = None

    def kill(self) -> None:
        """SIGKILL, by a pidfd: it cannot reach another process that was given the same pid."""
        if not self._forked.wait(FORK_REPORT_TIMEOUT) or self._exited.is_set() or self._pidfd is None:
            return
        try:
            signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass  # already gone

    def poll(self) -> int | None:
        return self.returncode if self._exited.is_set() else None

    def wait(self, timeout: float | None = None) -> int | None:
        """Its exit status (None if the zygote died first and cannot tell)."""
        self._exited.wait(timeout)
        return self.returncode

    def _on_forked(self, pid: int) -> None:
        self.pid = pid
        try:
            self._pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            pass  # it has already ended; its exit is reported next
        self._forked.set()

    def _on_exited(self, code: int | None) -> None:
        self.returncode = code
        self._exited.set()
        self._forked.set()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None


class Zygote:
    """Steps 1 and 3 (the caller's side) of the module docstring."""

    def __init__(self, workers: int, preload_postgres: bool = False) -> None:
        # 1. the pipes; the caller's ends are not inheritable (os.pipe), the workers' are passed
        pairs = [(os.pipe(), os.pipe()) for _ in range(workers)]
        theirs = [fd for (task_r, _), (_, answer_w) in pairs for fd in (task_r, answer_w)]
        paths = [str(Path(lifecycle.__file__).parent.parent), os.environ.get("PYTHONPATH", "")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
        command = [sys.executable, "-m", "lifecycle.worker", "--fork", ",".join(map(str, theirs))]
        if preload_postgres:
            command.append("--postgres")
        try:
            self.process = subprocess.Popen(command, env=env, pass_fds=theirs,
                                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        except BaseException:
            for (task_r, task_w), (answer_r, answer_w) in pairs:
                for fd in (task_r, task_w, answer_r, answer_w):
                    os.close(fd)
            raise
        for fd in theirs:
            os.close(fd)
        self.workers = [WorkerProcess(os.fdopen(task_w, "wb"), os.fdopen(answer_r, "rb"))
                        for (_, task_w), (answer_r, _) in pairs]
        # 3. its reports
        self._reports = threading.Thread(target=self._read_reports, name="lifecycle-zygote", daemon=True)
        self._reports.start()

    def wait(self) -> None:
        self.process.wait()
        self._reports.join()

    def _read_reports(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            parts = line.split()
            if len(parts) != 3 or not (parts[1].isdigit() and parts[2].lstrip(b"-").isdigit()):
                continue  # not a report (something an import printed)
            kind, worker, number = parts
            if kind == b"forked":
                self.workers[int(worker)]._on_forked(int(number))
            elif kind == b"exited":
                self.workers[int(worker)]._on_exited(int(number))
        for worker in self.workers:  # the zygote is gone: no more news of any worker
            if not worker._exited.is_set():
                worker._on_exited(None)


def fork_workers(fds: list[int], preload_postgres: bool) -> None:
    """Steps 2 and 3 (in the zygote); ``fds`` are the workers' (tasks, answers) pairs, flat."""
    from lifecycle import parallel, runtime  # noqa: F401 - imported once, for every worker

    if preload_postgres:
        from lifecycle import ledger_postgres  # noqa: F401
        from projections.store import postgres  # noqa: F401
    # What the imports made lives as long as every worker: out of the collector's way, and its
    # pages not copied into each worker by a collection writing the objects' headers.
    gc.freeze()
    pairs = list(zip(fds[::2], fds[1::2], strict=True))
    report = sys.stdout.buffer
    running: dict[int, int] = {}
    for index, (tasks, answers) in enumerate(pairs):
        report.flush()  # nothing buffered may be copied into the worker
        pid = os.fork()
        if pid == 0:
            _run_worker(index, pairs)
        running[pid] = index
        report.write(b"forked %d %d\n" % (index, pid))
        report.flush()
    for tasks, answers in pairs:
        os.close(tasks)
        os.close(answers)
    while running:
        pid, status = os.wait()
        if pid in running:
            report.write(b"exited %d %d\n" % (running.pop(pid), os.waitstatus_to_exitcode(status)))
            report.flush()


def _run_worker(index: int, pairs: list[tuple[int, int]]) -> None:
    """A forked worker: never returns (``os._exit``: nothing of the zygote's is cleaned up twice)."""
    code = 1
    try:
        for other, (tasks, answers) in enumerate(pairs):
            if other != index:
                os.close(tasks)
                os.close(answers)
        os.dup2(2, 1)  # anything printed goes to stderr, not into the zygote's reports
        sys.stdout = sys.stderr
        from lifecycle.parallel import work

        tasks, answers = pairs[index]
        work(os.fdopen(tasks, "rb"), os.fdopen(answers, "wb"))
        code = 0
    except BaseException:  # work answers its errors; this is for what escapes it
        traceback.print_exc()
    finally:
        os._exit(code)
