"""JSON with orjson where it gives exactly what the standard library gives, else the library.

orjson reads and writes JSON several times faster, and the projections read and write a lot of
it (a rebuild decodes every stored event). It differs in ways that
matter here: it reads an integer beyond 64 bits as a float, silently, refuses numbers beyond a
double, and refuses to write such an integer or a key that is not a string. So whatever orjson
read as holding a float, or refused, is read again by the standard library (the projections'
JSON holds no floats: money is decimal text), and what orjson refuses to write is written by it.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def loads(data: str | bytes) -> Any:
    """``json.loads``; raises ValueError (a JSONDecodeError) on text that is not JSON."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)  # not JSON, or a number orjson refuses: the library decides
    return json.loads(data) if has_float(value) else value


def has_float(value: Any) -> bool:
    """Whether a decoded JSON value holds a float anywhere (where orjson may have put an integer)."""
    kind = type(value)
    if kind is float:
        return True
    if kind is dict:
        value = value.values()
    elif kind is not list:
        return False
    for item in value:
        kind = type(item)
        if kind is float or ((kind is dict or kind is list) and has_float(item)):
            return True
    return False


def dumps(value: Any) -> str:
    """Compact JSON text, not ASCII-escaped (``json.dumps`` with separators (",", ":") and
    ensure_ascii=False); raises TypeError or ValueError for what is not JSON."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
