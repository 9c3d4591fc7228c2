"""Opening the engine and views on each backend, for contract tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lifecycle.audit import Sealer
from lifecycle.config import Settings
from lifecycle.engine import LifecycleEngine
from lifecycle.keys import KeyRing
from lifecycle.runtime import Runtime
from lifecycle.stages import load_stage_model
from projections.log import EngineLogSource
from projections.runner import ProjectionRunner
from projections.store import InMemoryViewStore

OpenRuntime = Callable[[], Runtime]


def runtime_factory(kind: str, tmp_path: Path, postgres_url: Callable[[], str]) -> OpenRuntime:
    """A function that opens a new Runtime on the same database each time it is called."""
    if kind == "memory":
        def open_memory() -> Runtime:
            settings = Settings(database_url="memory://", data_dir=tmp_path, stage_model_path=None,
                                batch_size=100, kafka_bootstrap=None)
            model = load_stage_model()
            keyring = KeyRing(InMemoryViewStore())
            engine = LifecycleEngine(env=settings.event_store_env(), model=model, keyring=keyring)
            views = InMemoryViewStore()
            runner = ProjectionRunner(EngineLogSource(engine), views, model, reveal=keyring.reveal,
                                      refresh_keys=keyring.refresh)
            return Runtime(settings, engine, views, runner, Sealer(engine.recorder, views))
        return open_memory
    url = f"sqlite:///{tmp_path / 'events.sqlite'}" if kind == "sqlite" else postgres_url()
    settings = Settings(database_url=url, data_dir=tmp_path, stage_model_path=None,
                        batch_size=100, kafka_bootstrap=None)
    return lambda: Runtime.open(settings)
