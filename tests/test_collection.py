"""The rebuild's garbage-collector setting is taken and given back whatever happens."""

from __future__ import annotations

import gc
import weakref

import pytest

from lifecycle.collection import YOUNG, fewer_collections


def test_sets_and_restores_the_collector_even_on_error() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError):
        with fewer_collections():
            assert gc.get_threshold()[0] == YOUNG
            assert gc.get_freeze_count() > 0  # what existed is out of the collections' way
            raise RuntimeError("a failed rebuild")
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_a_nested_use_keeps_the_outer_setting() -> None:
    before = gc.get_threshold()
    with fewer_collections(young=20_000):
        with fewer_collections(young=5_000):
            assert gc.get_threshold()[0] == 20_000
        assert gc.get_threshold()[0] == 20_000 and gc.get_freeze_count() > 0
    assert gc.get_threshold() == before


def test_cycles_are_still_collected_without_being_asked() -> None:
    """Collections become rarer, not absent: garbage cycles go once enough containers are made."""

    class Node:
        pass

    collections: list[int] = []

    def note(phase: str, info: dict) -> None:
        if phase == "stop":
            collections.append(info["generation"])

    gc.callbacks.append(note)
    try:
        with fewer_collections(young=1_000):
            collections.clear()  # the collection on the way in
            a, b = Node(), Node()
            a.other, b.other = b, a
            cycle = weakref.ref(a)
            del a, b
            made = [[] for _ in range(5_000)]
            assert collections, "no automatic collection"
            assert cycle() is None
            del made
    finally:
        gc.callbacks.remove(note)


def test_an_ingest_runs_with_fewer_collections_and_gives_the_setting_back(tmp_path) -> None:
    """Ingest makes short-lived objects by the million and no cycles: the collector walks them
    rarely while it runs, and the caller's setting is back once it returns."""
    from lifecycle.config import Settings
    from lifecycle.runtime import Runtime
    from lifecycle.simulate import simulate

    lines = simulate(customers=20, seed=3)[:300]
    assert len(lines) == 300
    seen: list[int] = []
    rt = Runtime.open(Settings(database_url=None, data_dir=tmp_path, stage_model_path=None, batch_size=100,
                               kafka_bootstrap=None, workers=1))
    before = gc.get_threshold()
    try:
        totals = rt.ingest_lines(lines, on_batch=lambda _: seen.append(gc.get_threshold()[0]))
    finally:
        rt.close()
    assert totals.batches == 3 and seen == [YOUNG] * 3
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
