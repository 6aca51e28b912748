# Copyright 2026 stalwart contributors
"""``@idempotent``: run a sync or async function once per key, replay its result after."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import threading
import typing
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, Protocol, cast

from pydantic import TypeAdapter
from pydantic_core import to_jsonable_python

from stalwart.idempotency._core import (
    JSONValue,
    Lease,
    Replay,
    canonical_json_acyclic,
    canonical_sha256,
)
from stalwart.idempotency._errors import LeaseLost
from stalwart.idempotency._layer import AsyncIdempotency, Idempotency
from stalwart.storage import InvalidRecord, Key, StorageError, StoreUnavailable

logger = logging.getLogger("stalwart.idempotency")


class Codec(Protocol):
    """Turns a function's result into a JSON value for the store, and back (typed)."""

    def encode(self, value: Any) -> JSONValue:
        """Return a JSON-compatible value (dicts, lists, str, numbers, bool, None)."""
        ...

    def decode(self, stored: JSONValue) -> Any:
        """Rebuild the result from what :meth:`encode` returned."""
        ...


class JsonCodec:
    """The default codec: pydantic's JSON mode for the function's return annotation.

    Models, dataclasses, datetimes, UUIDs, enums... round-trip to the annotated type.

    >>> from datetime import date
    >>> codec = JsonCodec(dict[str, date])
    >>> codec.decode(codec.encode({"due": date(2026, 1, 2)}))
    {'due': datetime.date(2026, 1, 2)}
    """

    __slots__ = ("_adapter",)

    def __init__(self, type_: Any = Any) -> None:
        self._adapter: TypeAdapter[Any] = TypeAdapter(type_)

    def encode(self, value: Any) -> JSONValue:
        """JSON-mode dump of ``value``."""
        return self._adapter.dump_python(value, mode="json")

    def decode(self, stored: JSONValue) -> Any:
        """Validate ``stored`` back into the annotated type."""
        return self._adapter.validate_python(stored)


def _opaque(value: Any) -> str:
    # Non-JSON arguments (a DB session, a client) take part by type only: their repr often
    # holds an address that would make every call look different.
    return f"<{type(value).__module__}.{type(value).__qualname__}>"


def jsonable(value: Any) -> JSONValue:
    """A JSON-compatible view of ``value`` for keys and fingerprints."""
    return to_jsonable_python(value, fallback=_opaque)


def _return_type(func: Callable[..., Any]) -> Any:
    try:
        hints = typing.get_type_hints(func)
    except (NameError, TypeError):  # unresolvable forward references: replay untyped JSON
        return Any
    return hints.get("return", Any)


type _KeyFn = Callable[..., str]


def _binder(
    signature: inspect.Signature,
) -> Callable[[tuple[Any, ...], dict[str, Any]], dict[str, Any]]:
    """``signature.bind(...)`` plus defaults, as a name -> value dict.

    For plain positional-or-keyword parameters a call that binds cleanly is mapped directly
    (``Signature.bind`` costs several microseconds per call); anything else, including every
    call ``bind`` would reject, goes through ``bind`` so the errors stay the same.
    """

    def slow(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return dict(bound.arguments)

    parameters = signature.parameters.values()
    if any(p.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD for p in parameters):
        return slow
    names = tuple(signature.parameters)
    defaults = {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}
    count = len(names)
    allowed = frozenset(names)

    def fast(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        arguments = dict(zip(names, args, strict=False))
        if len(args) > count or (
            kwargs and (not kwargs.keys() <= allowed or not kwargs.keys().isdisjoint(arguments))
        ):
            return slow(args, kwargs)  # too many, unknown or repeated: bind's TypeError
        arguments.update(kwargs)
        if len(arguments) < count:
            missing = [name for name in names if name not in arguments]
            if not defaults.keys() >= set(missing):
                return slow(args, kwargs)  # a required argument is missing
            arguments.update((name, defaults[name]) for name in missing)
        return arguments

    return fast


def _make_identity(
    func: Callable[..., Any],
    *,
    namespace: str,
    key: _KeyFn | None,
    key_args: Sequence[str] | None,
    fingerprint_args: Sequence[str] | None,
    layer: Idempotency | AsyncIdempotency,
) -> Callable[[tuple[Any, ...], dict[str, Any]], tuple[Key, str]]:
    signature = inspect.signature(func)
    for names in (key_args or (), fingerprint_args or ()):
        unknown = set(names) - set(signature.parameters)
        if unknown:
            raise TypeError(f"{func.__qualname__} has no parameters {sorted(unknown)}")
    bind = _binder(signature)

    def identity(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Key, str]:
        arguments = bind(args, kwargs)
        # jsonable() builds new containers and refuses cyclic input: its output is acyclic.
        if key is not None:
            client_key = key(*args, **kwargs)
        elif key_args is not None:
            client_key = canonical_json_acyclic([jsonable(arguments[name]) for name in key_args])
        else:
            client_key = canonical_json_acyclic(jsonable(arguments))
        chosen = (
            arguments
            if fingerprint_args is None
            else {name: arguments[name] for name in fingerprint_args}
        )
        fingerprint = canonical_sha256(jsonable(chosen))
        return layer.key(namespace, client_key), fingerprint

    return identity


class _Beat:
    """Holds the current lease while a heartbeat may replace it."""

    __slots__ = ("lease", "lost")

    def __init__(self, lease: Lease) -> None:
        self.lease = lease
        self.lost = False


def _heartbeat(
    layer: Idempotency, lease: Lease, every: float | None
) -> contextlib.AbstractContextManager[_Beat]:
    # Without a heartbeat a plain nullcontext: a generator context manager costs microseconds.
    if every is None:
        return contextlib.nullcontext(_Beat(lease))
    return _heartbeating(layer, lease, every)


@contextlib.contextmanager
def _heartbeating(layer: Idempotency, lease: Lease, every: float) -> Iterator[_Beat]:
    beat = _Beat(lease)
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every):
            try:
                beat.lease = layer.heartbeat(beat.lease)
            except LeaseLost:
                beat.lost = True
                return
            except StorageError:
                logger.warning(
                    "idempotency heartbeat failed for %s; will retry",
                    lease.key.partition,
                    exc_info=True,
                )

    thread = threading.Thread(target=loop, name="stalwart-idempotency-heartbeat", daemon=True)
    thread.start()
    try:
        yield beat
    finally:
        # Joined, not abandoned: a heartbeat in flight must land before we use the version.
        stop.set()
        thread.join()


def _heartbeat_async(
    layer: AsyncIdempotency, lease: Lease, every: float | None
) -> contextlib.AbstractAsyncContextManager[_Beat]:
    if every is None:
        return contextlib.nullcontext(_Beat(lease))
    return _heartbeating_async(layer, lease, every)


@contextlib.asynccontextmanager
async def _heartbeating_async(
    layer: AsyncIdempotency, lease: Lease, every: float
) -> typing.AsyncIterator[_Beat]:
    beat = _Beat(lease)
    stop = asyncio.Event()

    async def loop() -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
            if stop.is_set():
                return
            try:
                beat.lease = await layer.heartbeat(beat.lease)
            except LeaseLost:
                beat.lost = True
                return
            except StorageError:
                logger.warning(
                    "idempotency heartbeat failed for %s; will retry",
                    lease.key.partition,
                    exc_info=True,
                )

    task = asyncio.create_task(loop())
    try:
        yield beat
    finally:
        stop.set()
        await task


def _not_recorded(lease: Lease, exc: StoreUnavailable) -> None:
    # The work is done: hand the result back rather than lose it. The claim stays in progress
    # until its lease expires; a duplicate after that runs again.
    logger.error(
        "idempotency result for %s not recorded (store unavailable: %s); the claim stays in "
        "progress until its lease expires",
        lease.key.partition,
        exc,
    )


def _store_failed(lease: Lease, exc: InvalidRecord) -> None:
    logger.warning(
        "idempotency result for %s not stored (%s); the claim is released", lease.key.partition, exc
    )


type _Identity = Callable[[tuple[Any, ...], dict[str, Any]], tuple[Key, str]]


def _sync_wrapper[**P, R](
    func: Callable[P, R],
    layer: Idempotency,
    identity: _Identity,
    codec: Codec,
    heartbeat_every: float | None,
) -> Callable[P, R]:
    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        record_key, fingerprint = identity(args, kwargs)
        claimed = layer.claim(record_key, fingerprint)
        if isinstance(claimed, Replay):
            return cast("R", codec.decode(claimed.result))
        with _heartbeat(layer, claimed, heartbeat_every) as beat:
            try:
                result = func(*args, **kwargs)
                encoded = codec.encode(result)
            except BaseException:
                with contextlib.suppress(LeaseLost, StoreUnavailable):
                    layer.release(beat.lease)
                raise
        try:
            layer.complete(beat.lease, encoded)
        except InvalidRecord as exc:
            _store_failed(beat.lease, exc)
            with contextlib.suppress(LeaseLost, StoreUnavailable):
                layer.release(beat.lease)
        except LeaseLost as exc:
            exc.result = result
            raise
        except StoreUnavailable as exc:
            _not_recorded(beat.lease, exc)
        return result

    return wrapper


def _async_wrapper(
    func: Callable[..., Awaitable[Any]],
    layer: AsyncIdempotency,
    identity: _Identity,
    codec: Codec,
    heartbeat_every: float | None,
) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        record_key, fingerprint = identity(args, kwargs)
        claimed = await layer.claim(record_key, fingerprint)
        if isinstance(claimed, Replay):
            return codec.decode(claimed.result)
        async with _heartbeat_async(layer, claimed, heartbeat_every) as beat:
            try:
                result = await func(*args, **kwargs)
                encoded = codec.encode(result)
            except BaseException:
                with contextlib.suppress(LeaseLost, StoreUnavailable):
                    await layer.release(beat.lease)
                raise
        try:
            await layer.complete(beat.lease, encoded)
        except InvalidRecord as exc:
            _store_failed(beat.lease, exc)
            with contextlib.suppress(LeaseLost, StoreUnavailable):
                await layer.release(beat.lease)
        except LeaseLost as exc:
            exc.result = result
            raise
        except StoreUnavailable as exc:
            _not_recorded(beat.lease, exc)
        return result

    return wrapper


class IdempotentDecorator(Protocol):
    """What :func:`idempotent` returns: keeps the decorated function's exact signature."""

    def __call__[**P, R](self, func: Callable[P, R], /) -> Callable[P, R]:
        """Wrap ``func``."""
        ...


def idempotent(
    layer: Idempotency | AsyncIdempotency,
    *,
    key: Callable[..., str] | None = None,
    key_args: Sequence[str] | None = None,
    namespace: str | None = None,
    codec: Codec | None = None,
    fingerprint_args: Sequence[str] | None = None,
    heartbeat_every: float | None = None,
) -> IdempotentDecorator:
    """Run the decorated function once per key; later calls get the stored result back.

    The key is ``key(*args, **kwargs)``, else the JSON of the ``key_args`` arguments, else of
    all arguments, scoped by ``namespace`` (default: the function's qualified name). The
    payload fingerprint covers ``fingerprint_args`` (default: all arguments); the same key with
    another payload raises :class:`FingerprintMismatch`. A concurrent duplicate raises
    :class:`InProgress`. Exceptions are not stored: the claim is released and the error
    re-raised, so a retry runs again. Sync functions need an :class:`Idempotency`, async ones
    an :class:`AsyncIdempotency`. With ``heartbeat_every`` the lease is extended in the
    background while the function runs.

    >>> from stalwart.storage import open_store
    >>> layer = Idempotency(open_store("sqlite:///:memory:?table=jobs"))
    >>> @idempotent(layer, key_args=["order_id"])
    ... def charge(order_id: str, cents: int) -> dict[str, int]:
    ...     return {"charged": cents}
    >>> charge("o-1", 500), charge("o-1", 500)
    ({'charged': 500}, {'charged': 500})
    """
    if key is not None and key_args is not None:
        raise TypeError("pass either key or key_args, not both")

    def decorate[**P, R](func: Callable[P, R], /) -> Callable[P, R]:
        the_codec = codec or JsonCodec(_return_type(func))
        identity = _make_identity(
            func,
            namespace=namespace or f"{func.__module__}.{func.__qualname__}",
            key=key,
            key_args=key_args,
            fingerprint_args=fingerprint_args,
            layer=layer,
        )
        if inspect.iscoroutinefunction(func):
            if not isinstance(layer, AsyncIdempotency):
                raise TypeError(f"async function {func.__qualname__} needs an AsyncIdempotency")
            return cast(
                "Callable[P, R]",
                _async_wrapper(
                    cast("Callable[..., Awaitable[Any]]", func),
                    layer,
                    identity,
                    the_codec,
                    heartbeat_every,
                ),
            )
        if not isinstance(layer, Idempotency):
            raise TypeError(f"sync function {func.__qualname__} needs an Idempotency")
        return _sync_wrapper(func, layer, identity, the_codec, heartbeat_every)

    return decorate
