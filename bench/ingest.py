"""ingest_sqlite and ingest_postgres: our ingest against the raw eventsourcing library.

Ours: ``Runtime.ingest_lines`` of N simulated inbound lines (mixed types, realistic customer
count, a few malformed and late ones) on a fresh store, in batches of ``LIFECYCLE_BATCH_SIZE``'s
default (B = 2,000; 500 until 2026-12-05), one transaction each.
Views are not built (the raw library builds none either; ``rebuild`` measures the views).

Our engine stores more than one event per inbound event: a receipt for every inbound event (the
store-enforced deduplication) plus the domain events it caused (first seen, facts, stage
transitions, deals). So there are two baselines, each on its own fresh store of the same kind:

- per inbound event (the headline, the issue's literal reading): the raw library saves N events
  (N = inbound events) in batches of B, and the figure is our inbound events/s ÷ its events/s;
- per stored event: the raw library saves S events (S = what our run stored) in the same number
  of transactions as ours (N / B), and the figure is our stored events/s ÷ its events/s.

Each baseline runs twice, alternating with ours (which runs twice too); the runs' total events /
total seconds is used on each side. The baselines run under the garbage collector's setting our
ingest runs with (``lifecycle.collection``: the baseline gets the same help); one more run of
the per-inbound baseline under the interpreter's default is in the details
(``default_gc_per_s``).

Ours runs as ``lifecycle ingest`` runs by default: ``default_workers()`` processes share
the stream (lifecycle.parallel; 3 on 2 cores). The raw library has no parallel save: its
baseline is one process, as the issue describes it. ``*_1_process`` is ours in one process
against the same baseline, for the like-for-like reading.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from typing import Any

from bench.common import (
    Context,
    RawRun,
    inbound_lines,
    mean_rate,
    raw_save,
    scratch,
    sqlite_env,
    subjects_of,
)
from lifecycle.config import Settings, default_workers, event_store_env
from lifecycle.runtime import Runtime


def _ours(settings: Settings, lines: list[bytes]) -> dict[str, Any]:
    rt = Runtime.open(settings)
    try:
        before = rt.engine.recorder.max_notification_id() or 0
        started = time.perf_counter()
        results = rt.ingest_lines(lines)
        seconds = time.perf_counter() - started
        stored = (rt.engine.recorder.max_notification_id() or 0) - before
    finally:
        rt.close()
    return {
        "inbound": len(lines),
        "stored": stored,
        "seconds": seconds,
        "transactions": results.batches,
        "accepted": results.accepted,
        "duplicates": results.duplicates,
        "rejected": results.rejected,
    }


def _combined(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several runs of ours as one: their events over their seconds (as ``mean_rate``)."""
    total = {key: sum(run[key] for run in runs)
             for key in ("inbound", "stored", "seconds", "transactions", "accepted", "duplicates", "rejected")}
    return {**total, "runs": len(runs), "runs_per_s": [run["inbound"] / run["seconds"] for run in runs]}


def _figures(name: str, ours_runs: list[dict[str, Any]], one: dict[str, Any], inbound_runs: list[RawRun],
             stored_runs: list[RawRun]) -> tuple[dict[str, float], dict[str, Any]]:
    ours, first = _combined(ours_runs), ours_runs[0]
    ours_inbound_per_s = ours["inbound"] / ours["seconds"]
    ours_stored_per_s = ours["stored"] / ours["seconds"]
    one_inbound_per_s = one["inbound"] / one["seconds"]
    raw_inbound = mean_rate(inbound_runs)
    raw_stored = mean_rate(stored_runs)
    figures = {
        name: ours_inbound_per_s / raw_inbound,
        f"{name}_per_stored_event": ours_stored_per_s / raw_stored,
        f"{name}_1_process": one_inbound_per_s / raw_inbound,
    }
    details = {
        "ours": {**ours, "inbound_per_s": ours_inbound_per_s, "stored_per_s": ours_stored_per_s,
                 "stored_per_inbound": ours["stored"] / ours["inbound"]},
        "ours_1_process": {**one, "inbound_per_s": one_inbound_per_s},
        "baseline_per_inbound_event": {
            "what": f"raw eventsourcing saves {first['inbound']} events in batches of "
                    f"{inbound_runs[0].events // inbound_runs[0].transactions}",
            "runs_per_s": [r.per_s for r in inbound_runs], "per_s": raw_inbound,
        },
        "baseline_per_stored_event": {
            "what": f"raw eventsourcing saves {first['stored']} events in {one['transactions']} "
                    "transactions (as many rows as ours, as many transactions as ours in one process)",
            "runs_per_s": [r.per_s for r in stored_runs], "per_s": raw_stored,
        },
    }
    return figures, details


def _measure(ctx: Context, name: str, ours_settings, raw_env) -> tuple[dict[str, float], dict[str, Any]]:
    """baseline(inbound) → ours → baseline(stored) → ours in one process → baseline(inbound) →
    ours → baseline(stored) → baseline(inbound) under the default collector. Ours and the
    baselines alternate, twice each, so that a busy moment of the machine hits both."""
    n, batch = ctx.sizes.ingest, ctx.sizes.batch
    ctx.log(f"{name}: simulating {n} inbound events")
    lines = inbound_lines(n)
    keys = subjects_of(lines)
    transactions = math.ceil(n / batch)
    workers = default_workers()
    inbound_runs, stored_runs = [], []
    ctx.log(f"{name}: raw baseline, {n} events")
    with raw_env() as env:
        inbound_runs.append(raw_save(env, keys, n, transactions))
    ctx.log(f"{name}: ours, {n} inbound events, {workers} processes")
    ours = [ours_settings(lines, workers)]
    stored = ours[0]["stored"]
    ctx.log(f"{name}: ours stored {stored} events in {ours[0]['seconds']:.1f}s; raw baseline again")
    with raw_env() as env:
        stored_runs.append(raw_save(env, keys, stored, transactions))
    ctx.log(f"{name}: ours in one process")
    one = ours_settings(lines, 1)
    ctx.log(f"{name}: ours in one process {one['seconds']:.1f}s; raw baseline again")
    with raw_env() as env:
        inbound_runs.append(raw_save(env, keys, n, transactions))
    ctx.log(f"{name}: ours again, {workers} processes")
    ours.append(ours_settings(lines, workers))
    ctx.log(f"{name}: ours in {ours[1]['seconds']:.1f}s; raw baseline again")
    with raw_env() as env:
        stored_runs.append(raw_save(env, keys, stored, transactions))
    ctx.log(f"{name}: raw baseline under the interpreter's default collector (for the details)")
    with raw_env() as env:
        default_gc = raw_save(env, keys, n, transactions, ingest_gc=False)
    figures, details = _figures(name, ours, one, inbound_runs, stored_runs)
    details["baseline_per_inbound_event"]["default_gc_per_s"] = default_gc.per_s
    return figures, details


def ingest_sqlite(ctx: Context) -> tuple[dict[str, float], dict[str, Any]]:
    @contextlib.contextmanager
    def raw_env():
        with scratch(ctx.workdir, "raw-sqlite") as d:
            yield sqlite_env(d / "raw.sqlite")

    def ours(lines: list[bytes], workers: int) -> dict[str, Any]:
        with scratch(ctx.workdir, "ours-sqlite") as d:
            settings = Settings(database_url=None, data_dir=d, stage_model_path=None,
                                batch_size=ctx.sizes.batch, kafka_bootstrap=None, workers=workers)
            return _ours(settings, lines)

    figures, details = _measure(ctx, "ingest_sqlite", ours, raw_env)
    ctx.shared["embedded_point"] = (ctx.sizes.ingest, details["ours_1_process"]["inbound_per_s"], "in process")
    return figures, details


@contextlib.contextmanager
def _raw_postgres_env(ctx: Context) -> Iterator[dict[str, str]]:
    """The raw library's environment on a fresh PostgreSQL database."""
    from bench.common import fresh_database

    with scratch(ctx.workdir, "raw-pg") as d, fresh_database(ctx) as url:
        yield event_store_env(url, d)


def ingest_postgres(ctx: Context) -> tuple[dict[str, float], dict[str, Any]]:
    from bench.common import fresh_database

    def ours(lines: list[bytes], workers: int) -> dict[str, Any]:
        with scratch(ctx.workdir, "ours-pg") as d, fresh_database(ctx) as url:
            settings = Settings(database_url=url, data_dir=d, stage_model_path=None,
                                batch_size=ctx.sizes.batch, kafka_bootstrap=None, workers=workers)
            return _ours(settings, lines)

    figures, details = _measure(ctx, "ingest_postgres", ours, lambda: _raw_postgres_env(ctx))
    ctx.shared["raw_postgres_per_inbound_s"] = details["baseline_per_inbound_event"]["per_s"]
    return figures, details


def raw_postgres_run(ctx: Context, keys: list[str]) -> RawRun:
    """The raw library on PostgreSQL saving one event per key (the customer keys of the inbound
    lines), in batches of B, on a fresh database (e2e_kafka's baseline, measured next to the
    path)."""
    n = len(keys)
    with _raw_postgres_env(ctx) as env:
        return raw_save(env, keys, n, math.ceil(n / ctx.sizes.batch))
