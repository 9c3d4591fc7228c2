"""The summary tables as a sum of parts (``projections.summaries``): what a rebuild's processes
gather from the rows they derive equals what a refresh computes from the whole store."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lifecycle.simulate import simulate
from lifecycle.stages import load_stage_model
from projections.summaries import SummaryParts, compute_summaries
from projections.tables import SUMMARY_TABLES
from tests.backends import runtime_factory

START = date(2024, 1, 1)
ENTITY = {"stage_history": "customer_id", "deal_stage_history": "deal_id", "customer_purchases": "customer_id",
          "customer_feedback": "customer_id", "customer_referrals": "customer_id"}


@pytest.fixture(scope="module")
def followed():
    """A simulated population with deals, followed step by step on the in-memory store."""
    rt = runtime_factory("memory", None, lambda: "")()
    rt.ingest_lines(simulate(customers=80, seed=5, start=START, days=300))
    rt.runner.catch_up(START + timedelta(days=300))
    assert all(rt.views.rows(table) for table in ENTITY)  # something to sum in every one
    yield rt
    rt.close()


def test_the_parts_give_every_summary_table():
    tables = SummaryParts(load_stage_model(None), date(2026, 1, 1)).tables()
    assert sorted(tables) == sorted(t.name for t in SUMMARY_TABLES)
    assert tables["customer_rfm"] == tables["retention_cohorts"] == tables["advocacy_nps"] == []


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, 330), st.integers(1, 5), st.randoms(use_true_random=False))
def test_parts_of_disjoint_entities_add_up_to_the_summaries_of_the_store(followed, day, parts, rnd):
    """Whatever the entities' grouping into parts and the order the parts are added in, the
    tables equal those of ``compute_summaries`` (repr: Decimal exponents and row order too)."""
    as_of = START + timedelta(days=day)
    model = followed.engine.model
    groups: list[dict[str, list]] = [defaultdict(list) for _ in range(parts)]
    part_of: dict[str, int] = {}
    for table, entity in ENTITY.items():
        for row in followed.views.rows(table):
            groups[part_of.setdefault(row[entity], rnd.randrange(parts))][table].append(row)
    gathered = []
    for rows in groups:
        part = SummaryParts(model, as_of)
        for table in rnd.sample(sorted(rows), len(rows)):  # tables given a few at a time
            part.add_rows({table: rows[table]})
        gathered.append(part)
    rnd.shuffle(gathered)
    total = gathered[0]
    for part in gathered[1:]:
        total.add(part)
    assert repr(total.tables()) == repr(compute_summaries(followed.views, model, as_of))


def test_parts_of_different_dates_do_not_add_up():
    model = load_stage_model(None)
    with pytest.raises(ValueError, match="different dates"):
        SummaryParts(model, date(2026, 1, 1)).add(SummaryParts(model, date(2026, 1, 2)))
