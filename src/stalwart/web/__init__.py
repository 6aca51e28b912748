# Copyright 2026 stalwart contributors
"""Web building blocks shared by the FastAPI and Flask integrations.

The one-call installs live in ``stalwart.web.fastapi`` (``install(app)``) and
``stalwart.web.flask`` (``StalwartWeb(app)``); this package holds what both share.
"""

from stalwart.web._access_log import ACCESS_LOGGER
from stalwart.web._conditional import (
    EntityTag,
    IfNoneMatch,
    Precondition,
    etag,
    evaluate_if_match,
    parse_etags,
    read_if_none_match,
    record_etag,
)
from stalwart.web._error_table import default_errors, retry_after
from stalwart.web._errors import HttpProblem
from stalwart.web._health import (
    CheckResult,
    CheckState,
    Health,
    Readiness,
    ReadyStatus,
    breaker_check,
    store_check,
)
from stalwart.web._openapi import PROBLEM_SCHEMA, problem_responses
from stalwart.web._problem import PROBLEM_JSON, problem, problem_bytes
from stalwart.web._registry import ErrorRegistry, ErrorRule
from stalwart.web._request_id import (
    REQUEST_ID_HEADER,
    SPAN_ATTRIBUTE,
    current_request_id,
    is_valid_request_id,
)

__all__ = [
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
]
