"""Front door of the cost models: a table of points in, a table of outputs out.

``evaluate(points, model)`` completes missing parameter columns from each point's profile,
validates every row, runs the chosen model's vectorized kernel and returns the outputs
(``models.params.OUTPUTS``), one row per input row, in input order. The mechanism both models
implement is ``models/MECHANISM.md``.

Monte Carlo results depend only on each point's parameters and the seed (a per-point stream is
derived from a hash of both), never on how points are grouped, ordered or chunked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from models.analytic import analytic_outputs
from models.montecarlo import MC_EXTRA, montecarlo_outputs  # MC_EXTRA re-exported
from models.params import (
    OUTPUTS,
    PARAMETERS,
    PointArrays,
    PointError,
    check_points,
    complete_points,
    first_error,
)
from models.profiles import get_profile, profile_names, profile_table

ModelName = Literal["analytic", "montecarlo"]
MODELS: tuple[str, ...] = ("analytic", "montecarlo")


def run_kernel(
    arrays: PointArrays,
    model: str,
    *,
    seed: int = 0,
    replicas: int = 64,
    table: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Run a model kernel on validated arrays.

    Parameters
    ----------
    arrays : PointArrays
        Validated points (:func:`models.params.check_points`).
    model : str
        ``"analytic"`` or ``"montecarlo"``.
    seed, replicas : int
        Monte Carlo seed and replicas per point.
    table : numpy.ndarray, optional
        Profile rows indexed by ``arrays.profile_index``; default the catalogue's
        (:func:`models.profiles.profile_table`). Calibration passes trial values here
        (:func:`models.profiles.profile_table_with`) instead of registering profiles.

    Returns
    -------
    dict of str to numpy.ndarray
        Output name -> float64 array (SI units, :data:`models.params.OUTPUTS`).
    """
    if table is None:
        table = profile_table(profile_names())
    if model == "analytic":
        return analytic_outputs(arrays, table)
    if model == "montecarlo":
        return montecarlo_outputs(arrays, table, seed=seed, replicas=replicas)
    raise PointError(f"unknown model {model!r} (known: {', '.join(MODELS)})")


def evaluate(
    points: pd.DataFrame,
    model: str = "analytic",
    *,
    seed: int = 0,
    replicas: int = 64,
    on_invalid: Literal["raise", "mark"] = "raise",
    row_offset: int = 1,
    table: np.ndarray | None = None,
) -> pd.DataFrame:
    """Evaluate ``points`` with ``model``; return the completed points plus the output columns.

    on_invalid="raise": the first invalid row raises :class:`PointError` ("row N, column C: why").
    on_invalid="mark": invalid rows get NaN outputs and a non-empty ``infeasible`` reason column
    (sweeps count them instead of crashing). ``row_offset`` is the number of the first row in
    messages (2 for a CSV file with a header line).
    """
    full = complete_points(points, row_offset=row_offset)
    arrays, reasons = check_points(full)
    if on_invalid == "raise":
        msg = first_error(reasons, row_offset=row_offset)
        if msg is not None:
            raise PointError(msg)
    outputs = run_kernel(arrays, model, seed=seed, replicas=replicas, table=table)
    return outputs_frame(full, reasons, outputs, mark=on_invalid == "mark")


def outputs_frame(
    full: pd.DataFrame, reasons: np.ndarray, outputs: Mapping[str, np.ndarray], *, mark: bool = True
) -> pd.DataFrame:
    """The completed points and a model's ``outputs`` (:func:`run_kernel`) as :func:`evaluate`
    returns them: NaN outputs on invalid rows, and their reasons in ``infeasible`` if ``mark``."""
    out = full.reset_index(drop=True)
    bad = reasons != ""
    cols = {}
    for name, values in outputs.items():
        v = np.asarray(values, dtype=np.float64)
        if bad.any():
            v = np.where(bad, np.nan, v)
        cols[name] = v
    out = pd.concat([out, pd.DataFrame(cols)], axis=1)
    if mark:
        out["infeasible"] = reasons.astype(str)
    return out


def take_points(arrays: PointArrays, rows: np.ndarray) -> PointArrays:
    """The checked arrays of ``rows`` (positions) only."""
    return PointArrays(**{f.name: getattr(arrays, f.name)[rows] for f in dataclasses.fields(arrays)})


def add_derived(results: pd.DataFrame, model: str = "analytic", **kwargs: object) -> pd.DataFrame:
    """Add ``ipi_reduction`` and ``speedup`` against the unbatched path (batch_limit_pages = 1).

    The unbatched twin of each point is evaluated with the same model and parameters.
    """
    twin = results[list(PARAMETERS)].copy()
    twin["batch_limit_pages"] = 1
    base = evaluate(twin, model, on_invalid="mark", **kwargs)  # type: ignore[arg-type]
    out = results.copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        out["ipi_reduction"] = np.where(
            base["ipis"].to_numpy() > 0, 1.0 - out["ipis"].to_numpy() / base["ipis"].to_numpy(), 0.0
        )
        out["speedup"] = out["pages_per_s"].to_numpy() / base["pages_per_s"].to_numpy()
    return out


#: Metrics :func:`measured_metric` can derive from one another through the size of the call.
SIZE_METRICS: tuple[str, ...] = ("time_s", "time_per_page_s", "pages_per_s", "bytes_per_s")


def measured_metric(
    values: Mapping[str, ArrayLike] | pd.DataFrame,
    metric: str | Sequence[str] | np.ndarray,
    points: PointArrays | pd.DataFrame,
    *,
    page_kb: ArrayLike | None = None,
) -> np.ndarray:
    """Model outputs as the measured quantity ``metric`` of each point (SI units).

    A metric present in ``values`` is taken as it is. ``time_s``, ``time_per_page_s``,
    ``pages_per_s`` and ``bytes_per_s`` are derived from one another through the size of the call,
    ``n_folios * folio_kb`` KiB, that is ``n_folios * folio_kb / page_kb`` base pages: from ``time_s``
    when given, else from ``bytes_per_s`` or ``pages_per_s`` (a rate scales to the other rate by the
    page size alone). This is the one place that turns kernel outputs (or the regression's predicted
    throughput) into what a measurement reports.

    Parameters
    ----------
    values : mapping of str to array_like
        Output name -> one value per point, e.g. :func:`run_kernel`'s result or an
        :func:`evaluate` table (time in s, throughput in pages/s or bytes/s).
    metric : str or sequence of str
        One metric for all points, or one per point. A metric neither present nor derivable gives NaN.
    points : PointArrays or pandas.DataFrame
        The points' ``n_folios``, ``folio_kb`` (KiB) and ``profile`` (a DataFrame) or
        ``profile_index`` (:class:`PointArrays`).
    page_kb : array_like, optional
        Base page size per point in KiB; by default the page size of each point's profile.

    Returns
    -------
    numpy.ndarray
        float64, one value per point.
    """
    n_folios = np.asarray(
        points.n_folios if isinstance(points, PointArrays) else points["n_folios"], np.float64
    )
    folio_kb = np.asarray(
        points.folio_kb if isinstance(points, PointArrays) else points["folio_kb"], np.float64
    )
    n = len(n_folios)
    if page_kb is None:
        if isinstance(points, PointArrays):
            sizes = np.array([get_profile(p).page_kb for p in profile_names()], dtype=np.float64)
            page_kb = sizes[points.profile_index]
        else:
            codes, names = pd.factorize(points["profile"].astype(str))
            page_kb = np.array([get_profile(str(p)).page_kb for p in names], dtype=np.float64)[codes]
    page_kib = np.broadcast_to(np.asarray(page_kb, dtype=np.float64), (n,))
    pages = n_folios * folio_kb / page_kib
    nbytes = n_folios * folio_kb * 1024.0
    page_b = page_kib * 1024.0

    def col(name: str) -> np.ndarray | None:
        return np.asarray(values[name], dtype=np.float64) if name in values else None

    out = np.full(n, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        time_s, bps, pps = col("time_s"), col("bytes_per_s"), col("pages_per_s")
        if time_s is None and bps is not None:
            time_s = nbytes / bps
        elif time_s is None and pps is not None:
            time_s = pages / pps
        if bps is None and pps is not None:
            bps = pps * page_b
        if pps is None and bps is not None:
            pps = bps / page_b
        derived = {
            "time_s": time_s,
            "time_per_page_s": None if time_s is None else time_s / pages,
            "pages_per_s": pps if pps is not None or time_s is None else pages / time_s,
            "bytes_per_s": bps if bps is not None or time_s is None else nbytes / time_s,
        }
        # one metric for all (the common case) or hashed codes: sorting an object array is slow
        if isinstance(metric, str):
            mcodes, mnames = np.zeros(n, np.intp), [metric]
        else:
            fcodes, uniq = pd.factorize(np.asarray(metric, dtype=object))
            mcodes, mnames = np.asarray(fcodes, np.intp), [str(u) for u in uniq]
        for k, m in enumerate(mnames):
            v = col(m) if m in values else derived.get(m)
            if v is not None:
                sel = mcodes == k
                out[sel] = np.broadcast_to(v, (n,))[sel]
    return out


__all__ = [
    "MODELS",
    "MC_EXTRA",
    "OUTPUTS",
    "SIZE_METRICS",
    "add_derived",
    "evaluate",
    "measured_metric",
    "run_kernel",
]
