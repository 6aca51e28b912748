"""The assistant's proposals: a transfer it proposed, made only when the user confirms.

No pydantic-ai here: the API's routes import this module at start-up, the assistant itself
(pydantic-ai, the model SDKs) only on first use.
"""

from __future__ import annotations

import contextlib
from typing import Final

from pydantic import BaseModel, Field

from ledger.domain.errors import NotFound
from ledger.domain.models import Account, NewTransfer
from ledger.service import Ledger
from stalwart.storage import AsyncStore, Key, VersionConflict

PROPOSALS: Final = "assistant-proposal"
_ACCOUNT: Final = "acc_01J9Z3K7M2Q4R6T8V0W2X4Y6Z8"


class AccountSummary(BaseModel):
    """An account, as the assistant shows it."""

    id: str = Field(description="The account id.", examples=[_ACCOUNT])
    name: str = Field(description="Its name.", examples=["Alice wallet"])
    external_id: str | None = Field(description="Your own id for it.", examples=["alice"])
    currency: str = Field(description="Its currency.", examples=["USD"])


class Proposal(BaseModel):
    """A transfer the assistant proposed; nothing moves until the user confirms it."""

    id: str = Field(description="The proposal id.", examples=["prop_5b1e0c9d8a7f6e5d4c3b"])
    conversation_id: str = Field(
        description="The conversation it was proposed in.", examples=["conv_3f9a0c1b2d4e5f6a7b8c"]
    )
    source: AccountSummary = Field(description="The account debited.")
    destination: AccountSummary = Field(description="The account credited.")
    amount: int = Field(description="Minor units of the currency.", examples=[325])
    amount_text: str = Field(description="The amount as decimal text.", examples=["3.25"])
    currency: str = Field(description="The accounts' currency.", examples=["USD"])
    status: str = Field(
        default="proposed",
        description="proposed, or confirmed once the transfer is made.",
        examples=["proposed"],
    )
    transfer_id: str | None = Field(
        default=None, description="The transfer made by the confirmation.", examples=[None]
    )


def summary(account: Account) -> AccountSummary:
    return AccountSummary(
        id=account.id, name=account.name, external_id=account.external_id, currency=account.currency
    )


def proposal_key(tenant: str, proposal_id: str) -> Key:
    return Key(f"{PROPOSALS}:{tenant}", proposal_id)


async def _proposal_record(
    store: AsyncStore, tenant: str, conversation_id: str, proposal_id: str
) -> tuple[Proposal, int]:
    """The proposal and its record version (``NotFound`` for another tenant's or
    conversation's, or an unknown id)."""
    record = await store.get(proposal_key(tenant, proposal_id))
    proposal = None if record is None else Proposal.model_validate(record.data)
    if record is None or proposal is None or proposal.conversation_id != conversation_id:
        raise NotFound(f"no proposal {proposal_id!r} in conversation {conversation_id!r}")
    return proposal, record.version


async def get_proposal(
    store: AsyncStore, tenant: str, conversation_id: str, proposal_id: str
) -> Proposal:
    """The tenant's proposal made in the conversation (``NotFound`` otherwise)."""
    proposal, _ = await _proposal_record(store, tenant, conversation_id, proposal_id)
    return proposal


async def confirm_proposal(
    ledger: Ledger, store: AsyncStore, tenant: str, conversation_id: str, proposal_id: str
) -> tuple[Proposal, bool]:
    """Make the proposed transfer, once: ``(proposal, replayed)``. The transfer's
    idempotency key is the proposal id, so a repeated or concurrent confirm never moves the
    money twice; the proposal then records the transfer id."""
    proposal, version = await _proposal_record(store, tenant, conversation_id, proposal_id)
    new = NewTransfer(
        debit_account_id=proposal.source.id,
        credit_account_id=proposal.destination.id,
        amount=proposal.amount,
        currency=proposal.currency,
        metadata={"assistant_proposal": proposal.id},
        external_id=None,
    )
    transfer, replayed = await ledger.create_transfer(tenant, new, idempotency_key=proposal.id)
    confirmed = proposal.model_copy(update={"status": "confirmed", "transfer_id": transfer.id})
    if proposal.status != "confirmed":
        # A concurrent confirm that won recorded the same transfer (same idempotency key).
        with contextlib.suppress(VersionConflict):
            await store.replace(
                proposal_key(tenant, proposal_id), confirmed.model_dump(), expected_version=version
            )
    return confirmed, replayed


__all__ = [
    "AccountSummary",
    "Proposal",
    "confirm_proposal",
    "get_proposal",
    "proposal_key",
    "summary",
]
