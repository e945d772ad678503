"""Candidates for any workload, evaluated in the request (no sweep needed).

The models are fast enough to answer while a person waits: :func:`live_candidates` evaluates the
analytic model on every choice of the profile's grid (~100 choices), screens out the ones that cannot
win (far over the budget or far slower than the best, :func:`contenders`), and runs the Monte Carlo
model (64 replicas) on the rest; the Monte Carlo rows carry the ``*_se`` columns and the analytic
throughput rides along as ``pages_per_s_analytic``. Results are cached per workload and per point, so
a budget change evaluates only what it adds. Sweeps still feed the Landscape, the regression and the
cross-checks.
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from app.recommend import (
    CHOICE,
    OPTIONAL_WORKLOAD,
    WORKLOAD,
    Constraints,
    Provenance,
    Recommendation,
    RegressionFn,
    WorkloadPart,
    default_limit_pages,
    recommend,
    recommend_weighted,
)
from models.errors import UserError
from models.evaluate import outputs_frame, run_kernel, take_points
from models.params import (
    ENGINES,
    PARAMETERS,
    PointArrays,
    PointError,
    check_points,
    complete_points,
    defaults_for,
)
from models.phases import K_BATCHED, folios_per_batch
from models.profiles import get_profile, kernel_code
from sweep.chunks import code_version

LIVE_REPLICAS = 64
LIVE_SEED = 0
#: Fewest Monte Carlo points worth a thread of their own in a live evaluation.
MIN_POINTS_PER_THREAD = 4
THREADS: tuple[int, ...] = (2, 4, 8, 16, 32)
#: Analytic screening margins (see :func:`contenders`).
STALL_MARGIN = 2.0
RATE_MARGIN = 0.8
_CACHE_SIZE = 20_000  # analytic tables and Monte Carlo rows (one per point), least recently used out
_cache: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    """The threads that split a Monte Carlo evaluation (one per CPU, started once)."""
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="foliotune-live")
        return _pool


def batch_limits(default_limit: int) -> list[int]:
    """1 (the unbatched path) and the default limit × 2^k, k = −6 … 4 (8 … 8192 for 512)."""
    vals = {1, *(int(default_limit * 2.0**k) for k in range(-6, 5))}
    return sorted(v for v in vals if v >= 1)


def choice_grid(profile: str) -> pd.DataFrame:
    """Every (batch limit, engine, threads) the profile supports, one row each."""
    prof = get_profile(profile)
    rows = []
    for eng in ENGINES:
        top = prof.max_threads(eng)
        if top < 1:
            continue
        threads = [1] if eng == "cpu" else [t for t in THREADS if t <= top] or [top]
        for t in threads:
            for b in batch_limits(default_limit_pages(profile)):
                rows.append((b, eng, t))
    return pd.DataFrame(rows, columns=list(CHOICE))


def known_parameters() -> tuple[str, ...]:
    return tuple(PARAMETERS)


def complete_workload(profile: str, workload: Mapping[str, Any] | None) -> dict[str, Any]:
    """``workload`` completed with the profile's defaults; unknown names are refused."""
    known = set(known_parameters())
    wl: dict[str, Any] = {}
    for k, v in (workload or {}).items():
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        if k not in known:
            if k in OPTIONAL_WORKLOAD:
                raise UserError(
                    f"{k}: this model version does not know it yet (parameters: {', '.join(sorted(known))})"
                )
            raise UserError(f"{k}: not a workload parameter (parameters: {', '.join(sorted(known))})")
        wl[k] = v
    d = defaults_for(get_profile(profile))
    out = {k: wl.get(k, d.get(k)) for k in WORKLOAD}
    if wl.get("folio_mix"):
        out.pop("folio_kb", None)  # one or the other (models.params.complete_points)
    for k in OPTIONAL_WORKLOAD:
        if k in wl:
            out[k] = wl[k]
    return {k: v for k, v in out.items() if v is not None}


def _key(profile: str, wl: Mapping[str, Any], replicas: int, seed: int) -> tuple[Any, ...]:
    return (profile, tuple(sorted((k, str(v)) for k, v in wl.items())), replicas, seed)


def _cached(key: tuple[Any, ...]) -> Any:
    with _lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
        return hit


def _store(key: tuple[Any, ...], value: Any) -> None:
    with _lock:
        _cache[key] = value
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)


@dataclass(frozen=True)
class _Grid:
    """The choice grid of one workload: its feasible rows, completed (``full``) and checked
    (``arrays``; every row valid), and the analytic model's frame of them (``ana``, as
    :func:`evaluate` returns it)."""

    full: pd.DataFrame
    arrays: PointArrays
    ana: pd.DataFrame


def _grid(profile: str, wl: Mapping[str, Any]) -> _Grid:
    """:class:`_Grid` for a completed workload ``wl``, cached per workload. The Monte Carlo rows are
    taken from it (:func:`take_points`): the points are completed and checked once per workload."""
    key = ("analytic", *_key(profile, wl, 0, 0))
    hit = _cached(key)
    if hit is not None:
        return hit  # type: ignore[no-any-return]
    grid = choice_grid(profile)
    pts = pd.DataFrame({"profile": profile, **{c: grid[c] for c in grid.columns}}).assign(**wl)
    try:
        full = complete_points(pts)
    except PointError as exc:  # a value no row can take (e.g. an unknown mode)
        raise UserError(f"workload: {exc}") from None
    arrays, reasons = check_points(full)
    ana = outputs_frame(full, reasons, run_kernel(arrays, "analytic"))
    ok = (reasons == "") & np.isfinite(ana["pages_per_s"].to_numpy(dtype=float))
    if not ok.any():
        why = str(reasons[0]) if len(reasons) else "empty grid"
        raise UserError(f"workload: {why}")
    rows = np.flatnonzero(ok)
    out = _Grid(
        full.iloc[rows].reset_index(drop=True),
        take_points(arrays, rows),
        ana.iloc[rows].reset_index(drop=True),
    )
    _store(key, out)
    return out


def analytic_grid(profile: str, workload: Mapping[str, Any] | None) -> pd.DataFrame:
    """The analytic model on every choice of the grid (feasible rows only), cached per workload."""
    return _grid(profile, complete_workload(profile, workload)).ana


def contenders(ana: pd.DataFrame, constraints: Constraints | None, default_limit: int) -> np.ndarray:
    """Rows of the analytic grid worth a Monte Carlo run (boolean mask).

    The analytic model screens: rows whose expected p99 stall is within :data:`STALL_MARGIN` × the
    budget (and CPU times within the same margin of their limits) and whose pages/s is at least
    :data:`RATE_MARGIN` × the best of those whose analytic stall meets the budget (the best of all of
    them if none does); plus the kernel default, each contender engine's row at
    the default limit (for ``gain_from_batch_limit``) and every limit of the best contender's engine
    (the marginal view). Without constraints every row is a contender.
    """
    n = len(ana)
    if constraints is None:
        return np.ones(n, dtype=bool)
    stall = ana["stall_p99_s"].to_numpy(dtype=float)
    pps = ana["pages_per_s"].to_numpy(dtype=float)
    near = stall <= STALL_MARGIN * constraints.stall_p99_s
    for col, lim in (
        ("cpu_time_s", constraints.cpu_time_s),
        ("remote_cpu_time_s", constraints.remote_cpu_time_s),
    ):
        if lim is not None:
            near &= ana[col].to_numpy(dtype=float) <= STALL_MARGIN * lim
    if not near.any():
        near = np.zeros(n, dtype=bool)
        near[np.argsort(stall, kind="stable")[:8]] = True
    # The throughput to be near: the best of the rows whose analytic stall meets the budget (a row
    # over it, however fast, may be no choice at all, and rows within the margin of it alone would
    # miss the best that does meet it), else of the near rows.
    within = near & (stall <= constraints.stall_p99_s)
    ref = pps[within].max() if within.any() else pps[near].max()
    keep = near & (pps >= RATE_MARGIN * ref)
    bl = ana["batch_limit_pages"].to_numpy()
    eng = ana["copy_engine"].astype(str).to_numpy()
    thr = ana["copy_threads"].to_numpy()
    keep |= (bl == default_limit) & (eng == "cpu") & (thr == 1)
    for e, t in set(zip(eng[keep].tolist(), thr[keep].tolist(), strict=True)):
        keep |= (bl == default_limit) & (eng == e) & (thr == t)
    best = int(np.flatnonzero(keep)[np.argmax(pps[keep])])
    keep |= (eng == eng[best]) & (thr == thr[best])
    return keep


def batches_key(profile: str, workload: Mapping[str, Any], limits_pages: np.ndarray) -> list[float]:
    """Per batch limit, the folios of a full batch (MECHANISM.md §2): limits with the same value make
    the same batches. Before 6.3 every folio goes alone; a folio mix gets one key per limit."""
    if workload.get("folio_mix"):
        return [float(b) for b in limits_pages]
    prof = get_profile(profile)
    if kernel_code(str(workload.get("kernel") or prof.default_kernel)) < K_BATCHED:
        return [1.0] * len(limits_pages)
    fp = max(float(workload["folio_kb"]) / prof.page_kb, 1.0)
    n = float(workload["n_folios"])
    return [folios_per_batch(float(b), fp, n) for b in limits_pages]


def montecarlo_split(points: pd.DataFrame, seed: int, replicas: int) -> pd.DataFrame:
    """The Monte Carlo model on ``points`` (as :func:`evaluate` with ``on_invalid="mark"``), the
    compiled kernel interleaved over the CPUs in threads (:func:`_montecarlo_checked`)."""
    full = complete_points(points)
    arrays, reasons = check_points(full)
    return _montecarlo_checked(full, arrays, reasons, seed, replicas)


def _montecarlo_checked(
    full: pd.DataFrame, arrays: PointArrays, reasons: np.ndarray, seed: int, replicas: int
) -> pd.DataFrame:
    """The Monte Carlo frame of completed, checked points; the kernel split over the CPUs.

    The compiled kernel releases the GIL, and each point's random stream depends on the point alone
    (not its row), so the split changes no value; rows come back in the order given.
    """
    n = len(reasons)
    k = min(os.cpu_count() or 1, n // MIN_POINTS_PER_THREAD)
    if k < 2:
        outputs = run_kernel(arrays, "montecarlo", seed=seed, replicas=replicas)
    else:
        parts = [np.arange(j, n, k) for j in range(k)]

        def part(ix: np.ndarray) -> dict[str, np.ndarray]:
            return run_kernel(take_points(arrays, ix), "montecarlo", seed=seed, replicas=replicas)

        # one pool for the process: starting threads per request cost ~10 ms on a loaded machine
        outs = list(_executor().map(part, parts))
        outputs = {}
        for name in outs[0]:
            v = np.empty(n, dtype=np.float64)
            for ix, o in zip(parts, outs, strict=True):
                v[ix] = o[name]
            outputs[name] = v
    return outputs_frame(full, reasons, outputs)


def live_candidates(
    profile: str,
    workload: Mapping[str, Any] | None,
    constraints: Constraints | None = None,
    *,
    replicas: int = LIVE_REPLICAS,
    seed: int = LIVE_SEED,
) -> pd.DataFrame:
    """Monte Carlo rows (with ``*_se``) plus ``pages_per_s_analytic`` for the contending choices.

    With ``constraints`` the analytic model first screens the grid (:func:`contenders`); the number of
    choices screened out is in ``attrs["screened_out"]``. Monte Carlo results are cached per point, so
    a budget change evaluates only the choices it adds. Raises :class:`UserError` with the first
    invalid parameter; choices infeasible for this workload are dropped.
    """
    return _candidates(profile, complete_workload(profile, workload), constraints, replicas, seed)[0]


def _candidates(
    profile: str, wl: dict[str, Any], constraints: Constraints | None, replicas: int, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(:func:`live_candidates`, the analytic rows screened out) for a completed workload ``wl``."""
    grid = _grid(profile, wl)
    ana = grid.ana
    mask = contenders(ana, constraints, default_limit_pages(profile))
    wkey = _key(profile, wl, replicas, seed)
    keys = [(*wkey, int(b), str(e), int(t)) for b, e, t in ana[list(CHOICE)].itertuples(index=False)]
    rows: dict[int, dict[str, Any]] = {}
    missing: list[int] = []
    for i in np.flatnonzero(mask).tolist():
        hit = _cached(("mc", *keys[i]))
        if hit is None:
            missing.append(i)
        else:
            rows[int(i)] = hit
    if missing:
        # Limits that make the same batches (e.g. every limit up to 512 pages for 2 MiB folios) are
        # the same point to the models: each such group is evaluated once, always at its smallest
        # limit of the grid, so its members tie exactly whether cached or not.
        limits = ana["batch_limit_pages"].to_numpy()
        engines = ana["copy_engine"].astype(str).to_numpy()
        threads = ana["copy_threads"].to_numpy(dtype=np.int64)
        group = list(zip(batches_key(profile, wl, limits), engines, threads.tolist(), strict=True))
        canonical: dict[tuple[Any, ...], int] = {}  # group -> the grid row of its smallest limit
        for j, g in enumerate(group):
            if g not in canonical or limits[j] < limits[canonical[g]]:
                canonical[g] = j
        todo: dict[tuple[Any, ...], list[int]] = {}
        for j in missing:
            todo.setdefault(group[j], []).append(j)
        rows_mc = np.array([canonical[g] for g in todo], dtype=np.int64)
        mc = _montecarlo_checked(
            grid.full.iloc[rows_mc],
            take_points(grid.arrays, rows_mc),
            np.full(len(rows_mc), ""),
            seed,
            replicas,
        )
        cols = {str(c): mc[c].to_numpy() for c in mc.columns}
        for n, members in enumerate(todo.values()):
            for j in members:
                rec = {c: v[n] for c, v in cols.items()}
                rec["batch_limit_pages"] = limits[j]
                _store(("mc", *keys[j]), rec)
                rows[j] = rec
    order = sorted(rows)
    names = dict.fromkeys(c for i in order for c in rows[i])
    # columns from lists: faster than a frame from a list of dicts
    out = pd.DataFrame({c: [rows[i].get(c, np.nan) for i in order] for c in names})
    out["pages_per_s_analytic"] = ana["pages_per_s"].to_numpy()[order]
    out["stall_p99_s_analytic"] = ana["stall_p99_s"].to_numpy()[order]
    if "infeasible" in out.columns:
        out = out[(out["infeasible"].astype(str) == "").to_numpy()]
    out = out[np.isfinite(out["pages_per_s"].to_numpy(dtype=float))].reset_index(drop=True)
    out.attrs["screened_out"] = int(len(ana) - mask.sum())
    out.attrs["grid"] = int(len(ana))
    return out, ana[~mask].reset_index(drop=True)


def live_provenance(
    replicas: int = LIVE_REPLICAS, seed: int = LIVE_SEED, regression: Any = None
) -> Provenance:
    ok = regression is not None and getattr(regression, "ok", False)
    return Provenance(
        model_version=code_version(),
        results_model="montecarlo",
        regression_version=regression.version if ok else "",
        measurements_hash=regression.data_hash if ok else "",
        source=f"live evaluation (Monte Carlo, {replicas} replicas, seed {seed}; analytic alongside)",
    )


def recommend_live(
    profile: str,
    workload: Mapping[str, Any] | None,
    constraints: Constraints,
    *,
    regression: Any = None,
    replicas: int = LIVE_REPLICAS,
    seed: int = LIVE_SEED,
) -> Recommendation:
    """The recommendation for any workload of ``profile``, evaluated now (no sweep)."""
    return live_view(profile, workload, constraints, regression=regression, replicas=replicas, seed=seed)[0]


def live_view(
    profile: str,
    workload: Mapping[str, Any] | None,
    constraints: Constraints,
    *,
    regression: Any = None,
    replicas: int = LIVE_REPLICAS,
    seed: int = LIVE_SEED,
) -> tuple[Recommendation, pd.DataFrame, pd.DataFrame]:
    """What the Choose page shows, evaluated once: (:func:`recommend_live`, its candidates
    (:func:`live_candidates`), the analytic rows of the choices screened out)."""
    wl = complete_workload(profile, workload)
    cands, screened = _candidates(profile, wl, constraints, replicas, seed)
    ok = regression is not None and getattr(regression, "ok", False)
    fn: RegressionFn | None = regression.predict if ok else None
    rec = recommend(
        cands,
        profile=profile,
        workload=wl,
        constraints=constraints,
        provenance=live_provenance(replicas, seed, regression),
        regression=fn,
        regression_note="" if ok else (getattr(regression, "note", "") if regression is not None else ""),
    )
    rec.extra["screened_out"] = cands.attrs.get("screened_out", 0)
    rec.extra["grid"] = cands.attrs.get("grid", len(cands))
    return rec, cands, screened


def recommend_live_weighted(
    profile: str,
    parts: Sequence[tuple[float, Mapping[str, Any], Constraints]],
    *,
    replicas: int = LIVE_REPLICAS,
    seed: int = LIVE_SEED,
) -> Recommendation:
    """One kernel-wide choice for several weighted workloads, each under its own limits."""
    wparts = [
        WorkloadPart(
            float(w),
            complete_workload(profile, wl),
            cons,
            live_candidates(profile, wl, replicas=replicas, seed=seed),
        )
        for w, wl, cons in parts
    ]
    return recommend_weighted(wparts, profile=profile, provenance=live_provenance(replicas, seed))


__all__ = [
    "LIVE_REPLICAS",
    "batch_limits",
    "choice_grid",
    "complete_workload",
    "live_candidates",
    "live_view",
    "recommend_live",
    "recommend_live_weighted",
]
