"""``ledger``: serve the API, manage API keys.

    ledger serve [--store URL] [--host H] [--port P] [--workers N] [--with-worker]
    ledger worker [--store URL]
    ledger keys create --tenant NAME [--store URL]
    ledger keys revoke KEY_ID [--store URL]
    ledger operators create --username U --tenant T [--role viewer|operator] [--password-stdin]
    ledger import FILE --kind accounts|transfers --tenant T [--rejects PATH] [--store URL]
    ledger export accounts|balances|transfers|entries --tenant T --out PATH [--account ID]
                  [--from DATE --to DATE] [--store URL]
    ledger report --tenant T --from DATE --to DATE --out DIR [--format png|svg] [--store URL]
    ledger ask "balance of alice" --tenant NAME [--conversation ID] [--store URL]

Options override the ``LEDGER_*`` settings (``.env``, environment, Secrets Manager).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Literal

import typer
import uvicorn
from pydantic import ValidationError
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)

from ledger.auth import IssuedKey, create_key, ensure_development_key, revoke_key
from ledger.backoffice import BACKOFFICE_PATH
from ledger.backoffice.operators import Role, create_operator
from ledger.domain.errors import LedgerError
from ledger.service import SyncLedger
from ledger.settings import Environment, LedgerSettings
from stalwart.config import ConfigError
from stalwart.observability import configure_logging
from stalwart.storage import (
    AlreadyExists,
    Store,
    StoreConfigurationError,
    open_async_store,
    open_store,
)

app = typer.Typer(
    name="ledger", help="The stalwart payments ledger.", no_args_is_help=True, add_completion=False
)
keys = typer.Typer(help="Manage API keys (each bound to one tenant).", no_args_is_help=True)
app.add_typer(keys, name="keys")
operators = typer.Typer(
    help="Manage back-office operators (each bound to one tenant).", no_args_is_help=True
)
app.add_typer(operators, name="operators")

WORKER_HEALTHCHECK_S = 30
"""How long uvicorn waits for a worker's answer to its health check before replacing it."""

StoreOption = Annotated[
    str | None,
    typer.Option("--store", help="Storage URL (default: LEDGER_STORE_URL, else ./ledger.db)."),
]


def load_settings(**overrides: object) -> LedgerSettings:
    """Settings with the command line's options on top; a bad configuration exits with its
    message (and status 2), never a traceback."""
    given = {name: value for name, value in overrides.items() if value is not None}
    try:
        return LedgerSettings(**given)  # type: ignore[arg-type]  # validated by pydantic
    except (ConfigError, ValidationError) as exc:
        typer.echo(f"ledger: {exc}", err=True)
        raise typer.Exit(2) from exc


@contextmanager
def opened_store(settings: LedgerSettings) -> Iterator[Store]:
    """The settings' store, sync (for the CLI's own writes), closed on exit."""
    try:
        store = open_store(settings.store_url.get_secret_value())
    except StoreConfigurationError as exc:
        typer.echo(f"ledger: {exc}", err=True)
        raise typer.Exit(2) from exc
    try:
        yield store
    finally:
        store.close()


def _print_key(issued: IssuedKey, why: str) -> None:
    typer.echo(f"{why} for tenant {issued.tenant!r} (key id {issued.key_id}); shown only once:")
    typer.echo(f"  {issued.plaintext}")


@app.command()
def serve(
    store: StoreOption = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes, all on the same store (default 1).")
    ] = None,
    with_worker: Annotated[
        bool | None,
        typer.Option(
            "--with-worker",
            help="Also deliver webhooks from each process (LEDGER_WEBHOOK_WORKER).",
        ),
    ] = None,
) -> None:
    """Serve the HTTP API with uvicorn (docs at /docs)."""
    settings = load_settings(
        store_url=store, host=host, port=port, workers=workers, webhook_worker=with_worker
    )
    if with_worker:
        os.environ["LEDGER_WEBHOOK_WORKER"] = "true"  # read again by each uvicorn worker
    if settings.env is Environment.DEVELOPMENT:
        # Once, here, not in every worker: the first start on an empty store gets a key.
        with opened_store(settings) as sync_store:
            issued = ensure_development_key(sync_store)
        if issued is not None:
            _print_key(issued, "No API key existed: made one")
    if store is not None:
        # The workers read their settings again (from the same sources): only the command
        # line's store needs handing over. A URL from Secrets Manager stays out of environ.
        os.environ["LEDGER_STORE_URL"] = store
    base = f"http://{settings.host}:{settings.port}"
    typer.echo(f"ledger API on {base} ({settings.workers} worker(s)); docs: {base}/docs")
    typer.echo(f"back-office: {base}{BACKOFFICE_PATH}/ (ledger operators create makes a login)")
    # JSON logs here too: with several workers this process is uvicorn's supervisor, and a
    # worker it replaces (dead, or hung) would otherwise leave no line at all.
    configure_logging("ledger", level=settings.log_level)
    uvicorn.run(
        "ledger.app:app_from_environment",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        # uvicorn kills a worker that does not answer its health check within 5 s (its
        # default) and starts another. A spawned worker first imports this module again
        # (multiprocessing re-runs the `ledger` script), which took over 5 s on a loaded
        # 2-core machine: workers were killed while starting, and their replacements too.
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_S,
        log_config=None,  # the app's JSON logging from the first line
        access_log=False,  # the web kit's request line replaces uvicorn's
    )


@app.command()
def worker(store: StoreOption = None) -> None:
    """Deliver webhook events until stopped (run several: they share the work by leases)."""
    # Not ledger.app's configure_observability: importing the app (FastAPI, Flask, the
    # back-office) would double the worker's start-up time for nothing it uses.
    from ledger.webhooks.worker import DeliveryWorker, delivery_policy  # noqa: PLC0415
    from stalwart.observability import configure_metrics  # noqa: PLC0415

    settings = load_settings(store_url=store)
    configure_logging("ledger", level=settings.log_level)
    configure_metrics(settings.metrics_namespace, service="ledger")

    async def run() -> None:
        try:
            async_store = open_async_store(settings.store_url.get_secret_value())
        except StoreConfigurationError as exc:
            raise _fail(exc) from exc
        delivery = DeliveryWorker(async_store, delivery_policy(settings))
        typer.echo(f"webhook worker {delivery.name} delivering")
        try:
            await delivery.run_forever()
        finally:
            await delivery.aclose()
            await async_store.close()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


@keys.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="The tenant the key acts for (created if new).")],
    store: StoreOption = None,
) -> None:
    """Make an API key for a tenant and print it (once: only its hash is stored)."""
    settings = load_settings(store_url=store)
    with opened_store(settings) as sync_store:
        try:
            issued = create_key(sync_store, tenant)
        except ValueError as exc:
            typer.echo(f"ledger: {exc}", err=True)
            raise typer.Exit(2) from exc
    _print_key(issued, "API key")


@keys.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key id printed when it was made.")],
    store: StoreOption = None,
) -> None:
    """Revoke an API key: requests bearing it get 401 from now on."""
    settings = load_settings(store_url=store)
    with opened_store(settings) as sync_store:
        revoked = revoke_key(sync_store, key_id)
    if not revoked:
        typer.echo(f"ledger: no live API key with id {key_id!r}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked API key {key_id}")


@operators.command("create")
def operators_create(
    username: Annotated[str, typer.Option(help="The login name (lowercase).")],
    tenant: Annotated[str, typer.Option(help="The one tenant this operator works on.")],
    role: Annotated[
        Role, typer.Option(help="viewer (reads) or operator (also posts, voids, adjusts).")
    ] = Role.OPERATOR,
    password_stdin: Annotated[  # noqa: FBT002 - a flag of the command line
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    store: StoreOption = None,
) -> None:
    """Make a back-office operator (the password is prompted, or read from stdin)."""
    settings = load_settings(store_url=store)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    with opened_store(settings) as sync_store:
        try:
            made = create_operator(sync_store, username, password, tenant=tenant, role=role)
        except ValueError as exc:
            typer.echo(f"ledger: {exc}", err=True)
            raise typer.Exit(2) from exc
        except AlreadyExists as exc:
            typer.echo(f"ledger: an operator named {username!r} exists already", err=True)
            raise typer.Exit(1) from exc
    typer.echo(f"operator {made.username!r} ({made.role}) for tenant {made.tenant!r} created")


# The file commands (import, export, report) import ledger.ops -- pandas, pyarrow, pandera,
# matplotlib: seconds of imports -- only when they run, so `ledger serve` and its workers start
# without them.

TenantOption = Annotated[str, typer.Option(help="The tenant whose ledger this is.")]


def _fail(message: object, status: int = 2) -> typer.Exit:
    typer.echo(f"ledger: {message}", err=True)
    return typer.Exit(status)


@app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="A .csv or .parquet file.")],
    kind: Annotated[Literal["accounts", "transfers"], typer.Option(help="What the file holds.")],
    tenant: TenantOption,
    rejects: Annotated[
        Path | None,
        typer.Option(help="Where rejected rows go (default: FILE's name + .rejects.csv)."),
    ] = None,
    store: StoreOption = None,
) -> None:
    """Import accounts or transfers, exactly once (a re-run posts nothing twice).

    Exit status: 0 when every row is posted or already present, 1 when rows were rejected (see
    the rejects file), 2 when the file or the configuration is unusable (nothing written).
    """
    from ledger.ops.importer import ImportFileError, import_file  # noqa: PLC0415  # see above

    settings = load_settings(store_url=store)
    rejects_path = rejects or file.with_name(f"{file.stem}.rejects.csv")
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
    )
    with opened_store(settings) as sync_store, Progress(*columns, transient=False) as bar:
        task = bar.add_task(f"importing {kind}", total=None, rate="")

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)
            speed = bar.tasks[task].speed
            bar.update(task, rate="" if speed is None else f"{speed:,.0f} rows/s")

        try:
            summary = import_file(
                SyncLedger(sync_store),
                tenant,
                file,
                kind=kind,
                rejects_path=rejects_path,
                progress=progress,
            )
        except (ImportFileError, LedgerError) as exc:
            raise _fail(exc) from exc
    typer.echo(
        f"{summary.rows} rows: {summary.posted} posted, {summary.duplicates} skipped as "
        f"duplicate, {summary.rejected} rejected"
        + (f" (see {summary.rejects_path})" if summary.rejects_path else "")
    )
    if summary.rejected:
        raise typer.Exit(1)


FromOption = Annotated[
    datetime | None,
    typer.Option("--from", formats=["%Y-%m-%d"], help="First day (UTC, YYYY-MM-DD), included."),
]
ToOption = Annotated[
    datetime | None,
    typer.Option("--to", formats=["%Y-%m-%d"], help="Day after the last (UTC), excluded."),
]


def _epoch(day: datetime | date | None) -> float | None:
    """Midnight UTC of ``day`` in epoch seconds."""
    if day is None:
        return None
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


@app.command("export")
def export_command(
    what: Annotated[
        Literal["accounts", "balances", "transfers", "entries"],
        typer.Argument(help="What to export."),
    ],
    *,
    tenant: TenantOption,
    out: Annotated[Path, typer.Option(help="The .csv or .parquet file to write.")],
    account: Annotated[
        str | None,
        typer.Option(help="Only this account (its balance, its transfers, its journal)."),
    ] = None,
    start: FromOption = None,
    end: ToOption = None,
    store: StoreOption = None,
) -> None:
    """Export to CSV or Parquet, streamed page by page (memory stays bounded).

    --from/--to select transfers and entries created in [FROM, TO) (UTC days; TO excluded).
    """
    from ledger.ops.exporter import export  # noqa: PLC0415  # see above

    settings = load_settings(store_url=store)
    if end is not None and start is None:
        raise _fail("--to needs --from")
    with opened_store(settings) as sync_store:
        try:
            rows = export(
                SyncLedger(sync_store),
                tenant,
                what,
                out,
                account_id=account,
                created_gte=_epoch(start),
                created_lt=_epoch(end),
            )
        except (LedgerError, ValueError, OSError) as exc:
            raise _fail(exc) from exc
    typer.echo(f"{rows} {what} rows written to {out}")


@app.command("report")
def report_command(
    *,
    tenant: TenantOption,
    start: Annotated[
        datetime,
        typer.Option("--from", formats=["%Y-%m-%d"], help="First day (UTC), included."),
    ],
    end: Annotated[
        datetime,
        typer.Option("--to", formats=["%Y-%m-%d"], help="Day after the last (UTC), excluded."),
    ],
    out: Annotated[Path, typer.Option(help="Directory for the CSV files and the chart.")],
    chart_format: Annotated[
        Literal["png", "svg"], typer.Option("--format", help="The chart's image format.")
    ] = "png",
    store: StoreOption = None,
) -> None:
    """Daily volume and count per currency, a trial balance (must sum to zero) and the largest
    movements of [FROM, TO), as CSV files and a chart."""
    from ledger.ops.reports import build_report, write_report  # noqa: PLC0415  # see above

    settings = load_settings(store_url=store)
    with opened_store(settings) as sync_store:
        try:
            report = build_report(SyncLedger(sync_store), tenant, start.date(), end.date())
            written = write_report(report, out, chart_format=chart_format)
        except (LedgerError, ValueError, OSError) as exc:
            raise _fail(exc) from exc
    for path in written:
        typer.echo(f"wrote {path}")


@app.command()
def ask(
    message: Annotated[str, typer.Argument(help='Your words, e.g. "balance of alice".')],
    tenant: Annotated[str, typer.Option(help="The tenant to act as.")],
    conversation: Annotated[
        str | None, typer.Option(help="Continue this conversation (default: a new one).")
    ] = None,
    store: StoreOption = None,
) -> None:
    """Ask the assistant, in this process, on the settings' store (offline without a model
    key). Prints the answer, the proposals it made, and the conversation id."""
    from ledger.assistant.service import build_assistant  # noqa: PLC0415 - pydantic-ai: only for ask
    from ledger.domain.errors import LedgerError  # noqa: PLC0415
    from ledger.service import Ledger  # noqa: PLC0415
    from stalwart.storage import open_async_store  # noqa: PLC0415

    settings = load_settings(store_url=store)

    async def run() -> None:
        try:
            async_store = open_async_store(settings.store_url.get_secret_value())
        except StoreConfigurationError as exc:
            typer.echo(f"ledger: {exc}", err=True)
            raise typer.Exit(2) from exc
        try:
            assistant = build_assistant(Ledger(async_store), async_store, settings)
            conversation_id = conversation or await assistant.start(tenant)
            reply = await assistant.ask(tenant, conversation_id, message)
        except LedgerError as exc:
            typer.echo(f"ledger: {exc.detail}", err=True)
            raise typer.Exit(1) from exc
        finally:
            await async_store.close()
        typer.echo(reply.text)
        for proposal in reply.proposals:
            typer.echo(
                f"proposal {proposal.id}: {proposal.amount_text} {proposal.currency} "
                f"{proposal.source.id} -> {proposal.destination.id} (confirm it through the API)"
            )
        typer.echo(f"conversation: {conversation_id}")

    asyncio.run(run())


def main() -> None:
    """The ``ledger`` console script."""
    app()
