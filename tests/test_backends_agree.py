"""The same input on SQLite and on the real PostgreSQL server gives the same views and reports."""

from __future__ import annotations

from datetime import date

import pytest

from lifecycle.simulate import simulate
from projections.catalog import REPORTS, build_report
from projections.tables import ALL_TABLES
from tests.backends import runtime_factory

AS_OF = date(2025, 1, 1)
TIME_COLUMNS = {"updated_at", "recorded_at"}


def snapshot(rt) -> dict:
    views = {}
    for table in ALL_TABLES:
        if table.internal:
            continue
        rows = [{k: v for k, v in r.items() if k not in TIME_COLUMNS} for r in rt.views.rows(table.name)]
        views[table.name] = sorted(rows, key=repr)
    reports = {kind: build_report(kind, rt.views, rt.engine.model, AS_OF) for kind in REPORTS}
    return {"views": views, "reports": reports}


@pytest.mark.integration
def test_sqlite_and_postgres_agree_on_a_simulated_population(tmp_path, postgres_url):
    lines = simulate(customers=150, seed=3, start=date(2024, 1, 1), days=366)
    results = {}
    for kind in ("sqlite", "postgres"):
        rt = runtime_factory(kind, tmp_path / kind, lambda: postgres_url)()
        try:
            rt.ingest_lines(lines)
            rt.sweep(AS_OF)
            rt.runner.catch_up(AS_OF)
            results[kind] = snapshot(rt)
        finally:
            rt.close()
    assert results["sqlite"]["views"]["customer_current"]
    assert results["sqlite"]["views"]["rejections"]  # the simulator mixes in malformed lines
    assert results["sqlite"] == results["postgres"]
