"""Hypothesis strategies: small populations of valid inbound events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st

from tests.events import ev, feedback, interaction, purchase

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def _time(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


minutes = st.integers(min_value=0, max_value=400 * 24 * 60)


@st.composite
def customer_events(draw, key: str) -> list[bytes]:
    """Behaviour events of one customer (no explicit stage requests: those are decided on arrival)."""
    lines: list[bytes] = []
    for i in range(draw(st.integers(1, 10))):
        kind = draw(st.sampled_from(["interaction", "purchase", "purchase", "feedback", "referral",
                                     "qualified", "consent", "refund_purchase", "ticket"]))
        at = draw(minutes)
        uid = f"{key}-{i}"
        if kind == "interaction":
            lines.append(interaction(key, _time(at), id=uid))
        elif kind == "purchase":
            lines.append(purchase(key, _time(at), f"o-{uid}", f"{draw(st.integers(0, 50000)) / 100:.2f}", id=uid))
        elif kind == "refund_purchase":
            lines.append(purchase(key, _time(at), f"o-{uid}", "20.00", id=uid))
            lines.append(ev("crm.refund.recorded", key, _time(at + draw(st.integers(0, 5000))),
                            {"order_id": f"o-{uid}", "amount": "5.00", "currency": "USD"}, id=uid + "r"))
        elif kind == "feedback":
            lines.append(feedback(key, _time(at), draw(st.integers(0, 10)), id=uid))
        elif kind == "referral":
            lines.append(ev("crm.referral.made", key, _time(at), {"referred_key": "shop:x"}, id=uid))
        elif kind == "qualified":
            bant = {c: draw(st.booleans()) for c in ("budget", "authority", "need", "timeline")}
            lines.append(ev("crm.lead.qualified", key, _time(at), bant, id=uid))
        elif kind == "consent":
            lines.append(ev("crm.consent.changed", key, _time(at),
                            {"purpose": draw(st.sampled_from(["all", "email"])), "granted": draw(st.booleans())}, id=uid))
        else:
            lines.append(ev("crm.ticket.opened", key, _time(at), {"ticket_id": uid}, id=uid))
            lines.append(ev("crm.ticket.resolved", key, _time(at + 60), {"ticket_id": uid}, id=uid + "z"))
    if draw(st.booleans()):
        lines += draw(deal_events(key))
    return lines


@st.composite
def deal_events(draw, key: str) -> list[bytes]:
    """One deal: opened, some stage moves, at most one close (in any business order)."""
    deal = f"d-{key}"
    lines = [ev("crm.deal.opened", key, _time(draw(minutes)),
                {"deal_id": deal, "amount": "1000.00", "currency": "USD", "expected_close": "2025-09-01"},
                id=deal + "-o")]
    for i, stage in enumerate(draw(st.lists(st.sampled_from(["qualification", "proposal", "negotiation"]), max_size=3))):
        lines.append(ev("crm.deal.stage.changed", key, _time(draw(minutes)), {"deal_id": deal, "stage": stage},
                        id=f"{deal}-s{i}"))
    close = draw(st.sampled_from([None, "won", "lost"]))
    if close == "won":
        lines.append(ev("crm.deal.won", key, _time(draw(minutes)), {"deal_id": deal}, id=deal + "-w"))
    elif close == "lost":
        lines.append(ev("crm.deal.lost", key, _time(draw(minutes)), {"deal_id": deal, "reason": "price"}, id=deal + "-l"))
    return lines


@st.composite
def populations(draw) -> list[bytes]:
    lines: list[bytes] = []
    for n in range(draw(st.integers(1, 4))):
        lines += draw(customer_events(f"shop:{n}"))
    return lines
