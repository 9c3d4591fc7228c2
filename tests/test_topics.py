"""consumers.topics against the real development broker: creation, idempotence, partitions."""

from __future__ import annotations

import dataclasses
import threading

import pytest
from kafka import KafkaAdminClient

from consumers.errors import BrokerUnavailable, ConsumersError
from consumers.topics import TOPIC_CONFIGS, ensure_topics, topic_configs, topic_names
from deploy.broker import free_port
from lifecycle.config import Settings


def partitions_by_topic(bootstrap: str, topics: list[str]) -> dict[str, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        described = admin.describe_topics(topics)
    finally:
        admin.close()
    return {t["name"]: len(t["partitions"]) for t in described if t["error_code"] == 0}


def test_configs_keep_events_forever_and_bound_inbound_and_rejected() -> None:
    assert set(TOPIC_CONFIGS) == {"inbound", "events", "rejected"}
    assert TOPIC_CONFIGS["events"]["retention.ms"] == "-1"
    assert TOPIC_CONFIGS["events"]["retention.bytes"] == "-1"
    assert TOPIC_CONFIGS["inbound"]["retention.ms"] == "604800000"
    assert TOPIC_CONFIGS["rejected"]["retention.ms"] == str(30 * 86_400_000)
    for configs in TOPIC_CONFIGS.values():
        assert configs["unclean.leader.election.enable"] == "false"
        assert configs["cleanup.policy"] == "delete"


def test_min_insync_comes_from_the_settings() -> None:
    settings = dataclasses.replace(Settings.from_env({}), topic_replication=3, topic_min_insync=2)
    configs = topic_configs(settings)
    assert set(configs) == {"lifecycle.inbound", "lifecycle.events", "lifecycle.rejected"}
    assert {c["min.insync.replicas"] for c in configs.values()} == {"2"}


def test_min_insync_above_replication_is_refused_before_any_traffic() -> None:
    settings = dataclasses.replace(Settings.from_env({}), topic_replication=1, topic_min_insync=2)
    with pytest.raises(ConsumersError, match="MIN_INSYNC"):
        ensure_topics("127.0.0.1:1", settings)


def test_no_broker_is_broker_unavailable() -> None:
    settings = Settings.from_env({})
    with pytest.raises(BrokerUnavailable, match="no Kafka broker answered"):
        ensure_topics(f"127.0.0.1:{free_port()}", settings, timeout_s=1.0)


@pytest.mark.integration
def test_creates_the_three_topics_with_the_partition_count(kafka_bootstrap: str, kafka_settings: Settings) -> None:
    settings = dataclasses.replace(kafka_settings, topic_partitions=5)
    ensure_topics(kafka_bootstrap, settings)
    names = list(topic_names(settings).values())
    assert partitions_by_topic(kafka_bootstrap, names) == {name: 5 for name in names}


@pytest.mark.integration
def test_second_call_is_a_no_op(kafka_bootstrap: str, kafka_settings: Settings) -> None:
    ensure_topics(kafka_bootstrap, kafka_settings)
    ensure_topics(kafka_bootstrap, kafka_settings)
    names = list(topic_names(kafka_settings).values())
    assert partitions_by_topic(kafka_bootstrap, names) == {name: 12 for name in names}


@pytest.mark.integration
def test_existing_topic_is_left_alone(kafka_bootstrap: str, kafka_settings: Settings) -> None:
    """One topic made by someone else with another partition count: kept, the others created."""
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.create_topics({kafka_settings.topic_events: {"num_partitions": 2, "replication_factor": 1}})
    finally:
        admin.close()
    ensure_topics(kafka_bootstrap, kafka_settings)
    assert partitions_by_topic(kafka_bootstrap, list(topic_names(kafka_settings).values())) == {
        kafka_settings.topic_inbound: 12, kafka_settings.topic_events: 2, kafka_settings.topic_rejected: 12,
    }


@pytest.mark.integration
def test_concurrent_creators_both_succeed(kafka_bootstrap: str, kafka_settings: Settings) -> None:
    """Two services starting at once: one of them gets 'already exists', which is success."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(3)

    def create() -> None:
        barrier.wait()
        try:
            ensure_topics(kafka_bootstrap, kafka_settings)
        except BaseException as e:  # collected and asserted on below
            errors.append(e)

    threads = [threading.Thread(target=create) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    names = list(topic_names(kafka_settings).values())
    assert partitions_by_topic(kafka_bootstrap, names) == {name: 12 for name in names}


@pytest.mark.integration
def test_without_configs_also_works(kafka_bootstrap: str, kafka_settings: Settings) -> None:
    ensure_topics(kafka_bootstrap, kafka_settings, apply_configs=False)
    names = list(topic_names(kafka_settings).values())
    assert set(partitions_by_topic(kafka_bootstrap, names)) == set(names)
