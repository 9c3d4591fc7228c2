"""``python -m chaos.service run ingest|relay|project``: exactly ``python -m lifecycle run ...``,
except that when the CLI gives up with its one-line ``error:`` message, the traceback of the
exception it was handling is printed first, so the harness can say where a crash came from.
The product code is not changed; only ``lifecycle.cli.fail`` is wrapped in this process.
"""

from __future__ import annotations

import sys
import traceback

import lifecycle.cli as cli

_fail = cli.fail


def _fail_with_traceback(message: str, code: int = cli.EXIT_USAGE):  # type: ignore[no-untyped-def]
    if sys.exc_info()[0] is not None:
        sys.stderr.write("chaos.service: the CLI is failing while handling this exception:\n")
        traceback.print_exc()
        sys.stderr.flush()
    _fail(message, code)


cli.fail = _fail_with_traceback  # type: ignore[assignment]

if __name__ == "__main__":
    cli.main()
