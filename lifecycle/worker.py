"""``python -m lifecycle.worker``: one worker process of a parallel ingest or rebuild (see
``lifecycle.parallel``), speaking pickled messages over its standard input and output."""

import os
import signal
import sys

from lifecycle.parallel import work

if __name__ == "__main__":
    # Ctrl-C reaches the whole process group: the parent stops the ingest and its workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The answers get the real standard output to themselves: anything printed goes to stderr.
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    work(sys.stdin.buffer, answers)
