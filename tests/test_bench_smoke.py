"""The benchmark scripts run and write their results file (``make bench`` runs them in full).

Only the cheap embedded benchmarks, at the smallest sizes; nothing here asserts on speed:
figures from a test run on a busy machine would prove nothing.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_quick_mode_writes_every_figure_it_ran(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--tiny", "--only", "ingest_sqlite", "replay",
         "--output", str(output), "--workdir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    results = json.loads(output.read_text())

    for name in ("ingest_sqlite", "ingest_sqlite_per_stored_event", "replay"):
        value = results[name]
        assert isinstance(value, float) and math.isfinite(value) and value > 0, (name, value)
    assert results["targets"] == {"ingest_sqlite": ">= 0.8", "replay": "<= 2"}
    assert set(results["passed"]) == {"ingest_sqlite", "replay"}
    assert all(isinstance(v, bool) for v in results["passed"].values())

    ours = results["details"]["ingest_sqlite"]["ours"]
    assert ours["runs"] == 2 and ours["inbound"] == 2 * results["sizes"]["ingest"]  # twice, alternating
    assert ours["stored"] > ours["inbound"]  # a receipt per inbound event, plus the domain events
    assert results["details"]["replay"]["customer_events"] == results["sizes"]["replay_events"]

    machine = results["machine"]
    for key in ("cpu_model", "cores", "memory_gib", "python", "date"):
        assert machine[key], key
    assert "bench.run" in results["command"] and "--tiny" in results["command"]
    assert "ingest_sqlite" in done.stdout and "replay" in done.stdout  # the printed table
