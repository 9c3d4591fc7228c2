"""Customer snapshots: a reload starts from the latest one and replays only the events after it.

Ingest keeps a bounded cache of customers; once the customers outnumber it, every batch reloads
some from the store, and without snapshots a reload decoded the customer's whole history: at
400k inbound events, ~37 events per reload and 47% of ingest's time (bench/PROFILE.md).

A snapshot is ``Customer.snapshot_state()`` encoded the way the mapper encodes an event
(transcoder, then the compressor and cipher when the store has them), stored by the event
store's recorder in the same transaction as the events of its version (``lifecycle.ledger``).
It is a cache, not a record: auditors replay events, and a snapshot of another format than the
code's (``customer.SNAPSHOT_FORMAT``) is ignored.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Mapper

from lifecycle.customer import Customer

#: A customer's snapshot is stored whenever its version passes a multiple of this: a reload
#: decodes at most this many events after it.
EVERY = 20


def due(touched: Iterable[Aggregate], mapper: Mapper[UUID]) -> list[tuple[UUID, int, bytes]]:
    """Snapshot rows ``(id, version, state)`` of the customers whose pending events pass a
    multiple of EVERY (call before the events are collected: the state includes them)."""
    rows = []
    for aggregate in touched:
        if isinstance(aggregate, Customer) and aggregate.pending_events:
            before = aggregate.version - len(aggregate.pending_events)
            if aggregate.version // EVERY > before // EVERY:
                rows.append((aggregate.id, aggregate.version, _encode(mapper, aggregate.snapshot_state())))
    return rows


def restore(mapper: Mapper[UUID], data: bytes) -> Customer | None:
    """The customer a stored snapshot holds; None for a snapshot of another format."""
    return Customer.from_snapshot_state(_decode(mapper, data))


def _encode(mapper: Mapper[UUID], state: dict[str, Any]) -> bytes:
    data = mapper.transcoder.encode(state)
    if mapper.compressor:
        data = mapper.compressor.compress(data)
    if mapper.cipher:
        data = mapper.cipher.encrypt(data)
    return data


def _decode(mapper: Mapper[UUID], data: bytes) -> dict[str, Any]:
    if mapper.cipher:
        data = mapper.cipher.decrypt(data)
    if mapper.compressor:
        data = mapper.compressor.decompress(data)
    return mapper.transcoder.decode(data)
