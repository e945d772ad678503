"""Point *i* of a sweep from its index, vectorized over an index range, without building the sweep.

* ``grid``: mixed-radix decoding of the index (the first axis varies slowest, like
  ``itertools.product``); each axis contributes ``values[(i // stride) % len]``.
* ``sobol``: scrambled Sobol' sequence from :class:`scipy.stats.qmc.Sobol` seeded with the spec seed;
  ``fast_forward(start)`` jumps to the range, so a chunk costs O(chunk), not O(sweep).
* ``lhs``: :class:`scipy.stats.qmc.LatinHypercube` seeded with the spec seed. A Latin hypercube is a
  whole design (one stratum permutation per dimension), so it is built once per process and cached;
  that is why ``n`` is capped for ``lhs`` (:data:`sweep.spec.MAX_LHS_POINTS`).

Unit-cube coordinates map to axes as: categorical axis → ``values[floor(u·k)]``; continuous axis →
``low + u·(high-low)`` (or log-uniform); integer parameters are rounded.
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np

from models.params import INTEGER_PARAMETERS
from sweep.spec import Axis, SweepSpec


def axis_array(axis: Axis) -> np.ndarray:
    """The discrete values of an axis as a numpy array (object dtype for text)."""
    vals = list(axis.values)
    if vals and isinstance(vals[0], str):
        return np.array(vals, dtype=object)
    if all(isinstance(v, int) for v in vals):
        return np.array(vals, dtype=np.int64)
    return np.array(vals, dtype=np.float64)


def grid_digits(spec: SweepSpec, start: int, stop: int) -> list[np.ndarray]:
    """Per axis, the index into its values of each point in ``[start, stop)`` (mixed radix)."""
    idx = np.arange(start, stop, dtype=np.int64)
    sizes = [len(a.values) for a in spec.axes]
    digits: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * len(sizes)
    rest = idx
    for k in range(len(sizes) - 1, -1, -1):  # last axis varies fastest
        digits[k] = rest % sizes[k]
        rest = rest // sizes[k]
    return digits


def unit_points(spec: SweepSpec, start: int, stop: int) -> np.ndarray:
    """Unit-cube coordinates (shape ``(stop-start, n_axes)``) of sampled points ``[start, stop)``."""
    from scipy.stats import qmc  # scipy.stats takes ~0.5 s to import: only for sampled specs, not grids

    d = len(spec.axes)
    if spec.sampler == "sobol":
        eng = qmc.Sobol(d, scramble=True, seed=spec.seed)
        if start:
            eng.fast_forward(start)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # balance properties want powers of two; chunks needn't be
            return eng.random(stop - start)
    if spec.sampler == "lhs":
        return _lhs_design(d, spec.n, spec.seed)[start:stop]
    raise ValueError(f"not a sampled spec: {spec.sampler}")


@lru_cache(maxsize=2)
def _lhs_design(d: int, n: int, seed: int) -> np.ndarray:
    from scipy.stats import qmc  # scipy.stats takes ~0.5 s to import: only for sampled specs, not grids

    design = qmc.LatinHypercube(d, seed=seed).random(n)
    design.setflags(write=False)
    return design


def _from_unit(axis: Axis, u: np.ndarray, integer: bool) -> np.ndarray:
    if not axis.continuous:
        vals = axis_array(axis)
        k = len(vals)
        pick = np.minimum((u * k).astype(np.int64), k - 1)
        return vals[pick]
    if axis.log:
        lo, hi = np.log(axis.low), np.log(axis.high)
        x = np.exp(lo + u * (hi - lo))
    else:
        x = axis.low + u * (axis.high - axis.low)
    x = np.clip(x, axis.low, axis.high)
    if integer:
        return np.round(x).astype(np.int64)
    return x


def axis_columns(spec: SweepSpec, start: int, stop: int) -> dict[str, np.ndarray]:
    """Values of every axis for the points ``[start, stop)`` of the spec (one array per axis)."""
    if not (0 <= start <= stop <= spec.n_points):
        raise IndexError(f"point range [{start}, {stop}) outside [0, {spec.n_points})")
    if spec.sampler == "grid":
        digits = grid_digits(spec, start, stop)
        return {a.name: axis_array(a)[dig] for a, dig in zip(spec.axes, digits, strict=True)}
    u = unit_points(spec, start, stop)
    return {a.name: _from_unit(a, u[:, j], a.name in INTEGER_PARAMETERS) for j, a in enumerate(spec.axes)}
