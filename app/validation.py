"""The explorer's cross-validated validation table (``foliotune validate``), computed in the background.

A :class:`ValidationQueue` runs :func:`models.validate.validate` once per distinct measurement
table in one worker process (a :class:`concurrent.futures.ProcessPoolExecutor`; the server's own
requests stay responsive), so at most one validation runs at a time and at most ``max_queued``
wait; a table beyond that is submitted when a place frees. Results are cached per table.
:meth:`ValidationQueue.close` stops the worker; a worker whose server died (SIGKILL, SIGTERM)
notices within a second and exits.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections import OrderedDict
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import pandas as pd

from models.measurements import data_hash

#: Column headers of the validation summary as shown in the explorer.
VALIDATION_HEADERS: dict[str, str] = {
    "source": "source",
    "metric": "metric",
    "n": "rows",
    "analytic": "analytic",
    "montecarlo": "Monte Carlo",
    "calibrated_cv": "calibrated (5-fold)",
    "calibrated_loso": "calibrated (leave source out)",
    "regression_cv": "regression (5-fold)",
    "regression_loso": "regression (leave source out)",
    "pi90_coverage": "90 % PI coverage",
}
#: Validations kept per queue (each a small table).
MAX_DONE = 8
#: How often a worker checks that the server that started it is still there (s).
PARENT_CHECK_S = 1.0


@dataclass(frozen=True)
class ValidationResult:
    """A validation's state: ``status`` is "done", "running", "queued" or "failed: why"."""

    summary: pd.DataFrame | None
    notes: tuple[str, ...]
    status: str


def _watch(parent_pid: int, stop: Any) -> None:
    while not stop.wait(PARENT_CHECK_S):
        if os.getppid() != parent_pid:
            break  # the server is gone: nobody will read this validation
    os._exit(1)


def _worker_init(parent_pid: int, stop: Any) -> None:
    os.nice(10)  # behind the explorer's own requests
    threading.Thread(target=_watch, args=(parent_pid, stop), daemon=True, name="foliotune-watch").start()


def _validate_summary(meas: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Worker job: ``foliotune validate``'s summary (all models, default seed and replicas)."""
    # Imported here, in the worker: the models take seconds to import, and the worker watches its
    # server (from _worker_init) from the moment it starts, not after that.
    from models.validate import summary_table, validate

    v = validate(meas)
    return summary_table(v), list(v.notes)


class ValidationQueue:
    """Validations of measurement tables, one at a time in a worker process, cached per table."""

    def __init__(self, max_queued: int = 2) -> None:
        self.max_queued = max_queued
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._stop: Any = None  # multiprocessing.Event: set, the worker exits
        self._running: dict[str, Future[tuple[pd.DataFrame, list[str]]]] = {}
        self._done: OrderedDict[str, ValidationResult] = OrderedDict()
        self._closed = False

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: the server has threads (and maybe Ray) that a forked child must not copy
            ctx = multiprocessing.get_context("spawn")
            self._stop = ctx.Event()
            self._pool = ProcessPoolExecutor(
                max_workers=1, mp_context=ctx, initializer=_worker_init, initargs=(os.getpid(), self._stop)
            )
        return self._pool

    def summary(self, meas: pd.DataFrame) -> ValidationResult:
        """The validation of ``meas``: done (from the cache), running, queued, or failed."""
        key = data_hash(meas)
        with self._lock:
            if key in self._done:
                self._done.move_to_end(key)
                return self._done[key]
            if self._closed:
                return ValidationResult(None, (), "failed: the explorer is stopping")
            fut = self._running.get(key)
            if fut is None:
                if len(self._running) > self.max_queued:
                    return ValidationResult(None, (), "queued")
                try:
                    fut = self._running[key] = self._executor().submit(_validate_summary, meas)
                except BrokenProcessPool:
                    self._pool = None
                    return ValidationResult(None, (), "failed: the validation worker stopped")
            if not fut.done():
                return ValidationResult(None, (), "running")
            del self._running[key]
            try:
                summary, notes = fut.result()
                result = ValidationResult(summary, tuple(notes), "done")
            except BrokenProcessPool:
                self._pool = None  # a new worker for the next table
                result = ValidationResult(None, (), "failed: the validation worker stopped")
            except Exception as exc:
                result = ValidationResult(None, (), f"failed: {type(exc).__name__}: {exc}"[:300])
            self._done[key] = result
            while len(self._done) > MAX_DONE:
                self._done.popitem(last=False)
            return result

    def close(self) -> None:
        """Cancel queued validations and end the worker (a running validation is killed)."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
            self._running.clear()
        if pool is None:
            return
        self._stop.set()  # the worker exits within PARENT_CHECK_S, even mid-validation
        pool.shutdown(wait=True, cancel_futures=True)


def validation_display(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary with readable headers, errors and coverage in %, models that did not run dropped."""
    cols = [c for c in VALIDATION_HEADERS if c in summary.columns]
    cols = [c for c in cols if c in ("source", "metric", "n") or summary[c].notna().any()]
    out = summary[cols].copy()
    for c in cols:
        if c not in ("source", "metric", "n"):
            out[c] = out[c].map(lambda x: "—" if pd.isna(x) else f"{100 * float(x):.1f} %")
    return out.rename(columns=VALIDATION_HEADERS)


__all__ = ["VALIDATION_HEADERS", "ValidationQueue", "ValidationResult", "validation_display"]
