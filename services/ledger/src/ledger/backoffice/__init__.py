"""The ledger's back-office: a server-rendered Flask app for operators (no JavaScript needed).

``create_backoffice(settings)`` builds it (an app factory with the blueprints ``auth``,
``accounts``, ``transfers``, ``imports`` and ``reports``); ``ledger serve`` mounts it into the
API's process at ``/admin`` (:func:`ledger.app.create_app`). It works on a
:class:`~ledger.service.SyncLedger` over a sync store opened from the same settings.
"""

from __future__ import annotations

from typing import Final

BACKOFFICE_PATH: Final = "/admin"
"""Where ``ledger serve`` mounts the back-office."""

from ledger.backoffice.factory import create_backoffice  # noqa: E402 - after the constant

__all__ = ["BACKOFFICE_PATH", "create_backoffice"]
