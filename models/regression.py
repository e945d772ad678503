"""Regression of measured results on the model parameters, with the analytic model as a prior.

:class:`MigrationRegressor` follows scikit-learn's conventions (parameters in ``__init__``, learned
state in ``*_`` attributes, ``fit`` returns ``self``). It predicts any metric the cost model predicts
(``models.measurements.MODEL_METRICS``) from a table holding the parameters of DESIGN.md §2 plus a
``metric`` column. It works in log space, where a multiplicative error is an additive one:

* ``prior="residual"``: a gradient-boosted tree ensemble learns ``log(measured) - log(analytic)``;
* ``prior="feature"``: it learns ``log(measured)`` with ``log(analytic)`` as one more feature;
* ``prior="none"``: no physics at all (the baseline that shows what the prior is worth).

90 % prediction intervals are split-conformal: the absolute out-of-fold residuals of an inner
k-fold on the training set give the half-width in log space (with the finite-sample correction),
per metric when a metric has enough rows. :func:`cross_validate` reports honest out-of-sample
errors (k-fold grouped by configuration, or leave-one-source-out) and the coverage of the intervals.

Persistence never unpickles: a model folder holds the tree ensemble as a skops file, loaded with an
explicit allow-list of scikit-learn/numpy types, and ``model.json`` with everything else plus the
SHA-256 of the skops file, the versions that wrote it and the SHA-256 of its own other fields. A
folder from another version, with a changed, missing or extra file, is refused
(:class:`ModelDirError`). The hashes guard against accidents (an edit, a truncated copy, a stray
file) and version drift, not against a forger: there is no key, so anyone can recompute them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin

from models.errors import UserError
from models.evaluate import measured_metric, run_kernel
from models.fileio import TMP_PREFIX, atomic_write, os_message
from models.measurements import MODEL_METRICS, data_hash, load_measurements, model_rows
from models.params import ENGINES, PARAMETERS, PointError, check_points, complete_points, first_error
from models.profiles import get_profile

FORMAT = "foliotune-regression"
FORMAT_VERSION = 2  # 2: model.json sealed (MANIFEST_DIGEST); no file outside model.json's list
ESTIMATOR_FILE = "estimator.skops"
MANIFEST_FILE = "model.json"
#: The field of ``model.json`` holding the SHA-256 of its other fields.
MANIFEST_DIGEST = "manifest_sha256"
PRIORS = ("residual", "feature", "none")
#: Types a skops estimator file may contain; anything else is refused before loading.
_ALLOWED_TYPE_PREFIXES = ("sklearn.ensemble._gb.", "sklearn.tree.", "sklearn._loss.", "sklearn.dummy.")
_ALLOWED_TYPES = {
    "builtins.slice",
    "numpy.dtype",
    "numpy.ndarray",
    "numpy.float64",
    "numpy.int64",
    "numpy.random.mtrand.RandomState",
    "numpy.random._mt19937.MT19937",
}
_FEATURES = (
    "log2_folio_kb",
    "log2_n_folios",
    "log2_batch_limit_pages",
    "log2_batch_pages",
    "engine",
    "log2_copy_threads",
    "log2_target_cpus",
    "log2_mapcount",
    "busy_prob",
    "sync",
    "metric",
    "log2_page_kb",
    "vintage",
)
_CATEGORICAL = ("engine", "metric")


class ModelDirError(UserError):
    """A model folder that is refused (missing, from another version, or tampered with)."""


def _version() -> str:
    try:
        return version("foliotune")
    except Exception:  # pragma: no cover - not installed as a package
        return "0+unknown"


# ---------------------------------------------------------------------------------------------
# The analytic prior and the features


def analytic_prior(
    points: pd.DataFrame, metric: Sequence[str] | np.ndarray
) -> tuple[pd.DataFrame, np.ndarray]:
    """Complete ``points`` and return them with the analytic prediction of each row's ``metric`` (SI).

    Kernel outputs become the metric through :func:`models.evaluate.measured_metric`. Raises
    :class:`models.params.PointError` naming the first invalid row.
    """
    full = complete_points(points[[c for c in points.columns if c in PARAMETERS]])
    arrays, reasons = check_points(full)
    msg = first_error(reasons)
    if msg is not None:
        raise PointError(msg)
    prior = measured_metric(run_kernel(arrays, "analytic"), np.asarray(metric, dtype=object), arrays)
    return full.reset_index(drop=True), prior


def _page_kb(full: pd.DataFrame) -> np.ndarray:
    codes, names = pd.factorize(full["profile"].astype(str))
    return np.array([get_profile(str(n)).page_kb for n in names], dtype=np.float64)[codes]


def vintage_years(dates: pd.Series) -> np.ndarray:
    """``YYYY-MM[-DD]`` dates as fractional years (the kernel/patch vintage of a measurement)."""
    parts = dates.astype(str).str.split("-", expand=True)
    year = pd.to_numeric(parts[0], errors="coerce").to_numpy(dtype=np.float64)
    month = pd.to_numeric(parts[1], errors="coerce").to_numpy(dtype=np.float64) if parts.shape[1] > 1 else 1.0
    return year + (np.nan_to_num(month, nan=1.0) - 1.0) / 12.0


def _coded(values: pd.Series, table: Sequence[str]) -> np.ndarray:
    """Index of each (lower-cased) value in ``table`` as float, -1 when absent (factorized: fast)."""
    codes, uniq = pd.factorize(values)
    lut = np.array(
        [table.index(str(u).lower()) if str(u).lower() in table else -1 for u in uniq], dtype=float
    )
    return lut[codes] if len(uniq) else np.zeros(len(values))


def _features(
    full: pd.DataFrame, metric: np.ndarray | str, prior: np.ndarray | None, vintage: np.ndarray
) -> np.ndarray:
    """Numeric feature matrix (float64); categorical columns hold small integer codes."""

    def col(name: str) -> np.ndarray:
        return np.array(pd.to_numeric(full[name]), dtype=np.float64)

    fkb, nf, bl = col("folio_kb"), col("n_folios"), col("batch_limit_pages")
    page_kb = _page_kb(full)
    total_pages = nf * fkb / page_kb
    batch_pages = np.maximum(np.minimum(bl, total_pages), fkb / page_kb)
    eng_code = _coded(full["copy_engine"], ENGINES)
    if isinstance(metric, str):
        met_code = np.full(len(full), float(MODEL_METRICS.index(metric)))
    else:
        met_code = _coded(pd.Series(metric), MODEL_METRICS)
    cols = [
        np.log2(fkb),
        np.log2(nf),
        np.log2(bl),
        np.log2(batch_pages),
        eng_code,
        np.log2(col("copy_threads")),
        np.log2(col("target_cpus")),
        np.log2(col("mapcount")),
        col("busy_prob"),
        (_coded(full["mode"], ("async", "sync")) == 1).astype(np.float64),
        met_code,
        np.log2(page_kb),
        vintage,
    ]
    if prior is not None:
        cols.append(np.log(prior))
    out = np.empty((len(full), len(cols)))
    for i, c in enumerate(cols):
        out[:, i] = c
    return out


# ---------------------------------------------------------------------------------------------
# The estimator


class MigrationRegressor(RegressorMixin, BaseEstimator):
    """Gradient-boosted regression (scikit-learn GradientBoostingRegressor) of measured metrics, analytic prior, conformal intervals.

    ``X`` is a table with the parameter columns (missing ones take profile defaults) and a
    ``metric`` column; ``y`` the measured values in SI. An ``analytic_prior`` column, when present,
    is used instead of evaluating the analytic model again (cross-validation computes it once).
    """

    def __init__(
        self,
        prior: str = "residual",
        n_estimators: int = 300,
        learning_rate: float = 0.05,
        max_depth: int = 3,
        min_samples_leaf: int = 2,
        subsample: float = 1.0,
        loss: str = "squared_error",
        coverage: float = 0.9,
        calib_folds: int = 5,
        use_vintage: bool = True,
        random_state: int = 0,
    ) -> None:
        self.prior = prior
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.subsample = subsample
        self.loss = loss
        self.coverage = coverage
        self.calib_folds = calib_folds
        self.use_vintage = use_vintage
        self.random_state = random_state

    # core -------------------------------------------------------------------------------------
    def _new_estimator(self) -> Any:
        from sklearn.ensemble import GradientBoostingRegressor  # ~1.5 s: only to fit

        return GradientBoostingRegressor(
            loss=self.loss,
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            max_depth=self.max_depth,
            min_samples_leaf=self.min_samples_leaf,
            subsample=self.subsample,
            random_state=self.random_state,
        )

    def _design(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Features, log prior (0 when prior='none') and metric names of a table."""
        if self.prior not in PRIORS:
            raise UserError(f"prior must be one of {', '.join(PRIORS)}, not {self.prior!r}")
        if "metric" not in X.columns:
            raise UserError("regression input needs a 'metric' column")
        metric = X["metric"].astype(str).to_numpy()
        unknown = sorted(set(metric) - set(MODEL_METRICS))
        if unknown:
            raise UserError(f"column metric: the model does not predict {', '.join(unknown)}")
        if "analytic_prior" in X.columns:
            given = X[[c for c in X.columns if c in PARAMETERS]]
            complete = given.shape[1] == len(PARAMETERS) and not given.isna().to_numpy().any()
            full = (given if complete else complete_points(given)).reset_index(drop=True)
            prior = np.array(X["analytic_prior"], dtype=np.float64)
        else:
            full, prior = analytic_prior(X, metric)
        if not (np.isfinite(prior) & (prior > 0)).all():
            bad = int(np.flatnonzero(~(np.isfinite(prior) & (prior > 0)))[0])
            raise UserError(
                f"row {bad + 1}: the analytic model gives no positive {metric[bad]} for this point"
            )
        logp = np.log(prior)
        feats = _features(full, metric, prior if self.prior == "feature" else None, self._vintage(X, full))
        offset = logp if self.prior == "residual" else np.zeros(len(full))
        return feats, offset, metric

    def _vintage(self, X: pd.DataFrame, full: pd.DataFrame) -> np.ndarray:
        """Measurement vintage per row: its ``date`` when given, else the newest date seen for the
        profile in training (predictions describe the most recent kernels measured), 0 when off."""
        if not self.use_vintage:
            return np.zeros(len(full))
        if "date" in X.columns:
            v = vintage_years(X["date"])
            if not np.isnan(v).any():
                return v
        latest = getattr(self, "vintage_", {})
        fallback = max(latest.values()) if latest else 0.0
        codes, names = pd.factorize(full["profile"])
        return np.array([latest.get(str(n), fallback) for n in names], dtype=np.float64)[codes]

    def fit(self, X: pd.DataFrame, y: Sequence[float] | np.ndarray) -> MigrationRegressor:
        from sklearn.model_selection import KFold  # ~0.4 s: only to fit

        y = np.asarray(y, dtype=np.float64)
        if len(y) != len(X):
            raise ValueError("X and y have different lengths")
        if len(y) < 2 * self.calib_folds:
            raise UserError(f"need at least {2 * self.calib_folds} measurements to fit, got {len(y)}")
        if not (np.isfinite(y) & (y > 0)).all():
            raise UserError("measured values must be positive and finite")
        if self.use_vintage and "date" in X.columns:
            years = vintage_years(X["date"])
            prof = X["profile"].astype(str).to_numpy()
            self.vintage_ = {str(p): float(np.nanmax(years[prof == p])) for p in np.unique(prof)}
        else:
            self.vintage_ = {}
        feats, offset, metric = self._design(X)
        target = np.log(y) - offset
        # Features constant in the training data carry no information: leave them out, which also
        # lets prediction evaluate the trees once per distinct configuration.
        self.active_features_ = np.flatnonzero(np.ptp(feats, axis=0) > 0)
        feats = feats[:, self.active_features_]
        self.estimator_ = self._new_estimator().fit(feats, target)
        # Split-conformal half-widths from out-of-fold residuals of the training set.
        oof = np.empty(len(y))
        kf = KFold(n_splits=self.calib_folds, shuffle=True, random_state=self.random_state)
        for tr, te in kf.split(feats):
            est = self._new_estimator().fit(feats[tr], target[tr])
            oof[te] = est.predict(feats[te])
        resid = np.abs(target - oof)
        self.q_global_ = _conformal_q(resid, self.coverage)
        self.q_log_ = {
            str(m): _conformal_q(resid[metric == m], self.coverage)
            if (metric == m).sum() >= 20
            else self.q_global_
            for m in np.unique(metric)
        }
        self.metrics_ = tuple(sorted(self.q_log_))
        self.n_features_in_ = len(_FEATURES) + (self.prior == "feature")
        self.n_train_ = len(y)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "estimator_"):
            raise UserError("this MigrationRegressor is not fitted yet")

    def predict_complete(
        self, full: pd.DataFrame, metric: str, prior: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Fast path for many points: complete, valid parameters, one ``metric``, its analytic prior.

        Returns prediction, lower and upper interval ends (SI); NaN when the metric was never
        trained on.
        """
        self._check_fitted()
        q = self.q_log_.get(metric, np.nan)
        if np.isnan(q):
            nan = np.full(len(full), np.nan)
            return nan, nan, nan
        prior = np.asarray(prior, dtype=np.float64)
        feats = _features(full, metric, prior if self.prior == "feature" else None, self._vintage(full, full))
        offset = np.log(prior) if self.prior == "residual" else 0.0
        lp = (
            _predict_distinct(self.estimator_, np.ascontiguousarray(feats[:, self.active_features_])) + offset
        )
        return np.exp(lp), np.exp(lp - q), np.exp(lp + q)

    def predict_log(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Log predictions and their conformal half-widths (NaN for metrics never trained on)."""
        self._check_fitted()
        feats, offset, metric = self._design(X)
        feats = np.ascontiguousarray(feats[:, self.active_features_])
        pred = _predict_distinct(self.estimator_, feats) + offset
        q = pd.Series(metric).map(self.q_log_).to_numpy(dtype=np.float64, na_value=np.nan)
        pred = np.where(np.isnan(q), np.nan, pred)
        return pred, q

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return np.exp(self.predict_log(X)[0])

    def predict_interval(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Point prediction and the lower/upper ends of the ``coverage`` prediction interval (SI)."""
        lp, q = self.predict_log(X)
        return np.exp(lp), np.exp(lp - q), np.exp(lp + q)

    def score(self, X: pd.DataFrame, y: Sequence[float] | np.ndarray) -> float:
        """Negative mean absolute percentage error (higher is better, as scikit-learn expects)."""
        y = np.asarray(y, dtype=np.float64)
        return -float(np.mean(np.abs(self.predict(X) - y) / y))


def _predict_distinct(estimator: Any, feats: np.ndarray) -> np.ndarray:
    """``estimator.predict`` evaluated once per distinct row (sweeps repeat configurations)."""
    if len(feats) <= 1000:
        return np.asarray(estimator.predict(feats), dtype=np.float64)
    weights = np.random.default_rng(12345).uniform(1.0, 2.0, feats.shape[1])
    codes, uniq = pd.factorize(feats @ weights)
    first = np.zeros(len(uniq), dtype=np.int64)
    first[codes[::-1]] = np.arange(len(codes))[::-1]
    reps = feats[first]
    if not np.array_equal(reps[codes], feats):  # a hash collision: no shortcut
        return np.asarray(estimator.predict(feats), dtype=np.float64)
    return np.asarray(estimator.predict(reps), dtype=np.float64)[codes]


def _conformal_q(resid: np.ndarray, coverage: float) -> float:
    n = len(resid)
    if n == 0:
        return float("nan")
    level = min(1.0, math.ceil((n + 1) * coverage) / n)
    return float(np.quantile(resid, level, method="higher"))


# ---------------------------------------------------------------------------------------------
# Training data, cross-validation


def training_table(data: pd.DataFrame) -> pd.DataFrame:
    """Model-metric rows of a loaded measurement table with their analytic prior (computed once)."""
    rows = model_rows(data)
    if rows.empty:
        raise UserError("no measurements of a metric the model predicts")
    full, prior = analytic_prior(rows, rows["metric"].to_numpy())
    out = rows.copy()
    for c in PARAMETERS:
        out[c] = full[c].to_numpy()
    out["analytic_prior"] = prior
    return out


def config_groups(table: pd.DataFrame) -> np.ndarray:
    """One group id per configuration (parameters + metric): k-fold never splits a configuration."""
    key = table[[*PARAMETERS, "metric"]].astype(str).agg("|".join, axis=1)
    return pd.factorize(key)[0]


def cross_validate(
    table: pd.DataFrame,
    *,
    scheme: str = "kfold",
    n_splits: int = 5,
    seed: int = 0,
    **params: Any,
) -> pd.DataFrame:
    """Out-of-fold predictions for every row of ``table`` (from :func:`training_table`).

    ``scheme="kfold"``: shuffled k-fold over configurations (rows sharing parameters and metric stay
    together). ``scheme="source"``: leave one source out; rows of a source are predicted by a model
    that never saw that source. Returns ``table`` plus ``pred``, ``lo``, ``hi``, ``fold``; rows that
    could not be predicted (a fold whose training set is too small) have NaN.
    """
    from sklearn.model_selection import GroupKFold, LeaveOneGroupOut  # ~0.4 s: only to cross-validate

    y = table["value"].to_numpy(dtype=np.float64)
    if scheme == "kfold":
        groups = config_groups(table)
        splitter: Any = GroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    elif scheme == "source":
        groups = pd.factorize(table["source"])[0]
        splitter = LeaveOneGroupOut()
    else:
        raise UserError(f"unknown cross-validation scheme {scheme!r} (kfold, source)")
    pred = np.full(len(y), np.nan)
    lo, hi = pred.copy(), pred.copy()
    fold = np.full(len(y), -1)
    for k, (tr, te) in enumerate(splitter.split(table, y, groups)):
        train = table.iloc[tr]
        metrics_tr = set(train["metric"])
        te = np.array([i for i in te if table["metric"].iloc[i] in metrics_tr], dtype=np.int64)
        if len(te) == 0 or len(tr) < 20:
            continue
        model = MigrationRegressor(random_state=seed, **params).fit(train, y[tr])
        p, lwr, upr = model.predict_interval(table.iloc[te])
        pred[te], lo[te], hi[te], fold[te] = p, lwr, upr, k
    out = table.copy()
    out["pred"], out["lo"], out["hi"], out["fold"] = pred, lo, hi, fold
    return out


def cv_scores(oof: pd.DataFrame, mask: np.ndarray | None = None) -> dict[str, float]:
    """MAPE, median APE, interval coverage and count of out-of-fold predictions (``mask`` selects)."""
    ok = np.isfinite(oof["pred"].to_numpy())
    if mask is not None:
        ok &= np.asarray(mask, dtype=bool)
    y = oof["value"].to_numpy()[ok]
    p = oof["pred"].to_numpy()[ok]
    if len(y) == 0:
        return {"n": 0, "mape": float("nan"), "median_ape": float("nan"), "coverage": float("nan")}
    ape = np.abs(p - y) / y
    inside = (oof["lo"].to_numpy()[ok] <= y) & (y <= oof["hi"].to_numpy()[ok])
    return {
        "n": int(len(y)),
        "mape": float(ape.mean()),
        "median_ape": float(np.median(ape)),
        "coverage": float(inside.mean()),
    }


#: The AMD EPYC 2-socket throughput tables of the issue's accuracy bars.
AMD_TABLE_SOURCES = ("garg-rfc-v2-2025-03", "garg-v4-2026-03", "garg-v5-2026-05")
AMD_TABLE_VARIANTS = ("", "vanilla kernel", "DMA offload (dcbm, PTDMA)")


def amd_tables_mask(table: pd.DataFrame) -> np.ndarray:
    """Rows of the folio size × copy threads × DMA channels throughput tables (AMD EPYC 2-socket)."""
    return np.asarray(
        table["source"].isin(AMD_TABLE_SOURCES)
        & table["variant"].isin(AMD_TABLE_VARIANTS)
        & (table["metric"] == "bytes_per_s"),
        dtype=bool,
    )


# ---------------------------------------------------------------------------------------------
# Persistence


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _versions() -> dict[str, str]:
    import sklearn  # ~1 s: only to record the versions beside a persisted model
    import skops  # the package only; skops.io (~3 s) loads to persist or read a model

    return {"foliotune": _version(), "scikit-learn": sklearn.__version__, "skops": skops.__version__}


def _canonical(manifest: dict[str, Any]) -> bytes:
    body = {k: v for k, v in manifest.items() if k != MANIFEST_DIGEST}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=True).encode()


def seal_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """``manifest`` with :data:`MANIFEST_DIGEST`: the SHA-256 of its other fields (canonical JSON).

    With the hashes of the other files it holds, this covers every file of a model folder against
    accidents and version drift; it is not a signature (anyone can recompute it).
    """
    return {**manifest, MANIFEST_DIGEST: _sha256(_canonical(manifest))}


def model_manifest(
    model: MigrationRegressor, *, data_sha256: str = "", extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What ``model.json`` says about a fitted model (without the file hashes :func:`save_model` adds)."""
    model._check_fitted()
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "versions": _versions(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "params": model.get_params(),
        "learned": {
            "q_log": model.q_log_,
            "q_global": model.q_global_,
            "metrics": list(model.metrics_),
            "n_features_in": model.n_features_in_,
            "n_train": model.n_train_,
            "active_features": [int(i) for i in model.active_features_],
            "vintage": model.vintage_,
            "features": list(_FEATURES) + (["log_prior"] if model.prior == "feature" else []),
        },
        "data_sha256": data_sha256,
        **(extra or {}),
    }


def save_model(
    model: MigrationRegressor,
    out_dir: str | Path,
    *,
    data_sha256: str = "",
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` to a folder: the skops estimator and a sealed ``model.json`` (hashes, versions).

    Each file is written by :func:`models.fileio.atomic_write`: a folder that cannot be written
    (read-only, full) raises :class:`ModelDirError` or :class:`models.fileio.OutputFileError`, one
    line naming it, and leaves no temporary file.
    """
    import skops.io as sio  # ~3 s: only to persist a model

    manifest = model_manifest(model, data_sha256=data_sha256, extra=extra)
    estimator = sio.dumps(model.estimator_)
    manifest["files"] = {ESTIMATOR_FILE: _sha256(estimator)}
    body = json.dumps(seal_manifest(manifest), indent=2, sort_keys=True) + "\n"
    d = Path(out_dir)
    try:
        d.mkdir(parents=True, exist_ok=True)
        names = os.listdir(d)
    except OSError as exc:
        raise ModelDirError(f"{d}: cannot write the model ({os_message(exc)})") from None
    for name in sorted(names):
        if name.startswith(tuple(f"{TMP_PREFIX}{f}." for f in (MANIFEST_FILE, ESTIMATOR_FILE))):
            (d / name).unlink(missing_ok=True)  # left by a save that was killed
        elif name not in (MANIFEST_FILE, ESTIMATOR_FILE):
            raise ModelDirError(
                f"{d / name}: not part of a model folder; give an empty folder or a model folder"
            )
    atomic_write(d / ESTIMATOR_FILE, estimator)  # OutputFileError: one line naming the file
    atomic_write(d / MANIFEST_FILE, body)
    return d


def read_manifest(model_dir: str | Path) -> dict[str, Any]:
    """The ``model.json`` of a model folder, as written (checked by :func:`load_model`, not here)."""
    d = Path(model_dir)
    mpath = d / MANIFEST_FILE
    if not mpath.is_file():
        raise ModelDirError(
            f"{d}: not a foliotune model folder (no {MANIFEST_FILE}); create one with foliotune fit"
        )
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelDirError(f"{mpath}: not valid JSON ({exc.msg if hasattr(exc, 'msg') else exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelDirError(f"{mpath}: not a foliotune regression model")
    return manifest


def _check_folder(d: Path, manifest: dict[str, Any]) -> dict[str, bytes]:
    """Every file of the folder against ``model.json``: its seal, then each recorded file's SHA-256,
    and no file that is not recorded. Returns the recorded files' contents (read once)."""
    if manifest.get(MANIFEST_DIGEST) != _sha256(_canonical(manifest)):
        raise ModelDirError(
            f"{d / MANIFEST_FILE}: changed since it was written (SHA-256 does not match); refit with foliotune fit"
        )
    files = manifest.get("files")
    if not isinstance(files, dict) or ESTIMATOR_FILE not in files:
        raise ModelDirError(f"{d / MANIFEST_FILE}: lists no {ESTIMATOR_FILE}; refit with foliotune fit")
    extra = sorted(set(os.listdir(d)) - {MANIFEST_FILE, *files})
    if extra:
        raise ModelDirError(
            f"{d / extra[0]}: not part of this model folder (not in {MANIFEST_FILE}); not loaded"
        )
    contents = {}
    for name, expected in sorted(files.items()):
        path = d / name
        if not path.is_file():
            raise ModelDirError(f"{d}: {name} is missing")
        data = path.read_bytes()
        if _sha256(data) != expected:
            raise ModelDirError(
                f"{path}: SHA-256 does not match {MANIFEST_FILE} (tampered with or corrupted); not loaded"
            )
        contents[name] = data
    return contents


def load_model(model_dir: str | Path) -> tuple[MigrationRegressor, dict[str, Any]]:
    """Load a model folder written by :func:`save_model`, refusing other versions and any changed,
    missing or extra file (see :func:`seal_manifest` for what this protects against)."""
    import skops.io as sio  # ~3 s: only to read a model

    d = Path(model_dir)
    manifest = read_manifest(d)
    mine = _versions()
    theirs = manifest.get("versions", {})
    if manifest.get("format_version") != FORMAT_VERSION or theirs != mine:
        theirs_text = (
            ", ".join(f"{k} {v}" for k, v in sorted(theirs.items())) if isinstance(theirs, dict) else "?"
        )
        raise ModelDirError(
            f"{d}: written by another version (format {manifest.get('format_version')}, "
            f"{theirs_text}); this is format {FORMAT_VERSION}, "
            f"{', '.join(f'{k} {v}' for k, v in sorted(mine.items()))}: refit with foliotune fit"
        )
    est_bytes = _check_folder(d, manifest)[ESTIMATOR_FILE]
    est_path = d / ESTIMATOR_FILE
    try:
        untrusted = sio.get_untrusted_types(data=est_bytes)
    except Exception as exc:
        raise ModelDirError(f"{est_path}: not a readable skops file ({exc})") from None
    refused = [t for t in untrusted if not (t in _ALLOWED_TYPES or t.startswith(_ALLOWED_TYPE_PREFIXES))]
    if refused:
        raise ModelDirError(
            f"{est_path}: contains types outside the allow-list ({', '.join(refused)}); not loaded"
        )
    estimator = sio.loads(est_bytes, trusted=list(untrusted))
    from sklearn.ensemble import GradientBoostingRegressor  # ~1.5 s: only with a model to check

    if not isinstance(estimator, GradientBoostingRegressor):
        raise ModelDirError(f"{est_path}: unexpected estimator type {type(estimator).__name__}")
    params = manifest.get("params", {})
    learned = manifest.get("learned", {})
    try:
        model = MigrationRegressor(**params)
        model.estimator_ = estimator
        model.q_log_ = {str(k): float(v) for k, v in learned["q_log"].items()}
        model.q_global_ = float(learned["q_global"])
        model.metrics_ = tuple(learned["metrics"])
        model.n_features_in_ = int(learned["n_features_in"])
        model.n_train_ = int(learned["n_train"])
        model.active_features_ = np.array([int(i) for i in learned["active_features"]], dtype=np.int64)
        model.vintage_ = {str(k): float(v) for k, v in learned["vintage"].items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelDirError(f"{d / MANIFEST_FILE}: incomplete or invalid model description ({exc})") from None
    if getattr(estimator, "n_features_in_", -1) != len(model.active_features_):
        raise ModelDirError(f"{d}: estimator and {MANIFEST_FILE} disagree on the features; not loaded")
    return model, manifest


# ---------------------------------------------------------------------------------------------
# Front doors: fit on measurements, predict for points


def fit_measurements(
    paths: Sequence[str | Path] | None = None,
    *,
    strict: bool = False,
    include_shipped: bool = True,
    **params: Any,
) -> tuple[MigrationRegressor, pd.DataFrame, str]:
    """Fit on the shipped (and given) measurements; returns the model, its training table and data hash."""
    data, _reports = load_measurements(paths, strict=strict, include_shipped=include_shipped)
    table = training_table(data)
    model = MigrationRegressor(**params).fit(table, table["value"].to_numpy())
    return model, table, data_hash(table)


def default_model_dir() -> Path:
    """Where the model fitted on the shipped measurements is cached (``FOLIOTUNE_CACHE`` overrides)."""
    base = os.environ.get("FOLIOTUNE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "foliotune"
    )
    return Path(base) / f"regression-v{FORMAT_VERSION}"


def shipped_model() -> tuple[MigrationRegressor, dict[str, Any]]:
    """The model fitted on the shipped measurements: loaded from the cache, or fitted and cached.

    The cache is this program's own output, so a stale, foreign or damaged cache is simply refitted.
    """
    d = default_model_dir()
    data, _ = load_measurements()
    want = data_hash(model_rows(data))
    try:
        model, manifest = load_model(d)
        if manifest.get("data_sha256_rows") == want:
            return model, manifest
    except ModelDirError:
        shutil.rmtree(d, ignore_errors=True)  # our own cache: whatever is there is refitted
    model, table, h = fit_measurements()
    save_model(model, d, data_sha256=h, extra={"data_sha256_rows": want, "measurements": "shipped"})
    return load_model(d)


def predict_regression(points_df: pd.DataFrame, model_dir: str | Path | None = None) -> pd.DataFrame:
    """Regression predictions for ``points_df`` (parameters of DESIGN.md §2; missing ones defaulted).

    Without ``model_dir`` the model fitted on the shipped measurements is used (fitted and cached on
    first use); a given folder must be valid. The columns are :func:`predict_points`'s.
    """
    model, _manifest = shipped_model() if model_dir is None else load_model(model_dir)
    return predict_points(model, points_df)


def predict_points(
    model: MigrationRegressor, points_df: pd.DataFrame, metrics: Sequence[str] | None = None
) -> pd.DataFrame:
    """Predictions of a fitted ``model`` for ``points_df`` (the one prediction path for points).

    Returns the completed points plus, for each of ``metrics`` (default: every metric the model was
    trained on), ``<metric>``, ``<metric>_lo``, ``<metric>_hi`` (90 % prediction interval) and
    ``<metric>_prior`` (the analytic prediction). When ``bytes_per_s`` is predicted, ``pages_per_s``
    and ``time_s`` (with intervals) are derived from it by :func:`models.evaluate.measured_metric`.
    Raises :class:`models.params.PointError` naming the first invalid row.
    """
    pts = points_df.drop(columns=[c for c in points_df.columns if c == "metric"])
    base_full = complete_points(pts[[c for c in pts.columns if c in PARAMETERS]]).reset_index(drop=True)
    arrays, reasons = check_points(base_full)
    msg = first_error(reasons)
    if msg is not None:
        raise PointError(msg)
    outputs = run_kernel(arrays, "analytic")
    cols: dict[str, np.ndarray] = {}
    for m in model.metrics_ if metrics is None else metrics:
        prior = measured_metric(outputs, m, arrays)
        p, lo, hi = model.predict_complete(base_full, m, prior)
        cols[m], cols[f"{m}_lo"], cols[f"{m}_hi"], cols[f"{m}_prior"] = p, lo, hi, prior
    if "bytes_per_s" in cols:
        # A higher throughput is a shorter time: the time interval's ends swap.
        for name, bound in (("", ""), ("_lo", "_lo"), ("_hi", "_hi")):
            cols.setdefault(
                f"pages_per_s{name}",
                measured_metric({"bytes_per_s": cols[f"bytes_per_s{bound}"]}, "pages_per_s", arrays),
            )
        for name, bound in (("", ""), ("_lo", "_hi"), ("_hi", "_lo")):
            cols.setdefault(
                f"time_s{name}",
                measured_metric({"bytes_per_s": cols[f"bytes_per_s{bound}"]}, "time_s", arrays),
            )
    return pd.concat([base_full, pd.DataFrame(cols)], axis=1)


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """(result, seconds) of a call (for the fit command and the benchmark)."""
    t = time.perf_counter()
    r = fn(*args, **kwargs)
    return r, time.perf_counter() - t


__all__ = [
    "AMD_TABLE_SOURCES",
    "FORMAT_VERSION",
    "MigrationRegressor",
    "ModelDirError",
    "amd_tables_mask",
    "model_manifest",
    "seal_manifest",
    "analytic_prior",
    "cross_validate",
    "cv_scores",
    "default_model_dir",
    "fit_measurements",
    "load_model",
    "predict_points",
    "predict_regression",
    "save_model",
    "shipped_model",
    "training_table",
]
