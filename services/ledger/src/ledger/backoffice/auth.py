"""Login and logout (blueprint ``auth``)."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from ledger.backoffice.context import backoffice
from ledger.backoffice.operators import LoginRefused, log_in

blueprint = Blueprint("auth", __name__)


def _safe_next(target: str | None) -> str:
    """Where to go after login: only a path of this app (never another site)."""
    if target and target.startswith("/") and not target.startswith("//"):
        return request.script_root + target
    return url_for("accounts.list_accounts")


@blueprint.route("/login", methods=["GET", "POST"])
def login() -> Response | str | tuple[str, int]:
    if request.method == "GET":
        return render_template("login.html", next=request.args.get("next", ""))
    state = backoffice()
    username = request.form.get("username", "").strip().lower()
    try:
        found = log_in(
            state.store,
            username,
            request.form.get("password", ""),
            max_failures=state.settings.login_attempts,
            lockout_s=state.settings.lockout_minutes * 60,
        )
    except LoginRefused as refused:
        if refused.locked:
            message = (
                f"Too many failed attempts: this username is locked for "
                f"{state.settings.lockout_minutes:g} minutes."
            )
        else:
            message = "Wrong username or password."
        flash(message, "error")
        page = render_template("login.html", next=request.form.get("next", ""), username=username)
        return page, 429 if refused.locked else 401
    session.clear()  # a fresh session on login (no fixation)
    session.permanent = True
    session["username"] = found.username
    return redirect(_safe_next(request.form.get("next")))


@blueprint.post("/logout")
def logout() -> Response:
    session.clear()
    flash("Signed out.", "info")
    return redirect(url_for("auth.login"))
