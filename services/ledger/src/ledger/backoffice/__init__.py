"""The ledger's back-office: a server-rendered Flask app for operators (no JavaScript needed).

``ledger.backoffice.factory.create_backoffice(settings)`` builds it (an app factory with the
blueprints ``auth``, ``accounts``, ``transfers``, ``imports`` and ``reports``); ``ledger serve``
mounts it into the API's process at :data:`BACKOFFICE_PATH` (:func:`ledger.app.create_app`).
It works on a :class:`~ledger.service.SyncLedger` over a sync store opened from the same
settings. This package itself imports nothing heavy: the CLI reads the constant and manages
operators (``ledger.backoffice.operators``) without loading Flask.
"""

from __future__ import annotations

from typing import Final

BACKOFFICE_PATH: Final = "/admin"
"""Where ``ledger serve`` mounts the back-office."""

__all__ = ["BACKOFFICE_PATH"]
