"""Errors of the observability package.

ObservabilityError
└── MetricsError          a metric, dimension or namespace breaks an EMF rule
"""

from __future__ import annotations


class ObservabilityError(Exception):
    """Root of every error raised by ``stalwart.observability``."""


class MetricsError(ObservabilityError, ValueError):
    """A metric, dimension or namespace breaks a CloudWatch Embedded Metric Format rule."""
