# Copyright 2026 stalwart contributors
"""Web building blocks shared by the FastAPI and Flask integrations."""

from stalwart.web._errors import HttpProblem
from stalwart.web._openapi import PROBLEM_SCHEMA, problem_responses
from stalwart.web._problem import PROBLEM_JSON, problem, problem_bytes

__all__ = [
    "PROBLEM_JSON",
    "PROBLEM_SCHEMA",
    "HttpProblem",
    "problem",
    "problem_bytes",
    "problem_responses",
]
