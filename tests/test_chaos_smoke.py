"""The chaos harness runs end to end on a small input (``make chaos`` runs it on 100k events):
every kind of service killed, the connections terminated, the server crashed, foreign messages
on lifecycle.events set aside, and nothing lost or doubled. Takes about half a minute."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent


def test_a_small_chaos_run_loses_nothing_and_doubles_nothing(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "chaos.run", "--quick", "--events", "1500", "--strict",
         "--output", str(output), "--logs", str(tmp_path / "logs")],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(output.read_text())
    assert results["ok"] and results["lost"] == 0 and results["doubled"] == 0
    assert results["events_in"] == results["accepted"] + results["duplicates"] + results["rejected"]
    assert set(results["kills_by_service"]) == {"ingest", "relay", "project"}, results["kills_by_service"]
    assert results["connection_terminations_survived"] == 3
    assert results["server_crashes_survived"] == 1
    assert results["views_equal_embedded_run"] and results["figures_equal_reference"]
    foreign = results["foreign_messages_on_events_topic"]
    assert foreign["set_aside"] == foreign["sent"] > 0 and not foreign["failed"]
