"""Analytic model: closed-form expected time of each phase of ``migrate_pages()``, vectorized.

For every point the kernel sums, over full batches and the last partial batch, the expectation of
each pass: with busy probability p, folio busy independently on each pass, the number of folios
unmapped on pass k of a batch of B is Binomial(B, p^k (1-p)); a flush round (and a copy call) happens
when at least one is unmapped, probability 1 - (1 - p^k(1-p))^B. Sync mode then takes each folio
still failed after 3 passes alone, up to 7 times, one immediate flush per success. Windows use the
first two moments of the binomial, so expectations are exact, not approximations; the quantiles
(``window_p99_s``, ``stall_p99_s``) describe a full batch on its first pass (the dominant case),
the Monte Carlo model gives the full distribution.

Stall model (no published measurement exists, see SOURCES.md §5): each folio is touched by the
application as a Poisson stream of rate ``access_rate_hz``; the first touch inside the folio's
unmapped window W blocks until the remap, so the folio's stall is ``max(0, W - E)`` with
``E ~ Exp(rate)``. ``stall_p99_s`` is the 99th percentile of that stall over the folios of a call.
"""

from __future__ import annotations

import functools
import math

import numba as nb
import numpy as np
from numba.np.unsafe.ndarray import to_fixed_tuple

from models.params import OUTPUTS, PointArrays
from models.phases import (
    ACK_ALPHA,
    ACK_SCALE,
    ASYNC_BATCHED_PASSES,
    BUSY_ATTEMPT,
    CALL_SETUP,
    ENGINE_MT,
    IS_BROADCAST,
    PAGE_KB,
    SYNC_BATCHED_PASSES,
    SYNC_SINGLE_PASSES,
    TOTAL_PASSES,
    copy_engine_costs,
    expected_max_lomax,
    fast_expm1,
    fast_log,
    flush_fixed_s,
    folios_per_batch,
    is_full_flush,
    remap_s,
    remote_handler_s,
    unmap_phase_s,
    window_line,
)
from models.profiles import FIELD_INDEX

N_OUT = len(OUTPUTS)
(
    O_TIME,
    O_PAGES_PER_S,
    O_BYTES_PER_S,
    O_FLUSH_ROUNDS,
    O_IPIS,
    O_CPU_TIME,
    O_REMOTE_CPU,
    O_WINDOW_MEAN,
    O_WINDOW_P99,
    O_STALL_P99,
    O_FAILED,
    O_PASSES,
) = range(N_OUT)
Q = 0.99

_jit = nb.njit(cache=True, nogil=True, inline="always", error_model="numpy", fastmath=True, _nrt=False)


@_jit
def _quantile_index(count: float, q: float) -> float:
    """0-based rank of the q-quantile among ``count`` sorted values (inverted-CDF definition)."""
    return max(math.ceil(q * count) - 1.0, 0.0)


@_jit
def line_quantile(a: float, slope: float, count: float, q: float) -> float:
    """q-quantile of {a + slope*(j+1) : j = 0..count-1}."""
    rank = _quantile_index(count, q)
    j = rank if slope >= 0.0 else count - 1.0 - rank
    return a + slope * (j + 1.0)


@_jit
def _halley_step(x: float, c: float) -> float:
    """Halley's step (cubic convergence) on f(x) = x + expm1(-x) - c; f' = -expm1(-x), f'' = e^-x."""
    emx = fast_expm1(-x)
    f = x + emx - c
    d1 = -emx
    return x - 2.0 * f * d1 / (2.0 * d1 * d1 - f * (1.0 + emx))


@_jit
def stall_quantile(w_lo: float, w_hi: float, rate_hz: float, q: float) -> float:
    """q-quantile of max(0, W - E), W uniform on [w_lo, w_hi], E ~ Exp(rate_hz).

    With tail τ = 1 - q, L = λ·(w_hi - w_lo) and s the quantile, P(S > s) = τ has two regimes:
    - s <= w_lo: P(S > s) = 1 - e^{λs}(e^{-λ w_lo} - e^{-λ w_hi})/L, solved in closed form;
    - s >= w_lo: with x = λ(w_hi - s), P(S > s) = (x - 1 + e^{-x})/L, so x solves the one-parameter
      equation x + expm1(-x) = τL (convex, increasing): Halley's method from the inverse series
      (small τL) or from τL + 1 (large τL) is within 6e-14 of the root after two steps.
    The regime follows from P(S > w_lo) = (L + expm1(-L))/L against τ. Branch-free (every regime
    computed, then selected; two Halley steps: from these starting points, at most 6e-14 from the root for any τL) so that a loop over points vectorizes.
    """
    tail = 1.0 - q
    lam = rate_hz
    h = w_hi - w_lo
    L = lam * h
    em = fast_expm1(-L)
    c = tail * L
    # All windows equal: 1 - exp(-λ(W - s)) = tail.
    s_equal = w_hi + fast_log(1.0 - tail) / lam
    s_low = w_lo + fast_log((1.0 - tail) * L / -em) / lam
    y = math.sqrt(2.0 * c)
    x = y * (1.0 + y * (1.0 / 6.0 + y * (1.0 / 72.0))) if c < 1.0 else c + 1.0
    # Two Halley steps, written out (a counted loop here would keep the caller's loop scalar).
    x = _halley_step(_halley_step(x, c), c)
    s_high = w_hi - x / lam
    s = s_equal if h < 1e-9 * w_hi else (s_low if L + em <= c else s_high)
    return max(s, 0.0) if (rate_hz > 0.0 and w_hi > 0.0) else 0.0


# Moment cache: one row per distinct (folios in batch, busy probability, batched passes).
CACHE_BITS = 12
CACHE_SLOTS = 1 << CACHE_BITS
K_B, K_P, K_NB, M_ROUNDS, M_EC, M_EC2, M_BUSY, M_PASSES = range(8)
CACHE_WIDTH = 8


@_jit
def batch_moments(B: float, p: float, n_batched: int):
    """Expected (flush rounds, Σ E[c], Σ E[c²], busy attempts, passes) of one batch of B folios.

    The number unmapped on pass k is c_k ~ Binomial(B, p^k (1-p)); a round (and a copy call) happens
    when c_k >= 1. Σ windows of a pass is linear in c and c² (see ``window_line``), so these five
    numbers give every expectation of the batched passes for any costs.
    """
    rounds = 0.0
    s_ec = 0.0
    s_ec2 = 0.0
    busy = 0.0
    pk = 1.0  # p^k: probability a folio is still pending at pass k
    for _k in range(n_batched):
        qk = pk * (1.0 - p)
        if qk <= 0.0 and pk <= 0.0:
            break
        ec = B * qk
        s_ec += ec
        s_ec2 += B * qk * (1.0 - qk) + ec * ec
        rounds += 1.0 - (1.0 - qk) ** B if qk < 1.0 else 1.0
        busy += B * pk * p
        pk *= p
    # Passes made over the batch: 1 + Σ_{k≥1} P(some folio needs more than k attempts)
    passes = 1.0
    pk = p
    for _k in range(1, TOTAL_PASSES):
        if pk <= 0.0:
            break
        passes += 1.0 - (1.0 - pk) ** B
        pk *= p
    return rounds, s_ec, s_ec2, busy, passes


@_jit
def _cached_moments(cache, B: float, p: float, n_batched: int) -> int:
    """Row of ``cache`` holding the moments of (B, p, n_batched), computed on a miss.

    Open addressing with linear probing; row 0 of ``cache`` counts the filled rows. The caller
    empties the table between blocks when it is nearly half full, so probes stay short and the
    slots handed out for a block stay valid for that block.
    """
    h = (int(B) * -7046029254386353131) ^ (int(p * 1073741824.0) * -4417276706812531889) ^ n_batched
    h = (h ^ (h >> 29)) * -4658895280553007687
    slot = 1 + ((h >> 40) & (CACHE_SLOTS - 2))
    while True:
        if cache[slot, K_B] == B and cache[slot, K_P] == p and cache[slot, K_NB] == n_batched:
            return slot
        if cache[slot, K_B] < 0.0:
            break
        slot = slot + 1 if slot < CACHE_SLOTS - 1 else 1
    cache[0, 0] += 1.0
    rounds, s_ec, s_ec2, busy, passes = batch_moments(B, p, n_batched)
    cache[slot, K_B] = B
    cache[slot, K_P] = p
    cache[slot, K_NB] = n_batched
    cache[slot, M_ROUNDS] = rounds
    cache[slot, M_EC] = s_ec
    cache[slot, M_EC2] = s_ec2
    cache[slot, M_BUSY] = busy
    cache[slot, M_PASSES] = passes
    return slot


@_jit
def _combine(cache, sf: int, sl: int, col: int, n_full: float) -> float:
    """A moment summed over the call: ``n_full`` full batches (row ``sf``) and the last (row ``sl``)."""
    return n_full * cache[sf, col] + cache[sl, col]


@_jit
def closed_forms(
    prof, tail_mean, folio_kb, n, limit, engine, threads, targets, mapcount, p, sync, rounds_b, unmapped_b,
    ec2_b, busy_b,
):  # fmt: skip
    """Every output of one point but the passes and the stall quantile, from its batch moments summed
    over the call (``rounds_b``, ``unmapped_b``, ``ec2_b``, ``busy_b``) and the mean acknowledgement
    tail of a flush round (``tail_mean``).

    Straight-line code (selects, no loads but ``prof``'s constant fields), so that a loop calling
    it over a block of points vectorizes. Returns the outputs in ``OUTPUTS`` order (without
    ``stall_p99_s`` and ``passes``) and (w_lo, w_hi), the range of the unmapped windows of a full
    batch's first pass.
    """
    page_bytes = prof[PAGE_KB] * 1024.0
    fp = folio_kb / prof[PAGE_KB]
    folio_bytes = folio_kb * 1024.0
    b = folios_per_batch(limit, fp, n)
    u = unmap_phase_s(prof, fp, mapcount)
    r = remap_s(prof, fp, mapcount)

    # Flush rounds of the batched passes and of the single-folio fallback.
    full = is_full_flush(prof, b, fp)
    flush_s = flush_fixed_s(prof, full, fp, targets) + tail_mean
    full1 = is_full_flush(prof, 1.0, fp)
    flush1_s = flush_fixed_s(prof, full1, fp, targets) + tail_mean

    call_s, cf, cf_wait, call_wait, progressive, t_used = copy_engine_costs(
        prof, engine, threads, folio_bytes, b
    )
    call1_s, cf1, cf1_wait, call1_wait, _prog1, t1_used = copy_engine_costs(
        prof, engine, threads, folio_bytes, 1.0
    )

    calls_b = rounds_b
    busy = busy_b
    # Σ windows of a pass of c folios is c²·w2 + c·w1 + slope·(c² + c)/2 (see ``window_line``).
    a, slope_b = window_line(b, u, flush_s, call_s, cf, r, progressive)
    w2 = u if progressive else u + cf
    w1 = flush_s if progressive else flush_s + call_s
    win_b = ec2_b * w2 + unmapped_b * w1 + slope_b * 0.5 * (ec2_b + unmapped_b)

    # Synchronous one-by-one fallback: each folio pending after the batched passes, alone.
    p3 = p * p * p
    p7 = p3 * p3 * p
    p10 = p7 * p3
    fallback = sync != 0 and p > 0.0
    succ_sync = n * p3 * (1.0 - p7) if fallback else 0.0
    busy_sync = n * p3 * p * (1.0 - p7) / (1.0 - p) if p < 1.0 else n * SYNC_SINGLE_PASSES
    busy += busy_sync if fallback else 0.0
    failed = n * p10
    win_sync = succ_sync * (flush1_s + call1_s + cf1 + r)

    time = (
        prof[CALL_SETUP]
        + unmapped_b * (u + cf + r)
        + rounds_b * flush_s
        + calls_b * call_s
        + succ_sync * (u + flush1_s + call1_s + cf1 + r)
        + busy * prof[BUSY_ATTEMPT]
    )
    succeeded = n - failed
    rounds = rounds_b + succ_sync
    remote_targets = targets - 1.0 if prof[IS_BROADCAST] < 0.5 else 0.0
    remote_cpu = remote_targets * (
        rounds_b * remote_handler_s(prof, full) + succ_sync * remote_handler_s(prof, full1)
    )
    wait = unmapped_b * cf_wait + calls_b * call_wait + succ_sync * (cf1_wait + call1_wait)
    # Helper threads of a multi-threaded copy burn CPU for the copy's duration too.
    extra_threads = (t_used - 1.0) * unmapped_b * cf + (t1_used - 1.0) * succ_sync * cf1
    extra_threads = extra_threads if engine == ENGINE_MT else 0.0

    migrated = unmapped_b + succ_sync
    inv_time = 1.0 / time
    window_mean = (win_b + win_sync) / migrated if migrated > 0.0 else 0.0
    w_first, w_last = a + slope_b, a + slope_b * b
    return (
        time,
        succeeded * fp * inv_time,
        succeeded * fp * page_bytes * inv_time,
        rounds,
        rounds * remote_targets,
        time - wait + extra_threads,
        remote_cpu,
        window_mean,
        line_quantile(a, slope_b, b, Q),
        failed,
        min(w_first, w_last),
        max(w_first, w_last),
    )


BLOCK = 256  # points per stage: scratch stays in L1
NF = len(FIELD_INDEX)  # fields of a profile row
# Rows of the block scratch (one flat array, row k at k·BLOCK, so that the vectorizer sees constant
# distances between rows and needs no run-time alias checks): inputs, moments, then outputs.
(
    S_FOLIO, S_N, S_LIMIT, S_ENGINE, S_THREADS, S_TARGETS, S_MAPCOUNT, S_P, S_SYNC, S_TAIL, S_ROUNDS,
    S_UNMAPPED, S_EC2, S_BUSY, S_TIME, S_PAGES_PER_S, S_BYTES_PER_S, S_FLUSH_ROUNDS, S_IPIS, S_CPU_TIME,
    S_REMOTE_CPU, S_WINDOW_MEAN, S_WINDOW_P99, S_FAILED, S_WLO, S_WHI, S_RATE, S_STALL,
) = range(28)  # fmt: skip
S_ROWS = 28
# The outputs held in the scratch: S_TIME + k holds output row k, k < O_STALL_P99, or k + 1 beyond.
N_COPIED = S_FAILED - S_TIME + 1


@_jit
def _at(row: int, j: int):
    """Flat scratch index of (row, j), unsigned so that indexing skips the negative-index fix-up."""
    return np.uint64(row * BLOCK + j)


@_jit
def _closed_forms_run(prof, sc, j0: int, j1: int) -> None:
    """Closed forms of the block's points j0..j1-1, which share the profile ``prof`` (a tuple)."""
    for j in range(j0, j1):
        res = closed_forms(
            prof, sc[_at(S_TAIL, j)], sc[_at(S_FOLIO, j)], sc[_at(S_N, j)], sc[_at(S_LIMIT, j)],
            sc[_at(S_ENGINE, j)], sc[_at(S_THREADS, j)], sc[_at(S_TARGETS, j)], sc[_at(S_MAPCOUNT, j)],
            sc[_at(S_P, j)], sc[_at(S_SYNC, j)], sc[_at(S_ROUNDS, j)], sc[_at(S_UNMAPPED, j)],
            sc[_at(S_EC2, j)], sc[_at(S_BUSY, j)],
        )  # fmt: skip
        sc[_at(S_TIME, j)] = res[0]
        sc[_at(S_PAGES_PER_S, j)] = res[1]
        sc[_at(S_BYTES_PER_S, j)] = res[2]
        sc[_at(S_FLUSH_ROUNDS, j)] = res[3]
        sc[_at(S_IPIS, j)] = res[4]
        sc[_at(S_CPU_TIME, j)] = res[5]
        sc[_at(S_REMOTE_CPU, j)] = res[6]
        sc[_at(S_WINDOW_MEAN, j)] = res[7]
        sc[_at(S_WINDOW_P99, j)] = res[8]
        sc[_at(S_FAILED, j)] = res[9]
        sc[_at(S_WLO, j)] = res[10]
        sc[_at(S_WHI, j)] = res[11]


@nb.njit(cache=True, nogil=True, error_model="numpy", fastmath=True, _nrt=False)
def _analytic_block(
    pidx, folio_kb, n, limit, engine, threads, targets, mapcount, p, rate, sync, table, emax, out, cache,
    sc, s, e,
):  # fmt: skip
    """Points s..e-1 in three stages: moments (scalar, cached) gathered with the inputs into the
    scratch ``sc``; the closed forms (a vectorized loop per run of points sharing a profile); the
    stall quantile (only where access_rate_hz > 0).

    Compiled without the reference-counting runtime: a row view per point would otherwise cost
    two atomic operations per view and helper call.
    """
    if cache[0, 0] > CACHE_SLOTS // 2 - 2 * BLOCK:
        cache[:, :] = -1.0
        cache[0, 0] = 0.0
    m = e - s
    for j in range(m):
        i = s + j
        pi = pidx[i]
        nn = n[i]
        pp = p[i]
        tg = targets[i]
        fp = folio_kb[i] / table[pi, PAGE_KB]
        b = folios_per_batch(limit[i], fp, nn)
        n_batches = math.ceil(nn / b)
        b_last = nn - (n_batches - 1.0) * b
        n_batched = ASYNC_BATCHED_PASSES if sync[i] == 0 else SYNC_BATCHED_PASSES
        sf = _cached_moments(cache, b, pp, n_batched)
        sl = sf if b_last == b else _cached_moments(cache, b_last, pp, n_batched)
        n_full = n_batches - 1.0
        sc[_at(S_ROUNDS, j)] = _combine(cache, sf, sl, M_ROUNDS, n_full)
        sc[_at(S_UNMAPPED, j)] = _combine(cache, sf, sl, M_EC, n_full)
        sc[_at(S_EC2, j)] = _combine(cache, sf, sl, M_EC2, n_full)
        sc[_at(S_BUSY, j)] = _combine(cache, sf, sl, M_BUSY, n_full)
        out[O_PASSES, i] = _combine(cache, sf, sl, M_PASSES, n_full) / n_batches
        sc[_at(S_TAIL, j)] = table[pi, ACK_SCALE] * emax[pi, int(tg) - 1] if tg > 1.0 else 0.0
        sc[_at(S_FOLIO, j)] = folio_kb[i]
        sc[_at(S_N, j)] = nn
        sc[_at(S_LIMIT, j)] = limit[i]
        sc[_at(S_ENGINE, j)] = engine[i]
        sc[_at(S_THREADS, j)] = threads[i]
        sc[_at(S_TARGETS, j)] = tg
        sc[_at(S_MAPCOUNT, j)] = mapcount[i]
        sc[_at(S_P, j)] = pp
        sc[_at(S_SYNC, j)] = sync[i]
    j0 = 0
    while j0 < m:
        pi = pidx[s + j0]
        j1 = j0 + 1
        while j1 < m and pidx[s + j1] == pi:
            j1 += 1
        _closed_forms_run(to_fixed_tuple(table[pi], NF), sc, j0, j1)
        j0 = j1
    for k in range(N_COPIED):
        o = k if k < O_STALL_P99 else k + 1
        for j in range(m):
            out[o, np.uint64(s + j)] = sc[_at(S_TIME + k, j)]
    for j in range(m):
        sc[_at(S_RATE, j)] = rate[s + j]
    for j in range(m):
        sc[_at(S_STALL, j)] = stall_quantile(sc[_at(S_WLO, j)], sc[_at(S_WHI, j)], sc[_at(S_RATE, j)], Q)
    for j in range(m):
        out[O_STALL_P99, np.uint64(s + j)] = sc[_at(S_STALL, j)]


@nb.njit(cache=True, nogil=True, error_model="numpy", fastmath=True)
def analytic_kernel(
    pidx, folio_kb, n, limit, engine, threads, targets, mapcount, p, rate, sync, table, emax, out
):
    """All outputs of every point. Batch moments are computed once per distinct (B, p, mode) in
    the call (a small open-addressing cache); the rest is a few dozen flops per point."""
    cache = np.full((CACHE_SLOTS, CACHE_WIDTH), -1.0)
    cache[0, 0] = 0.0
    sc = np.empty(S_ROWS * BLOCK, dtype=np.float64)
    N = folio_kb.shape[0]
    for s in range(0, N, BLOCK):
        _analytic_block(
            pidx, folio_kb, n, limit, engine, threads, targets, mapcount, p, rate, sync, table, emax, out,
            cache, sc, s, min(s + BLOCK, N),
        )  # fmt: skip


def emax_table(table: np.ndarray) -> np.ndarray:
    """E[max of k Lomax acknowledgement tails] for k = 1..max CPUs, one row per profile."""
    from models.phases import CPUS

    kmax = int(table[:, CPUS].max())
    out = np.zeros((table.shape[0], kmax), dtype=np.float64)
    for i in range(table.shape[0]):
        for k in range(1, kmax + 1):
            out[i, k - 1] = expected_max_lomax(float(k - 1), table[i, ACK_ALPHA])
    return out


@functools.cache
def _emax_cached(key: bytes, shape: tuple[int, int]) -> np.ndarray:
    return emax_table(np.frombuffer(key, dtype=np.float64).reshape(shape))


def analytic_outputs(
    arrays: PointArrays, table: np.ndarray, out: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Expected outputs for validated point arrays (see ``models.evaluate``).

    ``out`` (shape ``(len(OUTPUTS), n)``, float64) may be passed to reuse a warm buffer.
    """
    if out is None:
        out = np.empty((N_OUT, len(arrays)), dtype=np.float64)
    analytic_kernel(
        arrays.profile_index, arrays.folio_kb, arrays.n_folios, arrays.batch_limit_pages, arrays.engine_code,
        arrays.copy_threads, arrays.target_cpus, arrays.mapcount, arrays.busy_prob, arrays.access_rate_hz,
        arrays.sync_mode, table, _emax_cached(table.tobytes(), table.shape), out,
    )  # fmt: skip
    return {name: out[i] for i, name in enumerate(OUTPUTS)}
