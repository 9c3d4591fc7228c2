"""Where the time goes: ``python -m bench.profile WHAT [--n N] [--after A] [--top K] [--out FILE.prof]``.

WHAT is ``ingest_sqlite``, ``ingest_postgres``, ``rebuild``, ``replay`` or ``relay``. Runs the same
work as the benchmark of that name under cProfile (one process, N inbound events, default 20000)
and prints the top functions by cumulative and by own time. ``--after A`` (ingest only) first
ingests A events unprofiled, from a population sized for A + N: ingest on a grown store. ``relay`` ingests N events into a
fresh PostgreSQL database, then profiles ``RelayService.relay_once`` until the log is relayed to
a development broker (the stage ``e2e_kafka`` waits on longest). bench/PROFILE.md records the
findings.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import pstats
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from bench.common import inbound_lines
from lifecycle.config import DEFAULT_BATCH_SIZE, Settings
from lifecycle.runtime import Runtime


@contextlib.contextmanager
def _runtime(kind: str, workdir: Path) -> Iterator[Runtime]:
    if kind == "postgres":
        from tests.pg import create_database, database_name, drop_database, postgres_server_url

        server = postgres_server_url()
        url = create_database(server)
    else:
        url = None
    rt = Runtime.open(Settings(database_url=url, data_dir=workdir, stage_model_path=None,
                               batch_size=DEFAULT_BATCH_SIZE, kafka_bootstrap=None))
    try:
        yield rt
    finally:
        rt.close()
        if url is not None:
            drop_database(server, database_name(url))


def _profiled(work: Callable[[], object]) -> tuple[cProfile.Profile, float]:
    import time

    profile = cProfile.Profile()
    started = time.perf_counter()
    profile.enable()
    work()
    profile.disable()
    return profile, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("what", choices=("ingest_sqlite", "ingest_postgres", "rebuild", "replay", "relay"))
    parser.add_argument("--n", type=int, default=20_000, help="inbound events (default 20000)")
    parser.add_argument("--after", type=int, default=0,
                        help="ingest: first ingest this many more events unprofiled, from a population "
                             "sized for after + n (how ingest behaves on a grown store)")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--out", type=Path, help="also save the raw profile here (pstats format)")
    args = parser.parse_args()

    if args.after and not args.what.startswith("ingest"):
        parser.error("--after is for ingest_sqlite and ingest_postgres")
    lines = inbound_lines(args.after + args.n)
    if args.what == "relay":
        profile, seconds = _relay(lines)
    else:
        profile, seconds = _embedded(args.what, args.n, lines, args.after)
    if args.out:
        profile.dump_stats(args.out)
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.strip_dirs().sort_stats("cumulative").print_stats(args.top)
    stats.sort_stats("tottime").print_stats(args.top)
    after = f", after {args.after}" if args.after else ""
    print(f"{args.what}: {seconds:.2f}s under the profiler (n={args.n}{after})")
    print(out.getvalue())


def _relay(lines: list[bytes]) -> tuple[cProfile.Profile, float]:
    import dataclasses

    from consumers.relay import RelayService
    from consumers.service import configure_logging
    from consumers.topics import ensure_topics
    from deploy.broker import start_broker

    with start_broker(ready_timeout=60) as broker, \
            tempfile.TemporaryDirectory(prefix="lifecycle-profile-") as tmp, \
            _runtime("postgres", Path(tmp)) as rt:
        rt.ingest_lines(lines)
        rt.settings = dataclasses.replace(rt.settings, kafka_bootstrap=broker.bootstrap,
                                          topic_events="lifecycle.events.profile")
        ensure_topics(broker.bootstrap, rt.settings)
        service = RelayService(rt, configure_logging("json").bind())
        try:
            def relay_all() -> None:
                while service.relay_once():
                    pass
            return _profiled(relay_all)
        finally:
            service.publisher.close()


def _embedded(what: str, n: int, lines: list[bytes], after: int = 0) -> tuple[cProfile.Profile, float]:
    with tempfile.TemporaryDirectory(prefix="lifecycle-profile-") as tmp, \
            _runtime("postgres" if what == "ingest_postgres" else "sqlite", Path(tmp)) as rt:
        if what.startswith("ingest"):
            rt.ingest_lines(lines[:after])
            return _profiled(lambda: rt.ingest_lines(lines[after:]))
        if what == "rebuild":
            rt.ingest_lines(lines)
            return _profiled(rt.runner.rebuild)
        from bench.replay import KEY, customer_lines
        from lifecycle.ids import customer_id
        from lifecycle.inspect import customer_state

        rt.ingest_lines(lines[: n // 10] + customer_lines(1000))
        events = rt.engine.history(customer_id(KEY))
        as_of = next(e.occurred_at for e in events[len(events) // 2:] if hasattr(e, "occurred_at"))
        return _profiled(lambda: [customer_state(rt, KEY, as_of=as_of) for _ in range(20)])


if __name__ == "__main__":
    main()
