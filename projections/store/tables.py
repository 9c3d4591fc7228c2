"""Table definitions: what a view looks like, independent of where it is stored.

A definition is data. Every adapter derives its DDL from it, and analysts' tools read the
descriptions (PostgreSQL ``COMMENT ON``), so a description is part of the contract, not decoration.
A malformed definition is a programming error found at import time: it raises ``ValueError``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Literal, get_args

from projections.store.errors import ViewStoreError

ColumnType = Literal["text", "int", "decimal", "date", "timestamp", "bool", "json"]
COLUMN_TYPES: frozenset[str] = frozenset(get_args(ColumnType))

# Names are spliced into SQL (quoted, but still): allow only plain lower-case identifiers so that
# the same name works unquoted in psql, BI tools and SQLite.
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_identifier(name: str, what: str) -> str:
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise ValueError(f"invalid {what} name {name!r}: use lower-case letters, digits and _")
    return name


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    description: str
    nullable: bool = True
    # False for long values that do not compress (hashes): PostgreSQL then stores them without
    # trying (its compression of a page of seals cost more CPU than writing it).
    compressible: bool = True

    def __post_init__(self) -> None:
        check_identifier(self.name, "column")
        if self.type not in COLUMN_TYPES:
            raise ValueError(f"column {self.name!r}: unknown type {self.type!r}")


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]  # primary key columns
    description: str
    entity: str | None = None  # column naming the entity whose rows are replaced together
    internal: bool = False  # bookkeeping, not for analysts

    def __post_init__(self) -> None:
        check_identifier(self.name, "table")
        # Accept lists from callers but keep the value immutable.
        object.__setattr__(self, "columns", tuple(self.columns))
        object.__setattr__(self, "key", tuple(self.key))
        names = [c.name for c in self.columns]
        if not names:
            raise ValueError(f"table {self.name!r} has no columns")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"table {self.name!r}: duplicate columns {duplicates}")
        # A key is required: appends are idempotent by key and replacements rely on it.
        if not self.key:
            raise ValueError(f"table {self.name!r} needs a primary key")
        for name in (*self.key, *((self.entity,) if self.entity else ())):
            if name not in names:
                raise ValueError(f"table {self.name!r}: {name!r} is not one of its columns")
            # Keys are compared and sorted; JSON compares differently in every store.
            if self.column(name).type == "json":
                raise ValueError(f"table {self.name!r}: json column {name!r} cannot be key or entity")

    @cached_property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @cached_property
    def column_name_set(self) -> frozenset[str]:
        return frozenset(self.column_names)

    @cached_property
    def names_and_types(self) -> tuple[tuple[str, str], ...]:
        return tuple((c.name, c.type) for c in self.columns)

    @cached_property
    def places_by_type(self) -> dict[str, tuple[int, ...]]:
        """Each column type's places in a row, so that a store converts just the values its
        driver cannot take as they are."""
        places: dict[str, list[int]] = {}
        for i, column in enumerate(self.columns):
            places.setdefault(column.type, []).append(i)
        return {kind: tuple(found) for kind, found in places.items()}

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise ViewStoreError(f"table {self.name!r} has no column {name!r}")

    def is_required(self, column: Column) -> bool:
        """NOT NULL in every store: declared so, or part of the key (SQLite would allow NULL keys)."""
        return not column.nullable or column.name in self.key


# The store's own bookkeeping: the position of each consumer, written in the same transaction as
# the rows it produced (exactly-once). ``position`` is nullable because PostgreSQL inserts the row
# empty first to have something to lock (see postgres.py); an empty row reads as "no position".
POSITIONS_TABLE = Table(
    name="view_positions",
    columns=(
        Column("consumer", "text", "Who consumed: a projection runner or a Kafka topic partition.", False),
        Column("position", "int", "Last processed position (notification id or Kafka offset)."),
        Column("updated_at", "timestamp", "When the position was last stored (UTC)."),
    ),
    key=("consumer",),
    description="Positions of the view consumers, stored with the views they produced.",
    internal=True,
)
