"""Kafka consumers configured the way every service needs them (producing: ``consumers.publisher``).

kafka-python's consumer defaults (auto-commit, ``latest``, read_uncommitted) are wrong for
us: positions live in the database, a new group must read from the start, and a
transactional producer's aborted records must never be applied.
"""

from __future__ import annotations

from typing import Any

from kafka import KafkaConsumer

from lifecycle.config import Settings

POLL_BATCHES = 4


def consumer(
    settings: Settings, group_id: str, poll_batches: int = POLL_BATCHES, **tuning: Any
) -> KafkaConsumer:
    """A consumer that commits nothing by itself; ``tuning``: further KafkaConsumer settings."""
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
        max_poll_records=settings.batch_size * poll_batches,
        max_partition_fetch_bytes=4 * 1024 * 1024,  # a poll's share of a busy partition: not 1 MiB
        session_timeout_ms=timeout,
        heartbeat_interval_ms=max(100, timeout // 3),
        max_poll_interval_ms=max(timeout, 10_000),
        **tuning,
    )
