"""The composition root: builds the engine, the view store and the projection runner
from the settings. The only module that knows which adapters go together.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from eventsourcing.persistence import PersistenceError

from lifecycle.audit import Sealer
from lifecycle.batch import BatchResult, IngestTotals
from lifecycle.collection import fewer_collections
from lifecycle.config import Settings
from lifecycle.engine import LifecycleEngine
from lifecycle.errors import StoreError
from lifecycle.keys import KeyRing, open_key_store
from lifecycle.parallel import ingest_in_parallel, rebuild_in_parallel
from lifecycle.stages import load_stage_model
from projections.log import EngineLogSource
from projections.runner import ProjectionRunner
from projections.store import ViewStore, ViewStoreError, open_view_store


# Up to this many stored events a rebuild stays in one process: the workers' start and the
# summaries (computed once, after the parts) leave little to gain (67k events: 3.8 s in three
# processes, 4.0 s in one; 110k: 3.8-4.9 s against 5.2-6.2 s).
PARALLEL_REBUILD_EVENTS = 100_000


@dataclass
class Runtime:
    settings: Settings
    engine: LifecycleEngine
    views: ViewStore
    runner: ProjectionRunner
    sealer: Sealer

    @classmethod
    def open(cls, settings: Settings | None = None, *, views_synchronous_commit: bool = True) -> Runtime:
        """``views_synchronous_commit=False``: only for a process whose view-store writes are all
        redone from a log after a lost commit (``PostgresViewStore``)."""
        settings = settings or Settings.from_env()
        model = load_stage_model(settings.stage_model_path)
        try:
            # The library creates its tables with CREATE TABLE IF NOT EXISTS, which PostgreSQL
            # does not serialise: services starting together fail with "tuple concurrently updated".
            with _setup_lock(settings.database_url):
                engine = LifecycleEngine(env=settings.event_store_env(), model=model,
                                         cache_size=settings.cache_customers)
        except (PersistenceError, ViewStoreError) as e:
            raise StoreError(f"cannot open the event store ({settings.describe_store()}): {e}") from e
        # The key ring opens after the event store, so an unreachable database is reported as such.
        # What opened before a failure is closed: a service retries opening while a database
        # restarts, and must not keep a pool per attempt.
        with ExitStack() as on_failure:
            on_failure.callback(engine.close)
            keyring = engine.keyring = KeyRing(open_key_store(settings.database_url, settings.data_dir))
            on_failure.callback(keyring.store.close)
            views = open_view_store(settings.database_url, settings.data_dir,
                                    synchronous_commit=views_synchronous_commit)
            on_failure.callback(views.close)
            runner = ProjectionRunner(EngineLogSource(engine), views, model, reveal=keyring.reveal,
                                      refresh_keys=keyring.refresh, cache_size=settings.cache_customers)
            # One process at a time converts seals of an older store (``audit._convert_chain``).
            sealer = Sealer(engine.recorder, views, exclusive=lambda: _setup_lock(settings.database_url))
            opened = cls(settings, engine, views, runner, sealer)
            on_failure.pop_all()  # opened: nothing to close
        return opened

    @property
    def embedded(self) -> bool:
        """No Kafka: the projections follow the store in this process."""
        return self.settings.kafka_bootstrap is None

    def ingest_lines(
        self, lines: Iterable[bytes], on_batch: Callable[[BatchResult], None] | None = None
    ) -> IngestTotals:
        """Apply raw lines in batches of the configured size (blank lines are not events).

        Streams: only the totals are kept, so memory does not grow with the input; a caller
        that wants each item's outcome gets every batch's result through ``on_batch``, in
        stream order. A long stream is shared by ``workers`` processes when the store
        is one that several processes can open (not in memory): see ``lifecycle.parallel``.
        It runs with fewer garbage collections (``lifecycle.collection``), which starts with one
        full collection: give it a stream, not a line at a time.
        """
        events = (line.rstrip(b"\r\n") for line in lines if line.strip())
        with fewer_collections():  # batches of short-lived objects, no cycles (lifecycle.collection)
            if self._shared_workers() > 1:
                return ingest_in_parallel(self.settings, events, self.settings.workers, self._ingest_here, on_batch)
            return self._ingest_here(events, on_batch)

    def rebuild(self, progress: Callable[[int], None] | None = None, today: date | None = None) -> int:
        """Every view derived again from the whole log (``ProjectionRunner.rebuild``), the
        summaries as of ``today`` (UTC by default); a log of more than
        ``PARALLEL_REBUILD_EVENTS`` events by ``workers`` processes, each taking a range of
        entity ids (``lifecycle.parallel``). The events read."""
        workers = self._shared_workers()
        if workers == 1 or (self.engine.recorder.max_notification_id() or 0) <= PARALLEL_REBUILD_EVENTS:
            return self.runner.rebuild(today, progress=progress)
        last, parts = rebuild_in_parallel(self.settings, self.runner, workers, today or datetime.now(UTC).date(),
                                          progress)
        return self.runner.finish_rebuild(last, parts)

    def _shared_workers(self) -> int:
        """Worker processes for a long job: several only on a store they can all open."""
        return 1 if self.settings.database_url == "memory://" else self.settings.workers

    def _ingest_here(
        self, lines: Iterable[bytes], on_batch: Callable[[BatchResult], None] | None
    ) -> IngestTotals:
        totals = IngestTotals()
        for batch in _batches(lines, self.settings.batch_size):
            result = self.engine.ingest(batch)
            totals.add(result)
            if on_batch is not None:
                on_batch(result)
        return totals

    def catch_up(self, progress: Callable[[int], None] | None = None) -> int:
        """Embedded mode: seal the new events, then bring the views up to date."""
        self.sealer.seal()
        return self.runner.catch_up(progress=progress)

    def sweep(self, as_of: date) -> int:
        """Churn the customers inactive at ``as_of``: candidates from the views, decided by the aggregates."""
        self.catch_up()
        threshold = datetime.combine(as_of, datetime.min.time(), tzinfo=UTC) - timedelta(
            days=self.engine.model.inactivity_days
        )
        candidates = sorted(
            row["customer_key"]
            for row in self.views.rows("customer_current")
            if row["last_activity_at"] <= threshold
        )
        churned = self.engine.sweep(as_of, candidates, self.settings.batch_size)
        self.catch_up()
        return churned

    def forget(self, key: str) -> bool:
        """Erase a customer's personal data everywhere the engine controls (see LifecycleEngine.erase)."""
        erased = self.engine.erase(key)
        if erased and self.embedded:
            self.catch_up()  # the views re-derive the customer and scrub its rejections now
        return erased

    def replace_broken_connections(self) -> None:
        """After a database failure: test the event store's idle pooled connections at once and
        replace the broken ones, and let the view and key stores open new ones. A server crash,
        restart or failover breaks every connection, and each would otherwise fail a step of
        its own, each failure followed by a longer wait: the services took one to two minutes
        to recover from a crash of the server (tests/test_server_crash.py)."""
        pool = getattr(getattr(self.engine.recorder, "datastore", None), "pool", None)
        check = getattr(pool, "check", None)  # psycopg_pool's (PostgreSQL); SQLite's pool has none
        if callable(check):
            check()
        self.views.drop_connections()
        self.engine.keyring.store.drop_connections()

    def close(self) -> None:
        self.engine.keyring.store.close()
        self.views.close()
        self.engine.close()


def _setup_lock(database_url: str | None) -> AbstractContextManager[None]:
    """``exclusive_setup`` on PostgreSQL; elsewhere nothing (and psycopg is not imported)."""
    if database_url is None or not database_url.startswith(("postgresql:", "postgres:")):
        return nullcontext()
    from projections.store.postgres import exclusive_setup

    return exclusive_setup(database_url)


def _batches(lines: Iterable[bytes], size: int) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    for line in lines:
        batch.append(line)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
