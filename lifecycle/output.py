"""Rendering rows for people (tables) and for scripts (JSON, CSV)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table

FORMATS = ("table", "json", "csv")


def jsonable(value: Any) -> Any:
    """JSON value of a cell: decimals as numbers when a float holds them exactly."""
    if isinstance(value, Decimal):
        as_float = float(value)
        return as_float if Decimal(repr(as_float)) == value else str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def render(rows: Sequence[Mapping[str, Any]], fmt: str, title: str, console: Console) -> None:
    if fmt == "json":
        print(json.dumps([{k: jsonable(v) for k, v in row.items()} for row in rows], indent=1))
    elif fmt == "csv":
        print(to_csv(rows), end="")
    else:
        console.print(to_table(rows, title))


def without_as_of(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """For people: the date is in the title, the column only takes room."""
    return [{k: v for k, v in row.items() if k != "as_of"} for row in rows]


def to_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(v) for k, v in row.items()})
    return buffer.getvalue()


def to_table(rows: Sequence[Mapping[str, Any]], title: str) -> Table:
    rows = without_as_of(rows)
    table = Table(title=title, title_justify="left", header_style="bold")
    if not rows:
        table.add_column("(no rows)")
        return table
    for column in rows[0]:
        numeric = isinstance(rows[0][column], (int, Decimal)) and not isinstance(rows[0][column], bool)
        table.add_column(column, justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*(_cell(v) for v in row.values()))
    return table


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Mapping):
        return json.dumps(jsonable(value), sort_keys=True)
    return str(value)
