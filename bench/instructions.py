"""Instructions, not seconds: ``python -m bench.instructions [ingest|rebuild|relay-messages] [--n N]``.

Wall time on this shared machine moves by a third within an hour; instruction counts from
valgrind's callgrind repeat exactly for the same code and input (``PYTHONHASHSEED=0``). Each
measurement runs this module twice under callgrind: once doing the work and once doing only
its preparation (simulating the input, filling the store the work reads), and prints the
difference: the instructions of the work itself. Use it for A/B comparisons of a change
(bench/PROFILE.md); it is slow (callgrind runs Python ~50x slower), so N is small.

- ``ingest``: N simulated inbound events into a fresh embedded SQLite store, one process.
- ``rebuild``: every view rebuilt, one process, from the store of N inbound events.
- ``relay-messages``: the relay's work per stored event of N inbound events without a broker:
  reading the log, the message value and key (``to_message``).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

WORKS = ("ingest", "rebuild", "relay-messages")


def _child(work: str, n: int, only_preparation: bool) -> None:
    from bench.common import inbound_lines
    from lifecycle.config import Settings
    from lifecycle.runtime import Runtime

    lines = inbound_lines(n)
    with tempfile.TemporaryDirectory() as d:
        # Batches of 500 (the default until 2026-12-05), as every count in bench/PROFILE.md.
        rt = Runtime.open(Settings(database_url=None, data_dir=Path(d), stage_model_path=None, batch_size=500,
                                   kafka_bootstrap=None, workers=1))
        try:
            if work == "ingest":
                if not only_preparation:
                    rt.ingest_lines(lines)
                return
            rt.ingest_lines(lines)
            if only_preparation:
                return
            if work == "rebuild":
                rt.runner.rebuild()
            else:
                from consumers.outbound import to_message
                from lifecycle.lookup import notifications_after
                from projections.log import EngineLogSource

                source, position = EngineLogSource(rt.engine), 0
                while rows := notifications_after(rt.engine.recorder, position, 5000):
                    for event in source.events_of(rows):
                        to_message(event, event.aggregate_id)
                    position = rows[-1][0]
        finally:
            rt.close()


def _count(work: str, n: int, only_preparation: bool) -> int:
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
               sys.executable, "-m", "bench.instructions", "--child", work, "--n", str(n)]
    if only_preparation:
        command.append("--only-preparation")
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parent.parent)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"callgrind failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return int(found[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("work", choices=WORKS, nargs="?", default="ingest")
    parser.add_argument("--n", type=int, default=5000, help="inbound events (default 5000)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--only-preparation", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.work, args.n, args.only_preparation)
        return 0
    everything = _count(args.work, args.n, only_preparation=False)
    preparation = _count(args.work, args.n, only_preparation=True)
    work = everything - preparation
    print(f"{args.work}, {args.n} inbound events: {work / 1e6:,.1f} M instructions "
          f"({work / args.n:,.0f} per inbound event; preparation {preparation / 1e6:,.1f} M)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
