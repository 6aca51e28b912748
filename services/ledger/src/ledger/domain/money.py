"""Currencies and amounts: integers in minor units, never floats.

A currency is an ISO 4217 code with its exponent (the number of minor-unit digits: USD 2,
JPY 0, KWD 3). Amounts travel and are stored as ``int`` minor units; :func:`parse_amount` and
:func:`format_amount` convert to and from the decimal text people write.

>>> parse_amount("12.34", "USD"), format_amount(1234, "USD")
(1234, '12.34')
>>> parse_amount("500", "JPY")
500
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Final

from ledger.domain.errors import InvalidAmount, InvalidRequest

MAX_AMOUNT: Final = 2**53 - 1
"""Largest amount of one transfer: every JSON client (JavaScript's numbers too) reads it
exactly. Balances are sums of amounts and must stay inside signed 64 bits (the store's
integers); a transfer that would leave that range is refused with ``balance_overflow``."""

MAX_BALANCE: Final = 2**63 - 1

CURRENCY_EXPONENTS: Final[dict[str, int]] = {
    # ISO 4217 minor units of the currencies the ledger accepts.
    "AED": 2, "ARS": 2, "AUD": 2, "BHD": 3, "BRL": 2, "CAD": 2, "CHF": 2, "CLP": 0,
    "CNY": 2, "COP": 2, "CZK": 2, "DKK": 2, "EUR": 2, "GBP": 2, "HKD": 2, "HUF": 2,
    "IDR": 2, "ILS": 2, "INR": 2, "ISK": 0, "JOD": 3, "JPY": 0, "KRW": 0, "KWD": 3,
    "MXN": 2, "MYR": 2, "NOK": 2, "NZD": 2, "OMR": 3, "PHP": 2, "PLN": 2, "RON": 2,
    "SAR": 2, "SEK": 2, "SGD": 2, "THB": 2, "TND": 3, "TRY": 2, "TWD": 2, "UAH": 2,
    "USD": 2, "VND": 0, "ZAR": 2,
}  # fmt: skip

_DECIMAL_TEXT: Final = re.compile(r"-?\d+(\.\d+)?")


def exponent(currency: str) -> int:
    """The number of minor-unit digits of ``currency``; ``InvalidRequest`` if unknown.

    >>> exponent("KWD")
    3
    """
    try:
        return CURRENCY_EXPONENTS[currency]
    except KeyError:
        raise InvalidRequest(
            f"unknown currency {currency!r}: use an ISO 4217 code such as USD or EUR"
        ) from None


def check_currency(currency: str) -> str:
    """Return ``currency`` if the ledger knows it, else raise (a pydantic validator too)."""
    exponent(currency)
    return currency


def check_amount(amount: int) -> int:
    """Return ``amount`` if it is an int from 1 to :data:`MAX_AMOUNT`, else ``InvalidAmount``.

    >>> check_amount(0)
    Traceback (most recent call last):
    ...
    ledger.domain.errors.InvalidAmount: amount must be an integer number of minor units from 1 to 9007199254740991, got 0
    """  # noqa: E501
    if isinstance(amount, bool) or not isinstance(amount, int) or not 1 <= amount <= MAX_AMOUNT:
        raise InvalidAmount(
            f"amount must be an integer number of minor units from 1 to {MAX_AMOUNT}, "
            f"got {amount!r}"
        )
    return amount


def parse_amount(text: str, currency: str) -> int:
    """The minor units of the decimal ``text`` in ``currency`` (no rounding: more digits than
    the currency has is ``InvalidAmount``).

    >>> parse_amount("0.5", "USD")
    50
    """
    digits = exponent(currency)
    if not _DECIMAL_TEXT.fullmatch(text):
        raise InvalidAmount(f"{text!r} is not a decimal amount such as 12.34")
    try:
        scaled = Decimal(text).scaleb(digits)
    except InvalidOperation as exc:  # pragma: no cover - the pattern admits only decimals
        raise InvalidAmount(f"{text!r} is not a decimal amount") from exc
    if scaled != scaled.to_integral_value():
        raise InvalidAmount(f"{currency} has {digits} decimal places; {text!r} has more")
    return check_amount(int(scaled))


def format_amount(minor_units: int, currency: str) -> str:
    """The decimal text of ``minor_units`` of ``currency`` (negative values keep their sign).

    >>> format_amount(-5, "KWD"), format_amount(7, "JPY")
    ('-0.005', '7')
    """
    digits = exponent(currency)
    sign = "-" if minor_units < 0 else ""
    whole, fraction = divmod(abs(minor_units), 10**digits)
    return f"{sign}{whole}.{fraction:0{digits}d}" if digits else f"{sign}{whole}"
