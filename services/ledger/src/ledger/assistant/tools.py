"""The assistant's tools: read the caller's ledger, and propose (never make) a transfer.

Every tool acts as ``ctx.deps.tenant``, the tenant of the caller's API key; no tool takes a
tenant from the model, so no prompt can reach another tenant's data (their ids answer
``NotFound`` like ids that do not exist). A transfer is two steps: ``propose_transfer`` only
stores a proposal; the user confirms it with a second call (:func:`confirm_proposal`).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from pydantic import BaseModel
from pydantic_ai import ModelRetry, RunContext

from ledger.assistant.proposals import AccountSummary, Proposal, proposal_key, summary
from ledger.domain.errors import LedgerError, NotFound
from ledger.domain.models import Account, Page, Transfer
from ledger.domain.money import format_amount, parse_amount
from ledger.service import Ledger
from stalwart.agents import idempotent_tool
from stalwart.idempotency import AsyncIdempotency
from stalwart.storage import AsyncStore

PAGE: Final = 100  # the ledger's largest page
MAX_PAGES: Final = 20  # a tool reads at most 2,000 accounts or transfers: a turn stays bounded


@dataclass(frozen=True, slots=True)
class AssistantDeps:
    """What the tools act on: the caller's tenant, fixed by the API key, never by the model."""

    tenant: str
    ledger: Ledger
    store: AsyncStore


class BalanceSummary(BaseModel):
    account: AccountSummary
    posted: str
    available: str


class TransferSummary(BaseModel):
    id: str
    debit_account_id: str
    credit_account_id: str
    amount: str
    currency: str
    status: str
    created_at: str


def _transfer_summary(transfer: Transfer) -> TransferSummary:
    return TransferSummary(
        id=transfer.id,
        debit_account_id=transfer.debit_account_id,
        credit_account_id=transfer.credit_account_id,
        amount=format_amount(transfer.amount, transfer.currency),
        currency=transfer.currency,
        status=transfer.status.value,
        created_at=transfer.created_at.isoformat(),
    )


async def _pages[T](fetch: Callable[[str | None], Awaitable[Page[T]]]) -> list[T]:
    """Every item of a listing, page by page, up to :data:`MAX_PAGES` pages."""
    items: list[T] = []
    cursor = None
    for _ in range(MAX_PAGES):
        page = await fetch(cursor)
        items.extend(page.data)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    return items


async def _matching(deps: AssistantDeps, query: str) -> list[Account]:
    """The tenant's accounts whose id or external id is ``query``, or whose name contains it."""
    wanted = query.strip().casefold()
    accounts = await _pages(
        lambda cursor: deps.ledger.list_accounts(deps.tenant, limit=PAGE, cursor=cursor)
    )
    exact = [a for a in accounts if wanted in {a.id.casefold(), (a.external_id or "").casefold()}]
    return exact or [a for a in accounts if wanted and wanted in a.name.casefold()]


async def _one_account(deps: AssistantDeps, query: str) -> Account:
    found = await _matching(deps, query)
    if len(found) != 1:
        names = ", ".join(f"{a.name} ({a.id})" for a in found[:5])
        raise ModelRetry(
            f"no account matches {query!r}" if not found else f"{query!r} matches {names}"
        )
    return found[0]


async def find_accounts(ctx: RunContext[AssistantDeps], query: str) -> list[AccountSummary]:
    """Find the caller's accounts by id, external id, or a part of their name."""
    return [summary(account) for account in await _matching(ctx.deps, query)]


async def get_balance(ctx: RunContext[AssistantDeps], account: str) -> BalanceSummary:
    """The balance of one of the caller's accounts (by id, external id or name)."""
    found = await _one_account(ctx.deps, account)
    balance = await ctx.deps.ledger.get_balance(ctx.deps.tenant, found.id)
    return BalanceSummary(
        account=summary(found),
        posted=format_amount(balance.posted, balance.currency),
        available=format_amount(balance.available, balance.currency),
    )


async def list_transfers(
    ctx: RunContext[AssistantDeps], account: str, count: int = 5
) -> list[TransferSummary]:
    """The last ``count`` (1-20) transfers of one of the caller's accounts, newest first."""
    found = await _one_account(ctx.deps, account)
    deps = ctx.deps
    transfers = await _pages(  # oldest first: the last ones are at the end
        lambda cursor: deps.ledger.list_transfers(
            deps.tenant, account_id=found.id, limit=PAGE, cursor=cursor
        )
    )
    latest = transfers[-max(1, min(count, 20)) :]
    return [_transfer_summary(t) for t in reversed(latest)]


async def explain_transfer(ctx: RunContext[AssistantDeps], transfer_id: str) -> str:
    """Explain one of the caller's transfers in a sentence."""
    try:
        transfer = await ctx.deps.ledger.get_transfer(ctx.deps.tenant, transfer_id)
    except NotFound as exc:
        raise ModelRetry(f"no transfer {transfer_id!r}") from exc
    amount = format_amount(transfer.amount, transfer.currency)
    kind = "two-phase" if transfer.pending else "immediate"
    return (
        f"Transfer {transfer.id} ({kind}, {transfer.status.value}) moved {amount} "
        f"{transfer.currency} from {transfer.debit_account_id} to {transfer.credit_account_id} "
        f"on {transfer.created_at:%Y-%m-%d %H:%M} UTC"
        + (f"; it was reversed by {transfer.reversed_by}" if transfer.reversed_by else "")
        + "."
    )


def proposal_tool(layer: AsyncIdempotency) -> Callable[..., Awaitable[Proposal]]:
    """``propose_transfer``, once per (conversation, source, destination, amount)."""

    @idempotent_tool(layer, name="propose_transfer")
    async def propose_transfer(
        ctx: RunContext[AssistantDeps], source: str, destination: str, amount: str
    ) -> Proposal:
        """Propose moving ``amount`` (decimal text in the accounts' currency, e.g. "12.50")
        from ``source`` to ``destination``; the user must confirm it before anything moves."""
        deps = ctx.deps
        debit, credit = await _one_account(deps, source), await _one_account(deps, destination)
        if debit.currency != credit.currency:
            raise ModelRetry(
                f"{debit.name} is in {debit.currency}, {credit.name} in {credit.currency}"
            )
        try:
            minor = parse_amount(amount, debit.currency)
        except LedgerError as exc:
            raise ModelRetry(exc.detail) from exc
        proposal = Proposal(
            id=f"prop_{uuid.uuid4().hex[:20]}",
            # The run's conversation is "<tenant>:<conversation id>" (see service.py).
            conversation_id=(ctx.conversation_id or "").removeprefix(f"{deps.tenant}:"),
            source=summary(debit),
            destination=summary(credit),
            amount=minor,
            amount_text=format_amount(minor, debit.currency),
            currency=debit.currency,
        )
        await deps.store.create(proposal_key(deps.tenant, proposal.id), proposal.model_dump())
        return proposal

    return propose_transfer


__all__ = [
    "AssistantDeps",
    "explain_transfer",
    "find_accounts",
    "get_balance",
    "list_transfers",
    "proposal_tool",
]
