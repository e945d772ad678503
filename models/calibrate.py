"""Calibration: fit a profile's uncertain parameters to the measurements of its machine.

Bounded nonlinear least squares (``scipy.optimize.least_squares``, trust-region reflective) on
the log error of the analytic model against every measurement of the profile whose metric the model
predicts. Each fitted field moves in log space within a factor ``span`` of its shipped value (and
inside the profile's sanity bounds); fields default to the profile's uncertain ones: those whose
source says ``assumed``, ``fit by eye`` or ``derived``, restricted to continuous cost and bandwidth
fields the measurements can inform. The result is a new profile (``<name>-calibrated``) whose fitted
fields cite the calibration as their source.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from models.errors import UserError
from models.evaluate import measured_metric, run_kernel
from models.fileio import OutputFileError, atomic_write
from models.measurements import data_hash, model_rows
from models.params import PARAMETERS, check_points, complete_points, first_error
from models.profiles import (
    FIELDS,
    HardwareProfile,
    dump_profile_toml,
    get_profile,
    profile_names,
    profile_table_with,
)

#: Fields calibration may fit: continuous costs and bandwidths (not topology, limits or defaults).
CALIBRATABLE: tuple[str, ...] = (
    "call_setup_us",
    "folio_setup_us",
    "page_setup_ns",
    "unmap_per_mapping_us",
    "remap_per_mapping_us",
    "local_full_flush_us",
    "ipi_send_base_us",
    "ipi_per_target_ns",
    "ack_handler_page_us",
    "ack_handler_full_us",
    "ack_tail_scale_us",
    "socket_hop_us",
    "cpu_copy_gbps",
    "cpu_copy_fixed_ns",
    "mt_sigma",
    "mt_kappa",
    "mt_dispatch_us",
    "mem_ceiling_gbps",
    "dma_channel_gbps",
    "dma_desc_setup_us",
    "dma_submit_us",
    "dma_completion_us",
    "dsa_channel_gbps",
    "dsa_desc_setup_us",
    "dsa_submit_us",
    "dsa_completion_us",
)
_UNCERTAIN_WORDS = ("assumed", "fit by eye", "derived")


class CalibrationError(UserError):
    """Calibration cannot run (unknown profile, no usable measurements, bad field list)."""


def uncertain_fields(profile: HardwareProfile) -> list[str]:
    """Calibratable fields of ``profile`` with an uncertain source and a non-zero value."""
    out = []
    for f in CALIBRATABLE:
        if f.startswith("dma_") and "dma" not in profile.copy_engines:
            continue
        if f.startswith("dsa_") and "dsa" not in profile.copy_engines:
            continue
        if f.startswith("mt_") and "mt-cpu" not in profile.copy_engines:
            continue
        src = profile.sources[f].lower()
        if profile.values[f] > 0 and any(w in src for w in _UNCERTAIN_WORDS):
            out.append(f)
    return out


@dataclass
class Calibration:
    """Result of :func:`calibrate_profile`."""

    profile: HardwareProfile  # the calibrated profile (not registered: write it to a file to use it)
    base: HardwareProfile
    fields: list[str]
    before: dict[str, float]  # SI
    after: dict[str, float]  # SI
    per_source: pd.DataFrame  # source, n, mape_before, mape_after
    rows: pd.DataFrame  # the measurements used, with pred_before / pred_after
    cost_before: float
    cost_after: float
    seconds: float
    message: str = ""
    notes: list[str] = field(default_factory=list)

    def mape(self, which: str = "after") -> float:
        col = "pred_after" if which == "after" else "pred_before"
        return float((np.abs(self.rows[col] - self.rows["value"]) / self.rows["value"]).mean())


class _Evaluator:
    """Evaluates the analytic model on fixed measurement rows for trial values of some fields.

    The points keep the base profile's name, so the point arrays (and their profile index) are
    computed once; each trial passes a profile table whose base row holds the trial values
    (nothing is registered: the profile catalogue is read-only).
    """

    def __init__(self, rows: pd.DataFrame, base: HardwareProfile, name: str) -> None:
        self.base = base
        self.name = name
        pts = rows[[c for c in PARAMETERS if c in rows.columns]].copy()
        pts["profile"] = base.name
        full = complete_points(pts)
        self.arrays, reasons = check_points(full)
        msg = first_error(reasons)
        if msg is not None:
            raise CalibrationError(f"measurement {msg}")
        self.metric = rows["metric"].to_numpy()
        self.pi = profile_names().index(base.name)

    def predict(self, values: dict[str, float], provenance: str = "calibration in progress") -> np.ndarray:
        trial = self.base.with_values(self.name, values, provenance)
        out = run_kernel(self.arrays, "analytic", table=profile_table_with({self.base.name: trial}))
        return measured_metric(out, self.metric, self.arrays, page_kb=self.base.page_kb)


def _bounds(profile: HardwareProfile, fields: Sequence[str], span: float) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = [], []
    for f in fields:
        v = profile.values[f]
        factor, flo, fhi = FIELDS[f]
        a, b = max(v / span, flo * factor), min(v * span, fhi * factor)
        if f in ("mt_sigma", "mt_kappa"):
            b = min(b, 1.0)
        a = max(a, 1e-12)
        lo.append(np.log(a))
        hi.append(np.log(max(b, a * (1 + 1e-9))))
    return np.array(lo), np.array(hi)


def calibrate_profile(
    data: pd.DataFrame,
    profile: str,
    *,
    fields: Sequence[str] | None = None,
    span: float = 10.0,
    name: str | None = None,
    max_nfev: int = 400,
    sources: Sequence[str] | None = None,
) -> Calibration:
    """Fit ``fields`` of ``profile`` to the model-metric rows of ``data`` measured on it.

    ``data`` is a loaded measurement table (:func:`models.measurements.load_measurements`);
    ``sources`` optionally restricts the rows used. Rows are weighted equally in log space (a
    relative error), so one source with many rows weighs more than a source with few.
    """
    from scipy.optimize import least_squares  # scipy.optimize (~0.5 s): only to calibrate

    t0 = time.perf_counter()
    if profile not in profile_names():
        raise CalibrationError(f"unknown profile {profile!r} (known: {', '.join(profile_names())})")
    base = get_profile(profile)
    rows = model_rows(data)
    rows = rows[rows["profile"] == profile]
    if sources is not None:
        rows = rows[rows["source"].isin(list(sources))]
    rows = rows.reset_index(drop=True)
    if len(rows) == 0:
        raise CalibrationError(f"no measurements of a metric the model predicts on profile {profile!r}")
    chosen = list(fields) if fields is not None else uncertain_fields(base)
    for f in chosen:
        if f not in CALIBRATABLE:
            raise CalibrationError(
                f"field {f!r} cannot be calibrated (choose from: {', '.join(CALIBRATABLE)})"
            )
        if base.values[f] <= 0:
            raise CalibrationError(f"field {f!r} is 0 on profile {profile!r}: nothing to scale")
    if not chosen:
        raise CalibrationError(
            f"profile {profile!r} has no uncertain fields to calibrate; name them with --field"
        )
    target = name or f"{profile}-calibrated"
    ev = _Evaluator(rows, base, target)
    y = rows["value"].to_numpy(dtype=np.float64)
    x0 = np.log(np.array([base.values[f] for f in chosen]))
    lo, hi = _bounds(base, chosen, span)
    x0 = np.clip(x0, lo, hi)

    def resid(x: np.ndarray) -> np.ndarray:
        pred = ev.predict(dict(zip(chosen, np.exp(x), strict=True)))
        r = np.log(np.maximum(pred, 1e-300)) - np.log(y)
        return np.where(np.isfinite(r), r, 10.0)

    r0 = resid(x0)
    fit = least_squares(
        resid, x0, bounds=(lo, hi), method="trf", x_scale=1.0, diff_step=1e-3, max_nfev=max_nfev
    )
    before = {f: float(base.values[f]) for f in chosen}
    after = {f: float(v) for f, v in zip(chosen, np.exp(fit.x), strict=True)}
    pred_before = ev.predict(before)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    srcs = sorted(set(rows["source"]))
    provenance = (
        f"foliotune calibrate {stamp}: {len(rows)} measurements from {', '.join(srcs)} "
        f"(data sha256 {data_hash(rows)[:16]}); bounded least squares on log error, "
        f"fields within x{span:g} of {profile}; rms log error {np.sqrt(np.mean(r0**2)):.3f} -> "
        f"{np.sqrt(np.mean(fit.fun**2)):.3f}"
    )
    pred_after = ev.predict(after, provenance)
    cal = base.with_values(target, after, provenance)
    rows = rows.assign(pred_before=pred_before, pred_after=pred_after)
    ape_b = np.abs(pred_before - y) / y
    ape_a = np.abs(pred_after - y) / y
    per = (
        pd.DataFrame({"source": rows["source"], "before": ape_b, "after": ape_a})
        .groupby("source", sort=True)
        .agg(n=("before", "size"), mape_before=("before", "mean"), mape_after=("after", "mean"))
        .reset_index()
    )
    return Calibration(
        profile=cal,
        base=base,
        fields=chosen,
        before=before,
        after=after,
        per_source=per,
        rows=rows,
        cost_before=float(0.5 * np.sum(r0**2)),
        cost_after=float(fit.cost),
        seconds=time.perf_counter() - t0,
        message=str(fit.message),
    )


def write_calibrated(cal: Calibration, out_dir: str | Path | None = None) -> Path:
    """Write the calibrated profile as TOML: into ``out_dir``, or next to the original profile file."""
    if out_dir is None:
        if not cal.base.path:
            raise CalibrationError(f"profile {cal.base.name!r} has no file; give an output folder")
        d = Path(cal.base.path).parent
    else:
        d = Path(out_dir)
    try:
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"{cal.profile.name}.toml"
        atomic_write(path, dump_profile_toml(cal.profile))
    except OutputFileError as exc:
        raise CalibrationError(f"{d}: cannot write the calibrated profile ({exc})") from None
    except OSError as exc:
        raise CalibrationError(f"{d}: cannot write the calibrated profile ({exc.strerror})") from None
    return path


def cross_validate_calibration(
    data: pd.DataFrame,
    profile: str,
    *,
    n_splits: int = 5,
    seed: int = 0,
    fields: Sequence[str] | None = None,
    max_nfev: int = 200,
    scheme: str = "kfold",
) -> pd.DataFrame:
    """Out-of-fold predictions of the calibrated analytic model on the profile's measurements.

    Each fold calibrates on the other folds' rows and predicts the held-out rows (k-fold over
    configurations, or ``scheme="source"``: leave one source out). Returns the rows plus ``pred``
    and ``fold``.
    """
    from sklearn.model_selection import GroupKFold, LeaveOneGroupOut  # sklearn (~1 s): only to cross-validate

    rows = model_rows(data)
    rows = rows[rows["profile"] == profile].reset_index(drop=True)
    if len(rows) == 0:
        raise CalibrationError(f"no measurements of a metric the model predicts on profile {profile!r}")
    if scheme == "kfold":
        key = rows[[*PARAMETERS, "metric"]].astype(str).agg("|".join, axis=1)
        groups = pd.factorize(key)[0]
        splitter: object = GroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    else:
        groups = pd.factorize(rows["source"])[0]
        splitter = LeaveOneGroupOut()
    pred = np.full(len(rows), np.nan)
    fold = np.full(len(rows), -1)
    name = f"{profile}-cv-calibrated"
    for k, (tr, te) in enumerate(splitter.split(rows, groups=groups)):  # type: ignore[attr-defined]
        cal = calibrate_profile(rows.iloc[tr], profile, fields=fields, name=name, max_nfev=max_nfev)
        ev = _Evaluator(rows.iloc[te].reset_index(drop=True), cal.base, name)
        pred[te] = ev.predict(cal.after)
        fold[te] = k
    return rows.assign(pred=pred, fold=fold)


__all__ = [
    "CALIBRATABLE",
    "Calibration",
    "CalibrationError",
    "calibrate_profile",
    "cross_validate_calibration",
    "uncertain_fields",
    "write_calibrated",
]
