"""Sobol sensitivity of the recommendation's gain to the workload (the Evidence page's bar chart)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from SALib.analyze import sobol as sobol_analyze
from SALib.sample import sobol as sobol_sample

from app.recommend import CHOICE, WORKLOAD, default_choice
from app.regression_source import RegressionSource
from models.evaluate import evaluate
from models.profiles import get_profile

#: Numeric workload parameters (Sobol indices need numbers).
#: The workload parameters the indices are computed for (numeric, each with a range per profile);
#: the others keep the workload's values.
SOBOL_PARAMS: tuple[str, ...] = (
    "folio_kb",
    "n_folios",
    "target_cpus",
    "mapcount",
    "busy_prob",
    "access_rate_hz",
)


def sensitivity(
    profile: str,
    workload: Mapping[str, Any],
    choice: Mapping[str, Any],
    regression: RegressionSource | None = None,
    n: int = 128,
    seed: int = 7,
) -> tuple[dict[str, list[float]], list[str], str]:
    """Sobol indices (SALib, Saltelli sampling) of the predicted gain of ``choice`` over the default.

    The :data:`SOBOL_PARAMS` vary over the profile's valid range (log scale for sizes and rates); the
    other workload parameters keep ``workload``'s values (a folio mix aside: the folio size varies).
    The model is the fitted regression when available, else the analytic model. Returns (indices,
    names, output label).
    """
    prof = get_profile(profile)
    page_l2 = math.log2(prof.page_kb)
    # name -> (sampled range, sample -> parameter value)
    space: dict[str, tuple[list[float], Any]] = {
        "folio_kb": (
            [page_l2, min(math.log2(prof.max_folio_kb), 11.0) + 0.999],
            lambda x: (2 ** np.floor(x)).astype(int),
        ),
        "n_folios": ([6.0, 16.999], lambda x: (2 ** np.floor(x)).astype(int)),
        "target_cpus": ([1.0, float(prof.cpus) + 0.999], lambda x: np.floor(x).astype(int)),
        "mapcount": ([1.0, 8.999], lambda x: np.floor(x).astype(int)),
        "busy_prob": ([0.0, 0.2], lambda x: x),
        "access_rate_hz": ([1.0, 6.0], lambda x: 10**x),
    }
    names = list(SOBOL_PARAMS)
    problem = {"num_vars": len(names), "names": names, "bounds": [space[k][0] for k in names]}
    X = sobol_sample.sample(problem, n, calc_second_order=False, seed=seed)
    fixed = {
        k: v
        for k, v in workload.items()
        if k in WORKLOAD and k not in space and k != "folio_mix" and v is not None
    }
    fixed["mode"] = workload.get("mode") or "sync"
    pts = pd.DataFrame({"profile": profile, **{k: space[k][1](X[:, i]) for i, k in enumerate(names)}}).assign(
        **fixed
    )
    rec_pts = pts.assign(**{k: choice[k] for k in CHOICE})
    base_pts = pts.assign(**default_choice(profile))
    predict = regression.predict if regression is not None else None
    use_reg = predict is not None
    label = "log10 gain of the recommended choice over the default"
    if predict is not None:
        try:
            a = predict(rec_pts)["pages_per_s"].to_numpy(dtype=float)
            b = predict(base_pts)["pages_per_s"].to_numpy(dtype=float)
            label += " (fitted regression)"
        except Exception:  # the regression is optional: fall back to the analytic model
            use_reg = False
    if not use_reg:
        a = _analytic_pages(rec_pts)
        b = _analytic_pages(base_pts)
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


def _analytic_pages(points: pd.DataFrame) -> np.ndarray:
    out = evaluate(points.reset_index(drop=True), "analytic", on_invalid="mark")
    return out["pages_per_s"].to_numpy(dtype=float)


__all__ = ["SOBOL_PARAMS", "sensitivity"]
