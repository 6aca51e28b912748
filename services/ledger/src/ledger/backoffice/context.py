"""What every back-office view shares: the ledger, the signed-in operator, role checks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Final

from flask import abort, current_app, g, redirect, request, session, url_for
from werkzeug.wrappers import Response

from ledger.backoffice.operators import Operator, find_operator
from ledger.domain.models import Page
from ledger.service import SyncLedger
from ledger.settings import LedgerSettings
from stalwart.storage import Store

EXTENSION: Final = "ledger.backoffice"
PAGE_SIZE: Final = 25
SEARCH_SCAN_PAGES: Final = 40
"""A search that filters a list reads at most this many pages of 100 per result page."""


@dataclass(frozen=True, slots=True)
class Backoffice:
    """The back-office's state on ``app.extensions``."""

    settings: LedgerSettings
    store: Store
    ledger: SyncLedger


def backoffice() -> Backoffice:
    state: Backoffice = current_app.extensions[EXTENSION]
    return state


def ledger() -> SyncLedger:
    return backoffice().ledger


def operator() -> Operator:
    """The signed-in operator (only inside a :func:`login_required` view)."""
    found: Operator = g.operator
    return found


def load_operator() -> None:
    """Before each request: the session's operator, read again from the store, so a deleted
    operator or a changed role takes effect at once. Not for the stylesheet and other static
    files: they need no operator (and the error pages stay styled while the store is down)."""
    g.operator = None
    if request.endpoint == "static":
        return
    username = session.get("username")
    if isinstance(username, str):
        g.operator = find_operator(backoffice().store, username)
        if g.operator is None:
            session.clear()


def filtered_scan[T](
    list_page: Callable[[str | None], Page[T]], keep: Callable[[T], bool], cursor: str | None
) -> tuple[list[T], str | None]:
    """About one result page of the items ``keep`` accepts, from ``list_page(cursor)`` pages,
    reading at most :data:`SEARCH_SCAN_PAGES` of them; the cursor continues the scan."""
    found: list[T] = []
    for _ in range(SEARCH_SCAN_PAGES):
        page = list_page(cursor)
        found += [item for item in page.data if keep(item)]
        cursor = page.next_cursor
        if cursor is None or len(found) >= PAGE_SIZE:
            break
    return found, cursor


type View = Callable[..., Response | str | tuple[str, int]]


def login_required(view: View) -> View:
    """Send anyone not signed in to the login page (then back here)."""

    @wraps(view)
    def guarded(*args: object, **kwargs: object) -> Response | str | tuple[str, int]:
        if g.get("operator") is None:
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return guarded


def operator_required(view: View) -> View:
    """Signed in AND role ``operator``: a viewer gets the 403 page."""

    @login_required
    @wraps(view)
    def guarded(*args: object, **kwargs: object) -> Response | str | tuple[str, int]:
        if not operator().can_write:
            abort(403, "Your role (viewer) can read but not change anything.")
        return view(*args, **kwargs)

    return guarded
