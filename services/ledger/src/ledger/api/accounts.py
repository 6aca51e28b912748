"""``/v1/accounts``: create, read, list, update metadata (If-Match), close (If-Match),
balance and journal.

No ``from __future__ import annotations``: FastAPI reads these annotations at runtime.
"""

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from ledger.api.deps import Cursor, LedgerDep, Limit, MeteredRoute, Tenant
from ledger.api.models import MetadataUpdate
from ledger.api.problems import ledger_responses
from ledger.domain.errors import (
    ExternalIdTaken,
    InvalidCursor,
    NotFound,
    PreconditionFailed,
)
from ledger.domain.models import (
    Account,
    AccountStatus,
    Balance,
    Entry,
    NewAccount,
    Page,
)
from ledger.store import account_key
from stalwart.storage import Key, Record
from stalwart.web import Precondition, etag
from stalwart.web.fastapi import if_match, write_responses

router = APIRouter(prefix="/v1/accounts", tags=["accounts"], route_class=MeteredRoute)


async def _key_of(tenant: Tenant, account_id: str) -> Key:
    return account_key(tenant, account_id)


IfMatch = Annotated[Precondition, Depends(if_match(_key_of))]


def _with_etag(response: Response, tenant: str, account: Account) -> Account:
    response.headers["ETag"] = etag(account_key(tenant, account.id), account.version)
    return account


async def _expected_version(
    ledger: LedgerDep, tenant: str, account_id: str, precondition: Precondition
) -> int:
    """The version to hand the ledger: the one the ETag names, else (``If-Match: *``) the
    current one, checked against the precondition."""
    if precondition.expected_version is not None:
        return precondition.expected_version
    current = await ledger.get_account(tenant, account_id)
    key = account_key(tenant, account_id)
    return precondition.require(Record(key, {}, current.version)).version


@router.post(
    "",
    status_code=201,
    summary="Create an account",
    responses={
        201: {"headers": {"ETag": {"description": "The account's ETag (for If-Match)"}}},
        **ledger_responses(ExternalIdTaken),
    },
)
async def create_account(
    *, new: NewAccount, response: Response, tenant: Tenant, ledger: LedgerDep
) -> Account:
    account = await ledger.create_account(tenant, new)
    response.headers["Location"] = f"/v1/accounts/{account.id}"
    return _with_etag(response, tenant, account)


@router.get("", summary="List accounts", responses=ledger_responses(InvalidCursor))
async def list_accounts(
    *,
    tenant: Tenant,
    ledger: LedgerDep,
    limit: Limit = 10,
    cursor: Cursor = None,
    currency: Annotated[
        str | None, Query(description="Only accounts in this currency.", examples=["USD"])
    ] = None,
    status: Annotated[AccountStatus | None, Query(description="Only open or closed.")] = None,
) -> Page[Account]:
    return await ledger.list_accounts(
        tenant, limit=limit, cursor=cursor, currency=currency, status=status
    )


@router.get(
    "/{account_id}",
    summary="Get an account",
    responses={
        200: {"headers": {"ETag": {"description": "The account's ETag (for If-Match)"}}},
        **ledger_responses(NotFound),
    },
)
async def get_account(
    *, account_id: str, response: Response, tenant: Tenant, ledger: LedgerDep
) -> Account:
    return _with_etag(response, tenant, await ledger.get_account(tenant, account_id))


@router.patch(
    "/{account_id}",
    summary="Replace an account's metadata (If-Match required)",
    responses={**write_responses(), **ledger_responses(NotFound, PreconditionFailed)},
)
async def update_account_metadata(
    *,
    account_id: str,
    update: MetadataUpdate,
    response: Response,
    tenant: Tenant,
    ledger: LedgerDep,
    precondition: IfMatch,
) -> Account:
    version = await _expected_version(ledger, tenant, account_id, precondition)
    account = await ledger.update_account_metadata(
        tenant, account_id, update.metadata, expected_version=version
    )
    return _with_etag(response, tenant, account)


@router.post(
    "/{account_id}/close",
    summary="Close an account (If-Match required)",
    responses={**write_responses(), **ledger_responses(NotFound, PreconditionFailed)},
)
async def close_account(
    *, account_id: str, response: Response, tenant: Tenant, ledger: LedgerDep, precondition: IfMatch
) -> Account:
    version = await _expected_version(ledger, tenant, account_id, precondition)
    account = await ledger.close_account(tenant, account_id, expected_version=version)
    return _with_etag(response, tenant, account)


@router.get(
    "/{account_id}/balance",
    summary="Get an account's balances",
    responses=ledger_responses(NotFound),
)
async def get_balance(account_id: str, tenant: Tenant, ledger: LedgerDep) -> Balance:
    return await ledger.get_balance(tenant, account_id)


@router.get(
    "/{account_id}/entries",
    summary="List an account's journal entries (oldest first)",
    responses=ledger_responses(NotFound, InvalidCursor),
)
async def list_entries(
    *, account_id: str, tenant: Tenant, ledger: LedgerDep, limit: Limit = 10, cursor: Cursor = None
) -> Page[Entry]:
    return await ledger.list_entries(tenant, account_id, limit=limit, cursor=cursor)


__all__ = ["router"]
