# Copyright 2026 stalwart contributors
"""The public surface of stalwart.web and its framework shells is curated and importable."""

from __future__ import annotations

import stalwart.web
import stalwart.web.fastapi
import stalwart.web.flask


def test_web_exports() -> None:
    assert set(stalwart.web.__all__) == {
        "ACCESS_LOGGER",
        "PROBLEM_JSON",
        "PROBLEM_SCHEMA",
        "REQUEST_ID_HEADER",
        "SPAN_ATTRIBUTE",
        "ErrorRegistry",
        "ErrorRule",
        "HttpProblem",
        "current_request_id",
        "default_errors",
        "is_valid_request_id",
        "problem",
        "problem_bytes",
        "problem_responses",
        "retry_after",
    }
    assert set(stalwart.web.fastapi.__all__) == {"Principal", "install"}
    assert set(stalwart.web.flask.__all__) == {
        "EXTENSION_NAME",
        "Principal",
        "StalwartWeb",
        "validated",
    }
    for module in (stalwart.web, stalwart.web.fastapi, stalwart.web.flask):
        for name in module.__all__:
            assert getattr(module, name) is not None, (module.__name__, name)
