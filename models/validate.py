"""Validation: every model against the measurements, error per source and metric.

For each measurement of a metric the cost model predicts, :func:`validate` collects the
predictions of

* ``analytic`` and ``montecarlo``: the shipped profiles, no fitting (so no cross-validation needed);
* ``calibrated_cv`` / ``calibrated_loso``: the analytic model with the profile calibrated on the
  *other* folds (k-fold over configurations) or on the *other* sources (leave one source out);
  profiles with fewer than ``min_calibration_rows`` measurements are not calibrated;
* ``regression_cv`` / ``regression_loso``: the regression fitted without the held-out fold or
  source, with its 90 % prediction interval (coverage reported).

A model that cannot run (not installed, failing) leaves its column empty and is named in
``notes``; the analytic model alone is enough for a report. :func:`summary_table` reduces the rows to
MAPE per source and metric plus the two summary lines the issue's bars are read from.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from models.calibrate import cross_validate_calibration
from models.errors import UserError
from models.evaluate import evaluate, measured_metric
from models.fileio import atomic_write
from models.measurements import model_rows
from models.params import PARAMETERS
from models.regression import amd_tables_mask, analytic_prior, cross_validate

MODEL_COLUMNS: tuple[str, ...] = (
    "analytic",
    "montecarlo",
    "calibrated_cv",
    "calibrated_loso",
    "regression_cv",
    "regression_loso",
)
ALL_MODELS: tuple[str, ...] = ("analytic", "montecarlo", "calibrated", "regression")
BAR_LABEL = "AMD EPYC tables (bar set)"


@dataclass
class Validation:
    rows: pd.DataFrame  # one row per scored measurement, a column per model (+ regression interval)
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def validate(
    data: pd.DataFrame,
    *,
    models: Sequence[str] = ALL_MODELS,
    n_splits: int = 5,
    seed: int = 0,
    replicas: int = 32,
    min_calibration_rows: int = 10,
) -> Validation:
    """Predictions of every requested model for every model-metric row of ``data`` (see module doc)."""
    unknown = sorted(set(models) - set(ALL_MODELS))
    if unknown:
        raise UserError(f"unknown model(s) {', '.join(unknown)} (known: {', '.join(ALL_MODELS)})")
    rows = model_rows(data)
    v = Validation(rows=rows)
    if rows.empty:
        v.notes.append("no measurements of a metric the model predicts")
        return v
    metric = rows["metric"].to_numpy()
    t = time.perf_counter()
    full, prior = analytic_prior(rows, metric)
    rows = rows.copy()
    for c in PARAMETERS:
        rows[c] = full[c].to_numpy()
    rows["analytic"] = prior
    rows["analytic_prior"] = prior
    v.seconds["analytic"] = time.perf_counter() - t
    for c in MODEL_COLUMNS[1:]:
        rows[c] = np.nan
    rows["regression_cv_lo"] = np.nan
    rows["regression_cv_hi"] = np.nan

    if "montecarlo" in models:
        t = time.perf_counter()
        try:
            out = evaluate(full, "montecarlo", seed=seed, replicas=replicas)
            rows["montecarlo"] = measured_metric(out, metric, full)
        except Exception as exc:  # a missing or failing model leaves its column empty
            v.notes.append(f"montecarlo: not available ({type(exc).__name__}: {exc})")
        v.seconds["montecarlo"] = time.perf_counter() - t

    if "calibrated" in models:
        t = time.perf_counter()
        for prof, n in rows["profile"].value_counts().items():
            if n < min_calibration_rows:
                v.notes.append(
                    f"calibrated: {prof} has {n} measurements (< {min_calibration_rows}); not calibrated"
                )
                continue
            sel = np.flatnonzero((rows["profile"] == prof).to_numpy())
            sub = rows.iloc[sel]
            try:
                cv = cross_validate_calibration(sub, str(prof), n_splits=n_splits, seed=seed)
                rows.loc[rows.index[sel], "calibrated_cv"] = cv["pred"].to_numpy()
                if sub["source"].nunique() >= 2:
                    lo = cross_validate_calibration(sub, str(prof), scheme="source", seed=seed)
                    rows.loc[rows.index[sel], "calibrated_loso"] = lo["pred"].to_numpy()
            except Exception as exc:
                v.notes.append(f"calibrated: {prof} failed ({type(exc).__name__}: {exc})")
        v.seconds["calibrated"] = time.perf_counter() - t

    if "regression" in models:
        t = time.perf_counter()
        try:
            cv = cross_validate(rows, scheme="kfold", n_splits=n_splits, seed=seed)
            rows["regression_cv"] = cv["pred"].to_numpy()
            rows["regression_cv_lo"] = cv["lo"].to_numpy()
            rows["regression_cv_hi"] = cv["hi"].to_numpy()
            lo = cross_validate(rows, scheme="source", seed=seed)
            rows["regression_loso"] = lo["pred"].to_numpy()
        except Exception as exc:
            v.notes.append(f"regression: not available ({type(exc).__name__}: {exc})")
        v.seconds["regression"] = time.perf_counter() - t
    v.rows = rows
    return v


def _mape(pred: np.ndarray, y: np.ndarray) -> tuple[float, int]:
    ok = np.isfinite(pred)
    if not ok.any():
        return float("nan"), 0
    return float(np.mean(np.abs(pred[ok] - y[ok]) / y[ok])), int(ok.sum())


def summary_table(v: Validation) -> pd.DataFrame:
    """MAPE of each model per (source, metric), then the AMD bar set and all rows; plus coverage."""
    rows = v.rows
    if rows.empty or "analytic" not in rows.columns:
        return pd.DataFrame(columns=["source", "metric", "n", *MODEL_COLUMNS, "pi90_coverage"])
    groups: list[tuple[str, str, np.ndarray]] = []
    keys = rows["source"].astype(str) + "\x00" + rows["metric"].astype(str)
    for key in sorted(set(keys)):
        src, met = key.split("\x00")
        groups.append((src, met, (keys == key).to_numpy()))
    groups.append((BAR_LABEL, "bytes_per_s", amd_tables_mask(rows)))
    groups.append(("all", "all", np.ones(len(rows), dtype=bool)))
    out = []
    y_all = rows["value"].to_numpy(dtype=np.float64)
    for src, met, mask in groups:
        if not mask.any():
            continue
        y = y_all[mask]
        rec: dict[str, object] = {"source": src, "metric": met, "n": int(mask.sum())}
        for c in MODEL_COLUMNS:
            rec[c], _n = _mape(rows[c].to_numpy(dtype=np.float64)[mask], y)
        lo = rows["regression_cv_lo"].to_numpy(dtype=np.float64)[mask]
        hi = rows["regression_cv_hi"].to_numpy(dtype=np.float64)[mask]
        ok = np.isfinite(lo) & np.isfinite(hi)
        rec["pi90_coverage"] = (
            float(np.mean((lo[ok] <= y[ok]) & (y[ok] <= hi[ok]))) if ok.any() else float("nan")
        )
        out.append(rec)
    return pd.DataFrame(out)


def write_report(v: Validation, summary: pd.DataFrame, out_dir: str | Path) -> dict[str, Path]:
    """Write ``validation.csv`` (summary), ``validation-rows.csv`` and ``validation.html`` (plotly)."""
    import plotly.graph_objects as go  # only for the HTML report: plotly takes ~1 s to import

    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    paths = {
        "summary": d / "validation.csv",
        "rows": d / "validation-rows.csv",
        "html": d / "validation.html",
    }
    summary.to_csv(paths["summary"], index=False)
    keep = [
        "source",
        "profile",
        *[p for p in PARAMETERS if p != "profile"],
        "variant",
        "metric",
        "value",
        *MODEL_COLUMNS,
        "regression_cv_lo",
        "regression_cv_hi",
    ]
    v.rows[[c for c in keep if c in v.rows.columns]].to_csv(paths["rows"], index=False)

    figs = []
    for met, sub in v.rows.groupby("metric", sort=True):
        fig = go.Figure()
        y = sub["value"].to_numpy(dtype=np.float64)
        for c in MODEL_COLUMNS:
            p = sub[c].to_numpy(dtype=np.float64)
            ok = np.isfinite(p)
            if not ok.any():
                continue
            text = (
                sub["source"]
                + " | "
                + sub["folio_kb"].astype(str)
                + " KiB "
                + sub["copy_engine"].astype(str)
                + "×"
                + sub["copy_threads"].astype(str)
            ).to_numpy()
            fig.add_trace(go.Scatter(x=y[ok], y=p[ok], mode="markers", name=c, text=text[ok], opacity=0.75))
        lo, hi = float(np.nanmin(y)) / 2, float(np.nanmax(y)) * 2
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x", line={"dash": "dash"}))
        fig.update_layout(
            title=f"{met}: predicted vs measured",
            xaxis={"title": f"measured {met} [SI]", "type": "log"},
            yaxis={"title": f"predicted {met} [SI]", "type": "log"},
            height=560,
        )
        figs.append(fig)
    table = summary.copy()
    for c in [*MODEL_COLUMNS, "pi90_coverage"]:
        table[c] = table[c].map(lambda x: "" if pd.isna(x) else f"{100 * x:.1f} %")
    notes = "".join(f"<li>{n}</li>" for n in v.notes)
    parts = [
        "<html><head><meta charset='utf-8'><title>foliotune validate</title></head><body>",
        "<h1>foliotune validate: models versus measurements</h1>",
        "<p>Mean absolute percentage error per source and metric. <code>_cv</code>: 5-fold cross-validation "
        "over configurations; <code>_loso</code>: leave one source out. pi90_coverage: share of held-out "
        "measurements inside the regression's 90 % prediction interval.</p>",
        table.to_html(index=False, border=0),
        f"<ul>{notes}</ul>" if notes else "",
    ]
    for i, fig in enumerate(figs):
        parts.append(fig.to_html(full_html=False, include_plotlyjs="inline" if i == 0 else False))
    parts.append("</body></html>")
    atomic_write(paths["html"], "\n".join(parts))
    return paths


__all__ = [
    "ALL_MODELS",
    "BAR_LABEL",
    "MODEL_COLUMNS",
    "Validation",
    "summary_table",
    "validate",
    "write_report",
]
