"""``ledger``: serve the API, manage API keys.

    ledger serve [--store URL] [--host H] [--port P] [--workers N]
    ledger keys create --tenant NAME [--store URL]
    ledger keys revoke KEY_ID [--store URL]
    ledger ask "balance of alice" --tenant NAME [--conversation ID] [--store URL]

Options override the ``LEDGER_*`` settings (``.env``, environment, Secrets Manager).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
import uvicorn
from pydantic import ValidationError

from ledger.auth import IssuedKey, create_key, ensure_development_key, revoke_key
from ledger.settings import Environment, LedgerSettings
from stalwart.config import ConfigError
from stalwart.storage import Store, StoreConfigurationError, open_store

app = typer.Typer(
    name="ledger", help="The stalwart payments ledger.", no_args_is_help=True, add_completion=False
)
keys = typer.Typer(help="Manage API keys (each bound to one tenant).", no_args_is_help=True)
app.add_typer(keys, name="keys")

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
) -> None:
    """Serve the HTTP API with uvicorn (docs at /docs)."""
    settings = load_settings(store_url=store, host=host, port=port, workers=workers)
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
    uvicorn.run(
        "ledger.app:app_from_environment",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_config=None,  # the app's JSON logging from the first line
        access_log=False,  # the web kit's request line replaces uvicorn's
    )


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
