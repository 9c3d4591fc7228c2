"""Which service the chaos run kills next.

A plain random choice among the running processes favours ``ingest`` when it runs as several
(``--ingest-processes``), and on a fast machine, where the path catches up after three or four
kills, it can leave out a kind of service altogether (a run of 2026-12-05 killed ``project`` twice and
``relay`` once, ``ingest`` never). So the kinds are dealt in rounds: each round is every kind
once, in a random order, and within a kind a random one of its running processes. Any ``k``
kills in a row (``k`` the number of kinds) hit every kind whose processes were running.
"""

from __future__ import annotations

import random
from collections.abc import Collection


def kind_of(name: str) -> str:
    """``ingest-2`` → ``ingest``: the service a process runs."""
    return name.partition("-")[0]


class VictimDealer:
    """Deals the next process to kill, kinds in shuffled rounds (module docstring)."""

    def __init__(self, kinds: Collection[str], rnd: random.Random) -> None:
        self._kinds = sorted(kinds)
        self._rnd = rnd
        self._round: list[str] = []
        self.killed_kinds: set[str] = set()

    def next(self, running: Collection[str]) -> str | None:
        """The process to kill among ``running``, or None when none runs. A kind with no running
        process (all of it killed and not yet restarted) keeps its turn for the next call."""
        live = {kind_of(name) for name in running}
        if not live:
            return None
        if not live.intersection(self._round):
            self._round = self._kinds.copy()
            self._rnd.shuffle(self._round)
        kind = next(k for k in self._round if k in live)
        self._round.remove(kind)
        self.killed_kinds.add(kind)
        return self._rnd.choice(sorted(name for name in running if kind_of(name) == kind))

    @property
    def every_kind_killed(self) -> bool:
        return self.killed_kinds.issuperset(self._kinds)
