"""One measured process for ``bench.store_scale``: ingest a file, then (optionally) rebuild.

``python -m bench.child --data-dir D --input FILE --out RESULT.json [--rebuild]``

Reads FILE line by line into ``Runtime.ingest_lines`` (the input is never held in memory, as
``lifecycle ingest FILE`` streams it), on an embedded store in D. Records its peak resident set
(VmHWM) after opening the runtime, after the ingest and after the rebuild. With ``--rebuild``,
also times reading every stored event raw from the store in pages (the rebuild's baseline)
and the rebuild of every view as ``lifecycle projections rebuild`` does it by default
(``default_workers()`` processes), alternated: read, rebuild, read, rebuild, read (the raw reads
under the rebuild's garbage-collector setting); then the same rebuild in one process, and for
information a raw read with the interpreter's default collector.
The ingest runs in one process unless ``--workers N`` (its peak resident set is then this
process's plus each worker's, read from /proc while they run: ``WorkerPeaks``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import threading
import time
from pathlib import Path

from bench.common import proc_status_kib
from lifecycle.config import DEFAULT_BATCH_SIZE, Settings, default_workers
from lifecycle.runtime import Runtime
from lifecycle.collection import fewer_collections


def raw_read(rt: Runtime, page: int, decode: bool = False, rebuilds_gc: bool = True) -> tuple[int, float]:
    """Every notification from the start, ``page`` at a time, as the projections page. With
    ``rebuilds_gc`` under the garbage collector's setting a rebuild runs with
    (``lifecycle.collection``): the baseline gets the same help as ours (it gains about as
    much), so the figure shows the rebuild's work, not the collector's."""
    with fewer_collections() if rebuilds_gc else contextlib.nullcontext():
        return _raw_read(rt, page, decode)


def _raw_read(rt: Runtime, page: int, decode: bool) -> tuple[int, float]:
    recorder = rt.engine.recorder
    to_domain_event = rt.engine.mapper.to_domain_event
    started = time.perf_counter()
    count, start = 0, 1
    while True:
        notifications = recorder.select_notifications(start=start, limit=page)
        if not notifications:
            break
        if decode:
            for n in notifications:
                to_domain_event(n)
        count += len(notifications)
        start = notifications[-1].id + 1
    return count, time.perf_counter() - started


class WorkerPeaks:
    """The peak resident set (VmHWM) of each descendant process of this one, sampled every
    ``interval`` seconds while they run (a peak reached in a worker's last moments can be
    missed; VmHWM itself never goes down, so a sample is a lower bound that only grows)."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.peaks: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> WorkerPeaks:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            for pid in _descendants("self"):
                kib = proc_status_kib("VmHWM", pid)
                if kib is not None:
                    self.peaks[pid] = max(kib, self.peaks.get(pid, 0))


def _descendants(pid: str) -> list[str]:
    """Children, their children and so on: the workers are the children of the zygote
    (lifecycle.zygote), which is this process's child."""
    found: list[str] = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            listed = children.read_text().split()
        except OSError:  # it ended meanwhile
            continue
        for child in listed:
            found += [child, *_descendants(child)]
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--input", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--cache-customers", type=int, default=Settings.cache_customers)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--decode-baseline", action="store_true")
    parser.add_argument("--workers", type=int, default=1, help="processes for the ingest")
    args = parser.parse_args()

    result: dict = {}
    settings = Settings(database_url=None, data_dir=args.data_dir, stage_model_path=None,
                        batch_size=args.batch_size, kafka_bootstrap=None,
                        cache_customers=args.cache_customers, workers=args.workers)
    rt = Runtime.open(settings)
    try:
        result["vmhwm_kib_open"] = proc_status_kib("VmHWM")
        with args.input.open("rb") as stream, WorkerPeaks() as workers:
            started = time.perf_counter()
            totals = rt.ingest_lines(line for line in stream)
            result["ingest_seconds"] = time.perf_counter() - started
        result["workers"] = args.workers
        result["worker_vmhwm_kib"] = sorted(workers.peaks.values())
        result["inbound"] = totals.inbound
        result["accepted"] = totals.accepted
        result["stored"] = rt.engine.recorder.max_notification_id() or 0
        result["vmhwm_kib_ingest"] = proc_status_kib("VmHWM")
        result["vmrss_kib_ingest"] = proc_status_kib("VmRSS")
        if args.rebuild:
            page = rt.runner.batch_size
            result["page"] = page
            reads = [raw_read(rt, page)]
            rt.settings = dataclasses.replace(rt.settings, workers=default_workers())
            rebuilds = []
            # Read, rebuild, read, rebuild, read: the machine's pace moves by a third or more within a run;
            # alternating lets both sides meet its slow and fast phases alike.
            for _ in range(2):
                started = time.perf_counter()
                rt.rebuild()
                rebuilds.append(time.perf_counter() - started)
                reads.append(raw_read(rt, page))
            result["rebuild_runs_seconds"] = rebuilds
            result["rebuild_seconds"] = sum(rebuilds) / len(rebuilds)
            result["rebuild_workers"] = rt.settings.workers
            started = time.perf_counter()
            rt.runner.rebuild()
            result["rebuild_1_process_seconds"] = time.perf_counter() - started
            result["raw_read_seconds"] = [s for _, s in reads]
            result["raw_read_events"] = reads[0][0]
            result["raw_read_default_gc_seconds"] = raw_read(rt, page, rebuilds_gc=False)[1]
            if args.decode_baseline:
                result["raw_read_decode_seconds"] = raw_read(rt, page, decode=True)[1]
            result["vmhwm_kib_rebuild"] = proc_status_kib("VmHWM")
            result["customers"] = len(rt.views.rows("customer_current"))
    finally:
        rt.close()
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
