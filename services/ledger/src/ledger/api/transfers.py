"""``/v1/transfers``: create (Idempotency-Key required), read, list, post, void, reverse, batch.

No ``from __future__ import annotations``: FastAPI reads these annotations at runtime.
"""

from typing import Annotated, Any, Final

from fastapi import APIRouter, Query, Response
from pydantic import AwareDatetime

from ledger.api.deps import (
    IDEMPOTENCY_KEY_INVALID,
    IDEMPOTENCY_KEY_MISSING,
    Cursor,
    IdempotencyKey,
    LedgerDep,
    Limit,
    MeteredRoute,
    Tenant,
)
from ledger.api.models import Batch, NewBatch, PostTransfer
from ledger.api.problems import ledger_responses
from ledger.domain.errors import (
    AccountClosed,
    AlreadyReversed,
    BalanceOverflow,
    BatchTooLarge,
    Contention,
    CurrencyMismatch,
    ExternalIdTaken,
    IdempotencyKeyReused,
    InsufficientFunds,
    InvalidCursor,
    InvalidRequest,
    LedgerError,
    NotFound,
    PostExceedsPending,
    SameAccount,
    TransferExpired,
    TransferNotPending,
    TransferNotPosted,
)
from ledger.domain.models import NewTransfer, Page, Transfer, TransferStatus
from stalwart.observability import bind, get_logger, put_metric

router = APIRouter(prefix="/v1/transfers", tags=["transfers"], route_class=MeteredRoute)
log = get_logger("ledger.api")

REPLAYED_HEADER: Final = "Idempotent-Replayed"
_IDEMPOTENT: Final = (IDEMPOTENCY_KEY_MISSING, IDEMPOTENCY_KEY_INVALID)
_CREATED_HEADERS: Final[dict[str, Any]] = {
    "Location": {"description": "The new transfer's URL", "schema": {"type": "string"}},
    REPLAYED_HEADER: {
        "description": "`true` when this answer replays an earlier request with the same "
        "Idempotency-Key (nothing new was written)",
        "schema": {"type": "string", "enum": ["true"]},
    },
}
_MOVES_MONEY: Final = (
    NotFound,
    InsufficientFunds,
    CurrencyMismatch,
    AccountClosed,
    SameAccount,
    BalanceOverflow,
    ExternalIdTaken,
    Contention,
    IdempotencyKeyReused,
)


def _created_responses(*errors: type[LedgerError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses of a request that creates transfers under an Idempotency-Key."""
    return {
        201: {"description": "Created, or replayed", "headers": _CREATED_HEADERS},
        **ledger_responses(*errors, more=_IDEMPOTENT),
    }


def _answered(response: Response, *, replayed: bool, metric: str, created: int) -> None:
    """Mark a replay (nothing new was written), else count what was created."""
    if replayed:
        response.headers[REPLAYED_HEADER] = "true"
    else:
        put_metric(metric, created)


@router.post(
    "",
    status_code=201,
    summary="Create a transfer (Idempotency-Key required)",
    responses=_created_responses(*_MOVES_MONEY),
)
async def create_transfer(
    new: NewTransfer,
    response: Response,
    tenant: Tenant,
    ledger: LedgerDep,
    key: IdempotencyKey,
) -> Transfer:
    transfer, replayed = await ledger.create_transfer(tenant, new, idempotency_key=key)
    response.headers["Location"] = f"/v1/transfers/{transfer.id}"
    _answered(response, replayed=replayed, metric="TransfersCreated", created=1)
    log.info("transfer created", transfer_id=transfer.id, replayed=replayed)
    return transfer


@router.post(
    "/batch",
    status_code=201,
    summary="Create linked transfers: all or nothing (Idempotency-Key required)",
    responses=_created_responses(*_MOVES_MONEY, BatchTooLarge),
)
async def create_batch(
    batch: NewBatch, response: Response, tenant: Tenant, ledger: LedgerDep, key: IdempotencyKey
) -> Batch:
    transfers, replayed = await ledger.create_batch(tenant, batch.transfers, idempotency_key=key)
    _answered(response, replayed=replayed, metric="TransfersCreated", created=len(transfers))
    log.info("batch created", transfer_ids=[t.id for t in transfers], replayed=replayed)
    return Batch(data=transfers)


@router.get(
    "",
    summary="List transfers (by id; with account_id, in the order they reached the account; with "
    "created_gte, oldest first)",
    responses=ledger_responses(NotFound, InvalidCursor, InvalidRequest),
)
async def list_transfers(
    *,
    tenant: Tenant,
    ledger: LedgerDep,
    account_id: Annotated[
        str | None, Query(description="Only transfers debiting or crediting this account.")
    ] = None,
    status: Annotated[TransferStatus | None, Query(description="Only this status.")] = None,
    created_gte: Annotated[
        AwareDatetime | None,
        Query(
            description="Only transfers created at or after this time (ISO 8601 with a UTC "
            "offset); the list then comes oldest first. A range covers at most 366 days.",
            examples=["2026-12-01T00:00:00Z"],
        ),
    ] = None,
    created_lt: Annotated[
        AwareDatetime | None,
        Query(
            description="Only transfers created before this time (needs created_gte; "
            "default: now).",
            examples=["2026-12-02T00:00:00Z"],
        ),
    ] = None,
    limit: Limit = 10,
    cursor: Cursor = None,
) -> Page[Transfer]:
    return await ledger.list_transfers(
        tenant,
        account_id=account_id,
        status=status,
        limit=limit,
        cursor=cursor,
        created_gte=created_gte.timestamp() if created_gte is not None else None,
        created_lt=created_lt.timestamp() if created_lt is not None else None,
    )


@router.get("/{transfer_id}", summary="Get a transfer", responses=ledger_responses(NotFound))
async def get_transfer(transfer_id: str, tenant: Tenant, ledger: LedgerDep) -> Transfer:
    bind(transfer_id=transfer_id)
    return await ledger.get_transfer(tenant, transfer_id)


@router.post(
    "/{transfer_id}/post",
    summary="Post a pending transfer, fully or partly (the rest is released)",
    responses=ledger_responses(
        NotFound,
        TransferNotPending,
        TransferExpired,
        PostExceedsPending,
        InsufficientFunds,
        AccountClosed,
        Contention,
    ),
)
async def post_transfer(
    transfer_id: str, tenant: Tenant, ledger: LedgerDep, body: PostTransfer | None = None
) -> Transfer:
    bind(transfer_id=transfer_id)
    amount = body.amount if body is not None else None
    transfer = await ledger.post_transfer(tenant, transfer_id, amount=amount)
    put_metric("TransfersPosted", 1)
    log.info("transfer posted", posted_amount=transfer.posted_amount)
    return transfer


@router.post(
    "/{transfer_id}/void",
    summary="Void a pending transfer (releases the reserved amount)",
    responses=ledger_responses(NotFound, TransferNotPending, Contention),
)
async def void_transfer(transfer_id: str, tenant: Tenant, ledger: LedgerDep) -> Transfer:
    bind(transfer_id=transfer_id)
    transfer = await ledger.void_transfer(tenant, transfer_id)
    put_metric("TransfersVoided", 1)
    log.info("transfer voided")
    return transfer


@router.post(
    "/{transfer_id}/reverse",
    status_code=201,
    summary="Reverse a posted transfer: a new, linked transfer (Idempotency-Key required)",
    responses=_created_responses(
        NotFound,
        TransferNotPosted,
        AlreadyReversed,
        InsufficientFunds,
        AccountClosed,
        Contention,
        IdempotencyKeyReused,
    ),
)
async def reverse_transfer(
    transfer_id: str, response: Response, tenant: Tenant, ledger: LedgerDep, key: IdempotencyKey
) -> Transfer:
    bind(transfer_id=transfer_id)
    reversal, replayed = await ledger.reverse_transfer(tenant, transfer_id, idempotency_key=key)
    response.headers["Location"] = f"/v1/transfers/{reversal.id}"
    _answered(response, replayed=replayed, metric="TransfersReversed", created=1)
    log.info("transfer reversed", reversal_id=reversal.id, replayed=replayed)
    return reversal


__all__ = ["router"]
