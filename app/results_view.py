"""A sweep's results, queried out of core for the explorer and ``foliotune recommend``.

Both go through :func:`load_results`, which checks a results folder (manifest, chunk files, columns)
and returns a :class:`Results`: the index of the workloads the sweep holds (per model and profile, the
distinct values of each workload parameter), and the candidate rows of one workload (~100 rows, one per
choice) or of the cells of a landscape, each fetched by a DuckDB query over the Parquet chunk files
(:mod:`app.results_store`, which also keeps a sorted copy of a large sweep for fast lookups). The rows
themselves are never held in the process. Opened folders are cached per folder and per content
signature (chunk names, sizes and modification times), so a finished or resumed sweep is reopened and
an unchanged one is not. Nothing here ships raw rows to a browser.

A folder that cannot be used raises :class:`ResultsError` with one line saying what is wrong and
what to do; the explorer shows it as a page, the CLI as an error.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from app.recommend import CHOICE, OPTIONAL_WORKLOAD, WORKLOAD, Provenance, default_choice
from app.results_store import ResultsStore, StoreQueryError
from models.errors import UserError
from models.evaluate import evaluate
from models.params import FLOAT_WORKLOAD, INTEGER_WORKLOAD, defaults_for
from models.profiles import get_profile
from sweep.results import MANIFEST, StoreError, SweepResults, open_results

if TYPE_CHECKING:
    from app.regression_source import RegressionSource

#: The workload a sweep's rows are looked up by: every workload parameter with one value per row (a
#: sweep may vary the kernel version, NUMA hinting, writeback and allocation failure too; rows of
#: different values are different workloads). ``folio_mix`` is not one (empty on one-size rows).
KEY_WORKLOAD: tuple[str, ...] = (*WORKLOAD, *(k for k in OPTIONAL_WORKLOAD if k != "folio_mix"))
KEY_COLUMNS: tuple[str, ...] = ("model", "profile", *KEY_WORKLOAD)
OUTPUT_COLUMNS: tuple[str, ...] = (
    "pages_per_s",
    "stall_p99_s",
    "cpu_time_s",
    "remote_cpu_time_s",
    "ipis",
    "flush_rounds",
    "window_p99_s",
)
OPTIONAL_COLUMNS: tuple[str, ...] = (
    "pages_per_s_se",
    "stall_p99_s_se",
    "stall_p50_s",
    "cpu_time_s_se",
    "ipis_se",
    "infeasible",
)
REQUIRED_COLUMNS: tuple[str, ...] = ("model", "profile", *CHOICE, *KEY_WORKLOAD, *OUTPUT_COLUMNS)
# INTEGER_WORKLOAD / FLOAT_WORKLOAD come from the parameter table (models.params), so every workload
# parameter, numa_hinting and writeback_prob included, keys the index in its column's type


class ResultsError(UserError):
    """A results folder that cannot be used; the message says what is wrong and what to do."""


# --------------------------------------------------------------------------------------------------
# Results

#: The column the rows of one workload are sorted by: the sweep's point number (the order of the file).
ORDER_COLUMN = "point"
_CATEGORIES = ("model", "profile", "copy_engine", "mode")


@dataclass
class Results:
    """A sweep folder (opened by :func:`sweep.results.open_results`): the index of its workloads, and
    its rows fetched on demand by :attr:`store`."""

    folder: Path
    sweep: SweepResults
    store: ResultsStore
    index: dict[tuple[Any, ...], int]  # (model, profile, *workload) -> usable rows
    warnings: tuple[str, ...] = ()
    n_rows_total: int = 0
    n_rows_usable: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _baselines: dict[tuple[Any, ...], pd.DataFrame] = field(default_factory=dict, repr=False)
    _memo: dict[tuple[Any, ...], Any] = field(default_factory=dict, repr=False)

    def _cached(self, key: tuple[Any, ...], make: Any) -> Any:
        """Memoize small derived values (profile lists, workload values) of this immutable dataset."""
        with self._lock:
            if key in self._memo:
                return self._memo[key]
        value = make()
        with self._lock:
            self._memo[key] = value
        return value

    # ---- what is in the sweep
    @property
    def models(self) -> tuple[str, ...]:
        return self._cached(("models",), self._models)  # type: ignore[no-any-return]

    def _models(self) -> tuple[str, ...]:
        present = {k[0] for k in self.index}
        return tuple(m for m in ("montecarlo", "analytic") if m in present) + tuple(
            sorted(str(m) for m in present - {"montecarlo", "analytic"})
        )

    @property
    def default_model(self) -> str:
        return self.models[0]

    def profiles(self, model: str | None = None) -> tuple[str, ...]:
        m = model or self.default_model
        return self._cached(  # type: ignore[no-any-return]
            ("profiles", m), lambda: tuple(sorted({k[1] for k in self.index if k[0] == m}))
        )

    def workload_values(self, profile: str, model: str | None = None) -> dict[str, list[Any]]:
        """Distinct values of each workload parameter in the sweep for ``profile`` (a fresh copy)."""
        m = model or self.default_model

        def make() -> dict[str, list[Any]]:
            keys = [k for k in self.index if k[0] == m and k[1] == profile]
            out: dict[str, list[Any]] = {}
            for i, name in enumerate(KEY_WORKLOAD):
                vals = {py_value(k[2 + i]) for k in keys}
                out[name] = sorted(vals, key=lambda v: (isinstance(v, str), v))
            return out

        cached = self._cached(("values", m, profile), make)
        return {k: list(v) for k, v in cached.items()}

    def default_workload(self, profile: str, model: str | None = None) -> dict[str, Any]:
        """The profile's own workload defaults where the sweep has them, else the first swept value."""
        try:
            d = defaults_for(get_profile(profile))
        except UserError:
            d = {}
        values = self.workload_values(profile, model)
        return {k: (d.get(k) if d.get(k) in v else v[0]) if v else d.get(k) for k, v in values.items()}

    def resolve_workload(
        self, profile: str, partial: Mapping[str, Any] | None, model: str | None = None
    ) -> dict[str, Any]:
        """``partial`` completed with the defaults; values the sweep lacks for ``profile`` fall back."""
        base = self.default_workload(profile, model)
        values = self.workload_values(profile, model)
        for k, v in (partial or {}).items():
            if k not in base or v is None:
                continue
            v = coerce_value(k, v)
            if v in values.get(k, []):
                base[k] = v
        return base

    def key(self, model: str, profile: str, workload: Mapping[str, Any]) -> tuple[Any, ...]:
        return (model, profile, *(coerce_value(k, workload.get(k)) for k in KEY_WORKLOAD))

    def _check(self, profile: str, model: str | None) -> str:
        m = model or self.default_model
        if m not in self.models:
            raise ResultsError(f"{self.folder}: no {m!r} results (models here: {', '.join(self.models)})")
        if profile not in self.profiles(m):
            raise ResultsError(
                f"{self.folder}: no results for profile {profile!r} (profiles here: {', '.join(self.profiles(m))})"
            )
        return m

    def candidates(self, profile: str, workload: Mapping[str, Any], model: str | None = None) -> pd.DataFrame:
        """The sweep's rows (one per choice, in the sweep's point order) for a profile and an exact workload."""
        m = self._check(profile, model)
        key = self.key(m, profile, workload)
        if key not in self.index:
            values = self.workload_values(profile, m)
            options = "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in values.items())
            raise ResultsError(f"{self.folder}: this workload is not in the sweep for {profile} ({options})")
        return self.candidates_many([key])[key]

    def candidates_many(self, keys: Sequence[tuple[Any, ...]]) -> dict[tuple[Any, ...], pd.DataFrame]:
        """The rows of several workloads (keys from :meth:`key`) in one query: {key: rows}. Keys the
        sweep does not hold get no entry."""
        wanted = [k for k in dict.fromkeys(keys) if k in self.index]
        if not wanted:
            return {}
        where = {c: [k[i] for k in wanted] for i, c in enumerate(KEY_COLUMNS)}
        try:
            rows = self.store.rows(where)
        except StoreQueryError as exc:
            raise ResultsError(f"{self.folder}: {exc}") from None
        out: dict[tuple[Any, ...], pd.DataFrame] = {}
        if rows.empty:
            return out
        rows = _categorical(rows.drop(columns=[ORDER_COLUMN]))
        key_arrays = [rows[c].to_numpy() for c in KEY_COLUMNS]
        want = set(wanted)
        n = len(rows)
        # rows come sorted by the key columns: split them where the key changes
        change = np.zeros(n, dtype=bool)
        for a in key_arrays:
            change[1:] |= a[1:] != a[:-1]
        starts = [0, *np.flatnonzero(change).tolist(), n]
        for s, e in zip(starts[:-1], starts[1:], strict=True):
            k = tuple(py_value(a[s]) for a in key_arrays)
            if k in want:
                out[k] = rows.iloc[s:e].reset_index(drop=True)
        return out

    def choice_values(self, profiles: Sequence[str]) -> dict[str, list[Any]]:
        """Distinct swept values of each choice column among the usable rows of ``profiles`` (any model)."""
        try:
            d = self.store.distinct(CHOICE, {"profile": list(profiles)})
        except StoreQueryError as exc:
            raise ResultsError(f"{self.folder}: {exc}") from None
        return {c: sorted({py_value(v) for v in d[c].tolist()}) for c in CHOICE}

    def baseline(
        self,
        profile: str,
        workload: Mapping[str, Any],
        model: str | None = None,
        candidates: pd.DataFrame | None = None,
    ) -> pd.DataFrame:
        """The profile's kernel default (its HPAGE_PMD_NR, CPU copy) for the workload: from the sweep, else evaluated.

        ``candidates``: the workload's rows when the caller has them (else they are fetched). The
        evaluation uses the sweep's seed and replicas, so it is the row the sweep would have had.
        """
        m = model or self.default_model
        cands = self.candidates(profile, workload, m) if candidates is None else candidates
        dflt = default_choice(profile)
        sel = (
            (cands["batch_limit_pages"].to_numpy() == dflt["batch_limit_pages"])
            & (cands["copy_engine"].to_numpy().astype(str) == dflt["copy_engine"])
            & (cands["copy_threads"].to_numpy() == dflt["copy_threads"])
        )
        if sel.any():
            return cands[sel].iloc[:1]
        key = self.key(m, profile, workload)
        with self._lock:
            hit = self._baselines.get(key)
        if hit is not None:
            return hit
        seed, replicas = self.sweep.spec.seed, self.sweep.spec.replicas
        point = pd.DataFrame([{"profile": profile, **{k: py_value(v) for k, v in workload.items()}, **dflt}])
        try:
            out = evaluate(point, m, seed=seed, replicas=replicas, on_invalid="mark")
        except UserError:
            return point.iloc[:0]
        if "infeasible" in out.columns and out["infeasible"].iloc[0]:
            out = out.iloc[:0]
        with self._lock:
            self._baselines[key] = out
        return out

    def provenance(self, model: str | None = None, regression: RegressionSource | None = None) -> Provenance:
        return Provenance(
            sweep_spec_hash=self.sweep.spec.hash,
            model_version=self.sweep.manifest.code_version,
            data_hash=self.data_hash,
            results_model=model or self.default_model,
            regression_version=regression.version if regression is not None and regression.ok else "",
            measurements_hash=regression.data_hash if regression is not None and regression.ok else "",
        )

    @property
    def data_hash(self) -> str:
        return self.sweep.data_hash

    def status(self) -> dict[str, Any]:
        """The sweep's status (:class:`sweep.results.SweepStatus`, as loaded) plus the usable rows
        (``rows_loaded``: feasible rows the explorer recommends from) and all rows."""
        return {
            **self.sweep.status.to_dict(),
            "rows_loaded": self.n_rows_usable,
            "rows_total": self.n_rows_total,
        }


def _categorical(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows in the dtypes callers know: the text columns categorical."""
    for c in _CATEGORIES:
        if c in rows.columns:
            rows[c] = rows[c].astype(str).astype("category")
    return rows


def py_value(v: Any) -> Any:
    """A numpy scalar as the Python value it holds (other values unchanged)."""
    return v.item() if isinstance(v, np.generic) else v


def coerce_value(name: str, v: Any) -> Any:
    """A workload value in the type of its column (so dictionary lookups match)."""
    v = py_value(v)
    if v is None:
        return None
    try:
        if name in INTEGER_WORKLOAD:
            f = float(v)
            return int(f) if f.is_integer() else f
        if name in FLOAT_WORKLOAD:
            return float(v)
    except (TypeError, ValueError):
        return v
    return str(v)


def _signature(folder: Path) -> tuple[Any, ...]:
    try:
        entries = sorted(
            (p.name, st.st_size, st.st_mtime_ns)
            for p in folder.iterdir()
            if (p.name.endswith(".parquet") or p.name == MANIFEST) and (st := p.stat())
        )
    except OSError as exc:
        raise ResultsError(f"{folder}: cannot list the folder ({exc.strerror})") from None
    return tuple(entries)


_signatures: dict[str, tuple[float, tuple[Any, ...]]] = {}
_signatures_lock = threading.Lock()


def _recent_signature(p: Path, max_age_s: float) -> tuple[Any, ...]:
    key = str(p)
    now = time.monotonic()
    if max_age_s > 0:
        with _signatures_lock:
            hit = _signatures.get(key)
        if hit is not None and now - hit[0] < max_age_s:
            return hit[1]
    sig = _signature(p)
    with _signatures_lock:
        if len(_signatures) > 64:
            _signatures.clear()
        _signatures[key] = (now, sig)
    return sig


def load_results(folder: str | os.PathLike[str], max_age_s: float = 0.0) -> Results:
    """Check and load a results folder (cached while its files are unchanged).

    ``max_age_s``: reuse the folder's signature (one stat per chunk file, ~10 ms for a thousand
    chunks) if it was taken less than this long ago; the explorer passes a second, so one
    interaction does not list the folder several times and a changed folder is still seen within it.
    """
    p = Path(folder).expanduser()
    if not p.exists():
        raise ResultsError(f"{p}: no such results folder (run `foliotune sweep SPEC --out {p}` first)")
    if not p.is_dir():
        raise ResultsError(f"{p}: is a file, not a results folder")
    resolved = p.resolve()
    sig = _recent_signature(resolved, max_age_s)
    with _signatures_lock:
        lock = _load_locks.setdefault(str(resolved), threading.Lock())
    with lock:  # two requests (or a request and the warm-up) open a folder once, not twice
        return _load_cached(str(resolved), sig)


_load_locks: dict[str, threading.Lock] = {}


@lru_cache(maxsize=4)
def _load_cached(folder: str, signature: tuple[Any, ...]) -> Results:
    del signature  # part of the cache key only
    return _load(Path(folder))


def _load(p: Path) -> Results:
    if not (p / MANIFEST).exists():
        raise ResultsError(
            f"{p}: not a foliotune results folder (no {MANIFEST}); give the folder `foliotune sweep` wrote"
        )
    try:
        sweep = open_results(p)
    except StoreError as exc:
        raise ResultsError(str(exc)) from None
    st = sweep.status
    if st.damaged_files:
        raise ResultsError(
            f"{p}: damaged chunk file(s) {_listed(st.damaged_files)}; rerun the same spec into this "
            "folder to recompute them"
        )
    if st.chunks_missing:
        raise ResultsError(
            f"{p}: {st.chunks_missing} chunk file(s) recorded in the manifest are missing; "
            "rerun the same spec into this folder to recompute them"
        )
    if not sweep.files:
        raise ResultsError(f"{p}: the sweep has no finished chunks yet (0 of {st.chunks_total})")
    names = sweep.columns()
    lacking = [c for c in (*REQUIRED_COLUMNS, ORDER_COLUMN) if c not in names]
    if lacking:
        raise ResultsError(
            f"{sweep.files[0]}: missing column(s) {', '.join(lacking)}; not a foliotune results file"
        )
    feasible = "isfinite(pages_per_s) AND isfinite(stall_p99_s)"
    if "infeasible" in names:
        feasible += " AND coalesce(CAST(infeasible AS VARCHAR), '') = ''"
    columns = [c for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if c in names and c != "infeasible"]
    n_total = sum(rec.rows for rec in sweep.manifest.chunks.values() if p / rec.file in sweep.files)
    store = ResultsStore(
        sweep.files,
        columns=columns,
        keys=KEY_COLUMNS,
        order=ORDER_COLUMN,
        feasible=feasible,
        data_hash=sweep.data_hash,
        n_rows=n_total,
    )
    try:
        table = store.workloads()
    except StoreQueryError as exc:
        raise ResultsError(f"{p}: {exc}") from None
    n_usable = int(table["n"].sum())
    if n_usable == 0:
        raise ResultsError(f"{p}: every point of the sweep is infeasible; nothing to recommend from")
    # a workload with a missing (NULL or NaN) parameter is no workload one can ask for
    complete = np.ones(len(table), dtype=bool)
    for c in KEY_COLUMNS:
        col = table[c]
        complete &= col.notna().to_numpy()
    table = table[complete]
    index = {
        tuple(py_value(x) for x in k): int(n)
        for *k, n in zip(*(table[c].tolist() for c in KEY_COLUMNS), table["n"].tolist(), strict=True)
    }
    warnings = []
    if not sweep.complete:
        warnings.append(
            f"the sweep is incomplete ({st.chunks_done} of {st.chunks_total} chunks); results are partial"
        )
    return Results(
        folder=p,
        sweep=sweep,
        store=store,
        index=index,
        warnings=tuple(warnings),
        n_rows_total=n_total,
        n_rows_usable=n_usable,
    )


def _listed(names: Sequence[str], most: int = 5) -> str:
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(names[:most]) + more
