"""No ``/v1`` dependency runs on a worker thread: FastAPI runs a plain ``def`` dependency in
its thread pool, one thread hop per dependency per request (``POST /v1/transfers`` had three;
making them ``async`` cut its server CPU per request by 13-30%: see the commit message)."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

from fastapi.dependencies.utils import get_dependant
from fastapi.routing import APIRoute
from ledger.api import V1_DEPENDENCIES, accounts, assistant, transfers
from ledger.api.deps import MeteredRoute


def dependency_calls(dependant: Any) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from dependency_calls(sub)


def every_v1_dependency() -> Iterator[Any]:
    for depends in V1_DEPENDENCIES:
        yield depends.dependency
        yield from dependency_calls(get_dependant(path="", call=depends.dependency))
    for router in (accounts.router, transfers.router):
        for route in router.routes:
            assert isinstance(route, APIRoute)
            yield from dependency_calls(route.dependant)


def runs_on_the_event_loop(call: Any) -> bool:
    """What FastAPI awaits inline: coroutine and async generator functions, and objects with
    an ``async def __call__`` (such as ``HTTPBearer``)."""
    target = call if inspect.isfunction(call) else type(call).__call__
    return inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target)


def test_no_v1_dependency_runs_on_a_worker_thread():
    calls = list(every_v1_dependency())
    assert len(calls) > 20  # the walk found the routes' dependencies
    on_threads = {
        getattr(call, "__qualname__", repr(call))
        for call in calls
        if not runs_on_the_event_loop(call)
    }
    assert on_threads == set()


def test_every_v1_route_emits_its_metrics_document():
    """The EMF document per request comes from the route class, not a dependency: a router
    created without it would silently lose its routes' Latency."""
    routes = [
        route for r in (accounts.router, transfers.router, assistant.router) for route in r.routes
    ]
    assert len(routes) > 15
    assert [route.path for route in routes if not isinstance(route, MeteredRoute)] == []
