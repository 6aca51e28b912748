"""``ledger import``: accounts or transfers from a CSV or Parquet file, validated lazily (every bad
row reported at once, with its row number, column and reason), posted exactly once.

Columns (text; a Parquet file holds them as strings, and ``amount`` never as a float)::

    accounts:   external_id, name, currency, [normal_balance], [debits_must_not_exceed_credits],
                [credits_must_not_exceed_debits], [metadata]
    transfers:  external_id, debit_account, credit_account, amount, currency, [pending],
                [metadata]

``debit_account`` / ``credit_account`` are accounts' external ids (of the same tenant);
``amount`` is decimal text in major units (``12.34``); ``metadata`` is a JSON object of
strings; flags and ``pending`` are ``true``/``false`` (also ``1``/``0``, ``yes``/``no``, empty:
false).

Exactly once: a transfer's idempotency key is ``import:<external_id>``, so its id derives from
the external id (as the API's ``create_transfer`` derives it); an account is unique by its
external id. A re-run, or a run resumed after a crash, finds what it posted before and counts it
as a duplicate; the same external id with other content is rejected and changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors
from pydantic import ValidationError

from ledger.domain.errors import ExternalIdTaken, LedgerError, NotFound
from ledger.domain.models import NewAccount, NewTransfer
from ledger.domain.money import CURRENCY_EXPONENTS, parse_amount
from ledger.service import SyncLedger

type Kind = Literal["accounts", "transfers"]
type Progress = Callable[[int, int], None]

COLUMNS: Final[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    # kind: (required columns, optional columns)
    "accounts": (
        ("external_id", "name", "currency"),
        (
            "normal_balance",
            "debits_must_not_exceed_credits",
            "credits_must_not_exceed_debits",
            "metadata",
        ),
    ),
    "transfers": (
        ("external_id", "debit_account", "credit_account", "amount", "currency"),
        ("pending", "metadata"),
    ),
}
IMPORT_KEY_PREFIX: Final = "import:"
POST_SLICE: Final = 2_000
"""Transfers handed to ``create_transfers`` per call (the progress callback's step)."""

_TRUE: Final = frozenset({"true", "1", "yes"})
_BOOLEAN_TEXT: Final = _TRUE | {"false", "0", "no", ""}
_AMOUNT_TEXT: Final = r"\d+(\.\d+)?"
_AMOUNT_FOR_CURRENCY: Final = "amount_for_currency"


class ImportFileError(ValueError):
    """The file cannot be imported at all (unreadable, unknown format, wrong or missing
    columns): nothing was written."""


@dataclass(frozen=True)
class Rejected:
    """One reason for one row; a row may have several."""

    row: int
    """1-based data row number in the file (header excluded)."""
    column: str | None
    reason: str


@dataclass(frozen=True)
class ImportSummary:
    kind: Kind
    rows: int
    posted: int
    duplicates: int
    """Already present (a re-run or a resumed run)."""
    rejected: int
    """Rows rejected (one row may have several reasons in the rejects file)."""
    rejects_path: Path | None
    """CSV of the rejected rows plus ``row``, ``column``, ``reason``; ``None`` if none."""


def read_frame(path: Path) -> pd.DataFrame:
    """Every column of a CSV or Parquet file as text (missing values: ``""``)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path, dtype=str, keep_default_na=False)
        if suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            raise ImportFileError(f"{path}: import reads .csv or .parquet files, not {suffix!r}")
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        if isinstance(exc, ImportFileError):
            raise
        raise ImportFileError(f"{path}: cannot read it: {exc}") from exc
    if "amount" in frame.columns and pd.api.types.is_float_dtype(frame["amount"]):
        raise ImportFileError(
            f"{path}: the amount column holds floats, which cannot carry exact amounts: "
            "store it as text (12.34) or as a decimal column"
        )
    text: pd.DataFrame = frame.apply(
        lambda column: column.map(lambda v: "" if pd.isna(v) else str(v))
    )
    return text


def _is_json_object(text: str) -> bool:
    if text == "":
        return True
    try:
        value = json.loads(text)
    except ValueError:
        return False
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def _fits_currency(amount: str, currency: str) -> bool:
    if currency not in CURRENCY_EXPONENTS:
        return True  # the currency column reports it
    try:
        parse_amount(amount, currency)
    except LedgerError:
        return False
    return True


def _one_of(allowed: Iterable[str], name: str) -> pa.Check:
    allowed = set(allowed)
    return pa.Check(lambda s: s.isin(allowed), name=name)


def _schema(kind: Kind, frame: pd.DataFrame, known_accounts: Iterable[str]) -> pa.DataFrameSchema:
    """The file's rules; checks are named after the reason a reject shows."""
    required, optional = COLUMNS[kind]
    currencies = frame["currency"] if "currency" in frame else pd.Series("", index=frame.index)
    boolean = pa.Check(
        lambda s: s.str.lower().isin(_BOOLEAN_TEXT), name="not true/false", ignore_na=False
    )
    checks: dict[str, list[pa.Check]] = {
        "external_id": [pa.Check.str_length(1, 128, name="not 1 to 128 characters")],
        "currency": [_one_of(CURRENCY_EXPONENTS, "unknown currency")],
        "metadata": [
            pa.Check(
                lambda s: s.map(_is_json_object),
                name="not a JSON object of strings",
            )
        ],
        "name": [pa.Check.str_length(1, 200, name="not 1 to 200 characters")],
        "normal_balance": [_one_of(["", "debit", "credit"], "not debit or credit (or empty)")],
        "debits_must_not_exceed_credits": [boolean],
        "credits_must_not_exceed_debits": [boolean],
        "pending": [boolean],
        "debit_account": [_one_of(known_accounts, "no account has this external_id")],
        "credit_account": [_one_of(known_accounts, "no account has this external_id")],
        "amount": [
            pa.Check.str_matches(_AMOUNT_TEXT, name="not a decimal amount such as 12.34"),
            pa.Check(
                lambda s: pd.Series(map(_fits_currency, s, currencies.loc[s.index]), index=s.index),
                name=_AMOUNT_FOR_CURRENCY,
            ),
        ],
    }
    columns = {
        name: pa.Column(
            checks=checks[name],
            required=name in required,
            unique=name == "external_id",
            report_duplicates="all",
        )
        for name in (*required, *optional)
    }
    return pa.DataFrameSchema(columns, strict=True)


_FILE_CHECKS: Final = {
    "column_in_dataframe": "missing column",
    "column_in_schema": "unknown column",
}


def validate(
    kind: Kind,
    frame: pd.DataFrame,
    known_accounts: set[str] = frozenset(),  # type: ignore[assignment]
) -> list[Rejected]:
    """Every reason every row breaks the file's rules (one lazy pandera pass); a wrong or
    missing column is an :class:`ImportFileError`."""
    try:
        _schema(kind, frame, known_accounts).validate(frame, lazy=True)
    except SchemaErrors as exc:
        cases = exc.failure_cases
    else:
        return []
    file_level = cases[cases["check"].isin(_FILE_CHECKS.keys())]
    if not file_level.empty:
        problems = sorted(
            f"{_FILE_CHECKS[check]} {case!r}"
            for check, case in zip(file_level["check"], file_level["failure_case"], strict=True)
        )
        required, optional = COLUMNS[kind]
        raise ImportFileError(
            f"{'; '.join(problems)} (a {kind} file has the columns {', '.join(required)}, "
            f"optionally {', '.join(optional)})"
        )
    rejects = [
        Rejected(int(index) + 1, column, _reason(str(check), column, case, frame, int(index)))
        for index, column, check, case in zip(
            cases["index"], cases["column"], cases["check"], cases["failure_case"], strict=True
        )
    ]
    return sorted(set(rejects), key=lambda r: (r.row, r.column or "", r.reason))


def _reason(check: str, column: str, value: object, frame: pd.DataFrame, index: int) -> str:
    if check == _AMOUNT_FOR_CURRENCY:  # parse_amount says which rule the amount breaks
        try:
            parse_amount(str(value), frame["currency"].iloc[index])
        except LedgerError as exc:
            return exc.detail
    if check == "field_uniqueness":
        return f"{column} {value!r} appears more than once in the file"
    return f"{check}: {value!r}"


def _flag(text: str) -> bool:
    return text.lower() in _TRUE


def _metadata(text: str) -> dict[str, str]:
    metadata: dict[str, str] = json.loads(text) if text else {}  # validated: strings only
    return metadata


def _model_rejects(row: int, exc: ValidationError, columns: dict[str, str]) -> list[Rejected]:
    """The row's pydantic errors, each under the file column its field comes from."""
    return [
        Rejected(row, columns.get(str(error["loc"][0]) if error["loc"] else ""), error["msg"])
        for error in exc.errors()
    ]


def _account_columns(row: dict[Hashable, str]) -> NewAccount:
    flags = ("debits_must_not_exceed_credits", "credits_must_not_exceed_debits")
    return NewAccount.model_validate(
        {
            "external_id": row["external_id"],
            "name": row["name"],
            "currency": row["currency"],
            "normal_balance": row.get("normal_balance") or "credit",
            "flags": {flag: _flag(row.get(flag, "")) for flag in flags},
            "metadata": _metadata(row.get("metadata", "")),
        }
    )


_ACCOUNT_FIELDS: Final = {
    "external_id": "external_id",
    "name": "name",
    "currency": "currency",
    "normal_balance": "normal_balance",
    "metadata": "metadata",
}
_TRANSFER_FIELDS: Final = {
    "external_id": "external_id",
    "amount": "amount",
    "currency": "currency",
    "metadata": "metadata",
    "debit_account_id": "debit_account",
    "credit_account_id": "credit_account",
    "pending": "pending",
}


class _Tally:
    def __init__(self) -> None:
        self.posted = 0
        self.duplicates = 0
        self.rejects: list[Rejected] = []


def _import_accounts(
    ledger: SyncLedger,
    tenant: str,
    rows: Sequence[tuple[int, dict[Hashable, str]]],
    tally: _Tally,
    progress: Progress | None,
) -> None:
    for done, (row, values) in enumerate(rows, start=1):
        try:
            new = _account_columns(values)
        except ValidationError as exc:
            tally.rejects += _model_rejects(row, exc, _ACCOUNT_FIELDS)
            continue
        try:
            ledger.create_account(tenant, new)
            tally.posted += 1
        except ExternalIdTaken as exc:
            assert new.external_id is not None
            existing = ledger.get_account_by_external_id(tenant, new.external_id)
            same = existing.model_dump(include=set(NewAccount.model_fields))
            if NewAccount.model_validate(same) == new:
                tally.duplicates += 1
            else:
                reason = f"{exc.code}: an account with this external_id and other content exists"
                tally.rejects.append(Rejected(row, "external_id", reason))
        except LedgerError as exc:
            tally.rejects.append(Rejected(row, None, f"{exc.code}: {exc.detail}"))
        if progress is not None and (done % 100 == 0 or done == len(rows)):
            progress(done, len(rows))


def _resolve_accounts(ledger: SyncLedger, tenant: str, frame: pd.DataFrame) -> dict[str, str]:
    """External id -> account id of every account the file names that exists in ``tenant``."""
    named = set(frame.get("debit_account", ())) | set(frame.get("credit_account", ()))
    found: dict[str, str] = {}
    for external_id in sorted(named):
        try:
            found[external_id] = ledger.get_account_by_external_id(tenant, external_id).id
        except NotFound:
            continue
    return found


def _import_transfers(
    ledger: SyncLedger,
    tenant: str,
    rows: Sequence[tuple[int, dict[Hashable, str]]],
    *,
    accounts: dict[str, str],
    tally: _Tally,
    progress: Progress | None,
) -> None:
    requests: list[tuple[int, NewTransfer]] = []
    for row, values in rows:
        try:
            new = NewTransfer(
                debit_account_id=accounts[values["debit_account"]],
                credit_account_id=accounts[values["credit_account"]],
                amount=parse_amount(values["amount"], values["currency"]),
                currency=values["currency"],
                external_id=values["external_id"],
                pending=_flag(values.get("pending", "")),
                metadata=_metadata(values.get("metadata", "")),
            )
        except ValidationError as exc:
            tally.rejects += _model_rejects(row, exc, _TRANSFER_FIELDS)
            continue
        requests.append((row, new))
    if progress is not None:
        progress(0, len(requests))
    for start in range(0, len(requests), POST_SLICE):
        part = requests[start : start + POST_SLICE]
        outcomes = ledger.create_transfers(
            tenant, [(new, f"{IMPORT_KEY_PREFIX}{new.external_id}") for _, new in part]
        )
        for (row, _), outcome in zip(part, outcomes, strict=True):
            if outcome.status == "created":
                tally.posted += 1
            elif outcome.status == "duplicate":
                tally.duplicates += 1
            else:
                assert outcome.error is not None
                error = outcome.error
                column = "external_id" if error.code == "idempotency_key_reused" else None
                tally.rejects.append(Rejected(row, column, f"{error.code}: {error.detail}"))
        if progress is not None:
            progress(start + len(part), len(requests))


def write_rejects(frame: pd.DataFrame, rejects: Sequence[Rejected], path: Path) -> None:
    """The rejected rows (one line per reason) with ``row``, ``column`` and ``reason``."""
    lines = frame.iloc[[r.row - 1 for r in rejects]].reset_index(drop=True)
    lines.insert(0, "reason", [r.reason for r in rejects])
    lines.insert(0, "column", [r.column or "" for r in rejects])
    lines.insert(0, "row", [r.row for r in rejects])
    path.parent.mkdir(parents=True, exist_ok=True)
    lines.to_csv(path, index=False)


def import_file(
    ledger: SyncLedger,
    tenant: str,
    path: Path,
    *,
    kind: Kind,
    rejects_path: Path,
    progress: Progress | None = None,
) -> ImportSummary:
    """Validate ``path`` (every bad row at once), post its good rows exactly once, write the
    rejected rows to ``rejects_path`` (only if there are any). ``progress(done, total)`` is
    called as rows are posted. :class:`ImportFileError` if the file itself is unusable
    (nothing written)."""
    if kind not in COLUMNS:
        raise ImportFileError(f"kind is accounts or transfers, not {kind!r}")
    frame = read_frame(Path(path))
    accounts = _resolve_accounts(ledger, tenant, frame) if kind == "transfers" else {}
    tally = _Tally()
    tally.rejects = validate(kind, frame, set(accounts))
    bad_rows = {r.row for r in tally.rejects}
    rows = [
        (row, values)
        for row, values in enumerate(frame.to_dict("records"), start=1)
        if row not in bad_rows
    ]
    if kind == "accounts":
        _import_accounts(ledger, tenant, rows, tally, progress)
    else:
        _import_transfers(ledger, tenant, rows, accounts=accounts, tally=tally, progress=progress)
    rejects = sorted(tally.rejects, key=lambda r: r.row)
    if rejects:
        write_rejects(frame, rejects, Path(rejects_path))
    return ImportSummary(
        kind=kind,
        rows=len(frame),
        posted=tally.posted,
        duplicates=tally.duplicates,
        rejected=len({r.row for r in rejects}),
        rejects_path=Path(rejects_path) if rejects else None,
    )
