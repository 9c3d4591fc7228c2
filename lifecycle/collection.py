"""Python's cyclic garbage collector, set for a long run of short-lived objects (a rebuild,
an ingest, a Kafka service).

A rebuild makes millions of small containers (decoded payloads, facts, rows), each freed by its
reference count when its chunk is written; almost none is part of a cycle. The collector does
not know that: every 700 new containers it walks the young ones, and every so often all of
them, including every module, class and cache loaded at start. At 50k inbound events that was
a fifth to a quarter of a rebuild's CPU time (bench/PROFILE.md). Ingest is the same: parsed
documents, facts, events and rows, freed batch by batch; 100k inbound events left no garbage
cycle at all (every one freed by its reference count), yet the collector took 7% of the time,
0.34 s of it in 13 full collections of the customer cache. Inside ``fewer_collections``:

1. a collection, then ``gc.freeze()``: what exists now (modules, the model, caches) is left out
   of every later collection
2. the youngest generation is collected every ``young`` new containers instead of 700, the
   older ones every ``older`` collections of the one below: cycles still go, later (memory: at
   most ``young`` more containers waiting, a few MiB). The default suits a job that ends (a
   rebuild, an ingest of a file); a service that runs for days passes ``SERVICE_OLDER``, so
   that a cycle that reached the oldest generation goes within a few million containers
3. on the way out, whatever happened, the thresholds as they were and the frozen objects
   back in the collector's care

Nested uses keep the outermost's setting.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

YOUNG = 50_000
OLDER = (50, 1000)  # for a job that ends: the oldest generation is practically never walked
SERVICE_OLDER = (10, 10)  # a full collection at most every ~5M containers
_depth = 0


@contextmanager
def fewer_collections(young: int = YOUNG, older: tuple[int, int] = OLDER) -> Iterator[None]:
    global _depth
    if _depth:
        yield
        return
    before = gc.get_threshold()
    _depth += 1
    try:
        gc.collect()  # 1.
        gc.freeze()
        gc.set_threshold(young, *older)  # 2.
        yield
    finally:
        gc.set_threshold(*before)  # 3.
        gc.unfreeze()
        _depth -= 1
