"""The ledger's tests: the engine x {sync, async} matrix over the facades.

The real servers and ``store_url_factory`` come from ``tests/server_fixtures.py`` (loaded by the
repository's root ``conftest.py``), so one ``uv run pytest`` starts each server once.

Each facade test is written once as ``async def`` against :class:`Driver`: in ``sync`` mode it
runs :class:`~ledger.service.SyncLedger`'s methods on a pool of real threads, in ``async`` mode
it awaits :class:`~ledger.service.Ledger`, so concurrency tests use threads in one mode and
tasks in the other. Test ids name the engine and the mode (``[redis-async]``).
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from ledger.domain.errors import Contention
from ledger.domain.models import Account, NewAccount, NewTransfer, NormalBalance
from ledger.invariants import check_invariants, check_invariants_async
from ledger.service import Ledger, SyncLedger

from stalwart.resilience import retry
from stalwart.storage import open_async_store, open_store

ENGINES = ("sqlite", "redis", "dynamodb", "mongodb")
MODES = ("sync", "async")
TENANT = "acme"


class ManualClock:
    """Epoch seconds that stand still until a test moves them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._now = time.time()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


class Driver:
    """An async view of :class:`SyncLedger` (on threads) or :class:`Ledger` (awaited)."""

    def __init__(
        self, engine: str, mode: str, url: str, pool: ThreadPoolExecutor, clock: ManualClock
    ) -> None:
        self.engine = engine
        self.mode = mode
        self.url = url
        self.clock = clock
        self._pool = pool
        self._lock = threading.Lock()
        self.retries = 0
        """Contention retries so far (proof that concurrent writers really collided)."""
        # As in production, bounded and jittered; sized for moto and secantusdb (whose emulated
        # transactions are slow) under the tests' few concurrent writers.
        policy = retry(
            on=Contention, attempts=30, base_s=0.002, cap_s=0.05, hooks=(self._count_retry,)
        )
        if mode == "sync":
            self.sync_store = open_store(url)
            self.facade: Any = SyncLedger(self.sync_store, clock=clock, retry_policy=policy)
        else:
            self.async_store = open_async_store(url)
            self.facade = Ledger(self.async_store, clock=clock, retry_policy=policy)

    def twin(self) -> Driver:
        """Another facade on the same store, clock and policy: what a second process is (with
        its own per-process account locks), so writers of the two collide in the store."""
        twin = object.__new__(Driver)
        twin.__dict__.update(self.__dict__)
        store = self.sync_store if self.mode == "sync" else self.async_store
        twin.facade = type(self.facade)(
            store, clock=self.clock, retry_policy=self.facade.retry_policy
        )
        return twin

    def _count_retry(self, event: object) -> None:
        with self._lock:
            self.retries += 1

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.facade, name)
        if self.mode == "async":
            return method  # type: ignore[no-any-return]

        async def on_thread(*args: Any, **kwargs: Any) -> Any:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self._pool, functools.partial(method, *args, **kwargs)
            )

        return on_thread

    async def invariants(self, tenant: str = TENANT) -> list[str]:
        if self.mode == "sync":
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, check_invariants, self.sync_store, tenant)
        return await check_invariants_async(self.async_store, tenant)

    async def account(
        self,
        name: str,
        *,
        currency: str = "USD",
        normal: NormalBalance = NormalBalance.CREDIT,
        no_overdraft: bool = False,
        tenant: str = TENANT,
    ) -> Account:
        flags = {"debits_must_not_exceed_credits": no_overdraft}
        new = NewAccount(currency=currency, name=name, normal_balance=normal, flags=flags)
        return await self.create_account(tenant, new)  # type: ignore[no-any-return]

    @staticmethod
    def draft(debit: Account, credit: Account, amount: int, **fields: Any) -> NewTransfer:
        """A new transfer of ``amount`` from ``debit`` to ``credit`` (their currency)."""
        return NewTransfer(
            debit_account_id=debit.id,
            credit_account_id=credit.id,
            amount=amount,
            currency=debit.currency,
            **fields,
        )

    async def close(self) -> None:
        if self.mode == "sync":
            self.sync_store.close()
        else:
            await self.async_store.close()


@pytest.fixture(scope="session")
def ledger_pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=16, thread_name_prefix="ledger") as pool:
        yield pool


@pytest.fixture(
    params=[(engine, mode) for engine in ENGINES for mode in MODES],
    ids=[f"{engine}-{mode}" for engine in ENGINES for mode in MODES],
)
def engine_mode(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
async def ledger(
    engine_mode: tuple[str, str],
    store_url_factory: Callable[[str], Callable[[], str]],
    ledger_pool: ThreadPoolExecutor,
) -> AsyncIterator[Driver]:
    """A ledger on a fresh, empty store of one engine in one mode, on a manual clock."""
    engine, mode = engine_mode
    driver = Driver(engine, mode, store_url_factory(engine)(), ledger_pool, ManualClock())
    try:
        yield driver
    finally:
        await driver.close()


@pytest.fixture(scope="module")
def cheap_password_hashes() -> Iterator[None]:
    """argon2 at its cheapest for the back-office tests (the default costs up to 1 s per hash
    on this machine by design; the tests check logins, not the hash's cost)."""
    from argon2 import PasswordHasher  # noqa: PLC0415 - only the back-office tests need it
    from ledger.backoffice import operators  # noqa: PLC0415

    with pytest.MonkeyPatch.context() as patch:
        cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
        patch.setattr(operators, "HASHER", cheap)
        yield


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say loudly when the back-office browser tests were skipped (no chromium)."""
    from backoffice_support import BROWSER_SKIP_REASON  # noqa: PLC0415

    skipped = terminalreporter.stats.get("skipped", [])
    if any(BROWSER_SKIP_REASON in str(report.longrepr) for report in skipped):
        terminalreporter.write_sep("!", BROWSER_SKIP_REASON, red=True, bold=True)
