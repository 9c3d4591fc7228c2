"""Auditors' questions about one customer: its history, and its state at a moment.

State at a moment re-derives the customer's rows from its stored events with
the same code as the views, keeping only what had happened by ``as_of``
(business time) and what had been recorded by ``known_at`` (recorded time).
A long history starts from a fold the projections kept (``projections.folds``),
checked against the stored events before it is used.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lifecycle import ids
from lifecycle.lookup import stored_states_of
from lifecycle.runtime import Runtime
from projections import folds
from projections.customers import derive_customer
from projections.log import EngineLogSource, LogEvent


def _events(
    rt: Runtime, key: str, as_of: datetime | None = None, known_at: datetime | None = None,
    stored: list[tuple[int, str, bytes]] | None = None,
) -> list[LogEvent]:
    """The customer's stored events (``stored``: its rows, already read), read straight from
    their JSON (see EngineLogSource); those whose JSON shows them to be later than ``as_of`` or
    ``known_at`` are left undecoded."""
    source = EngineLogSource(rt.engine)
    customer_id = ids.customer_id(key)
    if stored is None:
        stored = stored_states_of(rt.engine.recorder, customer_id)
    if as_of is not None or known_at is not None:
        stored = [row for row in stored if not source.shows_later(row[2], as_of, known_at)]
    return source.aggregate_events(customer_id, stored)


def customer_state(
    rt: Runtime, key: str, as_of: datetime | None = None, known_at: datetime | None = None,
    use_folds: bool = True,
) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """The customer's row and stage history at a moment (now: the whole history); None when it
    did not exist then. ``use_folds=False``: fold every event, as an audit of the kept folds."""
    customer_id = ids.customer_id(key)
    rows, stored = None, None
    if use_folds:
        stored = stored_states_of(rt.engine.recorder, customer_id)
        rows = folds.answer(EngineLogSource(rt.engine), rt.views, rt.engine.model, customer_id, stored,
                            as_of, known_at, rt.engine.keyring.reveal)
    if rows is None:
        events = [
            e for e in _events(rt, key, as_of, known_at, stored)
            if (known_at is None or e.recorded_at <= known_at) and (as_of is None or _occurred_by(e, as_of))
        ]
        rows = derive_customer(rt.engine.model, str(customer_id), events, rt.engine.keyring.reveal)
    if not rows.customer_current:
        return None
    return rows.customer_current[0], rows.stage_history


def _occurred_by(event: LogEvent, moment: datetime) -> bool:
    occurred = event.payload.get("occurred_at")
    return not isinstance(occurred, str) or datetime.fromisoformat(occurred) <= moment


def customer_history(rt: Runtime, key: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for e in _events(rt, key):
        p = dict(e.payload)
        detail = p.pop("data", None)
        if isinstance(detail, dict):  # personal fields open while the customer's key exists
            detail = {k: rt.engine.keyring.reveal(e.aggregate_id, v) for k, v in detail.items()}
        if detail is None:
            detail = {k: v for k, v in p.items() if k not in ("occurred_at", "source", "inbound_id")}
        rows.append({
            "version": e.version, "event": e.name,
            "occurred_at": p.get("occurred_at"), "recorded_at": e.recorded_at.isoformat(),
            "source": p.get("source"), "inbound_id": p.get("inbound_id"), "detail": detail,
        })
    if rows:
        for r in rt.views.rows("rejections", where={"subject": key}, order_by=("recorded_at",)):
            rows.append({
                "version": None, "event": f"Rejected ({r['outcome']})",
                "occurred_at": r["occurred_at"].isoformat() if r["occurred_at"] else None,
                "recorded_at": r["recorded_at"].isoformat(), "source": r["source"],
                "inbound_id": r["event_id"], "detail": {"reason": r["reason"]},
            })
    return rows
