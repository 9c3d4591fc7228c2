"""The ordered and any-order funnels with time to convert, time in stage, and the lifecycle
(new / returning / resurrecting / dormant) per week and month: hand-made rows, numbers by hand."""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from lifecycle.stages import load_stage_model
from projections import analytics, reports
from projections.catalog import REPORTS, build_report
from tests.backends import runtime_factory
from tests.events import feedback, interaction, purchase
from tests.test_cli import lifecycle

MODEL = load_stage_model()
NEW_KINDS = ("funnel-strict", "funnel-any-order", "stages", "lifecycle-weekly", "lifecycle-monthly")


def at(text: str) -> datetime:
    """'01-05 12:00' -> 2025-01-05T12:00Z; '01-05' -> midnight."""
    day, _, clock = text.partition(" ")
    hour, minute = (int(x) for x in (clock or "00:00").split(":"))
    month, dom = (int(x) for x in day.split("-"))
    return datetime(2025, month, dom, hour, minute, tzinfo=UTC)


def history(customer: str, *entries: tuple[str, str]) -> list[dict[str, Any]]:
    """stage_history rows as the projection writes them: exited_at = the next entry."""
    rows = []
    for seq, (stage, entered) in enumerate(entries):
        exited = at(entries[seq + 1][1]) if seq + 1 < len(entries) else None
        rows.append({
            "customer_id": f"id-{customer}", "customer_key": f"shop:{customer}", "seq": seq, "stage": stage,
            "from_stage": entries[seq - 1][0] if seq else None, "entered_at": at(entered), "exited_at": exited,
            "seconds_in_stage": int((exited - at(entered)).total_seconds()) if exited else None,
            "reason": "test", "trigger": "derived",
        })
    return rows


STAGES = (
    # A: the whole sequence in order, no skip.
    history("A", ("awareness", "01-01"), ("engagement", "01-02"), ("qualified", "01-04"),
            ("customer", "01-05 12:00"), ("retained", "01-10"))
    # B: skips engagement and qualified (counted by `funnel`, not by `funnel-strict`).
    + history("B", ("awareness", "01-01"), ("customer", "01-03"), ("retained", "01-05"))
    # C: back to engagement and re-enters qualified; converts after 2025-01-15.
    + history("C", ("awareness", "01-02"), ("engagement", "01-03"), ("qualified", "01-04"),
              ("engagement", "01-06"), ("qualified", "01-08"), ("customer", "01-20"))
    # D: only aware.
    + history("D", ("awareness", "01-05"))
)
MID_JANUARY = date(2025, 1, 15)  # cut-off 2025-01-16T00:00Z: C's conversion on 01-20 is not known


def d(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def column(rows: list[dict[str, Any]], name: str) -> list[Any]:
    return [row[name] for row in rows]


def shuffled(rows: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    copy = list(rows)
    random.Random(seed).shuffle(copy)
    return copy


# -- funnels ---------------------------------------------------------------------------------


def test_strict_funnel_counts_only_customers_that_entered_every_stage_in_order():
    rows = analytics.lifecycle_funnel_strict(MODEL, STAGES, MID_JANUARY)
    assert column(rows, "stage") == list(MODEL.main_sequence)
    assert column(rows, "position") == [0, 1, 2, 3, 4, 5]
    assert column(rows, "mode") == ["strict"] * 6
    # awareness: A B C D; engagement, qualified: A C (B skipped them); customer, retained: A.
    assert column(rows, "reached") == [4, 2, 2, 1, 1, 0]
    assert column(rows, "converted_to_next") == [2, 2, 1, 1, 0, 0]
    assert column(rows, "conversion_rate") == [d("0.5000"), d("1.0000"), d("0.5000"), d("1.0000"), d("0.0000"), None]
    # awareness->engagement: A 1 day, C 1 day; engagement->qualified: A 2, C 1;
    # qualified->customer: A 1.5; customer->retained: A 4.5.
    assert column(rows, "median_days_to_next") == [d("1.00"), d("1.50"), d("1.50"), d("4.50"), None, None]
    assert column(rows, "mean_days_to_next") == [d("1.00"), d("1.50"), d("1.50"), d("4.50"), None, None]
    assert all(row["as_of"] == MID_JANUARY and row["funnel"] == "lifecycle" for row in rows)


def test_strict_funnel_as_of_a_later_date_sees_the_late_conversion():
    rows = analytics.lifecycle_funnel_strict(MODEL, STAGES, date(2025, 1, 31))
    assert column(rows, "reached") == [4, 2, 2, 2, 1, 0]
    # C: from the first qualified entry (01-04) to the first customer entry after it (01-20).
    assert rows[2]["median_days_to_next"] == d("8.75")  # A 1.5, C 16
    assert rows[2]["mean_days_to_next"] == d("8.75")
    assert rows[2]["conversion_rate"] == d("1.0000")


def test_strict_funnel_needs_the_order_not_only_the_stages():
    # Qualified first, then engagement: engagement is counted, qualified is not (not after it).
    rows = analytics.lifecycle_funnel_strict(MODEL, history(
        "E", ("awareness", "01-01"), ("qualified", "01-02"), ("engagement", "01-03")), MID_JANUARY)
    assert column(rows, "reached") == [1, 1, 0, 0, 0, 0]
    assert rows[0]["median_days_to_next"] == d("2.00")
    # ...unless qualified is entered again afterwards.
    rows = analytics.lifecycle_funnel_strict(MODEL, history(
        "E", ("awareness", "01-01"), ("qualified", "01-02"), ("engagement", "01-03"),
        ("qualified", "01-04 06:00")), MID_JANUARY)
    assert column(rows, "reached") == [1, 1, 1, 0, 0, 0]
    assert rows[1]["mean_days_to_next"] == d("1.25")


def test_any_order_funnel_has_the_counts_of_funnel_and_time_to_convert():
    rows = analytics.lifecycle_funnel_any_order(MODEL, STAGES, MID_JANUARY)
    # B counts at engagement and qualified: it reached a later stage.
    assert column(rows, "reached") == [4, 3, 3, 2, 2, 0]
    classic = reports.lifecycle_funnel(MODEL, STAGES, MID_JANUARY)
    for mine, theirs in zip(rows, classic, strict=True):
        for key in ("funnel", "position", "stage", "reached", "converted_to_next", "conversion_rate", "as_of"):
            assert mine[key] == theirs[key], key
    assert column(rows, "mode") == ["any_order"] * 6
    # Time to reach stage i+1 (or a later one) from reaching i (or a later one):
    # 0->1: A 1, B 2 (to customer), C 1; 1->2: A 2, B 0, C 1; 2->3: A 1.5, B 0; 3->4: A 4.5, B 2.
    assert column(rows, "median_days_to_next") == [d("1.00"), d("1.00"), d("0.75"), d("3.25"), None, None]
    assert column(rows, "mean_days_to_next") == [d("1.33"), d("1.00"), d("0.75"), d("3.25"), None, None]


def test_a_stage_entered_after_the_date_does_not_count_in_either_funnel():
    early = date(2025, 1, 3)  # cut-off 01-04T00:00Z: qualified (01-04) not yet, B's customer (01-03) yes
    strict = analytics.lifecycle_funnel_strict(MODEL, STAGES, early)
    assert column(strict, "reached") == [3, 2, 0, 0, 0, 0]  # D first seen on 01-05
    anyorder = analytics.lifecycle_funnel_any_order(MODEL, STAGES, early)
    assert column(anyorder, "reached") == [3, 3, 1, 1, 0, 0]
    assert analytics.lifecycle_funnel_strict(MODEL, STAGES, date(2024, 12, 31))[0]["reached"] == 0


# -- time in stage ----------------------------------------------------------------------------


def test_time_in_stage_per_stage_as_of_a_date():
    rows = analytics.time_in_stage(MODEL, STAGES, MID_JANUARY)
    by_stage = {row["stage"]: row for row in rows}
    assert column(rows, "stage") == list(MODEL.stage_names)
    expected = {
        # customers_entered, entries, currently_in, median, mean (completed), mean incl. open, cumulative
        # awareness: A 1, B 2, C 1 completed; D open from 01-05 to the cut-off 01-16: 11.
        "awareness": (4, 4, 1, "1.00", "1.33", "3.75", "15.00"),
        # engagement: A 2, C 1 and C again 2 (re-entry).
        "engagement": (2, 3, 0, "2.00", "1.67", "1.67", "5.00"),
        # qualified: A 1.5, C 2; C's second stay (01-08, left 01-20) is open at the cut-off: 8.
        "qualified": (2, 3, 1, "1.75", "1.75", "3.83", "11.50"),
        # customer: A 4.5, B 2 (C's entry on 01-20 is after the date).
        "customer": (2, 2, 0, "3.25", "3.25", "3.25", "6.50"),
        # retained: A open since 01-10 (6), B open since 01-05 (11).
        "retained": (2, 2, 2, None, None, "8.50", "17.00"),
        "advocate": (0, 0, 0, None, None, None, "0.00"),
        "churned": (0, 0, 0, None, None, None, "0.00"),
        "disqualified": (0, 0, 0, None, None, None, "0.00"),
    }
    for stage, (customers, entries, current, med, mean, mean_all, cumulative) in expected.items():
        row = by_stage[stage]
        assert (row["customers_entered"], row["entries"], row["currently_in"]) == (customers, entries, current), stage
        assert row["median_days_in_stage"] == d(med), stage
        assert row["mean_days_in_stage"] == d(mean), stage
        assert row["mean_days_in_stage_including_current"] == d(mean_all), stage
        assert row["cumulative_days"] == d(cumulative), stage
        assert row["as_of"] == MID_JANUARY


def test_time_in_stage_later_closes_the_open_stays():
    rows = {r["stage"]: r for r in analytics.time_in_stage(MODEL, STAGES, date(2025, 1, 31))}
    # qualified: C's second stay now ended on 01-20 (12 days): completed 1.5, 2, 12.
    assert rows["qualified"]["currently_in"] == 0
    assert rows["qualified"]["median_days_in_stage"] == d("2.00")
    assert rows["qualified"]["mean_days_in_stage"] == d("5.17")
    # customer: C entered on 01-20, open to 02-01: 12 days.
    assert (rows["customer"]["customers_entered"], rows["customer"]["currently_in"]) == (3, 1)
    assert rows["customer"]["cumulative_days"] == d("18.50")


# -- lifecycle per period -----------------------------------------------------------------------


def purchases(customer: str, *days: str) -> list[dict[str, Any]]:
    rows = []
    for i, day in enumerate(days):
        when = datetime.fromisoformat(day).replace(hour=12, tzinfo=UTC)
        rows.append({
            "customer_id": f"id-{customer}", "customer_key": f"shop:{customer}", "order_id": f"{customer}-{i}",
            "occurred_at": when, "purchase_date": when.date(), "amount": Decimal("10.00"), "currency": "USD",
            "items": 1, "refunded": Decimal(0),
        })
    return rows


MONTHLY = (
    purchases("P1", "2025-01-10", "2025-02-05", "2025-04-01")
    + purchases("P2", "2025-02-20", "2025-03-03")
    + purchases("P3", "2025-01-15", "2025-01-20", "2025-03-30")
    + purchases("P4", "2025-05-02")
)


def counts(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(r["period"], r["period_start"], r["new"], r["returning"], r["resurrecting"], r["dormant"]) for r in rows]


def test_lifecycle_monthly():
    rows = analytics.lifecycle_monthly(MONTHLY, date(2025, 4, 30))
    assert counts(rows) == [
        ("2025-01", date(2025, 1, 1), 2, 0, 0, 0),    # P1, P3 new
        ("2025-02", date(2025, 2, 1), 1, 1, 0, -1),   # P2 new, P1 returning, P3 dormant
        ("2025-03", date(2025, 3, 1), 0, 1, 1, -1),   # P2 returning, P3 resurrecting, P1 dormant
        ("2025-04", date(2025, 4, 1), 0, 0, 1, -2),   # P1 resurrecting, P2 P3 dormant
    ]
    assert all(r["as_of"] == date(2025, 4, 30) for r in rows)
    later = analytics.lifecycle_monthly(MONTHLY, date(2025, 5, 31))
    assert counts(later)[-1] == ("2025-05", date(2025, 5, 1), 1, 0, 0, -1)  # P4 new, P1 dormant
    # As of mid-March, P3's purchase on 03-30 has not happened yet.
    earlier = analytics.lifecycle_monthly(MONTHLY, date(2025, 3, 15))
    assert counts(earlier)[-1] == ("2025-03", date(2025, 3, 1), 0, 1, 0, -1)
    assert analytics.lifecycle_monthly(MONTHLY, date(2024, 12, 31)) == []


def test_lifecycle_weekly_uses_iso_weeks_starting_monday():
    rows = (
        purchases("W1", "2024-12-31", "2025-01-07")    # ISO 2025-W01 (from Mon 2024-12-30), W02
        + purchases("W2", "2025-01-06", "2025-01-19")  # W02 (Monday), W03 (Sunday)
        + purchases("W3", "2025-01-05", "2025-01-20")  # W01 (Sunday), W04 (Monday)
    )
    assert counts(analytics.lifecycle_weekly(rows, date(2025, 1, 19))) == [
        ("2025-W01", date(2024, 12, 30), 2, 0, 0, 0),
        ("2025-W02", date(2025, 1, 6), 1, 1, 0, -1),
        ("2025-W03", date(2025, 1, 13), 0, 1, 0, -1),
    ]
    assert counts(analytics.lifecycle_weekly(rows, date(2025, 1, 20)))[-1] == (
        "2025-W04", date(2025, 1, 20), 0, 0, 1, -1)  # W3 resurrecting, W2 dormant


def test_a_quiet_period_is_a_row_of_dormant_then_resurrecting():
    rows = purchases("Q", "2025-01-02", "2025-03-02")
    assert counts(analytics.lifecycle_monthly(rows, date(2025, 3, 31))) == [
        ("2025-01", date(2025, 1, 1), 1, 0, 0, 0),
        ("2025-02", date(2025, 2, 1), 0, 0, 0, -1),
        ("2025-03", date(2025, 3, 1), 0, 0, 1, 0),
    ]


# -- arrival order -------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("as_of", [date(2025, 1, 3), MID_JANUARY, date(2025, 1, 31), date(2025, 4, 30)])
def test_the_order_of_the_rows_does_not_change_any_report(seed, as_of):
    for fn in (analytics.lifecycle_funnel_strict, analytics.lifecycle_funnel_any_order, analytics.time_in_stage):
        assert fn(MODEL, shuffled(list(STAGES), seed), as_of) == fn(MODEL, list(STAGES), as_of)
    for fn in (analytics.lifecycle_weekly, analytics.lifecycle_monthly):
        assert fn(shuffled(list(MONTHLY), seed), as_of) == fn(list(MONTHLY), as_of)


# -- through the catalog and the command line ------------------------------------------------------


def test_every_new_kind_is_in_the_catalog_and_reads_the_views(tmp_path):
    rt = runtime_factory("memory", tmp_path, lambda: "")()
    try:
        rt.ingest_lines([
            interaction("shop:1", "2024-12-01T10:00:00Z"),
            purchase("shop:1", "2024-12-10T10:00:00Z", "o-1"),
            purchase("shop:1", "2024-12-20T10:00:00Z", "o-2"),
            feedback("shop:1", "2024-12-21T10:00:00Z", 10),
            purchase("shop:2", "2024-12-11T10:00:00Z", "o-3"),
        ])
        rt.runner.catch_up()
        as_of = date(2025, 1, 1)
        built = {kind: build_report(kind, rt.views, rt.engine.model, as_of) for kind in NEW_KINDS}
        classic = build_report("funnel", rt.views, rt.engine.model, as_of)
    finally:
        rt.close()
    assert set(NEW_KINDS) <= set(REPORTS)
    lifecycle_rows = [r for r in classic if r["funnel"] == "lifecycle"]
    assert column(built["funnel-any-order"], "reached") == column(lifecycle_rows, "reached")
    assert column(built["funnel-strict"], "reached")[:2] == [2, 1]  # shop:2 purchased without engaging
    assert {r["stage"]: r["customers_entered"] for r in built["stages"]}["customer"] == 2
    assert counts(built["lifecycle-monthly"]) == [
        ("2024-12", date(2024, 12, 1), 2, 0, 0, 0), ("2025-01", date(2025, 1, 1), 0, 0, 0, -2)]
    assert counts(built["lifecycle-weekly"]) == [  # 12-10 Tue and 12-11 Wed: one ISO week
        ("2024-W50", date(2024, 12, 9), 2, 0, 0, 0), ("2024-W51", date(2024, 12, 16), 0, 1, 0, -1),
        ("2024-W52", date(2024, 12, 23), 0, 0, 0, -1), ("2025-W01", date(2024, 12, 30), 0, 0, 0, 0)]


def test_stages_report_on_the_command_line(tmp_path):
    done = lifecycle(tmp_path, "ingest", "-", stdin=b"\n".join([
        interaction("shop:1", "2024-12-01T10:00:00Z"),
        purchase("shop:1", "2024-12-10T10:00:00Z", "o-1"),
        purchase("shop:1", "2024-12-20T10:00:00Z", "o-2"),
        purchase("shop:1", "2025-01-05T10:00:00Z", "o-3"),  # after the date: not counted
    ]))
    assert done.returncode == 0, done.stderr
    done = lifecycle(tmp_path, "report", "stages", "--as-of", "2025-01-01", "--format", "json")
    assert done.returncode == 0, done.stderr
    rows = {row["stage"]: row for row in json.loads(done.stdout)}
    assert rows["engagement"]["median_days_in_stage"] == 9  # 12-01 10:00 -> 12-10 10:00
    assert rows["customer"]["mean_days_in_stage"] == 10
    # retained since 12-20 10:00, open until the end of 2025-01-01: 12 days 14 hours.
    assert rows["retained"]["currently_in"] == 1
    assert rows["retained"]["cumulative_days"] == 12.58
    assert rows["retained"]["as_of"] == "2025-01-01"
    for kind in ("funnel-strict", "funnel-any-order", "lifecycle-weekly", "lifecycle-monthly"):
        for fmt in ("table", "csv"):
            done = lifecycle(tmp_path, "report", kind, "--as-of", "2025-01-01", "--format", fmt)
            assert done.returncode == 0 and done.stdout.strip(), (kind, fmt, done.stderr)


# -- RFM in one streamed pass -------------------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def _rfm_days_by_sorting(purchases: list[dict[str, Any]], as_of: date) -> dict[str, tuple[str, dict]]:
    """The definition, as the report computed it before it streamed: sort every purchase by
    customer, occurrence and order id; the first one's currency counts, other currencies' days
    count as transactions without money."""
    per_customer: dict[str, tuple[str, dict]] = {}
    for row in sorted(purchases, key=lambda r: (r["customer_id"], r["occurred_at"], r["order_id"])):
        if row["purchase_date"] > as_of:
            continue
        currency, days = per_customer.setdefault(row["customer_id"], (row["currency"], {}))
        if row["currency"] == currency:
            days[row["purchase_date"]] = days.get(row["purchase_date"], Decimal(0)) + row["amount"]
        else:
            days.setdefault(row["purchase_date"], Decimal(0))
    return per_customer


_purchase = st.builds(
    lambda customer, order, day, hour, amount, currency: {
        "customer_id": f"id-{customer}", "customer_key": f"shop:{customer}", "order_id": f"o{order}",
        "occurred_at": datetime(2025, 1, day, hour, tzinfo=UTC), "purchase_date": date(2025, 1, day),
        "amount": Decimal(amount) / 100, "currency": currency, "items": 1, "refunded": Decimal(0),
    },
    st.integers(1, 4), st.integers(1, 30), st.integers(1, 9), st.sampled_from([0, 12]),
    st.integers(1, 100_000), st.sampled_from(["EUR", "USD"]),
)


def _purchase_lists(purchase: st.SearchStrategy) -> st.SearchStrategy:
    """Purchases of a few customers, each order once (the table's key)."""
    return st.lists(purchase, max_size=25, unique_by=lambda r: (r["customer_id"], r["order_id"]))


@settings(max_examples=150, deadline=None)
@given(_purchase_lists(_purchase), st.integers(1, 9), st.randoms(use_true_random=False))
def test_rfm_streamed_in_any_order_matches_its_sorted_definition(purchases, as_of_day, rng):
    as_of = date(2025, 1, as_of_day)
    rows = reports.customer_rfm(iter(rng.sample(purchases, len(purchases))), as_of)
    assert rows == reports.customer_rfm(purchases, as_of)
    expected = _rfm_days_by_sorting(purchases, as_of)
    assert {r["customer_id"] for r in rows} == set(expected)
    for row in rows:
        currency, days = expected[row["customer_id"]]
        ordered = sorted(days)
        repeat = [days[d] for d in ordered[1:]]
        assert row["currency"] == currency
        assert row["frequency"] == len(days) - 1
        assert row["first_purchase_date"] == ordered[0]
        assert row["days_since_last"] == (as_of - ordered[-1]).days
        assert row["monetary"] == (
            (sum(repeat, Decimal(0)) / len(repeat)).quantize(Decimal("0.01")) if repeat else Decimal("0.00"))


def _cohorts_by_definition(purchases: list[dict[str, Any]], as_of: date) -> list[tuple[str, int, int, int]]:
    """Each customer's purchase months up to ``as_of``; a cohort is the month of the first."""
    months: dict[str, set[str]] = {}
    for row in purchases:
        if row["purchase_date"] <= as_of:
            months.setdefault(row["customer_id"], set()).add(row["purchase_date"].strftime("%Y-%m"))
    rows = []
    for cohort in sorted({min(m) for m in months.values()}):
        members = [m for m in months.values() if min(m) == cohort]
        last = as_of.year * 12 + as_of.month
        first = int(cohort[:4]) * 12 + int(cohort[5:])
        for k in range(last - first + 1):
            total = first + k - 1
            month = f"{total // 12:04d}-{total % 12 + 1:02d}"
            rows.append((cohort, k, len(members), sum(1 for m in members if month in m)))
    return rows


_purchase_over_months = _purchase.map(lambda r: {
    **r, "purchase_date": r["purchase_date"].replace(month=1 + r["purchase_date"].day % 3),
    "occurred_at": r["occurred_at"].replace(month=1 + r["purchase_date"].day % 3)})


@settings(max_examples=100, deadline=None)
@given(_purchase_lists(_purchase_over_months), st.integers(1, 28), st.randoms(use_true_random=False))
def test_retention_cohorts_in_one_pass_in_any_order_match_their_definition(purchases, as_of_day, rng):
    as_of = date(2025, 3, as_of_day)
    rows = reports.retention_cohorts(iter(rng.sample(purchases, len(purchases))), as_of)
    got = [(r["cohort_month"], r["months_since"], r["cohort_size"], r["active_customers"]) for r in rows]
    assert got == _cohorts_by_definition(purchases, as_of)
