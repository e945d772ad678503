"""The analytic model's block passes and caches give the bits of a plain per-point evaluation.

``models.analyticvec`` computes the stall quantiles of a block in a vectorized, branch-free loop;
it must equal ``models.phases.stall_quantile`` evaluated one point at a time, bit for bit, in every
regime (no access, flat windows, the closed form, the Halley root) and whatever the block length.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from models.analyticvec import stall_quantiles
from models.phases import stall_quantile


@nb.njit(error_model="numpy")
def _one_by_one(w_lo: np.ndarray, w_hi: np.ndarray, rate: np.ndarray, q: float) -> np.ndarray:
    out = np.empty_like(w_lo)
    for i in range(w_lo.shape[0]):
        out[i] = stall_quantile(w_lo[i], w_hi[i], rate[i], q)
    return out


def _windows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    w_lo = 10.0 ** rng.uniform(-8, -2, n)
    kind = rng.integers(0, 4, n)
    width = np.where(kind == 0, 0.0, np.where(kind == 1, w_lo * 1e-12, w_lo * 10.0 ** rng.uniform(-6, 3, n)))
    w_hi = w_lo + width
    w_hi[rng.random(n) < 0.05] = 0.0
    rate = np.where(rng.random(n) < 0.2, 0.0, 10.0 ** rng.uniform(-2, 8, n))
    return w_lo, w_hi, rate


def test_vectorized_stall_quantiles_equal_the_scalar_quantile_bit_for_bit() -> None:
    w_lo, w_hi, rate = _windows(200_000, 0)
    for q in (0.99, 0.5):
        want = _one_by_one(w_lo, w_hi, rate, q)
        got = np.empty_like(want)
        stall_quantiles(w_lo, w_hi, rate, q, got)
        np.testing.assert_array_equal(got.view(np.int64), want.view(np.int64))
    # Every regime is exercised, many times.
    live = (rate > 0.0) & (w_hi > 0.0)
    h = w_hi - w_lo
    flat = h < 1e-9 * w_hi
    L = rate * h
    closed = L + np.expm1(-L) <= 0.01 * L
    for regime in (~live, live & flat, live & ~flat & closed, live & ~flat & ~closed):
        assert regime.sum() > 5_000


def test_vectorized_stall_quantiles_do_not_depend_on_the_block() -> None:
    w_lo, w_hi, rate = _windows(4_099, 1)
    whole = np.empty_like(w_lo)
    stall_quantiles(w_lo, w_hi, rate, 0.99, whole)
    for length in (1, 3, 7, 8, 9, 31, 1_000):
        for start in range(0, w_lo.size, length):
            end = min(start + length, w_lo.size)
            part = np.empty(end - start)
            stall_quantiles(w_lo[start:end], w_hi[start:end], rate[start:end], 0.99, part)
            np.testing.assert_array_equal(part.view(np.int64), whole[start:end].view(np.int64))
