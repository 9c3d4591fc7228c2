"""Deterministic aggregate ids: the same upstream name always gives the same id.

That is what lets any event for an unknown key create its customer, and what
makes a redelivered inbound event find the receipt of its first delivery.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from uuid import UUID, SafeUUID

NAMESPACE = UUID("6f1c1a52-94c3-4b5e-9a3e-6c1f0e0d2b7a")


# Asked several times per event of a batch (uuid5 was a tenth of ingest); a batch has at most
# a few hundred customers, so more entries would only hold memory.
@lru_cache(maxsize=1_024)
def customer_id(key: str) -> UUID:
    return _uuid5(b"customer\x00" + key.encode())


@lru_cache(maxsize=1_024)
def customer_id_text(key: str) -> str:
    """``str(customer_id(key))``: the key ring's and the views' name for the customer."""
    return str(customer_id(key))


@lru_cache(maxsize=1_024)
def deal_id(upstream_deal_id: str) -> UUID:
    return _uuid5(b"deal\x00" + upstream_deal_id.encode())


def receipt_id(source: str, event_id: str) -> UUID:
    """CloudEvents: ``source`` + ``id`` identify an event for ever."""
    return _uuid5(b"inbound\x00" + source.encode() + b"\x00" + event_id.encode())


# uuid5's version and variant bits, as ``UUID(bytes=..., version=5)`` sets them.
_KEEP = ~((0xF000 << 64) | (0xC000 << 48))
_VERSION_5 = (5 << 76) | (0x8000 << 48)
_NAMESPACE_BYTES = NAMESPACE.bytes
_UNKNOWN = SafeUUID.unknown  # read once: an Enum member's attribute access is Python code
_new = object.__new__
_set = object.__setattr__


def _uuid5(name: bytes) -> UUID:
    """``uuid5(NAMESPACE, name)``, in half the time: every inbound event needs one (its receipt),
    and ``UUID.__init__`` checks arguments that a digest cannot get wrong. tests/test_ids.py
    compares the two."""
    digest = hashlib.sha1(_NAMESPACE_BYTES + name).digest()
    uuid = _new(UUID)
    _set(uuid, "int", (int.from_bytes(digest[:16], "big") & _KEEP) | _VERSION_5)
    _set(uuid, "is_safe", _UNKNOWN)
    return uuid


def malformed_receipt_id(raw: bytes) -> UUID:
    """A malformed event has no trustworthy id: its bytes are its identity."""
    return _uuid5(b"malformed\x00" + hashlib.sha256(raw).hexdigest().encode())
