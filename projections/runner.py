"""Feeds the projections from a log source and writes the views with the position.

Each step reads the next events after the stored position and writes, in ONE
view-store transaction, the re-derived rows of every customer and deal they
touch and the new position. A crash before the commit leaves the old
position, so the step is simply done again.

A step derives an entity from its whole history: what was applied before, plus
the step's events. The history of an entity the runner has not cached is read
from the event store (``LogSource.histories_of``): every event stored for it so
far, whichever consumer delivers the step (the runner's own, following the log,
or a Kafka partition's, at offsets of its own). That holds everything any
consumer applied to the entity, and possibly events no consumer has reached
yet: those are true and final, and when they are delivered their version is
known, so they change nothing then. An event whose aggregate version is already
applied is ignored, so a log that delivers an event twice (a relay that crashed
before recording its position) changes nothing; an entity read from the store
is derived again even when the step holds nothing new for it, since its rows
may not show what was read ahead.
"""

from __future__ import annotations

import base64
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, date, datetime
from typing import Any, NamedTuple

from lifecycle.collection import fewer_collections
from lifecycle.crypto import is_token
from lifecycle.ids import customer_id
from lifecycle.stages import StageModel
from projections.customers import (
    CustomerDerivation,
    Reveal,
    _as_is,
    continue_customer,
    start_customer,
)
from projections.deals import derive_deal
from projections.folds import fold_rows
from projections.log import ENTITY_TYPES, DeferredEvent, LogEvent, LogSource
from projections.store import ViewChange, ViewStore
from projections.summaries import SummaryParts, compute_summaries
from projections.tables import ALL_TABLES, CUSTOMER_FOLDS

CONSUMER = "projections"
SUMMARIES = "summaries"
# Entities derived per transaction in a rebuild: at most this many, holding at most about this
# many events between them (their histories are in memory together; one entity's always fits).
REBUILD_ENTITIES = 1000
REBUILD_EVENTS = 10_000
CUSTOMER_TABLES = ("customer_current", "stage_history", "customer_purchases", "customer_feedback",
                   "customer_referrals")


class ProjectionRunner:
    def __init__(
        self,
        source: LogSource,
        store: ViewStore,
        model: StageModel,
        consumer: str = CONSUMER,
        batch_size: int = 5000,
        cache_size: int = 5_000,
        reveal: Reveal = _as_is,
        refresh_keys: Callable[[list[str]], None] = lambda customer_ids: None,
    ) -> None:
        self.source = source
        self.store = store
        self.model = model
        self.consumer = consumer
        self.batch_size = batch_size
        self.reveal = reveal
        # Called with the customers of every step before anything is revealed: keys another
        # process destroyed (an erasure) or made since must not be used from memory.
        self.refresh_keys = refresh_keys
        # Entity histories whose derived rows are written, so a busy customer is not read back
        # and decoded at every step. Only committed state goes in; a failed write clears it.
        self._histories: OrderedDict[str, dict[int, LogEvent]] = OrderedDict()
        # For the customers among them, the fold that derived the rows last written, so the next
        # step folds only its new facts (when they come after the others in business time).
        self._derivations: dict[str, CustomerDerivation] = {}
        self.cache_size = cache_size
        self._wrote: dict[str, int] = {}  # the position each consumer's last step here wrote
        store.create(ALL_TABLES)

    def catch_up(
        self, today: date | None = None, progress: Callable[[int], None] | None = None
    ) -> int:
        """Apply every event after the stored position, then refresh the summaries."""
        applied = 0
        while True:
            position = self.store.position(self.consumer)
            events = self.source.read(position, self.batch_size)
            if not events:
                break
            self.apply(events, position)
            applied += len(events)
            if progress is not None:
                progress(len(events))
        self.refresh_summaries(today)
        return applied

    def apply(
        self, events: Sequence[LogEvent | DeferredEvent], expected_position: int | None,
        consumer: str | None = None, position: int | None = None,
        append: dict[str, list[dict[str, Any]]] | None = None,
        on_unstored: Callable[[list[LogEvent | DeferredEvent]], None] | None = None,
    ) -> None:
        """One step, one transaction, ending at ``position`` (by default ``events[-1].position``)
        for ``consumer`` (this runner's own by default; a Kafka consumer names its partition),
        with the rows of ``append`` (other tables than the runner's) written in it too:

        1. split the events into entity events (customers, deals) and receipts
        2. the history of every entity touched: cached, or read whole from the event store;
           add the step's events it does not hold (by version; a ``DeferredEvent`` is decoded
           only then); a cached history that then lacks a version is read from the store again.
           With ``on_unstored``, an entity's events that the store does not hold where it was
           read (``_unstored``) are left out of the step and given to ``on_unstored`` before the
           write (what it adds to ``append``'s lists is written with the step)
        3. derive the rows of each entity with new events, or read from the store, in
           business-time order: a customer's cached fold takes just the new facts when they all
           come after the ones it took (else its whole history is folded again), and only its
           tables whose rows changed are written; the folds at the fold points it passed are
           kept (``projections.folds``)
        4. write rejections, entity rows, kept folds, ``append`` and position together
        """
        consumer = consumer or self.consumer
        position = events[-1].position if position is None else position
        # The cached histories hold only what this runner wrote: if another process wrote a step
        # since (a CLI beside a service, a partition that moved), an entity may have events the
        # cache lacks.
        if self._wrote.get(consumer) != expected_position:
            self._forget()
        self.refresh_keys(_customers_of(events))
        # 1. split
        entity_events: dict[str, list[LogEvent | DeferredEvent]] = defaultdict(list)
        rejections = []
        for event in events:
            if event.aggregate_type in ENTITY_TYPES:
                entity_events[event.aggregate_id].append(event)
            elif event.aggregate_type == "InboundReceipt":
                row = rejection_row(event, self.reveal)
                if row is not None:
                    rejections.append(row)
        # 2. histories
        known, read = self._histories_of(entity_events)
        unstored = [] if on_unstored is None else _unstored(
            entity_events, known, {entity_id: max(known[entity_id], default=0) for entity_id in read})
        added: dict[str, list[LogEvent]] = defaultdict(list)
        for entity_id, new in entity_events.items():
            for delivered in sorted(new, key=lambda e: e.version):
                if delivered.version not in known[entity_id]:
                    event = delivered.decoded() if type(delivered) is DeferredEvent else delivered
                    known[entity_id][event.version] = event
                    added[entity_id].append(event)
        # A held history that now lacks a version below its newest lost a delivery (a message
        # set aside upstream that named nothing stored): versions come in order, so it is read
        # whole from the event store again, and derived whole.
        gapped = [entity_id for entity_id in added if entity_id not in read
                  and len(known[entity_id]) != max(known[entity_id])]
        if gapped:
            newest = self._read_again(gapped, known, read)
            if on_unstored is not None:
                unstored += _unstored(entity_events, known, newest, added)
        if unstored:
            on_unstored(sorted(unstored, key=lambda e: e.position))
        # 3. derive (a cached entity whose events were all applied before keeps its rows)
        replace: dict[str, dict[Any, list[dict[str, Any]]]] = defaultdict(dict)
        derived: dict[str, CustomerDerivation] = {}
        kept_folds: list[dict[str, Any]] = []
        for entity_id in entity_events:
            if entity_id not in added and entity_id not in read:
                continue
            history = [known[entity_id][v] for v in sorted(known[entity_id])]
            if history[0].aggregate_type == "Customer":
                derived[entity_id] = self._derive_step(entity_id, history, added[entity_id], replace, kept_folds)
            else:
                self._derive(entity_id, history, replace)
        # An erasure scrubs the customer's rejected events too (they hold the original bytes).
        for key in self._erased_keys(entity_events, known):
            kept = [r for r in rejections if r["subject"] == key]
            rejections = [r for r in rejections if r["subject"] != key]
            stored = self.store.rows("rejections", where={"subject": key})
            replace["rejections"][key] = [_scrubbed(r) for r in stored + kept]
        # 4. one transaction
        try:
            self.store.write(
                ViewChange(
                    consumer=consumer,
                    position=position,
                    expected_position=expected_position,
                    check_position=True,
                    append={"rejections": rejections, CUSTOMER_FOLDS.name: kept_folds, **(append or {})},
                    replace_entities=replace,
                )
            )
        except BaseException:
            self._forget()  # the folds may have taken facts that were not written
            raise
        self._wrote[consumer] = position
        for entity_id in entity_events:
            self._histories[entity_id] = known[entity_id]
            self._histories.move_to_end(entity_id)
        self._derivations.update(derived)
        while len(self._histories) > self.cache_size:
            evicted, _ = self._histories.popitem(last=False)
            self._derivations.pop(evicted, None)

    def _read_again(
        self, entity_ids: list[str], known: dict[str, dict[int, LogEvent]], read: set[str]
    ) -> dict[str, int]:
        """``entity_ids``' histories as the event store holds them, with what the step delivered
        beyond them; their cached folds dropped, so that they are folded whole. Each one's
        newest stored version (0: none)."""
        stored = self.source.histories_of(entity_ids)
        for entity_id, history in stored.items():
            known[entity_id] = {**known[entity_id], **{event.version: event for event in history}}
            read.add(entity_id)
            self._derivations.pop(entity_id, None)
        return {entity_id: max((e.version for e in stored.get(entity_id, ())), default=0)
                for entity_id in entity_ids}

    def _forget(self) -> None:
        self._histories.clear()
        self._derivations.clear()

    def _derive_step(
        self, entity_id: str, history: list[LogEvent], added: list[LogEvent],
        replace: dict[str, dict[Any, list[dict[str, Any]]]], kept_folds: list[dict[str, Any]],
    ) -> CustomerDerivation:
        """A customer's rows after a step: its cached fold carried on with the step's events
        (only the tables whose rows changed; the folds it passes are added to those kept), or its
        whole history folded again (every table, and every kept fold)."""
        derivation = self._derivations.get(entity_id)
        if derivation is not None:
            before = derivation.rows
            if continue_customer(derivation, added, keep_points=True):
                for table in CUSTOMER_TABLES:
                    rows = getattr(derivation.rows, table)
                    if rows != getattr(before, table):
                        replace[table][entity_id] = rows
                kept_folds += fold_rows(entity_id, self.model, derivation.points)
                derivation.points = []
                return derivation
        return self._derive_customer(entity_id, history, replace)

    def _derive_customer(
        self, entity_id: str, history: list[LogEvent], replace: dict[str, dict[Any, list[dict[str, Any]]]]
    ) -> CustomerDerivation:
        """A customer's whole history folded: every one of its tables, and its kept folds (a
        customer with none has too few facts to have had any: facts are never taken away)."""
        derivation = start_customer(self.model, entity_id, history, self.reveal, keep_points=True)
        for table in CUSTOMER_TABLES:
            replace[table][entity_id] = getattr(derivation.rows, table)
        if derivation.points:
            replace[CUSTOMER_FOLDS.name][entity_id] = fold_rows(entity_id, self.model, derivation.points)
            derivation.points = []
        return derivation

    @staticmethod
    def _erased_keys(
        entity_events: dict[str, list[LogEvent | DeferredEvent]], known: dict[str, dict[int, LogEvent]]
    ) -> list[str]:
        """Customer keys of the customers erased in this step."""
        keys = (_key_if_erased(new, known[entity_id].values()) for entity_id, new in entity_events.items())
        return [key for key in keys if key is not None]

    def _derive(
        self, entity_id: str, history: list[LogEvent], replace: dict[str, dict[Any, list[dict[str, Any]]]]
    ) -> None:
        if history[0].aggregate_type == "Customer":
            self._derive_customer(entity_id, history, replace)
        else:
            created = next((e for e in history if e.name == "FirstSeen"), None)
            if created is None:
                return  # its creation has not arrived yet: nothing to show
            deal_key = created.payload["deal_id"]
            current, stages = derive_deal(entity_id, history)
            replace["deal_current"][deal_key] = current
            replace["deal_stage_history"][deal_key] = stages

    def _histories_of(
        self, entity_events: dict[str, list[LogEvent | DeferredEvent]]
    ) -> tuple[dict[str, dict[int, LogEvent]], set[str]]:
        """Each entity's history by version, from the cache or else (one query for them all)
        every event the event store holds for it; and the ids of those read from the store."""
        known: dict[str, dict[int, LogEvent]] = defaultdict(dict)
        missing = []
        for entity_id in entity_events:
            if entity_id in self._histories:
                known[entity_id] = dict(self._histories[entity_id])
            else:
                missing.append(entity_id)
        if missing:
            for entity_id, history in self.source.histories_of(missing).items():
                known[entity_id] = {event.version: event for event in history}
        return known, set(missing)

    def refresh_summaries(
        self, today: date | None = None, computed: dict[str, list[dict[str, Any]]] | None = None
    ) -> None:
        """Recompute the summary tables, as of ``today`` (UTC), from the entity rows (or write
        those ``computed`` already: a rebuild's ``SummaryParts``)."""
        as_of = today or datetime.now(UTC).date()
        summaries = computed if computed is not None else compute_summaries(self.store, self.model, as_of)
        # Storing a position for "summaries" locks its row: refreshes by several project
        # processes take turns instead of interleaving their delete-and-insert.
        stamp = int(datetime.now(UTC).timestamp() * 1000)
        self.store.write(ViewChange(consumer=SUMMARIES, position=stamp, replace_tables=summaries))

    def rebuild(self, today: date | None = None, progress: Callable[[int], None] | None = None) -> int:
        """Drop every view and derive it again from the whole log, each entity once.

        Following the log step by step would re-derive a customer at every page that holds one
        of its events (dozens of times over a long log); a rebuild has the whole log, and reads
        it entity by entity (the events table's key order), so nothing is read back.

        1. drop and create the views, position 0 (a crash from here on leaves
           position 0, and the next ``catch_up`` derives every entity again the ordinary way,
           replacing the rows a part wrote; appended rows it writes again are ignored)
        2. note the log's last position: the rebuild takes the events up to it, ``catch_up``
           the later ones
        3. for a chunk of entities at a time (bounded by entities and by events: their
           histories are in memory together), in one transaction: their derived rows, the
           rejections among them (``rebuild_part``: several processes
           can each take a range of entity ids, see ``lifecycle.parallel``); and, in memory,
           the counts and sums of the summaries as of ``today`` (UTC) from those rows
        4. scrub the rejections of erased customers (a receipt's place in the key order has
           nothing to do with its customer's)
        5. store the position of step 2 (only now), then the summaries of step 3
        """
        as_of = today or datetime.now(UTC).date()
        last = self.start_rebuild()  # 1, 2
        part = self.rebuild_part(last, as_of, progress=progress)  # 3
        return self.finish_rebuild(last, part)  # 4, 5

    def start_rebuild(self) -> int:
        """Steps 1 and 2 of ``rebuild``; the last position."""
        self._forget()
        self.store.drop(ALL_TABLES)
        self.store.create(ALL_TABLES)
        self.store.write(ViewChange(consumer=self.consumer, position=0))
        return self.source.last_position()

    def rebuild_part(
        self, last: int, as_of: date, start: str | None = None, stop: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> RebuiltPart:
        """Step 3 of ``rebuild`` for the entities with ``start <= id < stop`` (all by default)."""
        with fewer_collections():  # short-lived objects by the million (see collection.py)
            return self._rebuild_part(last, as_of, start, stop, progress)

    def _rebuild_part(
        self, last: int, as_of: date, start: str | None, stop: str | None,
        progress: Callable[[int], None] | None,
    ) -> RebuiltPart:
        part = RebuiltPart(0, [], SummaryParts(self.model, as_of))
        copied = 0
        for chunk in _chunks(self.source.histories(last, self.batch_size, start, stop)):
            self.refresh_keys(_customers_in(chunk))
            by_table: dict[str, dict[Any, list[dict[str, Any]]]] = defaultdict(dict)  # entity -> rows
            rejections = []
            for history in chunk:
                kind = history[0].aggregate_type
                if kind in ENTITY_TYPES:
                    entity_id = history[0].aggregate_id
                    self._derive(entity_id, history, by_table)
                    if (key := _key_if_erased(history, history)) is not None:
                        part.erased.append(key)
                elif kind == "InboundReceipt":
                    rejections += filter(None, (rejection_row(e, self.reveal) for e in history))
            # The tables were created empty for this rebuild and each entity is derived once, in
            # one part: its rows are appended, not replaced (a DELETE per entity and table, of
            # nothing, and the check of each row's entity were ~2% of a rebuild's instructions).
            append = {table: [row for rows in by_entity.values() for row in rows] for table, by_entity in by_table.items()}
            part.summaries.add_rows(append)
            append["rejections"] = rejections
            self.store.write(ViewChange(consumer=self.consumer, position=None, append=append))
            events = sum(map(len, chunk))
            copied += events
            if progress is not None:
                progress(events)
        return part._replace(copied=copied)

    def finish_rebuild(self, last: int, part: RebuiltPart) -> int:
        """Steps 4 and 5 of ``rebuild``, once every part is written (``part``: all of them
        added up, ``RebuiltPart.add``); the events read."""
        self._forget()  # a part written by another process is not in this one's caches
        if part.erased:
            replace = {"rejections": {key: [_scrubbed(r) for r in self.store.rows("rejections", where={"subject": key})]
                                      for key in part.erased}}
            self.store.write(ViewChange(consumer=self.consumer, position=None, replace_entities=replace))
        if part.copied:
            self.store.write(ViewChange(consumer=self.consumer, position=last))
        self.refresh_summaries(part.summaries.as_of, part.summaries.tables())
        return part.copied


class RebuiltPart(NamedTuple):
    """What ``ProjectionRunner.rebuild_part`` did."""

    copied: int  # events read
    erased: list[str]  # the customer keys of the erased customers among them
    summaries: SummaryParts  # of the entities it derived

    def add(self, other: RebuiltPart) -> RebuiltPart:
        """This part and ``other`` (of other entities) together; ``other``'s summaries are added
        into this part's, which the result shares."""
        self.summaries.add(other.summaries)
        return RebuiltPart(self.copied + other.copied, self.erased + other.erased, self.summaries)


def _unstored(
    entity_events: dict[str, list[LogEvent | DeferredEvent]], known: dict[str, dict[int, LogEvent]],
    newest: dict[str, int], added: dict[str, list[LogEvent]] | None = None,
) -> list[LogEvent | DeferredEvent]:
    """The step's events of the entities read from the event store (``newest``: each one's
    newest stored version, 0 for none) that the store does not hold: taken out of
    ``entity_events``, ``known`` and ``added``.

    The relay sends only what the store holds, and the store was read after the message was
    sent: a version beyond the newest stored one is not the relay's (another producer's message
    in the contract's form). An entity the store holds nothing of leaves the step altogether:
    its events would otherwise make a customer or deal that no rebuild shows."""
    unstored: list[LogEvent | DeferredEvent] = []
    for entity_id, stored in newest.items():
        delivered = entity_events[entity_id]
        beyond = [e for e in delivered if e.version > stored]
        if not beyond:
            continue
        unstored += beyond
        for event in beyond:
            known[entity_id].pop(event.version, None)
        if added is not None and entity_id in added:
            added[entity_id] = [e for e in added[entity_id] if e.version <= stored]
            if not added[entity_id]:
                del added[entity_id]
        if stored:
            entity_events[entity_id] = [e for e in delivered if e.version <= stored]
        else:
            del entity_events[entity_id]
    return unstored


def _key_if_erased(new: Iterable[LogEvent | DeferredEvent], history: Iterable[LogEvent]) -> str | None:
    """The customer key of an entity erased by one of ``new``, found on its FirstSeen in
    ``history``; None otherwise (no erasure, or no FirstSeen yet)."""
    if not any(e.name == "Erased" for e in new):
        return None
    created = next((e for e in history if e.name == "FirstSeen"), None)
    return None if created is None else created.payload["key"]


def _chunks(histories: Iterable[list[LogEvent]]) -> Iterator[list[list[LogEvent]]]:
    """The histories in order, in chunks of at most REBUILD_ENTITIES entities and, unless one
    entity alone has more, REBUILD_EVENTS events."""
    chunk: list[list[LogEvent]] = []
    events = 0
    for history in histories:
        if chunk and (len(chunk) == REBUILD_ENTITIES or events + len(history) > REBUILD_EVENTS):
            yield chunk
            chunk, events = [], 0
        chunk.append(history)
        events += len(history)
    if chunk:
        yield chunk


def rejection_row(event: LogEvent, reveal: Reveal = _as_is) -> dict[str, Any] | None:
    p = event.payload
    if p.get("outcome") not in ("refused", "malformed"):
        return None
    raw_b64 = p.get("raw_b64")
    if raw_b64 and p.get("subject"):
        raw_b64 = reveal(str(customer_id(p["subject"])), raw_b64)  # None once erased
    raw = base64.b64decode(raw_b64) if raw_b64 and not is_token(raw_b64) else b""
    occurred = p.get("occurred_at")
    return {
        "rejection_id": event.aggregate_id,
        "outcome": p["outcome"],
        "reason": _text(p.get("reason") or ""),
        "source": p.get("source"),
        "event_id": p.get("event_id"),
        "type": p.get("type"),
        "subject": p.get("subject"),
        "occurred_at": datetime.fromisoformat(occurred) if occurred else None,
        "recorded_at": event.recorded_at,
        "raw": _text(raw.decode("utf-8", errors="replace")),
        "raw_base64": base64.b64encode(raw).decode("ascii") if raw else "",
    }


def _scrubbed(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "raw": "", "raw_base64": ""}


def _customers_in(histories: Sequence[list[LogEvent]]) -> list[str]:
    """``_customers_of`` the events of whole histories: a customer's names it once (asking
    each of its events was a pass over the log and a list of ids ten times too long)."""
    ids = []
    for history in histories:
        if history[0].aggregate_type == "Customer":
            ids.append(history[0].aggregate_id)
        else:
            ids += _customers_of(history)
    return ids


def _customers_of(events: Sequence[LogEvent | DeferredEvent]) -> list[str]:
    """Ids of the customers whose personal data these events may reveal."""
    ids = []
    for event in events:
        if event.aggregate_type == "Customer":
            ids.append(event.aggregate_id)
        elif event.aggregate_type == "InboundReceipt" and event.payload.get("subject"):
            ids.append(str(customer_id(event.payload["subject"])))
    return ids


def _text(value: str) -> str:
    # PostgreSQL text cannot hold NUL; the exact bytes stay in raw_base64.
    return value.replace("\x00", "\ufffd")
