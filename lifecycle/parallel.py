"""Ingest of one stream of lines, and a rebuild of the views, by several processes
(``LIFECYCLE_WORKERS``).

Both are CPU-bound Python (parsing, the rules, encryption, encoding; decoding, deriving, writing
rows): one process uses one core. Each worker process opens its own runtime on the same store
and does what it is sent: batches of lines, each in its own transaction, exactly as
``Runtime.ingest_lines`` does in one process; or a range of entity ids of a rebuild
(``ProjectionRunner.rebuild_part``), whose entities no other part touches.

Correctness does not depend on how lines are shared out: the engine's optimistic concurrency and
the inbound ledger's primary key make any two writers safe (a conflict is retried from a fresh
read, a duplicate recorded by the other process is found in the ledger). Lines go to the worker
of their subject only so that a customer's events stay in one process, in stream order, its
aggregate warm in that process's cache, and conflicts stay rare.

The parent of an ingest (``ingest_in_parallel``):

1. reads up to ``START_BATCHES`` batches per worker (the head); a stream that ends sooner is
   ingested in this process (starting processes would cost more than it saves)
2. starts the workers (forked from one fresh interpreter, ``lifecycle.zygote``: each opens its
   own connections)
3. ingests batches of the head itself while they start (imports and connections take about a
   second), until every worker has said it is ready
4. shares the rest out by subject into one batch per worker; a full batch goes to its worker
   when it has fewer than ``QUEUED_BATCHES`` unanswered, so the parent waits when the workers
   are behind and memory stays flat. Each worker's tasks are written to it by a thread of its
   own: a batch is larger than a pipe holds, and writing it would otherwise hold the parent
   until that worker finished its current batch while the others ran out of work
5. gathers the answers meanwhile: the totals count each worker batch (one transaction each);
   ``on_batch`` gets every line's outcome in stream order, as from one process
6. at the end of the stream sends the last batches and a stop to each worker and waits for all
   answers; a worker that fails or dies stops the others and raises ``WorkerError`` (what
   was committed stays committed; ingesting the stream again completes it, the rest being
   duplicates)

A rebuild (``rebuild_in_parallel``) gives each worker one range of the id space and waits for
their counts, erased customers and summary sums (``RebuiltPart``); ``ProjectionRunner`` does the
steps before and after.
"""

from __future__ import annotations

import pickle
import queue
import re
import threading
import zlib
from collections.abc import Callable, Iterable
from datetime import date
from itertools import chain, islice
from typing import IO, Any
from uuid import UUID

from lifecycle.batch import BatchResult, IngestTotals, ItemOutcome
from lifecycle.collection import fewer_collections
from lifecycle.config import Settings, is_postgres_url
from lifecycle.errors import LifecycleError
from lifecycle.zygote import WorkerProcess, Zygote
from projections.runner import ProjectionRunner, RebuiltPart

START_BATCHES = 4  # per worker, read before deciding to start processes
QUEUED_BATCHES = 2  # per worker, sent and not yet answered
RANGES_PER_WORKER = 4  # of a rebuild
_CLOSE = object()  # to a worker's writer thread: close its standard input
_SUBJECT = re.compile(rb'"subject"\s*:\s*"((?:[^"\\]|\\.)*)"')


class WorkerError(LifecycleError):
    """A worker process of a parallel ingest or rebuild failed or died; the message says why."""


def worker_of(line: bytes, workers: int) -> int:
    """The worker for a line: by its subject as written (by the whole line when none is
    found: a malformed line belongs to nobody)."""
    # How producers write it, found without the regular expression (a third of the parent's CPU);
    # spaces around the colon or an escape in the subject take the expression.
    at = line.find(b'"subject":"')
    if at >= 0:
        start = at + 11
        end = line.find(b'"', start)
        if end >= 0 and line.find(b"\\", start, end) < 0:
            return zlib.crc32(line[start:end]) % workers
    found = _SUBJECT.search(line)
    return zlib.crc32(found[1] if found else line) % workers


def ingest_in_parallel(
    settings: Settings,
    lines: Iterable[bytes],
    workers: int,
    in_process: Callable[[Iterable[bytes], Callable[[BatchResult], None] | None], IngestTotals],
    on_batch: Callable[[BatchResult], None] | None = None,
) -> IngestTotals:
    """Steps in the module docstring. ``lines`` are non-blank and stripped of their line end;
    ``in_process`` ingests lines in this process (step 1's short stream)."""
    batch = settings.batch_size
    stream = iter(lines)
    # 1. a short stream stays here
    head = list(islice(stream, START_BATCHES * workers * batch))
    if len(head) < START_BATCHES * workers * batch:
        return in_process(head, on_batch)
    with _Pool(settings, workers, on_batch) as pool:  # 2. start
        # 3. meanwhile, batches of the head here: each done before any later line is sent, so
        # each customer's events are still applied in stream order
        here = 0
        while here < len(head) and not pool.all_ready():
            chunk = head[here:here + batch]
            pool.totals.include(in_process(chunk, on_batch))
            here += len(chunk)
        pool.next_place = here
        # 4. share out the rest
        filling: list[list[bytes]] = [[] for _ in range(workers)]
        places: list[list[int]] = [[] for _ in range(workers)]
        for index, line in enumerate(chain(head[here:], stream), start=here):
            w = worker_of(line, workers)
            filling[w].append(line)
            places[w].append(index)
            if len(filling[w]) == batch:
                pool.send(w, filling[w], places[w])
                filling[w], places[w] = [], []
        # 6. the last batches, the stops, the results
        for w in range(workers):
            if filling[w]:
                pool.send(w, filling[w], places[w])
        return pool.finish()


def key_ranges(parts: int) -> list[tuple[str | None, str | None]]:
    """``parts`` ranges ``start <= id < stop`` of equal width that cover every UUID (None: open)."""
    bounds: list[str | None] = [None, *(str(UUID(int=(2**128 * i) // parts)) for i in range(1, parts)), None]
    return list(zip(bounds, bounds[1:]))


def rebuild_in_parallel(
    settings: Settings, runner: ProjectionRunner, workers: int, as_of: date,
    progress: Callable[[int], None] | None = None,
) -> tuple[int, RebuiltPart]:
    """Steps 1 to 3 of ``ProjectionRunner.rebuild`` with step 3 in ``workers`` processes and
    this one, a range of entity ids at a time each: the last position, and the parts added up
    (the summaries as of ``as_of`` among them).

    1. start the workers (a fresh interpreter starts them: about half a second)
    2. meanwhile, ``runner.start_rebuild`` here
    3. give each worker a range, for when it has started
    4. meanwhile, one range here: while the workers' interpreter starts, a core would idle
    5. each worker that is done gets the next range, until every part is written.
       ``RANGES_PER_WORKER`` ranges per worker: ranges of equal width hold unequal numbers of
       events, and while the last worker finishes alone a core may idle
    """
    with _Pool(settings, workers, on_batch=None, progress=progress) as pool:  # 1
        last = runner.start_rebuild()  # 2
        ranges = key_ranges(workers * RANGES_PER_WORKER)
        total = pool.rebuild(last, as_of, ranges[1:],  # 3, 5
                             here=lambda: runner.rebuild_part(last, as_of, *ranges[0], progress=progress))  # 4
        for part in pool.finish_parts():
            total = total.add(part)
        return last, total


class _Pool:
    """The worker processes (forked from one fresh interpreter, never from the caller:
    ``lifecycle.zygote``), pickled messages over a pair of pipes each, and step 5's
    bookkeeping."""

    def __init__(self, settings: Settings, workers: int, on_batch: Callable[[BatchResult], None] | None,
                 progress: Callable[[int], None] | None = None):
        self.settings = settings
        self.workers = workers
        self.on_batch = on_batch
        self.progress = progress
        self.parts: list[RebuiltPart] = []  # a rebuild's answers
        self.ranges: list[tuple[Any, ...]] = []  # and the tasks of its ranges not given yet
        self.totals = IngestTotals()
        self.results: queue.Queue[tuple[Any, ...]] = queue.Queue()  # from every worker's reader
        self.processes: list[WorkerProcess] = []
        self.readers: list[threading.Thread] = []
        self.outboxes: list[queue.Queue[Any]] = []  # pickled tasks for each worker's writer
        self.writers: list[threading.Thread] = []
        self.broken: list[bool] = []  # a worker's writer could not write to it
        self.ready = 0  # workers that have opened their runtime
        self.waiting = [0] * workers  # batches sent to each worker and not answered
        self.places: dict[int, list[int]] = {}  # batch number -> its lines' places in the stream
        self.sent = 0
        self.outcomes: dict[int, ItemOutcome] = {}  # place -> outcome, until handed on in order
        self.next_place = 0

    def __enter__(self) -> _Pool:
        self.zygote = Zygote(self.workers, preload_postgres=is_postgres_url(self.settings.database_url))
        try:
            for w, process in enumerate(self.zygote.workers):
                self.processes.append(process)
                reader = threading.Thread(target=_read_results, args=(w, process.answers, self.results),
                                          name=f"lifecycle-worker-{w}", daemon=True)
                reader.start()
                self.readers.append(reader)
                self.outboxes.append(queue.Queue())
                self.broken.append(False)
                writer = threading.Thread(target=self._write_tasks, args=(w, process.tasks),
                                          name=f"lifecycle-worker-{w}-tasks", daemon=True)
                writer.start()
                self.writers.append(writer)
                self._write(w, self.settings)
        except BaseException as e:
            self.__exit__(type(e), e, e.__traceback__)  # the ones already started
            raise
        return self

    def __exit__(self, *exc_info: Any) -> None:
        failed = exc_info[0] is not None
        for w, process in enumerate(self.processes):
            if process.poll() is None and failed:
                process.kill()  # after a failure: its open transaction rolls back
            if w < len(self.writers):
                self.outboxes[w].put(_CLOSE)  # after what it still has to write
                self.writers[w].join()
            else:
                process.tasks.close()
            process.wait()
        self.zygote.wait()

    def all_ready(self) -> bool:
        """Whether every worker has opened its runtime (takes the answers that are in)."""
        self.gather(wait=False)
        return self.ready == self.workers

    def send(self, worker: int, lines: list[bytes], places: list[int]) -> None:
        while self.waiting[worker] >= QUEUED_BATCHES:
            self.gather()
        number, self.sent = self.sent, self.sent + 1
        self.places[number] = places
        self.waiting[worker] += 1
        self._write(worker, ("ingest", number, lines, self.on_batch is not None))

    def rebuild(
        self, last: int, as_of: date, ranges: list[tuple[str | None, str | None]], here: Callable[[], RebuiltPart],
    ) -> RebuiltPart:
        """Every range rebuilt by the workers (``ProjectionRunner.rebuild_part``), a range at a
        time each, the next to the first worker done (``gather``); and ``here`` (its part) done
        in this process once the workers have their first ranges."""
        self.ranges = [("rebuild", last, as_of, start, stop) for start, stop in ranges]
        for w in range(min(self.workers, len(self.ranges))):
            self._ask(w, self.ranges.pop(0))
        mine = here()
        while any(self.waiting):
            self.gather()
        return mine

    def _ask(self, worker: int, task: tuple[Any, ...]) -> None:
        self.waiting[worker] += 1
        self._write(worker, task)

    def finish_parts(self) -> list[RebuiltPart]:
        self._stop_and_wait()
        return self.parts

    def finish(self) -> IngestTotals:
        self._stop_and_wait()
        return self.totals

    def _stop_and_wait(self) -> None:
        """The stop to every worker, then every answer still owed (batches and parts alike)."""
        for w in range(self.workers):
            self._write(w, None)
        while any(self.waiting):
            self.gather()

    def _write(self, worker: int, message: Any) -> None:
        """``message`` to the worker's writer thread."""
        if self.broken[worker]:  # it is gone; its last word, if any, says why
            code = self.processes[worker].wait()
            self.readers[worker].join(timeout=5)
            while not self.results.empty():
                self.gather()
            raise WorkerError(f"worker process {worker} stopped taking work (status {code})")
        self.outboxes[worker].put(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))

    def _write_tasks(self, worker: int, stdin: IO[bytes]) -> None:
        """A worker's writer thread: its outbox to its standard input, until ``_CLOSE``."""
        outbox = self.outboxes[worker]
        try:
            while (data := outbox.get()) is not _CLOSE:
                stdin.write(data)
                stdin.flush()
        except OSError:  # BrokenPipeError: the reader reports its end; _write refuses more
            self.broken[worker] = True
            while outbox.get() is not _CLOSE:
                pass
        finally:
            try:
                stdin.close()
            except OSError:
                pass

    def gather(self, wait: bool = True) -> None:
        """5. wait for an answer (unless ``wait`` is false), then take every answer that is in."""
        try:
            message = self.results.get(block=wait)
        except queue.Empty:
            return
        while True:
            kind, worker, *rest = message
            if kind == "ready":
                self.ready += 1
            elif kind == "failed":
                raise WorkerError(f"worker process {worker} failed: {rest[0]}")
            elif kind == "exited":
                if self.waiting[worker]:
                    code = self.processes[worker].wait()
                    raise WorkerError(f"worker process {worker} exited (status {code}) before "
                                            f"answering {self.waiting[worker]} task(s)")
            elif kind == "progress":
                if self.progress is not None:
                    self.progress(rest[0])
            elif kind == "rebuilt":
                self.parts.append(rest[0])
                self.waiting[worker] -= 1
                if self.ranges:
                    self._ask(worker, self.ranges.pop(0))
            else:
                number, answer = rest
                places = self.places.pop(number)
                self.waiting[worker] -= 1
                if isinstance(answer, IngestTotals):  # no outcomes were asked for
                    self.totals.include(answer)
                else:
                    result = BatchResult(tuple(map(ItemOutcome._make, answer)))
                    self.totals.add(result)
                    self.outcomes.update(zip(places, result.outcomes, strict=True))
                    self.hand_on()
            try:
                message = self.results.get_nowait()
            except queue.Empty:
                return

    def hand_on(self) -> None:
        """The outcomes that now follow on from those handed on, in stream order."""
        ready = []
        while self.next_place in self.outcomes:
            ready.append(self.outcomes.pop(self.next_place))
            self.next_place += 1
        if ready and self.on_batch is not None:
            self.on_batch(BatchResult(tuple(ready)))


def _read_results(worker: int, stdout: IO[bytes], results: queue.Queue[tuple[Any, ...]]) -> None:
    """A worker's answers (see ``work``), in the parent, tagged with the worker; ("exited",)
    when its output ends."""
    try:
        while True:
            kind, *rest = pickle.load(stdout)
            results.put((kind, worker, *rest))
    except EOFError:
        results.put(("exited", worker))
    except Exception as e:  # noqa: BLE001 - anything unreadable ends this worker's answers
        results.put(("failed", worker, f"unreadable answer ({type(e).__name__}: {e})"))


def work(stdin: IO[bytes], stdout: IO[bytes]) -> None:
    """A worker process: the settings (answered ("ready",) once its runtime is open), then tasks
    until the stop (None): ("ingest", number, lines, with_outcomes) answered ("done", number,
    ``_answer_of(result, with_outcomes)``); ("rebuild", last, as_of, start, stop) answered with
    ("progress", events) per chunk, then ("rebuilt", ``RebuiltPart``).
    Any error is answered, not raised: the parent reports it."""
    from lifecycle.runtime import Runtime  # the runtime module imports this one

    def answer(message: tuple[Any, ...]) -> None:
        pickle.dump(message, stdout, protocol=pickle.HIGHEST_PROTOCOL)
        stdout.flush()

    try:
        settings: Settings = pickle.load(stdin)
    except EOFError:
        return  # the caller stopped before it gave any work
    try:
        rt = Runtime.open(settings)
    except Exception as e:  # noqa: BLE001
        answer(("failed", _described(e)))
        return
    answer(("ready",))
    try:
        with fewer_collections():  # one ingest or rebuild, then the worker ends (lifecycle.collection)
            while (task := pickle.load(stdin)) is not None:
                if task[0] == "ingest":
                    _, number, lines, with_outcomes = task
                    answer(("done", number, _answer_of(rt.engine.ingest(lines), with_outcomes)))
                else:
                    _, last, as_of, start, stop = task
                    answer(("rebuilt", rt.runner.rebuild_part(last, as_of, start, stop,
                                                              progress=lambda n: answer(("progress", n)))))
    except EOFError:
        pass  # the parent is gone (it stopped the work): nothing to answer
    except Exception as e:  # noqa: BLE001
        answer(("failed", _described(e)))
    finally:
        rt.close()


def _answer_of(result: BatchResult, with_outcomes: bool) -> IngestTotals | list[tuple[Any, ...]]:
    """A batch's result as a worker sends it: its outcomes as plain tuples, remade by
    ``ItemOutcome._make`` (500 of them pickled and read back in 0.4 ms of CPU, against 1.1 ms as
    named tuples, which pickle through a Python ``__reduce__`` each); only its counts when the
    caller of the ingest asked for no outcomes."""
    if with_outcomes:
        return [tuple(outcome) for outcome in result.outcomes]
    totals = IngestTotals()
    totals.add(result)
    return totals


def _described(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
