"""The lifecycle engine: an eventsourcing Application that applies inbound batches.

One batch is one database transaction: the inbound ledger's row for each of its
inbound events, every domain event they caused, a receipt event for each refused or
malformed one and (for a Kafka consumer) the inbound position are written together,
or not at all.
"""

from __future__ import annotations

import base64
from collections import OrderedDict
from collections.abc import Collection, Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, time
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import (
    IntegrityError,
    JSONTranscoder,
    Mapper,
    PersistenceError,
    StoredEvent,
    Tracking,
    Transcoder,
    Transcoding,
)

from lifecycle import ids, ledger, snapshots
from lifecycle.batch import BatchResult, ItemOutcome
from lifecycle.commands import DEAL_FACTS, apply_inbound
from lifecycle.customer import Customer
from lifecycle.deal import Deal
from lifecycle.errors import RuleViolation, StoreError
from lifecycle.keys import KeyRing
from lifecycle.lookup import stored_states_of_many
from lifecycle.personal import PERSONAL_FIELDS
from lifecycle.receipt import ACCEPTED, DUPLICATE, MALFORMED, REFUSED, InboundReceipt, encode_raw
from lifecycle.rules import DuplicateOrder, Fact
from lifecycle.stages import StageModel, load_stage_model
from lifecycle.transcoding import EventMapper, FastJSONTranscoder
from projections.store import InMemoryViewStore
from schemas import InboundEvent, Rejection, parse

MAX_ATTEMPTS = 5
SWEEP_SOURCE = "lifecycle/sweep"


class DateAsISO(Transcoding):
    type = date
    name = "date_iso"

    def encode(self, obj: date) -> str:
        return obj.isoformat()

    def decode(self, data: str) -> date:
        return date.fromisoformat(data)


class LifecycleEngine(Application[UUID]):
    name = "lifecycle"

    def __init__(
        self,
        env: dict[str, str] | None = None,
        model: StageModel | None = None,
        cache_size: int = 5_000,
        keyring: KeyRing | None = None,
    ) -> None:
        super().__init__(env)
        self.model = model or load_stage_model()
        self.keyring = keyring or KeyRing(InMemoryViewStore())
        self._cache: OrderedDict[UUID, Aggregate] = OrderedDict()
        self._cache_size = cache_size

    def close(self) -> None:
        super().close()
        writers = getattr(self.recorder, "writers", None)  # an SQLite store's WriterQueue
        if writers is not None:
            writers.close()

    def construct_recorder(self) -> Any:
        # A process recorder stores a tracking position in the same transaction as the events
        # (the plain application recorder cannot); ours stores the inbound ledger's rows too.
        return ledger.process_recorder(self.factory)

    def construct_mapper(self) -> Mapper[UUID]:
        if self.factory.env.get(self.factory.MAPPER_TOPIC):
            return super().construct_mapper()  # the one the environment names
        return self.factory.mapper(transcoder=self.construct_transcoder(), mapper_class=EventMapper)

    def construct_transcoder(self) -> Transcoder:
        # The library's JSON, written with orjson where that writes the same (lifecycle.transcoding).
        transcoder = FastJSONTranscoder()
        self.register_transcodings(transcoder)
        return transcoder

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        transcoder.register(DateAsISO())

    # -- ingest -------------------------------------------------------------------

    def ingest(self, raws: Sequence[bytes], tracking: Tracking | None = None) -> BatchResult:
        """Parse, deduplicate and apply a batch of raw inbound events in one transaction."""
        return self.ingest_parsed([parse(raw) for raw in raws], tracking)

    def ingest_parsed(
        self, parsed: Sequence[InboundEvent | Rejection], tracking: Tracking | None = None,
        position_checked: bool = False,
    ) -> BatchResult:
        """Deduplicate and apply a batch of parsed inbound events in one transaction.

        Optimistic-concurrency conflicts (another writer touched one of the same
        customers, or recorded the same inbound event first) are retried from a
        fresh read; they are never lost. ``position_checked``: the caller has just found
        ``tracking`` not stored, so the first attempt does not ask again (a position stored
        meanwhile still conflicts, and the retry finds it).
        """
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                return self._ingest_once(parsed, tracking, check_position=attempt > 1 or not position_checked)
            except IntegrityError as e:
                self._cache.clear()
                if attempt == MAX_ATTEMPTS:
                    raise StoreError(
                        f"batch still conflicts after {MAX_ATTEMPTS} attempts: {e}"
                    ) from e
            except PersistenceError as e:
                self._cache.clear()
                raise StoreError(f"event store failed: {e}") from e
            except BaseException:
                self._cache.clear()
                raise
        raise AssertionError("unreachable")

    def _ingest_once(
        self, parsed: Sequence[InboundEvent | Rejection], tracking: Tracking | None, check_position: bool = True
    ) -> BatchResult:
        """1. skip a batch whose position is already stored
        2. classify each item: malformed, duplicate (in the batch or the ledger), or to apply
        3. apply the rest through the aggregates; refusals (and malformed items) get receipts
        4. write ledger rows, domain events, receipts, the snapshots of customers that passed a
           multiple of ``snapshots.EVERY`` and the position in one transaction, then destroy the
           keys of customers whose erasure was requested
        5. remember the aggregates for the next batch
        """
        # 1. a redelivered batch (its position is stored) changes nothing
        if tracking is not None and check_position and self.recorder.has_tracking_id(
            tracking.application_name, tracking.notification_id
        ):
            return BatchResult(tuple(_duplicate(p) for p in parsed))
        ws = _Workspace(self)
        # 2a. one look-up for the whole batch: the ledger, stored customers, their keys
        receipt_ids = [
            ids.malformed_receipt_id(p.raw) if isinstance(p, Rejection) else ids.receipt_id(p.source, p.id)
            for p in parsed
        ]
        # Receipt ids the ledger holds, then those met earlier in the batch: one set, so an
        # inbound event costs one look-up and one insertion (a UUID's hash is Python code).
        known = self._prefetch(parsed, receipt_ids, ws)
        outcomes: list[ItemOutcome] = []
        receipts: list[InboundReceipt] = []
        ledger_rows: list[tuple[UUID, str]] = []
        for item, rid in zip(parsed, receipt_ids, strict=True):
            # 2. classify
            if isinstance(item, Rejection):
                outcomes.append(_malformed(item))
                if rid not in known:
                    receipts.append(self._receipt(rid, item, MALFORMED, item.reason))
                    ledger_rows.append((rid, MALFORMED))
                    known.add(rid)
                continue
            if rid in known:
                outcomes.append(_duplicate(item))
                continue
            known.add(rid)
            # 3. apply
            try:
                apply_inbound(ws, item)
                outcome, reason = ACCEPTED, None
            except DuplicateOrder as e:
                outcome, reason = DUPLICATE, str(e)
            except RuleViolation as e:
                outcome, reason = REFUSED, str(e)
            if outcome != ACCEPTED:  # an accepted event's facts carry its source and id
                receipts.append(self._receipt(rid, item, outcome, reason))
            ledger_rows.append((rid, outcome))
            outcomes.append(ItemOutcome(outcome, reason, item.source, item.id, item.type, item.subject))
        # 4. one transaction
        due = snapshots.due(ws.touched.values(), self.mapper)
        pending = [e for r in receipts for e in r.collect_events()]
        pending += [e for agg in ws.touched.values() for e in agg.collect_events()]
        if pending or ledger_rows or tracking is not None:
            # What ``self.events.put`` does, without the recordings it returns for each event
            # (two more objects per event, which nothing here reads).
            self.recorder.insert_events([self.mapper.to_stored_event(e) for e in pending], tracking=tracking,
                                        **{ledger.ROWS: ledger_rows, ledger.SNAPSHOTS: due})
        # Erasures requested in this batch: the Erased facts are committed, now the keys go.
        # (A crash right here leaves a key behind; `lifecycle customer forget` finishes the job,
        # and the views already drop the data of an erased customer.)
        for customer_id in ws.erasures:
            self.keyring.destroy(customer_id)
        # 5. cache (a customer first seen by a refused event was never saved: skip it)
        for aggregate in ws.loaded.values():
            if not aggregate.pending_events:
                self._remember(aggregate)
        return BatchResult(tuple(outcomes))

    # -- sweep --------------------------------------------------------------------

    def sweep(self, as_of: date, customer_keys: Iterable[str], batch_size: int = 500) -> int:
        """Churn the given customers that are inactive at ``as_of``; returns how many churned.

        The aggregate re-checks the rule, so a stale candidate list is harmless.
        """
        at = datetime.combine(as_of, time.min, tzinfo=UTC)
        fact = Fact("sweep", at, SWEEP_SOURCE, f"sweep:{as_of.isoformat()}", {"as_of": as_of})
        churned = 0
        for chunk in _chunks(customer_keys, batch_size):
            for attempt in range(1, MAX_ATTEMPTS + 1):
                try:
                    changed = []
                    for key in chunk:
                        customer = self.customer(key)
                        if customer is not None and customer.sweep(self.model, fact):
                            changed.append(customer)
                    self.save(*changed)
                    churned += len(changed)
                    break
                except IntegrityError:
                    self._cache.clear()
                    if attempt == MAX_ATTEMPTS:
                        raise
        return churned

    def _receipt(
        self, rid: UUID, item: InboundEvent | Rejection, outcome: str, reason: str | None
    ) -> InboundReceipt:
        parsed = isinstance(item, InboundEvent)
        raw_b64 = None
        if outcome not in (ACCEPTED, DUPLICATE):
            # Refused and malformed events keep their original bytes for the auditors,
            # under the customer's key when we can tell whose they are.
            raw_b64 = encode_raw(item.raw)
            if item.subject:
                raw_b64 = self.keyring.seal(ids.customer_id_text(item.subject), raw_b64)
        return InboundReceipt._create(
            InboundReceipt.Received,
            id=rid,
            source=item.source,
            event_id=item.id if parsed else item.event_id,
            type=item.type,
            subject=item.subject,
            occurred_at=item.time if parsed else None,
            outcome=outcome,
            reason=reason,
            raw_b64=raw_b64,
        )

    def raw_of(self, receipt: InboundReceipt) -> bytes | None:
        """The original bytes of a refused or malformed event (None once erased)."""
        value = receipt.raw_b64
        if value is not None and receipt.subject:
            value = self.keyring.reveal(str(ids.customer_id(receipt.subject)), value)
        return None if value is None else base64.b64decode(value)

    # -- erasure --------------------------------------------------------------------

    def erase(self, key: str, source: str = "lifecycle/cli") -> bool:
        """Erase a customer's personal data: record that it happened, then destroy the key.

        1. record the Erased fact (holds no personal data) so auditors see when and how
        2. destroy the customer's key: every encrypted copy becomes unreadable at once
        Returns False for an unknown customer.
        """
        customer = self.customer(key)
        if customer is None:
            return False
        now = datetime.now(UTC)
        # 1. record
        customer.record(self.model, Fact("erased", now, source, f"forget:{now.isoformat()}", {}))
        self.save(customer)
        # 2. destroy
        self.keyring.destroy(str(customer.id))
        return True

    # -- queries --------------------------------------------------------------------

    def customer(self, key: str) -> Customer | None:
        aggregate = self._load(ids.customer_id(key))
        return aggregate if isinstance(aggregate, Customer) else None

    def deal(self, upstream_deal_id: str) -> Deal | None:
        aggregate = self._load(ids.deal_id(upstream_deal_id))
        return aggregate if isinstance(aggregate, Deal) else None

    def history(self, aggregate_id: UUID) -> list[Any]:
        return list(self.events.get(aggregate_id))

    # -- cache and store --------------------------------------------------------------

    def _prefetch(
        self, parsed: Sequence[InboundEvent | Rejection], receipts: Sequence[UUID], ws: _Workspace
    ) -> set[UUID]:
        """Which inbound events of this batch the ledger holds (returned), and its customers and
        deals that the cache does not hold, from their snapshots and the events after them (the
        events a snapshot holds are not read): one query each for the batch, instead of one read
        per aggregate once they outnumber the cache. Then the customers' keys in one more query
        (new customers get theirs made together)."""
        customers = {ids.customer_id(p.subject) for p in parsed if isinstance(p, InboundEvent)}
        deals = {ids.deal_id(str(p.data.deal_id)) for p in parsed if isinstance(p, InboundEvent) and p.type in DEAL_FACTS}
        # Not ``customers - self._cache.keys()``: that hashes every cached id (UUID's hash is
        # Python code): ten times the batch's customers once the cache is full.
        unknown = {a for a in customers | deals if a not in self._cache}
        stored = set(self.recorder.seen(receipts))
        ws.loaded.update(self._reload(unknown))
        ws.absent = unknown - ws.loaded.keys()
        new_customers = customers & ws.absent
        self.keyring.preload(
            (str(c) for c in customers - new_customers), create=(str(c) for c in new_customers)
        )
        return stored

    def _reload(self, aggregate_ids: Collection[UUID]) -> dict[UUID, Aggregate]:
        """The stored aggregates among these (one query for the snapshots, one for the events),
        each from its latest snapshot and the events after it: the events a snapshot holds are
        not read. A snapshot of another format restores nothing: its aggregate is read from
        every event."""
        restored = {i: c for i, (_, state) in self.recorder.snapshots(aggregate_ids).items()
                    if (c := snapshots.restore(self.mapper, state)) is not None}
        loaded: dict[UUID, Aggregate] = dict(restored)  # with no event after the snapshot too
        after = {i: c.version for i, c in restored.items()}
        for aggregate_id, rows in stored_states_of_many(self.recorder, aggregate_ids, after).items():
            loaded[aggregate_id] = self._replay(restored.get(aggregate_id), aggregate_id, rows)
        return loaded

    def _replay(
        self, aggregate: Aggregate | None, aggregate_id: UUID, rows: Iterable[tuple[int, str, bytes]]
    ) -> Aggregate:
        """``aggregate`` (None: not yet created) with the stored events of ``rows`` applied, as
        ``repository.get`` would rebuild it.

        Each event mutates the aggregate directly: the library's ``project_aggregate`` asserts
        each event against a runtime-checkable Protocol, and on Python 3.11 that check was
        three quarters of reloading a customer (measured at 400k inbound events, bench/PROFILE.md).
        """
        to_domain_event = self.mapper.to_domain_event
        for version, topic, state in rows:
            aggregate = to_domain_event(StoredEvent(aggregate_id, version, topic, state)).mutate(aggregate)
        assert aggregate is not None  # rows were found
        return aggregate

    def _load(self, aggregate_id: UUID) -> Aggregate | None:
        cached = self._cache.get(aggregate_id)
        if cached is not None:
            self._cache.move_to_end(aggregate_id)
            return cached
        aggregate = self._reload([aggregate_id]).get(aggregate_id)
        if aggregate is not None:
            self._remember(aggregate)
        return aggregate

    def _remember(self, aggregate: Aggregate) -> None:
        # Only aggregates whose events are all saved are safe to keep: another
        # writer's change makes our next save conflict, which clears the cache.
        self._cache[aggregate.id] = aggregate
        self._cache.move_to_end(aggregate.id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)


class _Workspace:
    """The aggregates one batch reads and changes (see ``lifecycle.commands.Workspace``)."""

    def __init__(self, engine: LifecycleEngine) -> None:
        self.engine = engine
        self.model = engine.model
        self.loaded: dict[UUID, Aggregate] = {}
        self.touched: dict[UUID, Aggregate] = {}
        self.erasures: list[str] = []
        self.absent: set[UUID] = set()  # customers and deals known not to be stored when the batch began

    def customer(self, key: str, fact: Fact) -> Customer:
        cid = ids.customer_id(key)
        found = self._get(cid)
        if found is None:
            found = Customer._create(
                Customer.FirstSeen,
                id=cid,
                key=key,
                stage=self.model.initial,
                occurred_at=fact.occurred_at,
                source=fact.source,
                inbound_id=fact.inbound_id,
            )
            self.loaded[cid] = found
        assert isinstance(found, Customer)
        return found

    def deal(self, upstream_deal_id: str, customer_key: str) -> Deal:
        did = ids.deal_id(upstream_deal_id)
        found = self._get(did)
        if found is None:
            found = Deal._create(
                Deal.FirstSeen,
                id=did,
                deal_id=upstream_deal_id,
                customer_key=customer_key,
                customer_id=ids.customer_id_text(customer_key),
            )
            self.loaded[did] = found
        assert isinstance(found, Deal)
        return found

    def protect(self, customer_key: str, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        fields = PERSONAL_FIELDS.get(kind, frozenset()) & data.keys()
        if not fields:
            return data
        cid = ids.customer_id_text(customer_key)
        return {k: self.engine.keyring.seal(cid, v) if k in fields else v for k, v in data.items()}

    def erase_after_commit(self, customer: Customer) -> None:
        self.erasures.append(str(customer.id))

    def keep(self, *aggregates: Customer | Deal) -> None:
        for aggregate in aggregates:
            self.touched[aggregate.id] = aggregate

    def _get(self, aggregate_id: UUID) -> Aggregate | None:
        found = self.loaded.get(aggregate_id)  # one hash of the id, not two
        if found is not None:
            return found
        if aggregate_id in self.absent:
            return None  # the batch's look-up found nothing stored: no read needed
        found = self.engine._load(aggregate_id)
        if found is not None:
            self.loaded[aggregate_id] = found
        return found


def _malformed(item: Rejection) -> ItemOutcome:
    return ItemOutcome(MALFORMED, item.reason, item.source, item.event_id, item.type, item.subject)


def _duplicate(item: InboundEvent | Rejection) -> ItemOutcome:
    if isinstance(item, Rejection):
        return _malformed(item)
    return ItemOutcome(DUPLICATE, None, item.source, item.id, item.type, item.subject)


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
