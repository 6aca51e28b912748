"""``python ops_import_worker.py URL TENANT FILE REJECTS COMMITS``: import FILE's transfers on a
store whose process is SIGKILLed (no cleanup, no reply) right after its COMMITS-th transact
committed: an import killed halfway (run by test_ops_import.py)."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ledger.ops.importer import import_file
from ledger.service import SyncLedger

from stalwart.storage import Operation, Record, Store, open_store


class KillAfterCommits:
    def __init__(self, store: Store, commits: int) -> None:
        self._store = store
        self._left = commits

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def transact(self, operations: Sequence[Operation]) -> list[Record | None]:
        results = self._store.transact(operations)
        self._left -= 1
        if self._left == 0:
            os.kill(os.getpid(), signal.SIGKILL)
        return results


def main(argv: list[str]) -> None:
    url, tenant, file, rejects, commits = argv
    store = KillAfterCommits(open_store(url), int(commits))
    ledger = SyncLedger(store)  # type: ignore[arg-type]  # a Store by duck typing
    import_file(ledger, tenant, Path(file), kind="transfers", rejects_path=Path(rejects))
    raise SystemExit("not killed")


if __name__ == "__main__":
    main(sys.argv[1:])
