"""consumers.publisher.Publisher against the development broker: the partitions kafka-python's
producer chose (the Java client's murmur2 of the key), order per key, headers, and a clear error
for what the broker does not acknowledge."""

from __future__ import annotations

import time

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.partitioner.default import murmur2

from consumers.publisher import Publisher, PublishError
from deploy.broker import free_port
from tests.kafka import read_all, unique_suffix

PARTITIONS = 4


def _topic(bootstrap: str) -> str:
    name = f"publisher-test.{unique_suffix()}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, PARTITIONS, 1)])
    finally:
        admin.close()
    return name


@pytest.mark.integration
def test_messages_land_where_kafka_python_put_them_in_order_with_their_headers(kafka_bootstrap):
    topic = _topic(kafka_bootstrap)
    keys = [f"customer-{i}".encode() for i in range(40)]
    messages = [(key, f"{key.decode()}:{n}".encode(), [("event_type", b"Customer.Seen"), ("n", str(n).encode())])
                for n in range(5) for key in keys]
    publisher = Publisher(kafka_bootstrap, "test-publisher")
    try:
        assert publisher.publish(topic, messages) == len(messages)
    finally:
        publisher.close()

    records = read_all(kafka_bootstrap, topic, expected=len(messages))
    assert len(records) == len(messages)
    for record in records:
        # kafka-python's default partitioner, which the relay used: customers keep their partition
        assert record.partition == (murmur2(record.key) & 0x7FFFFFFF) % PARTITIONS
        n = record.value.decode().rsplit(":", 1)[1]
        assert record.headers == [("event_type", b"Customer.Seen"), ("n", n.encode())]
    by_key: dict[bytes, list[int]] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        by_key.setdefault(record.key, []).append(int(record.value.decode().rsplit(":", 1)[1]))
    assert by_key == {key: [0, 1, 2, 3, 4] for key in keys}
    assert len({r.partition for r in records}) == PARTITIONS  # and the keys spread


@pytest.mark.integration
def test_nothing_to_publish_returns_at_once(kafka_bootstrap):
    publisher = Publisher(kafka_bootstrap, "test-publisher")
    started = time.monotonic()
    assert publisher.publish("never-created", []) == 0
    assert time.monotonic() - started < 1.0


def test_unacknowledged_messages_raise_and_say_so():
    publisher = Publisher(f"127.0.0.1:{free_port()}", "test-publisher", ack_timeout_s=1.0)  # nobody there
    with pytest.raises(PublishError, match=r"1 of 1 messages to t at 127\.0\.0\.1:\d+ not acknowledged within 1s"):
        publisher.publish("t", [(b"k", b"v", [])])


def test_a_message_no_broker_could_take_raises():
    publisher = Publisher(f"127.0.0.1:{free_port()}", "test-publisher", ack_timeout_s=1.0)
    with pytest.raises(PublishError, match="cannot publish to t"):
        publisher.publish("t", [(b"k", b"x" * 2_000_000, [])])  # beyond librdkafka's message.max.bytes
