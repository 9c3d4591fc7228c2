"""How ingest's speed changes as the store grows: ``python -m bench.slices [--n N] [--slice S]``.

Ingests N simulated inbound events (default 1,000,000; the population ``bench.common.inbound_lines``
makes for N, ~30 events per customer) into one new embedded store, S at a time (default 100,000),
and prints the events/s of each slice and the total. The scale curve of ``make bench`` gives one
figure per store size; this shows where, within one run, the speed goes.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.common import inbound_lines
from lifecycle.config import DEFAULT_BATCH_SIZE, Settings
from lifecycle.runtime import Runtime


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.slices")
    parser.add_argument("--n", type=int, default=1_000_000, help="inbound events (default 1000000)")
    parser.add_argument("--slice", type=int, default=100_000, help="events per slice (default 100000)")
    args = parser.parse_args()
    if args.n < 1 or args.slice < 1:
        parser.error("--n and --slice must be positive")
    lines = inbound_lines(args.n)
    with tempfile.TemporaryDirectory(prefix="lifecycle-slices-") as tmp:
        rt = Runtime.open(Settings(database_url=None, data_dir=Path(tmp), stage_model_path=None,
                                   batch_size=DEFAULT_BATCH_SIZE, kafka_bootstrap=None))
        try:
            total = 0.0
            for start in range(0, args.n, args.slice):
                part = lines[start:start + args.slice]
                began = time.perf_counter()
                rt.ingest_lines(part)
                seconds = time.perf_counter() - began
                total += seconds
                print(f"{start + len(part):>10,} events  {len(part) / seconds:>8,.0f} events/s", flush=True)
            print(f"{args.n:>10,} events in {total:.1f} s  {args.n / total:>8,.0f} events/s")
        finally:
            rt.close()


if __name__ == "__main__":
    main()
