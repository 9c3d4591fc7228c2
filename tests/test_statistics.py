"""The PostgreSQL view store gathers the planner's statistics of the tables it fills
(projections.store.statistics), so that it sizes a look-up of many entities rightly."""

from __future__ import annotations

import psycopg
import pytest

from projections.store import Column, PostgresViewStore, Table, ViewChange
from projections.store.statistics import STATISTICS_TARGET, AnalyzeSchedule

ORDERS = Table(
    name="orders",
    columns=(
        Column("customer_id", "text", "Customer.", nullable=False),
        Column("order_id", "text", "Order.", nullable=False),
    ),
    key=("customer_id", "order_id"),
    description="Orders per customer.",
    entity="customer_id",
)


def test_a_table_is_due_once_its_writes_have_doubled() -> None:
    schedule = AnalyzeSchedule(first_after=100)
    schedule.wrote("orders", 99)
    assert schedule.due() == []
    schedule.wrote("orders", 1)
    schedule.wrote("tickets", 5)
    assert schedule.due() == ["orders"]
    schedule.analyzed("orders")
    assert schedule.due() == []
    schedule.wrote("orders", 99)  # 100 written before the last ANALYZE: due at 100 more
    assert schedule.due() == []
    schedule.wrote("orders", 1)
    assert schedule.due() == ["orders"]
    schedule.analyzed("orders")
    schedule.wrote("orders", 150)  # 200 before: not yet
    assert schedule.due() == []


def test_a_table_not_analysed_stays_due() -> None:
    schedule = AnalyzeSchedule(first_after=10)
    schedule.wrote("orders", 10)
    assert schedule.due() == ["orders"]
    schedule.wrote("orders", 1)
    assert schedule.due() == ["orders"]


def _orders(customers: range, per_customer: int) -> list[dict[str, str]]:
    return [{"customer_id": f"c{c:06d}", "order_id": f"o{i}"} for c in customers for i in range(per_customer)]


def _has_statistics(conn: psycopg.Connection, table: str) -> bool:
    return conn.execute(
        "SELECT count(*) FROM pg_stats WHERE schemaname = 'reporting' AND tablename = %s", (table,)
    ).fetchone()[0] > 0


@pytest.mark.integration
def test_a_table_that_grew_is_analysed_and_a_step_of_entities_is_estimated_as_such(postgres_url: str) -> None:
    store = PostgresViewStore(postgres_url)
    store.create([ORDERS])
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        store.write(ViewChange("orders", position=None, append={"orders": _orders(range(10), 5)}))
        assert not _has_statistics(conn, "orders")  # 50 rows: not worth an ANALYZE
        store.write(ViewChange("orders", position=None, append={"orders": _orders(range(10, 6010), 5)}))
        assert _has_statistics(conn, "orders")
        # A step's customers, as the projector replaces them (300 of 6,010, 1,500 rows): without
        # statistics PostgreSQL took them for most of the table, and read every row for them
        # whatever the table's size.
        keys = [f"c{c:06d}" for c in range(0, 6000, 20)]
        plan = conn.execute(
            "EXPLAIN (FORMAT JSON) SELECT * FROM reporting.orders WHERE customer_id = ANY(%s::text[])", (keys,)
        ).fetchone()[0]
        # A small sample (the module docstring): a histogram of STATISTICS_TARGET buckets, not 100.
        bounds = conn.execute(
            "SELECT array_length(histogram_bounds::text::text[], 1) FROM pg_stats"
            " WHERE schemaname = 'reporting' AND tablename = 'orders' AND attname = 'customer_id'"
        ).fetchone()[0]
    store.close()
    assert plan[0]["Plan"]["Plan Rows"] <= 3_000, plan
    assert bounds == STATISTICS_TARGET + 1
