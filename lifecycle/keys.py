"""The key ring: one data key per customer, kept apart from the data it protects.

Keys live in their own store (an SQLite file beside the events, or the
``lifecycle_keys`` schema on PostgreSQL), never in the views: rebuilding or
deleting the views must not erase anyone. ``destroy`` is the erasure.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from collections.abc import Iterable
from typing import Any

from pathlib import Path

from lifecycle import crypto
from lifecycle.errors import ConfigError
from projections.store import (
    InMemoryViewStore,
    PostgresViewStore,
    SQLiteViewStore,
    ViewChange,
    ViewStore,
)
from projections.store.tables import Column, Table

CUSTOMER_KEYS = Table(
    "customer_keys",
    (
        Column("customer_id", "text", "Engine id of the customer", False),
        Column("data_key", "text", "AES-256 key, base64", False),
        Column("created_at", "timestamp", "When the key was made", False),
    ),
    key=("customer_id",),
    entity="customer_id",
    description="One data key per customer; deleting a row erases that customer's personal data.",
    internal=True,
)


class KeyRing:
    def __init__(self, store: ViewStore) -> None:
        self.store = store
        store.create([CUSTOMER_KEYS])
        self._cache: dict[str, bytes] = {}

    def key(self, customer_id: str, create: bool = False) -> bytes | None:
        if customer_id in self._cache:
            return self._cache[customer_id]
        rows = self.store.rows(CUSTOMER_KEYS.name, where={"customer_id": customer_id})
        if rows:
            key = base64.b64decode(rows[0]["data_key"])
        elif create:
            key = crypto.new_key()
            # Committed before the events it protects; an unused key is harmless.
            self.store.write(ViewChange(consumer="keys", position=None, append={CUSTOMER_KEYS.name: [{
                "customer_id": customer_id, "data_key": base64.b64encode(key).decode(),
                "created_at": datetime.now(UTC)}]}))
            rows = self.store.rows(CUSTOMER_KEYS.name, where={"customer_id": customer_id})
            key = base64.b64decode(rows[0]["data_key"])  # a concurrent creator may have won
        else:
            return None
        self._cache[customer_id] = key
        return key

    def preload(self, customer_ids: Iterable[str], create: Iterable[str] = ()) -> None:
        """Fetch the keys of many customers at once, and make the missing ones among ``create``.

        Ingest calls this once per batch: one query (two more if keys are made) instead of up to
        three round trips and a commit per new customer.
        """
        wanted = [c for c in dict.fromkeys(customer_ids) if c not in self._cache]
        if wanted:
            self._fetch(wanted)
        missing = [c for c in dict.fromkeys(create) if c not in self._cache]
        if missing:
            now = datetime.now(UTC)
            # Committed before the events they protect; an unused key is harmless.
            self.store.write(ViewChange(consumer="keys", position=None, append={CUSTOMER_KEYS.name: [
                {"customer_id": c, "data_key": base64.b64encode(crypto.new_key()).decode(), "created_at": now}
                for c in missing]}))
            self._fetch(missing)  # a concurrent creator may have won: use the stored keys

    def _fetch(self, customer_ids: list[str]) -> None:
        for row in self.store.rows(CUSTOMER_KEYS.name, where={"customer_id": customer_ids}):
            self._cache[row["customer_id"]] = base64.b64decode(row["data_key"])

    def seal(self, customer_id: str, value: Any) -> str:
        key = self.key(customer_id, create=True)
        assert key is not None
        return crypto.seal(key, customer_id, value)

    def reveal(self, customer_id: str, value: Any) -> Any:
        """Plain values pass through; a token opens while its key exists, else None."""
        if not crypto.is_token(value):
            return value
        return crypto.open_token(self.key(customer_id), customer_id, value)

    def destroy(self, customer_id: str) -> bool:
        existed = bool(self.store.rows(CUSTOMER_KEYS.name, where={"customer_id": customer_id}))
        self.store.write(ViewChange(consumer="keys", position=None,
                                    replace_entities={CUSTOMER_KEYS.name: {customer_id: []}}))
        self._cache.pop(customer_id, None)
        return existed


def open_key_store(database_url: str | None, data_dir: Path) -> ViewStore:
    """Where the keys live: never the views' file or schema (see the module docstring)."""
    if database_url is None:
        data_dir.mkdir(parents=True, exist_ok=True)
        return SQLiteViewStore(data_dir / "keys.sqlite")
    if database_url == "memory://":
        return InMemoryViewStore()
    if database_url.startswith("sqlite:///"):
        path = Path(database_url[len("sqlite:///"):])
        return SQLiteViewStore(path.with_name(f"{path.stem}.keys.sqlite"))
    if database_url.startswith(("postgresql://", "postgres://")):
        return PostgresViewStore(database_url, schema="lifecycle_keys", internal_schema="lifecycle_keys")
    raise ConfigError(f"unsupported database URL for the key ring: {database_url!r}")
