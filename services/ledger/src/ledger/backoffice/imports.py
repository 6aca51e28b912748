"""Imports: upload a CSV or Parquet file of accounts or transfers; the import runs on a
background thread (``ledger.ops.importer.import_file``, exactly once per row), a progress page
refreshes itself (``<meta http-equiv="refresh">``, no JavaScript), then shows the summary and
the rejects file to download.

The job's state is a record in the store, ``Key(f"t/{tenant}/import-jobs", job_id)``, not
process memory: any worker shows any job's progress. The uploaded file and its rejects live in
``settings.import_dir`` (shared by the workers of one machine; several machines need a shared
directory there).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from flask import Blueprint, abort, redirect, render_template, request, send_file, url_for
from werkzeug.utils import secure_filename
from werkzeug.wrappers import Response

from ledger.backoffice.context import backoffice, login_required, operator, operator_required
from ledger.service import SyncLedger
from stalwart.storage import Key, Record, StorageError, Store, VersionConflict

if TYPE_CHECKING:
    from ledger.ops.importer import ImportSummary

blueprint = Blueprint("imports", __name__)
log = logging.getLogger("ledger.backoffice")
KINDS: Final = ("transfers", "accounts")
SUFFIXES: Final = (".csv", ".parquet")
PROGRESS_EVERY_S: Final = 0.5
"""The job record is rewritten at most this often while rows are posted."""
STALE_AFTER_S: Final = 60.0
"""A running job without progress for this long is shown as possibly stopped (its worker
may have died: an import re-run posts nothing twice, so uploading the file again is safe)."""
RECENT_JOBS: Final = 10


def jobs_partition(tenant: str) -> str:
    return f"t/{tenant}/import-jobs"


def _job_key(tenant: str, job_id: str) -> Key:
    return Key(jobs_partition(tenant), job_id)


def _new_job_id() -> str:
    """Sorts by start time (the newest job lists first in a descending query)."""
    return f"{time.time_ns() // 1_000_000:013d}-{uuid.uuid4().hex[:8]}"


class _JobRecord:
    """Writes one job's record; only the import's own thread writes it after creation."""

    def __init__(self, store: Store, record: Record) -> None:
        self.store = store
        self.record = record
        self.last_write = 0.0

    def update(self, **changes: Any) -> None:
        data = {**self.record.data, **changes, "updated_at": time.time()}
        try:
            self.record = self.store.replace(
                self.record.key, data, expected_version=self.record.version
            )
        except VersionConflict:
            # An earlier write failed ambiguously (it had landed): write over the stored one.
            current = self.store.get(self.record.key)
            if current is None:
                raise
            data = {**current.data, **changes, "updated_at": time.time()}
            self.record = self.store.replace(current.key, data, expected_version=current.version)
        self.last_write = time.monotonic()

    def progress(self, done: int, total: int) -> None:
        if time.monotonic() - self.last_write >= PROGRESS_EVERY_S or done == total:
            try:
                self.update(done=done, total=total)
            except StorageError:  # the page shows older progress; the import goes on
                log.warning("could not record the progress of import %s", self.record.key.sort)


def _summary_fields(summary: ImportSummary) -> dict[str, Any]:
    return {
        "status": "done",
        "rows": summary.rows,
        "posted": summary.posted,
        "duplicates": summary.duplicates,
        "rejected": summary.rejected,
        "rejects_path": str(summary.rejects_path) if summary.rejects_path else None,
        "finished_at": time.time(),
    }


def run_import(
    ledger: SyncLedger, job: _JobRecord, *, tenant: str, path: Path, kind: str, rejects: Path
) -> None:
    """The background thread: import, then record the summary (or why it failed)."""
    # Imported here: pandas and pandera add seconds to the start of every worker otherwise.
    from ledger.ops.importer import ImportFileError, import_file  # noqa: PLC0415

    try:
        summary = import_file(
            ledger,
            tenant,
            path,
            kind="accounts" if kind == "accounts" else "transfers",
            rejects_path=rejects,
            progress=job.progress,
        )
    except ImportFileError as exc:  # the file itself is unusable: its message is for people
        job.update(status="failed", error=str(exc), finished_at=time.time())
    except Exception:
        log.exception("import %s failed", job.record.key.sort)
        error = "the import stopped on an unexpected error (logged); uploading the file again "
        error += "is safe: rows already posted are skipped as duplicates"
        try:
            job.update(status="failed", error=error, finished_at=time.time())
        except StorageError:
            log.exception("could not record the failure of import %s", job.record.key.sort)
    else:
        job.update(**_summary_fields(summary))


def _recent_jobs(tenant: str) -> list[dict[str, Any]]:
    page = backoffice().store.query(jobs_partition(tenant), limit=RECENT_JOBS, descending=True)
    return [{"id": record.key.sort, **record.data} for record in page.records]


@blueprint.get("/imports")
@login_required
def new_import() -> str:
    return render_template("imports.html", jobs=_recent_jobs(operator().tenant), kinds=KINDS)


@blueprint.post("/imports")
@operator_required
def start_import() -> Response | tuple[str, int]:
    tenant = operator().tenant
    upload = request.files.get("file")
    kind = request.form.get("kind", "")
    name = secure_filename(upload.filename or "") if upload is not None else ""
    if upload is None or not name.lower().endswith(SUFFIXES) or kind not in KINDS:
        error = "Choose a .csv or .parquet file and what it holds (accounts or transfers)."
        page = render_template("imports.html", jobs=_recent_jobs(tenant), kinds=KINDS, error=error)
        return page, 422
    state = backoffice()
    job_id = _new_job_id()
    folder = Path(state.settings.import_dir) / tenant / job_id
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    upload.save(path)
    now = time.time()
    data = {
        "status": "running",
        "kind": kind,
        "filename": name,
        "operator": operator().username,
        "started_at": now,
        "updated_at": now,
        "done": 0,
        "total": 0,
    }
    job = _JobRecord(state.store, state.store.create(_job_key(tenant, job_id), data))
    rejects = folder / f"{Path(name).stem}.rejects.csv"
    worker = threading.Thread(
        target=run_import,
        args=(state.ledger, job),
        kwargs={"tenant": tenant, "path": path, "kind": kind, "rejects": rejects},
        name=f"import-{job_id}",
        daemon=True,
    )
    worker.start()
    return redirect(url_for("imports.show_import", job_id=job_id), 303)


def _job(tenant: str, job_id: str) -> dict[str, Any]:
    record = backoffice().store.get(_job_key(tenant, job_id))
    if record is None:
        abort(404, "There is no such import.")
    return {"id": job_id, **record.data}


@blueprint.get("/imports/<job_id>")
@login_required
def show_import(job_id: str) -> str:
    job = _job(operator().tenant, job_id)
    now = time.time()
    elapsed = max((job.get("finished_at") or now) - job["started_at"], 1e-3)
    stale = job["status"] == "running" and now - job["updated_at"] > STALE_AFTER_S
    return render_template(
        "import.html", job=job, rate=job["done"] / elapsed, elapsed=elapsed, stale=stale
    )


@blueprint.get("/imports/<job_id>/rejects")
@login_required
def download_rejects(job_id: str) -> Response:
    tenant = operator().tenant
    job = _job(tenant, job_id)
    folder = (Path(backoffice().settings.import_dir) / tenant / job_id).resolve()
    path = Path(job.get("rejects_path") or "").resolve()
    if not job.get("rejects_path") or folder not in path.parents or not path.is_file():
        abort(404, "This import has no rejects file.")
    return send_file(path, mimetype="text/csv", as_attachment=True, download_name=path.name)
