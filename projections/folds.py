"""Kept folds: a point-in-time answer about a long history starts from the nearest one.

The projections fold each customer's facts in business-time order (``projections.customers``);
at every fold point (``is_fold_point``: every 64 facts, then eight times per doubling) the runner
keeps the fold in the view store's ``customer_folds``, in the transaction of the rows it made.
``answer`` then re-derives a customer at a past moment from the kept fold nearest below it and
only the facts after it, instead of decoding and folding every fact up to that moment.

A kept fold is a cache, never a record, and it is checked before it is used: the fold of the
first k facts of a customer's history in business-time order, the k-th sorting at L, is the
fold of the facts an answer keeps that sort at or before L when (a) the answer keeps every one of
its facts (L's business time is not after ``as_of``, its latest recorded time not after
``known_at``) and (b) the answer keeps exactly k facts that sort at or before L. Stored events are
never changed or removed, so its k facts are among those, and k of them are all of them. A fold
kept by other code or another stage model has another ``derivation`` fingerprint and is not read.
Where any of this cannot be read from the stored JSON, the caller folds every event as before.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from lifecycle import customer, rules, stages
from lifecycle.stages import StageModel
from projections import customers
from projections.customers import CustomerRows, FoldPoint, Reveal, facts_of, fold_points_below, is_fact, resume_customer
from projections.log import EngineLogSource
from projections.store import ViewStore
from projections.tables import CUSTOMER_FOLDS

#: Bumped when a fold's ``state`` changes its shape.
FORMAT = "1"
#: Kept folds an answer reads at most (the nearest below it first), before it folds every event.
TRIED = 3

_fingerprints: dict[str, str] = {}
# The fingerprint of the model asked about last, by identity: showing a model (``repr``) costs
# more than folding a step's facts, and a runner asks at every step.
_last: tuple[StageModel | None, str] = (None, "")


def derivation_of(model: StageModel) -> str:
    """A fingerprint of ``model`` and of the source of the code that folds: a fold kept before
    either changed is not used."""
    global _last
    if _last[0] is model:
        return _last[1]
    text = repr(model)
    if text not in _fingerprints:
        digest = hashlib.sha256(f"{FORMAT}\n{text}\n".encode())
        for module in (rules, stages, customer, customers):
            try:
                digest.update(Path(module.__file__ or "").read_bytes())
            except OSError:  # no source to read: the module's name stands for it
                digest.update(module.__name__.encode())
        _fingerprints[text] = digest.hexdigest()[:32]
    _last = (model, _fingerprints[text])
    return _last[1]


def fold_rows(customer_id: str, model: StageModel, points: Sequence[FoldPoint]) -> list[dict[str, Any]]:
    """``customer_folds`` rows of a customer's kept folds."""
    if not points:
        return []
    derivation = derivation_of(model)
    return [
        {"customer_id": customer_id, "facts": p.facts, "last_occurred_at": p.last[0],
         "last_tiebreak": list(p.last[1:]), "recorded_at": p.recorded_at, "derivation": derivation,
         "state": p.state}
        for p in points
    ]


def _point_of(row: dict[str, Any]) -> FoldPoint:
    rank, source, inbound_id = row["last_tiebreak"]
    return FoldPoint(row["facts"], (row["last_occurred_at"], rank, source, inbound_id), row["recorded_at"],
                     row["state"])


def answer(
    source: EngineLogSource, store: ViewStore, model: StageModel, customer_id: UUID,
    stored: Sequence[tuple[int, str, bytes]], as_of: datetime | None, known_at: datetime | None,
    reveal: Reveal,
) -> CustomerRows | None:
    """The customer's rows from what had happened by ``as_of`` and been recorded by
    ``known_at``, started from a kept fold; None when no kept fold fits (fold every event).

    1. read each stored event's name and clocks from its JSON (one it cannot read: None)
    2. keep what the question keeps, as ``lifecycle.inspect`` does with decoded events
    3. read the kept folds at the fold points nearest below the number of facts kept
    4. the first that the question keeps whole, and whose facts are all the kept facts sorting
       at or before its last (decoding only the kept facts from its last business time on),
       folds the kept facts after it
    """
    # 1. clocks
    clocked = source.clocks(stored)
    if clocked is None:
        return None
    # 2. kept
    kept = [c for c in clocked
            if (known_at is None or c.recorded_at <= known_at)
            and (as_of is None or c.occurred_at is None or c.occurred_at <= as_of)]
    facts = [c for c in kept if is_fact(c.name)]
    if not facts or not any(c.name == "FirstSeen" for c in kept):
        return None
    if any(c.occurred_at is None for c in facts):
        return None
    # 3. kept folds
    counts = fold_points_below(len(facts), TRIED)
    if not counts:
        return None
    points = sorted(
        (_point_of(row) for row in store.rows(CUSTOMER_FOLDS.name, where={
            "customer_id": str(customer_id), "derivation": derivation_of(model), "facts": counts})),
        key=lambda p: -p.facts)
    # 4. the first that fits
    decoded: dict[int, Any] = {}
    for point in points:
        last = point.last
        if (as_of is not None and last[0] > as_of) or (known_at is not None and point.recorded_at > known_at):
            continue
        before = sum(1 for c in facts if c.occurred_at < last[0])  # type: ignore[operator]
        later = [c for c in facts if c.occurred_at >= last[0]]  # type: ignore[operator]
        missing = [c for c in later if c.version not in decoded]
        for c, event in zip(missing, source.aggregate_events(customer_id, [(c.version, c.topic, c.state) for c in missing]),
                            strict=True):
            decoded[c.version] = facts_of([event])[0]
        tail = sorted((decoded[c.version] for c in later), key=lambda f: f.sort_key)
        after = [f for f in tail if f.sort_key > last]
        if before + len(tail) - len(after) != point.facts:
            continue
        recorded = max(c.recorded_at for c in kept)
        return resume_customer(model, str(customer_id), point, after, recorded, reveal)
    return None
