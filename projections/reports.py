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


def lifecycle_funnel(model: StageModel, stage_history: Iterable[Row], as_of: date) -> list[dict[str, Any]]:
    """Per main-sequence stage: customers that reached it or a later one by ``as_of``."""
    sequence = model.main_sequence
    furthest = _furthest(stage_history, "customer_id", sequence, as_of)
    return _funnel_rows("lifecycle", sequence, furthest, as_of)


def deal_funnel(deal_stage_history: Iterable[Row], as_of: date) -> list[dict[str, Any]]:
    """Per pipeline stage up to closed_won: deals that reached it or a later one."""
    sequence = OPEN_STAGES + ("closed_won",)
    return _funnel_rows("deals", sequence, _furthest(deal_stage_history, "deal_id", sequence, as_of), as_of)


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


def _funnel_rows(funnel: str, sequence: Sequence[str], furthest: Iterable[int], as_of: date) -> list[dict[str, Any]]:
    reached = [0] * len(sequence)
    for pos in furthest:
        for i in range(pos + 1):
            reached[i] += 1
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
    latest = deal_stages_as_of(deal_stage_history, as_of)
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    won: dict[str, int] = defaultdict(int)
    closed: dict[str, int] = defaultdict(int)
    for row in latest.values():
        stage = PIPELINE_BY_NAME[row["stage"]]
        if stage.is_closed:
            month = _month(row["entered_at"])
            closed[month] += 1
            won[month] += stage.name == "closed_won"
        elif row["expected_close"] is not None:
            month = _month(row["expected_close"])
        else:
            month = "unscheduled"
        key = (month, stage.forecast_category, row["currency"] or "")
        group = groups.setdefault(key, {"deals": 0, "amount": Decimal(0), "weighted_amount": Decimal(0)})
        amount = row["amount"] or Decimal(0)
        group["deals"] += 1
        group["amount"] += amount
        group["weighted_amount"] += (amount * stage.probability).quantize(CENT, ROUND_HALF_EVEN)
    order = {s.forecast_category: i for i, s in enumerate(PIPELINE)}
    return [
        {"close_month": m, "forecast_category": cat, "currency": cur, **g,
         "win_rate": _rate(won[m], closed[m]), "as_of": as_of}
        for (m, cat, cur), g in sorted(groups.items(), key=lambda kv: (kv[0][0], order[kv[0][1]], kv[0][2]))
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
    cohorts: dict[str, list[set[str]]] = defaultdict(list)
    for c in customers.values():
        active = {_month(day) for day in c.days()}
        cohorts[min(active)].append(active)
    last = _month(as_of)
    rows = []
    for cohort in sorted(cohorts):
        members = cohorts[cohort]
        for k in range(_months_between(cohort, last) + 1):
            month = _add_months(cohort, k)
            active = sum(1 for m in members if month in m)
            rows.append({
                "cohort_month": cohort, "months_since": k, "cohort_size": len(members),
                "active_customers": active, "retention_rate": _rate(active, len(members)),
                "as_of": as_of,
            })
    return rows


def _add_months(month: str, k: int) -> str:
    total = int(month[:4]) * 12 + int(month[5:]) - 1 + k
    return f"{total // 12:04d}-{total % 12 + 1:02d}"


# -- advocacy ---------------------------------------------------------------------------


def advocacy_nps(
    feedback: Iterable[Row], referrals: Iterable[Row], stage_history: Iterable[Row], as_of: date
) -> list[dict[str, Any]]:
    cutoff = end_of(as_of)
    months: dict[str, dict[str, int]] = defaultdict(
        lambda: dict.fromkeys(("responses", "promoters", "passives", "detractors", "referrals", "new_advocates"), 0)
    )
    for row in feedback:
        if row["occurred_at"] < cutoff:
            m = months[_month(row["occurred_at"])]
            m["responses"] += 1
            m[row["category"] + "s"] += 1
    for row in referrals:
        if row["occurred_at"] < cutoff:
            months[_month(row["occurred_at"])]["referrals"] += 1
    for row in stage_history:
        if row["stage"] == "advocate" and row["entered_at"] < cutoff:
            months[_month(row["entered_at"])]["new_advocates"] += 1
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
    _score(rows, "r_score", lambda r: -r["days_since_last"])
    _score(rows, "f_score", lambda r: r["frequency"])
    _score(rows, "m_score", lambda r: r["monetary"])
    for row in rows:
        row["segment"] = rfm_segment(row["r_score"], row["f_score"])
    rows.sort(key=lambda r: r["customer_key"])
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
