"""What happened to each inbound event of a batch: immutable values for callers to count."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from lifecycle.receipt import ACCEPTED, DUPLICATE, MALFORMED, REFUSED


class ItemOutcome(NamedTuple):
    # A named tuple, not a frozen dataclass: one per inbound event, made in half the time and
    # pickled smaller (a parallel ingest's workers send every one to the parent).
    outcome: str  # accepted | duplicate | refused | malformed
    reason: str | None
    source: str | None
    event_id: str | None
    type: str | None
    subject: str | None

    @property
    def rejected(self) -> bool:
        return self.outcome in (REFUSED, MALFORMED)


@dataclass(frozen=True)
class BatchResult:
    outcomes: tuple[ItemOutcome, ...]

    @property
    def accepted(self) -> int:
        return sum(1 for o in self.outcomes if o.outcome == ACCEPTED)

    @property
    def duplicates(self) -> int:
        return sum(1 for o in self.outcomes if o.outcome == DUPLICATE)

    @property
    def rejected(self) -> int:
        return sum(1 for o in self.outcomes if o.rejected)


@dataclass
class IngestTotals:
    """Counts over many batches: what a long ingest keeps instead of every outcome."""

    batches: int = 0
    inbound: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0

    def add(self, result: BatchResult) -> None:
        self.batches += 1
        self.inbound += len(result.outcomes)
        self.accepted += result.accepted
        self.duplicates += result.duplicates
        self.rejected += result.rejected

    def include(self, other: IngestTotals) -> None:
        """Another ingest's totals added to these."""
        self.batches += other.batches
        self.inbound += other.inbound
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.rejected += other.rejected
