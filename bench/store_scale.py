"""rss_growth, rebuild and the embedded scale curve: one subprocess per input size.

For each size in ``Sizes.store_points`` (inbound events), the parent writes a simulated feed of
that size to a file and runs ``python -m bench.child`` on a fresh embedded store: it streams the
file through the engine, then times a raw read of every stored event, ``rebuild`` of every view,
and the raw read again. Each child is a separate process, so each peak resident set (VmHWM from
/proc/self/status, read by the child: it starts again at exec) is its own.

- ``rss_growth`` = peak RSS after the ingest of rss_base × rss_factor events ÷ after rss_base
  events, minus 1 (the ingest only: the raw library builds no views either).
- ``rebuild`` = events/s of rebuilding every view as ``lifecycle projections rebuild`` does by
  default (``default_workers()`` processes) ÷ events/s of reading the same stored events raw
  (``select_notifications`` in pages of the runner's size, 5000, one process), at
  ``rebuild_point``: two rebuilds alternate with three raw reads, and each side's mean time is
  used (one rebuild between two reads until 2026-12-05). ``rebuild_1_process``: the same
  rebuild in one process, right after.
- ``rss_growth_workers`` (info): the same two ingests as ``lifecycle ingest`` runs them by
  default (``default_workers()`` processes), the peaks of all the processes added up.
- the embedded points of ``scale_curve``: inbound events/s of each child's ingest (one process).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import Context, inbound_lines, scratch
from lifecycle.config import default_workers

ROOT = Path(__file__).resolve().parent.parent


def _child(ctx: Context, n: int, rebuild: bool, decode: bool, workers: int = 1) -> dict[str, Any]:
    with scratch(ctx.workdir, f"store-{n}") as d:
        feed = d / "feed.jsonl"
        lines = inbound_lines(n)
        with feed.open("wb") as f:
            for line in lines:
                f.write(line + b"\n")
        del lines
        out = d / "result.json"
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIFECYCLE_")}
        cmd = [sys.executable, "-m", "bench.child", "--data-dir", str(d / "data"), "--input", str(feed),
               "--out", str(out), "--batch-size", str(ctx.sizes.batch), "--workers", str(workers)]
        if rebuild:
            cmd.append("--rebuild")
        if decode:
            cmd.append("--decode-baseline")
        shown = (" + rebuild" if rebuild else "") + (f", {workers} ingest processes" if workers > 1 else "")
        ctx.log(f"store_scale: child on {n} inbound events{shown}")
        started = time.perf_counter()
        # The child reports its own VmHWM: ru_maxrss from wait4 would also count the pages it
        # shared with this (larger) parent between fork and exec.
        code = subprocess.run(cmd, cwd=ROOT, env=env).returncode
        if code != 0:
            raise RuntimeError(f"bench.child on {n} events exited with {code}")
        result = json.loads(out.read_text())
        result["wall_seconds"] = time.perf_counter() - started
        return result


def store_scale(ctx: Context) -> tuple[dict[str, float], dict[str, Any]]:
    s = ctx.sizes
    big = s.rss_base * s.rss_factor
    points = sorted(set(s.store_points) | {s.rss_base, big, s.rebuild_point})
    runs = {n: _child(ctx, n, rebuild=n == s.rebuild_point, decode=n == s.rebuild_point) for n in points}
    base, top, rebuilt = runs[s.rss_base], runs[big], runs[s.rebuild_point]
    # The same two ingests as the CLI runs them by default: the peak of every process together.
    shared = {n: _child(ctx, n, rebuild=False, decode=False, workers=default_workers()) for n in (s.rss_base, big)}
    together = {n: r["vmhwm_kib_ingest"] + sum(r["worker_vmhwm_kib"]) for n, r in shared.items()}

    raw_s = sum(rebuilt["raw_read_seconds"]) / len(rebuilt["raw_read_seconds"])
    rebuild_per_s = rebuilt["stored"] / rebuilt["rebuild_seconds"]
    raw_per_s = rebuilt["raw_read_events"] / raw_s
    figures = {
        "rss_growth": top["vmhwm_kib_ingest"] / base["vmhwm_kib_ingest"] - 1,
        "rebuild": rebuild_per_s / raw_per_s,
        "rebuild_1_process": rebuilt["stored"] / rebuilt["rebuild_1_process_seconds"] / raw_per_s,
        "rss_growth_workers": together[big] / together[s.rss_base] - 1,
    }
    mib = 1024
    details = {
        "rss_growth": {
            "sizes": [s.rss_base, big],
            "peak_rss_mib_after_ingest": [base["vmhwm_kib_ingest"] / mib, top["vmhwm_kib_ingest"] / mib],
            "peak_rss_mib_after_open": [base["vmhwm_kib_open"] / mib, top["vmhwm_kib_open"] / mib],
            "growth_above_startup": (top["vmhwm_kib_ingest"] - top["vmhwm_kib_open"])
            / max(1, base["vmhwm_kib_ingest"] - base["vmhwm_kib_open"]) - 1,
        },
        "rss_growth_workers": {
            "sizes": [s.rss_base, big], "workers": default_workers(),
            "peak_rss_mib_all_processes": [together[s.rss_base] / 1024, together[big] / 1024],
            "parent_peak_rss_mib": [shared[n]["vmhwm_kib_ingest"] / 1024 for n in (s.rss_base, big)],
            "worker_peak_rss_mib": [[k / 1024 for k in shared[n]["worker_vmhwm_kib"]] for n in (s.rss_base, big)],
            "ingest_seconds": [shared[n]["ingest_seconds"] for n in (s.rss_base, big)],
        },
        "rebuild": {
            "inbound": rebuilt["inbound"], "stored_events": rebuilt["stored"],
            "customers": rebuilt["customers"], "rebuild_seconds": rebuilt["rebuild_seconds"],
            "rebuild_runs_seconds": rebuilt["rebuild_runs_seconds"],
            "rebuild_workers": rebuilt["rebuild_workers"],
            "rebuild_1_process_seconds": rebuilt["rebuild_1_process_seconds"],
            "rebuild_per_s": rebuild_per_s, "raw_read_seconds": rebuilt["raw_read_seconds"],
            "raw_read_default_gc_seconds": rebuilt.get("raw_read_default_gc_seconds"),
            "raw_read_per_s": raw_per_s, "page": rebuilt["page"],
            "peak_rss_mib_with_rebuild": rebuilt["vmhwm_kib_rebuild"] / mib,
            "raw_read_and_decode_seconds": rebuilt.get("raw_read_decode_seconds"),
            "ratio_vs_read_and_decode": (rebuilt["raw_read_decode_seconds"] / rebuilt["rebuild_seconds"]
                                         if rebuilt.get("raw_read_decode_seconds") else None),
        },
        "children": {str(n): r for n, r in runs.items()},
    }
    ctx.shared["store_points"] = {n: (r["inbound"] / r["ingest_seconds"], r["stored"]) for n, r in runs.items()}
    return figures, details
