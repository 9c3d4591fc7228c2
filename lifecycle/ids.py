"""Deterministic aggregate ids: the same upstream name always gives the same id.

That is what lets any event for an unknown key create its customer, and what
makes a redelivered inbound event find the receipt of its first delivery.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from uuid import UUID, uuid5

NAMESPACE = UUID("6f1c1a52-94c3-4b5e-9a3e-6c1f0e0d2b7a")


# Asked several times per event of a batch (uuid5 was a tenth of ingest); a batch has at most
# a few hundred customers, so more entries would only hold memory.
@lru_cache(maxsize=1_024)
def customer_id(key: str) -> UUID:
    return uuid5(NAMESPACE, "customer\x00" + key)


@lru_cache(maxsize=1_024)
def deal_id(upstream_deal_id: str) -> UUID:
    return uuid5(NAMESPACE, "deal\x00" + upstream_deal_id)


def receipt_id(source: str, event_id: str) -> UUID:
    """CloudEvents: ``source`` + ``id`` identify an event for ever."""
    return uuid5(NAMESPACE, "inbound\x00" + source + "\x00" + event_id)


def malformed_receipt_id(raw: bytes) -> UUID:
    """A malformed event has no trustworthy id: its bytes are its identity."""
    return uuid5(NAMESPACE, "malformed\x00" + hashlib.sha256(raw).hexdigest())
