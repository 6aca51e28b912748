# Copyright 2026 stalwart contributors
"""Exception types mapped to problem documents, looked up by MRO (framework-neutral)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from stalwart.web._errors import HttpProblem
from stalwart.web._openapi import problem_responses

type DetailOf = Callable[[Any], str | None]
type HeadersOf = Callable[[Any], Mapping[str, str]]
type ExtensionsOf = Callable[[Any], Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class ErrorRule:
    """How one exception type becomes a problem document.

    ``detail`` is a fixed string or a function of the exception (``str`` exposes its message:
    only for errors whose messages are written for clients); ``None`` sends no detail, so no
    internals leak by default. ``headers`` and ``extensions`` are functions of the exception.
    ``when_conditional`` replaces this rule when the request carried ``If-Match`` (a
    ``VersionConflict`` is then a failed precondition, 412, not a conflict, 409).

    >>> ErrorRule(409, "already-exists").problem(KeyError("k"), conditional=False).status
    409
    """

    status: int
    code: str
    type_: str = "about:blank"
    title: str | None = None
    detail: str | DetailOf | None = None
    headers: HeadersOf | None = None
    extensions: ExtensionsOf | None = None
    when_conditional: ErrorRule | None = None

    def problem(self, exc: BaseException, *, conditional: bool) -> HttpProblem:
        """The :class:`HttpProblem` this rule makes of ``exc``."""
        if conditional and self.when_conditional is not None:
            return self.when_conditional.problem(exc, conditional=False)
        detail = self.detail(exc) if callable(self.detail) else self.detail
        return HttpProblem(
            self.status,
            self.code,
            detail,
            title=self.title,
            type_=self.type_,
            headers=self.headers(exc) if self.headers is not None else None,
            extensions=self.extensions(exc) if self.extensions is not None else None,
        )

    def example(self) -> HttpProblem:
        """A representative problem for OpenAPI (a fixed ``detail`` only; no headers)."""
        return HttpProblem(
            self.status,
            self.code,
            self.detail if isinstance(self.detail, str) else None,
            title=self.title,
            type_=self.type_,
        )


class ErrorRegistry:
    """Exception types mapped to :class:`ErrorRule`, looked up along the exception's MRO (the
    most specific registered class wins). Register before or after installing the web kit.

    >>> class InsufficientFunds(Exception): ...
    >>> errors = ErrorRegistry()
    >>> errors.register(InsufficientFunds, status=422, code="insufficient-funds",
    ...                 type_="https://example.com/problems/insufficient-funds")
    >>> errors.problem_for(InsufficientFunds("low"), conditional=False).code
    'insufficient-funds'
    >>> errors.problem_for(ValueError("x"), conditional=False) is None
    True
    """

    def __init__(self, rules: Mapping[type[BaseException], ErrorRule] | None = None) -> None:
        self._rules: dict[type[BaseException], ErrorRule] = dict(rules or {})

    def __repr__(self) -> str:
        return f"<ErrorRegistry {len(self._rules)} rules>"

    def register(
        self,
        exc_type: type[BaseException],
        *,
        status: int,
        code: str,
        type_: str = "about:blank",
        title: str | None = None,
        detail: str | DetailOf | None = None,
        headers: HeadersOf | None = None,
        extensions: ExtensionsOf | None = None,
        when_conditional: ErrorRule | None = None,
    ) -> None:
        """Map ``exc_type`` (and its subclasses, unless they have their own rule)."""
        self.add(
            exc_type,
            ErrorRule(status, code, type_, title, detail, headers, extensions, when_conditional),
        )

    def add(self, exc_type: type[BaseException], rule: ErrorRule) -> None:
        """Map ``exc_type`` to an already built ``rule`` (replacing any previous one)."""
        HttpProblem(rule.status, rule.code)  # a status outside HTTPStatus fails here, not later
        self._rules[exc_type] = rule

    def rule_for(self, exc_type: type[BaseException]) -> ErrorRule | None:
        """The rule of the most specific registered class in ``exc_type``'s MRO."""
        return next((self._rules[cls] for cls in exc_type.__mro__ if cls in self._rules), None)

    def problem_for(self, exc: BaseException, *, conditional: bool) -> HttpProblem | None:
        """``exc`` as a problem, or None when no rule covers its type."""
        rule = self.rule_for(type(exc))
        return None if rule is None else rule.problem(exc, conditional=conditional)

    def copy(self) -> ErrorRegistry:
        """An independent registry with the same rules."""
        return ErrorRegistry(self._rules)

    def responses(self, *exc_types: type[BaseException]) -> dict[int | str, dict[str, Any]]:
        """OpenAPI ``responses`` for the routes that raise ``exc_types`` (FastAPI's
        ``responses=``): each type's problem, and its conditional variant, with an example."""
        examples: list[HttpProblem] = []
        for exc_type in exc_types:
            rule = self.rule_for(exc_type)
            if rule is None:
                raise LookupError(f"no error rule covers {exc_type.__qualname__}")
            examples.append(rule.example())
            if rule.when_conditional is not None:
                examples.append(rule.when_conditional.example())
        return problem_responses(*examples)
