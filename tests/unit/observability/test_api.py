from __future__ import annotations

import doctest
import importlib
import subprocess
import sys

import pytest

import stalwart.config
import stalwart.observability
import stalwart.observability._metrics as metrics

MODULES = [
    "stalwart.observability._context",
    "stalwart.observability._redact",
    "stalwart.observability._trace_ids",
    "stalwart.observability._logging",
    "stalwart.observability._metrics",
    "stalwart.observability._tracing",
    "stalwart.observability._resilience_hooks",
    "stalwart.observability",
    "stalwart.config._aws",
    "stalwart.config._secrets",
    "stalwart.config._settings",
    "stalwart.config",
]


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples_run(module, json_logs, monkeypatch):
    monkeypatch.delenv("SETTINGS_SECRET_ID", raising=False)
    saved = metrics.current_config()
    try:
        result = doctest.testmod(importlib.import_module(module), raise_on_error=False)
    finally:
        metrics._config = saved
    assert result.failed == 0


def test_public_names():
    assert sorted(stalwart.observability.__all__) == sorted(
        name
        for name in vars(stalwart.observability)
        if not name.startswith("_")
        and not isinstance(getattr(stalwart.observability, name), type(stalwart))
    )
    for package in (stalwart.observability, stalwart.config):
        for name in package.__all__:
            assert getattr(package, name) is not None
    assert set(stalwart.config.__all__) >= {"Settings", "SecretFetcher", "SecretPolicy"}


def test_import_needs_neither_opentelemetry_nor_resilience_nor_boto3():
    code = (
        "import sys, stalwart.observability, stalwart.config\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('opentelemetry', 'boto3')\n"
        "       or m.startswith('stalwart.resilience')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_missing_extra_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    with pytest.raises(ImportError, match=r"stalwart\[otel\]"):
        stalwart.observability.configure_tracing("x", exporter="none", set_global=False)
