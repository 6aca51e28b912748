from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from stalwart.observability import _metrics, clear_context, configure_logging

type Lines = Callable[[], list[dict[str, Any]]]


@pytest.fixture(autouse=True)
def default_metrics_config() -> Iterator[None]:
    """Every test here starts from the default metrics configuration: the ledger's
    ``create_app``, run by tests in the same xdist worker, configures metrics process-wide
    (a ``service`` dimension on every document)."""
    saved = _metrics.current_config()
    _metrics._config = _metrics.MetricsConfig()
    try:
        yield
    finally:
        _metrics._config = saved


@pytest.fixture
def json_logs() -> Iterator[tuple[Callable[..., None], Lines]]:
    """``(configure, lines)``: configure(**kw) sends JSON logs to a buffer; lines() parses it."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    buffer = io.StringIO()
    touched: list[str] = []

    def configure(service: str = "test-svc", **kwargs: Any) -> None:
        touched.extend(kwargs.get("levels", {}) or {})
        configure_logging(service, stream=buffer, **kwargs)

    def lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in buffer.getvalue().splitlines()]

    clear_context()
    try:
        yield configure, lines
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved_handlers:
            root.addHandler(handler)
        root.setLevel(saved_level)
        for name in touched:
            logging.getLogger(name).setLevel(logging.NOTSET)
        clear_context()
