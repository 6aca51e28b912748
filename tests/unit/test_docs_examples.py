"""The ```python blocks of docs/observability.md and docs/configuration.md run, so they
cannot rot. Each block runs in a fresh namespace and a fresh working directory; blocks that
talk to Secrets Manager reach the session's moto server through boto3's standard
AWS_ENDPOINT_URL_SECRETS_MANAGER variable."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

import stalwart.observability._metrics as metrics_module
from stalwart.observability import clear_context

ROOT = Path(__file__).resolve().parents[2]
DOCS = ("docs/observability.md", "docs/configuration.md")


def blocks(doc: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / doc).read_text(), flags=re.DOTALL)


CASES = [(doc, i, source) for doc in DOCS for i, source in enumerate(blocks(doc))]


def test_every_doc_has_examples():
    for doc in DOCS:
        assert len(blocks(doc)) >= 3, doc


@pytest.fixture
def sandbox(tmp_path, monkeypatch, moto_srv):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto_srv.url)
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


@pytest.mark.parametrize(
    ("doc", "index", "source"), CASES, ids=[f"{doc.split('/')[-1]}-{i}" for doc, i, _ in CASES]
)
def test_doc_example_runs(doc, index, source, sandbox):
    # dont_inherit: run the block as a user would, without this module's __future__ flags.
    code = compile(source, f"{doc} block {index}", "exec", dont_inherit=True)
    exec(code, {"__name__": f"doc_example_{index}"})
