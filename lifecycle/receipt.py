"""The inbound receipt: one per upstream event (``source`` + ``id``), for ever.

Saving it in the same transaction as the domain events it caused is what
makes deduplication exact: a second delivery finds the receipt, and two
processes racing on the same event collide on the receipt's version 1.
Refused and malformed events keep their reason and original bytes here,
which is where the rejections view and the auditors read them from.
"""

from __future__ import annotations

import base64
from datetime import datetime

from eventsourcing.domain import Aggregate

ACCEPTED, REFUSED, DUPLICATE, MALFORMED = "accepted", "refused", "duplicate", "malformed"


class InboundReceipt(Aggregate):
    class Received(Aggregate.Created):
        source: str | None
        event_id: str | None
        type: str | None
        subject: str | None
        occurred_at: datetime | None
        outcome: str
        reason: str | None
        raw_b64: str | None

    def __init__(
        self,
        source: str | None,
        event_id: str | None,
        type: str | None,  # noqa: A002 - the CloudEvents attribute name
        subject: str | None,
        occurred_at: datetime | None,
        outcome: str,
        reason: str | None,
        raw_b64: str | None,
    ) -> None:
        self.source = source
        self.event_id = event_id
        self.type = type
        self.subject = subject
        self.occurred_at = occurred_at
        self.outcome = outcome
        self.reason = reason
        self.raw_b64 = raw_b64



def encode_raw(raw: bytes) -> str:
    """Bytes kept exactly, even when they are not UTF-8."""
    return base64.b64encode(raw).decode("ascii")
