"""View stores: where projections keep the views analysts query, with the consumers' positions.

One port (``ViewStore``), three adapters (in memory, SQLite, PostgreSQL) held to one contract
test suite, and ``open_view_store`` to choose one from the database URL.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from projections.store.change import ViewChange
from projections.store.errors import PositionConflict, UnknownTable, ViewStoreError
from projections.store.memory import InMemoryViewStore
from projections.store.port import ViewStore
from projections.store.sqlite import SQLiteViewStore
from projections.store.tables import COLUMN_TYPES, POSITIONS_TABLE, Column, ColumnType, Table

__all__ = [
    "COLUMN_TYPES",
    "POSITIONS_TABLE",
    "Column",
    "ColumnType",
    "InMemoryViewStore",
    "PositionConflict",
    "PostgresViewStore",
    "SQLiteViewStore",
    "Table",
    "UnknownTable",
    "ViewChange",
    "ViewStore",
    "ViewStoreError",
    "open_view_store",
    "views_path_for",
]

def __getattr__(name: str) -> object:
    # psycopg only for a PostgreSQL store: an embedded process starts ~0.1 s sooner without it
    if name == "PostgresViewStore":
        from projections.store.postgres import PostgresViewStore

        return PostgresViewStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def views_path_for(event_store_path: Path) -> Path:
    """The views' SQLite file next to the event store's: ``<stem>.views.sqlite``.

    Not the same file: the event store owns its file (eventsourcing opens its own connections
    and manages its tables there), and SQLite allows one writer per file, so projection writes
    would queue behind ingestion. A separate file can also be deleted and rebuilt from the log
    without touching the events. Exactly-once does not need one file: what must commit together
    is a view and its position, and both live in the views file.
    """
    return event_store_path.with_name(f"{event_store_path.stem}.views.sqlite")


def open_view_store(url: str | None, data_dir: Path, *, synchronous_commit: bool = True) -> ViewStore:
    """The view store for the configured database URL (``LIFECYCLE_DATABASE_URL``).
    ``synchronous_commit=False`` is PostgresViewStore's (see there); the embedded stores, which
    serve one process, ignore it.

    - ``postgresql://...`` or ``postgres://...``: PostgresViewStore on that database;
    - ``sqlite:///path`` (the event store's file; relative, or ``sqlite:////abs/path`` as
      SQLAlchemy spells it, parsed as lifecycle.config does): SQLiteViewStore at
      ``views_path_for(path)``;
    - ``memory://`` (in-memory event store): InMemoryViewStore;
    - None: SQLiteViewStore at ``data_dir / "views.sqlite"`` (the embedded default).
    """
    if url is None:
        return SQLiteViewStore(Path(data_dir) / "views.sqlite")
    parts = urlsplit(url)
    if parts.scheme in ("postgresql", "postgres"):
        from projections.store.postgres import PostgresViewStore

        return PostgresViewStore(url, synchronous_commit=synchronous_commit)
    if url == "memory://":
        return InMemoryViewStore()
    if parts.scheme == "sqlite":
        path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
        if path == ":memory:":  # an in-memory event store: in-memory views, gone with the process
            return SQLiteViewStore(":memory:")
        if path:
            return SQLiteViewStore(views_path_for(Path(path)))
    shown = re.sub(r"//[^/@]*@", "//***@", url)  # never echo credentials
    raise ViewStoreError(
        f"unsupported database URL {shown!r}: use postgresql://… or sqlite:///path"
    )
