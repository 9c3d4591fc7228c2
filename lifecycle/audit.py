"""Tamper evidence: a hash chain over the stored events, and its verification.

The sealer follows the notification log in commit order and records, for every
stored event, the SHA-256 of its stored bytes (with its aggregate, version and
topic), chained over the whole log: each link hashes the previous one with the
event's hash. The hashes cover the bytes as stored, so erasure (which destroys a
key, not an event) leaves the chain intact.

A page of events is sealed as one row of ``audit_seals``: a line per event
(position, aggregate, version, hash) and the chain's head after the page's last
event. Until 2026-12-05 each event had a row of its own (``audit_chain``, with a
second chain over its aggregate's events): for the relay that was a third of its
CPU and as much again of PostgreSQL's, for 110k rows and two indexes per 100k
events. The log chain is computed as it was, so the head printed then is printed
now; a store sealed the old way is converted when it is opened
(``_convert_chain``), keeping the hashes recorded then.

``verify`` checks that the seals are as written (the chain over their hashes
gives each page's head) and that the event store holds what was sealed: an event
altered, removed, moved or added behind the engine's back is named, the first
ones first. An attacker who can also rewrite the seals can rewrite history
consistently; the log head hash printed by ``audit verify`` is what to record
elsewhere (a ticket, a signed e-mail) to rule that out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from lifecycle.lookup import notifications_after
from projections.store import ViewChange, ViewStore
from projections.store.tables import Column, Table

AUDIT = "audit"
GENESIS = "0" * 64
PAGE = 2000
CONVERT_PAGES = 50  # pages written per transaction when a store sealed the old way is converted

AUDIT_SEALS = Table(
    "audit_seals",
    (
        Column("last_id", "int", "Position in the event store's log of the page's last event", False),
        Column("first_id", "int", "Position of the page's first event", False),
        Column("log_hash", "text", "The chain over the whole log, in commit order, after the last event", False),
        Column("seals", "text", "One line per event: position, aggregate id, version and SHA-256 of the "
               "stored event (id, version, topic, bytes), separated by spaces", False, compressible=False),
    ),
    key=("last_id",),
    description="Hash chain sealing every stored event, a page per row (lifecycle audit verify).",
    internal=True,
)

# Before 2026-12-05: a row per event. Read only to convert a store sealed then.
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
    description="Hash chains sealing every stored event, a row per event (replaced by audit_seals).",
    internal=True,
)


class Seal(NamedTuple):
    notification_id: int
    originator_id: str
    originator_version: int
    event_hash: str


def event_hash(originator_id: Any, version: int, topic: str, state: bytes) -> str:
    header = f"{originator_id}\x00{version}\x00{topic}\x00".encode()
    return hashlib.sha256(header + state).hexdigest()


def link(previous: str, event: str) -> str:
    return hashlib.sha256((previous + event).encode()).hexdigest()


def page_row(seals: Sequence[Seal], log_hash: str) -> dict[str, Any]:
    """The ``audit_seals`` row of a page of seals, in log order, the chain's head after them."""
    return {
        "last_id": seals[-1].notification_id, "first_id": seals[0].notification_id, "log_hash": log_hash,
        "seals": "\n".join(f"{s.notification_id} {s.originator_id} {s.originator_version} {s.event_hash}"
                           for s in seals),
    }


def seals_of(row: dict[str, Any]) -> list[Seal]:
    """A page's seals; ValueError if its text is not as ``page_row`` writes it."""
    seals = []
    for line in row["seals"].split("\n"):
        notification_id, originator_id, version, digest = line.split(" ")
        seals.append(Seal(int(notification_id), originator_id, int(version), digest))
    return seals


def _notifications(recorder: Any, after: int) -> Iterator[Any]:
    while True:
        page = recorder.select_notifications(start=after + 1, limit=PAGE)
        if not page:
            return
        yield from page
        after = page[-1].id


class Sealer:
    """Seals new events, with its position in the same view-store transaction."""

    def __init__(self, recorder: Any, store: ViewStore,
                 exclusive: Callable[[], AbstractContextManager[Any]] = nullcontext) -> None:
        """``exclusive``: held by one process at a time on the store's database, while an older
        store's seals are converted (``_convert_chain``); not taken otherwise."""
        self.recorder = recorder
        self.store = store
        store.create([AUDIT_SEALS])
        if _sealed_a_row_per_event(store):
            with exclusive():  # another process may have converted it meanwhile
                if _sealed_a_row_per_event(store):
                    _convert_chain(store)
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

        1. chain them onto the log's head at ``position``
        2. write their row and the new position in one transaction, guarded by ``position``
           (two sealers cannot interleave: the second one's write fails)
        """
        # 1. chain. Not where this sealer's last page ended (another sealer, or a commit lost in a
        # server crash: the relay commits without waiting for the disk): the head is read.
        log_head = self._log[1] if self._log[0] == position else _log_head(self.store, position)
        seals = []
        for notification_id, aggregate, version, topic, state in page:
            digest = event_hash(aggregate, version, topic, state)
            log_head = link(log_head, digest)
            seals.append(Seal(notification_id, aggregate, version, digest))
        # 2. one transaction
        last = page[-1][0]
        try:
            self.store.write(ViewChange(
                consumer=AUDIT, position=last, expected_position=position or None,
                check_position=True, append={AUDIT_SEALS.name: [page_row(seals, log_head)]},
            ))
        except BaseException:
            self._log = (0, GENESIS)
            raise
        self._log = (last, log_head)
        return len(seals)


def _log_head(store: ViewStore, position: int) -> str:
    """The chain's head after ``position``, a page's end (GENESIS when no page ends there: ``verify``
    then names the events sealed onto it)."""
    if position == 0:
        return GENESIS
    rows = store.rows(AUDIT_SEALS.name, where={"last_id": position})
    return rows[0]["log_hash"] if rows else GENESIS


def _sealed_a_row_per_event(store: ViewStore) -> bool:
    """Whether the store was sealed before 2026-12-05: a sealed position that ends no page."""
    position = store.position(AUDIT)
    return bool(position) and not store.rows(AUDIT_SEALS.name, where={"last_id": position})


def _convert_chain(store: ViewStore) -> None:
    """A store sealed before 2026-12-05 holds a row per event in ``audit_chain``: its seals
    become pages, with the hashes recorded then (sealing again from the event store would seal
    whatever it holds now).

    1. pages of up to PAGE rows in log order; a row whose recorded log hash is not the chain
       over the recorded event hashes ends its page with that hash, so that ``verify`` names it
    2. written CONVERT_PAGES at a time, the sealed position unchanged and checked (a crash
       part-way: the page that ends at the position is not there yet, so it is all done again,
       and the pages written already are kept as they are, by their key)
    3. the old table dropped (a crash before that leaves it beside the pages, unread)
    """
    position = store.position(AUDIT)
    store.create([AUDIT_CHAIN])

    def write(pages: list[dict[str, Any]]) -> None:
        store.write(ViewChange(consumer=AUDIT, position=position, expected_position=position,
                               check_position=True, append={AUDIT_SEALS.name: pages}))

    pages: list[dict[str, Any]] = []
    seals: list[Seal] = []
    head = GENESIS
    for row in store.iter_rows(AUDIT_CHAIN.name, order_by=("notification_id",)):
        # 1. pages
        seals.append(Seal(row["notification_id"], row["originator_id"], row["originator_version"],
                          row["event_hash"]))
        head = link(head, row["event_hash"])
        if head != row["log_hash"] or len(seals) == PAGE:
            head = row["log_hash"]
            pages.append(page_row(seals, head))
            seals = []
        if len(pages) == CONVERT_PAGES:  # 2.
            write(pages)
            pages = []
    if seals:
        pages.append(page_row(seals, head))
    write(pages)
    # 3.
    store.drop([AUDIT_CHAIN])


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
    """Compare the event store with the seals, both read in log order, a page at a time.

    ``describe(originator_id)`` names an aggregate for people (e.g. a customer key).
    """
    store.create([AUDIT_SEALS])
    name = describe or (lambda aggregate_id: aggregate_id)
    verdict = Verdict()

    def broken(message: str) -> None:
        if len(verdict.broken) < limit:
            verdict.broken.append(message)

    def removed(seal: Seal) -> None:
        broken(f"event {seal.notification_id} (version {seal.originator_version} of "
               f"{name(seal.originator_id)}) was sealed but is missing from the store (removed)")

    sealed = _sealed(store, broken, verdict)
    seal = next(sealed, None)
    versions: dict[str, int] = {}
    for n in _notifications(recorder, 0):
        while seal is not None and seal.notification_id < n.id:
            removed(seal)
            seal = next(sealed, None)
        aggregate = str(n.originator_id)
        what = f"event {n.id} ({n.topic.rpartition(':')[2]} of {name(aggregate)}, version {n.originator_version})"
        version = versions.get(aggregate, 0)
        if n.originator_version != version + 1:
            broken(f"{what}: follows version {version} of its aggregate (removed or reordered)")
        versions[aggregate] = n.originator_version
        if seal is None or seal.notification_id != n.id:
            if seal is None:
                verdict.unsealed += 1
            else:
                broken(f"{what}: not sealed, though later events are (added)")
            continue
        verdict.checked += 1
        if seal.event_hash != event_hash(n.originator_id, n.originator_version, n.topic, n.state):
            broken(f"{what}: stored content differs from when it was sealed (altered)")
        elif seal.originator_id != aggregate or seal.originator_version != n.originator_version:
            broken(f"{what}: sealed as version {seal.originator_version} of {name(seal.originator_id)} (moved)")
        seal = next(sealed, None)
    while seal is not None:
        removed(seal)
        seal = next(sealed, None)
    return verdict


def _sealed(store: ViewStore, broken: Callable[[str], None], verdict: Verdict) -> Iterator[Seal]:
    """Every seal in log order, each page's checked first: its lines readable and in order after
    the page before, and the chain over their hashes ending at the page's head (else its seals
    were rewritten). ``verdict.head`` follows the pages' heads."""
    head, last = GENESIS, 0
    for row in store.iter_rows(AUDIT_SEALS.name, order_by=("last_id",)):
        where = f"the seals of events {row['first_id']}-{row['last_id']}"
        try:
            seals = seals_of(row)
        except ValueError:
            broken(f"{where} cannot be read (rewritten)")
            seals = []
        ids = [s.notification_id for s in seals]
        if seals and (ids[0] != row["first_id"] or ids[-1] != row["last_id"] or ids[0] <= last
                      or any(a >= b for a, b in zip(ids, ids[1:]))):
            broken(f"{where} are out of order (rewritten)")
        for s in seals:
            head = link(head, s.event_hash)
        if seals and head != row["log_hash"]:
            broken(f"{where} differ from when they were written: their chain does not end at their "
                   "page's head (rewritten)")
        head = verdict.head = row["log_hash"]  # each break named once, not at every later page
        last = row["last_id"]
        yield from seals
