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

from pydantic import PydanticSchemaGenerationError, TypeAdapter
from pydantic_core import to_jsonable_python

from stalwart.idempotency._core import (
    IdempotencyPolicy,
    JSONValue,
    Lease,
    Plan,
    Replay,
    canonical_json,
    canonical_sha256,
    check_key,
    complete_plan,
    not_stored_plan,
)
from stalwart.idempotency._errors import InvalidIdempotencyKey, LeaseLost
from stalwart.idempotency._layer import AsyncIdempotency, Idempotency, run_plan, run_plan_async
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


def default_codec(func: Callable[..., Any]) -> JsonCodec:
    """The :class:`JsonCodec` of ``func``'s return annotation, which a replay is rebuilt as.

    The annotation is required: without it a replay would return the result's JSON form (a
    ``datetime`` would come back as a ``str``), not what the first call returned.
    """
    name = getattr(func, "__qualname__", repr(func))
    try:
        hints = typing.get_type_hints(func)
    except (NameError, TypeError) as exc:
        raise TypeError(
            f"@idempotent cannot resolve the return annotation of {name} ({exc}); define the "
            "type before decorating, or pass codec=..."
        ) from None
    if "return" not in hints:
        raise TypeError(
            f"@idempotent needs a return annotation on {name}: a replay is rebuilt as that "
            "type (-> Any replays plain JSON), or pass codec=... with encode() and decode()"
        )
    try:
        return JsonCodec(hints["return"])
    except PydanticSchemaGenerationError:
        raise TypeError(
            f"@idempotent cannot store the {hints['return']!r} that {name} returns with the "
            "default JsonCodec (pydantic has no JSON form for it): pass codec=... , an object "
            "with encode(value) -> JSON value and decode(JSON value) -> value (see "
            "stalwart.idempotency.Codec), or return a pydantic model or a dataclass"
        ) from None


def default_namespace(func: Callable[..., Any]) -> str:
    """``module.qualname`` of ``func``. A script's functions are in ``__main__`` in the script's
    process and in ``__mp_main__`` in the processes multiprocessing spawns from it: both are
    named ``__main__`` so that they share their records."""
    module = func.__module__
    if module == "__mp_main__":
        module = "__main__"
    return f"{module}.{func.__qualname__}"


type _KeyFn = Callable[..., str]
type _Identity = Callable[[tuple[Any, ...], dict[str, Any]], tuple[Key, str]]


def _client_key(
    key: _KeyFn | None,
    key_args: Sequence[str] | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    arguments: dict[str, Any],
) -> str:
    if key is not None:
        # The limits of an HTTP Idempotency-Key (the error tree's InvalidIdempotencyKey).
        return check_key(key(*args, **kwargs), "the key function's result")
    if key_args is not None:
        chosen = [jsonable(arguments[name]) for name in key_args]
        if chosen and all(value in ("", None) for value in chosen):
            raise InvalidIdempotencyKey(f"the key arguments {list(key_args)} are all empty")
        return check_key(canonical_json(chosen), "the JSON of the key arguments")
    # The whole call is the key: its size is the arguments' own, and the key is hashed.
    return canonical_json(jsonable(arguments))


def _make_identity(
    func: Callable[..., Any],
    *,
    namespace: str,
    key: _KeyFn | None,
    key_args: Sequence[str] | None,
    fingerprint_args: Sequence[str] | None,
    layer: Idempotency | AsyncIdempotency,
) -> _Identity:
    signature = inspect.signature(func)
    for names in (key_args or (), fingerprint_args or ()):
        unknown = set(names) - set(signature.parameters)
        if unknown:
            raise TypeError(f"{func.__qualname__} has no parameters {sorted(unknown)}")

    def identity(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Key, str]:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        client_key = _client_key(key, key_args, args, kwargs, arguments)
        chosen = (
            arguments
            if fingerprint_args is None
            else {name: arguments[name] for name in fingerprint_args}
        )
        return layer.key(namespace, client_key), canonical_sha256(jsonable(chosen))

    return identity


class _Beat:
    """Holds the current lease while a heartbeat may replace it."""

    __slots__ = ("lease",)

    def __init__(self, lease: Lease) -> None:
        self.lease = lease


def _heartbeat_failed(lease: Lease, exc: StorageError) -> None:
    logger.warning(
        "idempotency heartbeat failed for %s; will retry", lease.key.partition, exc_info=exc
    )


@contextlib.contextmanager
def _heartbeat(layer: Idempotency, lease: Lease, every: float | None) -> Iterator[_Beat]:
    """Extend ``lease`` every ``every`` seconds on a thread while the body runs (if set)."""
    beat = _Beat(lease)
    if every is None:
        yield beat
        return
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every):
            try:
                beat.lease = layer.heartbeat(beat.lease)
            except LeaseLost:
                return
            except StorageError as exc:
                _heartbeat_failed(lease, exc)

    thread = threading.Thread(target=loop, name="stalwart-idempotency-heartbeat", daemon=True)
    thread.start()
    try:
        yield beat
    finally:
        # Joined, not abandoned: a heartbeat in flight must land before we use the version.
        stop.set()
        thread.join()


@contextlib.asynccontextmanager
async def _heartbeat_async(
    layer: AsyncIdempotency, lease: Lease, every: float | None
) -> typing.AsyncIterator[_Beat]:
    """:func:`_heartbeat` for async functions, on a task."""
    beat = _Beat(lease)
    if every is None:
        yield beat
        return
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
                return
            except StorageError as exc:
                _heartbeat_failed(lease, exc)

    task = asyncio.create_task(loop())
    try:
        yield beat
    finally:
        stop.set()
        await task


def _record_plan(policy: IdempotencyPolicy, lease: Lease, result: Any, codec: Codec) -> Plan[None]:
    """Store the function's result under its lease. The work has run, so a result that cannot
    be stored (the codec fails, or the store refuses it) still completes the record -- without
    the result -- rather than release the claim for a duplicate to run the work again."""
    try:
        encoded = codec.encode(result)
    except Exception as exc:  # noqa: BLE001 - a codec may raise anything; the work is done
        reason, error = "the codec could not encode it", exc
    else:
        try:
            yield from complete_plan(policy, lease, encoded)
        except InvalidRecord as exc:
            reason, error = "the store refused it", exc
        else:
            return
    logger.warning(
        "idempotency result for %s not stored (%s: %s: %s); the result is returned, and "
        "duplicates get ResultNotStored instead of running again",
        lease.key.partition,
        reason,
        type(error).__name__,
        error,
    )
    yield from not_stored_plan(policy, lease, reason)


def _not_recorded(lease: Lease, exc: StoreUnavailable) -> None:
    # The work is done: hand the result back rather than lose it. The claim stays in progress
    # until its lease expires; a duplicate after that runs again.
    logger.error(
        "idempotency result for %s not recorded (store unavailable: %s); the claim stays in "
        "progress until its lease expires",
        lease.key.partition,
        exc,
    )


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
            except BaseException:
                with contextlib.suppress(LeaseLost, StoreUnavailable):
                    layer.release(beat.lease)
                raise
        try:
            run_plan(layer.store, _record_plan(layer.policy, beat.lease, result, codec))
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
            except BaseException:
                with contextlib.suppress(LeaseLost, StoreUnavailable):
                    await layer.release(beat.lease)
                raise
        try:
            await run_plan_async(layer.store, _record_plan(layer.policy, beat.lease, result, codec))
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

    The key is ``key(*args, **kwargs)`` (a str of 1-255 characters), else the JSON of the
    ``key_args`` arguments (at most 255 characters, not all empty), else of all arguments,
    scoped by ``namespace`` (default: the function's module and qualified name); a key outside
    those limits raises :class:`InvalidIdempotencyKey` before anything runs. The payload
    fingerprint covers ``fingerprint_args`` (default: all arguments); the same key with
    another payload raises :class:`FingerprintMismatch`. A concurrent duplicate raises
    :class:`InProgress`. Exceptions are not stored: the claim is released and the error
    re-raised, so a retry runs again. The result is stored with ``codec``, by default a
    :class:`JsonCodec` of the return annotation, which is then required (a replay is rebuilt
    as that type). A result that cannot be stored is returned (logged at WARNING) and the
    record completed without it: duplicates get :class:`ResultNotStored`, the function never
    runs twice. Sync functions need an :class:`Idempotency`, async ones an
    :class:`AsyncIdempotency`. With ``heartbeat_every`` the lease is extended in the
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
        the_codec = codec or default_codec(func)
        identity = _make_identity(
            func,
            namespace=namespace or default_namespace(func),
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
