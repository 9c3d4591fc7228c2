"""The engine on the in-memory store: rules, deduplication, rejections, one transaction per batch."""

from datetime import date

import pytest

from lifecycle.engine import LifecycleEngine
from lifecycle.ids import customer_id
from lifecycle.receipt import REFUSED, InboundReceipt
from lifecycle.ids import receipt_id
from tests.events import ev, feedback, interaction, purchase, request

MEMORY = {"PERSISTENCE_MODULE": "eventsourcing.popo"}


@pytest.fixture
def engine():
    return LifecycleEngine(env=MEMORY)


def test_first_event_for_an_unknown_key_creates_the_customer(engine):
    result = engine.ingest([interaction("shop:1", "2026-01-01T10:00:00Z")])
    assert result.accepted == 1
    customer = engine.customer("shop:1")
    assert customer.key == "shop:1" and customer.stage == "engagement"
    assert customer.id == customer_id("shop:1")


def test_purchases_convert_then_a_second_day_retains(engine):
    engine.ingest([
        purchase("shop:1", "2026-01-01T10:00:00Z", "o-1"),
        purchase("shop:1", "2026-01-01T18:00:00Z", "o-2"),
    ])
    assert engine.customer("shop:1").stage == "customer"  # same day: still one purchase day
    engine.ingest([purchase("shop:1", "2026-01-05T10:00:00Z", "o-3")])
    assert engine.customer("shop:1").stage == "retained"


def test_promoter_feedback_makes_an_advocate_only_after_conversion(engine):
    engine.ingest([feedback("shop:1", "2026-01-01T10:00:00Z", 10)])
    assert engine.customer("shop:1").stage == "awareness"
    engine.ingest([purchase("shop:1", "2026-01-02T10:00:00Z", "o-1"), feedback("shop:1", "2026-01-03T10:00:00Z", 9)])
    assert engine.customer("shop:1").stage == "advocate"


def test_same_event_redelivered_in_the_batch_or_later_is_a_duplicate(engine):
    line = purchase("shop:1", "2026-01-01T10:00:00Z", "o-1", id="p-1")
    first = engine.ingest([line, line])
    assert (first.accepted, first.duplicates) == (1, 1)
    version = engine.customer("shop:1").version
    again = engine.ingest([line])
    assert (again.accepted, again.duplicates) == (0, 1)
    assert engine.customer("shop:1").version == version


def test_an_order_id_counts_once_even_under_another_event_id(engine):
    result = engine.ingest([
        purchase("shop:1", "2026-01-01T10:00:00Z", "o-1", id="a"),
        purchase("shop:1", "2026-01-03T10:00:00Z", "o-1", id="b"),
    ])
    assert (result.accepted, result.duplicates) == (1, 1)
    assert engine.customer("shop:1").stage == "customer"


def test_a_refused_request_is_kept_as_a_rejection_and_changes_nothing(engine):
    engine.ingest([interaction("shop:1", "2026-01-01T10:00:00Z")])
    before = engine.customer("shop:1").version
    result = engine.ingest([request("shop:1", "2026-01-02T10:00:00Z", "advocate", id="r-1", source="crm/ui")])
    assert result.rejected == 1
    outcome = result.outcomes[0]
    assert outcome.outcome == REFUSED and "does not allow" in outcome.reason
    assert engine.customer("shop:1").version == before
    receipt = engine.repository.get(receipt_id("crm/ui", "r-1"))
    assert isinstance(receipt, InboundReceipt) and receipt.outcome == REFUSED
    assert b'"advocate"' in engine.raw_of(receipt)
    assert b"advocate" not in receipt.raw_b64.encode()  # stored under the customer's key


def test_a_refused_first_event_does_not_create_the_customer(engine):
    result = engine.ingest([request("shop:9", "2026-01-02T10:00:00Z", "customer")])
    assert result.rejected == 1
    assert engine.customer("shop:9") is None


def test_an_allowed_request_moves_the_stage_with_its_reason(engine):
    engine.ingest([
        interaction("shop:1", "2026-01-01T10:00:00Z"),
        request("shop:1", "2026-01-02T10:00:00Z", "disqualified", reason="not_a_fit"),
    ])
    customer = engine.customer("shop:1")
    assert customer.stage == "disqualified"
    changed = [e for e in engine.history(customer.id) if type(e).__name__ == "StageChanged"]
    assert (changed[-1].reason, changed[-1].trigger) == ("not_a_fit", "requested")


def test_malformed_lines_are_rejected_and_the_rest_is_applied(engine):
    result = engine.ingest([b"{not json", interaction("shop:1", "2026-01-01T10:00:00Z"), b"\xff\xfe"])
    assert (result.accepted, result.rejected) == (1, 2)
    assert all(o.reason for o in result.outcomes if o.rejected)


def test_a_won_deal_converts_its_customer_in_the_same_batch(engine):
    result = engine.ingest([
        ev("crm.deal.opened", "acme:1", "2026-01-01T10:00:00Z",
           {"deal_id": "d-1", "amount": "1000.00", "currency": "USD", "expected_close": "2026-03-01"}),
        ev("crm.deal.won", "acme:1", "2026-02-01T10:00:00Z", {"deal_id": "d-1"}),
    ])
    assert result.accepted == 2
    assert engine.customer("acme:1").stage == "customer"
    assert engine.deal("d-1").closed[0] == "won"


def test_a_closed_deal_refuses_later_changes_and_a_second_close(engine):
    engine.ingest([
        ev("crm.deal.opened", "acme:1", "2026-01-01T10:00:00Z",
           {"deal_id": "d-1", "amount": "1000.00", "currency": "USD", "expected_close": "2026-03-01"}),
        ev("crm.deal.lost", "acme:1", "2026-02-01T10:00:00Z", {"deal_id": "d-1", "reason": "price"}),
    ])
    result = engine.ingest([
        ev("crm.deal.stage.changed", "acme:1", "2026-02-05T10:00:00Z", {"deal_id": "d-1", "stage": "proposal"}),
        ev("crm.deal.won", "acme:1", "2026-02-06T10:00:00Z", {"deal_id": "d-1"}),
        # dated before the close: history that arrived late, kept
        ev("crm.deal.stage.changed", "acme:1", "2026-01-15T10:00:00Z", {"deal_id": "d-1", "stage": "proposal"}),
    ])
    assert [o.outcome for o in result.outcomes] == ["refused", "refused", "accepted"]


def test_sweep_churns_inactive_customers_and_a_purchase_reactivates(engine):
    engine.ingest([purchase("shop:1", "2026-01-01T10:00:00Z", "o-1"), purchase("shop:2", "2026-06-01T10:00:00Z", "o-2")])
    assert engine.sweep(date(2026, 7, 1), ["shop:1", "shop:2"]) == 1  # 181 days vs 30
    assert engine.customer("shop:1").stage == "churned"
    assert engine.customer("shop:2").stage == "customer"
    assert engine.sweep(date(2026, 7, 1), ["shop:1"]) == 0  # a second sweep leaves no trace
    engine.ingest([purchase("shop:1", "2026-08-01T10:00:00Z", "o-3")])
    customer = engine.customer("shop:1")
    assert customer.stage == "customer"
    changed = [e for e in engine.history(customer.id) if type(e).__name__ == "StageChanged"]
    assert [(c.to_stage, c.reason) for c in changed[-2:]] == [("churned", "churned"), ("customer", "reactivated")]
    assert changed[-2].occurred_at.date() == date(2026, 6, 30)  # when the threshold was crossed


def test_refund_larger_than_its_order_is_refused(engine):
    engine.ingest([purchase("shop:1", "2026-01-01T10:00:00Z", "o-1", amount="10.00")])
    result = engine.ingest([
        ev("crm.refund.recorded", "shop:1", "2026-01-02T10:00:00Z", {"order_id": "o-1", "amount": "6.00", "currency": "USD"}),
        ev("crm.refund.recorded", "shop:1", "2026-01-03T10:00:00Z", {"order_id": "o-1", "amount": "6.00", "currency": "USD"}),
    ])
    assert [o.outcome for o in result.outcomes] == ["accepted", "refused"]


def test_a_deal_event_naming_another_customer_is_refused(engine):
    engine.ingest([ev("crm.deal.opened", "acme:1", "2026-01-01T10:00:00Z",
                      {"deal_id": "d-1", "amount": "10.00", "currency": "USD", "expected_close": "2026-03-01"})])
    result = engine.ingest([ev("crm.deal.won", "acme:2", "2026-01-05T10:00:00Z", {"deal_id": "d-1"})])
    assert result.rejected == 1 and "belongs to customer acme:1" in result.outcomes[0].reason
    assert engine.customer("acme:2") is None


def test_a_customer_evicted_from_the_cache_is_read_back_whole(tmp_path):
    """The cache is bounded (LIFECYCLE_CACHE_CUSTOMERS): a customer that fell out of it is loaded
    from its events, and its rules still hold (an order id counts once, a second purchase day
    makes it retained)."""
    from lifecycle.config import Settings
    from lifecycle.runtime import Runtime
    from tests.events import purchase

    rt = Runtime.open(Settings(database_url=None, data_dir=tmp_path, stage_model_path=None,
                               batch_size=10, kafka_bootstrap=None, cache_customers=2))
    try:
        rt.ingest_lines([purchase(f"shop:{i}", "2026-01-01T10:00:00Z", f"o-{i}") for i in range(30)])
        assert len(rt.engine._cache) <= 2
        again = rt.ingest_lines([purchase("shop:0", "2026-01-01T10:00:00Z", "o-0", id="other-id"),
                                 purchase("shop:0", "2026-01-05T10:00:00Z", "o-new")])
        assert (again.accepted, again.duplicates) == (1, 1)  # the known order id, then a new one
        rt.catch_up()
        row = rt.views.rows("customer_current", where={"customer_key": "shop:0"})[0]
        assert (row["orders"], row["stage"]) == (2, "retained")
    finally:
        rt.close()


def test_a_batch_reads_the_deals_the_cache_lacks_with_its_customers_not_one_by_one(engine, monkeypatch):
    opened = {"amount": "10.00", "currency": "USD", "expected_close": "2026-03-01"}
    engine.ingest([ev("crm.deal.opened", "acme:1", "2026-01-01T10:00:00Z", {"deal_id": "d-1", **opened}),
                   ev("crm.deal.opened", "acme:2", "2026-01-01T10:00:00Z", {"deal_id": "d-2", **opened})])
    engine._cache.clear()
    monkeypatch.setattr(engine, "_load", lambda *a: pytest.fail("one aggregate read alone"))
    result = engine.ingest([
        ev("crm.deal.stage.changed", "acme:1", "2026-01-02T10:00:00Z", {"deal_id": "d-1", "stage": "proposal"}),
        ev("crm.deal.lost", "acme:2", "2026-01-03T10:00:00Z", {"deal_id": "d-2", "reason": "price"}),
        ev("crm.deal.opened", "acme:3", "2026-01-04T10:00:00Z", {"deal_id": "d-3", **opened}),  # a new one
    ])
    assert result.accepted == 3
    monkeypatch.undo()
    assert engine.deal("d-2").closed[0] == "lost" and engine.deal("d-3").opened
