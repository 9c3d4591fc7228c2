"""A change set: everything one consumer step writes, applied in one transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

Row = Mapping[str, Any]


def _freeze_rows(rows: Mapping[Any, Sequence[Row]]) -> Mapping[Any, tuple[Row, ...]]:
    return MappingProxyType({table: tuple(table_rows) for table, table_rows in rows.items()})


def _check_position(name: str, value: object) -> None:
    # bool is an int subclass; a True position is a bug, not position 1.
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise TypeError(f"{name} must be an int or None, not {value!r}")


@dataclass(frozen=True)
class ViewChange:
    """What to write for one consumer, and the position it reached.

    - ``position``: new position to store (None: leave the stored one alone).
    - ``check_position``: if True, the stored position must equal ``expected_position`` (None: no
      position stored yet), else ``PositionConflict`` and nothing is written.
    - ``append``: table -> rows to insert; a row whose key already exists is ignored (idempotent).
    - ``replace_entities``: table -> entity value -> rows: delete that entity's rows, insert these.
    - ``replace_tables``: table -> rows: delete all rows of the table, insert these.

    The mappings are frozen on construction (the rows themselves are not copied: do not mutate
    them after handing them over).
    """

    consumer: str
    position: int | None
    expected_position: int | None = None
    check_position: bool = False
    append: Mapping[str, Sequence[Row]] = field(default_factory=dict)
    replace_entities: Mapping[str, Mapping[Any, Sequence[Row]]] = field(default_factory=dict)
    replace_tables: Mapping[str, Sequence[Row]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.consumer, str) or not self.consumer:
            raise TypeError(f"consumer must be a non-empty string, not {self.consumer!r}")
        _check_position("position", self.position)
        _check_position("expected_position", self.expected_position)
        object.__setattr__(self, "append", _freeze_rows(self.append))
        object.__setattr__(
            self,
            "replace_entities",
            MappingProxyType(
                {table: _freeze_rows(entities) for table, entities in self.replace_entities.items()}
            ),
        )
        object.__setattr__(self, "replace_tables", _freeze_rows(self.replace_tables))

    @property
    def tables(self) -> frozenset[str]:
        """Names of the tables this change touches."""
        return frozenset(self.append) | frozenset(self.replace_entities) | frozenset(self.replace_tables)

    @property
    def touches_position(self) -> bool:
        return self.check_position or self.position is not None
