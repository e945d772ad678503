"""The analytic model's passes over a whole block of points that vectorize (SIMD over points).

``models.analytic`` evaluates each point's batches in a scalar loop (data-dependent batch shapes,
runs and caches). What is left per point once its windows are known, the stall quantile, is the
same arithmetic for every point; here it runs as a loop of its own, written without branches (both
regimes computed, then selected) so that the compiler vectorizes it. A selection picks one of the
values, it computes nothing: every lane performs the same IEEE-754 operations, in the same order, as
:func:`models.phases.stall_quantile` performs on one point (no ``fastmath``, no FMA contraction), so
the results are bit-identical to it whatever the block, its length or a point's position in it.
"""

from __future__ import annotations

import math

import numba as nb

from models.phases import fast_expm1, fast_log, halley_step

# No fastmath: the same inputs give the same bits in a vector lane and in a scalar remainder.
_jit = nb.njit(cache=True, nogil=True, error_model="numpy", fastmath=False, _nrt=False)
_jit_inline = nb.njit(
    cache=True, nogil=True, error_model="numpy", fastmath=False, _nrt=False, inline="always"
)


@_jit_inline
def stall_quantile_select(w_lo: float, w_hi: float, rate_hz: float, q: float) -> float:
    """:func:`models.phases.stall_quantile` (q-quantile of max(0, W - E), W uniform on
    [w_lo, w_hi], E ~ Exp(rate_hz)), every regime computed and the right one selected.

    Bit-identical to it for every input: each regime's value is the same sequence of operations;
    values computed for the regimes not taken (a log of a negative number, a division by a zero
    rate) are discarded by the selections.
    """
    tail = 1.0 - q
    lam = rate_hz
    h = w_hi - w_lo
    flat = h < 1e-9 * w_hi
    L = lam * h
    em = fast_expm1(-L)
    c = tail * L
    low = L + em <= c
    # Closed forms: w_hi + log(1 - τ)/λ (flat) or w_lo + log((1 - τ)L / -expm1(-L))/λ (low).
    base = w_hi if flat else w_lo
    arg = (1.0 - tail) if flat else (1.0 - tail) * L / -em
    closed = base + fast_log(arg) / lam
    # Halley: x = λ(w_hi - s) solves x + expm1(-x) = τL.
    y = math.sqrt(2.0 * c)
    x = y * (1.0 + y * (1.0 / 6.0 + y * (1.0 / 72.0))) if c < 1.0 else c + 1.0
    x = halley_step(halley_step(x, c), c)
    root = w_hi - x / lam
    s = max(closed if (flat or low) else root, 0.0)
    return s if (rate_hz > 0.0 and w_hi > 0.0) else 0.0


@_jit
def stall_quantiles(w_lo, w_hi, rate_hz, q: float, out) -> None:
    """``out[i] = stall_quantile(w_lo[i], w_hi[i], rate_hz[i], q)`` for every i (``out`` apart from
    the inputs, or the loop runs without vectors after the compiler's overlap check)."""
    for i in range(out.shape[0]):
        out[i] = stall_quantile_select(w_lo[i], w_hi[i], rate_hz[i], q)


@_jit
def stall_quantiles_left(w_lo, w_hi, rate_hz, q: float, done, out) -> None:
    """:func:`stall_quantiles` for the points not ``done`` (the others keep ``out[i]``); vectorized,
    every lane computed and the result selected."""
    for i in range(out.shape[0]):
        s = stall_quantile_select(w_lo[i], w_hi[i], rate_hz[i], q)
        out[i] = out[i] if done[i] != 0 else s
