"""One deal's rows, re-derived from its facts sorted by business time.

A change dated after the deal closed is ignored here exactly as the aggregate
refuses it, whatever order the events arrived in.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from lifecycle.deal import PIPELINE_BY_NAME
from projections.log import LogEvent

_KINDS = {"Opened": "opened", "StageMoved": "stage_changed", "Won": "won", "Lost": "lost"}
# Within one instant: open first, close last.
_RANK = {"opened": 0, "stage_changed": 1, "won": 2, "lost": 2}


def derive_deal(deal_aggregate_id: str, events: Sequence[LogEvent]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(deal_current rows, deal_stage_history rows) for one deal."""
    created = next((e for e in events if e.name == "FirstSeen"), None)
    facts = sorted(
        (
            (datetime.fromisoformat(e.payload["occurred_at"]), _RANK[_KINDS[e.name]],
             e.payload["source"], e.payload["inbound_id"], _KINDS[e.name], e.payload["data"])
            for e in events if e.name in _KINDS
        ),
        key=lambda f: f[:4],
    )
    if created is None or not facts:
        return [], []
    state: dict[str, Any] = {
        "deal_id": created.payload["deal_id"],
        "customer_key": created.payload["customer_key"],
        "customer_id": created.payload["customer_id"],
        "name": None, "owner": None, "amount": None, "currency": None, "expected_close": None,
        "stage": "initial_contact", "opened_at": facts[0][0], "closed_at": None,
        "outcome": "open", "lost_reason": None,
    }
    history: list[tuple[str, datetime, Decimal | None, date | None]] = []
    for at, _, _, _, kind, data in facts:
        if state["closed_at"] is not None:
            continue  # after the close nothing changes (the aggregate refuses it too)
        if "amount" in data:
            state["amount"] = Decimal(str(data["amount"]))
        if "expected_close" in data:
            state["expected_close"] = date.fromisoformat(str(data["expected_close"]))
        for field in ("name", "owner", "currency"):
            if field in data:
                state[field] = data[field]
        if kind == "opened":
            state["opened_at"] = min(state["opened_at"], at)
            stage = str(data.get("stage", "initial_contact"))
        elif kind == "stage_changed":
            stage = str(data["stage"])
        elif kind == "won":
            stage, state["closed_at"], state["outcome"] = "closed_won", at, "won"
        else:
            stage, state["closed_at"], state["outcome"] = "closed_lost", at, "lost"
            state["lost_reason"] = data.get("reason")
        state["stage"] = stage
        if not history or history[-1][0] != stage:
            history.append((stage, at, state["amount"], state["expected_close"]))
    pipeline_stage = PIPELINE_BY_NAME[state["stage"]]
    current = {
        **state,
        "probability": pipeline_stage.probability,
        "forecast_category": pipeline_stage.forecast_category,
        "weighted_amount": (state["amount"] * pipeline_stage.probability) if state["amount"] is not None else None,
        "updated_at": max(e.recorded_at for e in events),
    }
    rows = []
    for seq, (stage, entered, amount, expected_close) in enumerate(history):
        exited = history[seq + 1][1] if seq + 1 < len(history) else None
        rows.append({
            "deal_id": state["deal_id"], "customer_key": state["customer_key"], "seq": seq,
            "stage": stage, "entered_at": entered, "exited_at": exited,
            "amount": amount, "currency": state["currency"], "expected_close": expected_close,
        })
    return [current], rows
