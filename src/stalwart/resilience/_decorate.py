"""What every resilience decorator needs to know about the function it wraps."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any, TypeGuard


def is_coroutine_function(
    fn: Callable[..., Any], decorator: str
) -> TypeGuard[Callable[..., Coroutine[Any, Any, Any]]]:
    """True for ``async def`` functions; refuses generator functions.

    A decorator around a generator function would only see the generator being *created*:
    no error of the iteration could be retried or counted, so wrapping one is a bug.

    >>> is_coroutine_function(len, "retry")
    False
    """
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        raise TypeError(
            f"{decorator} cannot wrap the generator function {fn.__qualname__}: it would only "
            "see the generator being created; wrap the code that consumes it instead"
        )
    return inspect.iscoroutinefunction(fn)
