"""The view store contract: every implementation behaves the same, run against each of them.

The ``view_store`` fixture (conftest.py) gives an empty in-memory, SQLite and PostgreSQL store in
turn; PostgreSQL-only checks (schemas, comments) are at the end.
"""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from projections.store import (
    Column,
    InMemoryViewStore,
    PositionConflict,
    PostgresViewStore,
    SQLiteViewStore,
    Table,
    UnknownTable,
    ViewChange,
    ViewStore,
    ViewStoreError,
    open_view_store,
)

UTC = dt.timezone.utc

ALL_TYPES = Table(
    name="all_types",
    columns=(
        Column("id", "text", "Row id.", nullable=False),
        Column("n", "int", "An integer."),
        Column("amount", "decimal", "An exact amount."),
        Column("day", "date", "A calendar day."),
        Column("at", "timestamp", "An instant (UTC)."),
        Column("flag", "bool", "A flag."),
        Column("doc", "json", "A JSON document."),
    ),
    key=("id",),
    description="One column of every type.",
)
ORDERS = Table(
    name="orders",
    columns=(
        Column("customer_id", "text", "Customer.", nullable=False),
        Column("order_id", "text", "Order.", nullable=False),
        Column("amount", "decimal", "Order total.", nullable=False),
        Column("note", "text", "Free text."),
    ),
    key=("customer_id", "order_id"),
    description="Orders per customer.",
    entity="customer_id",
)
TICKETS = Table(  # a second table with the same entity: replacing orders must not touch it
    name="tickets",
    columns=(
        Column("ticket_id", "text", "Ticket.", nullable=False),
        Column("customer_id", "text", "Customer.", nullable=False),
    ),
    key=("ticket_id",),
    description="Tickets per customer.",
    entity="customer_id",
)
TOTALS = Table(
    name="totals",
    columns=(
        Column("bucket", "text", "Bucket."),
        Column("total", "decimal", "Sum.", nullable=False),
        Column("rank", "int", "Rank."),
    ),
    key=("bucket",),
    description="Totals per bucket.",
)
RUNNER_STATE = Table(
    name="runner_state",
    columns=(Column("name", "text", "Name."), Column("value", "json", "State.")),
    key=("name",),
    description="Bookkeeping of a runner.",
    internal=True,
)
TABLES = (ALL_TYPES, ORDERS, TICKETS, TOTALS, RUNNER_STATE)


def order(customer: str, order_id: str, amount: str, note: str | None = None) -> dict:
    return {"customer_id": customer, "order_id": order_id, "amount": Decimal(amount), "note": note}


@pytest.fixture
def store(view_store: ViewStore) -> ViewStore:
    view_store.create(TABLES)
    return view_store


def write(store: ViewStore, position: int | None = None, **kwargs) -> None:
    store.write(ViewChange(consumer="projections", position=position, **kwargs))


def snapshot(store: ViewStore) -> tuple:
    return tuple(store.rows(t.name) for t in TABLES), store.positions()


# --- types ------------------------------------------------------------------------------------


def test_every_column_type_round_trips(store: ViewStore) -> None:
    full = {
        "id": "a",
        "n": -(2**62),
        "amount": Decimal("12345678.1234"),
        "day": dt.date(2026, 3, 1),
        "at": dt.datetime(2026, 3, 1, 11, 15, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=1))),
        "flag": False,
        "doc": {"items": [1, "two", None, True, {"x": 1.5}], "note": "ü€"},
    }
    empty = {"id": "b"}  # omitted nullable columns are NULL
    write(store, append={"all_types": [full, empty]})

    got_full, got_empty = store.rows("all_types", order_by=["id"])

    assert got_full == {**full, "at": dt.datetime(2026, 3, 1, 10, 15, 0, 123456, tzinfo=UTC)}
    assert str(got_full["amount"]) == "12345678.1234"  # exact, not a float's neighbour
    assert type(got_full["n"]) is int and type(got_full["flag"]) is bool
    assert type(got_full["day"]) is dt.date
    assert got_full["at"].utcoffset() == dt.timedelta(0)
    assert got_empty == {"id": "b", "n": None, "amount": None, "day": None, "at": None,
                         "flag": None, "doc": None}


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("amount", 1.5),  # money is never float
        ("at", dt.datetime(2026, 1, 1)),  # naive
        ("day", dt.datetime(2026, 1, 1, tzinfo=UTC)),  # a datetime is not a date
        ("n", True),
        ("n", 2**63),
        ("flag", 1),
        ("doc", {"amount": Decimal("1")}),
        ("id", 5),
    ],
)
def test_wrong_python_types_are_refused(store: ViewStore, column: str, value: object) -> None:
    with pytest.raises(ViewStoreError, match=f"all_types.{column}"):
        write(store, position=1, append={"all_types": [{"id": "a", column: value}]})
    assert store.rows("all_types") == [] and store.position("projections") is None


def test_rows_returned_are_copies(store: ViewStore) -> None:
    doc = {"a": [1]}
    write(store, append={"all_types": [{"id": "a", "doc": doc}]})
    doc["a"].append(2)
    store.rows("all_types")[0]["doc"]["a"].append(3)
    assert store.rows("all_types")[0]["doc"] == {"a": [1]}


def test_create_is_idempotent_and_keeps_rows(store: ViewStore) -> None:
    write(store, append={"totals": [{"bucket": "x", "total": Decimal("1")}]})
    store.create(TABLES)
    store.create([TOTALS])
    assert store.rows("totals") == [{"bucket": "x", "total": Decimal("1"), "rank": None}]


def test_create_refuses_a_table_whose_columns_changed(store: ViewStore) -> None:
    changed = Table("totals", (Column("bucket", "text", "B."), Column("sum", "decimal", "S.")),
                    key=("bucket",), description="Changed.")
    with pytest.raises(ViewStoreError, match="drop it and rebuild"):
        store.create([changed])


def test_create_refuses_the_positions_table_name(store: ViewStore) -> None:
    with pytest.raises(ViewStoreError, match="view_positions"):
        store.create([Table("view_positions", (Column("a", "text", "A."),), ("a",), "No.")])


def test_drop_removes_tables_and_keeps_positions(store: ViewStore) -> None:
    write(store, position=3, append={"totals": [{"bucket": "x", "total": Decimal("1")}]})
    store.drop([TOTALS])
    with pytest.raises(UnknownTable):
        store.rows("totals")
    store.drop([TOTALS])  # absent: nothing to do
    assert store.position("projections") == 3
    store.create([TOTALS])
    assert store.rows("totals") == []


def test_a_store_whose_connections_were_dropped_reads_and_writes_as_before(store: ViewStore) -> None:
    write(store, position=3, append={"orders": [order("c1", "o1", "10")]})
    store.drop_connections()
    assert store.rows("orders") == [order("c1", "o1", "10")] and store.position("projections") == 3
    store.drop_connections()
    write(store, position=4, check_position=True, expected_position=3, append={"orders": [order("c2", "o2", "5")]})
    assert len(store.rows("orders")) == 2 and store.position("projections") == 4


# --- writing ----------------------------------------------------------------------------------


def test_append_ignores_rows_whose_key_exists(store: ViewStore) -> None:
    write(store, append={"orders": [order("c1", "o1", "10")]})
    write(store, append={"orders": [order("c1", "o1", "99"), order("c1", "o2", "5"),
                                    order("c1", "o2", "6")]})
    assert store.rows("orders", order_by=["order_id"]) == [order("c1", "o1", "10"),
                                                            order("c1", "o2", "5")]


def test_large_append_ignores_existing_keys(store: ViewStore) -> None:
    """Above PostgreSQL's COPY threshold (500 rows) an append is copied in, and when a key exists
    it goes again through a staging table, in the same transaction: same result, nothing else
    of the step lost."""
    write(store, append={"orders": [order("c", f"o{i:04}", "1") for i in range(0, 4400, 2)]})
    write(store, position=7, append={
        "orders": [order("c", f"o{i:04}", "2") for i in range(4400)],
        "tickets": [{"ticket_id": "t1", "customer_id": "c"}],
    })
    rows = store.rows("orders")
    assert len(rows) == 4400
    assert [r["amount"] for r in rows[:4]] == [Decimal("1"), Decimal("2"), Decimal("1"), Decimal("2")]
    assert store.rows("tickets") == [{"ticket_id": "t1", "customer_id": "c"}]
    assert store.position("projections") == 7


def test_large_append_keeps_the_first_of_a_repeated_key(store: ViewStore) -> None:
    rows = [order("c", f"o{i:04}", "1") for i in range(1200)] + [order("c", "o0003", "9")]
    write(store, append={"orders": rows})
    stored = store.rows("orders", order_by=["order_id"])
    assert len(stored) == 1200
    assert stored[3] == order("c", "o0003", "1")


def test_replace_entities_replaces_only_that_entity_in_that_table(store: ViewStore) -> None:
    write(store, append={
        "orders": [order("c1", "o1", "1"), order("c1", "o2", "2"), order("c2", "o1", "3")],
        "tickets": [{"ticket_id": "t1", "customer_id": "c1"}],
    })
    # The entity column may be omitted: it is implied by the mapping key.
    write(store, replace_entities={"orders": {"c1": [{"order_id": "o3", "amount": Decimal("4")}]}})
    assert store.rows("orders") == [order("c1", "o3", "4"), order("c2", "o1", "3")]
    assert store.rows("tickets") == [{"ticket_id": "t1", "customer_id": "c1"}]
    write(store, replace_entities={"orders": {"c1": [], "c3": [order("c3", "o1", "5")]}})
    assert store.rows("orders") == [order("c2", "o1", "3"), order("c3", "o1", "5")]


def test_replace_entities_refuses_a_row_of_another_entity(store: ViewStore) -> None:
    with pytest.raises(ViewStoreError, match="c2"):
        write(store, replace_entities={"orders": {"c1": [order("c2", "o1", "1")]}})


def test_replace_entities_needs_an_entity_column(store: ViewStore) -> None:
    with pytest.raises(ViewStoreError, match="no entity column"):
        write(store, replace_entities={"totals": {"x": []}})


def test_replace_tables_replaces_all_rows(store: ViewStore) -> None:
    write(store, replace_tables={"totals": [{"bucket": "a", "total": Decimal("1")},
                                            {"bucket": "b", "total": Decimal("2")}]})
    write(store, replace_tables={"totals": [{"bucket": "c", "total": Decimal("3"), "rank": 1}]})
    assert store.rows("totals") == [{"bucket": "c", "total": Decimal("3"), "rank": 1}]
    write(store, replace_tables={"totals": []})
    assert store.rows("totals") == []


def test_steps_apply_in_order_append_then_entities_then_tables(store: ViewStore) -> None:
    write(
        store,
        append={"orders": [order("c1", "o1", "1")], "totals": [{"bucket": "old", "total": 1}]},
        replace_entities={"orders": {"c1": [order("c1", "o2", "2")]}},
        replace_tables={"totals": [{"bucket": "new", "total": Decimal("2")}]},
    )
    assert store.rows("orders") == [order("c1", "o2", "2")]
    assert [r["bucket"] for r in store.rows("totals")] == ["new"]


# --- positions --------------------------------------------------------------------------------


def test_position_absent_then_stored_then_updated(store: ViewStore) -> None:
    assert store.position("projections") is None
    assert store.positions() == {}
    write(store, position=7)
    store.write(ViewChange(consumer="kafka:lifecycle.events:3", position=0))
    assert store.position("projections") == 7
    write(store, position=9, check_position=True, expected_position=7)
    write(store, position=None, append={"totals": [{"bucket": "x", "total": 1}]})  # untouched
    assert store.positions() == {"projections": 9, "kafka:lifecycle.events:3": 0}


def test_expected_position_conflict_raises_and_writes_nothing(store: ViewStore) -> None:
    write(store, position=5, append={"orders": [order("c1", "o1", "1")]})
    before = snapshot(store)
    for expected in (4, None):
        with pytest.raises(PositionConflict) as caught:
            write(
                store,
                position=6,
                check_position=True,
                expected_position=expected,
                append={"orders": [order("c1", "o2", "2")]},
                replace_tables={"totals": [{"bucket": "x", "total": 1}]},
            )
        assert (caught.value.expected, caught.value.actual) == (expected, 5)
    assert snapshot(store) == before


def test_expected_position_none_means_no_position_yet(store: ViewStore) -> None:
    write(store, position=1, check_position=True, expected_position=None)
    assert store.position("projections") == 1
    with pytest.raises(PositionConflict):
        store.write(ViewChange("other", position=1, expected_position=0, check_position=True))
    assert store.position("other") is None


@pytest.mark.parametrize(
    "bad_totals",
    [
        pytest.param([{"bucket": "x", "total": None}], id="not-null-violation"),
        pytest.param([{"bucket": "x", "total": 1}, {"bucket": "x", "total": 2}], id="duplicate-key"),
        pytest.param([{"bucket": "x", "total": 1, "colour": "red"}], id="unknown-column"),
    ],
)
def test_a_failing_write_changes_nothing(store: ViewStore, bad_totals: list) -> None:
    """Steps 2 and 3 succeed, step 4 fails: nothing of 2-5 is visible afterwards."""
    write(store, position=1, append={"orders": [order("c1", "o1", "1")]},
          replace_tables={"totals": [{"bucket": "kept", "total": 1}]})
    before = snapshot(store)
    with pytest.raises(ViewStoreError) as caught:
        write(
            store,
            position=2,
            append={"orders": [order("c2", "o1", "2")], "all_types": [{"id": "a"}]},
            replace_entities={"orders": {"c1": [order("c1", "o9", "9")]}},
            replace_tables={"totals": bad_totals},
        )
    assert not isinstance(caught.value, PositionConflict)
    assert snapshot(store) == before
    if "colour" in bad_totals[0]:
        assert "colour" in str(caught.value)


def test_unknown_tables_and_columns(store: ViewStore) -> None:
    with pytest.raises(UnknownTable, match="nope"):
        store.rows("nope")
    with pytest.raises(UnknownTable, match="nope"):
        write(store, position=1, append={"nope": [{"a": 1}]})
    with pytest.raises(ViewStoreError, match="colour"):
        write(store, append={"totals": [{"bucket": "x", "total": 1, "colour": "red"}]})
    with pytest.raises(ViewStoreError, match="colour"):
        store.rows("totals", where={"colour": "red"})
    with pytest.raises(ViewStoreError, match="colour"):
        store.rows("totals", order_by=["colour"])
    assert store.position("projections") is None


def test_concurrent_writers_of_one_consumer_serialise(
    store: ViewStore, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Two handles, each read-position-then-write with check: no update is lost."""
    kind = request.node.callspec.params["view_store"]
    other: ViewStore = {
        "memory": lambda: store,
        "sqlite": lambda: SQLiteViewStore(tmp_path / "views.sqlite"),
        "postgres": lambda: PostgresViewStore(request.getfixturevalue("postgres_url")),
    }[kind]()
    other.create(TABLES)
    errors: list[BaseException] = []

    def worker(handle: ViewStore) -> None:
        try:
            done = 0
            while done < 15:
                current = handle.position("counter")
                nxt = (current or 0) + 1
                try:
                    handle.write(ViewChange(
                        "counter", position=nxt, expected_position=current, check_position=True,
                        append={"totals": [{"bucket": f"{nxt:03}", "total": 1, "rank": 0}]},
                    ))
                    done += 1
                except PositionConflict:
                    pass
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(handle,)) for handle in (store, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    if other is not store:
        other.close()
    assert errors == []
    assert store.position("counter") == 30
    assert [r["bucket"] for r in store.rows("totals")] == [f"{i:03}" for i in range(1, 31)]


# --- reading ----------------------------------------------------------------------------------


@pytest.fixture
def totals(store: ViewStore) -> ViewStore:
    write(store, replace_tables={"totals": [
        {"bucket": "a", "total": Decimal("9"), "rank": 2},
        {"bucket": "B", "total": Decimal("10.0"), "rank": 1},
        {"bucket": "c", "total": Decimal("-1.5"), "rank": None},
        {"bucket": "d", "total": Decimal("10"), "rank": 3},
    ]})
    return store


def buckets(rows: list[dict]) -> list[str]:
    return [r["bucket"] for r in rows]


def test_where_with_a_value_a_list_and_none(totals: ViewStore) -> None:
    assert buckets(totals.rows("totals", where={"bucket": "a"})) == ["a"]
    assert buckets(totals.rows("totals", where={"bucket": ["a", "c", "zz"]})) == ["a", "c"]
    assert buckets(totals.rows("totals", where={"bucket": ("a",), "rank": 2})) == ["a"]
    assert buckets(totals.rows("totals", where={"bucket": {"a", "d"}, "rank": 2})) == ["a"]
    assert buckets(totals.rows("totals", where={"rank": None})) == ["c"]
    assert buckets(totals.rows("totals", where={"rank": [None, 3]})) == ["c", "d"]
    assert totals.rows("totals", where={"bucket": []}) == []
    # Decimals compare by value: 10 and 10.0 are the same amount.
    assert buckets(totals.rows("totals", where={"total": Decimal("10")})) == ["B", "d"]
    assert buckets(totals.rows("totals", where={"total": [Decimal("9.00")]})) == ["a"]


def test_where_takes_a_list_longer_than_sqlites_limit_of_parameters(totals: ViewStore) -> None:
    """A list is one parameter, whatever its length (SQLite allows 32,766 placeholders by
    default, Debian's build 250,000)."""
    many = [f"x{i}" for i in range(260_000)]
    assert buckets(totals.rows("totals", where={"bucket": [*many, "a", "d"]})) == ["a", "d"]
    assert buckets(totals.iter_rows("totals", where={"total": [Decimal("10.00"), Decimal(-7)]})) == ["B", "d"]


def test_where_refuses_a_value_of_the_wrong_type(totals: ViewStore) -> None:
    with pytest.raises(ViewStoreError, match="totals.total"):
        totals.rows("totals", where={"total": 9.0})


def test_order_by(totals: ViewStore) -> None:
    # No order asked: key order. Text sorts by code point ("B" < "a") in every store.
    assert buckets(totals.rows("totals")) == ["B", "a", "c", "d"]
    # Decimals sort as numbers (not as SQLite text); ties broken by the key.
    assert buckets(totals.rows("totals", order_by=["total"])) == ["c", "a", "B", "d"]
    assert buckets(totals.rows("totals", order_by=["-total"])) == ["B", "d", "a", "c"]
    # NULLs last ascending, first descending.
    assert buckets(totals.rows("totals", order_by=["rank"])) == ["B", "a", "d", "c"]
    assert buckets(totals.rows("totals", order_by=["-rank"])) == ["c", "d", "a", "B"]
    assert buckets(totals.rows("totals", where={"rank": [1, 2, 3]}, order_by=["-total", "bucket"])) \
        == ["B", "d", "a"]


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two rows per fetch, so that a few rows already span pages."""
    import projections.store.postgres
    import projections.store.sqlite

    for module in (projections.store.sqlite, projections.store.postgres):
        monkeypatch.setattr(module, "ROWS_PAGE", 2)


@pytest.mark.parametrize("where, order_by", [
    (None, ()),
    (None, ["-total"]),
    (None, ["rank"]),
    ({"rank": [1, 2, 3]}, ["-total", "bucket"]),
    ({"total": Decimal("10")}, ()),
    ({"bucket": []}, ()),
])
def test_iter_rows_gives_what_rows_gives(totals: ViewStore, small_pages: None, where, order_by) -> None:
    assert list(totals.iter_rows("totals", where=where, order_by=order_by)) \
        == totals.rows("totals", where=where, order_by=order_by)


def _all_types_rows() -> list[dict]:
    """Five rows with a value of every type, and one with only its key."""
    return [
        {"id": f"r{i}", "n": i, "amount": Decimal("1.10"), "day": dt.date(2026, 1, i + 1),
         "at": dt.datetime(2026, 1, 1, i, tzinfo=UTC), "flag": bool(i % 2), "doc": {"k": [i, None]}}
        for i in range(5)
    ] + [{"id": "empty"}]


def test_iter_rows_decodes_every_type(store: ViewStore, small_pages: None) -> None:
    write(store, append={"all_types": _all_types_rows()})
    assert list(store.iter_rows("all_types")) == store.rows("all_types")


@pytest.mark.parametrize("columns", [["at", "id"], ["doc"], ["flag", "amount", "day", "n"]])
def test_iter_rows_gives_the_columns_asked_for_in_their_order(store: ViewStore, small_pages: None, columns) -> None:
    write(store, append={"all_types": _all_types_rows()})
    got = list(store.iter_rows("all_types", where={"n": [1, 2, None]}, order_by=["-n"], columns=columns))
    expected = [{c: r[c] for c in columns} for r in store.rows("all_types", where={"n": [1, 2, None]}, order_by=["-n"])]
    assert got == expected and [list(r) for r in got] == [columns] * len(expected)


def test_iter_rows_checks_its_arguments_at_the_call(store: ViewStore) -> None:
    with pytest.raises(ViewStoreError, match="colour"):
        store.iter_rows("totals", columns=["bucket", "colour"])
    with pytest.raises(ViewStoreError, match="no column"):
        store.iter_rows("totals", columns=[])
    with pytest.raises(UnknownTable):
        store.iter_rows("no_such_table")
    with pytest.raises(ViewStoreError, match="colour"):
        store.iter_rows("totals", order_by=["colour"])
    with pytest.raises(ViewStoreError, match="totals.total"):
        store.iter_rows("totals", where={"total": 9.0})


def test_iter_rows_reads_one_snapshot_and_the_store_stays_usable(totals: ViewStore, small_pages: None) -> None:
    before = totals.rows("totals")
    rows = totals.iter_rows("totals")
    first = next(rows)
    # A write while the iterator is open: neither blocked nor seen by it.
    write(totals, position=7, replace_tables={"totals": [{"bucket": "new", "total": Decimal(1)}]})
    assert [first, *rows] == before
    assert buckets(totals.rows("totals")) == ["new"]
    assert totals.position("projections") == 7


def test_an_iterator_closed_early_releases_its_snapshot(
    totals: ViewStore, small_pages: None, request: pytest.FixtureRequest
) -> None:
    kind = request.node.callspec.params["view_store"]
    rows = totals.iter_rows("totals")
    next(rows)

    def holding() -> bool:
        if kind == "sqlite":  # an open read transaction keeps a checkpoint from finishing
            write(totals, append={"totals": [{"bucket": f"w{dt.datetime.now().timestamp()}", "total": 1}]})
            return totals._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 1
        if kind == "postgres":  # a reader in a transaction (its connection may stay, idle)
            with psycopg.connect(request.getfixturevalue("postgres_url"), autocommit=True) as conn:
                return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name ="
                                    " 'lifecycle-views-reader' AND state <> 'idle'").fetchone()[0] > 0
        return False  # the in-memory store holds nothing

    held = holding()
    rows.close()
    assert held == (kind != "memory")
    assert not holding()


def test_order_by_other_types(store: ViewStore) -> None:
    at = dt.datetime(2026, 1, 1, tzinfo=UTC)
    write(store, append={"all_types": [
        {"id": "1", "day": dt.date(2026, 2, 1), "at": at + dt.timedelta(microseconds=1), "flag": True},
        {"id": "2", "day": dt.date(2025, 12, 31), "at": at + dt.timedelta(days=400), "flag": False},
        {"id": "3", "day": dt.date(2026, 1, 10), "at": at, "flag": True},
    ]})

    def ids(rows: list[dict]) -> list[str]:
        return [r["id"] for r in rows]

    assert ids(store.rows("all_types", order_by=["day"])) == ["2", "3", "1"]
    assert ids(store.rows("all_types", order_by=["at"])) == ["3", "1", "2"]
    assert ids(store.rows("all_types", order_by=["flag", "-id"])) == ["2", "3", "1"]
    same_instant = at.astimezone(dt.timezone(dt.timedelta(hours=-5)))
    assert ids(store.rows("all_types", where={"at": same_instant})) == ["3"]
    with pytest.raises(ViewStoreError, match="json"):
        store.rows("all_types", order_by=["doc"])


@settings(max_examples=1000, deadline=None)
@given(st.datetimes(min_value=dt.datetime(1, 1, 1), timezones=st.just(UTC)),
       st.datetimes(timezones=st.timezones()))
def test_sqlite_writes_a_time_as_isoformat_with_microseconds(utc: dt.datetime, elsewhere: dt.datetime) -> None:
    """The SQLite store's text of a time is isoformat's with microseconds (fixed width, so text
    order is time order), whether orjson writes it (UTC, nearly every value) or isoformat."""
    from projections.store.sqlite import utc_text

    for moment in (utc, utc.replace(microsecond=0), elsewhere):
        assert utc_text(moment) == moment.isoformat(timespec="microseconds")


# --- the change value and the factory -----------------------------------------------------


def test_view_change_is_immutable() -> None:
    rows = [{"bucket": "x"}]
    change = ViewChange("c", position=1, append={"totals": rows})
    rows.append({"bucket": "y"})
    assert change.append["totals"] == ({"bucket": "x"},)
    assert isinstance(change.append, MappingProxyType)
    with pytest.raises(TypeError):
        change.append["other"] = ()  # type: ignore[index]
    with pytest.raises(AttributeError):
        change.position = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        ViewChange("c", position=True)


def test_open_view_store_chooses_by_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the relative URL below creates its file there
    default = open_view_store(None, tmp_path / "data")
    assert isinstance(default, SQLiteViewStore) and default.path == tmp_path / "data" / "views.sqlite"
    beside = open_view_store(f"sqlite:///{tmp_path}/lifecycle.sqlite", tmp_path / "data")
    assert isinstance(beside, SQLiteViewStore) and beside.path == tmp_path / "lifecycle.views.sqlite"
    relative = open_view_store("sqlite:///data/events.sqlite", tmp_path)
    assert isinstance(relative, SQLiteViewStore) and relative.path == Path("data/events.views.sqlite")
    for store in (default, beside, relative):
        store.close()
    assert isinstance(open_view_store("memory://", tmp_path), InMemoryViewStore)
    with pytest.raises(ViewStoreError, match="unsupported"):
        open_view_store("sqlite:///", tmp_path)
    with pytest.raises(ViewStoreError, match=r"unsupported database URL 'mysql://\*\*\*@h/db'"):
        open_view_store("mysql://u:secret@h/db", tmp_path)


@pytest.mark.integration
def test_open_view_store_postgres(postgres_url: str, tmp_path: Path) -> None:
    for url in (postgres_url, postgres_url.replace("postgresql://", "postgres://", 1)):
        store = open_view_store(url, tmp_path)
        assert isinstance(store, PostgresViewStore)
        store.close()


def test_a_closed_store_refuses_work(view_store: ViewStore) -> None:
    view_store.create(TABLES)
    view_store.close()
    with pytest.raises(ViewStoreError):
        view_store.position("projections")
    with pytest.raises(ViewStoreError):
        view_store.iter_rows("totals")


def test_every_store_satisfies_the_port(view_store: ViewStore) -> None:
    assert isinstance(view_store, ViewStore)


# --- PostgreSQL specifics -----------------------------------------------------------------


@pytest.mark.integration
def test_postgres_connections_dropped_after_a_failure_open_anew(postgres_url: str) -> None:
    """A server restart ends every session: the first use of each old connection fails once.
    After ``drop_connections`` (what a service does after a failure) nothing fails again."""
    store = PostgresViewStore(postgres_url)
    try:
        store.create([ORDERS])
        write(store, append={"orders": [order("c1", "o1", "10")]})
        list(store.iter_rows("orders"))  # the reader connection too
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            ended = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchone()[0]
        assert ended >= 2
        with pytest.raises(ViewStoreError, match="unavailable"):
            store.rows("orders")  # the main connection was ended: once
        store.drop_connections()
        assert store.rows("orders") == [order("c1", "o1", "10")]
        assert [r["order_id"] for r in store.iter_rows("orders")] == ["o1"]
    finally:
        store.close()


@pytest.mark.integration
def test_postgres_schemas_and_comments(postgres_url: str) -> None:
    store = PostgresViewStore(postgres_url)
    store.create(TABLES)
    store.close()
    with psycopg.connect(postgres_url) as conn:
        placed = dict(conn.execute(
            "SELECT table_name, table_schema FROM information_schema.tables"
            " WHERE table_schema IN ('reporting', 'lifecycle_internal')"
        ).fetchall())
        table_comment = conn.execute(
            "SELECT obj_description('reporting.orders'::regclass, 'pg_class')").fetchone()[0]
        column_comment = conn.execute(
            "SELECT col_description('reporting.orders'::regclass, 2)").fetchone()[0]
        types = dict(conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = 'reporting' AND table_name = 'all_types'").fetchall())
    assert placed == {"all_types": "reporting", "orders": "reporting", "tickets": "reporting",
                      "totals": "reporting", "runner_state": "lifecycle_internal",
                      "view_positions": "lifecycle_internal"}
    assert table_comment == "Orders per customer."
    assert column_comment == "Order."
    assert types == {"id": "text", "n": "bigint", "amount": "numeric", "day": "date",
                     "at": "timestamp with time zone", "flag": "boolean", "doc": "jsonb"}


@pytest.mark.integration
def test_postgres_commits_without_waiting_for_the_disk_only_when_asked_and_after_reconnecting(
    postgres_url: str,
) -> None:
    def setting(store: PostgresViewStore) -> str:
        return store._connection().execute("SHOW synchronous_commit").fetchone()[0]

    durable, relaxed = PostgresViewStore(postgres_url), PostgresViewStore(postgres_url, synchronous_commit=False)
    try:
        durable.write(ViewChange("c", position=1))
        relaxed.write(ViewChange("c", position=2))
        assert (setting(durable), setting(relaxed)) == ("on", "off")
        # The server drops the connection (a restart, a failover): the next one asks again.
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (relaxed._connection().info.backend_pid,))
        with pytest.raises(ViewStoreError):
            relaxed.write(ViewChange("c", position=3))
        relaxed.write(ViewChange("c", position=3))
        assert setting(relaxed) == "off" and durable.position("c") == 3
    finally:
        durable.close()
        relaxed.close()


@pytest.mark.integration
def test_postgres_position_is_stored_in_the_internal_schema(postgres_url: str) -> None:
    store = PostgresViewStore(postgres_url)
    store.write(ViewChange("projections", position=42))
    store.close()
    with psycopg.connect(postgres_url) as conn:
        row = conn.execute("SELECT position, updated_at IS NOT NULL"
                           " FROM lifecycle_internal.view_positions WHERE consumer = 'projections'"
                           ).fetchone()
    assert row == (42, True)
