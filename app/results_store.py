"""SQL over a sweep's chunk files (DuckDB), out of core, and the sorted copy that makes lookups fast.

A :class:`ResultsStore` answers the questions :mod:`app.results_view` asks of a sweep folder (the
workloads it holds, the rows of some workloads, the distinct values of some columns) with DuckDB
queries over the verified Parquet chunk files; no query returns more than the rows asked for, so a
10^7-point sweep is never held in the process.

Scanning every chunk file costs ~0.1–0.3 s a query on a 10^7-point sweep (432 files). For large
folders (``CACHE_MIN_ROWS`` rows or more) the explorer therefore has the store write
(:meth:`ResultsStore.ensure_cache`), once, in a background thread at the lowest CPU priority
(interrupted if the process exits first), a DuckDB database holding the feasible rows of the columns used here sorted
by workload, and the table of workloads: a lookup in it reads one or two row groups (~5 ms). The file is
named by the folder's data hash (SHA-256 over its verified chunks) and by the layout it holds (its
columns and keys), so changed data, or a copy another version keyed differently, is never read; it lives in ``$FOLIOTUNE_CACHE_DIR`` (default ``$XDG_CACHE_HOME/foliotune`` or
``~/.cache/foliotune``), and only the ``CACHE_KEEP`` most recent such files are kept. Until it is
written (or when it cannot be) every query reads the chunk files themselves: same rows, slower.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from models.errors import UserError

#: Folders with fewer rows are always queried from their chunk files (fast enough, no cache file).
CACHE_MIN_ROWS = 500_000
#: Cache files kept in the cache folder (the most recently used; older ones are deleted).
CACHE_KEEP = 4
#: Bump when the cache's tables change, so older files are not read.
CACHE_FORMAT = 1
BUILD_THREAD = "foliotune-results-cache"


class StoreQueryError(UserError):
    """A query over the chunk files failed (a file changed or vanished under the explorer)."""


def cache_dir() -> Path:
    """Where cache files go: ``$FOLIOTUNE_CACHE_DIR``, else ``$XDG_CACHE_HOME/foliotune``, else
    ``~/.cache/foliotune``."""
    env = os.environ.get("FOLIOTUNE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "foliotune"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class ResultsStore:
    """DuckDB queries over verified chunk files; see the module docstring.

    ``files``: the chunk files; ``columns``: the columns rows are returned with (all present in the
    files); ``keys``: the columns that name a workload (the index); ``order``: the column rows of
    one workload are sorted by (the sweep's point number); ``feasible``: an SQL condition a usable
    row meets; ``data_hash``: names the data (the cache file); ``n_rows``: rows in the files.
    """

    def __init__(
        self,
        files: Sequence[Path],
        columns: Sequence[str],
        keys: Sequence[str],
        order: str,
        feasible: str,
        data_hash: str,
        n_rows: int,
    ) -> None:
        self.files = [str(f) for f in files]
        self.columns = list(columns)
        self.keys = list(keys)
        self.order = order
        self.feasible = feasible
        self.data_hash = data_hash
        self.n_rows = n_rows
        self._con = duckdb.connect()
        self._con.execute("SET enable_progress_bar = false")
        self._con.execute("SET parquet_metadata_cache = true")  # the footers are read once, not per query
        self._lock = threading.Lock()
        self._cached = False  # the cache database is attached as "fc"
        self._building: threading.Thread | None = None
        self.cache_error = ""
        if n_rows >= CACHE_MIN_ROWS:
            self._attach_if_present()

    # ---- queries
    def _source(self) -> tuple[str, dict[str, Any]]:
        if self._cached:
            return "fc.rows", {}
        cols = ", ".join(_q(c) for c in dict.fromkeys([*self.columns, *self.keys, self.order]))
        return f"(SELECT {cols} FROM read_parquet($files) WHERE {self.feasible})", {"files": self.files}

    def _query(self, sql: str, params: Mapping[str, Any]) -> pd.DataFrame:
        try:
            with self._con.cursor() as cur:
                return cur.execute(sql, dict(params)).df()
        except duckdb.Error as exc:
            why = " ".join(str(exc).split())[:200]
            raise StoreQueryError(f"cannot read the chunk files ({why})") from None

    def workloads(self) -> pd.DataFrame:
        """One row per distinct key (``keys`` columns) with its number of usable rows ``n``."""
        if self._cached:
            return self._query("SELECT * FROM fc.workloads", {})
        src, params = self._source()
        keys = ", ".join(_q(k) for k in self.keys)
        return self._query(f"SELECT {keys}, count(*) AS n FROM {src} GROUP BY ALL", params)

    def rows(self, where: Mapping[str, Sequence[Any]]) -> pd.DataFrame:
        """The usable rows (``columns``, then ``order``) whose column ``c`` is in ``where[c]`` for
        every ``c``, sorted by the key columns and ``order``; in a chunk file or cache, only the row
        groups whose statistics allow a match are read."""
        src, params = self._source()
        conds = []
        for i, (col, values) in enumerate(where.items()):
            vals = list(dict.fromkeys(values))
            if not vals:
                return pd.DataFrame(columns=[*self.columns, self.order])
            names = [f"v{i}_{j}" for j in range(len(vals))]
            params.update(zip(names, vals, strict=True))
            conds.append(f"{_q(col)} IN ({', '.join('$' + n for n in names)})")
        cols = ", ".join(_q(c) for c in dict.fromkeys([*self.columns, self.order]))
        order = ", ".join(_q(c) for c in [*self.keys, self.order])
        cond = " AND ".join(conds) or "TRUE"
        return self._query(f"SELECT {cols} FROM {src} WHERE {cond} ORDER BY {order}", params)

    def distinct(self, columns: Sequence[str], where: Mapping[str, Sequence[Any]]) -> pd.DataFrame:
        """Distinct combinations of ``columns`` among the usable rows matching ``where`` (as in :meth:`rows`)."""
        src, params = self._source()
        conds = []
        for i, (col, values) in enumerate(where.items()):
            names = [f"v{i}_{j}" for j in range(len(values))]
            params.update(zip(names, values, strict=True))
            conds.append(f"{_q(col)} IN ({', '.join('$' + n for n in names)})" if names else "FALSE")
        cols = ", ".join(_q(c) for c in columns)
        cond = " AND ".join(conds) or "TRUE"
        return self._query(f"SELECT DISTINCT {cols} FROM {src} WHERE {cond}", params)

    # ---- the sorted copy
    @property
    def cache_path(self) -> Path:
        """The copy's file: named by the data and by what it holds (columns, keys, order, the
        usable-row condition), so a copy written by a version that keyed or held other columns is
        never read."""
        layout = json.dumps([CACHE_FORMAT, self.columns, self.keys, self.order, self.feasible])
        tag = hashlib.sha256(layout.encode()).hexdigest()[:12]
        return cache_dir() / f"results-{CACHE_FORMAT}-{self.data_hash[:32]}-{tag}.duckdb"

    @property
    def cached(self) -> bool:
        return self._cached

    def _attach_if_present(self) -> bool:
        path = self.cache_path
        if not path.is_file():
            return False
        try:
            with self._lock:
                if not self._cached:
                    self._con.execute(f"ATTACH '{path}' AS fc (READ_ONLY)")
                    self._con.execute("SELECT count(*) FROM fc.workloads").fetchall()
                    self._cached = True
            with contextlib.suppress(OSError):
                os.utime(path)  # most recently used: kept by the pruning
            return True
        except duckdb.Error as exc:  # damaged or from another format: rebuilt
            self.cache_error = " ".join(str(exc).split())[:200]
            with contextlib.suppress(duckdb.Error):
                self._con.execute("DETACH DATABASE IF EXISTS fc")
            with contextlib.suppress(OSError):
                path.unlink()
            return False

    def ensure_cache(self, wait: bool = False) -> None:
        """Start writing the sorted copy in a background thread (large folders only; once).
        ``wait``: return when it is written (or has failed)."""
        if self._cached or self.n_rows < CACHE_MIN_ROWS:
            return
        with self._lock:
            if self._building is None:
                self._building = threading.Thread(target=self._build, name=BUILD_THREAD, daemon=True)
                self._building.start()
            th = self._building
        if wait:
            th.join()

    def _build(self) -> None:
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)  # this thread only (Linux)
        if self._attach_if_present():
            return
        path = self.cache_path
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            cols = ", ".join(_q(c) for c in dict.fromkeys([*self.columns, *self.keys, self.order]))
            keys = ", ".join(_q(k) for k in self.keys)
            # one thread: DuckDB then works in this (low-priority) thread only
            with duckdb.connect(str(tmp), config={"threads": 1, "memory_limit": "1GB"}) as con:
                con.execute("SET enable_progress_bar = false")
                with _builds_lock:
                    _builds[threading.get_ident()] = con
                con.execute(
                    f"CREATE TABLE rows AS SELECT {cols} FROM read_parquet($files) WHERE {self.feasible} "
                    f"ORDER BY {keys}, {_q(self.order)}",
                    {"files": self.files},
                )
                con.execute(f"CREATE TABLE workloads AS SELECT {keys}, count(*) AS n FROM rows GROUP BY ALL")
                con.execute("CHECKPOINT")
            os.replace(tmp, path)
            _prune(path.parent)
        except (duckdb.Error, OSError) as exc:
            self.cache_error = " ".join(str(exc).split())[:200]
            with contextlib.suppress(OSError):
                tmp.unlink()
            for extra in tmp.parent.glob(tmp.name + ".wal"):
                with contextlib.suppress(OSError):
                    extra.unlink()
            return
        finally:
            with _builds_lock:
                _builds.pop(threading.get_ident(), None)
        self._attach_if_present()

    def close(self) -> None:
        with contextlib.suppress(duckdb.Error):
            self._con.close()


# Copies being written, by thread: interrupted when the process exits. A thread still inside DuckDB
# when the interpreter finalizes is unwound by force, which DuckDB does not survive (SIGABRT).
_builds: dict[int, duckdb.DuckDBPyConnection] = {}
_builds_lock = threading.Lock()


@atexit.register
def _stop_builds() -> None:
    with _builds_lock:
        running = list(_builds.items())
    for _ident, con in running:
        with contextlib.suppress(duckdb.Error):
            con.interrupt()
    for th in threading.enumerate():
        if th.name == BUILD_THREAD and th.is_alive():
            th.join(timeout=10)


def _prune(folder: Path) -> None:
    """Keep the ``CACHE_KEEP`` most recently used cache files of ``folder``."""
    try:
        files = sorted(folder.glob("results-*.duckdb"), key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return
    for old in files[CACHE_KEEP:]:
        with contextlib.suppress(OSError):
            old.unlink()
    now = time.time()
    for tmp in folder.glob("results-*.duckdb.*.tmp*"):  # left by a process that was killed
        with contextlib.suppress(OSError):
            if now - tmp.stat().st_mtime > 3600:
                tmp.unlink()


__all__ = ["CACHE_KEEP", "CACHE_MIN_ROWS", "ResultsStore", "StoreQueryError", "cache_dir"]
