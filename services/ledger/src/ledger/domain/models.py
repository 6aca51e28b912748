"""The ledger's data models (pydantic v2): what the facade takes and returns, and what the API
documents -- every field has a description and examples.

Amounts are ``int`` minor units of the currency (``1234`` USD is $12.34); times are UTC.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Final

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from ledger.domain.errors import InvalidRequest
from ledger.domain.money import MAX_AMOUNT, check_currency

MAX_PAGE_LIMIT: Final = 100
MAX_TIMEOUT_S: Final = 30 * 86_400


class NormalBalance(StrEnum):
    """The side that increases an account's balance (credit for what the ledger owes, e.g. a
    customer wallet; debit for what it holds or is owed, e.g. cash at a bank)."""

    DEBIT = "debit"
    CREDIT = "credit"


class AccountStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class TransferStatus(StrEnum):
    PENDING = "pending"
    POSTED = "posted"
    VOIDED = "voided"


class Side(StrEnum):
    DEBIT = "debit"
    CREDIT = "credit"


class EntryKind(StrEnum):
    """What a journal entry records: a reservation (``pending``), a direct post (``posted``),
    the resolution of a reservation (``post``, ``void``, ``expire``)."""

    PENDING = "pending"
    POSTED = "posted"
    POST = "post"
    VOID = "void"
    EXPIRE = "expire"


def _currency(code: str) -> str:
    try:
        return check_currency(code)
    except InvalidRequest as exc:
        raise ValueError(exc.detail) from None  # pydantic reports ValueErrors as field errors


Currency = Annotated[
    str,
    AfterValidator(_currency),
    Field(
        min_length=3,
        max_length=3,
        description="ISO 4217 currency code; amounts are integers in its minor units.",
        examples=["USD"],
    ),
]
Metadata = Annotated[
    dict[Annotated[str, Field(min_length=1, max_length=40)], Annotated[str, Field(max_length=500)]],
    Field(
        max_length=50,
        description="Your own key-value pairs (at most 50; keys up to 40, values up to 500 "
        "characters).",
        examples=[{"customer_id": "cus_1042"}],
    ),
]
ExternalId = Annotated[
    str | None,
    Field(
        default=None,
        min_length=1,
        max_length=128,
        description="Your own identifier for this object.",
        examples=["wallet-cus_1042"],
    ),
]
Amount = Annotated[
    int,
    Field(
        gt=0,
        le=MAX_AMOUNT,
        description="Integer amount in the currency's minor units (1234 USD is $12.34).",
        examples=[1234],
    ),
]
Created = Annotated[
    datetime, Field(description="When it was created (UTC).", examples=["2026-12-03T14:00:00Z"])
]
_ACCOUNT_ID = "0193a0d2-7a10-7cc1-9e2b-3f4f0c6f1a20"
_TRANSFER_ID = "5b2a1f0e-8c43-5d7e-9a61-2f0c4e7d8b19"


class AccountFlags(BaseModel):
    """Balance constraints enforced on every transfer (TigerBeetle's flags)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    debits_must_not_exceed_credits: bool = Field(
        default=False,
        description="Refuse any transfer after which pending plus posted debits exceed posted "
        "credits (a credit-normal account that must never go negative, e.g. a wallet).",
        examples=[True],
    )
    credits_must_not_exceed_debits: bool = Field(
        default=False,
        description="Refuse any transfer after which pending plus posted credits exceed posted "
        "debits (a debit-normal account that must never go negative).",
        examples=[False],
    )


class NewAccount(BaseModel):
    """An account to create."""

    model_config = ConfigDict(extra="forbid")

    currency: Currency
    name: str = Field(
        min_length=1, max_length=200, description="A name for people.", examples=["Alice wallet"]
    )
    external_id: ExternalId
    metadata: Metadata = Field(default_factory=dict)
    normal_balance: NormalBalance = Field(
        default=NormalBalance.CREDIT,
        description="The side that increases the balance.",
        examples=["credit"],
    )
    flags: AccountFlags = Field(
        default_factory=AccountFlags, description="Balance constraints (immutable)."
    )


class Account(BaseModel):
    """An account: who holds value in one currency. Closed accounts stay readable."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="The account id.", examples=[_ACCOUNT_ID])
    currency: Currency
    name: str = Field(description="A name for people.", examples=["Alice wallet"])
    external_id: ExternalId
    metadata: Metadata
    normal_balance: NormalBalance = Field(
        description="The side that increases the balance.", examples=["credit"]
    )
    flags: AccountFlags = Field(description="Balance constraints.")
    status: AccountStatus = Field(
        description="open, or closed (no new transfers).", examples=["open"]
    )
    created_at: Created
    version: int = Field(
        description="Optimistic-lock version: send it back (as the ETag) to update or close.",
        examples=[1],
    )


class Totals(BaseModel):
    """The four running totals of an account, in minor units."""

    model_config = ConfigDict(frozen=True)

    debits_pending: int = Field(description="Debits reserved by pending transfers.", examples=[0])
    debits_posted: int = Field(description="Debits of posted transfers.", examples=[2500])
    credits_pending: int = Field(description="Credits reserved by pending transfers.", examples=[0])
    credits_posted: int = Field(description="Credits of posted transfers.", examples=[10000])


class Balance(Totals):
    """An account's balances (Modern Treasury's definitions), signed by its normal balance."""

    account_id: str = Field(description="The account.", examples=[_ACCOUNT_ID])
    currency: Currency
    normal_balance: NormalBalance = Field(description="The increasing side.", examples=["credit"])
    posted: int = Field(
        description="Posted balance: posted credits minus posted debits (reversed for a "
        "debit-normal account).",
        examples=[7500],
    )
    pending: int = Field(
        description="Pending balance: like posted, counting pending transfers too.",
        examples=[7500],
    )
    available: int = Field(
        description="Available balance: posted, minus pending transfers that decrease it "
        "(what can be spent now).",
        examples=[7500],
    )


class Entry(BaseModel):
    """One line of an account's journal: one change of its totals by one transfer."""

    model_config = ConfigDict(frozen=True)

    account_id: str = Field(description="The account.", examples=[_ACCOUNT_ID])
    seq: int = Field(
        description="Position in the account's journal: 1, 2, 3... without gaps.", examples=[1]
    )
    transfer_id: str = Field(description="The transfer.", examples=[_TRANSFER_ID])
    side: Side = Field(description="Which side of the account changed.", examples=["debit"])
    kind: EntryKind = Field(description="What happened.", examples=["posted"])
    amount: int = Field(description="The transfer's amount at this step.", examples=[2500])
    pending_delta: int = Field(description="Change of this side's pending total.", examples=[0])
    posted_delta: int = Field(description="Change of this side's posted total.", examples=[2500])
    balance_after: Totals = Field(description="The account's totals after this entry.")
    created_at: Created


class NewTransfer(BaseModel):
    """A transfer to create: ``amount`` moves from the debit account to the credit account."""

    model_config = ConfigDict(extra="forbid")

    debit_account_id: str = Field(
        min_length=1, max_length=64, description="Account debited.", examples=[_ACCOUNT_ID]
    )
    credit_account_id: str = Field(
        min_length=1,
        max_length=64,
        description="Account credited.",
        examples=["0193a0d2-7a10-7cc1-9e2b-3f4f0c6f1a21"],
    )
    # A JSON integer, never "100", 100.0 or true: money is never parsed from another type.
    amount: Annotated[Amount, Field(strict=True)]
    currency: Currency
    metadata: Metadata = Field(default_factory=dict)
    external_id: ExternalId
    pending: bool = Field(
        default=False,
        description="Two-phase: reserve the amount now, post or void it later.",
        examples=[False],
    )
    timeout_s: int | None = Field(
        default=None,
        ge=1,
        le=MAX_TIMEOUT_S,
        description="For a pending transfer: void it automatically after this many seconds.",
        examples=[3600],
    )

    @model_validator(mode="after")
    def _timeout_needs_pending(self) -> NewTransfer:
        if self.timeout_s is not None and not self.pending:
            msg = "timeout_s applies to pending transfers only (set pending: true)"
            raise ValueError(msg)
        return self


class Transfer(BaseModel):
    """A transfer between two accounts of one currency; immutable once posted or voided
    (except ``reversed_by``)."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(
        description="Derived from your idempotency key: a retry finds the same transfer.",
        examples=[_TRANSFER_ID],
    )
    debit_account_id: str = Field(description="Account debited.", examples=[_ACCOUNT_ID])
    credit_account_id: str = Field(
        description="Account credited.", examples=["0193a0d2-7a10-7cc1-9e2b-3f4f0c6f1a21"]
    )
    amount: Amount
    currency: Currency
    status: TransferStatus = Field(
        description="pending (reserved), posted or voided.", examples=["posted"]
    )
    posted_amount: int = Field(
        description="Amount posted (a pending transfer may be posted partly).", examples=[1234]
    )
    pending: bool = Field(description="Created as a two-phase transfer.", examples=[False])
    timeout_s: int | None = Field(
        description="Timeout of a pending transfer, in seconds.", examples=[None]
    )
    expires_at: datetime | None = Field(
        description="When a pending transfer with a timeout is voided automatically.",
        examples=[None],
    )
    metadata: Metadata
    external_id: ExternalId
    reverses: str | None = Field(
        description="For a reversal: the transfer it reverses.", examples=[None]
    )
    reversed_by: str | None = Field(
        description="The reversal of this transfer, once reversed.", examples=[None]
    )
    batch_id: str | None = Field(description="The linked batch it belongs to.", examples=[None])
    created_at: Created
    resolved_at: datetime | None = Field(
        description="When a pending transfer was posted, voided or expired.", examples=[None]
    )


class Page[T](BaseModel):
    """One page of a list, newest-last unless a list says otherwise (Stripe-style)."""

    model_config = ConfigDict(frozen=True)

    data: list[T] = Field(description="The objects of this page.")
    has_more: bool = Field(description="Whether another page follows.", examples=[False])
    next_cursor: str | None = Field(
        description="Pass as ``cursor`` to get the next page; null on the last page.",
        examples=[None],
    )
