"""Helpful ImportErrors for optional integrations."""

from __future__ import annotations

import importlib
from types import ModuleType


def require_extra(module: str, extra: str, *, feature: str) -> ModuleType:
    """Import ``module`` or raise an ImportError that names the extra to install.

    >>> require_extra("json", "none", feature="json").__name__
    'json'
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        msg = (
            f"{feature} needs the optional dependency {module!r}: "
            f"install stalwart with the {extra!r} extra, e.g. `uv add 'stalwart[{extra}]'` "
            "where stalwart is already a dependency (see the README's Install section)"
        )
        raise ImportError(msg, name=module) from exc
