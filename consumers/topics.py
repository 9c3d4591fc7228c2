"""The three topics and their settings; ``ensure_topics`` creates whichever is missing.

| role     | default name         | key          | retention                  |
|----------|----------------------|--------------|----------------------------|
| inbound  | ``lifecycle.inbound``  | customer key | 7 days (``604800000`` ms)  |
| events   | ``lifecycle.events``   | customer id  | forever (``-1``)           |
| rejected | ``lifecycle.rejected`` | customer key | 30 days (``2592000000`` ms)|

Every topic gets ``settings.topic_partitions`` partitions, ``settings.topic_replication``
replicas, ``min.insync.replicas = settings.topic_min_insync``, no unclean leader election (an
out-of-sync replica must never become leader and silently drop acknowledged writes),
``cleanup.policy=delete`` (never compaction: compaction would keep only the last event of a key)
and ``retention.bytes=-1`` (no size limit: a size limit could delete inbound events nobody has read
yet while ingest is down).

Why the inbound retention is bounded: inbound messages carry personal data (names, e-mail
addresses in ``crm.customer.registered`` and ``crm.profile.updated``) in clear text, written by
upstream, so crypto-shredding cannot reach them. Once ingest has stored an event (encrypted per
customer) the inbound copy has no further use; a bounded retention guarantees that an erasure
request is complete on the broker within 7 days without rewriting a log. The store, not Kafka, is
the record; ``lifecycle.events`` carries what the store published (kept forever so a projection can
be rebuilt from offset 0). The 7 days are also the longest ingest may be down before unread events
expire: alert on consumer lag long before that. ``lifecycle.rejected`` holds the raw rejected
message for people to inspect and fix; 30 days bounds how long personal data stays there (the
``rejections`` table keeps the reason).

What the development broker (Tansu, ``deploy/broker.py``) does with topic configs: it accepts
every config on CreateTopics, even unknown names, and keeps none (DescribeConfigs answers with an
empty list), so nothing here can be verified against it; it also accepts any replication factor
on its single node. Apache Kafka validates them and refuses unknown names or bad values with
``InvalidConfigurationException``; ``apply_configs=False`` creates the topics without any config
(broker defaults), for a broker that refuses one of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import structlog
from kafka import KafkaAdminClient
from kafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError, TopicAlreadyExistsError
from kafka.errors import for_code as kafka_error_for_code

from consumers.errors import BrokerUnavailable, ConsumersError
from lifecycle.config import Settings

RETENTION_7_DAYS_MS = 7 * 24 * 60 * 60 * 1000
RETENTION_30_DAYS_MS = 30 * 24 * 60 * 60 * 1000

_COMMON = {
    "cleanup.policy": "delete",
    "retention.bytes": "-1",
    "unclean.leader.election.enable": "false",
}

#: Per role, every topic config except ``min.insync.replicas`` (which depends on the cluster and
#: comes from ``settings.topic_min_insync``). deploy/topics.md documents the same values (tested).
TOPIC_CONFIGS: Mapping[str, Mapping[str, str]] = MappingProxyType({
    "inbound": MappingProxyType({**_COMMON, "retention.ms": str(RETENTION_7_DAYS_MS)}),
    "events": MappingProxyType({**_COMMON, "retention.ms": "-1"}),
    "rejected": MappingProxyType({**_COMMON, "retention.ms": str(RETENTION_30_DAYS_MS)}),
})

_TOPIC_ALREADY_EXISTS = TopicAlreadyExistsError.errno


def topic_names(settings: Settings) -> dict[str, str]:
    """Role (``inbound``, ``events``, ``rejected``) to the configured topic name."""
    return {
        "inbound": settings.topic_inbound,
        "events": settings.topic_events,
        "rejected": settings.topic_rejected,
    }


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """Topic name to the full config it is created with."""
    return {
        name: {**TOPIC_CONFIGS[role], "min.insync.replicas": str(settings.topic_min_insync)}
        for role, name in topic_names(settings).items()
    }


def ensure_topics(
    bootstrap: str,
    settings: Settings,
    *,
    apply_configs: bool = True,
    timeout_s: float = 30.0,
) -> None:
    """Create the inbound, events and rejected topics if missing, then wait until they have leaders.

    Idempotent and safe against a concurrent creator (another service starting at the same moment):
    "already exists" is success. A topic that exists already is left alone, also when its
    partition count or replication factor differ from the settings (changing either moves keys
    between partitions or needs a reassignment: an operator's decision); a warning is logged.
    Raises ``BrokerUnavailable`` when no broker answers within ``timeout_s``, ``ConsumersError``
    for anything else the broker refuses.
    """
    if settings.topic_min_insync > settings.topic_replication:
        raise ConsumersError(
            f"LIFECYCLE_TOPIC_MIN_INSYNC={settings.topic_min_insync} is more than "
            f"LIFECYCLE_TOPIC_REPLICATION={settings.topic_replication}: no write with acks=all "
            "could ever succeed"
        )
    timeout_ms = max(1, int(timeout_s * 1000))
    wanted = topic_configs(settings)
    admin = _connect(bootstrap, timeout_ms)
    try:
        try:
            existing = set(admin.list_topics())
            missing = [name for name in wanted if name not in existing]
            if missing:
                response = admin.create_topics(
                    {
                        name: {
                            "num_partitions": settings.topic_partitions,
                            "replication_factor": settings.topic_replication,
                            "configs": dict(wanted[name]) if apply_configs else {},
                        }
                        for name in missing
                    },
                    timeout_ms=timeout_ms,
                    raise_errors=False,
                )
                _check_created(response, apply_configs)
            admin.wait_for_topics(list(wanted), timeout_ms=timeout_ms)
            described = admin.describe_topics(list(wanted))
        except KafkaConnectionError as e:
            raise BrokerUnavailable(f"Kafka at {bootstrap} went away while creating topics: {e}") from e
        except KafkaTimeoutError as e:
            raise ConsumersError(f"topics {sorted(wanted)} not ready at {bootstrap} in {timeout_s}s: {e}") from e
        except KafkaError as e:
            raise ConsumersError(f"cannot create topics at {bootstrap}: {e}") from e
    finally:
        admin.close()
    _warn_on_differences(described, settings, created=set(missing))


def _connect(bootstrap: str, timeout_ms: int) -> KafkaAdminClient:
    try:
        return KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="lifecycle-topics",
            bootstrap_timeout_ms=timeout_ms,
            request_timeout_ms=timeout_ms,
        )
    except KafkaError as e:
        raise BrokerUnavailable(
            f"no Kafka broker answered at {bootstrap} within {timeout_ms / 1000:g}s "
            f"(LIFECYCLE_KAFKA_BOOTSTRAP): {type(e).__name__}: {e}"
        ) from e


def _check_created(response: dict, apply_configs: bool) -> None:
    failures = []
    for topic in response.get("topics", []):
        code = topic.get("error_code", 0)
        if code in (0, _TOPIC_ALREADY_EXISTS):  # already exists: a concurrent creator won, fine
            continue
        error = kafka_error_for_code(code)
        failures.append(f"{topic.get('name')}: {error.__name__} {topic.get('error_message') or ''}".strip())
    if failures:
        hint = (" (a broker that refuses a topic config can be used with apply_configs=False)"
                if apply_configs else "")
        raise ConsumersError("the broker refused to create topics: " + "; ".join(failures) + hint)


def _warn_on_differences(described: list[dict], settings: Settings, created: set[str]) -> None:
    log = structlog.get_logger()
    for topic in described:
        name = topic.get("name")
        if name in created:
            continue
        partitions = topic.get("partitions") or []
        replicas = max((len(p.get("replica_nodes") or []) for p in partitions), default=0)
        if len(partitions) != settings.topic_partitions or replicas != settings.topic_replication:
            log.warning(
                "topic_differs_from_settings", topic=name,
                partitions=len(partitions), configured_partitions=settings.topic_partitions,
                replicas=replicas, configured_replicas=settings.topic_replication,
            )
