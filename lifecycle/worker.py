"""``python -m lifecycle.worker --fork FD,FD,... [--postgres]``: the zygote of a parallel ingest
or rebuild (see ``lifecycle.zygote``): it imports the engine once and forks the workers, one per
pair of pipes, which speak pickled messages with the caller (``lifecycle.parallel.work``)."""

import signal
import sys

if __name__ == "__main__":
    # Ctrl-C reaches the whole process group: the caller stops the ingest and its workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    args = sys.argv[1:]
    if len(args) < 2 or args[0] != "--fork" or not all(p.isdigit() for p in args[1].split(",")):
        sys.exit("usage: python -m lifecycle.worker --fork FD,FD,... [--postgres] (started by lifecycle.parallel)")
    from lifecycle.zygote import fork_workers

    fork_workers([int(p) for p in args[1].split(",")], preload_postgres="--postgres" in args[2:])
