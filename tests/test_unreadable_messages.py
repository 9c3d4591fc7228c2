"""``project`` goes past a ``lifecycle.events`` message that is not the contract, sets it aside with
why and its bytes, and loses nothing the event store holds (``consumers.unreadable``).

The service runs in this process against the development broker (its consumer is made, never
polled) and an embedded store; its steps get records as its polls hand them over.
"""

from __future__ import annotations

import base64
import dataclasses
import uuid
from datetime import date

import pytest
import structlog

from consumers.clients import Partition, Record
from consumers.outbound import to_message
from consumers.project import ProjectService
from consumers.unreadable import UNREADABLE_MESSAGES
from lifecycle.runtime import Runtime
from lifecycle.simulate import simulate
from projections.store import ViewStoreError
from tests.backends import runtime_factory

pytestmark = pytest.mark.integration
TODAY = date(2025, 1, 1)
TOPIC = "lifecycle.events"
PARTITION = Partition(TOPIC, 0)
GARBAGE = b"<html>502 Bad Gateway</html>\x00\xff"


@pytest.fixture
def rt(tmp_path, kafka_bootstrap):
    runtime: Runtime = runtime_factory("sqlite", tmp_path, lambda: "")()
    runtime.settings = dataclasses.replace(runtime.settings, kafka_bootstrap=kafka_bootstrap)
    yield runtime
    runtime.close()


@pytest.fixture
def service(rt):
    project = ProjectService(rt, structlog.get_logger())
    yield project
    project.consumer.close()


def ingest_half(rt: Runtime, which: int) -> list:
    """Store the first or second half of a population (two malformed events among the first:
    receipts); the log's events it added."""
    lines = simulate(customers=40, seed=5, start=date(2024, 1, 1), days=300)
    first, second = lines[: len(lines) // 2], lines[len(lines) // 2:]
    first[3:3] = [b'{"specversion": "1.0", "id": 7}', b"not json"]
    before = rt.engine.recorder.max_notification_id() or 0
    rt.engine.ingest(first if which == 1 else second)
    return rt.runner.source.read(before, 10**6)


def records(events, first_offset: int = 0) -> list[Record]:
    """The relay's messages of ``events``, at consecutive offsets."""
    return [Record(offset, *message[:2], message[2])
            for offset, message in enumerate((to_message(e, "key") for e in events), first_offset)]


def views(rt: Runtime) -> dict[str, list[dict]]:
    rt.runner.refresh_summaries(TODAY)
    return {t: sorted(map(repr, rt.views.rows(t))) for t in ("customer_current", "stage_history",
                                                             "customer_purchases", "deal_current", "rejections")}


def rebuilt(rt: Runtime) -> dict[str, list[dict]]:
    rt.runner.rebuild(TODAY)
    return views(rt)


def set_aside(rt: Runtime) -> dict[int, dict]:
    return {row["kafka_offset"]: row for row in rt.views.rows(UNREADABLE_MESSAGES.name)}


def test_a_message_without_usable_headers_that_is_not_the_contract_is_set_aside(rt, service):
    log = ingest_half(rt, 1) + ingest_half(rt, 2)
    batch = records(log)
    at = [3, len(batch) // 2, len(batch)]  # the last one too: the step still ends past it
    for offset in reversed(at):
        batch.insert(offset, Record(offset, b"key", GARBAGE + str(offset).encode(), None))
    batch.insert(7, Record(7, b"key", b'{"aggregate_type": "Customer"}', [("version", b"not a number")]))
    batch.insert(9, Record(9, b"key", None, None))  # a tombstone
    batch = [r._replace(offset=i) for i, r in enumerate(batch)]
    service.apply(PARTITION, batch)
    assert rt.views.position(f"kafka:{TOPIC}:0") == len(batch)
    rows = set_aside(rt)
    unreadable = [r.offset for r in batch if r.value is None or not r.value.startswith(b'{"schema_version"')]
    assert sorted(rows) == unreadable and len(unreadable) == 5
    for record in batch:
        if record.offset in rows:
            row = rows[record.offset]
            assert base64.b64decode(row["value_base64"]) == (record.value or b"")
            assert not row["recovered"] and row["reason"] and "\x00" not in row["value"]
    assert "not a lifecycle.events message" in rows[batch[-1].offset]["reason"]
    assert rows[9]["reason"] == "has no value"
    assert rows[7]["headers"] == [["version", "not a number"]]
    assert views(rt) == rebuilt(rt)


def test_an_unreadable_message_that_names_a_stored_event_is_replaced_by_it(rt, service):
    """Customers, deals and receipts: decoded at once (a receipt), or by the runner when it
    lacks the version (a customer's or deal's, as the headers name it): either way the event
    store's copy takes its place, and the views equal a rebuild's."""
    log = ingest_half(rt, 1)
    half = len(log)
    first = records(log)
    receipts = [i for i, e in enumerate(log) if e.aggregate_type == "InboundReceipt"]
    for i in receipts:
        first[i] = first[i]._replace(value=GARBAGE)
    service.apply(PARTITION, first)  # every entity met is now held, read from the store
    log += ingest_half(rt, 2)
    # A relay's re-send of the last ten events, then the new ones; an entity's event whose
    # version the runner holds is never read, so its body does not matter.
    later = records(log[half - 10:], half)
    resent = [i for i, e in enumerate(log[half - 10:half]) if e.aggregate_type in ("Customer", "Deal")]
    kinds = {}
    for i, (record, event) in enumerate(zip(later, log[half - 10:], strict=True)):
        entity = event.aggregate_type in ("Customer", "Deal")
        if i in resent or (i >= 10 and entity and event.aggregate_type not in kinds):
            later[i] = record._replace(value=GARBAGE)
            if i not in resent:
                kinds[event.aggregate_type] = record.offset
    assert receipts and resent and set(kinds) == {"Customer", "Deal"}
    service.apply(PARTITION, later)
    rows = set_aside(rt)
    assert sorted(rows) == receipts + sorted(kinds.values())
    assert all(row["recovered"] and "not a lifecycle.events message" in row["reason"] for row in rows.values())
    assert views(rt) == rebuilt(rt)


def test_a_message_whose_headers_name_another_event_is_set_aside_for_the_event_they_name(rt, service):
    log = ingest_half(rt, 1)
    half = len(log)
    service.apply(PARTITION, records(log))
    log += ingest_half(rt, 2)
    later = records(log[half:], half)
    customer = next(i for i, e in enumerate(log[half:]) if e.aggregate_type == "Customer" and i > 0)
    other = next(i for i, e in enumerate(log[half:]) if e.aggregate_id != log[half + customer].aggregate_id)
    later[customer] = later[customer]._replace(value=later[other].value)
    service.apply(PARTITION, later)
    rows = set_aside(rt)
    assert list(rows) == [later[customer].offset]
    assert rows[later[customer].offset]["recovered"]
    assert "by its headers but holds" in rows[later[customer].offset]["reason"]
    assert views(rt) == rebuilt(rt)


def test_headers_that_name_no_stored_event_recover_nothing(rt, service):
    log = ingest_half(rt, 1)
    batch = records(log[:10])
    named = dict(batch[4].headers)
    batch[4] = batch[4]._replace(value=GARBAGE, headers=[*named.items()][:2] + [("version", b"999")])
    service.apply(PARTITION, batch)
    row = set_aside(rt)[4]
    assert not row["recovered"]
    assert rt.views.position(f"kafka:{TOPIC}:0") == 10


@pytest.mark.parametrize("same_step", [True, False])
def test_a_version_lost_with_its_headers_is_read_from_the_store_when_a_later_one_comes(rt, service, same_step):
    """A message set aside that names nothing (its headers lost too) leaves a held customer one
    version short; the customer's next version shows the gap, in the same step or a later one,
    and its history is read from the event store again: the views equal a rebuild's."""
    log = ingest_half(rt, 1)
    half = len(log)
    service.apply(PARTITION, records(log))  # every customer met is now held
    held = {e.aggregate_id for e in log if e.aggregate_type == "Customer"}
    log += ingest_half(rt, 2)
    later = records(log[half:], half)
    ids = [e.aggregate_id for e in log[half:]]
    lost = next(i for i, customer in enumerate(ids) if customer in held and customer in ids[i + 1:])
    later[lost] = later[lost]._replace(value=GARBAGE, headers=None)
    if same_step:
        service.apply(PARTITION, later)
    else:
        service.apply(PARTITION, later[: lost + 1])
        service.apply(PARTITION, later[lost + 1:])
    assert list(set_aside(rt)) == [later[lost].offset] and not set_aside(rt)[later[lost].offset]["recovered"]
    assert views(rt) == rebuilt(rt)


def forged(event, offset: int, **changes) -> Record:
    """Another producer's message in the contract's form: ``event`` changed, with the headers
    the relay would give it."""
    return Record(offset, *to_message(event._replace(**changes), "key"))


@pytest.mark.parametrize("kind", ["Customer", "Deal"])
def test_a_message_in_the_contracts_form_about_an_aggregate_the_store_does_not_hold_is_set_aside(rt, service, kind):
    """Derived from the messages alone they would make a customer or deal that no rebuild
    shows: here a real one's first three events under another id (and another key)."""
    log = ingest_half(rt, 1)
    model = next(e for e in log if e.aggregate_type == kind and e.version == 1)
    history = [e for e in log if e.aggregate_id == model.aggregate_id][:3]
    stranger = str(uuid.uuid4())
    batch = records(log[:20])
    for event in history:
        payload = dict(event.payload)
        for name in ("key", "deal_id"):
            if name in payload:
                payload[name] = f"web:{stranger}"
        batch.append(forged(event, len(batch), aggregate_id=stranger, payload=payload))
    service.apply(PARTITION, batch)
    rows = set_aside(rt)
    assert len(history) == 3 and sorted(rows) == [20, 21, 22]
    assert all("which the event store does not hold" in row["reason"] and not row["recovered"]
               for row in rows.values())
    assert rt.views.position(f"kafka:{TOPIC}:0") == 23
    assert not any(stranger in row for shown in views(rt).values() for row in shown)
    service.apply(PARTITION, records(log[20:], 23))
    assert views(rt) == rebuilt(rt)


@pytest.mark.parametrize("held", [False, True])
def test_a_version_beyond_what_the_store_holds_of_a_customer_is_set_aside(rt, service, held):
    """Found where the runner reads the customer from the store: when it first meets it, or
    when a held customer's new version leaves a gap."""
    log = ingest_half(rt, 1)
    first = records(log) if held else records(log[:3])
    met = {e.aggregate_id for e in log[:len(first)]}
    customer = next(e for e in log if e.aggregate_type == "Customer" and e.name != "FirstSeen"
                    and (e.aggregate_id in met) == held)
    service.apply(PARTITION, first)
    after = len(first)
    batch = [forged(customer, after, version=999)] + records(log[after:], after + 1)
    service.apply(PARTITION, batch)
    rows = set_aside(rt)
    assert list(rows) == [after]
    assert f"names version 999 of Customer {customer.aggregate_id}" in rows[after]["reason"]
    assert views(rt) == rebuilt(rt)


def test_a_database_failure_while_project_starts_is_met_in_its_first_step(rt):
    """Its table for set-aside messages is made by the first step, which the service's loop does
    again after a failure; made while the service started, a dropped connection ended it."""
    create, failures = rt.views.create, []

    def fails_once(tables):
        if not failures:
            failures.append(tables)
            raise ViewStoreError("PostgreSQL view store unavailable: terminating connection")
        return create(tables)

    rt.views.create = fails_once
    project = ProjectService(rt, structlog.get_logger())  # touches no table
    try:
        assert not failures
        batch = records(ingest_half(rt, 1)[:10]) + [Record(10, b"key", GARBAGE, None)]
        with pytest.raises(ViewStoreError):
            project.apply(PARTITION, batch)
        project.apply(PARTITION, batch)  # as ``run_until_stopped`` does it again
        assert list(set_aside(rt)) == [10]
    finally:
        project.consumer.close()
