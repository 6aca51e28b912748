"""The FastAPI app: ``create_app(settings)``, and the factory ``ledger serve`` runs.

What it wires: the stalwart web kit (problem+json errors, request ids, one JSON request line
naming the tenant, ``/livez`` and ``/readyz`` with the store as a required check), a
deadline on every request and a circuit breaker around the store (``ledger.guard``), every
ledger error on the kit's registry, JSON logs, EMF metrics per API request, OpenTelemetry
traces when ``LEDGER_OTLP_ENDPOINT`` is set, the ``/v1`` routes over one
:class:`~ledger.service.Ledger` on one async store, and the Flask back-office at ``/admin``
(WSGI, mounted with a2wsgi: it runs on a2wsgi's thread pool over a sync store of the same
URL, so every uvicorn worker serves it too; its store calls go through the same breaker).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

from a2wsgi import WSGIMiddleware
from fastapi import FastAPI
from fastapi.routing import APIRoute

from ledger.api import assistant, include_api
from ledger.api.deps import tenant_of_request
from ledger.api.problems import error_registry
from ledger.auth import KeyCache, list_tenants
from ledger.backoffice import BACKOFFICE_PATH
from ledger.backoffice.factory import create_backoffice
from ledger.guard import STORE_BREAKER, GuardedAsyncStore, RequestDeadline, store_breaker
from ledger.service import Ledger
from ledger.settings import LedgerSettings
from ledger.store import CONTENTION_RETRY
from ledger.tracing import TracedAsyncStore, engine_of
from ledger.webhooks.worker import DeliveryWorker, delivery_policy
from stalwart.observability import (
    Tracing,
    configure_logging,
    configure_metrics,
    configure_tracing,
    get_logger,
    put_metric,
    retry_hook,
    shutdown_tracing,
)
from stalwart.resilience import RetryPolicy
from stalwart.storage import AsyncStore, open_async_store, open_store
from stalwart.web import Health, breaker_check, store_check
from stalwart.web.fastapi import install

SERVICE: Final = "ledger"
DESCRIPTION: Final = """\
A double-entry payments ledger: accounts in one currency each, transfers between two accounts
(immediate or two-phase), reversals, linked batches, balances and the journal.

* Amounts are **integers in minor units** of the currency (`1234` USD is $12.34).
* Every `/v1` request needs an API key: `Authorization: Bearer ldg_...` (the Authorize button).
  A key acts for one tenant; another tenant's ids answer 404.
* Creating a transfer, a reversal or a batch needs an `Idempotency-Key` header: a retry with the
  same key and body returns the first answer (`Idempotent-Replayed: true`), never a second
  transfer.
* Account updates need `If-Match` with the account's ETag (428 without it, 412 when stale).
* Errors are RFC 9457 `application/problem+json` with a stable `code` (see docs/ledger.md).
"""
OTLP_TRACES_PATH: Final = "/v1/traces"
MAX_BODY_BYTES: Final = 1024 * 1024
"""Larger request bodies get 413 before they are read. The largest valid request fits: a batch
holds at most 16 transfers (one store transaction's 100 operations), each at most ~28 KB with
the fullest metadata (50 keys of 40 characters, values of 500)."""
MAX_HEADER_BYTES: Final = 32 * 1024
"""Requests whose header names and values add up to more get 431 (uvicorn's httptools parser
has no limit of its own; h11's is 16 KiB)."""
log = get_logger("ledger.app")
_tracing: list[Tracing] = []  # OpenTelemetry has one global provider per process: set once


def configure_observability(settings: LedgerSettings) -> Tracing | None:
    """JSON logs and EMF metrics for this process; OpenTelemetry traces (the installed
    instrumentations: FastAPI, the store's client) exported to ``settings.otlp_endpoint``,
    once per process, when it is set. Returns the process's tracing, if any."""
    configure_logging(SERVICE, level=settings.log_level)
    configure_metrics(settings.metrics_namespace, service=SERVICE)
    if settings.otlp_endpoint and not _tracing:
        _tracing.append(
            configure_tracing(
                SERVICE,
                endpoint=traces_url(settings.otlp_endpoint),
                instrument=instrumentations(settings.store_url.get_secret_value()),
            )
        )
    return _tracing[0] if _tracing else None


def instrumentations(store_url: str) -> list[str]:
    """FastAPI's and the store client's instrumentations (each one imported costs start-up
    time; the others would trace nothing here).

    >>> instrumentations("mongodb://db/ledger?collection=ledger")
    ['fastapi', 'pymongo']
    """
    scheme = store_url.partition(":")[0]
    client = {"redis": "redis", "rediss": "redis", "dynamodb": "botocore"}.get(scheme)
    if scheme.startswith("mongodb"):
        client = "pymongo"
    return ["fastapi"] if client is None else ["fastapi", client]


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL of a collector's base URL (as OTEL_EXPORTER_OTLP_ENDPOINT).

    >>> traces_url("http://collector:4318"), traces_url("http://collector:4318/v1/traces")
    ('http://collector:4318/v1/traces', 'http://collector:4318/v1/traces')
    """
    base = endpoint.rstrip("/")
    return base if base.endswith(OTLP_TRACES_PATH) else base + OTLP_TRACES_PATH


async def expire_pending_forever(ledger: Ledger, store: AsyncStore, interval_s: float) -> None:
    """Void the pending transfers whose timeout passed, for every tenant, every ``interval_s``
    (jittered: several workers share the work without running in step). A failed round is
    logged and the next one tries again."""
    while True:
        await asyncio.sleep(interval_s * random.uniform(0.5, 1.5))  # noqa: S311 - jitter only
        try:
            for tenant in await list_tenants(store):
                expired = await ledger.expire_pending(tenant)
                if expired:
                    put_metric("TransfersExpired", expired)
                    log.info("pending transfers expired", tenant=tenant, count=expired)
        except Exception:
            log.warning("expiring pending transfers failed; next round retries", exc_info=True)


def create_app(settings: LedgerSettings | None = None) -> FastAPI:
    """The ledger API on the store of ``settings`` (read from the environment by default).

    The store is opened here (no I/O until the first request) and closed at shutdown.
    """
    settings = settings if settings is not None else LedgerSettings()
    tracing = configure_observability(settings)
    url = settings.store_url.get_secret_value()
    store: AsyncStore = open_async_store(url)
    if tracing is not None:
        store = TracedAsyncStore(store, engine_of(url))
    health = Health()
    health.add("store", store_check(store))  # the store itself, not the breaker's view of it
    breaker = store_breaker(settings.store_breaker_open_s)
    health.add(STORE_BREAKER, breaker_check(breaker), required=False)
    store = GuardedAsyncStore(store, breaker, settings.request_deadline_s)

    ledger = Ledger(store, retry_policy=_counted_retries())
    sync_store = open_store(url)  # the back-office's: Flask views are sync

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        background = []
        if settings.expire_interval_s > 0:
            background.append(
                asyncio.create_task(
                    expire_pending_forever(ledger, store, settings.expire_interval_s)
                )
            )
        worker = None
        if settings.webhook_worker:
            worker = DeliveryWorker(store, delivery_policy(settings))
            background.append(asyncio.create_task(worker.run_forever()))
        yield
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if worker is not None:
            await worker.aclose()
        assistant = getattr(app.state, "assistant", None)  # built on first use, if ever
        if assistant is not None:
            await assistant.aclose()
        await store.close()
        sync_store.close()
        if tracing is not None:
            shutdown_tracing(tracing)  # flush the spans still batched

    app = FastAPI(
        title="ledger",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        # Operation ids are the handlers' names (create_transfer, not
        # create_transfer_v1_transfers_post): the method names of a generated client.
        generate_unique_id_function=_operation_id,
        openapi_tags=[
            {"name": "accounts", "description": "Accounts, their balances and journals."},
            {"name": "transfers", "description": "Moving money between two accounts."},
            {
                "name": "webhooks",
                "description": "Endpoints that receive signed events of every transfer change, "
                "and the events with their deliveries.",
            },
            {
                "name": "assistant",
                "description": "Questions in plain words; transfers it proposes need your "
                "confirmation (offline and deterministic without a model key).",
            },
            {"name": "health", "description": "Liveness and readiness probes (no API key)."},
        ],
    )
    app.state.store = store
    app.state.key_cache = KeyCache(settings.api_key_cache_s)
    app.state.ledger = ledger
    app.state.settings = settings  # the assistant is built from them on first use
    install(
        app,
        errors=error_registry(),
        health=health,
        principal=tenant_of_request,
        max_body_bytes=MAX_BODY_BYTES,
        max_header_bytes=MAX_HEADER_BYTES,
        body_limit_exempt=(BACKOFFICE_PATH,),  # import uploads: Flask's MAX_CONTENT_LENGTH
    )
    include_api(app)
    app.add_middleware(
        RequestDeadline, seconds=settings.request_deadline_s, exempt=(assistant.router.prefix,)
    )
    # The web kit's middleware wraps the mount too: back-office requests get a request id and
    # the same JSON request line as the API.
    backoffice = create_backoffice(settings, store=sync_store, breaker=breaker)
    app.mount(BACKOFFICE_PATH, WSGIMiddleware(backoffice))  # type: ignore[arg-type]
    return app


def _operation_id(route: APIRoute) -> str:
    return route.name


def _counted_retries() -> RetryPolicy:
    """The ledger's contention retries, each one an EMF ``RetryScheduled`` metric
    (``retry_policy=ledger.contention``) and a span event; no log line: hot accounts would
    flood the log."""
    counted = retry_hook(log=False)
    return dataclasses.replace(CONTENTION_RETRY, hooks=(*CONTENTION_RETRY.hooks, counted))


def app_from_environment() -> FastAPI:
    """The uvicorn factory ``ledger serve`` runs in each worker (settings from LEDGER_*)."""
    return create_app(LedgerSettings())
