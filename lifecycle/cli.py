"""The ``lifecycle`` command. Thin: parse arguments, call the runtime, render.

User mistakes (bad path, bad date, unknown report, broken configuration) end
with one line on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import importlib
import sys
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path
from typing import Annotated, BinaryIO, NoReturn

import typer
from eventsourcing.persistence import PersistenceError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from lifecycle.batch import BatchResult
from lifecycle.collection import SERVICE_OLDER, fewer_collections
from lifecycle.config import Settings, is_postgres_url
from lifecycle.errors import LifecycleError
from lifecycle.output import FORMATS, render
from lifecycle.runtime import Runtime
from projections.catalog import REPORTS, build_report
from projections.store import ViewStoreError
from projections.tables import ALL_TABLES

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Customer lifecycle engine.")
customer_app = typer.Typer(no_args_is_help=True, help="One customer: state, history, erasure.")
projections_app = typer.Typer(no_args_is_help=True, help="The analysts' views.")
schemas_app = typer.Typer(no_args_is_help=True, help="The inbound contract.")
audit_app = typer.Typer(no_args_is_help=True, help="Check the log.")
analysts_app = typer.Typer(no_args_is_help=True, help="Access for analysts (PostgreSQL).")
app.add_typer(customer_app, name="customer")
app.add_typer(projections_app, name="projections")
app.add_typer(schemas_app, name="schemas")
app.add_typer(audit_app, name="audit")
app.add_typer(analysts_app, name="analysts")

out = Console()
err = Console(stderr=True)

EXIT_REJECTED = 1  # ingest: something was rejected (the rest was ingested)
EXIT_USAGE = 2  # a mistake the user can fix; the message says how


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    one_line = " / ".join(line.strip() for line in message.splitlines() if line.strip())
    err.print(f"[bold red]error:[/] {escape(one_line)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def runtime(open_: Callable[[], Runtime] = Runtime.open) -> Iterator[Runtime]:
    try:
        rt = open_()
    except (LifecycleError, ViewStoreError) as e:
        fail(str(e))
    try:
        yield rt
    except (LifecycleError, ViewStoreError) as e:
        fail(str(e))
    except PersistenceError as e:  # a safety net: the adapters translate what they expect
        fail(f"event store failed: {e}")
    finally:
        rt.close()


def parse_day(value: str | None, option: str = "--as-of") -> date:
    if value is None:
        return datetime.now(UTC).date()
    try:
        return date.fromisoformat(value)
    except ValueError:
        fail(f"{option} {value!r} is not a date: use YYYY-MM-DD, e.g. 2026-03-01")


def parse_moment(value: str, option: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        fail(f"{option} {value!r} is not a time: use RFC 3339, e.g. 2026-03-01T10:15:00Z or 2026-03-01")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # a bare date or time is read as UTC
    return moment


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        fail(f"--format {fmt!r} is not one of: {', '.join(FORMATS)}")
    return fmt


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err, transient=True, disable=not err.is_terminal,
    )


# -- ingest ------------------------------------------------------------------------


@app.command()
def ingest(
    file: Annotated[str, typer.Argument(help="CloudEvents JSON lines; - for stdin")] = "-",
    show: Annotated[int, typer.Option(help="How many rejection reasons to print")] = 20,
) -> None:
    """Apply CloudEvents JSON lines; print accepted / duplicate / rejected.

    Exit status 0: nothing rejected; 1: some lines were rejected (the rest was ingested).
    """
    if file == "-":
        stream, size = sys.stdin.buffer, None
    else:
        path = Path(file)
        if not path.is_file():
            fail(f"cannot read {file}: no such file")
        try:
            stream, size = path.open("rb"), path.stat().st_size
        except OSError as e:
            fail(f"cannot read {file}: {e.strerror}")
    with stream, runtime() as rt:
        tally = _ingest(rt, stream, size, show)
    out.print(
        f"accepted {tally.accepted}  duplicate {tally.duplicates}  rejected {tally.rejected}", highlight=False
    )
    for where, reason in tally.reasons:
        err.print(f"  rejected {where}: {reason}", highlight=False, markup=False, soft_wrap=True)
    if tally.rejected > len(tally.reasons):
        err.print(f"  … and {tally.rejected - len(tally.reasons)} more (all are in the rejections view)")
    if tally.rejected:
        raise typer.Exit(EXIT_REJECTED)


@dataclass
class _Tally:
    show: int
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    reasons: list[tuple[str, str]] = field(default_factory=list)


def _ingest(rt: Runtime, stream: BinaryIO, size: int | None, show: int) -> _Tally:
    """Stream the lines through the engine (memory stays flat whatever the file size)."""
    tally = _Tally(show)
    line_numbers: deque[int] = deque()
    read = 0

    def events() -> Iterator[bytes]:
        nonlocal read
        for number, line in enumerate(stream, start=1):
            read += len(line)
            if line.strip():
                line_numbers.append(number)
                yield line

    with progress_bar() as bar:
        task = bar.add_task("ingesting", total=size)

        def on_batch(result: BatchResult) -> None:
            tally.accepted += result.accepted
            tally.duplicates += result.duplicates
            tally.rejected += result.rejected
            for o in result.outcomes:
                number = line_numbers.popleft()
                if o.rejected and len(tally.reasons) < tally.show:
                    tally.reasons.append((f"line {number}", o.reason or o.outcome))
            bar.update(task, completed=read)

        rt.ingest_lines(events(), on_batch)
        if rt.embedded:
            views = bar.add_task("projecting", total=None)
            rt.catch_up(progress=lambda n: bar.advance(views, n))
    return tally


# -- reports -------------------------------------------------------------------------


@app.command()
def report(
    kind: Annotated[str, typer.Argument(help=f"One of: {', '.join(REPORTS)}")],
    as_of: Annotated[str | None, typer.Option("--as-of", help="YYYY-MM-DD (default: today, UTC)")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, json or csv")] = "table",
) -> None:
    """Print a report computed on business time as of a date."""
    if kind not in REPORTS:
        fail(f"unknown report {kind!r}: choose one of {', '.join(REPORTS)}")
    day, fmt = parse_day(as_of), check_format(fmt)
    with runtime() as rt:
        if rt.embedded:
            rt.catch_up()  # summary tables stay "as of today"; the report is as of `day`
        rows = build_report(kind, rt.views, rt.engine.model, day)
    render(rows, fmt, f"{REPORTS[kind][0]} — as of {day}", out)


@app.command()
def sweep(as_of: Annotated[str | None, typer.Option("--as-of", help="YYYY-MM-DD (default: today)")] = None) -> None:
    """Time-based transitions: customers inactive past the model's threshold become churned."""
    day = parse_day(as_of)
    with runtime() as rt:
        churned = rt.sweep(day)
        out.print(f"churned {churned} customer(s) inactive for {rt.engine.model.inactivity_days} days as of {day}")


@app.command()
def demo(
    customers: Annotated[int, typer.Option(min=1, max=200_000, help="Customers to simulate")] = 2000,
    seed: Annotated[int, typer.Option(help="Random seed")] = 7,
) -> None:
    """Simulate a population over two years, run it through the engine, print reports."""
    from lifecycle.demo import run_demo

    with runtime() as rt:
        run_demo(rt, customers, seed, out, err)


# -- customers -------------------------------------------------------------------------


@customer_app.command("show")
def customer_show(
    key: Annotated[str, typer.Argument(help="Upstream customer key, e.g. shop:42")],
    as_of: Annotated[str | None, typer.Option("--as-of", help="Business time: what was true then")] = None,
    known_at: Annotated[str | None, typer.Option("--known-at", help="Recorded time: what we knew then")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table or json")] = "table",
) -> None:
    """A customer's state now, or at a past moment."""
    from lifecycle.inspect import customer_state

    moment = parse_moment(as_of, "--as-of") if as_of else None
    known = parse_moment(known_at, "--known-at") if known_at else None
    with runtime() as rt:
        state = customer_state(rt, key, as_of=moment, known_at=known)
    if state is None:
        fail(f"no customer {key!r}" + (" at that moment" if (moment or known) else ""), 1)
    current, stages = state
    if check_format(fmt) == "table":
        render([{"field": k, "value": v} for k, v in current.items()], "table", f"customer {key}", out)
        render([{k: v for k, v in r.items() if k not in ("customer_id", "customer_key")} for r in stages],
               "table", "stage history (business time)", out)
    else:
        render([{**current, "stage_history": stages}], fmt, f"customer {key}", out)


@customer_app.command("history")
def customer_history(
    key: Annotated[str, typer.Argument(help="Upstream customer key")],
    fmt: Annotated[str, typer.Option("--format", help="table, json or csv")] = "table",
) -> None:
    """Every event of a customer, with business time and recorded time."""
    from lifecycle.inspect import customer_history as history

    with runtime() as rt:
        rows = history(rt, key)
    if not rows:
        fail(f"no customer {key!r}", 1)
    render(rows, check_format(fmt), f"history of {key}", out)


@customer_app.command("forget")
def customer_forget(key: Annotated[str, typer.Argument(help="Upstream customer key")]) -> None:
    """Erase a customer's personal data (crypto-shredding); stages, amounts and counts stay."""
    with runtime() as rt:
        if not rt.forget(key):
            fail(f"no customer {key!r}", 1)
    out.print(f"erased the personal data of {key}: its key is destroyed, its views scrubbed, "
              "and the erasure recorded in its history", highlight=False)


@audit_app.command("verify")
def audit_verify() -> None:
    """Check that every stored event is complete and unaltered since it was sealed.

    Exit status 0: intact; 1: a link is broken (the first ones are named).
    """
    from lifecycle.audit import verify

    with runtime() as rt:
        if rt.embedded:
            rt.sealer.seal()  # in Kafka mode the relay seals as it goes
        names = _aggregate_names(rt)
        verdict = verify(rt.engine.recorder, rt.views, describe=names)
    if not verdict.ok:
        for message in verdict.broken:
            err.print(f"broken: {message}", highlight=False, markup=False, soft_wrap=True)
        fail(f"the log was altered: {len(verdict.broken)} broken link(s) shown, first: {verdict.broken[0]}", 1)
    out.print(f"intact: {verdict.checked} sealed events verified, {verdict.unsealed} not yet sealed; "
              f"log head {verdict.head}", highlight=False)


def _aggregate_names(rt: Runtime):  # type: ignore[no-untyped-def]
    """Customer keys (and deal ids) for people, from the views; unknown ids stay ids."""
    known = {r["customer_id"]: f"customer {r['customer_key']}" for r in rt.views.rows("customer_current")}
    return lambda aggregate_id: known.get(aggregate_id, f"aggregate {aggregate_id}")


@analysts_app.command("grant")
def analysts_grant(
    role: Annotated[str, typer.Option(help="Group role that may read schema reporting")] = "lifecycle_analyst",
    login: Annotated[str | None, typer.Option(help="Also create (or update) this login user in the role")] = None,
) -> None:
    """Create the read-only analyst role: SELECT on schema reporting, nothing else.

    The password of --login comes from LIFECYCLE_ANALYST_PASSWORD (never a command-line argument).
    """
    import os

    from deploy.analyst import AnalystRoleError, grant_analyst_role

    settings = Settings.from_env()
    url = settings.database_url or ""
    if not is_postgres_url(url):
        fail("analyst roles are a PostgreSQL feature: set LIFECYCLE_DATABASE_URL=postgresql://…")
    try:
        grant_analyst_role(url, role=role, login=login, password=os.environ.get("LIFECYCLE_ANALYST_PASSWORD"))
    except (ValueError, OSError, AnalystRoleError) as e:
        fail(f"cannot grant the analyst role: {e}")
    who = f" and login {login}" if login else ""
    out.print(f"role {role}{who}: may read schema reporting, nothing else", highlight=False)


# -- projections, schemas, services -------------------------------------------------------------


@projections_app.command("rebuild")
def projections_rebuild(
    name: Annotated[str | None, typer.Argument(help="A view name (all views are derived together)")] = None,
) -> None:
    """Drop the views and derive them again from the log."""
    names = [t.name for t in ALL_TABLES if not t.internal]
    if name is not None and name not in names:
        fail(f"unknown view {name!r}: choose one of {', '.join(names)}")
    with runtime() as rt, progress_bar() as bar:
        task = bar.add_task("rebuilding", total=rt.engine.recorder.max_notification_id() or 0)
        applied = rt.rebuild(progress=lambda n: bar.advance(task, n))
    scope = "all views" if name is None else f"{name} (with all views: they share one derivation)"
    out.print(f"rebuilt {scope} from {applied} events")


@schemas_app.command("export")
def schemas_export(directory: Annotated[Path, typer.Argument(help="Folder to write into")]) -> None:
    """Write the JSON Schema of the inbound contract, one file per event type."""
    from schemas import export_json_schemas

    try:
        written = export_json_schemas(directory)
    except OSError as e:
        fail(f"cannot write to {directory}: {e.strerror}")
    out.print(f"wrote {len(written)} schema files to {directory}")


@app.command("run")
def run_service(
    service: Annotated[str, typer.Argument(help="ingest, relay or project")],
    health_file: Annotated[Path | None, typer.Option(help="Touched after every healthy loop")] = None,
) -> None:
    """Run one of the Kafka services until SIGTERM or SIGINT."""
    from consumers.service import HealthFile, StopSignal, configure_logging, open_when_available

    services = {"ingest": "consumers.ingest:IngestService", "relay": "consumers.relay:RelayService",
                "project": "consumers.project:ProjectService"}
    if service not in services:
        fail(f"unknown service {service!r}: choose ingest, relay or project")
    log = configure_logging()
    stop = StopSignal().install()
    module, _, name = services[service].partition(":")
    cls = getattr(importlib.import_module(module), name)
    open_runtime = partial(Runtime.open, views_synchronous_commit=cls.VIEWS_SYNCHRONOUS_COMMIT)
    with runtime(lambda: open_when_available(stop, log, open_runtime)) as rt:
        if rt.settings.kafka_bootstrap is None:
            fail("LIFECYCLE_KAFKA_BOOTSTRAP is not set: the services need a Kafka broker (host:port)")
        from consumers.errors import ConsumersError
        from consumers.topics import ensure_topics

        try:
            ensure_topics(rt.settings.kafka_bootstrap, rt.settings)
        except ConsumersError as e:
            fail(str(e))
        log.info("service_started", service=service, store=rt.settings.describe_store(),
                 bootstrap=rt.settings.kafka_bootstrap)
        with fewer_collections(older=SERVICE_OLDER):  # batch after batch of short-lived objects
            try:
                cls(rt, log).run(stop, HealthFile(health_file))
            except ConsumersError as e:  # the broker did not acknowledge: the orchestrator restarts us
                fail(str(e))
        log.info("service_stopped", service=service)


def main() -> None:
    app()
