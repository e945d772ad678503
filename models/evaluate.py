"""Front door of the cost models: a table of points in, a table of outputs out.

``evaluate(points, model)`` completes missing parameter columns from each point's profile,
validates every row, runs the chosen model's vectorized kernel and returns the outputs
(``models.params.OUTPUTS``), one row per input row, in input order. The mechanism both models
implement is ``models/MECHANISM.md``.

Monte Carlo results depend only on each point's parameters and the seed (a per-point stream is
derived from a hash of both), never on how points are grouped, ordered or chunked.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from models.params import OUTPUTS, PointArrays, PointError, check_points, complete_points, first_error
from models.profiles import profile_names, profile_table

ModelName = Literal["analytic", "montecarlo"]
MODELS: tuple[str, ...] = ("analytic", "montecarlo")

from models.montecarlo import MC_EXTRA  # noqa: E402  (re-exported)


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
        from models.analytic import analytic_outputs

        return analytic_outputs(arrays, table)
    if model == "montecarlo":
        from models.montecarlo import montecarlo_outputs

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
    out = full.reset_index(drop=True)
    bad = reasons != ""
    cols = {}
    for name, values in outputs.items():
        v = np.asarray(values, dtype=np.float64)
        if bad.any():
            v = np.where(bad, np.nan, v)
        cols[name] = v
    out = pd.concat([out, pd.DataFrame(cols)], axis=1)
    if on_invalid == "mark":
        out["infeasible"] = reasons.astype(str)
    return out


def add_derived(results: pd.DataFrame, model: str = "analytic", **kwargs: object) -> pd.DataFrame:
    """Add ``ipi_reduction`` and ``speedup`` against the unbatched path (batch_limit_pages = 1).

    The unbatched twin of each point is evaluated with the same model and parameters.
    """
    from models.params import PARAMETERS

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


__all__ = ["MODELS", "MC_EXTRA", "OUTPUTS", "add_derived", "evaluate", "run_kernel"]
