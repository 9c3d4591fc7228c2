"""``python -m bench.run [--quick] [--only NAME ...] [--output PATH]``: run the benchmarks,
write the results file (one key per figure, plus the machine and the command) and print a table.

Every figure is a ratio against a baseline measured in the same run (see bench/README.md).
Full mode (``make bench``) took 15 minutes on 2 shared cores; ``--quick`` about 1 minute.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.common import FULL, QUICK, TINY, Context, machine_info, python_command
from lifecycle.config import default_workers

HERE = Path(__file__).resolve().parent

#: figure → (comparison, target); what the issue asks for.
TARGETS: dict[str, tuple[str, float]] = {
    "ingest_sqlite": (">=", 0.8),
    "ingest_postgres": (">=", 0.8),
    "e2e_kafka": (">=", 0.6),
    "rebuild": (">=", 0.5),
    "replay": ("<=", 2.0),
    "rss_growth": ("<=", 0.2),
}
#: Reported beside the figures, without a target of their own.
INFO = ("ingest_sqlite_1_process", "ingest_sqlite_per_stored_event", "ingest_postgres_1_process",
        "ingest_postgres_per_stored_event", "e2e_kafka_1_ingest", "rebuild_1_process", "rss_growth_workers")

#: What each figure means, for the table.
MEANING = {
    "ingest_sqlite": "inbound ev/s ÷ raw lib ev/s, SQLite",
    "ingest_sqlite_1_process": "the same, ours in one process",
    "ingest_sqlite_per_stored_event": "stored ev/s ÷ raw lib, same rows+txns",
    "ingest_postgres": "inbound ev/s ÷ raw lib ev/s, PostgreSQL",
    "ingest_postgres_1_process": "the same, ours in one process",
    "ingest_postgres_per_stored_event": "stored ev/s ÷ raw lib, same rows+txns",
    "e2e_kafka": "Kafka → views ev/s ÷ raw lib on PG",
    "e2e_kafka_1_ingest": "the same with 1 ingest process",
    "rebuild": "rebuild ev/s ÷ raw read ev/s",
    "rebuild_1_process": "the same, ours in one process",
    "replay": "point-in-time time ÷ raw select time",
    "rss_growth": "peak RSS at 10× ÷ at 1×, − 1",
    "rss_growth_workers": "the same, all ingest processes added",
}

#: The benchmark units, in the order they run, and the figures each produces.
UNITS = ("ingest_sqlite", "ingest_postgres", "replay", "e2e_kafka", "kafka_scale", "store_scale")
SELECT = {
    "ingest_sqlite": ("ingest_sqlite",),
    "ingest_postgres": ("ingest_postgres",),
    "e2e_kafka": ("e2e_kafka",),
    "replay": ("replay",),
    "rebuild": ("store_scale",),
    "rss_growth": ("store_scale",),
    "scale_curve": ("store_scale", "kafka_scale"),
}


def _unit(name: str):  # type: ignore[no-untyped-def]
    if name in ("ingest_sqlite", "ingest_postgres"):
        from bench import ingest

        return getattr(ingest, name)
    if name == "replay":
        from bench.replay import replay

        return replay
    if name in ("e2e_kafka", "kafka_scale"):
        from bench import kafka_path

        return getattr(kafka_path, name)
    from bench.store_scale import store_scale

    return store_scale


def passed(name: str, value: float | None) -> bool | None:
    if name not in TARGETS or value is None or math.isnan(value):
        return None if name not in TARGETS else False
    op, target = TARGETS[name]
    return value >= target if op == ">=" else value <= target


def scale_curve(ctx: Context) -> dict[str, Any] | None:
    embedded = dict(ctx.shared.get("store_points", {}))
    points = [{"inbound_events": n, "events_per_s": rate, "stored_events": stored, "measured_in": "subprocess"}
              for n, (rate, stored) in sorted(embedded.items())]
    if "embedded_point" in ctx.shared:
        n, rate, where = ctx.shared["embedded_point"]
        if n not in embedded:
            points.append({"inbound_events": n, "events_per_s": rate, "stored_events": None, "measured_in": where})
    points.sort(key=lambda p: p["inbound_events"])
    if points:
        first = points[0]["events_per_s"]
        for p in points:
            p["relative_to_smallest"] = p["events_per_s"] / first
    kafka = ctx.shared.get("kafka_points", {})
    processes = [{"processes": k, "events_per_s": rate} for k, rate in sorted(kafka.items())]
    one = kafka.get(1)
    for p in processes:
        p["relative_to_1"] = p["events_per_s"] / one if one and p["events_per_s"] else None
    if not points and not processes:
        return None
    return {"embedded_sqlite": points, "kafka_ingest_processes": processes}


def notes(ctx: Context, ran: list[str]) -> list[str]:
    s = ctx.sizes
    out = []
    if "ingest_sqlite" in ran or "ingest_postgres" in ran:
        out.append(f"ingest_*: {s.ingest} inbound events, batches of {s.batch}; headline = per inbound event "
                   "(raw library saves as many events as we received), ours as `lifecycle ingest` runs by "
                   f"default: {default_workers()} processes share the stream on this {os.cpu_count()}-core "
                   "machine (the raw library has no parallel save: one process); *_1_process = ours in one "
                   "process; *_per_stored_event = our stored events (domain events, and receipts of refused "
                   "or malformed events) against the raw library saving as many events in as many "
                   "transactions.")
    if "e2e_kafka" in ran:
        processes = ctx.shared.get("kafka_e2e_run", {}).get("ingest_processes", "?")
        out.append(f"e2e_kafka: {s.e2e} events, {s.kafka_partitions} partitions, {processes} "
                   "ingest processes (deploy/compose.yaml's replicas) + relay + project, on the same "
                   f"{os.cpu_count()}-core machine as the broker and PostgreSQL; e2e_kafka_1_ingest: the same "
                   "run with 1 ingest process (the headline until 2026-12-04).")
    if "store_scale" in ran:
        big = s.rss_base * s.rss_factor
        stored = ctx.shared.get("rebuild_stored")
        out.append(f"rss_growth: {big} vs {s.rss_base} inbound events (10×), each in its own process, "
                   "input streamed from a file; peak RSS = VmHWM after the ingest.")
        out.append(f"rebuild: every view from {stored or '?'} stored events ({s.rebuild_point} inbound "
                   "events; the issue asks for 1M stored events), as `lifecycle projections rebuild` does "
                   f"it by default ({default_workers()} worker processes and the calling one, taking ranges of "
                   "entity ids as they finish), twice, alternating with three runs of its "
                   "raw-read baseline (one process, under the rebuild's garbage-collector setting: "
                   "lifecycle.collection); rebuild_1_process: the same rebuild in one process.")
    if "kafka_scale" in ran:
        out.append(f"scale_curve kafka: {s.kafka_scale} events per run, ingest processes only "
                   f"{list(s.kafka_processes)}, {s.kafka_partitions} partitions; this machine has "
                   f"{os.cpu_count()} cores shared by the processes, PostgreSQL and the broker: a "
                   "second process helps while the first waits on PostgreSQL, more cannot add CPU.")
    return out


def print_table(results: dict[str, Any]) -> None:
    rows = [("figure", "value", "target", "pass", "what")]
    for name in [*TARGETS, *INFO]:
        if name not in results:
            continue
        value = results[name]
        shown = "n/a" if value is None else f"{value:.3f}"
        if name in TARGETS:
            op, target = TARGETS[name]
            ok = results["passed"].get(name)
            rows.append((name, shown, f"{op.replace('>=', '≥').replace('<=', '≤')} {target:g}",
                         "PASS" if ok else "FAIL", MEANING[name]))
        else:
            rows.append((name, shown, "(info)", "", MEANING[name]))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for i, r in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    curve = results.get("scale_curve")
    if curve:
        print("\nscale curve, embedded SQLite ingest (inbound events/s):")
        for p in curve["embedded_sqlite"]:
            print(f"  {p['inbound_events']:>9}  {p['events_per_s']:>8.0f}/s  ×{p['relative_to_smallest']:.2f}"
                  f"  ({p['measured_in']})")
        if curve["kafka_ingest_processes"]:
            print("scale curve, Kafka path, ingest processes (inbound events/s):")
            for p in curve["kafka_ingest_processes"]:
                rate = f"{p['events_per_s']:>8.0f}/s" if p["events_per_s"] else "incomplete"
                rel = f"×{p['relative_to_1']:.2f}" if p["relative_to_1"] else ""
                print(f"  {p['processes']:>9}  {rate}  {rel}")
    for note in results.get("notes", []):
        print(f"note: {note}")
    for name, error in results.get("errors", {}).items():
        print(f"ERROR in {name}: {error.splitlines()[-1]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description="Run the benchmarks; "
                                     "every figure is a ratio against a baseline measured in the same run.")
    parser.add_argument("--quick", action="store_true", help="small sizes (under 3 minutes)")
    parser.add_argument("--tiny", action="store_true", help="smallest sizes, for the smoke test")
    parser.add_argument("--only", nargs="+", choices=sorted(SELECT), metavar="NAME",
                        help=f"only these figures: {', '.join(sorted(SELECT))}")
    parser.add_argument("--output", type=Path, help="results file (default bench/results.json for a "
                        "full run of everything, else bench/results-MODE[-only].json)")
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a temporary one)")
    args = parser.parse_args(argv)

    sizes, mode = (TINY, "tiny") if args.tiny else (QUICK, "quick") if args.quick else (FULL, "full")
    # Only a complete full run writes bench/results.json: a partial or quick run never replaces it.
    default = "results.json" if mode == "full" and not args.only else f"results-{mode}{'-only' if args.only else ''}.json"
    output = args.output or HERE / default
    wanted = [u for u in UNITS if not args.only or any(u in SELECT[name] for name in args.only)]

    def log(message: str) -> None:
        print(f"[{time.monotonic() - t0:7.1f}s] {message}", file=sys.stderr, flush=True)

    if args.workdir is not None:
        try:  # a folder to be made, like --output's
            args.workdir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            parser.error(f"--workdir {args.workdir}: {e.strerror or e}")
    t0 = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="lifecycle-bench-", dir=args.workdir))
    ctx = Context(sizes=sizes, mode=mode, workdir=workdir, log=log)
    machine = machine_info()
    results: dict[str, Any] = {}
    details: dict[str, Any] = {}
    errors: dict[str, str] = {}
    ran: list[str] = []
    try:
        for unit in wanted:
            log(f"== {unit}")
            started = time.monotonic()
            try:
                figures, detail = _unit(unit)(ctx)
            except Exception:  # one broken benchmark must not hide the others' figures
                errors[unit] = traceback.format_exc()
                log(f"{unit} failed:\n{errors[unit]}")
                continue
            if unit == "store_scale":
                ctx.shared["rebuild_stored"] = detail["rebuild"]["stored_events"]
            for name, value in figures.items():
                results[name] = None if value is None or math.isnan(value) else value
            details[unit] = {**detail, "unit_seconds": time.monotonic() - started}
            ran.append(unit)
            if figures:
                log(f"{unit}: " + ", ".join(f"{k}={v:.3f}" for k, v in figures.items()))
    finally:
        ctx.close()
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    if args.only and "scale_curve" not in args.only:
        curve = None
    else:
        curve = scale_curve(ctx)
    if curve:
        results["scale_curve"] = curve
    for name in TARGETS:
        if name in results or any(u in errors for u in SELECT.get(name, ())):
            results.setdefault(name, None)
    results["targets"] = {name: f"{op} {t:g}" for name, (op, t) in TARGETS.items() if name in results}
    results["passed"] = {name: passed(name, results[name]) for name in TARGETS if name in results}
    results["notes"] = notes(ctx, ran)
    results["details"] = details
    if errors:
        results["errors"] = errors
    if "pg_server" in ctx.shared:
        machine["postgresql"] = machine_info(ctx)["postgresql"]
    machine["load_average_at_end"] = list(os.getloadavg())
    results["machine"] = machine
    results["command"] = python_command()
    results["mode"] = mode
    results["sizes"] = asdict(sizes)
    results["duration_seconds"] = time.monotonic() - t0
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print()
    print_table(results)
    print(f"\n{mode} run in {results['duration_seconds'] / 60:.1f} min; results in {output}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
