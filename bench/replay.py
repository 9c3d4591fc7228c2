"""replay: the state of one customer with 1,000 events at a past moment, against a raw select.

Ours: ``lifecycle.inspect.customer_state(rt, key, as_of=T)`` (what ``lifecycle customer show KEY
--as-of T`` runs): read the customer's stored events, start from the fold the views kept nearest
below T (``projections.folds``; checked against the events' clocks), decode and fold only the
facts after it that happened by T. T is the business time of the customer's middle event.
Baseline: ``recorder.select_events(customer_id)``, the stored rows of that customer, undecoded.
The figure is our time ÷ the baseline's time (median of alternating repeats; lower is better).
Also reported: the ratio against select + decode (``engine.events.get``), ``--known-at``, and the
same answer folding every event (``use_folds=False``, what it was before folds were kept).

The store is embedded SQLite with some other traffic (a simulated population) around the
customer, so the select does not run on a table holding only that customer.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.common import Context, inbound_lines, median, scratch
from lifecycle import ids
from lifecycle.config import Settings
from lifecycle.inspect import customer_state
from lifecycle.runtime import Runtime
from projections.tables import CUSTOMER_FOLDS

KEY = "shop:bench-replay"
START = datetime(2024, 1, 1, 9, 0, tzinfo=UTC)


def _line(n: int, typ: str, source: str, data: dict[str, Any]) -> bytes:
    at = START + timedelta(hours=6 * n)
    return json.dumps({
        "specversion": "1.0", "id": f"bench-replay-{n}", "source": source, "type": typ,
        "subject": KEY, "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "datacontenttype": "application/json", "data": data,
    }).encode()


def customer_lines(count: int, first: int = 0) -> list[bytes]:
    """A busy customer's feed: registration, then page views, purchases, NPS answers, profile
    changes and support tickets."""
    lines = []
    for n in range(first, first + count):
        if n == 0:
            lines.append(_line(n, "crm.customer.registered", "shop/checkout", {
                "name": "Ada Bench", "email": "ada.bench@example.org", "country": "GB", "channel": "web"}))
        elif n % 10 == 0:
            lines.append(_line(n, "crm.purchase.recorded", "shop/checkout", {
                "order_id": f"o-{n}", "amount": f"{20 + n % 70}.{n % 100:02d}", "currency": "USD",
                "items": 1 + n % 3}))
        elif n % 50 == 7:
            lines.append(_line(n, "crm.feedback.submitted", "survey/nps", {"score": 9 if n % 100 < 50 else 6}))
        elif n % 25 == 3:
            lines.append(_line(n, "crm.profile.updated", "crm/sales", {"company": f"Bench {n} Ltd"}))
        elif n % 40 == 11:
            lines.append(_line(n, "crm.ticket.opened", "support/desk", {
                "ticket_id": f"t-{n}", "priority": "normal", "topic": "returns"}))
        elif n % 40 == 12:
            lines.append(_line(n, "crm.ticket.resolved", "support/desk", {"ticket_id": f"t-{n - 1}", "satisfied": True}))
        else:
            lines.append(_interaction(n))
    return lines


def _interaction(n: int) -> bytes:
    return _line(n, "crm.interaction.recorded", "web/tracker",
                 {"channel": "web", "kind": "page_view", "detail": f"/p/{n % 37}"})


def replay(ctx: Context) -> tuple[dict[str, float], dict[str, Any]]:
    target = ctx.sizes.replay_events
    with scratch(ctx.workdir, "replay") as d:
        settings = Settings(database_url=None, data_dir=d, stage_model_path=None,
                            batch_size=ctx.sizes.batch, kafka_bootstrap=None)
        rt = Runtime.open(settings)
        try:
            # 1. other traffic, then the busy customer (up to exactly `target` events, topped up
            #    with page views, which record one event each)
            background = inbound_lines(ctx.sizes.replay_background * 30)
            rt.ingest_lines(background)
            cid = ids.customer_id(KEY)
            sent = max(1, target - target // 20)
            rt.ingest_lines(customer_lines(sent))
            have = len(rt.engine.recorder.select_events(cid))
            while have < target:
                rt.ingest_lines([_interaction(sent + i) for i in range(target - have)])
                sent += target - have
                have = len(rt.engine.recorder.select_events(cid))
            rt.catch_up()
            events = rt.engine.history(cid)
            as_of = next(e.occurred_at for e in events[len(events) // 2:] if hasattr(e, "occurred_at"))
            known_at = events[len(events) // 2].timestamp
            ctx.log(f"replay: customer with {have} events; {ctx.sizes.replay_repeats} repeats")

            # 2. alternate ours and the baselines, so that a busy moment hits all of them
            def timed(fn) -> float:
                started = time.perf_counter()
                fn()
                return time.perf_counter() - started

            ours, ours_known, raw, decoded, every = [], [], [], [], []
            state = customer_state(rt, KEY, as_of=as_of)  # warm-up, and a sanity check
            assert state is not None and state == customer_state(rt, KEY, as_of=as_of, use_folds=False)
            kept = rt.views.rows(CUSTOMER_FOLDS.name, where={"customer_id": str(cid)})
            for _ in range(ctx.sizes.replay_repeats):
                raw.append(timed(lambda: rt.engine.recorder.select_events(cid)))
                ours.append(timed(lambda: customer_state(rt, KEY, as_of=as_of)))
                decoded.append(timed(lambda: list(rt.engine.events.get(cid))))
                ours_known.append(timed(lambda: customer_state(rt, KEY, known_at=known_at)))
                every.append(timed(lambda: customer_state(rt, KEY, as_of=as_of, use_folds=False)))
        finally:
            rt.close()
    figures = {"replay": median(ours) / median(raw)}
    details = {
        "customer_events": have,
        "inbound_events_of_customer": sent,
        "background_inbound_events": len(background),
        "as_of": as_of.isoformat(),
        "stage_at_as_of": state[0]["stage"],
        "ours_median_ms": median(ours) * 1000,
        "ours_known_at_median_ms": median(ours_known) * 1000,
        "raw_select_median_ms": median(raw) * 1000,
        "select_and_decode_median_ms": median(decoded) * 1000,
        "ratio_vs_select_and_decode": median(ours) / median(decoded),
        "ratio_known_at_vs_raw_select": median(ours_known) / median(raw),
        "kept_folds_of_customer": [r["facts"] for r in sorted(kept, key=lambda r: r["facts"])],
        "every_event_median_ms": median(every) * 1000,
        "ratio_every_event_vs_raw_select": median(every) / median(raw),
        "repeats": ctx.sizes.replay_repeats,
    }
    return figures, details
