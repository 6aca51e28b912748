# Copyright 2026 stalwart contributors
"""Web building blocks shared by the FastAPI and Flask integrations."""

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

__all__ = [
    "PROBLEM_JSON",
    "PROBLEM_SCHEMA",
    "CheckResult",
    "CheckState",
    "EntityTag",
    "Health",
    "HttpProblem",
    "IfNoneMatch",
    "Precondition",
    "Readiness",
    "ReadyStatus",
    "breaker_check",
    "etag",
    "evaluate_if_match",
    "parse_etags",
    "problem",
    "problem_bytes",
    "problem_responses",
    "read_if_none_match",
    "record_etag",
    "store_check",
]
