"""Kept folds (projections.folds): a point-in-time answer started from one is the answer every
event gives; a fold that no longer fits, or was kept by other code, is not used."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from unittest.mock import patch

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lifecycle.ids import customer_id
from lifecycle.inspect import customer_state
from lifecycle.lookup import stored_states_of
from projections import folds
from projections.customers import (
    FoldPoint,
    facts_of,
    fold_points_below,
    is_fold_point,
    next_fold_point,
    resume_customer,
    start_customer,
)
from projections.log import EngineLogSource
from projections.tables import CUSTOMER_FOLDS
from tests.backends import runtime_factory
from tests.events import ev, feedback, interaction, purchase

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
T0 = datetime(2025, 1, 1, tzinfo=UTC)
TODAY = date(2026, 6, 1)
ADA = {"name": "Ada Zyxwvut", "email": "ada.zyxwvut@example.org", "phone": "+44 7700 900123"}


def _time(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


@st.composite
def long_history(draw, key: str) -> list[bytes]:
    """A customer with personal data and enough facts to pass several fold points."""
    at = st.integers(0, 200 * 24 * 60)
    lines = [ev("crm.customer.registered", key, _time(draw(at)), {**ADA, "country": "GB"}, id=f"{key}-reg")]
    for i in range(draw(st.integers(8, 40))):
        uid, when = f"{key}-{i}", _time(draw(at))
        kind = draw(st.sampled_from(["interaction", "interaction", "purchase", "feedback", "profile", "ticket",
                                     "refund", "referral", "request"]))
        if kind == "interaction":
            lines.append(interaction(key, when, id=uid))
        elif kind == "purchase":
            lines.append(purchase(key, when, f"o-{uid}", f"{draw(st.integers(1, 9999)) / 100:.2f}", id=uid))
        elif kind == "feedback":
            lines.append(feedback(key, when, draw(st.integers(0, 10)), id=uid))
        elif kind == "profile":
            lines.append(ev("crm.profile.updated", key, when, {"address": f"{i} Quillfeather Lane"}, id=uid))
        elif kind == "ticket":
            lines.append(ev("crm.ticket.opened", key, when, {"ticket_id": uid}, id=uid))
        elif kind == "refund":
            lines.append(ev("crm.refund.recorded", key, when, {"order_id": f"o-{key}-0", "amount": "1.00",
                                                                "currency": "USD"}, id=uid))
        elif kind == "referral":
            lines.append(ev("crm.referral.made", key, when, {"referred_key": "shop:x"}, id=uid))
        else:
            lines.append(ev("crm.stage.change.requested", key, when,
                            {"to_stage": draw(st.sampled_from(["churned", "qualified"])), "reason": "sales_review"},
                            id=uid))
    if draw(st.booleans()):
        lines.append(ev("crm.customer.erasure.requested", key, _time(draw(at)), {"reason": "GDPR"}, id=f"{key}-x"))
    return lines


@st.composite
def long_populations(draw) -> list[bytes]:
    lines: list[bytes] = []
    for n in range(draw(st.integers(1, 2))):
        lines += draw(long_history(f"shop:{n}"))
    return lines


def fresh():
    return runtime_factory("memory", None, lambda: "")()


def ingest_in_steps(rt, lines, step: int) -> None:
    """Ingest ``lines`` a few at a time, the views following each step (so folds are kept both
    when a step carries a fold on and when a late fact makes it fold the whole history again)."""
    for i in range(0, len(lines), step):
        rt.engine.ingest(lines[i:i + step])
        rt.runner.catch_up(TODAY)


def kept_folds(rt) -> list[dict]:
    return rt.views.rows(CUSTOMER_FOLDS.name, order_by=("customer_id", "facts"))


@given(st.integers(1, 300_000), st.integers(1, 4))
def test_the_fold_points_below_a_count_are_the_largest_fold_points(facts, most):
    below = fold_points_below(facts, most)
    expected = []
    n = facts
    while n > 0 and len(expected) < most:
        if is_fold_point(n):
            expected.append(n)
        n -= 1
    assert below == expected


def test_fold_points_thin_out_so_a_long_history_keeps_few():
    points = [n for n in range(1, 1 << 16) if is_fold_point(n)]
    assert points[:3] == [64, 128, 192]
    assert len(points) < 8 * 16  # eight per doubling at most: O(log n) folds of O(n) each
    # ... and never more than an eighth of the history lies between a count and its point below
    assert all(n - fold_points_below(n, 1)[0] <= max(64, n // 8) for n in range(64, 1 << 16, 97))


@SETTINGS
@given(long_populations(), st.integers(2, 4))
def test_a_restored_fold_carried_on_is_the_fold_of_the_whole_history(lines, every):
    rt = fresh()
    rt.engine.ingest(lines)
    source = EngineLogSource(rt.engine)
    for key in {f"shop:{n}" for n in range(2)}:
        cid = customer_id(key)
        history = source.aggregate_events(cid, stored_states_of(rt.engine.recorder, cid))
        if not history:
            continue
        with patch("projections.customers.FOLD_EVERY", every):
            whole = start_customer(rt.engine.model, str(cid), history, rt.engine.keyring.reveal, keep_points=True)
        facts = facts_of(history)
        assert [p.facts for p in whole.points] == [n for n in range(1, len(facts) + 1)
                                                   if n % max(every, (1 << (n.bit_length() - 1)) // 8) == 0]
        for point in whole.points:
            assert point.last == facts[point.facts - 1].sort_key
            stored = FoldPoint(point.facts, point.last, point.recorded_at, orjson.loads(orjson.dumps(point.state)))
            rows = resume_customer(rt.engine.model, str(cid), stored, facts[point.facts:], whole.recorded_at,
                                   rt.engine.keyring.reveal)
            assert rows == whole.rows


@SETTINGS
@given(long_populations(), st.randoms(use_true_random=False), st.integers(1, 9), st.integers(2, 4))
def test_point_in_time_answers_from_kept_folds_equal_those_of_every_event(lines, rnd, step, every):
    shuffled = list(lines)
    rnd.shuffle(shuffled)
    with patch("projections.customers.FOLD_EVERY", every):
        rt = fresh()
        ingest_in_steps(rt, shuffled, step)
        incremental = kept_folds(rt)
        rt.runner.rebuild(TODAY)
        assert kept_folds(rt) == incremental  # a step keeps what a rebuild keeps
        for key in {f"shop:{n}" for n in range(2)}:
            for as_of, known_at in _moments(rt, key, rnd):
                assert customer_state(rt, key, as_of=as_of, known_at=known_at) == \
                    customer_state(rt, key, as_of=as_of, known_at=known_at, use_folds=False), (as_of, known_at)


def _moments(rt, key, rnd) -> list[tuple[datetime | None, datetime | None]]:
    """Now; a second before and at some facts' business times; at some events' recorded times;
    and both clocks at once."""
    events = rt.engine.history(customer_id(key))
    if not events:
        return []
    occurred = sorted({e.occurred_at for e in events if hasattr(e, "occurred_at")})
    recorded = [e.timestamp for e in events]
    second = timedelta(seconds=1)
    moments: list[tuple[datetime | None, datetime | None]] = [(None, None)]
    moments += [(t + d, None) for t in rnd.sample(occurred, min(6, len(occurred))) for d in (-second, 0 * second)]
    moments += [(None, t) for t in rnd.sample(recorded, min(4, len(recorded)))]
    moments += [(rnd.choice(occurred), rnd.choice(recorded)) for _ in range(3)]
    return moments


def _busy_customer(n: int, key: str = "shop:busy") -> list[bytes]:
    lines = [ev("crm.customer.registered", key, "2025-01-01T09:00:00Z", ADA, id="reg")]
    for i in range(1, n):
        at = (datetime(2025, 1, 1, 9, tzinfo=UTC) + timedelta(hours=6 * i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(purchase(key, at, f"o-{i}", id=f"p-{i}") if i % 10 == 0 else interaction(key, at, id=f"i-{i}"))
    return lines


@pytest.mark.parametrize("kind", ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def test_a_long_history_is_answered_from_a_kept_fold(kind, tmp_path, request):
    """On every store: PostgreSQL keeps a fold's state as jsonb, which orders its keys anew."""
    rt = runtime_factory(kind, tmp_path, lambda: request.getfixturevalue("postgres_url"))()
    try:
        rt.ingest_lines(_busy_customer(300))
        rt.catch_up()
        assert [r["facts"] for r in kept_folds(rt)] == [64, 128, 192, 256]
        cid = customer_id("shop:busy")
        stored = stored_states_of(rt.engine.recorder, cid)
        middle = datetime(2025, 1, 1, 9, tzinfo=UTC) + timedelta(hours=6 * 150)
        with patch("projections.folds.resume_customer", wraps=resume_customer) as resumed:
            state = customer_state(rt, "shop:busy", as_of=middle)
        (point, after), = [(c.args[2], c.args[3]) for c in resumed.call_args_list]
        assert point.facts == 128 and len(after) == 151 - 128
        assert state == customer_state(rt, "shop:busy", as_of=middle, use_folds=False)
        assert state[0]["orders"] == 15 and state[0]["email"] == ADA["email"]
        assert folds.answer(EngineLogSource(rt.engine), rt.views, rt.engine.model, cid, stored, None, None,
                            rt.engine.keyring.reveal) is not None
    finally:
        rt.close()


def test_a_kept_fold_that_a_late_fact_no_longer_fits_is_not_used_until_the_views_fold_again(tmp_path):
    rt = runtime_factory("sqlite", tmp_path, lambda: "")()
    try:
        rt.ingest_lines(_busy_customer(200))
        rt.catch_up()
        cid = customer_id("shop:busy")
        late = datetime(2025, 1, 3, 9, 30, tzinfo=UTC)  # before the 64th fact in business time
        rt.ingest_lines([purchase("shop:busy", late.strftime("%Y-%m-%dT%H:%M:%SZ"), "o-late", id="late")])

        def from_folds(as_of):
            return folds.answer(EngineLogSource(rt.engine), rt.views, rt.engine.model, cid,
                                stored_states_of(rt.engine.recorder, cid), as_of, None, rt.engine.keyring.reveal)

        end = datetime(2026, 1, 1, tzinfo=UTC)
        assert from_folds(end) is None  # the views have not seen the late purchase: no fold fits
        assert customer_state(rt, "shop:busy", as_of=end)[0]["orders"] == 20
        before_it = late - timedelta(minutes=1)
        assert from_folds(before_it) is None  # too few facts kept for any fold
        rt.catch_up()  # the late fact makes the views fold the whole history, and keep new folds
        assert from_folds(end) is not None
        assert customer_state(rt, "shop:busy", as_of=end) == customer_state(rt, "shop:busy", as_of=end,
                                                                              use_folds=False)
    finally:
        rt.close()


def test_folds_kept_by_another_stage_model_or_other_code_are_not_read(tmp_path):
    import dataclasses

    rt = runtime_factory("sqlite", tmp_path, lambda: "")()
    try:
        rt.ingest_lines(_busy_customer(100))
        rt.catch_up()
        cid = customer_id("shop:busy")
        stored = stored_states_of(rt.engine.recorder, cid)
        source = EngineLogSource(rt.engine)
        model = rt.engine.model
        assert folds.answer(source, rt.views, model, cid, stored, None, None, rt.engine.keyring.reveal)
        other = dataclasses.replace(model, inactivity_days=model.inactivity_days + 1)
        assert folds.derivation_of(other) != folds.derivation_of(model)
        assert folds.answer(source, rt.views, other, cid, stored, None, None, rt.engine.keyring.reveal) is None
        with patch.object(folds, "FORMAT", "another"), patch.dict(folds._fingerprints, clear=True):
            assert folds.answer(source, rt.views, model, cid, stored, None, None, rt.engine.keyring.reveal) is None
    finally:
        rt.close()


def test_kept_folds_hold_personal_data_sealed_and_reveal_nothing_after_an_erasure(tmp_path):
    rt = runtime_factory("sqlite", tmp_path, lambda: "")()
    try:
        rt.ingest_lines(_busy_customer(150))
        rt.catch_up()
        kept = json.dumps([r["state"] for r in kept_folds(rt)])
        assert kept and not any(secret in kept for secret in ADA.values())
        middle = datetime(2025, 1, 20, tzinfo=UTC)
        assert customer_state(rt, "shop:busy", as_of=middle)[0]["name"] == ADA["name"]
        assert rt.forget("shop:busy")
        state = customer_state(rt, "shop:busy", as_of=middle)
        assert state == customer_state(rt, "shop:busy", as_of=middle, use_folds=False)
        assert state[0]["name"] is None and state[0]["email"] is None
    finally:
        rt.close()


@pytest.mark.parametrize("every", [64, 3, 5, 100])
def test_the_next_fold_point_is_the_first_point_after(every):
    with patch("projections.customers.FOLD_EVERY", every):
        points = [n for n in range(1, 1 << 15) if is_fold_point(n)]
        following = iter(points)
        point = next(following)
        for facts in range(0, points[-1]):
            if facts >= point:
                point = next(following)
            assert next_fold_point(facts) == point, facts
