"""The regression as the explorer and ``foliotune recommend`` use it: one function from points to
pages/s with its 90 % interval, or the reason there is none.

The app works without a regression: a model that cannot be loaded or fitted becomes a
:class:`RegressionSource` whose ``note`` says why, and the pages show Monte Carlo intervals only.
Predictions go through :func:`models.regression.predict_points` (the one prediction path) on the
model held in memory, with a small cache per distinct table of points.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from models import regression as reg
from models.errors import UserError
from models.measurements import data_hash, load_measurements

#: The throughput metric the explorer's intervals are derived from.
THROUGHPUT_METRIC = "bytes_per_s"
_CACHE_ENTRIES = 512


@dataclass
class RegressionSource:
    """A fitted regression behind one function, or the reason there is none."""

    predict: Callable[[pd.DataFrame], pd.DataFrame] | None = None  # points -> pages_per_s(_lo,_hi)
    version: str = ""
    data_hash: str = ""
    note: str = ""
    label: str = "shipped measurements"

    @property
    def ok(self) -> bool:
        return self.predict is not None


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def source_from_model(
    model: reg.MigrationRegressor, manifest: dict[str, Any], label: str
) -> RegressionSource:
    """A source predicting with ``model`` (held in memory), cached per distinct table of points."""
    if THROUGHPUT_METRIC not in model.metrics_:
        return RegressionSource(note=f"the regression does not predict {THROUGHPUT_METRIC}")
    cache: dict[tuple[Any, ...], pd.DataFrame] = {}
    lock = threading.Lock()

    def predict(points: pd.DataFrame) -> pd.DataFrame:
        key = tuple(map(tuple, points.astype(str).to_numpy().tolist())) + tuple(points.columns)
        with lock:
            hit = cache.get(key)
        if hit is not None:
            return hit
        out = reg.predict_points(model, points, metrics=(THROUGHPUT_METRIC,))
        with lock:
            if len(cache) > _CACHE_ENTRIES:
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


_shipped_lock = threading.Lock()


def shipped_regression() -> RegressionSource:
    """The regression fitted on the shipped measurements (fitted and cached on first use; a second
    thread asking meanwhile, e.g. a first page during the explorer's warm-up, waits for it)."""
    with _shipped_lock:
        return _shipped_regression()


@lru_cache(maxsize=1)
def _shipped_regression() -> RegressionSource:
    try:
        model, manifest = reg.shipped_model()
    except Exception as exc:  # the app works without the regression: say why there is none
        return RegressionSource(note=f"regression fit failed ({_one_line(exc)})"[:240])
    return source_from_model(model, manifest, "shipped measurements")


@lru_cache(maxsize=1)
def _shipped_newest_vintage() -> dict[str, float]:
    shipped, _ = load_measurements()
    v = pd.Series(reg.vintage_years(shipped["date"]), index=shipped.index)
    return {str(k): float(x) for k, x in v.groupby(shipped["profile"].astype(str)).max().items()}


def rows_older_than_shipped(extra: pd.DataFrame) -> int:
    """Rows of ``extra`` dated before the newest shipped measurement of their profile.

    The regression predicts for each profile's newest measurement vintage
    (:meth:`models.regression.MigrationRegressor._vintage`), so such rows move its predictions
    little; the explorer says so when they are uploaded. Rows without a date, or of a profile with no
    shipped rows, are not counted."""
    if extra.empty or "date" not in extra.columns or "profile" not in extra.columns:
        return 0
    newest = _shipped_newest_vintage()
    v = reg.vintage_years(extra["date"])
    ref = extra["profile"].astype(str).map(newest).to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        return int(np.sum(v < ref))


def regression_with(extra: pd.DataFrame, what: str = "uploaded measurements") -> RegressionSource:
    """Refit on the shipped measurements plus ``extra`` (validated rows, described as ``what``),
    held in memory only.

    Raises :class:`UserError` when nothing can be fitted.
    """
    shipped, _ = load_measurements()
    data = pd.concat([shipped, extra], ignore_index=True)
    table = reg.training_table(data)
    if table.empty:
        raise UserError("no rows with a metric the model predicts; nothing to fit")
    model = reg.MigrationRegressor().fit(table, table["value"].to_numpy())
    manifest = reg.model_manifest(
        model, data_sha256=data_hash(table), extra={"measurements": "shipped+upload"}
    )
    src = source_from_model(model, manifest, f"shipped + {what}")
    if not src.ok:
        raise UserError(src.note)
    return src


__all__ = [
    "RegressionSource",
    "THROUGHPUT_METRIC",
    "regression_with",
    "rows_older_than_shipped",
    "shipped_regression",
    "source_from_model",
]
