"""The HTTP API under ``/v1``: every route needs an API key (``Authorization: Bearer``)."""

from fastapi import APIRouter, Depends

from ledger.api import accounts, transfers
from ledger.api.deps import AUTH_RESPONSES, current_tenant, request_metrics
from stalwart.web import problem_responses

router = APIRouter(
    prefix="/v1",
    dependencies=[Depends(current_tenant), Depends(request_metrics)],
    responses=problem_responses(*AUTH_RESPONSES),
)
router.include_router(accounts.router)
router.include_router(transfers.router)

__all__ = ["router"]
