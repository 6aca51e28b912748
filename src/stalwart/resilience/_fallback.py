"""Fallback: on chosen errors, return a value or the result of a function instead."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, cast

from stalwart.resilience._decorate import is_coroutine_function

type ExceptionTypes = type[BaseException] | tuple[type[BaseException], ...]

_MISSING: Any = object()


def fallback[**P, R](
    on: ExceptionTypes,
    *,
    value: Any = _MISSING,
    call: Callable[[BaseException], Any] | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Degrade gracefully: when the call raises one of ``on``, return ``value`` or ``call(exc)``.

    For coroutine functions ``call`` may be a coroutine function too. Errors not listed in
    ``on`` (and cancellation) propagate unchanged.

    >>> @fallback(on=ConnectionError, value=[])
    ... def recommendations() -> list[str]:
    ...     raise ConnectionError("recommender down")
    >>> recommendations()
    []
    """
    if (value is _MISSING) == (call is None):
        raise TypeError("fallback needs exactly one of value= or call=")
    handler: Callable[[BaseException], Any] = call if call is not None else (lambda _exc: value)

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        if is_coroutine_function(fn, "fallback"):
            afn = cast("Callable[P, Coroutine[Any, Any, object]]", fn)

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> object:
                try:
                    return await afn(*args, **kwargs)
                except on as exc:
                    outcome = handler(exc)
                    if inspect.isawaitable(outcome):
                        return await cast("Awaitable[object]", outcome)
                    return outcome

            return cast("Callable[P, R]", async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return fn(*args, **kwargs)
            except on as exc:
                return cast("R", handler(exc))

        return wrapper

    return decorate
