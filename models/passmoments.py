"""Moments of the per-pass probabilities of a batch of identical folios, cached by exact inputs.

One folio of a batch is unmapped on pass k, fails an attempt on pass k, or is still pending after
it (models/MECHANISM.md §4.1: split on allocation failure, -EAGAIN retried, -EBUSY for writeback).
The analytic model (``models.analytic``) needs, per batch shape, seven sums over the passes, the
expected number of passes that ran and the probability that some folio is unmapped: a loop over up
to ``NR_MAX_MIGRATE_PAGES_RETRY`` passes and as many powers. Batch shapes recur across the points
of a call (grids repeat busy probabilities, full batches repeat within a point), so
:func:`cached_moments` keeps them in a direct-mapped table keyed by the IEEE-754 bits of the
inputs: a hit returns exactly the bits a recomputation would, whatever the order or chunking of
the points.

References
----------
mm/migrate.c ``migrate_pages_batch()`` (v6.3+): ``NR_MAX_MIGRATE_PAGES_RETRY`` async passes;
``migrate_pages_sync()``: ``NR_MAX_MIGRATE_ASYNC_RETRY`` batched passes before the fallback.
"""

from __future__ import annotations

import numba as nb

from models.phases import as_bits

# No fastmath: the same inputs give the same bits wherever they are evaluated (issue 13).
_jit = nb.njit(cache=True, nogil=True, error_model="numpy", fastmath=False, _nrt=False)
_jit_inline = nb.njit(
    cache=True, nogil=True, error_model="numpy", fastmath=False, _nrt=False, inline="always"
)

# Columns of the batch-shape cache (:func:`moments`).
(M_X, M_SF, M_SKQ, M_QQB, M_QFB, M_QQ, M_QF, M_PASSES, M_PCALL) = range(9)  # fmt: skip
N_MOM = 9
N_CACHE = 1024  # rows of the batch-shape cache (a power of two; the caller allocates them)


@_jit
def moments(abar: float, p: float, w: float, n_pass: int, B: float, m, i: int) -> None:
    """The pass-probability moments of one folio type in a batch of ``B`` such folios, into ``m``:
    X = Σq, Σf, Σk·q, Σq·Q(<k), Σq·F(<k), Σq², Σq·f, the expected passes and P(some unmapped)."""
    x = 0.0
    sf = 0.0
    skq = 0.0
    a_qq_before = 0.0
    a_qf_before = 0.0
    a_qq = 0.0
    a_qf = 0.0
    q_before = 0.0
    f_before = 0.0
    att = 1.0
    passes = 1.0
    for k in range(n_pass):
        if k == 0:
            qk = (1.0 - abar) * (1.0 - p) * (1.0 - w)
            fk = abar + (1.0 - abar) * (p + (1.0 - p) * w)
            att = (1.0 - abar) * p
        else:
            qk = att * (1.0 - p) * (1.0 - w)
            fk = att * (p + (1.0 - p) * w)
            att = att * p
        x += qk
        sf += fk
        skq += k * qk
        a_qq_before += qk * q_before
        a_qf_before += qk * f_before
        a_qq += qk * qk
        a_qf += qk * fk
        q_before += qk
        f_before += fk
    # Passes of the batched phase that ran (models/MECHANISM.md §5): 1 + Σ_k P(some folio still
    # -EAGAIN after k of the n_pass passes); powers of p by multiplication.
    pk = 1.0
    for _k in range(1, n_pass):
        pk *= p
        nd = (1.0 - abar) * pk
        if nd > 0.0:
            passes += 1.0 - (1.0 - nd) ** B
    m[i, M_X] = x
    m[i, M_SF] = sf
    m[i, M_SKQ] = skq
    m[i, M_QQB] = a_qq_before
    m[i, M_QFB] = a_qf_before
    m[i, M_QQ] = a_qq
    m[i, M_QF] = a_qf
    m[i, M_PASSES] = passes
    m[i, M_PCALL] = 1.0 - (1.0 - x) ** B


@_jit_inline
def _mix64(z: int) -> int:
    """SplitMix64's finalizer (a bijective mixing of 64 bits; arithmetic shifts are as good here)."""
    z = (z ^ (z >> 30)) * 0x3F58476D1CE4E5B9
    z = (z ^ (z >> 27)) * 0x14D049BB133111EB
    return z ^ (z >> 31)


@_jit_inline
def moments_slot(abar: float, p: float, w: float, n_pass: int, B: float) -> int:
    """The row of the batch-shape cache for these inputs (a hash of their bits; no memory, so a
    loop over points computing it vectorizes)."""
    h = _mix64(_mix64(_mix64(_mix64(as_bits(abar) + n_pass) ^ as_bits(p)) ^ as_bits(w)) ^ as_bits(B))
    return h & (N_CACHE - 1)


@_jit_inline
def cached_moments(abar: float, p: float, w: float, n_pass: int, B: float, mkey, mval) -> int:
    """Row of ``mval`` holding :func:`moments` of these exact inputs (bit for bit), computed on a
    miss: batches of the same shape recur across the points of a call (grids, full batches)."""
    return moments_at(moments_slot(abar, p, w, n_pass, B), abar, p, w, n_pass, B, mkey, mval)


@_jit_inline
def moments_at(i: int, abar: float, p: float, w: float, n_pass: int, B: float, mkey, mval) -> int:
    """:func:`cached_moments` with its row ``i`` (:func:`moments_slot`) computed beforehand."""
    ka = as_bits(abar)
    kp = as_bits(p)
    kw = as_bits(w)
    kb = as_bits(B)
    if not (
        mkey[i, 0] == n_pass
        and mkey[i, 1] == ka
        and mkey[i, 2] == kp
        and mkey[i, 3] == kw
        and mkey[i, 4] == kb
    ):
        moments(abar, p, w, n_pass, B, mval, i)
        mkey[i, 0] = n_pass
        mkey[i, 1] = ka
        mkey[i, 2] = kp
        mkey[i, 3] = kw
        mkey[i, 4] = kb
    return i
