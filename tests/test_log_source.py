"""The log source's shortcut (stored JSON straight to JSON-able values) gives exactly what the
library's decoding followed by ``log_event_of`` gives, for every kind of stored event."""

from __future__ import annotations

from datetime import date

import pytest

from lifecycle.simulate import simulate
from projections.log import EngineLogSource, log_event_of
from tests.backends import runtime_factory


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_the_shortcut_equals_the_library_decoding(kind, tmp_path):
    rt = runtime_factory(kind, tmp_path, lambda: "")()
    try:
        lines = simulate(customers=60, seed=8, start=date(2024, 1, 1), days=400)
        rt.ingest_lines(lines)
        rt.forget("shop:1003")  # an erasure, too
        notifications = rt.engine.recorder.select_notifications(start=1, limit=100_000)
        source = EngineLogSource(rt.engine)
        names = set()
        for n in notifications:
            expected = log_event_of(rt.engine.mapper.to_domain_event(n), n.id)
            assert source.log_event(n) == expected
            names.add(expected.name)
        # Every kind of event was compared, not only the common ones.
        assert {"FirstSeen", "PurchaseRecorded", "StageChanged", "Received", "Erased"} <= names
        assert len(names) >= 12, names
    finally:
        rt.close()
