# Copyright 2026 stalwart contributors
"""An exception that is its own problem document, framework-neutral."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stalwart.web._problem import problem


class HttpProblem(Exception):
    """Raise from any handler: the web kits answer with this problem+json document.

    ``code`` is the stable, machine-readable name of the error (the ``code`` member);
    ``type_`` its stable URI (``about:blank`` when the status says it all). ``headers`` are sent
    with the response (``Retry-After``, ``ETag``). Extension members go in ``extensions`` and
    must not reuse the standard member names.

    >>> error = HttpProblem(412, "precondition-failed", "the ETag does not match")
    >>> error.document()["code"], error.document()["status"]
    ('precondition-failed', 412)
    """

    def __init__(
        self,
        status: int,
        code: str,
        detail: str | None = None,
        *,
        title: str | None = None,
        type_: str = "about:blank",
        headers: Mapping[str, str] | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {detail}" if detail else f"{status} {code}")
        self.status = status
        self.code = code
        self.detail = detail
        self.title = title
        self.type_ = type_
        self.headers: dict[str, str] = dict(headers or {})
        self.extensions: dict[str, Any] = dict(extensions or {})
        problem(status, **self.extensions)  # reject reserved extension names now, not at render

    def document(self, **more: Any) -> dict[str, Any]:
        """The problem document, with ``more`` extension members (e.g. the request id)."""
        return problem(
            self.status,
            title=self.title,
            detail=self.detail,
            type_=self.type_,
            code=self.code,
            **self.extensions,
            **more,
        )
