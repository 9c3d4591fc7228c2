"""The summary tables (``projections.tables.SUMMARY_TABLES``) as of a date, gathered from the
entity rows a part at a time.

Every summary counts or sums over customers and deals (the RFM scores rank customers among all,
so those are given last). ``SummaryParts`` holds those counts and sums for the entities it was
given, and two of them for disjoint sets of entities add up (``add``). So a rebuild gathers them
from the rows it has just derived, in memory, each process for its own range of entities, and
the summaries need no read of the views afterwards. A refresh gathers them from the whole store
(``compute_summaries``). The figures are the reports' own (``projections.reports``: one
definition of each).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any

from lifecycle.stages import StageModel
from projections import catalog, reports
from projections.reports import Row
from projections.store import ViewStore


class SummaryParts:
    """The counts and sums behind the summary tables, of the entities given so far. Plain
    values only: it is pickled from a rebuild's worker processes to their parent."""

    def __init__(self, model: StageModel, as_of: date):
        self.as_of = as_of
        self.sequence: Sequence[str] = model.main_sequence
        self.lifecycle_reached = [0] * len(self.sequence)
        self.deals_reached = [0] * len(reports.DEAL_FUNNEL)
        self.forecast = reports.ForecastTotals()
        self.cohorts: reports.CohortCounts = {}
        self.rfm: list[dict[str, Any]] = []  # unscored, until ``tables``
        self.advocacy: dict[str, dict[str, int]] = {}

    def add_rows(self, tables: Mapping[str, Sequence[Row]]) -> None:
        """Rows by table name (those of a rebuild's chunk): in each table given, every row of
        each customer or deal it holds, and of none given before in that table."""
        empty: Sequence[Row] = ()
        stages = tables.get("stage_history", empty)
        deal_stages = tables.get("deal_stage_history", empty)
        self.add_funnels(stages, deal_stages)
        self.add_forecast(deal_stages)
        self.add_purchases(tables.get("customer_purchases", empty))
        self.add_advocacy(tables.get("customer_feedback", empty), tables.get("customer_referrals", empty), stages)

    def add_funnels(self, stage_history: Iterable[Row], deal_stage_history: Iterable[Row]) -> None:
        _add_lists(self.lifecycle_reached, reports.lifecycle_reached(self.sequence, stage_history, self.as_of))
        _add_lists(self.deals_reached, reports.deals_reached(deal_stage_history, self.as_of))

    def add_forecast(self, deal_stage_history: Iterable[Row]) -> None:
        self.forecast.add(reports.forecast_totals(deal_stage_history, self.as_of))

    def add_purchases(self, purchases: Iterable[Row]) -> None:
        customers = reports.purchases_by_customer(purchases, self.as_of)
        reports.add_cohort_counts(self.cohorts, reports.cohort_counts(customers))
        self.rfm += reports.rfm_unscored(customers, self.as_of)

    def add_advocacy(self, feedback: Iterable[Row], referrals: Iterable[Row], stage_history: Iterable[Row]) -> None:
        reports.add_counts(self.advocacy, reports.advocacy_counts(feedback, referrals, stage_history, self.as_of))

    def add(self, other: SummaryParts) -> None:
        """Those of another set of entities, as of the same date."""
        if other.as_of != self.as_of or other.sequence != self.sequence:
            raise ValueError("summary parts of different dates or stage models do not add up")
        _add_lists(self.lifecycle_reached, other.lifecycle_reached)
        _add_lists(self.deals_reached, other.deals_reached)
        self.forecast.add(other.forecast)
        reports.add_cohort_counts(self.cohorts, other.cohorts)
        self.rfm += other.rfm
        reports.add_counts(self.advocacy, other.advocacy)

    def tables(self) -> dict[str, list[dict[str, Any]]]:
        """Every summary table. Once only: it scores the RFM rows in place."""
        as_of = self.as_of
        return {
            "pipeline_funnel": reports.funnel_rows("lifecycle", self.sequence, self.lifecycle_reached, as_of)
            + reports.funnel_rows("deals", reports.DEAL_FUNNEL, self.deals_reached, as_of),
            "retention_cohorts": reports.cohort_rows(self.cohorts, as_of),
            "customer_rfm": reports.scored_rfm(self.rfm),
            "deal_forecast": reports.forecast_rows(self.forecast, as_of),
            "advocacy_nps": reports.advocacy_rows(self.advocacy, as_of),
        }


def _add_lists(total: list[int], part: Sequence[int]) -> None:
    for i, n in enumerate(part):
        total[i] += n


def compute_summaries(store: ViewStore, model: StageModel, as_of: date) -> dict[str, list[dict[str, Any]]]:
    """Every summary table as of ``as_of``, from the whole store: the reports ``lifecycle
    report`` gives. The entity tables are streamed (``iter_rows``), each read for the columns
    its sums need: memory follows the customers and deals, not the rows."""
    parts = SummaryParts(model, as_of)
    parts.add_funnels(catalog.funnel_stages(store), catalog.funnel_deal_stages(store))
    parts.add_forecast(store.iter_rows("deal_stage_history"))
    parts.add_purchases(catalog.report_purchases(store))
    parts.add_advocacy(store.iter_rows("customer_feedback"), store.iter_rows("customer_referrals"),
                       catalog.advocate_entries(store))
    return parts.tables()
