"""The port: what projections and the CLI need from a view store, whatever it is stored in."""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from projections.store.change import ViewChange
from projections.store.tables import Table


@runtime_checkable
class ViewStore(Protocol):
    """Views plus consumer positions, written together (exactly-once comes from that).

    A store only reads and writes tables it was told about with ``create`` (the definitions give
    it the column types); any other name raises ``UnknownTable``. All failures are
    ``ViewStoreError``.
    """

    def create(self, tables: Sequence[Table]) -> None:
        """Create the missing tables (idempotent) and remember their definitions.

        An existing table whose columns differ from its definition raises ViewStoreError: drop
        and rebuild it.
        """

    def drop(self, tables: Sequence[Table]) -> None:
        """Drop the tables if present and forget them. Positions are kept."""

    def position(self, consumer: str) -> int | None:
        """The stored position of ``consumer``, None if it never stored one."""

    def positions(self) -> dict[str, int]:
        """All stored positions by consumer."""

    def write(self, change: ViewChange) -> None:
        """Apply ``change`` in ONE transaction, all or nothing.

        0. check every table, column and value (nothing written yet);
        1. lock the consumer's position and, if ``check_position``, compare it
           (``PositionConflict``);
        2. appends (existing keys ignored);
        3. entity replacements (delete the entity's rows, insert the new ones);
        4. table replacements (delete all rows, insert the new ones);
        5. store the new position, if any;
        6. commit. Any failure before 6 leaves everything as it was, position included.
        """

    def rows(
        self,
        table: str,
        *,
        where: Mapping[str, Any] | None = None,
        order_by: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        """Rows as dicts of typed values.

        ``where``: column -> value (None matches NULL) or column -> list/tuple/set of values (IN).
        ``order_by``: column names, "-name" for descending; the key breaks ties, so the order is
        always deterministic. NULLs sort last ascending, first descending.
        """

    def iter_rows(
        self,
        table: str,
        *,
        where: Mapping[str, Any] | None = None,
        order_by: Sequence[str] = (),
        columns: Sequence[str] | None = None,
    ) -> Generator[dict[str, Any], None, None]:
        """The rows ``rows`` returns, read a page at a time from one snapshot of the table, so
        that memory does not grow with the table (the summaries read whole tables). With
        ``columns``, each row holds only those (a summary reads a few columns of a long table,
        and decoding the others was most of its time).

        The table and the arguments are checked at the call. The store stays usable while the
        iterator is open, writes included; the iterator does not see them. An iterator dropped
        before its end (``close()``, or no reference left) releases what it holds.
        """

    def drop_connections(self) -> None:
        """After a failure: close every connection to a server, so that the next use opens new
        ones (a server crash or restart breaks them all, and each would otherwise fail a step of
        its own). A store without a server has nothing to drop."""

    def close(self) -> None:
        """Release connections. The store is unusable afterwards."""
