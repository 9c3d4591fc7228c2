"""Summary reports as pure functions of the per-entity rows, as of a date.

The same functions fill the summary tables (as of today) and answer
``lifecycle report KIND --as-of DATE``: one definition of every figure.
Everything is on business time: an event counts on a date D when it happened
on or before D (UTC), whenever it arrived.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from lifecycle.deal import OPEN_STAGES, PIPELINE, PIPELINE_BY_NAME
from lifecycle.stages import StageModel

Row = Mapping[str, Any]
RATE = Decimal("0.0001")
CENT = Decimal("0.01")


def end_of(day: date) -> datetime:
    """The first instant after ``day`` (UTC): events before it count on ``day``."""
    return datetime.combine(day + timedelta(days=1), time.min, tzinfo=UTC)


def _rate(part: int, whole: int) -> Decimal | None:
    return (Decimal(part) / Decimal(whole)).quantize(RATE, ROUND_HALF_EVEN) if whole else None


def _month(at: date | datetime) -> str:
    return f"{at.year:04d}-{at.month:02d}"


def _months_between(first: str, later: str) -> int:
    return (int(later[:4]) - int(first[:4])) * 12 + int(later[5:]) - int(first[5:])


# -- funnels ------------------------------------------------------------------------


#: The deal funnel's stages: the pipeline up to closed_won.
DEAL_FUNNEL = OPEN_STAGES + ("closed_won",)


def lifecycle_funnel(model: StageModel, stage_history: Iterable[Row], as_of: date) -> list[dict[str, Any]]:
    """Per main-sequence stage: customers that reached it or a later one by ``as_of``."""
    sequence = model.main_sequence
    return funnel_rows("lifecycle", sequence, lifecycle_reached(sequence, stage_history, as_of), as_of)


def deal_funnel(deal_stage_history: Iterable[Row], as_of: date) -> list[dict[str, Any]]:
    """Per pipeline stage up to closed_won: deals that reached it or a later one."""
    return funnel_rows("deals", DEAL_FUNNEL, deals_reached(deal_stage_history, as_of), as_of)


def lifecycle_reached(sequence: Sequence[str], stage_history: Iterable[Row], as_of: date) -> list[int]:
    """Per stage of ``sequence``: the customers of ``stage_history`` (all the rows of each) that
    reached it or a later one by ``as_of``. Counts of disjoint sets of customers add up."""
    return _reached(_furthest(stage_history, "customer_id", sequence, as_of), len(sequence))


def deals_reached(deal_stage_history: Iterable[Row], as_of: date) -> list[int]:
    """``lifecycle_reached`` for deals and ``DEAL_FUNNEL``."""
    return _reached(_furthest(deal_stage_history, "deal_id", DEAL_FUNNEL, as_of), len(DEAL_FUNNEL))


#: The columns of a stage table ``_furthest`` reads besides the entity's: the stage tables are the
#: longest the summaries read, and decoding the rest of each row was most of a funnel's time.
FUNNEL_COLUMNS = ("stage", "entered_at")


def _furthest(history: Iterable[Row], entity: str, sequence: Sequence[str], as_of: date) -> list[int]:
    """Each entity's furthest position in ``sequence`` entered by the end of ``as_of``."""
    furthest: dict[str, int] = {}
    cutoff = end_of(as_of)
    for row in history:
        if row["entered_at"] < cutoff and row["stage"] in sequence:
            pos = sequence.index(row["stage"])
            furthest[row[entity]] = max(furthest.get(row[entity], -1), pos)
    return list(furthest.values())


def _reached(furthest: Iterable[int], stages: int) -> list[int]:
    reached = [0] * stages
    for pos in furthest:
        for i in range(pos + 1):
            reached[i] += 1
    return reached


def funnel_rows(funnel: str, sequence: Sequence[str], reached: Sequence[int], as_of: date) -> list[dict[str, Any]]:
    """The rows of a funnel from its counts per stage (``lifecycle_reached``, ``deals_reached``)."""
    rows = []
    for i, stage in enumerate(sequence):
        converted = reached[i + 1] if i + 1 < len(sequence) else 0
        rows.append({
            "funnel": funnel, "position": i, "stage": stage, "reached": reached[i],
            "converted_to_next": converted,
            "conversion_rate": _rate(converted, reached[i]) if i + 1 < len(sequence) else None,
            "as_of": as_of,
        })
    return rows


# -- deals --------------------------------------------------------------------------


def deal_stages_as_of(deal_stage_history: Iterable[Row], as_of: date) -> dict[str, Row]:
    """Each deal's stage row in force at the end of ``as_of`` (deals not yet opened are absent)."""
    cutoff = end_of(as_of)
    latest: dict[str, Row] = {}
    for row in deal_stage_history:
        if row["entered_at"] < cutoff:
            prior = latest.get(row["deal_id"])
            if prior is None or row["seq"] > prior["seq"]:
                latest[row["deal_id"]] = row
    return latest


def deal_forecast(deal_stage_history: Iterable[Row], as_of: date) -> list[dict[str, Any]]:
    """Deals by close month and forecast category as they stood at the end of ``as_of``."""
    return forecast_rows(forecast_totals(deal_stage_history, as_of), as_of)


@dataclass
class ForecastTotals:
    """The sums behind ``deal_forecast``: those of disjoint sets of deals add up (``add``)."""

    groups: dict[tuple[str, str, str], list[Any]] = field(default_factory=dict)  # -> [deals, amount, weighted]
    won: dict[str, int] = field(default_factory=dict)  # per close month
    closed: dict[str, int] = field(default_factory=dict)

    def add(self, other: ForecastTotals) -> None:
        for key, (deals, amount, weighted) in other.groups.items():
            group = self.groups.setdefault(key, [0, Decimal(0), Decimal(0)])
            group[0] += deals
            group[1] += amount
            group[2] += weighted
        for mine, theirs in ((self.won, other.won), (self.closed, other.closed)):
            for month, n in theirs.items():
                mine[month] = mine.get(month, 0) + n


def forecast_totals(deal_stage_history: Iterable[Row], as_of: date) -> ForecastTotals:
    """The sums of the deals of ``deal_stage_history`` (all the rows of each)."""
    totals = ForecastTotals()
    groups, won, closed = totals.groups, totals.won, totals.closed
    for row in deal_stages_as_of(deal_stage_history, as_of).values():
        stage = PIPELINE_BY_NAME[row["stage"]]
        if stage.is_closed:
            month = _month(row["entered_at"])
            closed[month] = closed.get(month, 0) + 1
            won[month] = won.get(month, 0) + (stage.name == "closed_won")
        elif row["expected_close"] is not None:
            month = _month(row["expected_close"])
        else:
            month = "unscheduled"
        group = groups.setdefault((month, stage.forecast_category, row["currency"] or ""), [0, Decimal(0), Decimal(0)])
        amount = row["amount"] or Decimal(0)
        group[0] += 1
        group[1] += amount
        group[2] += (amount * stage.probability).quantize(CENT, ROUND_HALF_EVEN)
    return totals


def forecast_rows(totals: ForecastTotals, as_of: date) -> list[dict[str, Any]]:
    order = {s.forecast_category: i for i, s in enumerate(PIPELINE)}
    return [
        {"close_month": m, "forecast_category": cat, "currency": cur, "deals": deals, "amount": amount,
         "weighted_amount": weighted, "win_rate": _rate(totals.won.get(m, 0), totals.closed.get(m, 0)),
         "as_of": as_of}
        for (m, cat, cur), (deals, amount, weighted)
        in sorted(totals.groups.items(), key=lambda kv: (kv[0][0], order[kv[0][1]], kv[0][2]))
    ]


# -- retention ------------------------------------------------------------------------


@dataclass
class CustomerPurchases:
    """One customer's purchases up to a date, as the retention and RFM reports read them."""

    customer_key: str
    first: tuple[datetime, str]  # the earliest (occurred_at, order_id)
    currency: str  # the first purchase's
    by_currency: dict[str, dict[date, Decimal]] = field(default_factory=dict)  # money per day

    def days(self) -> set[date]:
        return {day for amounts in self.by_currency.values() for day in amounts}


#: The columns of ``customer_purchases`` that ``purchases_by_customer`` reads.
PURCHASE_COLUMNS = ("customer_id", "customer_key", "order_id", "occurred_at", "purchase_date", "amount", "currency")


def purchases_by_customer(purchases: Iterable[Row], as_of: date) -> dict[str, CustomerPurchases]:
    """One pass in any order over purchase rows (they may be streamed), those up to ``as_of``."""
    customers: dict[str, CustomerPurchases] = {}
    for row in purchases:
        if row["purchase_date"] > as_of:
            continue
        moment = (row["occurred_at"], row["order_id"])
        c = customers.get(row["customer_id"])
        if c is None:
            c = customers[row["customer_id"]] = CustomerPurchases(row["customer_key"], moment, row["currency"])
        elif moment < c.first:
            c.first, c.currency = moment, row["currency"]
        amounts = c.by_currency.setdefault(row["currency"], {})
        amounts[row["purchase_date"]] = amounts.get(row["purchase_date"], Decimal(0)) + row["amount"]
    return customers


def retention_cohorts(purchases: Iterable[Row], as_of: date) -> list[dict[str, Any]]:
    """First-purchase month x months since: share of the cohort purchasing in that month."""
    return cohorts_of(purchases_by_customer(purchases, as_of), as_of)


def cohorts_of(customers: Mapping[str, CustomerPurchases], as_of: date) -> list[dict[str, Any]]:
    return cohort_rows(cohort_counts(customers), as_of)


#: Per first-purchase month: the cohort's size, and its customers active in each month.
CohortCounts = dict[str, tuple[int, dict[str, int]]]


def cohort_counts(customers: Mapping[str, CustomerPurchases]) -> CohortCounts:
    """The counts behind ``cohorts_of``: those of disjoint sets of customers add up
    (``add_cohort_counts``)."""
    counts: CohortCounts = {}
    for c in customers.values():
        active = {_month(day) for day in c.days()}
        size, by_month = counts.get(cohort := min(active), (0, {}))
        for month in active:
            by_month[month] = by_month.get(month, 0) + 1
        counts[cohort] = (size + 1, by_month)
    return counts


def add_cohort_counts(counts: CohortCounts, other: CohortCounts) -> None:
    for cohort, (size, by_month) in other.items():
        mine, mine_by_month = counts.get(cohort, (0, {}))
        for month, n in by_month.items():
            mine_by_month[month] = mine_by_month.get(month, 0) + n
        counts[cohort] = (mine + size, mine_by_month)


def cohort_rows(counts: CohortCounts, as_of: date) -> list[dict[str, Any]]:
    last = _month(as_of)
    rows = []
    for cohort in sorted(counts):
        size, by_month = counts[cohort]
        for k in range(_months_between(cohort, last) + 1):
            active = by_month.get(_add_months(cohort, k), 0)
            rows.append({
                "cohort_month": cohort, "months_since": k, "cohort_size": size,
                "active_customers": active, "retention_rate": _rate(active, size),
                "as_of": as_of,
            })
    return rows


def _add_months(month: str, k: int) -> str:
    total = int(month[:4]) * 12 + int(month[5:]) - 1 + k
    return f"{total // 12:04d}-{total % 12 + 1:02d}"


# -- advocacy ---------------------------------------------------------------------------


_ADVOCACY_COUNTS = ("responses", "promoters", "passives", "detractors", "referrals", "new_advocates")


def advocacy_nps(
    feedback: Iterable[Row], referrals: Iterable[Row], stage_history: Iterable[Row], as_of: date
) -> list[dict[str, Any]]:
    return advocacy_rows(advocacy_counts(feedback, referrals, stage_history, as_of), as_of)


def advocacy_counts(
    feedback: Iterable[Row], referrals: Iterable[Row], stage_history: Iterable[Row], as_of: date
) -> dict[str, dict[str, int]]:
    """Per month: the counts behind ``advocacy_nps`` (any rows: counts add up, ``add_counts``)."""
    cutoff = end_of(as_of)
    months: dict[str, dict[str, int]] = {}

    def month(at: datetime) -> dict[str, int]:
        key = _month(at)
        found = months.get(key)
        if found is None:
            found = months[key] = dict.fromkeys(_ADVOCACY_COUNTS, 0)
        return found

    for row in feedback:
        if row["occurred_at"] < cutoff:
            m = month(row["occurred_at"])
            m["responses"] += 1
            m[row["category"] + "s"] += 1
    for row in referrals:
        if row["occurred_at"] < cutoff:
            month(row["occurred_at"])["referrals"] += 1
    for row in stage_history:
        if row["stage"] == "advocate" and row["entered_at"] < cutoff:
            month(row["entered_at"])["new_advocates"] += 1
    return months


def add_counts(counts: dict[str, dict[str, int]], other: dict[str, dict[str, int]]) -> None:
    for key, theirs in other.items():
        mine = counts.setdefault(key, dict.fromkeys(theirs, 0))
        for name, n in theirs.items():
            mine[name] += n


def advocacy_rows(months: Mapping[str, Mapping[str, int]], as_of: date) -> list[dict[str, Any]]:
    rows = []
    for month in sorted(months):
        m = months[month]
        nps = None
        if m["responses"]:
            nps = (Decimal(100 * (m["promoters"] - m["detractors"])) / m["responses"]).quantize(Decimal("0.1"))
        rows.append({"month": month, **m, "nps": nps, "as_of": as_of})
    return rows


# -- RFM ------------------------------------------------------------------------------------


def customer_rfm(purchases: Iterable[Row], as_of: date) -> list[dict[str, Any]]:
    """RFM per customer, customer-base-analysis convention (see DESIGN.md).

    Purchases on one UTC calendar day are one transaction. Money is summed per
    day in the customer's first-purchase currency (the first by occurrence, then
    by order id); a day with purchases in other currencies only counts as a
    transaction without money.
    """
    return rfm_of(purchases_by_customer(purchases, as_of), as_of)


def rfm_of(customers: Mapping[str, CustomerPurchases], as_of: date) -> list[dict[str, Any]]:
    return scored_rfm(rfm_unscored(customers, as_of))


def rfm_unscored(customers: Mapping[str, CustomerPurchases], as_of: date) -> list[dict[str, Any]]:
    """Each customer's RFM row without its scores, which rank it among all customers
    (``scored_rfm``): the rows of disjoint sets of customers are put together, then scored."""
    rows = []
    for customer_id, c in customers.items():
        counted = c.by_currency[c.currency]
        days = sorted(c.days())
        first, last = days[0], days[-1]
        repeat = [counted.get(d, Decimal(0)) for d in days[1:]]
        monetary = (sum(repeat, Decimal(0)) / len(repeat)).quantize(CENT, ROUND_HALF_EVEN) if repeat else Decimal("0.00")
        rows.append({
            "customer_id": customer_id, "customer_key": c.customer_key,
            "first_purchase_date": first, "frequency": len(days) - 1,
            "recency_days": (last - first).days, "age_days": (as_of - first).days,
            "days_since_last": (as_of - last).days, "monetary": monetary, "currency": c.currency,
            "as_of": as_of,
        })
    return rows


def scored_rfm(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` (``rfm_unscored``) scored and segmented, in order of customer key (then id:
    the order does not depend on the order of the rows given)."""
    _score(rows, "r_score", lambda r: -r["days_since_last"])
    _score(rows, "f_score", lambda r: r["frequency"])
    _score(rows, "m_score", lambda r: r["monetary"])
    for row in rows:
        row["segment"] = rfm_segment(row["r_score"], row["f_score"])
    rows.sort(key=lambda r: (r["customer_key"], r["customer_id"]))
    return rows


def _score(rows: list[dict[str, Any]], column: str, value: Any) -> None:
    """Quintile 1-5 by the share of customers with a strictly lower value (ties score alike)."""
    values = sorted(value(r) for r in rows)
    n = len(values)
    below: dict[Any, int] = {}
    for i, v in enumerate(values):
        below.setdefault(v, i)
    for row in rows:
        row[column] = min(5, 1 + (5 * below[value(row)]) // n)


def rfm_segment(r: int, f: int) -> str:
    if r >= 4 and f >= 4:
        return "champions"
    if f >= 4:
        return "loyal"
    if r >= 4 and f <= 1:
        return "new"
    if r >= 4:
        return "potential_loyalist"
    if r <= 2 and f >= 3:
        return "at_risk"
    if r <= 2:
        return "hibernating"
    return "needs_attention"


# -- summaries of summaries ------------------------------------------------------------------


def pipeline_by_stage(deal_stage_history: Iterable[Row], as_of: date) -> list[dict[str, Any]]:
    """Deals per pipeline stage (open and closed) as they stood at the end of ``as_of``."""
    latest = deal_stages_as_of(deal_stage_history, as_of)
    groups: dict[tuple[int, str], dict[str, Any]] = {}
    for row in latest.values():
        stage = PIPELINE_BY_NAME[row["stage"]]
        position = PIPELINE.index(stage)
        g = groups.setdefault((position, row["currency"] or ""), {
            "stage": stage.name, "probability": stage.probability,
            "forecast_category": stage.forecast_category, "currency": row["currency"] or "",
            "deals": 0, "amount": Decimal(0), "weighted_amount": Decimal(0),
        })
        amount = row["amount"] or Decimal(0)
        g["deals"] += 1
        g["amount"] += amount
        g["weighted_amount"] += (amount * stage.probability).quantize(CENT, ROUND_HALF_EVEN)
    return [{**g, "as_of": as_of} for _, g in sorted(groups.items())]


def retention_by_month(cohort_rows: Iterable[Row]) -> list[dict[str, Any]]:
    """All cohorts together: of the customers old enough, the share purchasing k months on."""
    totals: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    as_of = None
    for row in cohort_rows:
        totals[row["months_since"]][0] += row["cohort_size"]
        totals[row["months_since"]][1] += row["active_customers"]
        as_of = row["as_of"]
    return [
        {"months_since": k, "customers": size, "active_customers": active,
         "retention_rate": _rate(active, size), "as_of": as_of}
        for k, (size, active) in sorted(totals.items())
    ]
