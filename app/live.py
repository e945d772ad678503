"""Candidates for any workload, evaluated in the request (no sweep needed).

The analytic and Monte Carlo models are fast enough to evaluate every choice of one workload while a
person waits (~130 choices × 64 replicas): :func:`live_candidates` builds the choice grid for a
profile, evaluates it with both models (the Monte Carlo rows carry the ``*_se`` columns, the analytic
throughput rides along as ``pages_per_s_analytic``) and caches the table per workload, so changing a
budget re-runs only the rule. Sweeps still feed the Landscape, the regression and the cross-checks.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
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

LIVE_REPLICAS = 64
LIVE_SEED = 0
THREADS: tuple[int, ...] = (2, 4, 8, 16, 32)
_CACHE_SIZE = 64
_cache: OrderedDict[tuple[Any, ...], pd.DataFrame] = OrderedDict()
_lock = threading.Lock()


def batch_limits(default_limit: int) -> list[int]:
    """1 (the unbatched path) and the default limit × 2^k, k = −6 … 4 (8 … 8192 for 512)."""
    vals = {1, *(int(default_limit * 2.0**k) for k in range(-6, 5))}
    return sorted(v for v in vals if v >= 1)


def choice_grid(profile: str) -> pd.DataFrame:
    """Every (batch limit, engine, threads) the profile supports, one row each."""
    from models.params import ENGINES
    from models.profiles import get_profile

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
    from models.params import PARAMETERS

    return tuple(PARAMETERS)


def complete_workload(profile: str, workload: Mapping[str, Any] | None) -> dict[str, Any]:
    """``workload`` completed with the profile's defaults; unknown names are refused."""
    from models.params import defaults_for
    from models.profiles import get_profile

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
    if "folio_mix" in wl:
        out.pop("folio_kb", None)
    for k in OPTIONAL_WORKLOAD:
        if k in wl:
            out[k] = wl[k]
    return {k: v for k, v in out.items() if v is not None}


def _key(profile: str, wl: Mapping[str, Any], replicas: int, seed: int) -> tuple[Any, ...]:
    return (profile, tuple(sorted((k, str(v)) for k, v in wl.items())), replicas, seed)


def live_candidates(
    profile: str,
    workload: Mapping[str, Any] | None,
    *,
    replicas: int = LIVE_REPLICAS,
    seed: int = LIVE_SEED,
) -> pd.DataFrame:
    """Monte Carlo rows (with ``*_se``) plus ``pages_per_s_analytic`` for every choice of the grid.

    Raises :class:`UserError` with the first invalid parameter ("row 1, column C: why"); choices
    infeasible for this workload (e.g. more threads than CPUs) are dropped.
    """
    from models.evaluate import evaluate
    from models.params import PointError

    wl = complete_workload(profile, workload)
    key = _key(profile, wl, replicas, seed)
    with _lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    grid = choice_grid(profile)
    pts = grid.assign(profile=profile, **wl)
    try:
        # one valid row first: a bad workload value is one message, not 130 infeasible rows
        evaluate(pts.iloc[:1].assign(**{"batch_limit_pages": default_limit_pages(profile)}), "analytic")
    except PointError as exc:
        raise UserError(f"workload: {exc}") from None
    mc = evaluate(pts, "montecarlo", seed=seed, replicas=replicas, on_invalid="mark")
    ana = evaluate(pts, "analytic", on_invalid="mark")
    mc["pages_per_s_analytic"] = ana["pages_per_s"].to_numpy()
    mc["stall_p99_s_analytic"] = ana["stall_p99_s"].to_numpy()
    ok = (mc["infeasible"].astype(str) == "").to_numpy() & np.isfinite(
        mc["pages_per_s"].to_numpy(dtype=float)
    )
    out = mc[ok].reset_index(drop=True)
    if out.empty:
        raise UserError(
            f"no feasible choice for profile {profile} and this workload ({mc['infeasible'].iloc[0]})"
        )
    with _lock:
        _cache[key] = out
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return out


def live_provenance(
    replicas: int = LIVE_REPLICAS, seed: int = LIVE_SEED, regression: Any = None
) -> Provenance:
    from sweep.chunks import code_version

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
    cands = live_candidates(profile, workload, replicas=replicas, seed=seed)
    wl = complete_workload(profile, workload)
    ok = regression is not None and getattr(regression, "ok", False)
    fn: RegressionFn | None = regression.predict if ok else None
    return recommend(
        cands,
        profile=profile,
        workload=wl,
        constraints=constraints,
        provenance=live_provenance(replicas, seed, regression),
        regression=fn,
        regression_note="" if ok else (getattr(regression, "note", "") if regression is not None else ""),
    )


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
    "recommend_live",
    "recommend_live_weighted",
]
