"""A circuit breaker whose state is shared by many processes through Redis.

What is shared and what is not:

- **Shared** (one Redis hash per breaker): the state, a generation number bumped by every
  transition, the end of the open period, and the half-open probe permits and results. Every
  change is one atomic Lua script using Redis' own clock, so processes with skewed clocks agree
  and *exactly* ``half_open_probes`` probes are admitted across all processes.
- **Local** (per process): the sliding window. Each process judges the dependency on its own
  calls; when its window trips, it opens the circuit for everybody (a script that only acts if
  the shared state is still the closed generation it knew).
- **Cached**: each process re-reads the shared state at most every ``sync_s`` seconds (one read,
  never a write). In steady state a success touches Redis not at all; writes happen only on
  trips, probes and transitions.

Redis failures: a failed refresh keeps the cached view; a failed trip opens the circuit locally;
a failed probe report is recovered by ``probe_timeout_s`` (a half-open state whose probes never
reported, e.g. because their process died, hands out fresh permits after that long); a failed
probe reservation rejects the call with :class:`CircuitOpen` (the breaker fails closed while it
cannot coordinate, rather than letting every process probe at once).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, cast

from stalwart._extras import require_extra
from stalwart.resilience._breaker import (
    BreakerConfig,
    BreakerListener,
    BreakerTransition,
    CircuitState,
    TransitionQueue,
    check_breaker_name,
)
from stalwart.resilience._decorate import is_coroutine_function
from stalwart.resilience._errors import CircuitOpen
from stalwart.resilience._window import FAILURE, SLOW, CountRing, CountWindow

if TYPE_CHECKING:
    import redis
    import redis.asyncio

# Every script reads Redis' clock (milliseconds) and returns {state, gen, retry_after_ms, probe}.
_PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local h = redis.call('HMGET', KEYS[1], 'state', 'gen', 'open_until', 'admitted', 'since')
local state = h[1] or 'closed'
local gen = tonumber(h[2] or '0')
local open_until = tonumber(h[3] or '0')
local admitted = tonumber(h[4] or '0')
local since = tonumber(h[5] or '0')
local function move(to, open_ms)
  gen = gen + 1
  state = to
  admitted = 0
  redis.call('HSET', KEYS[1], 'state', to, 'gen', gen, 'admitted', 0, 'done', 0,
             'failures', 0, 'slow', 0, 'since', now)
  if to == 'open' then
    open_until = now + open_ms
    redis.call('HSET', KEYS[1], 'open_until', open_until)
  end
end
local function reply(probe)
  local wait = 0
  if state == 'open' and open_until > now then wait = open_until - now end
  return {state, gen, wait, probe}
end
"""

# Read-only: the cached view's refresh.
_VIEW = _PRELUDE + "return reply(0)\n"

# ARGV: probes, probe_timeout_ms
_ACQUIRE = (
    _PRELUDE
    + """
local probes = tonumber(ARGV[1])
if state == 'closed' then return reply(0) end
if state == 'open' then
  if now < open_until then return reply(0) end
  move('half_open', 0)
elseif now - since >= tonumber(ARGV[2]) then
  move('half_open', 0)
end
if admitted >= probes then return reply(0) end
redis.call('HINCRBY', KEYS[1], 'admitted', 1)
return reply(1)
"""
)

# ARGV: gen the local window belongs to, open_ms
_TRIP = (
    _PRELUDE
    + """
if state == 'closed' and gen == tonumber(ARGV[1]) then move('open', tonumber(ARGV[2])) end
return reply(0)
"""
)

# ARGV: gen, failed (0/1), slow (0/1), probes, failure_rate, slow_rate (-1: off), open_ms
_PROBE_RESULT = (
    _PRELUDE
    + """
if state ~= 'half_open' or gen ~= tonumber(ARGV[1]) then return reply(0) end
local done = redis.call('HINCRBY', KEYS[1], 'done', 1)
local failures = redis.call('HINCRBY', KEYS[1], 'failures', tonumber(ARGV[2]))
local slow = redis.call('HINCRBY', KEYS[1], 'slow', tonumber(ARGV[3]))
local probes = tonumber(ARGV[4])
local slow_rate = tonumber(ARGV[6])
if failures >= tonumber(ARGV[5]) * probes or (slow_rate >= 0 and slow >= slow_rate * probes) then
  move('open', tonumber(ARGV[7]))
elseif done >= probes then
  move('closed', 0)
end
return reply(0)
"""
)

# ARGV: gen. A probe ended without a verdict (cancelled, ignored error): free its permit.
_RELEASE = (
    _PRELUDE
    + """
if state == 'half_open' and gen == tonumber(ARGV[1]) and admitted > 0 then
  redis.call('HINCRBY', KEYS[1], 'admitted', -1)
end
return reply(0)
"""
)

_SCRIPTS = {
    "view": _VIEW,
    "acquire": _ACQUIRE,
    "trip": _TRIP,
    "probe": _PROBE_RESULT,
    "release": _RELEASE,
}

type _Call = tuple[str, tuple[str | int | float, ...]]
type _Reply = tuple[CircuitState, int, float, bool]


def _decode(raw: Any) -> _Reply:
    """Decode a script reply ``{state, gen, retry_after_ms, probe}``."""
    state, gen, wait_ms, probe = raw
    text = state.decode() if isinstance(state, bytes) else str(state)
    return CircuitState(text), int(gen), int(wait_ms) / 1000.0, bool(int(probe))


class RedisCircuitBreaker:
    """A :class:`CircuitBreaker` whose state is shared across processes through Redis.

    Pass a ``redis.Redis`` (for sync functions) and/or a ``redis.asyncio.Redis`` client (for
    coroutine functions) — the client of a Redis store works — built with a
    ``socket_timeout``. Options are those of :class:`BreakerConfig`; the window must be a
    :class:`CountWindow`. ``sync_s`` bounds how stale a process' view of the shared state may
    be; ``probe_timeout_s`` frees the permits of probes that never reported.

    >>> import redis  # doctest: +SKIP
    >>> breaker = RedisCircuitBreaker(  # doctest: +SKIP
    ...     "payments", client=redis.Redis(socket_timeout=0.5), half_open_probes=3)
    """

    def __init__(
        self,
        name: str,
        config: BreakerConfig | None = None,
        *,
        client: redis.Redis | None = None,
        async_client: redis.asyncio.Redis | None = None,
        prefix: str = "stalwart:breaker:",
        sync_s: float = 1.0,
        probe_timeout_s: float = 60.0,
        listeners: tuple[BreakerListener, ...] = (),
        clock: Callable[[], float] = time.monotonic,
        **options: Any,
    ) -> None:
        check_breaker_name(name, "RedisCircuitBreaker")
        redis_module = require_extra("redis", "redis", feature="RedisCircuitBreaker")
        if config is not None and options:
            raise TypeError("pass either a BreakerConfig or keyword options, not both")
        if client is None and async_client is None:
            raise TypeError("RedisCircuitBreaker needs client= and/or async_client=")
        self.config = config if config is not None else BreakerConfig(**options)
        window = self.config.window
        if not isinstance(window, CountWindow):
            raise TypeError("RedisCircuitBreaker supports CountWindow only")
        if sync_s <= 0 or probe_timeout_s <= 0:
            raise ValueError("sync_s and probe_timeout_s must be > 0")
        if sync_s >= self.config.open_s:
            # Otherwise a process could still hold a cached "closed" view when the circuit
            # half-opens, and send ordinary calls next to the N probes.
            raise ValueError("sync_s must be shorter than open_s")
        self.name = name
        self.key = prefix + name
        self._transitions = TransitionQueue(listeners)
        self.sync_s = sync_s
        self._probe_timeout_ms = int(probe_timeout_s * 1000)
        self._open_ms = int(self.config.open_s * 1000)
        self._clock = clock
        self._errors: tuple[type[BaseException], ...] = (redis_module.RedisError, OSError)
        self._scripts = (
            {k: client.register_script(v) for k, v in _SCRIPTS.items()} if client else {}
        )
        self._ascripts = (
            {k: async_client.register_script(v) for k, v in _SCRIPTS.items()}
            if async_client
            else {}
        )
        self._lock = threading.Lock()
        self._ring = CountRing(window.size)
        self._state = CircuitState.CLOSED
        self._gen = -1  # unknown until the first refresh
        self._open_until = 0.0
        self._fresh_until = 0.0

    def __repr__(self) -> str:
        return f"<RedisCircuitBreaker {self.name!r} {self._state.value} (cached)>"

    @property
    def state(self) -> CircuitState:
        """This process' cached view of the shared state (at most ``sync_s`` old)."""
        return self._state

    # -- sans-I/O steps, shared by the sync and async drivers ---------------------------------

    def _apply(self, reply: _Reply, now: float) -> None:
        state, gen, wait_s, _ = reply
        with self._lock:
            if gen != self._gen:
                if self._gen >= 0 and state is not self._state:
                    self._transitions.push(BreakerTransition(self.name, self._state, state, now))
                self._gen = gen
                self._ring.reset()  # every generation judges its own calls
            self._state = state
            self._open_until = now + wait_s
            self._fresh_until = now + (
                wait_s if state is CircuitState.OPEN and wait_s > self.sync_s else self.sync_s
            )
        self._transitions.deliver()

    def _local_admit(self, now: float) -> int | None:
        """Generation of a call admitted from the cache; ``None``: ask Redis (ACQUIRE)."""
        state = self._state
        if state is CircuitState.CLOSED:
            return self._gen
        if state is CircuitState.OPEN and now < self._open_until:
            raise CircuitOpen(self.name, self._open_until - now)
        return None

    def _acquired(self, reply: _Reply, now: float) -> tuple[int, bool]:
        self._apply(reply, now)
        state, gen, wait_s, probe = reply
        if probe or state is CircuitState.CLOSED:
            return gen, probe
        raise CircuitOpen(self.name, wait_s)

    def _acquire_call(self) -> _Call:
        return "acquire", (self.config.half_open_probes, self._probe_timeout_ms)

    def _exit_call(self, gen: int, probe: bool, outcome: int | None) -> _Call | None:  # noqa: FBT001
        """Record an outcome locally; the Redis script to run, if any (never for a success
        in steady state)."""
        if probe:
            return self._probe_call(gen, outcome)
        if outcome is None:
            return None
        config = self.config
        ring = self._ring
        slot = None
        if outcome == 0 and gen == self._gen:
            slot = ring.take_slot()  # atomic: lock-free when nothing changes, see _breaker.py
            if not ring.buf[slot]:
                return None
        with self._lock:
            if gen != self._gen or self._state is not CircuitState.CLOSED:
                return None
            ring.record(outcome, 0.0, slot)
            calls, failures, slow = ring.calls, ring.failures, ring.slow
            if not (calls >= config.min_calls and config.over_threshold(calls, failures, slow)):
                return None
            ring.reset()
        return "trip", (gen, self._open_ms)

    def _probe_call(self, gen: int, outcome: int | None) -> _Call:
        if outcome is None:
            return "release", (gen,)
        config = self.config
        slow_rate = config.slow_call_rate if config.slow_call_s is not None else -1
        return "probe", (
            gen,
            outcome & FAILURE,
            (outcome & SLOW) >> 1,
            config.half_open_probes,
            config.failure_rate,
            slow_rate,
            self._open_ms,
        )

    def _trip_locally(self, now: float) -> None:
        with self._lock:
            if self._state is CircuitState.CLOSED:
                self._transitions.push(
                    BreakerTransition(self.name, self._state, CircuitState.OPEN, now)
                )
                self._state = CircuitState.OPEN
                self._open_until = now + self.config.open_s
                self._fresh_until = self._open_until
        self._transitions.deliver()

    def _outcome(self, exc: BaseException | None, started: float, now: float) -> int | None:
        slow_s = self.config.slow_call_s
        slow = SLOW if slow_s is not None and now - started >= slow_s else 0
        if exc is None:
            return slow
        failure = self.config.outcome_of_error(exc)
        return None if failure is None else failure | slow

    # -- sync driver ---------------------------------------------------------------------------

    def _run(self, call: _Call) -> _Reply:
        name, args = call
        script = self._scripts.get(name)
        if script is None:
            raise TypeError("this RedisCircuitBreaker has no sync client (client=)")
        return _decode(script(keys=[self.key], args=list(args)))

    def _enter(self) -> tuple[int, bool]:
        now = self._clock()
        if now >= self._fresh_until:
            try:
                self._apply(self._run(("view", ())), now)
            except self._errors:
                self._fresh_until = now + self.sync_s  # keep the cached view a while longer
        gen = self._local_admit(now)
        if gen is not None:
            return gen, False
        try:
            reply = self._run(self._acquire_call())
        except self._errors as exc:
            raise CircuitOpen(self.name, self.sync_s) from exc
        return self._acquired(reply, now)

    def _exit(self, gen: int, probe: bool, outcome: int | None) -> None:  # noqa: FBT001
        call = self._exit_call(gen, probe, outcome)
        if call is None:
            return
        now = self._clock()
        try:
            self._apply(self._run(call), now)
        except self._errors:
            if call[0] == "trip":
                self._trip_locally(now)

    # -- async driver --------------------------------------------------------------------------

    async def _arun(self, call: _Call) -> _Reply:
        name, args = call
        script = self._ascripts.get(name)
        if script is None:
            raise TypeError("this RedisCircuitBreaker has no async client (async_client=)")
        return _decode(await script(keys=[self.key], args=list(args)))

    async def _aenter(self) -> tuple[int, bool]:
        now = self._clock()
        if now >= self._fresh_until:
            try:
                self._apply(await self._arun(("view", ())), now)
            except self._errors:
                self._fresh_until = now + self.sync_s
        gen = self._local_admit(now)
        if gen is not None:
            return gen, False
        try:
            reply = await self._arun(self._acquire_call())
        except self._errors as exc:
            raise CircuitOpen(self.name, self.sync_s) from exc
        return self._acquired(reply, now)

    async def _aexit(self, gen: int, probe: bool, outcome: int | None) -> None:  # noqa: FBT001
        call = self._exit_call(gen, probe, outcome)
        if call is None:
            return
        now = self._clock()
        try:
            self._apply(await self._arun(call), now)
        except self._errors:
            if call[0] == "trip":
                self._trip_locally(now)

    # -- public forms --------------------------------------------------------------------------

    def refresh(self) -> CircuitState:
        """Read the shared state now (sync client), bypassing the cache."""
        now = self._clock()
        self._apply(self._run(("view", ())), now)
        return self._state

    async def refresh_async(self) -> CircuitState:
        """Read the shared state now (async client), bypassing the cache."""
        now = self._clock()
        self._apply(await self._arun(("view", ())), now)
        return self._state

    def __call__[**P, R](self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorate a sync function (needs ``client``) or a coroutine function
        (needs ``async_client``)."""
        clock = self._clock
        outcome_of = self._outcome
        if is_coroutine_function(fn, "RedisCircuitBreaker"):
            afn = cast("Callable[P, Coroutine[Any, Any, object]]", fn)
            aenter, aexit = self._aenter, self._aexit

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> object:
                gen, probe = await aenter()
                started = clock()
                try:
                    result = await afn(*args, **kwargs)
                except BaseException as exc:
                    await aexit(gen, probe, outcome_of(exc, started, clock()))
                    raise
                await aexit(gen, probe, outcome_of(None, started, clock()))
                return result

            return cast("Callable[P, R]", async_wrapper)

        enter, exit_ = self._enter, self._exit

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            gen, probe = enter()
            started = clock()
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                exit_(gen, probe, outcome_of(exc, started, clock()))
                raise
            exit_(gen, probe, outcome_of(None, started, clock()))
            return result

        return wrapper
