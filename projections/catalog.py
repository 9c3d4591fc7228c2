"""The report kinds of ``lifecycle report``, each a function of the view store and a date."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date
from typing import Any

from lifecycle.stages import StageModel
from projections import analytics, reports
from projections.store import ViewStore

Report = Callable[[ViewStore, StageModel, date], list[dict[str, Any]]]


# The reads of the entity tables that the reports and the summary tables
# (``projections.summaries.compute_summaries``) share: each for the columns its figures need.


def funnel_stages(s: ViewStore) -> Iterable[reports.Row]:
    return s.iter_rows("stage_history", columns=("customer_id", *reports.FUNNEL_COLUMNS))


def funnel_deal_stages(s: ViewStore) -> Iterable[reports.Row]:
    return s.iter_rows("deal_stage_history", columns=("deal_id", *reports.FUNNEL_COLUMNS))


def advocate_entries(s: ViewStore) -> Iterable[reports.Row]:
    """The advocacy figures count entries into advocate only: their pass over the stages reads those."""
    return s.iter_rows("stage_history", where={"stage": "advocate"}, columns=("stage", "entered_at"))


def report_purchases(s: ViewStore) -> Iterable[reports.Row]:
    return s.iter_rows("customer_purchases", columns=reports.PURCHASE_COLUMNS)


REPORTS: dict[str, tuple[str, Report]] = {
    "pipeline": ("Sales pipeline by stage", lambda s, m, d: reports.pipeline_by_stage(s.iter_rows("deal_stage_history"), d)),
    "funnel": ("Funnels: lifecycle stages and deal pipeline", lambda s, m, d: reports.lifecycle_funnel(
        m, funnel_stages(s), d) + reports.deal_funnel(funnel_deal_stages(s), d)),
    "forecast": ("Deal forecast by close month and category", lambda s, m, d: reports.deal_forecast(
        s.iter_rows("deal_stage_history"), d)),
    "retention": ("Retention by months since first purchase", lambda s, m, d: reports.retention_by_month(
        reports.retention_cohorts(report_purchases(s), d))),
    "cohorts": ("Retention cohorts", lambda s, m, d: reports.retention_cohorts(report_purchases(s), d)),
    "advocacy": ("NPS and advocacy by month", lambda s, m, d: reports.advocacy_nps(
        s.iter_rows("customer_feedback"), s.iter_rows("customer_referrals"), advocate_entries(s), d)),
    "rfm": ("RFM per customer", lambda s, m, d: reports.customer_rfm(report_purchases(s), d)),
    "funnel-strict": ("Lifecycle funnel, stages entered in order, with time to convert",
                      lambda s, m, d: analytics.lifecycle_funnel_strict(m, s.iter_rows("stage_history"), d)),
    "funnel-any-order": ("Lifecycle funnel, stage or a later one reached, with time to convert",
                         lambda s, m, d: analytics.lifecycle_funnel_any_order(m, s.iter_rows("stage_history"), d)),
    "stages": ("Time in stage per lifecycle stage", lambda s, m, d: analytics.time_in_stage(
        m, s.iter_rows("stage_history"), d)),
    "lifecycle-weekly": ("Customers new, returning, resurrecting, dormant per ISO week (active = purchased)",
                         lambda s, m, d: analytics.lifecycle_weekly(s.iter_rows("customer_purchases"), d)),
    "lifecycle-monthly": ("Customers new, returning, resurrecting, dormant per month (active = purchased)",
                          lambda s, m, d: analytics.lifecycle_monthly(s.iter_rows("customer_purchases"), d)),
}


def build_report(kind: str, store: ViewStore, model: StageModel, as_of: date) -> list[dict[str, Any]]:
    return REPORTS[kind][1](store, model, as_of)
