"""The way a user checks it: ingest a file with the CLI, read RFM as JSON, compare with
an independent computation from the same lines."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import defaultdict
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from lifecycle.simulate import purchases_only

AS_OF = date(2025, 3, 1)


def lifecycle(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIFECYCLE_")}
    env["LIFECYCLE_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "lifecycle", *args], env=env, capture_output=True, text=True, timeout=600
    )


def expected_rfm(lines: list[bytes], as_of: date) -> dict[str, dict]:
    """Independent of the engine: straight from the CloudEvents, by the DESIGN.md definition."""
    days: dict[str, dict[date, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for line in lines:
        event = json.loads(line)
        day = datetime.fromisoformat(event["time"].replace("Z", "+00:00")).date()
        if day <= as_of:
            days[event["subject"]][day] += Decimal(event["data"]["amount"])
    result = {}
    for key, per_day in days.items():
        ordered = sorted(per_day)
        repeat = [per_day[d] for d in ordered[1:]]
        result[key] = {
            "first_purchase_date": ordered[0].isoformat(),
            "frequency": len(ordered) - 1,
            "recency_days": (ordered[-1] - ordered[0]).days,
            "age_days": (as_of - ordered[0]).days,
            "monetary": (sum(repeat) / len(repeat)) if repeat else Decimal(0),
        }
    return result


@pytest.fixture(scope="module")
def lines() -> list[bytes]:
    return purchases_only(customers=2000, seed=11, start=date(2024, 1, 1), days=500)


def report(data_dir: Path) -> list[dict]:
    done = lifecycle(data_dir, "report", "rfm", "--as-of", AS_OF.isoformat(), "--format", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def ingest(data_dir: Path, lines: list[bytes]) -> str:
    path = data_dir.parent / f"{data_dir.name}.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    done = lifecycle(data_dir, "ingest", str(path))
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_rfm_matches_an_independent_computation_and_survives_reingest_and_shuffle(tmp_path, lines):
    data = tmp_path / "a"
    summary = ingest(data, lines)
    assert f"accepted {len(lines)}  duplicate 0  rejected 0" in summary
    rows = report(data)
    want = expected_rfm(lines, AS_OF)
    assert {r["customer_key"] for r in rows} == set(want)
    for row in rows:
        exp = want[row["customer_key"]]
        for column in ("first_purchase_date", "frequency", "recency_days", "age_days"):
            assert row[column] == exp[column], (row["customer_key"], column)
        assert Decimal(str(row["monetary"])) == exp["monetary"].quantize(Decimal("0.01")), row["customer_key"]
        assert 1 <= row["r_score"] <= 5 and 1 <= row["f_score"] <= 5 and 1 <= row["m_score"] <= 5
        assert row["segment"]

    # The same file again: every line a duplicate, no report changes.
    assert f"accepted 0  duplicate {len(lines)}  rejected 0" in ingest(data, lines)
    assert report(data) == rows

    # The same lines in another order, into a fresh store: identical report.
    shuffled = list(lines)
    random.Random(5).shuffle(shuffled)
    other = tmp_path / "b"
    ingest(other, shuffled)
    assert report(other) == rows
