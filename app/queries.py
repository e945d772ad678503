"""Questions asked of a results folder: the recommendation, the landscape, the curves per engine.

:func:`recommend_for` is the one function the CLI and the explorer call for a recommendation; the
landscape fetches every cell's rows in one query and is :func:`app.recommend.recommend` itself per
cell, so it agrees with the Choose page.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from app.recommend import CHOICE, Constraints, Recommendation, default_limit_pages, recommend
from app.recommend.choices import Choice, choices_from_table
from app.recommend.intervals import ratio_interval
from app.recommend.rule import baseline_choice, lowest_stall, rank_allowed
from app.regression_source import RegressionSource
from app.results_view import KEY_WORKLOAD, Results
from models.profiles import DEFAULT_PROFILE


def recommend_for(
    results: Results,
    profile: str | None,
    workload: Mapping[str, Any] | None,
    constraints: Constraints,
    model: str | None = None,
    regression: RegressionSource | None = None,
) -> Recommendation:
    """The recommendation for ``profile`` (default: :func:`default_profile`) and ``workload``
    (completed with the profile's defaults) from the sweep's rows, with the regression's interval
    when ``regression`` is usable and its note otherwise."""
    m = model or results.default_model
    prof = profile or default_profile(results, m)
    wl = results.resolve_workload(prof, workload, m)
    cands = results.candidates(prof, wl, m)
    reg = regression if regression is not None and regression.ok else None
    note = "" if reg is not None else (regression.note if regression is not None else "")
    return recommend(
        cands,
        profile=prof,
        workload=wl,
        constraints=constraints,
        baseline=results.baseline(prof, wl, m, candidates=cands),
        provenance=results.provenance(m, reg),
        regression=reg.predict if reg is not None else None,
        regression_note=note,
    )


def default_profile(results: Results, model: str | None = None) -> str:
    """The shipped default profile when the sweep has it, else the sweep's first profile."""
    profs = results.profiles(model or results.default_model)
    return DEFAULT_PROFILE if DEFAULT_PROFILE in profs else profs[0]


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
    predict = regression.predict if regression is not None else None
    if predict is None:
        return None
    c = rec.choice
    sel = cands[
        (cands["copy_engine"].astype(str).to_numpy() == c.copy_engine)
        & (cands["copy_threads"].to_numpy() == c.copy_threads)
    ]
    try:
        pts = sel[["profile", *CHOICE, *KEY_WORKLOAD]].astype(object)
        return predict(pts.reset_index(drop=True))
    except Exception:  # the regression is optional
        return None


LANDSCAPE_COLUMNS = [
    "x",
    "y",
    "profile",
    "batch_limit_pages",
    "copy_engine",
    "copy_threads",
    "gain",
    "gain_lo",
    "gain_hi",
    "pages_per_s",
    "stall_p99_s",
    "feasible",
]


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
    (or each profile's defaults where the sweep lacks them). The rows of every cell come from one
    query over the sweep (:meth:`Results.candidates_many`); each cell is then decided by
    :func:`landscape_cell`, which gives what :func:`recommend` gives, so the landscape agrees with the
    Choose page and ``foliotune recommend``.
    """
    m = model or results.default_model
    profiles = list(results.profiles(m)) if "profile" in (x, y) else [profile]
    cells: list[tuple[Any, Any, str, dict[str, Any], tuple[Any, ...]]] = []
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
                cells.append((xv, yv, prof, wl, results.key(m, prof, wl)))
    found = results.candidates_many([c[4] for c in cells])
    rows = []
    for xv, yv, prof, wl, key in cells:
        cands = found.get(key)
        if cands is None:
            continue
        cell = landscape_cell(cands, results.baseline(prof, wl, m, candidates=cands), prof, constraints)
        if cell is not None:
            rows.append({"x": xv, "y": yv, "profile": prof, **cell})
    return pd.DataFrame(rows, columns=LANDSCAPE_COLUMNS)


def landscape_cell(
    cands: pd.DataFrame, baseline: pd.DataFrame | None, profile: str, constraints: Constraints
) -> dict[str, Any] | None:
    """The landscape's columns of ``recommend(cands, profile=..., constraints=..., baseline=...)``
    (choice, gain and its interval, pages/s, p99 stall, feasible; ``None`` where it raises), without
    the intervals of every candidate that a cell does not show.

    The same steps as :func:`app.recommend.rule.recommend` and ``decide`` with the same functions
    (:func:`choices_from_table`, :func:`rank_allowed`, :func:`ratio_interval`), on the allowed rows only
    when there are any (ranking never looks at the others), plus the baseline row.
    """
    if cands.empty:
        return None
    dl = default_limit_pages(profile)
    pps = cands["pages_per_s"].to_numpy(dtype=np.float64)
    stall = cands["stall_p99_s"].to_numpy(dtype=np.float64)
    finite = np.isfinite(pps) & np.isfinite(stall)
    ok = finite & ~(stall > constraints.stall_p99_s)  # as choices.violations, row by row
    for col, limit in (
        ("cpu_time_s", constraints.cpu_time_s),
        ("remote_cpu_time_s", constraints.remote_cpu_time_s),
    ):
        if limit is not None:
            ok &= cands[col].to_numpy(dtype=np.float64) <= limit
    dkey = (
        (cands["batch_limit_pages"].to_numpy() == dl)
        & (cands["copy_engine"].to_numpy().astype(str) == "cpu")
        & (cands["copy_threads"].to_numpy() == 1)
        & finite
    )
    base: Choice | None = None
    if dkey.any():
        base = choices_from_table(cands[dkey].iloc[:1], constraints)[0]
    else:
        base = baseline_choice(baseline, constraints)
    feasible = bool(ok.any())
    choices = choices_from_table(cands[ok] if feasible else cands, constraints)
    if not choices:
        return None  # recommend() raises: no feasible results
    # nothing meets the limits: the lowest-stall choice, as decide() reports it
    best = rank_allowed(choices, dl)[0][0] if feasible else lowest_stall(choices, dl)
    gain = ratio_interval(best, base) if base is not None and base.pages_per_s > 0 else None
    return {
        "batch_limit_pages": best.batch_limit_pages if feasible else math.nan,
        "copy_engine": best.copy_engine if feasible else "",
        "copy_threads": best.copy_threads if feasible else 0,
        "gain": gain[0] if (feasible and gain is not None) else math.nan,
        "gain_lo": gain[1] if (feasible and gain is not None) else math.nan,
        "gain_hi": gain[2] if (feasible and gain is not None) else math.nan,
        "pages_per_s": best.pages_per_s,
        "stall_p99_s": best.stall_p99_s,
        "feasible": feasible,
    }


def landscape_axes(results: Results, profile: str, model: str | None = None) -> list[str]:
    """Parameters that can be a landscape axis: workload parameters with several values, and profile."""
    vals = results.workload_values(profile, model)
    axes = [k for k in KEY_WORKLOAD if len(vals.get(k, [])) > 1]
    if len(results.profiles(model)) > 1:
        axes.append("profile")
    return axes
