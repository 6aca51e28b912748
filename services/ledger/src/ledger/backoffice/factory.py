"""``create_backoffice(settings)``: the Flask app factory of the back-office."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Final

from flask import Flask, render_template, request
from flask_wtf.csrf import (  # type: ignore[import-untyped]  # no type information
    CSRFError,
    CSRFProtect,
)
from werkzeug.exceptions import HTTPException

from ledger.backoffice import accounts, auth, imports, reports, transfers
from ledger.backoffice.context import EXTENSION, Backoffice, load_operator
from ledger.domain.errors import LedgerError, NotFound
from ledger.domain.money import format_amount
from ledger.guard import GuardedStore, store_breaker
from ledger.service import SyncLedger
from ledger.settings import LedgerSettings
from stalwart.resilience import CircuitBreaker, CircuitOpen
from stalwart.storage import Store, StoreUnavailable, open_store
from stalwart.web import default_errors

log = logging.getLogger("ledger.backoffice")
_STORE_ERRORS: Final = default_errors()
"""The web kit's table: the API's status and ``Retry-After`` for ``StoreUnavailable`` and
``CircuitOpen``, which the back-office's 503 page sends too."""
SESSION_HOURS: Final = 8
_TITLES: Final = {
    400: "Bad request",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed",
    413: "File too large",
}


def create_backoffice(
    settings: LedgerSettings | None = None,
    *,
    store: Store | None = None,
    ledger: SyncLedger | None = None,
    breaker: CircuitBreaker | None = None,
) -> Flask:
    """The back-office app on the store of ``settings`` (or ``store``, not closed here).

    Session cookies are HttpOnly, SameSite=Lax, Secure unless served on loopback (setting
    ``session_cookie_secure``), signed with ``LEDGER_SECRET_KEY``; every form carries a CSRF
    token (flask-wtf). Errors are friendly HTML pages; a 500's traceback goes to the log only.

    The store's calls go through ``breaker`` (``ledger serve`` passes the API's, so the two
    judge the store together); a back-office that opens its own store makes its own
    (:func:`~ledger.guard.store_breaker`). While the store fails, or the breaker is open,
    pages answer 503 with ``Retry-After`` and say so, and the log gets one WARNING line.
    """
    settings = settings if settings is not None else LedgerSettings()
    if store is None:
        store = open_store(settings.store_url.get_secret_value())
        breaker = breaker or store_breaker(settings.store_breaker_open_s)
    if breaker is not None:
        store = GuardedStore(store, breaker)
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.session_secret(),
        SESSION_COOKIE_NAME="ledger_backoffice",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.cookie_secure(),
        PERMANENT_SESSION_LIFETIME=timedelta(hours=SESSION_HOURS),
        MAX_CONTENT_LENGTH=256 * 1024 * 1024,  # an import file
        WTF_CSRF_TIME_LIMIT=SESSION_HOURS * 3600,  # a form stays valid as long as the session
        # The CSRF token is checked against the session; the Referer check adds nothing to it
        # and fails behind proxies that strip the header.
        WTF_CSRF_SSL_STRICT=False,
    )
    app.extensions[EXTENSION] = Backoffice(settings, store, ledger or SyncLedger(store))
    CSRFProtect(app)
    app.before_request(load_operator)
    for blueprint in (
        auth.blueprint,
        accounts.blueprint,
        transfers.blueprint,
        imports.blueprint,
        reports.blueprint,
    ):
        app.register_blueprint(blueprint)
    app.add_template_filter(format_amount, "money")
    app.register_error_handler(LedgerError, _ledger_error)
    app.register_error_handler(StoreUnavailable, _store_unavailable)
    app.register_error_handler(CircuitOpen, _store_unavailable)
    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _server_error)
    return app


def _error_page(status: int, title: str, message: str) -> tuple[str, int]:
    return render_template("error.html", status=status, title=title, message=message), status


def _ledger_error(exc: LedgerError) -> tuple[str, int]:
    # Not found is also the answer for another tenant's ids (as in the API).
    title = "Not found" if isinstance(exc, NotFound) else exc.title
    return _error_page(exc.status, title, exc.detail)


def _store_unavailable(exc: StoreUnavailable | CircuitOpen) -> tuple[str, int, dict[str, str]]:
    # The store's trouble, not the page's: one line, no traceback (the breaker logs its own
    # transitions).
    log.warning(
        "back-office request failed, the store is unavailable: %s %s: %s",
        request.method,
        request.path,
        exc,
    )
    problem = _STORE_ERRORS.problem_for(exc, conditional=False)
    assert problem is not None  # the table covers both
    page, status = _error_page(
        problem.status,
        "The ledger is unavailable",
        "The ledger's data store is not answering right now; try again in a few seconds. "
        "Submitting a form again is safe: an adjustment is never posted twice.",
    )
    return page, status, problem.headers


def _csrf_error(_exc: CSRFError) -> tuple[str, int]:
    return _error_page(
        400,
        "The form expired",
        "This form is no longer valid (it was open too long, or came from another page). "
        "Go back, reload the page and submit it again.",
    )


def _http_error(exc: HTTPException) -> HTTPException | tuple[str, int]:
    if exc.code is None or exc.code < 400:
        return exc  # a redirect
    title = _TITLES.get(exc.code, exc.name)
    custom = exc.description != type(exc).description
    if exc.code == 404 and not custom:
        message = f"There is no page at {request.path}."
    else:
        message = exc.description or title
    return _error_page(exc.code, title, message)


def _server_error(exc: Exception) -> tuple[str, int]:
    # The traceback goes to the log only, never to the page.
    log.error("back-office request failed: %s %s", request.method, request.path, exc_info=exc)
    return _error_page(
        500,
        "Something went wrong",
        "The ledger could not complete this request; the error was logged. Trying again is "
        "safe: a submitted adjustment is never posted twice.",
    )
