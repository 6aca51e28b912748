# Copyright 2026 stalwart contributors
"""Store URL query options, checked the same way for every engine (pure, no I/O).

Each engine's URL parser names the options it knows. An unknown or repeated option, or a value
of the wrong shape, is a :class:`~stalwart.storage.StoreConfigurationError` whose message lists
the known options -- never an ``InvalidRecord`` or a raw ``ValueError``.

>>> url_options("sqlite:///app.db?table=t&timeout=2", ("table", "timeout"), engine="sqlite")
{'table': 't', 'timeout': '2'}
>>> positive_number("timeout", "2")
2.0
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable
from typing import Final
from urllib.parse import parse_qsl, urlsplit

from stalwart.storage._contract import StoreConfigurationError

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


def unknown_options(
    engine: str, names: Iterable[str], known: Collection[str], *, also: str = ""
) -> StoreConfigurationError:
    """The error for options ``engine`` does not know; ``also`` names more accepted options
    (e.g. "and every pymongo URI option")."""
    listed = ", ".join(sorted(known))
    extra = f" {also}" if also else ""
    return StoreConfigurationError(
        f"unknown {engine} URL option(s) {', '.join(repr(n) for n in names)}; "
        f"known: {listed}{extra}"
    )


def split_url_options(
    url: str, known: Collection[str], *, engine: str
) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """The query of ``url`` as (the ``known`` options by name, every other option in order).

    For an engine that passes the others on to its client (which checks them); a known option
    given twice is an error (which one was meant?).
    """
    ours: dict[str, str] = {}
    others: list[tuple[str, str]] = []
    for name, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if name not in known:
            others.append((name, value))
        elif name in ours:
            raise StoreConfigurationError(f"{engine} URL option {name!r} is given twice")
        else:
            ours[name] = value
    return ours, others


def url_options(url: str, known: Collection[str], *, engine: str) -> dict[str, str]:
    """The query options of ``url`` by name; any option not in ``known`` is an error that
    lists the known ones."""
    ours, others = split_url_options(url, known, engine=engine)
    if others:
        raise unknown_options(engine, dict.fromkeys(name for name, _ in others), known)
    return ours


def positive_number(name: str, value: str) -> float:
    """A finite number above 0 (a timeout, in seconds)."""
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and number > 0):
        raise StoreConfigurationError(f"URL option {name} must be a positive number, got {value!r}")
    return number


def whole_number(name: str, value: str, *, low: int = 1, high: int | None = None) -> int:
    """An integer from ``low`` to ``high`` (no upper bound when ``None``)."""
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or number < low or (high is not None and number > high):
        bounds = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise StoreConfigurationError(
            f"URL option {name} must be an integer {bounds}, got {value!r}"
        )
    return number


def flag(name: str, value: str) -> bool:
    """``true``/``false`` (also ``1``/``0``, ``yes``/``no``, ``on``/``off``, any case)."""
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise StoreConfigurationError(f"URL option {name} must be true or false, got {value!r}")


def one_of(name: str, value: str, choices: Collection[str]) -> str:
    """One of ``choices`` (compared in lower case; returned in lower case)."""
    lowered = value.lower()
    if lowered not in choices:
        raise StoreConfigurationError(
            f"URL option {name} must be one of {', '.join(choices)}, got {value!r}"
        )
    return lowered


def unknown_scheme(scheme: str, known: Collection[str]) -> StoreConfigurationError:
    """The error for a URL whose scheme no engine handles (the URL itself is left out of the
    message: it may hold a password)."""
    return StoreConfigurationError(
        f"unknown store URL scheme {scheme!r}; known: {', '.join(sorted(known))}"
    )
