"""Building inbound CloudEvents lines in tests."""

from __future__ import annotations

import itertools
import json
from typing import Any

_ids = itertools.count(1)


def ev(
    type_: str, subject: str, time: str, data: dict[str, Any] | None = None, *,
    id: str | None = None, source: str = "test/suite", **extra: Any,
) -> bytes:
    body = {
        "specversion": "1.0", "id": id or f"t-{next(_ids)}", "source": source, "type": type_,
        "subject": subject, "time": time, "datacontenttype": "application/json", "data": data or {},
        **extra,
    }
    return json.dumps(body).encode()


def purchase(subject: str, time: str, order_id: str, amount: str = "10.00", currency: str = "USD", **kw: Any) -> bytes:
    return ev("crm.purchase.recorded", subject, time,
              {"order_id": order_id, "amount": amount, "currency": currency, "items": 1}, **kw)


def interaction(subject: str, time: str, **kw: Any) -> bytes:
    return ev("crm.interaction.recorded", subject, time, {"channel": "web", "kind": "page_view"}, **kw)


def feedback(subject: str, time: str, score: int, **kw: Any) -> bytes:
    return ev("crm.feedback.submitted", subject, time, {"score": score}, **kw)


def request(subject: str, time: str, to_stage: str, reason: str = "sales_review", **kw: Any) -> bytes:
    return ev("crm.stage.change.requested", subject, time, {"to_stage": to_stage, "reason": reason}, **kw)
