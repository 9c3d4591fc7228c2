"""The Kafka path end to end: real broker, real PostgreSQL, the three services as processes.

Views after the Kafka path must equal the embedded path's on the same input, also when the
services are killed with SIGKILL at random moments and the same events are published twice.
"""

from __future__ import annotations

import base64
import random
import time
import uuid
from datetime import UTC, date, datetime

import psycopg
import pytest
from confluent_kafka import Producer
from kafka import KafkaConsumer

from consumers.outbound import to_message
from consumers.unreadable import UNREADABLE_MESSAGES
from lifecycle.audit import verify
from lifecycle.simulate import simulate
from projections.log import LogEvent
from tests.kafka import read_all
from tests.kafka_path import (
    SERVICES,
    ServiceProcesses,
    embedded_snapshot,
    kafka_settings_env,
    open_runtime,
    publish,
    service_env,
    snapshot,
    wait_caught_up,
)

pytestmark = pytest.mark.integration
AS_OF = date(2025, 1, 1)


@pytest.fixture(scope="module")
def lines() -> list[bytes]:
    """A simulated population with a burst of malformed messages in the middle."""
    population = simulate(customers=120, seed=21, start=date(2024, 1, 1), days=366)
    burst = [b"<html>502 Bad Gateway</html>", b'{"specversion": "1.0", "id": 7}', b"\xff\xfe\x00"]
    garbage = [burst[i % 3] + str(i).encode() for i in range(150)]
    middle = len(population) // 2
    return population[:middle] + garbage + population[middle:]


@pytest.fixture(scope="module")
def embedded(lines, tmp_path_factory) -> dict:
    return embedded_snapshot(lines, tmp_path_factory.mktemp("embedded"), AS_OF)


@pytest.fixture
def kafka_path(postgres_url, kafka_bootstrap, tmp_path):
    env = kafka_settings_env(postgres_url, kafka_bootstrap, uuid.uuid4().hex[:10])
    services = ServiceProcesses(service_env(env), tmp_path)
    rt = open_runtime(env)
    yield env, services, rt
    services.stop_all()
    rt.close()


def test_views_after_the_kafka_path_equal_the_embedded_path(kafka_path, kafka_bootstrap, lines, embedded):
    env, services, rt = kafka_path
    services.start_all()
    publish(kafka_bootstrap, env["LIFECYCLE_TOPIC_INBOUND"], lines)
    wait_caught_up(rt, kafka_bootstrap, services)
    assert snapshot(rt, AS_OF) == embedded
    assert services.stop_all() == {name: 0 for name in SERVICES}  # SIGTERM: a clean stop

    # lifecycle.events carries personal fields only as ciphertext (erasure reaches it too).
    relayed = read_all(kafka_bootstrap, env["LIFECYCLE_TOPIC_EVENTS"],
                       expected=rt.engine.recorder.max_notification_id())
    assert any(b"enc:v1:" in r.value for r in relayed)
    assert not any(b"@example." in r.value for r in relayed)

    # Malformed events landed in the dead-letter topic, with the reason and where they came from.
    consumer = KafkaConsumer(env["LIFECYCLE_TOPIC_REJECTED"], bootstrap_servers=kafka_bootstrap,
                             auto_offset_reset="earliest", consumer_timeout_ms=5000)
    dead = list(consumer)
    consumer.close()
    malformed = [r for r in embedded["views"]["rejections"] if r["outcome"] == "malformed"]
    assert len({m.value for m in dead}) == len(malformed) > 150  # the burst, and the rest flowed
    headers = dict(dead[0].headers)
    assert headers["reason"] and headers["source_topic"] == env["LIFECYCLE_TOPIC_INBOUND"].encode()


def test_project_goes_past_messages_on_lifecycle_events_that_are_not_the_contract(
        kafka_path, kafka_bootstrap, lines, embedded):
    """Another producer's messages on ``lifecycle.events`` (not JSON, a tombstone, headers that
    name no stored event, a customer's event in the contract's form that no store holds) are set
    aside with their bytes: ``project`` does not stop at them, the views lose nothing and show no
    such customer."""
    env, services, rt = kafka_path
    topic = env["LIFECYCLE_TOPIC_EVENTS"]
    stranger = [("event_type", b"Customer.Registered"), ("aggregate_id", str(uuid.uuid4()).encode()),
                ("version", b"1")]
    _, contract, _ = to_message(LogEvent(1, "Customer", str(uuid.uuid4()), 1, "FirstSeen",
                                         datetime(2026, 1, 1, tzinfo=UTC), {"key": "web:stranger"}), "k")
    # (partition, value, headers), in the order of the rows below: by partition and offset
    poison = [(0, b"<html>502 Bad Gateway</html>\x00\xff", None), (0, b"\xfe", [("version", b"x")]),
              (1, None, None), (1, contract, None), (2, b'{"schema_version": 1}', stranger)]
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "client.id": "another-producer"})
    failures = []
    for partition, value, headers in poison:
        producer.produce(topic, value=value, key=b"k", partition=partition, headers=headers,
                         on_delivery=lambda err, _: failures.append(err) if err else None)
    assert producer.flush(30) == 0 and not failures
    del producer  # gone before the broker stops
    services.start_all()
    publish(kafka_bootstrap, env["LIFECYCLE_TOPIC_INBOUND"], lines)
    wait_caught_up(rt, kafka_bootstrap, services)  # fails if project stopped
    assert snapshot(rt, AS_OF) == embedded
    assert services.stop_all() == {name: 0 for name in SERVICES}
    rt.views.create([UNREADABLE_MESSAGES])  # known to this process's view store (made by project)
    rows = sorted(rt.views.rows(UNREADABLE_MESSAGES.name), key=lambda r: (r["kafka_partition"], r["kafka_offset"]))
    assert [(r["kafka_partition"], r["kafka_offset"], r["recovered"]) for r in rows] == [
        (0, 0, False), (0, 1, False), (1, 0, False), (1, 1, False), (2, 0, False)]
    assert [base64.b64decode(r["value_base64"]) for r in rows] == [value or b"" for _, value, _ in poison]
    assert rows[2]["reason"] == "has no value"
    # Named by their headers or their value, the customers are ones the event store does not hold:
    # set aside before the body is read.
    assert all("which the event store does not hold" in r["reason"] for r in rows[3:])
    assert rows[1]["headers"] == [["version", "x"]] and "\x00" not in rows[0]["value"]


def test_sigkill_at_random_moments_loses_nothing_and_doubles_nothing(kafka_path, kafka_bootstrap, lines, embedded):
    env, services, rt = kafka_path
    rnd = random.Random(1234)
    services.start_all()
    services.start("ingest-2")  # two ingest processes share the partitions of one group
    chunks = [lines[i:i + 400] for i in range(0, len(lines), 400)]
    for chunk in chunks:
        publish(kafka_bootstrap, env["LIFECYCLE_TOPIC_INBOUND"], chunk)
        time.sleep(rnd.uniform(0.2, 1.5))
        victim = rnd.choice([*SERVICES, "ingest-2"])
        services.kill(victim)
        time.sleep(rnd.uniform(0.0, 1.0))
        services.start(victim)
    wait_caught_up(rt, kafka_bootstrap, services)
    assert services.kills == len(chunks)
    assert snapshot(rt, AS_OF) == embedded
    # The relay seals what it sends; a kill between its position and its seals leaves some
    # unsealed until it is idle (wait_caught_up waits for that too): every chain unbroken.
    verdict = verify(rt.engine.recorder, rt.views)
    # Counted, not the last notification id: an ingest killed inside its transaction leaves a gap
    # in the ids (PostgreSQL's sequence does not roll back).
    stored = len(rt.engine.recorder.select_notifications(start=1, limit=10**9))
    assert verdict.ok and verdict.unsealed == 0 and verdict.checked == stored > 0

    # Upstream publishes everything a second time: every event is a duplicate, no view changes.
    publish(kafka_bootstrap, env["LIFECYCLE_TOPIC_INBOUND"], lines)
    wait_caught_up(rt, kafka_bootstrap, services)
    assert snapshot(rt, AS_OF) == embedded


def test_services_ride_out_terminated_database_connections(kafka_path, postgres_url, kafka_bootstrap, lines, embedded):
    """A failover, restart or pooler kill drops every connection: the services back off and resume
    from their stored positions, in the same process."""
    env, services, _ = kafka_path
    services.start_all()
    chunks = [lines[i:i + 300] for i in range(0, len(lines), 300)]
    terminated = 0
    for chunk in chunks:
        publish(kafka_bootstrap, env["LIFECYCLE_TOPIC_INBOUND"], chunk)
        time.sleep(0.7)
        terminated += terminate_connections(postgres_url)
    rt = open_runtime(env)  # the fixture's connections were terminated too
    try:
        wait_caught_up(rt, kafka_bootstrap, services)  # fails if any service exited
        assert snapshot(rt, AS_OF) == embedded
    finally:
        rt.close()
    assert terminated >= len(chunks)
    retried = [name for name in SERVICES if '"database_unavailable"' in services.tail(name, lines=100_000)]
    assert retried, "no service saw a terminated connection: the test did not test anything"
    assert services.stop_all() == {name: 0 for name in SERVICES}


def terminate_connections(database_url: str) -> int:
    """Every other session on the services' database, as an administrator or a failover would."""
    dbname = database_url.rsplit("/", 1)[1]
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()", (dbname,)
        ).fetchall()
    return sum(1 for (done,) in rows if done)
