"""Helpers for the ledger's HTTP tests: the app on a real uvicorn server, `ledger serve` as a
real subprocess, and API clients holding a tenant's key."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from ledger.app import create_app
from ledger.auth import create_key
from ledger.settings import LedgerSettings

from servers import free_port, uvicorn_server
from stalwart.storage import open_store

LEDGER_SCRIPT = Path(sys.executable).with_name("ledger")
KEY_LINE = re.compile(r"^\s+(ldg_[0-9a-f]{16}_\S+)$", re.MULTILINE)


def make_key(store_url: str, tenant: str) -> str:
    with open_store(store_url) as store:
        return create_key(store, tenant).plaintext


@contextlib.contextmanager
def served_app(store_url: str, **options: Any) -> Iterator[str]:
    """``create_app`` on a real uvicorn server (in this process, on a thread); ``options`` are
    more settings."""
    settings = LedgerSettings(_env_file=None, store_url=store_url, **options)
    with uvicorn_server(create_app(settings)) as base:
        yield base


def client(base: str, key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=base, headers=headers, timeout=10)


def idem() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


def new_account(api: httpx.Client, currency: str = "USD", **fields: Any) -> dict[str, Any]:
    response = api.post("/v1/accounts", json={"currency": currency, "name": "acct", **fields})
    assert response.status_code == 201, response.text
    return dict(response.json())


def transfer(api: httpx.Client, debit: str, credit: str, amount: int, **fields: Any) -> Any:
    body = {"debit_account_id": debit, "credit_account_id": credit, "amount": amount}
    return api.post("/v1/transfers", json={"currency": "USD", **body, **fields}, headers=idem())


@dataclass
class Served:
    """A running ``ledger serve`` subprocess and what it printed so far."""

    proc: subprocess.Popen[str]
    base: str
    output: list[str] = field(default_factory=list)
    log: Path | None = None
    """Where the output goes instead of :attr:`output`, if anywhere."""

    def text(self) -> str:
        if self.log is not None:
            return self.log.read_text(errors="replace")
        return "".join(self.output)

    def wait_for(self, pattern: str, *, count: int = 1, timeout_s: float = 20) -> bool:
        """Whether ``pattern`` matches ``count`` distinct groups of the output in time."""
        deadline = time.monotonic() + timeout_s
        while len(set(re.findall(pattern, self.text()))) < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True


@contextlib.contextmanager
def ledger_serve(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout_s: float = 90,
    log: Path | None = None,
) -> Iterator[Served]:
    """``ledger serve --port N *args`` as a real subprocess; waits until /livez answers.

    Its output is kept in memory, or written to ``log`` (a long run under load: a line per
    request, which a reader thread here would also pay for)."""
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    with contextlib.ExitStack() as files:
        output = subprocess.PIPE if log is None else files.enter_context(log.open("w"))
        proc = subprocess.Popen(
            [str(LEDGER_SCRIPT), "serve", "--port", str(port), *args],
            cwd=cwd,
            env=environment | (env or {}),
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )
    served = Served(proc, f"http://127.0.0.1:{port}", log=log)
    stdout = proc.stdout

    def read() -> None:
        for line in stdout or ():
            served.output.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            assert proc.poll() is None, f"ledger serve exited:\n{served.text()}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{served.base}/livez", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, f"ledger serve did not start:\n{served.text()}"
            time.sleep(0.1)
        yield served
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        reader.join(timeout=5)
        if stdout is not None:
            stdout.close()
