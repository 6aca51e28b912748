# Copyright 2026 stalwart contributors
"""Web building blocks shared by the FastAPI and Flask integrations.

The one-call installs live in ``stalwart.web.fastapi`` (``install(app)``) and
``stalwart.web.flask`` (``StalwartWeb(app)``); this package holds what both share.
"""

from stalwart.web._access_log import ACCESS_LOGGER
from stalwart.web._error_table import default_errors, retry_after
from stalwart.web._errors import HttpProblem
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
]
