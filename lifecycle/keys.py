"""The key ring: one data key per customer, kept apart from the data it protects.

Keys live in their own store (an SQLite file beside the events, or the
``lifecycle_keys`` schema on PostgreSQL), never in the views: rebuilding or
deleting the views must not erase anyone. ``destroy`` is the erasure.
"""

from __future__ import annotations

import base64
from collections import OrderedDict
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lifecycle import crypto
from lifecycle.config import is_postgres_url
from lifecycle.errors import ConfigError
from projections.store import (
    InMemoryViewStore,
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


# Every batch and every projection step re-reads its customers' keys first (another process may
# have destroyed one), so keys older than that are never used unread: the cache only needs the
# step at hand, which it always keeps whole, and a few more for lone reveals (the CLI).
KEYS_CACHED = 1_000
_UNKNOWN = object()


class KeyRing:
    def __init__(self, store: ViewStore, cached: int = KEYS_CACHED) -> None:
        self.store = store
        store.create([CUSTOMER_KEYS])
        self._cache: OrderedDict[str, bytes | None] = OrderedDict()  # None: no key when last read
        self._cached = cached
        # The cipher made from a cached key (making one is a third of sealing a field); it goes
        # whenever its key leaves the cache or changes, so it never outlives an erasure.
        self._ciphers: dict[str, crypto.Cipher] = {}

    def key(self, customer_id: str, create: bool = False) -> bytes | None:
        """The customer's key as last read (None: it has none, e.g. erased); ``create`` makes one."""
        cached = self._cache.get(customer_id, _UNKNOWN)
        if cached is not _UNKNOWN and (cached is not None or not create):
            return cached  # type: ignore[return-value]
        if create:
            self.preload((), create=[customer_id])
        else:
            self.refresh([customer_id])
        return self._cache[customer_id]

    def refresh(self, customer_ids: Iterable[str]) -> None:
        """Read these customers' keys again, in one query: another process may have made or
        destroyed one since (a service must not keep sealing with, or opening by, an erased key)."""
        wanted = list(dict.fromkeys(customer_ids))
        if not wanted:
            return
        found = {
            row["customer_id"]: base64.b64decode(row["data_key"])
            for row in self.store.rows(CUSTOMER_KEYS.name, where={"customer_id": wanted})
        }
        for customer_id in wanted:
            key = found.get(customer_id)
            if self._cache.get(customer_id) != key:
                self._ciphers.pop(customer_id, None)
            self._cache[customer_id] = key
            self._cache.move_to_end(customer_id)
        # The least recently read go first, never one just read: the step is about to use them.
        while len(self._cache) > max(self._cached, len(wanted)):
            evicted, _ = self._cache.popitem(last=False)
            self._ciphers.pop(evicted, None)

    def preload(self, customer_ids: Iterable[str], create: Iterable[str] = ()) -> None:
        """Read the keys of many customers at once, and make the missing ones among ``create``.

        Ingest calls this once per batch: one query (two more if keys are made) instead of up to
        three round trips and a commit per new customer.
        """
        create = list(dict.fromkeys(create))
        self.refresh([*customer_ids, *create])
        missing = [c for c in create if self._cache.get(c) is None]
        if missing:
            now = datetime.now(UTC)
            # Committed before the events they protect; an unused key is harmless.
            self.store.write(ViewChange(consumer="keys", position=None, append={CUSTOMER_KEYS.name: [
                {"customer_id": c, "data_key": base64.b64encode(crypto.new_key()).decode(), "created_at": now}
                for c in missing]}))
            self.refresh(missing)  # a concurrent creator may have won: use the stored keys

    def seal(self, customer_id: str, value: Any) -> str:
        cipher = self._cipher(customer_id, create=True)
        assert cipher is not None
        return crypto.seal_with(cipher, customer_id, value)

    def reveal(self, customer_id: str, value: Any) -> Any:
        """Plain values pass through; a token opens while its key exists, else None."""
        if not crypto.is_token(value):
            return value
        return crypto.open_with(self._cipher(customer_id), customer_id, value)

    def _cipher(self, customer_id: str, create: bool = False) -> crypto.Cipher | None:
        cipher = self._ciphers.get(customer_id)
        if cipher is not None and self._cache.get(customer_id) is not None:
            return cipher
        key = self.key(customer_id, create=create)
        if key is None:
            return None
        cipher = self._ciphers[customer_id] = crypto.Cipher(key)
        return cipher

    def destroy(self, customer_id: str) -> bool:
        existed = bool(self.store.rows(CUSTOMER_KEYS.name, where={"customer_id": customer_id}))
        self.store.write(ViewChange(consumer="keys", position=None,
                                    replace_entities={CUSTOMER_KEYS.name: {customer_id: []}}))
        self._cache[customer_id] = None
        self._ciphers.pop(customer_id, None)
        return existed


# Keys cannot be derived again: synced on every commit. Read by primary key, a batch at a time,
# and cached above: a small page cache is enough (the default 2 MiB grew with the customers).
_KEY_STORE_SQLITE: dict[str, Any] = {"durable": True, "cache_kib": 256}


def open_key_store(database_url: str | None, data_dir: Path) -> ViewStore:
    """Where the keys live: never the views' file or schema (see the module docstring)."""
    if database_url is None:
        data_dir.mkdir(parents=True, exist_ok=True)
        return SQLiteViewStore(data_dir / "keys.sqlite", **_KEY_STORE_SQLITE)
    if database_url == "memory://":
        return InMemoryViewStore()
    if database_url.startswith("sqlite:///"):
        path = Path(database_url[len("sqlite:///"):])
        return SQLiteViewStore(path.with_name(f"{path.stem}.keys.sqlite"), **_KEY_STORE_SQLITE)
    if is_postgres_url(database_url):
        from projections.store.postgres import PostgresViewStore  # psycopg only for PostgreSQL

        return PostgresViewStore(database_url, schema="lifecycle_keys", internal_schema="lifecycle_keys")
    raise ConfigError(f"unsupported database URL for the key ring: {database_url!r}")
