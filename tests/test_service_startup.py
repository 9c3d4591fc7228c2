"""consumers.service.open_when_available: a service waits out a database that drops connections
while it starts, and still ends with the error when the database does not come back."""

from __future__ import annotations

import pytest

from consumers.service import StopSignal, open_when_available
from lifecycle.errors import ConfigError, StoreError


class Log:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warning(self, event: str, **_: object) -> None:
        self.warnings.append(event)

    def info(self, event: str, **_: object) -> None:
        pass


class Opener:
    def __init__(self, failures: list[Exception]) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "runtime"


class NoWait(StopSignal):
    def wait(self, seconds: float) -> bool:
        return False


def test_a_database_lost_while_starting_is_waited_out() -> None:
    log, opener = Log(), Opener([StoreError("terminating connection"), StoreError("connection refused")])
    assert open_when_available(NoWait(), log, opener) == "runtime"
    assert opener.calls == 3 and log.warnings == ["database_unavailable"] * 2


def test_a_database_that_does_not_come_back_ends_the_service_with_its_error() -> None:
    opener = Opener([StoreError(f"refused {n}") for n in range(10)])
    with pytest.raises(StoreError, match="refused 3"):
        open_when_available(NoWait(), Log(), opener, attempts=4)
    assert opener.calls == 4


def test_a_configuration_error_is_not_retried() -> None:
    opener = Opener([ConfigError("LIFECYCLE_DATABASE_URL needs a database name")])
    with pytest.raises(ConfigError):
        open_when_available(NoWait(), Log(), opener)
    assert opener.calls == 1


@pytest.mark.parametrize(("service", "synchronous"), [("ingest", True), ("relay", False), ("project", False)])
def test_only_the_services_that_redo_their_view_writes_commit_them_asynchronously(
    service: str, synchronous: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    import consumers.service
    from lifecycle.cli import app
    from lifecycle.runtime import Runtime

    asked: list[bool] = []

    def opened(settings: object = None, *, views_synchronous_commit: bool = True) -> None:
        asked.append(views_synchronous_commit)
        raise ConfigError("no database here")

    monkeypatch.setattr(Runtime, "open", opened)
    # Neither the process's logging (bound to the runner's stream, closed afterwards) nor its
    # signal handlers may outlive the test.
    monkeypatch.setattr(consumers.service, "configure_logging", Log)
    monkeypatch.setattr(StopSignal, "install", lambda self: self)
    done = CliRunner().invoke(app, ["run", service])
    assert done.exit_code == 2 and "no database here" in done.output
    assert asked == [synchronous]
