"""The command line as a user meets it: clear one-line errors, exit codes, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.events import interaction, purchase, request


def lifecycle(tmp_path: Path, *args: str, stdin: bytes | None = None, **env: str) -> subprocess.CompletedProcess[bytes]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LIFECYCLE_")}
    environ.update({"LIFECYCLE_DATA_DIR": str(tmp_path / "data"), **env})
    return subprocess.run([sys.executable, "-m", "lifecycle", *args], env=environ, input=stdin,
                          capture_output=True, timeout=300)


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (("report", "bogus"), {}, "unknown report 'bogus'"),
        (("report", "rfm", "--as-of", "2025-13-01"), {}, "is not a date"),
        (("report", "rfm", "--format", "xml"), {}, "--format 'xml'"),
        (("ingest", "/no/such/file.jsonl"), {}, "cannot read /no/such/file.jsonl"),
        (("customer", "show", "shop:1", "--as-of", "yesterday"), {}, "is not a time"),
        (("projections", "rebuild", "nope"), {}, "unknown view 'nope'"),
        (("report", "rfm"), {"LIFECYCLE_STAGE_MODEL": "/no/model.json"}, "cannot read stage model"),
        (("report", "rfm"), {"LIFECYCLE_DATABASE_URL": "mysql://x/y"}, "unsupported LIFECYCLE_DATABASE_URL"),
        (("report", "rfm"), {"LIFECYCLE_BATCH_SIZE": "many"}, "LIFECYCLE_BATCH_SIZE must be a whole number"),
        (("report", "rfm"), {"LIFECYCLE_CACHE_CUSTOMERS": "0"}, "LIFECYCLE_CACHE_CUSTOMERS must be at least 1"),
        (("report", "rfm"), {"LIFECYCLE_WORKERS": "0"}, "LIFECYCLE_WORKERS must be at least 1"),
    ],
)
def test_user_mistakes_give_one_clear_line_and_exit_2(tmp_path, args, env, message):
    done = lifecycle(tmp_path, *args, **env)
    stderr = done.stderr.decode()
    assert done.returncode == 2, stderr
    assert message in stderr
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr


def test_an_unreachable_database_is_a_clear_error(tmp_path):
    done = lifecycle(tmp_path, "report", "rfm", LIFECYCLE_DATABASE_URL="postgresql://postgres@127.0.0.1:1/nothing")
    assert done.returncode == 2
    assert b"cannot open the event store (postgresql://127.0.0.1:1/nothing)" in done.stderr
    assert b"Traceback" not in done.stderr


def test_ingest_counts_and_exit_status_tell_what_was_rejected(tmp_path):
    lines = [
        interaction("shop:1", "2026-01-01T10:00:00Z", id="a"),
        b"{\"broken\": ",
        request("shop:1", "2026-01-02T10:00:00Z", "advocate", id="b"),
        b"",
        purchase("shop:1", "2026-01-03T10:00:00Z", "o-1", id="c"),
    ]
    done = lifecycle(tmp_path, "ingest", "-", stdin=b"\n".join(lines))
    assert done.returncode == 1
    assert b"accepted 2  duplicate 0  rejected 2" in done.stdout
    assert b"not valid JSON" in done.stderr and b"does not allow" in done.stderr
    rejections = lifecycle(tmp_path, "customer", "history", "shop:1", "--format", "json")
    history = json.loads(rejections.stdout)
    assert any(row["event"] == "Rejected (refused)" for row in history)
    assert {row["inbound_id"] for row in history if row["event"] == "PurchaseRecorded"} == {"c"}


def test_reports_in_every_format(tmp_path):
    lifecycle(tmp_path, "ingest", "-", stdin=purchase("shop:1", "2026-01-01T10:00:00Z", "o-1"))
    as_json = json.loads(lifecycle(tmp_path, "report", "rfm", "--as-of", "2026-02-01", "--format", "json").stdout)
    assert as_json[0]["customer_key"] == "shop:1" and as_json[0]["age_days"] == 31
    as_csv = lifecycle(tmp_path, "report", "rfm", "--as-of", "2026-02-01", "--format", "csv").stdout.decode()
    assert as_csv.splitlines()[0].startswith("customer_id,customer_key,first_purchase_date")
    table = lifecycle(tmp_path, "report", "funnel", "--as-of", "2026-02-01")
    assert table.returncode == 0 and b"awareness" in table.stdout


def test_customer_show_as_of_business_time(tmp_path):
    lifecycle(tmp_path, "ingest", "-", stdin=b"\n".join([
        interaction("shop:1", "2026-01-01T10:00:00Z"), purchase("shop:1", "2026-02-01T10:00:00Z", "o-1"),
    ]))
    def stage(*extra: str) -> str:
        done = lifecycle(tmp_path, "customer", "show", "shop:1", "--format", "json", *extra)
        return json.loads(done.stdout)[0]["stage"]
    assert stage() == "customer"
    assert stage("--as-of", "2026-01-15T00:00:00Z") == "engagement"
    missing = lifecycle(tmp_path, "customer", "show", "shop:1", "--as-of", "2025-01-01")
    assert missing.returncode == 1 and b"no customer 'shop:1' at that moment" in missing.stderr


def test_schemas_export_writes_the_committed_files(tmp_path):
    done = lifecycle(tmp_path, "schemas", "export", str(tmp_path / "out"))
    assert done.returncode == 0
    committed = Path(__file__).parent.parent / "schemas" / "json"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in committed.iterdir())


def test_services_need_a_broker_and_a_known_name(tmp_path):
    done = lifecycle(tmp_path, "run", "relay")
    assert done.returncode == 2 and b"LIFECYCLE_KAFKA_BOOTSTRAP is not set" in done.stderr
    done = lifecycle(tmp_path, "run", "everything")
    assert done.returncode == 2 and b"unknown service 'everything'" in done.stderr


def test_demo_prints_the_pipeline_retention_and_advocacy_reports(tmp_path):
    done = lifecycle(tmp_path, "demo", "--customers", "300", "--seed", "2", COLUMNS="200")
    assert done.returncode == 0, done.stderr
    text = done.stdout.decode()
    for title in ("Sales pipeline by stage", "Retention by months since first purchase", "NPS and advocacy by month"):
        assert title in text
    assert "churned by sweep" in text and "rejected" in text


def test_rebuild_gives_the_same_reports(tmp_path):
    from datetime import date

    from lifecycle.simulate import simulate

    lines = simulate(customers=120, seed=9, start=date(2024, 1, 1), days=400)
    lifecycle(tmp_path, "ingest", "-", stdin=b"\n".join(lines))
    reports = {kind: lifecycle(tmp_path, "report", kind, "--as-of", "2025-01-15", "--format", "json").stdout
               for kind in ("funnel", "forecast", "cohorts", "advocacy", "rfm")}
    done = lifecycle(tmp_path, "projections", "rebuild")
    assert done.returncode == 0 and b"rebuilt all views" in done.stdout
    for kind, before in reports.items():
        after = lifecycle(tmp_path, "report", kind, "--as-of", "2025-01-15", "--format", "json").stdout
        assert json.loads(after) == json.loads(before), kind


def test_a_late_purchase_gives_different_answers_by_business_and_recorded_time(tmp_path):
    import time
    from datetime import UTC, datetime

    lifecycle(tmp_path, "ingest", "-", stdin=interaction("shop:1", "2026-01-01T10:00:00Z"))
    time.sleep(0.05)
    between = datetime.now(UTC).isoformat()  # the purchase had happened but was not yet known
    time.sleep(0.05)
    lifecycle(tmp_path, "ingest", "-", stdin=purchase("shop:1", "2026-01-05T10:00:00Z", "o-1"))

    def stage(*extra: str) -> str:
        done = lifecycle(tmp_path, "customer", "show", "shop:1", "--format", "json", *extra)
        return json.loads(done.stdout)[0]["stage"]

    assert stage("--as-of", "2026-01-10T00:00:00Z") == "customer"  # true by business time
    assert stage("--known-at", between) == "engagement"  # what the system knew then
    history = json.loads(lifecycle(tmp_path, "customer", "history", "shop:1", "--format", "json").stdout)
    bought = next(r for r in history if r["event"] == "PurchaseRecorded")
    assert bought["occurred_at"].startswith("2026-01-05") and bought["recorded_at"] > between
