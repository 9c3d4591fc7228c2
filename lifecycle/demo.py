"""``lifecycle demo``: a simulated population through exactly the production path."""

from __future__ import annotations

from datetime import date, timedelta

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from lifecycle.output import to_table
from lifecycle.runtime import Runtime
from lifecycle.simulate import simulate
from projections.catalog import REPORTS, build_report

START = date(2024, 1, 1)
DAYS = 730


def run_demo(rt: Runtime, customers: int, seed: int, out: Console, err: Console) -> None:
    """1. simulate  2. ingest in batches  3. sweep for inactivity  4. project  5. print reports"""
    as_of = START + timedelta(days=DAYS)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err, transient=False,
    ) as bar:
        # 1. simulate
        lines = simulate(customers=customers, seed=seed, start=START, days=DAYS)
        # 2. ingest
        task = bar.add_task(f"ingesting {customers} customers", total=len(lines))
        totals = {"accepted": 0, "duplicates": 0, "rejected": 0}

        def on_batch(result) -> None:  # type: ignore[no-untyped-def]
            totals["accepted"] += result.accepted
            totals["duplicates"] += result.duplicates
            totals["rejected"] += result.rejected
            bar.advance(task, len(result.outcomes))

        rt.ingest_lines(lines, on_batch)
        # 3 + 4. sweep (it projects before and after)
        views = bar.add_task("projecting", total=rt.engine.recorder.max_notification_id() or 0)
        rt.catch_up(progress=lambda n: bar.advance(views, n))
        churned = rt.sweep(as_of)
    out.print(
        f"events {len(lines)}: accepted {totals['accepted']}, duplicate {totals['duplicates']}, "
        f"rejected {totals['rejected']}; churned by sweep as of {as_of}: {churned}",
        highlight=False,
    )
    # 5. reports
    for kind in ("pipeline", "funnel", "retention", "advocacy"):
        rows = build_report(kind, rt.views, rt.engine.model, as_of)
        out.print(to_table(rows, f"{REPORTS[kind][0]} — as of {as_of}"))
