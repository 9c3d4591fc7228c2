"""How the engine's events become bytes: the library's JSON, written faster.

``FastJSONTranscoder`` is the library's ``JSONTranscoder`` (the same transcodings, the same
decoding, the same meaning of every byte it writes) whose ``encode`` replaces each value that has
a transcoding (datetimes, dates, decimals, UUIDs) by the library's ``{"_type_", "_data_"}``
object in one walk and lets orjson write the result. The library's encoder calls back into
Python for every such value: a typical fact took 19 µs to encode, now 11 (``python -m timeit``;
bench/PROFILE.md).

Whatever orjson would write differently from the standard library is left to the library's
encoder, which then writes it or raises its own error: a subclass of str or int (an enum), a
float that is not finite, an integer beyond 64 bits, a key that is not a string, a string that
is not valid Unicode, and any type without a transcoding.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

import orjson
from eventsourcing.persistence import DatetimeAsISO, JSONTranscoder, Mapper, StoredEvent, Transcoding
from eventsourcing.utils import get_topic


class _Unsupported(Exception):
    """A value the walk leaves to the library's encoder."""


class FastJSONTranscoder(JSONTranscoder):
    #: The name of the library's own transcoding of datetimes while it is the one registered
    #: (another would write them its own way); set by ``register``.
    _datetime_iso: str | None = None

    def register(self, transcoding: Transcoding) -> None:
        super().register(transcoding)
        registered = self.types.get(datetime)
        self._datetime_iso = registered.name if type(registered) is DatetimeAsISO else None

    def encode(self, obj: Any) -> bytes:
        try:
            return orjson.dumps(self._transcoded(obj))
        except (_Unsupported, orjson.JSONEncodeError, RecursionError):
            return super().encode(obj)

    def _transcoded(self, value: Any) -> Any:
        """``value`` with every transcoded value replaced, as the library's encoder would write it."""
        kind = type(value)
        if kind is dict:
            # Most values are strings: kept without a call (the walk's calls were most of it).
            out = {}
            for key, item in value.items():
                item_kind = type(item)
                if item_kind is str or item_kind is int or item_kind is bool or item is None:
                    out[key] = item
                else:
                    out[key] = self._transcoded(item)
            return out
        if kind is str or kind is int or kind is bool or value is None:
            return value
        if kind is list or kind is tuple:
            return [self._transcoded(item) for item in value]
        if kind is float:
            if not math.isfinite(value):
                raise _Unsupported  # the library writes NaN and Infinity, orjson null
            return value
        if kind is datetime and value.tzinfo is timezone.utc and self._datetime_iso is not None:
            # orjson writes a UTC time exactly as isoformat() does (a property test compares
            # them), for a fifth of its cost: every event holds two.
            return {"_type_": self._datetime_iso, "_data_": value}
        transcoding = self.types.get(kind)
        if transcoding is None:
            raise _Unsupported  # the library's error, or its way with a subclass of str or int
        data = transcoding.encode(value)
        if type(data) is not str:  # a datetime's, a date's, a UUID's are: nothing more to walk
            data = self._transcoded(data)
        return {"_type_": transcoding.name, "_data_": data}


class EventMapper(Mapper[Any]):
    """The library's ``Mapper``, writing the same stored events, without raising an exception
    per event: its ``getattr(type(event), "class_version", 1)`` fails for every event class
    that leaves the version at its default, and a failed look-up on a class builds (and drops)
    an ``AttributeError`` with its message (~2,000 instructions, of ~400,000 per inbound event).
    The version of each class is looked up once here."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._class_versions: dict[type, int] = {}

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        cls = type(domain_event)
        class_version = self._class_versions.get(cls)
        if class_version is None:
            class_version = self._class_versions[cls] = getattr(cls, "class_version", 1)
        event_state = dict(vars(domain_event))
        originator_id = event_state.pop("originator_id")
        originator_version = event_state.pop("originator_version")
        if class_version > 1:
            event_state["class_version"] = class_version
        stored_state = self.transcoder.encode(event_state)
        if self.compressor:
            stored_state = self.compressor.compress(stored_state)
        if self.cipher:
            stored_state = self.cipher.encrypt(stored_state)
        return StoredEvent(originator_id=originator_id, originator_version=originator_version,
                           topic=get_topic(cls), state=stored_state)
