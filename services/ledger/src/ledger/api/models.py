"""Request and response bodies of the API that are not domain models (those live in
``ledger.domain.models`` and document themselves)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ledger.domain.models import Metadata, NewTransfer, Transfer

MAX_BATCH: int = 100


class MetadataUpdate(BaseModel):
    """New metadata for an account: replaces the whole map."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"metadata": {"tier": "gold"}}]}
    )

    metadata: Metadata


class PostTransfer(BaseModel):
    """How much of a pending transfer to post; the rest is released."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"amount": 1000}]})

    amount: int | None = Field(
        default=None,
        gt=0,
        strict=True,
        description="Amount to post, at most the pending amount; omitted: all of it.",
        examples=[1000],
    )


class NewBatch(BaseModel):
    """Linked transfers: all are created, or none (the failing one is named by ``index``)."""

    model_config = ConfigDict(extra="forbid")

    transfers: list[NewTransfer] = Field(
        min_length=1,
        max_length=MAX_BATCH,
        description=f"1 to {MAX_BATCH} transfers, as many as one store transaction holds "
        "(with the default 100 operations: up to 24 between two accounts; more is 422 "
        "batch_too_large, naming the limit).",
    )


class Batch(BaseModel):
    """The transfers a batch created, in request order."""

    model_config = ConfigDict(frozen=True)

    data: list[Transfer] = Field(description="The created transfers, in request order.")
