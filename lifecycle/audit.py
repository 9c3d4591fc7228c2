"""Tamper evidence: hash chains over the stored events, and their verification.

The sealer follows the notification log in commit order and records, for every
stored event, the SHA-256 of its stored bytes and two chained hashes: one over
the whole log, one over the event's aggregate (a customer, a deal, a receipt).
The hashes cover the bytes as stored, so erasure (which destroys a key, not an
event) leaves every chain intact.

``verify`` recomputes everything from the event store and compares: an event
altered, removed or reordered after it was sealed breaks a link, and the first
broken link is named. An attacker who can also rewrite the seals can rewrite
history consistently; the log head hash printed by ``audit verify`` is what to
record elsewhere (a ticket, a signed e-mail) to rule that out.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from lifecycle.lookup import notifications_after
from projections.store import ViewChange, ViewStore
from projections.store.tables import Column, Table

AUDIT = "audit"
GENESIS = "0" * 64
PAGE = 2000
HEADS_CACHED = 50_000  # aggregates whose latest hash is kept between pages

AUDIT_CHAIN = Table(
    "audit_chain",
    (
        Column("notification_id", "int", "Position in the event store's log", False),
        Column("originator_id", "text", "Aggregate id", False),
        Column("originator_version", "int", "Aggregate version", False),
        Column("topic", "text", "Event class", False),
        Column("event_hash", "text", "SHA-256 of the stored event (id, version, topic, bytes)", False),
        Column("aggregate_hash", "text", "Chain over this aggregate's events", False),
        Column("log_hash", "text", "Chain over the whole log in commit order", False),
    ),
    key=("notification_id",),
    entity="originator_id",  # indexed: a seal looks up the heads of the aggregates it extends
    description="Hash chains sealing every stored event (lifecycle audit verify).",
    internal=True,
)


def event_hash(originator_id: Any, version: int, topic: str, state: bytes) -> str:
    header = f"{originator_id}\x00{version}\x00{topic}\x00".encode()
    return hashlib.sha256(header + state).hexdigest()


def link(previous: str, event: str) -> str:
    return hashlib.sha256((previous + event).encode()).hexdigest()


def _notifications(recorder: Any, after: int) -> Iterator[Any]:
    while True:
        page = recorder.select_notifications(start=after + 1, limit=PAGE)
        if not page:
            return
        yield from page
        after = page[-1].id


class Sealer:
    """Seals new events, with its position in the same view-store transaction."""

    def __init__(self, recorder: Any, store: ViewStore) -> None:
        self.recorder = recorder
        self.store = store
        store.create([AUDIT_CHAIN])
        # Latest (version, hash) of recently sealed aggregates, least recently sealed first.
        self._heads: OrderedDict[str, tuple[int, str]] = OrderedDict()
        # (position, log hash) of the last page this sealer wrote, so that the next page need not
        # read it back; a position that is not this one is read from the store.
        self._log: tuple[int, str] = (0, GENESIS)

    def seal(self) -> int:
        """Seal every event after the sealed position, a page at a time; the number sealed."""
        sealed = 0
        while True:
            position = self.position()
            page = notifications_after(self.recorder, position, PAGE)
            if not page:
                return sealed
            sealed += self.seal_page(position, page)

    def position(self) -> int:
        """The notification id up to which the log is sealed."""
        return self.store.position(AUDIT) or 0

    def seal_page(self, position: int, page: Sequence[tuple[int, str, int, str, bytes]]) -> int:
        """Seal ``page``, the events right after ``position`` in id order as ``notifications_after``
        gives them (ids as text, as event_hash shows them: no UUID per row), read by the caller
        (the relay seals the page it has just sent, without reading it again).

        1. chain them onto the log's head at ``position`` and their aggregates' heads
        2. write the seals and the new position in one transaction, guarded by ``position``
           (two sealers cannot interleave: the second one's write fails)
        """
        # 1. chain
        if self._log[0] == position:
            log_head = self._log[1]
        else:
            # Not where this sealer's last page ended: its cached heads may hold seals the store
            # never kept (a commit lost in a server crash: the relay commits without waiting for
            # the disk) or lack later ones (another sealer). An aggregate whose first event here
            # is its version 1 would be chained onto such a head without a look-up.
            self._heads.clear()
            log_head = self._log_head(position)
        # An aggregate whose first event here is its first ever has no head to look up
        # (every receipt is such an aggregate): only the others are read.
        firsts: dict[str, int] = {}
        for _, aggregate, version, _, _ in page:
            firsts.setdefault(aggregate, version)
        # A cached head that is not the previous version was sealed elsewhere: read it too.
        self._load_heads([
            a for a, version in firsts.items()
            if version > 1 and self._heads.get(a, (0, GENESIS))[0] != version - 1
        ])
        rows = []
        heads, genesis = self._heads, (0, GENESIS)
        for notification_id, aggregate, version, topic, state in page:
            digest = event_hash(aggregate, version, topic, state)
            log_head = link(log_head, digest)
            aggregate_head = link(heads.get(aggregate, genesis)[1], digest)
            heads[aggregate] = (version, aggregate_head)
            heads.move_to_end(aggregate)
            rows.append({
                "notification_id": notification_id, "originator_id": aggregate,
                "originator_version": version, "topic": topic,
                "event_hash": digest, "aggregate_hash": aggregate_head, "log_hash": log_head,
            })
        # 2. one transaction
        last = page[-1][0]
        try:
            self.store.write(ViewChange(
                consumer=AUDIT, position=last, expected_position=position or None,
                check_position=True, append={AUDIT_CHAIN.name: rows},
            ))
        except BaseException:
            self._heads.clear()
            self._log = (0, GENESIS)
            raise
        self._log = (last, log_head)
        while len(heads) > HEADS_CACHED:
            heads.popitem(last=False)
        return len(rows)

    def _log_head(self, position: int) -> str:
        if position == 0:
            return GENESIS
        rows = self.store.rows(AUDIT_CHAIN.name, where={"notification_id": position})
        return rows[0]["log_hash"] if rows else GENESIS

    def _load_heads(self, aggregates: list[str]) -> None:
        if aggregates:
            for row in self.store.rows(AUDIT_CHAIN.name, where={"originator_id": aggregates},
                                       order_by=("originator_version",)):
                self._heads[row["originator_id"]] = (row["originator_version"], row["aggregate_hash"])


@dataclass
class Verdict:
    checked: int = 0
    unsealed: int = 0
    broken: list[str] = field(default_factory=list)
    head: str = GENESIS

    @property
    def ok(self) -> bool:
        return not self.broken


def verify(recorder: Any, store: ViewStore, describe: Any = None, limit: int = 20) -> Verdict:
    """Recompute both chains from the event store and compare with the seals.

    ``describe(originator_id)`` names an aggregate for people (e.g. a customer key).
    """
    store.create([AUDIT_CHAIN])
    name = describe or (lambda aggregate_id: aggregate_id)
    seals = {row["notification_id"]: row for row in store.rows(AUDIT_CHAIN.name, order_by=("notification_id",))}
    verdict = Verdict()
    log_head = GENESIS
    heads: dict[str, tuple[int, str]] = {}

    def broken(message: str) -> None:
        if len(verdict.broken) < limit:
            verdict.broken.append(message)

    sealed_ids = sorted(seals)
    pending = 0  # index into sealed_ids: seals not yet matched with a stored event

    def removed(notification_id: int) -> None:
        seal = seals[notification_id]
        broken(f"event {notification_id} (version {seal['originator_version']} of "
               f"{name(seal['originator_id'])}) was sealed but is missing from the store (removed)")

    for n in _notifications(recorder, 0):
        while pending < len(sealed_ids) and sealed_ids[pending] < n.id:
            removed(sealed_ids[pending])
            pending += 1
        if pending < len(sealed_ids) and sealed_ids[pending] == n.id:
            pending += 1
        aggregate = str(n.originator_id)
        what = f"event {n.id} ({n.topic.rpartition(':')[2]} of {name(aggregate)}, version {n.originator_version})"
        version, previous = heads.get(aggregate, (0, GENESIS))
        if n.originator_version != version + 1:
            broken(f"{what}: follows version {version} of its aggregate (removed or reordered)")
        digest = event_hash(n.originator_id, n.originator_version, n.topic, n.state)
        log_head = link(log_head, digest)
        heads[aggregate] = (n.originator_version, link(previous, digest))
        seal = seals.get(n.id)
        if seal is None:
            verdict.unsealed += 1
            continue
        verdict.checked += 1
        if seal["event_hash"] != digest:
            broken(f"{what}: stored content differs from when it was sealed (altered)")
        elif seal["originator_id"] != aggregate or seal["originator_version"] != n.originator_version:
            broken(f"{what}: sealed as version {seal['originator_version']} of {name(seal['originator_id'])} (moved)")
        elif seal["log_hash"] != log_head:
            broken(f"{what}: the log chain breaks here (an earlier event was removed or reordered)")
        elif seal["aggregate_hash"] != heads[aggregate][1]:
            broken(f"{what}: its aggregate's chain breaks here")
        verdict.head = seal["log_hash"]
        log_head = seal["log_hash"]  # report each break once, not at every later event
        heads[aggregate] = (n.originator_version, seal["aggregate_hash"])
    for notification_id in sealed_ids[pending:]:
        removed(notification_id)
    return verdict
