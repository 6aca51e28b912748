"""Every ```python block of README.md and of every page under docs/ runs, so none can rot.

A block runs the way a reader would run it as a script: in a fresh module (registered in
``sys.modules``, so pydantic resolves the block's annotations through it), without this file's
``__future__`` flags, in a fresh temporary working directory that holds an empty ``data/``
folder (for relative paths such as ``sqlite:///data/app.db``).

Servers come from the session's test servers (tests/server_fixtures.py), started only for the
blocks that need them:

- Redis: ``REDIS_URL`` names the test server, and Redis' default local address
  (``redis://127.0.0.1:6379`` or ``redis://localhost:6379``) in a block is pointed at it;
- AWS (DynamoDB, Secrets Manager): boto3's standard ``AWS_ENDPOINT_URL`` points at moto, where
  the DynamoDB table the storage pages use (``ledger``) exists.

**Fragments.** A block that cannot run on its own (a signature, lines that continue the page's
earlier example, top-level ``await``, a real AWS account or cluster) opens with the info string
``python fragment`` instead of ``python``:

    ```python fragment
    await store.open()  # inside your coroutine
    ```

Renderers still highlight it as Python (they read the info string's first word). Any other
Python-like fence (```py, ```python3, ```python foo) fails ``test_python_fences_are_marked``, so
a block is either run here or explicitly marked.
"""

from __future__ import annotations

import logging
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

import stalwart.observability._metrics as metrics_module
from servers import RunningServer
from stalwart.observability import clear_context
from stalwart.storage.dynamodb import create_table

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("**/*.md")])
FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```$", flags=re.DOTALL | re.MULTILINE)
RUN, FRAGMENT = "python", "python fragment"
LOCAL_REDIS = re.compile(r"redis://(?:127\.0\.0\.1|localhost):6379")
DOC_TABLES = ("ledger",)
DOC_REGIONS = ("us-east-1", "eu-west-1")


def fences(page: Path) -> list[tuple[str, str, int]]:
    """``(info string, body, line number)`` of every fenced block of ``page``."""
    text = page.read_text()
    return [
        (m["info"].strip(), m["body"], text.count("\n", 0, m.start()) + 1)
        for m in FENCE.finditer(text)
    ]


def name(page: Path) -> str:
    return str(page.relative_to(ROOT))


CASES = [
    pytest.param(page, line, body, id=f"{name(page)}:{line}")
    for page in PAGES
    for info, body, line in fences(page)
    if info == RUN
]


def test_the_runner_sees_every_page_and_block():
    assert ROOT / "README.md" in PAGES
    assert ROOT / "docs" / "storage" / "redis.md" in PAGES
    for page in PAGES:
        opened = len(re.findall(r"^```python", page.read_text(), flags=re.MULTILINE))
        found = [info for info, _, _ in fences(page) if info.startswith("python")]
        assert len(found) == opened, name(page)
    assert len(CASES) >= 30


def test_python_fences_are_marked():
    unmarked = [
        f"{name(page)}:{line} ```{info}"
        for page in PAGES
        for info, _, line in fences(page)
        if re.match(r"(?i)py(thon)?3?\b", info) and info not in (RUN, FRAGMENT)
    ]
    assert not unmarked, f"use ```python (runs) or ```python fragment: {unmarked}"


@pytest.fixture
def sandbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moto_srv: RunningServer
) -> Iterator[None]:
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_srv.url)
    monkeypatch.delenv("SETTINGS_SECRET_ID", raising=False)
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    saved_metrics = metrics_module.current_config()
    clear_context()
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved_handlers:
        root.addHandler(handler)
    root.setLevel(saved_level)
    logging.getLogger("botocore").setLevel(logging.NOTSET)
    metrics_module._config = saved_metrics
    clear_context()


@pytest.fixture
def doc_tables(moto_srv: RunningServer) -> Iterator[None]:
    """The DynamoDB tables the pages name, empty, in the regions they use."""
    clients = [
        boto3.client("dynamodb", region_name=region, endpoint_url=moto_srv.url)
        for region in DOC_REGIONS
    ]
    for client in clients:
        for table in DOC_TABLES:
            # Against an existing endpoint (STALWART_TEST_AWS_URL), never touch a real table.
            if table in client.list_tables()["TableNames"]:
                pytest.fail(f"table {table!r} already exists at {moto_srv.url}: not touching it")
            create_table(client, table)
    yield
    for client in clients:
        for table in DOC_TABLES:
            client.delete_table(TableName=table)
        client.close()


def with_servers(
    source: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> str:
    """Start the servers ``source`` needs; return it with local addresses pointed at them."""
    if "dynamodb" in source.lower():
        request.getfixturevalue("doc_tables")
    if "redis" in source.lower():
        server: RunningServer = request.getfixturevalue("redis_srv")
        monkeypatch.setenv("REDIS_URL", server.url)
        origin = "/".join(server.url.split("/")[:3])  # scheme://host:port
        source = LOCAL_REDIS.sub(origin, source)
    return source


@pytest.mark.usefixtures("sandbox")
@pytest.mark.parametrize(("page", "line", "source"), CASES)
def test_doc_example_runs(page, line, source, request, monkeypatch):
    source = with_servers(source, request, monkeypatch)
    module = types.ModuleType(f"doc_example_{line}")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    # dont_inherit: run the block as a user would, without this module's __future__ flags.
    code = compile(source, f"{name(page)}:{line}", "exec", dont_inherit=True)
    exec(code, module.__dict__)
