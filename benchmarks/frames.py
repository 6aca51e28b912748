# Copyright 2026 stalwart contributors
"""stalwart.frames benchmark: write rates against awswrangler, and the memory of an export.

    uv run python benchmarks/frames.py [--rows 100000] [--export-rows 200000]

- rows per second of ``write_frame`` writing one ``--rows`` frame (ids, an account, an int
  amount, a float, a bool, an aware timestamp, a note with missing values) into a fresh
  SQLite file, Redis (its own server) and DynamoDB (moto server): exactly once per row key,
  create-if-absent transactions of the store's ``max_transaction_items``;
- DynamoDB is written with ``chunk_rows=1`` (one conditional PutItem per row) unless
  ``--dynamodb-chunk-rows`` says otherwise: moto's TransactWriteItems deep-copies the whole
  table once per item for its rollback, so a transaction's cost grows with the table and a
  100,000-row write in transactions would measure that copy, not DynamoDB (whose transactions
  cost per item: 2 WCU each);
- on the same moto server and data, a fresh table of the same shape (``pk``/``sk`` keys),
  awswrangler's ``wr.dynamodb.put_df`` (its default threads): the frame converted first so it
  accepts it (floats -> Decimal, timestamps -> ISO text, a ``pk``/``sk`` pair per row),
  conversion not timed; put_df overwrites blindly (BatchWriteItem puts), so it does less;
- ``export_peak_mib``: a child process exports ``--export-rows`` transfer-shaped records (id,
  debit/credit account ids, amount int, currency, status, created_at, metadata dict), seeded
  with ``write_frame`` into a SQLite file, to Parquet with ``iter_frames`` + ``write_pages``;
  the figure is its peak RSS during the export minus its RSS just before (Linux
  ``/proc/self/status`` VmHWM after resetting it through ``/proc/self/clear_refs``).

Rates on this shared machine are noisy: compare the ratios. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import _paths  # noqa: F401  # first: sys.path and AWS env (see benchmarks/_paths.py)

# isort: split

import numpy as np
import pandas as pd

from servers import moto_server, redis_server
from stalwart.frames import iter_frames, write_frame, write_pages
from stalwart.storage import open_store

PARTITION = "bench"


def write_frame_data(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    return pd.DataFrame(
        {
            "id": [f"row-{n:08d}" for n in range(rows)],
            "account": [f"acct-{n % 997:04d}" for n in range(rows)],
            "amount": rng.integers(1, 1_000_000, rows),
            "ratio": rng.random(rows),
            "flag": rng.random(rows) < 0.5,
            "created_at": pd.Timestamp("2026-01-01", tz="UTC")
            + pd.to_timedelta(np.arange(rows), unit="s"),
            "note": [None if n % 4 else f"note {n}" for n in range(rows)],
        }
    )


def timed_write(url: str, frame: pd.DataFrame, chunk_rows: int | None = None) -> float:
    store = open_store(url)
    try:
        began = time.perf_counter()
        report = write_frame(
            store, frame, partition=PARTITION, key_columns=["id"], chunk_rows=chunk_rows
        )
        elapsed = time.perf_counter() - began
    finally:
        store.close()
    assert report.written == len(frame), report
    return len(frame) / elapsed


def wrangler_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` as put_df accepts it: boto3 refuses floats, so Decimal; timestamps as text."""
    return frame.assign(
        pk=PARTITION,
        sk=frame["id"],
        ratio=[Decimal(str(value)) for value in frame["ratio"]],
        created_at=frame["created_at"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    )


def timed_wrangler(endpoint: str, table: str, frame: pd.DataFrame) -> float:
    import awswrangler as wr  # noqa: PLC0415 - only this measurement needs it
    import boto3  # noqa: PLC0415

    from stalwart.storage.dynamodb import create_table  # noqa: PLC0415

    create_table(boto3.client("dynamodb", endpoint_url=endpoint), table)
    wr.config.dynamodb_endpoint_url = endpoint
    converted = wrangler_frame(frame)
    began = time.perf_counter()
    wr.dynamodb.put_df(df=converted, table_name=table)
    elapsed = time.perf_counter() - began
    count = boto3.client("dynamodb", endpoint_url=endpoint).scan(TableName=table, Select="COUNT")
    assert count["Count"] == len(frame) or "LastEvaluatedKey" in count, count
    return len(frame) / elapsed


def transfers(rows: int, start: int) -> pd.DataFrame:
    ids = range(start, start + rows)
    return pd.DataFrame(
        {
            "id": [f"tr-{n:09d}" for n in ids],
            "debit_account_id": [f"acct-{n % 5003:05d}" for n in ids],
            "credit_account_id": [f"acct-{(n * 7) % 5003:05d}" for n in ids],
            "amount": [(n * 37) % 1_000_000 + 1 for n in ids],
            "currency": ["EUR" if n % 3 else "USD" for n in ids],
            "status": ["posted" if n % 10 else "pending" for n in ids],
            "created_at": pd.Timestamp("2026-01-01", tz="UTC")
            + pd.to_timedelta(np.arange(start, start + rows), unit="s"),
            "metadata": [{"channel": "api", "batch": n // 1000, "tags": ["a", n % 5]} for n in ids],
        }
    )


def seed_transfers(url: str, rows: int) -> None:
    store = open_store(url)
    try:
        for start in range(0, rows, 50_000):  # seeding in slices keeps this process small
            write_frame(
                store,
                transfers(min(50_000, rows - start), start),
                partition="transfers",
                key_columns=["id"],
            )
    finally:
        store.close()


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def export_child(url: str, out: str) -> None:
    """Run in a child process: export, then print rows and the peak RSS delta (MiB)."""
    store = open_store(url)
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM (peak RSS) to the current RSS
    before = _status_kib("VmRSS")
    rows = write_pages(iter_frames(store, "transfers"), out)
    peak = _status_kib("VmHWM")
    store.close()
    print(json.dumps({"rows": rows, "peak_mib": (peak - before) / 1024}))


def export_peak_mib(url: str, rows: int, workdir: Path) -> float:
    out = workdir / "transfers.parquet"
    done = subprocess.run(
        [sys.executable, __file__, "--export-child", url, str(out)],
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["rows"] == rows, result
    return float(result["peak_mib"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows of the written frame")
    parser.add_argument("--export-rows", type=int, default=200_000, help="transfers exported")
    parser.add_argument(
        "--dynamodb-chunk-rows",
        type=int,
        default=1,
        help="write_frame's chunk_rows on DynamoDB (default 1: moto's transactions copy the "
        "whole table once per item, see the docstring)",
    )
    parser.add_argument("--export-child", nargs=2, metavar=("URL", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.export_child:
        export_child(*args.export_child)
        return
    frame = write_frame_data(args.rows)
    rates: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="stalwart-frames-") as tmp:
        workdir = Path(tmp)
        rates["sqlite"] = timed_write(f"sqlite:///{workdir / 'w.db'}?table=w", frame)
        print(f"sqlite    {rates['sqlite']:9.0f} rows/s", flush=True)
        with redis_server() as redis:
            rates["redis"] = timed_write(f"{redis.url}?prefix=bench", frame)
        print(f"redis     {rates['redis']:9.0f} rows/s", flush=True)
        with moto_server() as moto:
            dynamo = f"dynamodb://frames-bench?region=us-east-1&endpoint_url={moto.url}&create=true"
            rates["dynamodb"] = timed_write(dynamo, frame, chunk_rows=args.dynamodb_chunk_rows)
            print(f"dynamodb  {rates['dynamodb']:9.0f} rows/s", flush=True)
            rates["awswrangler_dynamodb"] = timed_wrangler(moto.url, "frames-wrangler", frame)
            print(f"wrangler  {rates['awswrangler_dynamodb']:9.0f} rows/s", flush=True)
        export_url = f"sqlite:///{workdir / 'transfers.db'}?table=transfers"
        began = time.perf_counter()
        seed_transfers(export_url, args.export_rows)
        print(f"seeded {args.export_rows} transfers in {time.perf_counter() - began:.1f}s")
        peak = export_peak_mib(export_url, args.export_rows, workdir)
        print(f"export peak RSS delta {peak:.1f} MiB", flush=True)
    print(
        json.dumps(
            {
                "write_rows_per_s": {name: round(rate) for name, rate in rates.items()},
                "export_peak_mib": round(peak, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
