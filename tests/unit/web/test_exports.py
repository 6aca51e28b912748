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
        "CheckResult",
        "CheckState",
        "EntityTag",
        "ErrorRegistry",
        "ErrorRule",
        "Health",
        "HttpProblem",
        "IfNoneMatch",
        "Precondition",
        "Readiness",
        "ReadyStatus",
        "breaker_check",
        "current_request_id",
        "default_errors",
        "etag",
        "evaluate_if_match",
        "is_valid_request_id",
        "parse_etags",
        "problem",
        "problem_bytes",
        "problem_responses",
        "read_if_none_match",
        "record_etag",
        "retry_after",
        "store_check",
    }
    resources = {"if_match", "if_none_match", "not_modified", "set_etag"}
    assert set(stalwart.web.fastapi.__all__) == {
        "Principal",
        "health_router",
        "install",
        "read_responses",
        "write_responses",
        *resources,
    }
    assert set(stalwart.web.flask.__all__) == {
        "EXTENSION_NAME",
        "Principal",
        "StalwartWeb",
        "health_blueprint",
        "validated",
        *resources,
    }
    for module in (stalwart.web, stalwart.web.fastapi, stalwart.web.flask):
        for name in module.__all__:
            assert getattr(module, name) is not None, (module.__name__, name)
