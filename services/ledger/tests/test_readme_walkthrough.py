"""The README's curl walk-through, read from the README and run with bash against a real
``ledger serve`` (the newcomer's path: the SQLite default, the key printed at first start)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from api_support import KEY_LINE, ledger_serve

README = Path(__file__).resolve().parents[3] / "README.md"


def walkthrough() -> str:
    blocks = re.findall(r"^```bash\n(.*?)^```$", README.read_text(), re.DOTALL | re.MULTILINE)
    (block,) = [b for b in blocks if "/balance" in b and "curl" in b]
    return block


def documents(output: str) -> list[dict[str, Any]]:
    """The JSON bodies curl printed back to back."""
    decoder = json.JSONDecoder()
    found, at = [], 0
    while at < len(output):
        document, at = decoder.raw_decode(output, at)
        found.append(document)
        while at < len(output) and output[at].isspace():
            at += 1
    return found


def test_the_readme_starts_with_the_two_commands():
    first_block = re.search(r"^```bash\n(.*?)^```$", README.read_text(), re.DOTALL | re.MULTILINE)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert commands == ["uv run ledger serve", "uv run pytest"]
    assert README.read_text().index(first_block.group(0)) < 20  # right under the title


def test_the_readme_walkthrough_runs_against_ledger_serve(tmp_path):
    assert shutil.which("curl"), "curl is needed to run the README's walk-through"
    assert shutil.which("jq"), "jq is needed to run the README's walk-through"
    script = walkthrough()
    assert script.count("curl ") == 4  # two accounts, a transfer, a balance
    with ledger_serve(cwd=tmp_path) as served:
        (key,) = KEY_LINE.findall(served.text())
        # The two placeholders the README asks the reader to fill in:
        script = re.sub(r"^export KEY=.*$", f"export KEY={key}", script, flags=re.MULTILINE)
        script = script.replace("http://127.0.0.1:8000", served.base)
        ran = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert ran.returncode == 0, ran.stderr
    transfer, balance = documents(ran.stdout)
    assert transfer["status"] == "posted"
    assert transfer["amount"] == 1250
    assert balance["account_id"] == transfer["credit_account_id"]
    assert (balance["posted"], balance["pending"], balance["available"]) == (1250, 1250, 1250)
