"""Kafka clients configured the way every service needs them.

kafka-python's consumer defaults (auto-commit, ``latest``, read_uncommitted) are wrong for
us: positions live in the database, a new group must read from the start, and a
transactional producer's aborted records must never be applied.
"""

from __future__ import annotations

from kafka import KafkaConsumer, KafkaProducer

from lifecycle.config import Settings

POLL_BATCHES = 4


def consumer(settings: Settings, group_id: str) -> KafkaConsumer:
    timeout = settings.group_timeout_ms
    return KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group_id,
        client_id=f"{group_id}-consumer",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        # A poll spreads over the partitions: room for a full batch from several of them,
        # cut back to batches of batch_size by the services.
        max_poll_records=settings.batch_size * POLL_BATCHES,
        session_timeout_ms=timeout,
        heartbeat_interval_ms=max(100, timeout // 3),
        max_poll_interval_ms=max(timeout, 10_000),
    )


def producer(settings: Settings, client_id: str) -> KafkaProducer:
    return KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        batch_size=256 * 1024,  # bytes per partition batch: the relay sends pages of thousands
        retries=2_147_483_647,  # delivery is bounded by delivery_timeout_ms, not a retry count
    )
