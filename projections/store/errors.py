"""The view store's one error hierarchy.

Adapters translate driver errors (sqlite3, psycopg) into these at their edge, chaining the
original with ``raise ... from e``, so callers never import a driver to handle a failure.
"""

from __future__ import annotations


class ViewStoreError(Exception):
    """A view store operation failed; nothing of the failed write is visible."""


class PositionConflict(ViewStoreError):
    """The stored position of a consumer is not the one the writer expected.

    Another writer got there first (or the caller resumed from a stale position). Nothing of the
    write was applied; re-read the position and resume from there.
    """

    def __init__(self, consumer: str, expected: int | None, actual: int | None) -> None:
        super().__init__(
            f"position conflict for consumer {consumer!r}: expected {expected!r}, stored {actual!r}"
        )
        self.consumer = consumer
        self.expected = expected
        self.actual = actual


class UnknownTable(ViewStoreError):
    """The table is not known to this store: not created (through this store) or dropped."""

    def __init__(self, table: str) -> None:
        super().__init__(f"unknown view table {table!r}: create() it first")
        self.table = table
