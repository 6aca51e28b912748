"""A separate process writing to one ledger store (run by test_ledger_processes.py).

    python ledger_worker.py URL TENANT hot WALLET SHOP COUNT KEY DIR
    python ledger_worker.py URL TENANT crash DEBIT CREDIT KEY

``hot``: COUNT transfers of 7 from WALLET to SHOP (some refused: insufficient funds) and of 3
back, then the transfer with idempotency key KEY (the same in every process); prints one JSON
line of outcomes. It starts writing when the file DIR/go exists (after touching
DIR/ready-PID), so the processes really overlap. ``crash``: creates a transfer of 5 with key
KEY on a store whose ``transact`` kills this process (SIGKILL: no cleanup, no reply) as soon
as it has committed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ledger.domain.errors import Contention, LedgerError
from ledger.domain.models import NewTransfer
from ledger.service import SyncLedger

from stalwart.resilience import retry
from stalwart.storage import Operation, Record, Store, open_store

RETRIES: Counter[str] = Counter()
RETRY = retry(
    on=Contention,
    attempts=30,
    base_s=0.002,
    cap_s=0.05,
    hooks=(lambda event: RETRIES.update(["retry"]),),
)


class KillAfterCommit:
    """A store whose transact dies the moment the engine has committed."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def transact(self, operations: Sequence[Operation]) -> list[Record | None]:
        results = self._store.transact(operations)
        os.kill(os.getpid(), signal.SIGKILL)
        return results  # pragma: no cover - never reached


def draft(debit: str, credit: str, amount: int) -> NewTransfer:
    return NewTransfer(
        debit_account_id=debit, credit_account_id=credit, amount=amount, currency="USD"
    )


def main(argv: list[str]) -> None:
    url, tenant, mode, *rest = argv
    store = open_store(url)
    if mode == "crash":
        debit, credit, key = rest
        ledger = SyncLedger(KillAfterCommit(store), retry_policy=RETRY)  # type: ignore[arg-type]
        ledger.create_transfer(tenant, draft(debit, credit, 5), idempotency_key=key)
        raise SystemExit("not killed")
    wallet, shop, count, key, barrier = rest
    ledger = SyncLedger(store, retry_policy=RETRY)
    ready, go = Path(barrier, f"ready-{os.getpid()}"), Path(barrier, "go")
    ready.touch()
    deadline = time.monotonic() + 30
    while not go.exists() and time.monotonic() < deadline:  # start together with the others
        time.sleep(0.005)
    outcomes: Counter[str] = Counter()
    for i in range(int(count)):
        debit, credit, amount = (wallet, shop, 7) if i % 3 else (shop, wallet, 3)
        try:
            ledger.create_transfer(
                tenant, draft(debit, credit, amount), idempotency_key=f"{os.getpid()}-{i}"
            )
            outcomes[f"ok-{amount}"] += 1
        except LedgerError as exc:
            outcomes[exc.code] += 1
        if random.random() < 0.5:
            os.sched_yield()
    shared, replayed = ledger.create_transfer(tenant, draft(shop, wallet, 1), idempotency_key=key)
    report = {
        "outcomes": outcomes,
        "retries": RETRIES["retry"],
        "shared": shared.model_dump(mode="json"),
        "replayed": replayed,
    }
    sys.stdout.write(json.dumps(report) + "\n")
    store.close()


if __name__ == "__main__":
    main(sys.argv[1:])
