"""Configuration from the environment (prefix ``LIFECYCLE_``), validated once.

Nothing secret lives in files: a PostgreSQL password comes in the URL or in
the usual ``PGPASSWORD``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from lifecycle.errors import ConfigError


#: Every environment variable the code reads (deploy files are checked against this list).
ENVIRONMENT = (
    "LIFECYCLE_DATABASE_URL", "LIFECYCLE_DATA_DIR", "LIFECYCLE_STAGE_MODEL", "LIFECYCLE_BATCH_SIZE",
    "LIFECYCLE_KAFKA_BOOTSTRAP", "LIFECYCLE_TOPIC_INBOUND", "LIFECYCLE_TOPIC_EVENTS",
    "LIFECYCLE_TOPIC_REJECTED", "LIFECYCLE_TOPIC_PARTITIONS", "LIFECYCLE_TOPIC_REPLICATION",
    "LIFECYCLE_TOPIC_MIN_INSYNC", "LIFECYCLE_KAFKA_GROUP_TIMEOUT_MS",
    "LIFECYCLE_KAFKA_GROUP_PREFIX", "LIFECYCLE_LOG_FORMAT", "LIFECYCLE_ANALYST_PASSWORD",
    "LIFECYCLE_CACHE_CUSTOMERS",
)

#: Inbound events per transaction at most (``LIFECYCLE_BATCH_SIZE``): from a stream of lines,
#: or from one Kafka partition's poll. 500 until 2026-12-05; with 2,000
#: a transaction's fixed costs (the store's write lock, the look-ups of the batch's customers and
#: duplicates, the commit's flush) are shared by four times as many events: a three-process
#: embedded ingest +18% (SQLite) and +27% (PostgreSQL) events/s, the Kafka path's views caught
#: up 15-20% sooner on 14% less CPU (alternated runs: bench/PROFILE.md).
DEFAULT_BATCH_SIZE = 2000


@dataclass(frozen=True)
class Settings:
    database_url: str | None
    data_dir: Path
    stage_model_path: Path | None
    batch_size: int
    kafka_bootstrap: str | None
    topic_inbound: str = "lifecycle.inbound"
    topic_events: str = "lifecycle.events"
    topic_rejected: str = "lifecycle.rejected"
    topic_partitions: int = 12
    topic_replication: int = 1
    topic_min_insync: int = 1
    group_timeout_ms: int = 30_000
    group_prefix: str = "lifecycle"
    cache_customers: int = 5_000
    workers: int = 1  # processes for a long stream of lines or a rebuild (lifecycle.parallel)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        model = env.get("LIFECYCLE_STAGE_MODEL") or None
        return cls(
            database_url=env.get("LIFECYCLE_DATABASE_URL") or None,
            data_dir=Path(env.get("LIFECYCLE_DATA_DIR") or "data"),
            stage_model_path=Path(model) if model else None,
            batch_size=_positive_int(env, "LIFECYCLE_BATCH_SIZE", DEFAULT_BATCH_SIZE),
            kafka_bootstrap=env.get("LIFECYCLE_KAFKA_BOOTSTRAP") or None,
            topic_inbound=env.get("LIFECYCLE_TOPIC_INBOUND") or "lifecycle.inbound",
            topic_events=env.get("LIFECYCLE_TOPIC_EVENTS") or "lifecycle.events",
            topic_rejected=env.get("LIFECYCLE_TOPIC_REJECTED") or "lifecycle.rejected",
            topic_partitions=_positive_int(env, "LIFECYCLE_TOPIC_PARTITIONS", 12),
            topic_replication=_positive_int(env, "LIFECYCLE_TOPIC_REPLICATION", 1),
            topic_min_insync=_positive_int(env, "LIFECYCLE_TOPIC_MIN_INSYNC", 1),
            group_timeout_ms=_positive_int(env, "LIFECYCLE_KAFKA_GROUP_TIMEOUT_MS", 30_000),
            group_prefix=env.get("LIFECYCLE_KAFKA_GROUP_PREFIX") or "lifecycle",
            cache_customers=_positive_int(env, "LIFECYCLE_CACHE_CUSTOMERS", 5_000),
            workers=_positive_int(env, "LIFECYCLE_WORKERS", default_workers()),
        )

    def describe_store(self) -> str:
        """Where the store is, without a password."""
        if self.database_url is None:
            return f"embedded SQLite in {self.data_dir}"
        parts = urlsplit(self.database_url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}{parts.path}"

    def event_store_env(self) -> dict[str, str]:
        """The eventsourcing library's settings for the configured store."""
        return event_store_env(self.database_url, self.data_dir)


def default_workers() -> int:
    """One process more than the machine has cores, at most four: the store takes the writes
    one at a time, and while one process waits for it another can compute (measured on 2 cores,
    100k events ingested: 2 processes 1.5-1.7x one on SQLite, 3 processes 1.5-2.1x; beyond that
    they mostly wait)."""
    return max(1, min((os.cpu_count() or 1) + 1, 4))


def is_postgres_url(database_url: str | None) -> bool:
    """Whether the URL names a PostgreSQL store (``postgresql://`` or ``postgres://``)."""
    return database_url is not None and database_url.startswith(("postgresql://", "postgres://"))


def event_store_env(database_url: str | None, data_dir: Path) -> dict[str, str]:
    if database_url is None:
        data_dir.mkdir(parents=True, exist_ok=True)
        return _sqlite_env(data_dir / "events.sqlite")
    if database_url == "memory://":
        return {"PERSISTENCE_MODULE": "eventsourcing.popo"}
    parts = urlsplit(database_url)
    if parts.scheme == "sqlite":
        # sqlite:///relative/path or sqlite:////absolute/path, as SQLAlchemy spells it
        path = Path(unquote(parts.path[1:] if parts.path.startswith("/") else parts.path))
        if not str(path):
            raise ConfigError("LIFECYCLE_DATABASE_URL=sqlite:///PATH needs a file path")
        path.parent.mkdir(parents=True, exist_ok=True)
        return _sqlite_env(path)
    if parts.scheme in ("postgresql", "postgres"):
        dbname = unquote(parts.path.lstrip("/"))
        if not dbname:
            raise ConfigError("LIFECYCLE_DATABASE_URL needs a database name: postgresql://HOST/DBNAME")
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": dbname,
            "POSTGRES_HOST": parts.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(parts.port or 5432),
            "POSTGRES_USER": unquote(parts.username or "postgres"),
            "POSTGRES_PASSWORD": unquote(parts.password or os.environ.get("PGPASSWORD", "")),
            "POSTGRES_CONNECT_TIMEOUT": "5",
        }
    raise ConfigError(
        f"unsupported LIFECYCLE_DATABASE_URL {database_url!r}: "
        "use postgresql://USER@HOST:PORT/DB or sqlite:///PATH (or leave it unset)"
    )


def _sqlite_env(path: Path) -> dict[str, str]:
    return {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(path),
        "SQLITE_LOCK_TIMEOUT": "30",
    }


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < 1:
        raise ConfigError(f"{name} must be at least 1, got {value}")
    return value
