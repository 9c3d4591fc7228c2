"""More reports: ordered funnels with time to convert, time in stage, lifecycle per period.

Like ``projections.reports``, every function here is a pure function of per-entity rows
(``stage_history``, ``customer_purchases``) and a date, on business time: a row counts as of D
when it happened before the end of D (UTC), whatever order the rows arrive in. Outputs are
ordered deterministically (stage order of the model, or period). Rates are ``Decimal`` with 4
places (``reports._rate``); durations are ``Decimal`` days with 2 places (0.01 day = 14.4 min).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from statistics import median
from typing import Any

from lifecycle.stages import StageModel
from projections.reports import Row, _rate, end_of

DAYS = Decimal("0.01")
_SECONDS_PER_DAY = Decimal(86400)


def _days(delta: timedelta) -> Decimal:
    """A duration in days, exactly (no float on the way)."""
    seconds = Decimal(delta.days * 86400 + delta.seconds) + Decimal(delta.microseconds) / Decimal(1_000_000)
    return seconds / _SECONDS_PER_DAY


def _round_days(value: Decimal | None) -> Decimal | None:
    return None if value is None else value.quantize(DAYS, ROUND_HALF_EVEN)


def _median(values: Sequence[Decimal]) -> Decimal | None:
    return _round_days(median(sorted(values))) if values else None


def _mean(values: Sequence[Decimal]) -> Decimal | None:
    return _round_days(sum(values, Decimal(0)) / len(values)) if values else None


def _entries_by_customer(stage_history: Iterable[Row], cutoff: datetime) -> dict[str, list[Row]]:
    """Each customer's stage entries before ``cutoff``, in business-time order."""
    entries: dict[str, list[Row]] = defaultdict(list)
    for row in stage_history:
        if row["entered_at"] < cutoff:
            entries[row["customer_id"]].append(row)
    for rows in entries.values():
        rows.sort(key=lambda r: (r["entered_at"], r["seq"]))
    return entries


# -- funnels with time to convert --------------------------------------------------------------


def lifecycle_funnel_strict(model: StageModel, stage_history: Iterable[Row], as_of: date) -> list[dict[str, Any]]:
    """Main-sequence funnel, "in this order" mode: a customer counts at stage i only if, by the
    end of ``as_of``, their history entered main-sequence stages 0, 1, ..., i in that order
    (other stages, e.g. a side stage or a re-entry, may come in between; skipping one may not).

    The chain is matched greedily on the earliest entries: t0 = first entry of stage 0, t(k+1)
    = first entry of stage k+1 after t(k). ``median_days_to_next`` / ``mean_days_to_next``:
    t(i+1) - t(i) among the customers counted at i+1.
    """
    sequence = model.main_sequence
    reached_at: list[list[datetime]] = [[] for _ in sequence]  # reached_at[i]: t(i) per customer counted
    to_next: list[list[Decimal]] = [[] for _ in sequence]
    for rows in _entries_by_customer(stage_history, end_of(as_of)).values():
        chain: list[datetime] = []
        for row in rows:
            if len(chain) < len(sequence) and row["stage"] == sequence[len(chain)]:
                chain.append(row["entered_at"])
        for i, at in enumerate(chain):
            reached_at[i].append(at)
            if i + 1 < len(chain):
                to_next[i].append(_days(chain[i + 1] - at))
    return _timed_funnel_rows("lifecycle", "strict", sequence, [len(r) for r in reached_at], to_next, as_of)


def lifecycle_funnel_any_order(model: StageModel, stage_history: Iterable[Row], as_of: date) -> list[dict[str, Any]]:
    """Main-sequence funnel, "reached" mode: the counts of ``reports.lifecycle_funnel`` (a
    customer counts at stage i once they entered stage i or any later main-sequence stage, in
    whatever order, skips included), plus time to convert.

    The customer reached stage i at r(i) = their first entry of any main-sequence stage at
    position >= i (so r(i) <= r(i+1)); ``median_days_to_next`` / ``mean_days_to_next``:
    r(i+1) - r(i) among the customers counted at i+1.
    """
    sequence = model.main_sequence
    position = {stage: i for i, stage in enumerate(sequence)}
    reached = [0] * len(sequence)
    to_next: list[list[Decimal]] = [[] for _ in sequence]
    for rows in _entries_by_customer(stage_history, end_of(as_of)).values():
        first: dict[int, datetime] = {}
        for row in rows:
            if row["stage"] in position:
                first.setdefault(position[row["stage"]], row["entered_at"])
        if not first:
            continue
        reach: list[datetime] = []
        for i in range(max(first) + 1):
            reach.append(min(at for pos, at in first.items() if pos >= i))
        for i, at in enumerate(reach):
            reached[i] += 1
            if i + 1 < len(reach):
                to_next[i].append(_days(reach[i + 1] - at))
    return _timed_funnel_rows("lifecycle", "any_order", sequence, reached, to_next, as_of)


def _timed_funnel_rows(
    funnel: str, mode: str, sequence: Sequence[str], reached: Sequence[int],
    to_next: Sequence[Sequence[Decimal]], as_of: date,
) -> list[dict[str, Any]]:
    rows = []
    for i, stage in enumerate(sequence):
        last = i + 1 == len(sequence)
        converted = 0 if last else reached[i + 1]
        rows.append({
            "funnel": funnel, "mode": mode, "position": i, "stage": stage, "reached": reached[i],
            "converted_to_next": converted,
            "conversion_rate": None if last else _rate(converted, reached[i]),
            "median_days_to_next": _median(to_next[i]),
            "mean_days_to_next": _mean(to_next[i]),
            "as_of": as_of,
        })
    return rows


# -- time in stage -----------------------------------------------------------------------------


def time_in_stage(model: StageModel, stage_history: Iterable[Row], as_of: date) -> list[dict[str, Any]]:
    """Per stage of the model (HubSpot's entered / exited / cumulative time in stage, summed up).

    As of the end of ``as_of`` (the cut-off instant C): a stay counts when it was entered before
    C; it is completed when it was exited before C, otherwise open (a later exit is not known
    yet) and measured up to C.

    - ``customers_entered``: distinct customers that entered the stage; ``entries``: stays (a
      customer can re-enter a stage); ``currently_in``: open stays (customers in it at C);
    - ``median_days_in_stage`` / ``mean_days_in_stage``: over completed stays only;
    - ``mean_days_in_stage_including_current``: over all stays, open ones up to C;
    - ``cumulative_days``: the sum of all stays, open ones up to C.
    """
    cutoff = end_of(as_of)
    customers: dict[str, set[str]] = defaultdict(set)
    completed: dict[str, list[Decimal]] = defaultdict(list)
    open_: dict[str, list[Decimal]] = defaultdict(list)
    for row in stage_history:
        if row["entered_at"] >= cutoff:
            continue
        stage = row["stage"]
        customers[stage].add(row["customer_id"])
        exited = row["exited_at"]
        if exited is not None and exited < cutoff:
            completed[stage].append(_days(exited - row["entered_at"]))
        else:
            open_[stage].append(_days(cutoff - row["entered_at"]))
    names = list(model.stage_names)
    names += sorted(set(customers) - set(names))  # stages of an older model still in the history
    rows = []
    for position, stage in enumerate(names):
        stays = completed[stage] + open_[stage]
        rows.append({
            "position": position, "stage": stage,
            "customers_entered": len(customers[stage]),
            "entries": len(stays),
            "currently_in": len(open_[stage]),
            "median_days_in_stage": _median(completed[stage]),
            "mean_days_in_stage": _mean(completed[stage]),
            "mean_days_in_stage_including_current": _mean(stays),
            "cumulative_days": _round_days(sum(stays, Decimal(0))),
            "as_of": as_of,
        })
    return rows


# -- lifecycle per period (new / returning / resurrecting / dormant) -----------------------------


def _week_start(day: date) -> date:
    return day - timedelta(days=day.weekday())


def _week_label(start: date) -> str:
    year, week, _ = start.isocalendar()
    return f"{year:04d}-W{week:02d}"


def _month_start(day: date) -> date:
    return day.replace(day=1)


def _next_month(start: date) -> date:
    return date(start.year + start.month // 12, start.month % 12 + 1, 1)


def lifecycle_weekly(purchases: Iterable[Row], as_of: date) -> list[dict[str, Any]]:
    """``lifecycle_by_period`` per ISO week (Monday to Sunday, labelled like 2025-W03)."""
    return lifecycle_by_period(purchases, as_of, _week_start, lambda d: d + timedelta(days=7), _week_label)


def lifecycle_monthly(purchases: Iterable[Row], as_of: date) -> list[dict[str, Any]]:
    """``lifecycle_by_period`` per calendar month (labelled like 2025-03)."""
    return lifecycle_by_period(purchases, as_of, _month_start, _next_month, lambda d: f"{d.year:04d}-{d.month:02d}")


def lifecycle_by_period(
    purchases: Iterable[Row], as_of: date, start_of: Any, next_start: Any, label: Any,
) -> list[dict[str, Any]]:
    """Customers by lifecycle status per period, as product analytics tools (PostHog's lifecycle
    insight) define them, with "active in a period" = made at least one purchase (UTC
    ``purchase_date``; refunds do not undo it) in that period:

    - ``new``: first purchase ever in this period;
    - ``returning``: active in this period and in the previous one;
    - ``resurrecting``: active in this period, not in the previous one, but in some earlier one;
    - ``dormant``: active in the previous period, not in this one; negative, like PostHog.

    One row per period from the first one with a purchase up to the one containing ``as_of``
    (which may be partial); purchases after ``as_of`` do not count.
    """
    active: dict[date, set[str]] = defaultdict(set)
    for row in purchases:
        if row["purchase_date"] <= as_of:
            active[start_of(row["purchase_date"])].add(row["customer_id"])
    if not active:
        return []
    rows = []
    seen: set[str] = set()
    previous: set[str] = set()
    start, last = min(active), start_of(as_of)
    while start <= last:
        now = active.get(start, set())
        new = now - seen
        returning = now & previous
        resurrecting = now - previous - new
        rows.append({
            "period": label(start), "period_start": start,
            "new": len(new), "returning": len(returning), "resurrecting": len(resurrecting),
            "dormant": -len(previous - now), "as_of": as_of,
        })
        seen |= now
        previous = now
        start = next_start(start)
    return rows
