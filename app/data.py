"""Sweep results, measurements and the regression, loaded and aggregated on the server.

The explorer and ``foliotune recommend`` both go through :func:`load_results`, which checks a results
folder (manifest, chunk files, columns) and returns a :class:`Results`: the feasible rows of the
columns the explorer needs, with an index from *(model, profile, workload)* to row positions, so an
interaction looks up ~100 candidate rows instead of scanning millions. Loaded folders are cached per
folder and per content signature (chunk names, sizes and modification times), so a finished or
resumed sweep is reloaded and an unchanged one is not. Nothing here ships raw rows to a browser.

A folder that cannot be used raises :class:`ResultsError` with one line saying what is wrong and
what to do; the explorer shows it as a page, the CLI as an error.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from app.recommend import CHOICE, DEFAULT_CHOICE, WORKLOAD, Constraints, Provenance, Recommendation, recommend
from models.errors import UserError
from models.params import FLOAT_WORKLOAD, INTEGER_WORKLOAD

MANIFEST = "_foliotune_manifest.json"
KEY_COLUMNS: tuple[str, ...] = ("model", "profile", *WORKLOAD)
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
REQUIRED_COLUMNS: tuple[str, ...] = ("model", "profile", *CHOICE, *WORKLOAD, *OUTPUT_COLUMNS)


class ResultsError(UserError):
    """A results folder that cannot be used; the message says what is wrong and what to do."""


# --------------------------------------------------------------------------------------------------
# Results


@dataclass
class Results:
    """The usable rows of a sweep folder plus its manifest and an index by workload."""

    folder: Path
    manifest: dict[str, Any]
    frame: pd.DataFrame
    index: dict[tuple[Any, ...], np.ndarray]
    warnings: tuple[str, ...] = ()
    n_rows_total: int = 0
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
            for i, name in enumerate(WORKLOAD):
                vals = {_py(k[2 + i]) for k in keys}
                out[name] = sorted(vals, key=lambda v: (isinstance(v, str), v))
            return out

        cached = self._cached(("values", m, profile), make)
        return {k: list(v) for k, v in cached.items()}

    def default_workload(self, profile: str, model: str | None = None) -> dict[str, Any]:
        """The profile's own workload defaults where the sweep has them, else the first swept value."""
        from models.params import defaults_for
        from models.profiles import get_profile

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
            v = _coerce(k, v)
            if v in values.get(k, []):
                base[k] = v
        return base

    def key(self, model: str, profile: str, workload: Mapping[str, Any]) -> tuple[Any, ...]:
        return (model, profile, *(_coerce(k, workload.get(k)) for k in WORKLOAD))

    def candidates(self, profile: str, workload: Mapping[str, Any], model: str | None = None) -> pd.DataFrame:
        """The sweep's rows (one per choice) for a profile and an exact workload."""
        m = model or self.default_model
        if m not in self.models:
            raise ResultsError(f"{self.folder}: no {m!r} results (models here: {', '.join(self.models)})")
        if profile not in self.profiles(m):
            raise ResultsError(
                f"{self.folder}: no results for profile {profile!r} (profiles here: {', '.join(self.profiles(m))})"
            )
        rows = self.index.get(self.key(m, profile, workload))
        if rows is None:
            values = self.workload_values(profile, m)
            options = "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in values.items())
            raise ResultsError(f"{self.folder}: this workload is not in the sweep for {profile} ({options})")
        return self.frame.iloc[rows]

    def baseline(self, profile: str, workload: Mapping[str, Any], model: str | None = None) -> pd.DataFrame:
        """The kernel default (512 pages, CPU copy) for the workload: from the sweep, else evaluated.

        The evaluation uses the sweep's seed and replicas, so it is the row the sweep would have had.
        """
        m = model or self.default_model
        cands = self.candidates(profile, workload, m)
        sel = (
            (cands["batch_limit_pages"] == DEFAULT_CHOICE["batch_limit_pages"])
            & (cands["copy_engine"].astype(str) == DEFAULT_CHOICE["copy_engine"])
            & (cands["copy_threads"] == DEFAULT_CHOICE["copy_threads"])
        )
        if sel.any():
            return cands[sel.to_numpy()].iloc[:1]
        key = self.key(m, profile, workload)
        with self._lock:
            hit = self._baselines.get(key)
        if hit is not None:
            return hit
        from models.evaluate import evaluate

        spec = self.manifest.get("spec", {}) or {}
        sweep = spec.get("sweep", spec) if isinstance(spec, dict) else {}
        seed = int(sweep.get("seed", 0) or 0)
        replicas = int(sweep.get("replicas", 64) or 64)
        point = pd.DataFrame(
            [{"profile": profile, **{k: _py(v) for k, v in workload.items()}, **DEFAULT_CHOICE}]
        )
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
            sweep_spec_hash=str(self.manifest.get("spec_hash", "")),
            model_version=str(self.manifest.get("code_version", "")),
            data_hash=self.data_hash,
            results_model=model or self.default_model,
            regression_version=regression.version if regression is not None and regression.ok else "",
            measurements_hash=regression.data_hash if regression is not None and regression.ok else "",
        )

    @property
    def data_hash(self) -> str:
        chunks = self.manifest.get("chunks", {}) or {}
        h = hashlib.sha256()
        for c in sorted(chunks, key=lambda x: int(x)):
            h.update(f"{c}:{chunks[c].get('sha256', '')}\n".encode())
        return h.hexdigest()

    def status(self) -> dict[str, Any]:
        m = self.manifest
        chunks = m.get("chunks", {}) or {}
        done = sum(int(e.get("stop", 0)) - int(e.get("start", 0)) for e in chunks.values())
        return {
            "folder": str(self.folder),
            "name": m.get("name", ""),
            "spec_hash": m.get("spec_hash", ""),
            "code_version": m.get("code_version", ""),
            "models": m.get("models", []),
            "n_points": int(m.get("n_points", 0)),
            "points_done": done,
            "chunks_done": len(chunks),
            "chunks_total": int(m.get("n_chunks", 0)),
            "complete": bool(m.get("complete")),
            "rows_loaded": len(self.frame),
            "rows_total": self.n_rows_total,
            "updated": m.get("updated", ""),
        }


def _py(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _coerce(name: str, v: Any) -> Any:
    """A workload value in the type of its column (so dictionary lookups match)."""
    v = _py(v)
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
    return _load_cached(str(resolved), _recent_signature(resolved, max_age_s))


@lru_cache(maxsize=4)
def _load_cached(folder: str, signature: tuple[Any, ...]) -> Results:
    del signature  # part of the cache key only
    return _load(Path(folder))


def _load(p: Path) -> Results:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sweep.storage import PART_RE, StoreError, read_manifest

    try:
        manifest = read_manifest(p)
    except StoreError as exc:
        raise ResultsError(str(exc)) from None
    if manifest is None:
        raise ResultsError(
            f"{p}: not a foliotune results folder (no {MANIFEST}); give the folder `foliotune sweep` wrote"
        )
    for k in ("spec_hash", "n_chunks", "chunks"):
        if k not in manifest:
            raise ResultsError(
                f"{p / MANIFEST}: damaged manifest (no {k!r}); rerun the sweep into a new folder"
            )
    parts = sorted(f for f in p.iterdir() if PART_RE.match(f.name))
    recorded = manifest.get("chunks", {}) or {}
    missing = sorted(
        e.get("file", f"chunk {c}") for c, e in recorded.items() if not (p / e.get("file", "")).is_file()
    )
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ResultsError(
            f"{p}: {len(missing)} chunk file(s) recorded in the manifest are missing ({shown}); "
            "rerun the same spec into this folder to recompute them"
        )
    if not parts:
        raise ResultsError(f"{p}: the sweep has no finished chunks yet (0 of {manifest['n_chunks']})")
    tables = []
    for f in parts:
        try:
            schema = pq.read_schema(f)
            cols = [c for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if c in schema.names]
            lacking = [c for c in REQUIRED_COLUMNS if c not in schema.names]
            if lacking:
                raise ResultsError(
                    f"{f}: missing column(s) {', '.join(lacking)}; not a foliotune results file"
                )
            tables.append(pq.read_table(f, columns=cols))
        except ResultsError:
            raise
        except (OSError, pa.ArrowException, ValueError) as exc:
            why = " ".join(str(exc).split())[:160]
            raise ResultsError(
                f"{f}: damaged chunk file ({why}); delete it and rerun the same spec to recompute it"
            ) from None
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except pa.ArrowException as exc:
        raise ResultsError(f"{p}: chunk files disagree on their columns ({exc})") from None
    df = table.to_pandas()
    n_total = len(df)
    ok = np.isfinite(df["pages_per_s"].to_numpy(dtype=np.float64)) & np.isfinite(
        df["stall_p99_s"].to_numpy(dtype=np.float64)
    )
    if "infeasible" in df.columns:
        ok &= df["infeasible"].fillna("").astype(str).to_numpy() == ""
        df = df.drop(columns=["infeasible"])
    df = df[ok].reset_index(drop=True)
    if df.empty:
        raise ResultsError(f"{p}: every point of the sweep is infeasible; nothing to recommend from")
    for c in ("model", "profile", "copy_engine", "mode"):
        df[c] = df[c].astype("category")
    index = {
        tuple(_py(x) for x in k): v
        for k, v in df.groupby(list(KEY_COLUMNS), observed=True, sort=False).indices.items()
    }
    warnings = []
    if not manifest.get("complete"):
        warnings.append(
            f"the sweep is incomplete ({len(recorded)} of {manifest['n_chunks']} chunks); results are partial"
        )
    return Results(
        folder=p, manifest=manifest, frame=df, index=index, warnings=tuple(warnings), n_rows_total=n_total
    )


# --------------------------------------------------------------------------------------------------
# Regression (optional: models.regression may be missing or fail)


@dataclass
class RegressionSource:
    """A fitted regression behind one function, or the reason there is none."""

    predict: Any = None  # callable(points) -> DataFrame with pages_per_s(_lo,_hi), or None
    version: str = ""
    data_hash: str = ""
    note: str = ""
    label: str = "shipped measurements"

    @property
    def ok(self) -> bool:
        return self.predict is not None


def _fast_pages(reg: Any, model: Any, points: pd.DataFrame) -> pd.DataFrame:
    """pages/s with its 90 % interval from an in-memory model (the same arithmetic as
    ``models.regression.predict_regression``, which reloads the model from disk on every call)."""
    from models.profiles import get_profile

    metric = "bytes_per_s" if "bytes_per_s" in model.metrics_ else None
    if metric is None:
        raise UserError("the regression does not predict bytes_per_s")
    full, prior = reg.analytic_prior(points, np.full(len(points), metric, dtype=object))
    p, lo, hi = model.predict_interval(full.assign(metric=metric, analytic_prior=prior))
    page_b = np.array([get_profile(str(n)).page_kb * 1024.0 for n in full["profile"]])
    return full.assign(
        pages_per_s=np.asarray(p) / page_b,
        pages_per_s_lo=np.asarray(lo) / page_b,
        pages_per_s_hi=np.asarray(hi) / page_b,
    )


def _regression_from_dir(model_dir: str | None, label: str) -> RegressionSource:
    try:
        from models import regression as reg
    except Exception as exc:  # not there yet, or broken: the app works without it
        return RegressionSource(note=f"regression model not available ({type(exc).__name__}: {exc})"[:200])
    try:
        if model_dir is None:
            model, manifest = reg.shipped_model()
        else:
            model, manifest = reg.load_model(model_dir)
    except Exception as exc:
        return RegressionSource(
            note=f"regression fit failed ({type(exc).__name__}: {' '.join(str(exc).split())})"[:240]
        )
    cache: dict[tuple[Any, ...], pd.DataFrame] = {}
    lock = threading.Lock()

    def predict(points: pd.DataFrame) -> pd.DataFrame:
        key = tuple(map(tuple, points.astype(str).to_numpy().tolist())) + tuple(points.columns)
        with lock:
            hit = cache.get(key)
        if hit is not None:
            return hit
        try:
            out = _fast_pages(reg, model, points)
        except UserError:
            raise
        except Exception:  # an API change in models.regression: take the slow, documented path
            out = reg.predict_regression(points, model_dir=model_dir)
        with lock:
            if len(cache) > 512:
                cache.clear()
            cache[key] = out
        return out

    version = f"{manifest.get('format', 'regression')} v{manifest.get('format_version', '?')}"
    versions = manifest.get("versions", {})
    if isinstance(versions, dict) and versions.get("foliotune"):
        version += f" (foliotune {versions['foliotune']})"
    return RegressionSource(
        predict=predict, version=version, data_hash=str(manifest.get("data_sha256", "")), label=label
    )


@lru_cache(maxsize=1)
def shipped_regression() -> RegressionSource:
    """The regression fitted on the shipped measurements (fitted and cached on first use)."""
    return _regression_from_dir(None, "shipped measurements")


def regression_with(extra: pd.DataFrame, model_dir: Path) -> RegressionSource:
    """Refit on the shipped measurements plus ``extra`` (validated rows); saved under ``model_dir``."""
    from models import regression as reg
    from models.measurements import data_hash, load_measurements

    shipped, _ = load_measurements()
    data = pd.concat([shipped, extra], ignore_index=True)
    table = reg.training_table(data)
    if table.empty:
        raise UserError("no rows with a metric the model predicts; nothing to fit")
    model = reg.MigrationRegressor().fit(table, table["value"].to_numpy())
    reg.save_model(model, model_dir, data_sha256=data_hash(table), extra={"measurements": "shipped+upload"})
    src = _regression_from_dir(str(model_dir), "shipped + uploaded measurements")
    if not src.ok:
        raise UserError(src.note)
    return src


# --------------------------------------------------------------------------------------------------
# The recommendation for a folder (the one function the CLI and the app call)


def recommend_for(
    results: Results,
    profile: str | None,
    workload: Mapping[str, Any] | None,
    constraints: Constraints,
    model: str | None = None,
    regression: RegressionSource | None = None,
) -> Recommendation:
    m = model or results.default_model
    prof = profile or _default_profile(results, m)
    wl = results.resolve_workload(prof, workload, m)
    cands = results.candidates(prof, wl, m)
    reg = regression if regression is not None and regression.ok else None
    note = "" if reg is not None else (regression.note if regression is not None else "")
    return recommend(
        cands,
        profile=prof,
        workload=wl,
        constraints=constraints,
        baseline=results.baseline(prof, wl, m),
        provenance=results.provenance(m, reg),
        regression=reg.predict if reg is not None else None,
        regression_note=note,
    )


def _default_profile(results: Results, model: str) -> str:
    from models.profiles import DEFAULT_PROFILE

    profs = results.profiles(model)
    return DEFAULT_PROFILE if DEFAULT_PROFILE in profs else profs[0]


def default_profile(results: Results, model: str | None = None) -> str:
    return _default_profile(results, model or results.default_model)


# --------------------------------------------------------------------------------------------------
# Aggregates for the figures


def engine_curves(cands: pd.DataFrame, constraints: Constraints) -> pd.DataFrame:
    """Per copy engine, the rows of its best thread count (the one whose best allowed pages/s is highest).

    One curve per engine against batch limit keeps the plots readable; the thread count is in the
    ``copy_threads`` column of the result.
    """
    df = cands.copy()
    df["copy_engine"] = df["copy_engine"].astype(str)
    allowed = df["stall_p99_s"].to_numpy() <= constraints.stall_p99_s
    if constraints.cpu_time_s is not None:
        allowed &= df["cpu_time_s"].to_numpy() <= constraints.cpu_time_s
    if constraints.remote_cpu_time_s is not None:
        allowed &= df["remote_cpu_time_s"].to_numpy() <= constraints.remote_cpu_time_s
    df["allowed"] = allowed
    # numpy rather than a pandas groupby per engine (a few ms per interaction on ~100 rows)
    eng = df["copy_engine"].to_numpy()
    thr = df["copy_threads"].to_numpy()
    pps = df["pages_per_s"].to_numpy(dtype=float)
    score = np.where(allowed, pps, -np.inf)
    keep = np.zeros(len(df), dtype=bool)
    for e in dict.fromkeys(eng.tolist()):
        in_e = eng == e
        threads = np.unique(thr[in_e])
        best = np.array([score[in_e & (thr == t)].max() for t in threads])
        if not np.isfinite(best.max()):
            best = np.array([pps[in_e & (thr == t)].max() for t in threads])
        best_t = threads[best == best.max()].min()
        keep |= in_e & (thr == best_t)
    out = df[keep].sort_values(["copy_engine", "batch_limit_pages"])
    return out.reset_index(drop=True)


def regression_band(
    cands: pd.DataFrame, rec: Recommendation, regression: RegressionSource | None
) -> pd.DataFrame | None:
    """The regression's pages/s interval over batch limit for the recommended engine and threads."""
    if regression is None or not regression.ok:
        return None
    c = rec.choice
    sel = cands[
        (cands["copy_engine"].astype(str).to_numpy() == c.copy_engine)
        & (cands["copy_threads"].to_numpy() == c.copy_threads)
    ]
    try:
        pts = sel[["profile", *CHOICE, *WORKLOAD]].astype(object)
        return regression.predict(pts.reset_index(drop=True))  # type: ignore[no-any-return]
    except Exception:  # the regression is optional
        return None


def landscape(
    results: Results,
    profile: str,
    workload: Mapping[str, Any],
    x: str,
    y: str,
    constraints: Constraints,
    model: str | None = None,
) -> pd.DataFrame:
    """Best batch limit, engine, threads and gain over the default for each (x, y) cell.

    ``x``/``y`` are workload parameters or ``profile``; other parameters are the given workload's
    (or each profile's defaults where the sweep lacks them). Each cell is :func:`recommend` itself,
    so the landscape agrees with the Choose page.
    """
    m = model or results.default_model
    profiles = list(results.profiles(m)) if "profile" in (x, y) else [profile]
    rows = []
    for prof in profiles:
        vals = results.workload_values(prof, m)
        xs = [prof] if x == "profile" else vals.get(x, [])
        ys = [prof] if y == "profile" else vals.get(y, [])
        for xv in xs:
            for yv in ys:
                partial = dict(workload)
                if x != "profile":
                    partial[x] = xv
                if y != "profile":
                    partial[y] = yv
                wl = results.resolve_workload(prof, partial, m)
                if (x != "profile" and wl.get(x) != xv) or (y != "profile" and wl.get(y) != yv):
                    continue
                try:
                    rec = recommend(
                        results.candidates(prof, wl, m),
                        profile=prof,
                        workload=wl,
                        constraints=constraints,
                        baseline=results.baseline(prof, wl, m),
                    )
                except UserError:
                    continue
                c = rec.choice
                rows.append(
                    {
                        "x": xv,
                        "y": yv,
                        "profile": prof,
                        "batch_limit_pages": c.batch_limit_pages if rec.feasible else math.nan,
                        "copy_engine": c.copy_engine if rec.feasible else "",
                        "copy_threads": c.copy_threads if rec.feasible else 0,
                        "gain": rec.gain if (rec.feasible and rec.gain is not None) else math.nan,
                        "pages_per_s": c.pages_per_s,
                        "stall_p99_s": c.stall_p99_s,
                        "feasible": rec.feasible,
                    }
                )
    return pd.DataFrame(
        rows,
        columns=[
            "x",
            "y",
            "profile",
            "batch_limit_pages",
            "copy_engine",
            "copy_threads",
            "gain",
            "pages_per_s",
            "stall_p99_s",
            "feasible",
        ],
    )


def landscape_axes(results: Results, profile: str, model: str | None = None) -> list[str]:
    """Parameters that can be a landscape axis: workload parameters with several values, and profile."""
    vals = results.workload_values(profile, model)
    axes = [k for k in WORKLOAD if len(vals.get(k, [])) > 1]
    if len(results.profiles(model)) > 1:
        axes.append("profile")
    return axes


# --------------------------------------------------------------------------------------------------
# Measurements (Evidence page)


@lru_cache(maxsize=1)
def shipped_measurements() -> pd.DataFrame:
    from models.measurements import load_measurements

    data, _ = load_measurements()
    return data


def parse_measurement_upload(content: bytes, filename: str, max_bytes: int) -> tuple[pd.DataFrame, str]:
    """Validate an uploaded measurement file held in memory; returns good rows and a summary.

    ``filename`` is only a label and decides CSV or Parquet by its suffix; nothing is opened by name.
    """
    import io

    from models.measurements import validate_table

    if len(content) > max_bytes:
        raise UserError(
            f"{filename}: {len(content):,} bytes is above the upload limit of {max_bytes:,} bytes"
        )
    if not content.strip():
        raise UserError(f"{filename}: empty file")
    label = Path(filename).name or "upload"
    suffix = Path(label).suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            raw = pd.read_parquet(io.BytesIO(content))
            first = 1
        else:
            raw = pd.read_csv(
                io.BytesIO(content), dtype=str, keep_default_na=False, na_values=[""], skipinitialspace=True
            )
            first = 2
    except Exception as exc:
        raise UserError(
            f"{label}: not a readable CSV or Parquet file ({' '.join(str(exc).split())[:160]})"
        ) from None
    rows, report = validate_table(raw, label, strict=False, first_row=first)
    if rows.empty:
        raise UserError(f"{label}: no valid rows ({report.summary()})")
    return rows, report.summary()


# --------------------------------------------------------------------------------------------------
# Evidence: measurements over the model, residuals, validation, sensitivity

EVIDENCE_X: tuple[str, ...] = ("batch_limit_pages", "folio_kb", "copy_threads", "n_folios", "target_cpus")
GROUP_COLUMNS: tuple[str, ...] = (
    "copy_engine",
    "copy_threads",
    "folio_kb",
    "batch_limit_pages",
    "n_folios",
    "mode",
)


def _analytic(points: pd.DataFrame) -> pd.DataFrame:
    from models.evaluate import evaluate

    cols = [c for c in points.columns if c in ("profile", *CHOICE, *WORKLOAD)]
    return evaluate(points[cols].reset_index(drop=True), "analytic", on_invalid="mark")


def _predicted_metric(out: pd.DataFrame, metric: str) -> np.ndarray:
    if metric == "time_per_page_s":
        from models.profiles import get_profile

        page_kb = np.array([get_profile(str(p)).page_kb for p in out["profile"]], dtype=float)
        pages = out["n_folios"].to_numpy(dtype=float) * out["folio_kb"].to_numpy(dtype=float) / page_kb
        return out["time_s"].to_numpy(dtype=float) / pages
    if metric in out.columns:
        return out[metric].to_numpy(dtype=float)
    return np.full(len(out), np.nan)


def evidence_metrics(meas: pd.DataFrame, profile: str) -> list[str]:
    rows = meas[(meas["profile"] == profile) & meas["predicted"].astype(bool)]
    return sorted(rows["metric"].unique().tolist())


def evidence_x_options(meas: pd.DataFrame, profile: str, metric: str) -> list[str]:
    """Parameters that vary among the measured rows (candidates for the x axis), most values first."""
    rows = meas[(meas["profile"] == profile) & (meas["metric"] == metric)]
    opts = [c for c in EVIDENCE_X if rows[c].nunique() > 1]
    return sorted(opts, key=lambda c: -rows[c].nunique()) or ["batch_limit_pages"]


def _group_label(row: Mapping[str, Any], cols: Sequence[str]) -> str:
    parts = []
    for c in cols:
        v = row[c]
        if c == "copy_engine":
            parts.append(f"{v}×{row['copy_threads']}" if "copy_threads" in cols else str(v))
        elif c == "copy_threads" and "copy_engine" in cols:
            continue
        elif c == "copy_threads":
            parts.append(f"{v} thr")
        elif c == "folio_kb":
            parts.append(f"{v} KiB")
        elif c == "batch_limit_pages":
            parts.append(f"batch {v}")
        elif c == "n_folios":
            parts.append(f"{v} folios")
        else:
            parts.append(f"{c}={v}")
    return " · ".join(parts) or "all"


MAX_GROUPS = 6


def evidence_tables(
    meas: pd.DataFrame, profile: str, metric: str, x: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Measured points and analytic curves for one profile and metric; returns (points, curves, x).

    Rows are grouped by the other parameters that vary; the ``MAX_GROUPS`` largest groups are shown.
    """
    rows = meas[(meas["profile"] == profile) & (meas["metric"] == metric)].reset_index(drop=True)
    empty = pd.DataFrame(columns=["x", "predicted", "group"])
    if rows.empty:
        return rows.assign(x=[], group=[]), empty, x or "batch_limit_pages"
    opts = evidence_x_options(meas, profile, metric)
    x = x if x in opts else opts[0]
    others = [c for c in GROUP_COLUMNS if c != x and rows[c].nunique() > 1]
    if "copy_threads" in others and "copy_engine" not in others:
        pass
    rows["group"] = [_group_label({str(k): v for k, v in r.items()}, others) for r in rows.to_dict("records")]
    top = rows["group"].value_counts().index[:MAX_GROUPS]
    rows = rows[rows["group"].isin(top)].reset_index(drop=True)
    rows["x"] = rows[x]
    curves = []
    xs_all = np.unique(rows[x].to_numpy(dtype=float))
    grid = np.unique(np.concatenate([xs_all, np.geomspace(max(xs_all.min(), 1e-9), xs_all.max(), 24)]))
    grid = np.unique(np.round(grid))
    if x == "folio_kb":
        grid = np.unique(2 ** np.round(np.log2(grid)))
    for grp, g in rows.groupby("group", sort=True):
        first = g.iloc[0]
        pts = pd.DataFrame({c: first[c] for c in ("profile", *CHOICE, *WORKLOAD)}, index=range(len(grid)))
        pts[x] = grid.astype(int)
        out = _analytic(pts)
        ok = out["infeasible"].astype(str).to_numpy() == ""
        curves.append(
            pd.DataFrame({"x": grid[ok], "predicted": _predicted_metric(out, metric)[ok], "group": grp})
        )
    return rows, (pd.concat(curves, ignore_index=True) if curves else empty), x


def residual_table(meas: pd.DataFrame, regression: RegressionSource | None = None) -> pd.DataFrame:
    """log10(measured / predicted) per measured row: analytic for every metric, regression for throughput."""
    rows = meas[meas["predicted"].astype(bool)].reset_index(drop=True)
    if rows.empty:
        return pd.DataFrame(columns=["source", "profile", "metric", "model", "log10_ratio"])
    out = _analytic(rows)
    pred = np.full(len(rows), np.nan)
    for m in rows["metric"].unique():
        sel = (rows["metric"] == m).to_numpy()
        pred[sel] = _predicted_metric(out, str(m))[sel]
    value = rows["value"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.log10(value / pred)
    frames = [
        pd.DataFrame(
            {
                "source": rows["source"],
                "profile": rows["profile"],
                "metric": rows["metric"],
                "model": "analytic",
                "log10_ratio": ratio,
            }
        )
    ]
    if regression is not None and regression.ok:
        sel = (rows["metric"] == "bytes_per_s").to_numpy()
        if sel.any():
            from models.profiles import get_profile

            try:
                rp = regression.predict(rows[sel][["profile", *CHOICE, *WORKLOAD]].reset_index(drop=True))
                page_b = np.array([get_profile(str(p)).page_kb * 1024.0 for p in rows["profile"][sel]])
                with np.errstate(divide="ignore", invalid="ignore"):
                    r2 = np.log10(value[sel] / (rp["pages_per_s"].to_numpy(dtype=float) * page_b))
                frames.append(
                    pd.DataFrame(
                        {
                            "source": rows["source"][sel].to_numpy(),
                            "profile": rows["profile"][sel].to_numpy(),
                            "metric": "bytes_per_s",
                            "model": "regression",
                            "log10_ratio": r2,
                        }
                    )
                )
            except Exception:  # the regression is optional
                pass
    res = pd.concat(frames, ignore_index=True)
    return res[np.isfinite(res["log10_ratio"].to_numpy(dtype=float))].reset_index(drop=True)


def validation_table(resid: pd.DataFrame) -> pd.DataFrame:
    """Per source and model, in sample: rows, median and 90th-percentile absolute error (%).

    The quick table shown while :func:`validation_summary` (cross-validated) is being computed.
    """
    if resid.empty:
        return pd.DataFrame(columns=["source", "model", "rows", "median |error| %", "p90 |error| %"])
    err = (10 ** resid["log10_ratio"].abs() - 1) * 100
    t = (
        resid.assign(err=err)
        .groupby(["source", "model"], sort=True)["err"]
        .agg(rows="size", median="median", p90=lambda s: float(np.quantile(s, 0.9)))
        .reset_index()
        .rename(columns={"median": "median |error| %", "p90": "p90 |error| %"})
    )
    t["median |error| %"] = t["median |error| %"].round(1)
    t["p90 |error| %"] = t["p90 |error| %"].round(1)
    return t


# --------------------------------------------------------------------------------------------------
# Validation (models.validate: every model against the measurements, as `foliotune validate`)

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


def _validation_main(folder: str) -> None:
    """Worker entry point: ``foliotune validate``'s summary (all models, default seed and replicas) of
    ``folder/in.pkl``, written to ``folder/out.pkl``. Run by :func:`validation_summary`."""
    import pickle

    from models.validate import summary_table, validate

    os.nice(10)  # behind the explorer's own requests
    d = Path(folder)
    v = validate(pd.read_pickle(d / "in.pkl"))
    (d / "out.pkl.tmp").write_bytes(pickle.dumps((summary_table(v), list(v.notes))))
    (d / "out.pkl.tmp").replace(d / "out.pkl")


@dataclass
class _ValidationRun:
    proc: Any  # subprocess.Popen
    folder: Path


_validation_lock = threading.Lock()
_validation_done: dict[str, tuple[pd.DataFrame | None, list[str], str]] = {}
_validation_running: dict[str, _ValidationRun] = {}
_validation_atexit: list[bool] = []  # non-empty once the exit hook is registered


def _stop_validations() -> None:
    import shutil

    with _validation_lock:
        for run in _validation_running.values():
            if run.proc.poll() is None:
                run.proc.kill()
                run.proc.wait(timeout=5)
            shutil.rmtree(run.folder, ignore_errors=True)
        _validation_running.clear()


def validation_summary(meas: pd.DataFrame) -> tuple[pd.DataFrame | None, list[str], str]:
    """The cross-validated validation summary of ``meas`` (:func:`models.validate.summary_table`).

    It takes tens of seconds (calibration and regression refitted per fold), so it runs once per
    distinct measurement table in a separate Python process (the server stays responsive; the
    process is killed when the server exits) and is cached. Returns (summary, or None while it runs
    or if it failed; notes; status: "done", "running" or "failed: …").
    """
    import atexit
    import pickle
    import shutil
    import subprocess
    import sys
    import tempfile

    from models.measurements import data_hash

    key = data_hash(meas)
    with _validation_lock:
        if key in _validation_done:
            return _validation_done[key]
        run = _validation_running.get(key)
        if run is None:
            folder = Path(tempfile.mkdtemp(prefix="foliotune-validate-"))
            meas.to_pickle(folder / "in.pkl")
            root = str(Path(__file__).resolve().parent.parent)
            env = {
                **os.environ,
                "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
            }
            with open(folder / "stderr.txt", "wb") as err:
                proc = subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        "import sys; from app.data import _validation_main as m; m(sys.argv[1])",
                        str(folder),
                    ],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                )
            if not _validation_atexit:
                atexit.register(_stop_validations)
                _validation_atexit.append(True)
            run = _validation_running[key] = _ValidationRun(proc, folder)
        if run.proc.poll() is None:
            return None, [], "running"
        del _validation_running[key]
        out = run.folder / "out.pkl"
        if run.proc.returncode == 0 and out.exists():
            summary, notes = pickle.loads(out.read_bytes())  # written by our own worker, in a private folder
            result: tuple[pd.DataFrame | None, list[str], str] = (summary, notes, "done")
        else:
            lines = (run.folder / "stderr.txt").read_text(errors="replace").strip().splitlines()
            why = lines[-1] if lines else f"exit code {run.proc.returncode}"
            result = (None, [], f"failed: {why}"[:300])
        shutil.rmtree(run.folder, ignore_errors=True)
        if len(_validation_done) > 8:
            _validation_done.clear()
        _validation_done[key] = result
        return result


def validation_display(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary with readable headers, errors and coverage in %, models that did not run dropped."""
    cols = [c for c in VALIDATION_HEADERS if c in summary.columns]
    cols = [c for c in cols if c in ("source", "metric", "n") or summary[c].notna().any()]
    out = summary[cols].copy()
    for c in cols:
        if c not in ("source", "metric", "n"):
            out[c] = out[c].map(lambda x: "—" if pd.isna(x) else f"{100 * float(x):.1f} %")
    return out.rename(columns=VALIDATION_HEADERS)


#: Numeric workload parameters (Sobol indices need numbers).
SOBOL_PARAMS: tuple[str, ...] = tuple(p for p in WORKLOAD if p != "mode")


def sensitivity(
    profile: str,
    workload: Mapping[str, Any],
    choice: Mapping[str, Any],
    regression: RegressionSource | None = None,
    n: int = 128,
    seed: int = 7,
) -> tuple[dict[str, list[float]], list[str], str]:
    """Sobol indices (SALib, Saltelli sampling) of the predicted gain of ``choice`` over the default.

    Parameters vary over the profile's valid range (log scale for sizes and rates); the model is the
    fitted regression when available, else the analytic model. Returns (indices, names, output label).
    """
    from SALib.analyze import sobol as sobol_analyze
    from SALib.sample import sobol as sobol_sample

    from models.profiles import get_profile

    prof = get_profile(profile)
    page_l2 = math.log2(prof.page_kb)
    bounds = {
        "folio_kb": [page_l2, min(math.log2(prof.max_folio_kb), 11.0) + 0.999],
        "n_folios": [6.0, 16.999],
        "target_cpus": [1.0, float(prof.cpus) + 0.999],
        "mapcount": [1.0, 8.999],
        "busy_prob": [0.0, 0.2],
        "access_rate_hz": [1.0, 6.0],
    }
    names = list(SOBOL_PARAMS)
    problem = {"num_vars": len(names), "names": names, "bounds": [bounds[k] for k in names]}
    X = sobol_sample.sample(problem, n, calc_second_order=False, seed=seed)
    pts = pd.DataFrame(
        {
            "profile": profile,
            "folio_kb": (2 ** np.floor(X[:, 0])).astype(int),
            "n_folios": (2 ** np.floor(X[:, 1])).astype(int),
            "target_cpus": np.floor(X[:, 2]).astype(int),
            "mapcount": np.floor(X[:, 3]).astype(int),
            "busy_prob": X[:, 4],
            "access_rate_hz": 10 ** X[:, 5],
            "mode": workload.get("mode", "sync"),
        }
    )
    rec_pts = pts.assign(**{k: choice[k] for k in CHOICE})
    base_pts = pts.assign(**DEFAULT_CHOICE)
    use_reg = regression is not None and regression.ok
    label = "log10 gain of the recommended choice over the default"
    if use_reg:
        try:
            a = regression.predict(rec_pts)["pages_per_s"].to_numpy(dtype=float)  # type: ignore[union-attr]
            b = regression.predict(base_pts)["pages_per_s"].to_numpy(dtype=float)  # type: ignore[union-attr]
            label += " (fitted regression)"
        except Exception:
            use_reg = False
    if not use_reg:
        a = _analytic(rec_pts)["pages_per_s"].to_numpy(dtype=float)
        b = _analytic(base_pts)["pages_per_s"].to_numpy(dtype=float)
        label += " (analytic model)"
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.log10(a / b)
    y = np.where(np.isfinite(y), y, 0.0)
    if np.ptp(y) == 0:
        zeros = [0.0] * len(names)
        return {"S1": zeros, "S1_conf": zeros, "ST": zeros, "ST_conf": zeros}, names, label + " — constant"
    si = sobol_analyze.analyze(problem, y, calc_second_order=False, seed=seed)
    out = {k: [float(v) for v in np.nan_to_num(si[k])] for k in ("S1", "S1_conf", "ST", "ST_conf")}
    return out, names, label


__all__: Sequence[str] = (
    "RegressionSource",
    "Results",
    "ResultsError",
    "default_profile",
    "engine_curves",
    "landscape",
    "landscape_axes",
    "load_results",
    "parse_measurement_upload",
    "recommend_for",
    "regression_band",
    "regression_with",
    "evidence_metrics",
    "evidence_tables",
    "evidence_x_options",
    "residual_table",
    "sensitivity",
    "shipped_measurements",
    "shipped_regression",
    "validation_display",
    "validation_summary",
    "validation_table",
)
