"""When a PostgreSQL table this process writes to is due for ``ANALYZE``.

Our look-ups ask for many keys at once (``col = ANY(%s)``). Without statistics PostgreSQL
rates each key at 0.5% of the table, so a few hundred keys look like the whole table and it
reads every row instead of the index: each batch then costs as much as the table is large,
and a run costs the square of its size (an `e2e_kafka` run of 100k events: 200 sequential
scans of each view table, a quarter of PostgreSQL's CPU). Autovacuum would gather the
statistics, but only on its round (a minute by default) and not at all where it is off, as
on the machine the benchmarks ran on; PostgreSQL's own advice after a bulk load is to run
``ANALYZE``. So the writers do, each time the rows they wrote to a table have doubled:
after 1k, 2k, 4k... rows, a handful of times however long the run.

Each ANALYZE samples 3,000 rows (``STATISTICS_TARGET`` 10) instead of the default 30,000.
Our look-ups need only the table's size and how many rows a key holds, which the small sample
estimates as well; the default sample sorted 30,000 values of every column, 64-character hashes
of the audit chain among them (at 110k rows: 160-215 ms an ANALYZE against 14 ms). Autovacuum's
ANALYZE, where it runs, replaces these statistics with its own at the default target.
"""

from __future__ import annotations

from collections import Counter

FIRST_AFTER = 1_000  # rows written before a table's first ANALYZE
STATISTICS_TARGET = 10  # PostgreSQL's default_statistics_target for our ANALYZE: 300 × 10 rows


class AnalyzeSchedule:
    """Counts the rows written per table; a table is due when those since its last ANALYZE
    reach ``first_after`` and all those before it (its writes have doubled)."""

    def __init__(self, first_after: int = FIRST_AFTER) -> None:
        self.first_after = first_after
        self._since: Counter[str] = Counter()  # rows written since the table's last ANALYZE
        self._before: Counter[str] = Counter()  # rows written before it

    def wrote(self, table: str, rows: int) -> None:
        self._since[table] += rows

    def due(self) -> list[str]:
        return [t for t, since in self._since.items() if since >= max(self.first_after, self._before[t])]

    def analyzed(self, table: str) -> None:
        self._before[table] += self._since.pop(table, 0)
