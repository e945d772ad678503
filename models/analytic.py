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
    flush_fixed_s,
    folios_per_batch,
    is_full_flush,
    remap_s,
    remote_handler_s,
    unmap_phase_s,
    window_line,
)

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

_jit = nb.njit(cache=True, nogil=True, inline="always", error_model="numpy", fastmath=True)


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
def _stall_excess(s: float, w_lo: float, w_hi: float, lam: float, h: float, tail: float):
    """P(S > s) - tail and its derivative, for W uniform on [w_lo, w_hi] (h = w_hi - w_lo)."""
    if s <= w_lo:
        ea = math.exp(-lam * (w_lo - s))
        ec = math.exp(-lam * (w_hi - s))
        return 1.0 - (ea - ec) / (lam * h) - tail, -(ea - ec) / h
    ec = math.exp(-lam * (w_hi - s))
    return ((w_hi - s) - (1.0 - ec) / lam) / h - tail, (ec - 1.0) / h


@_jit
def stall_quantile(w_lo: float, w_hi: float, rate_hz: float, q: float) -> float:
    """q-quantile of max(0, W - E), W uniform on [w_lo, w_hi], E ~ Exp(rate_hz).

    Solves P(S > s) = 1 - q by Newton's method from s = 0; P(S > s) is convex and decreasing in s,
    so the iterates rise monotonically to the root without overshooting.
    """
    tail = 1.0 - q
    if rate_hz <= 0.0 or w_hi <= 0.0:
        return 0.0
    lam = rate_hz
    h = w_hi - w_lo
    if h < 1e-9 * w_hi:
        s = w_hi + math.log(1.0 - tail) / lam  # 1 - exp(-λ(W - s)) = tail
        return max(s, 0.0)
    g, dg = _stall_excess(0.0, w_lo, w_hi, lam, h, tail)
    if g <= 0.0:
        return 0.0
    s = 0.0
    for _ in range(30):
        step = -g / dg
        s += step
        if s >= w_hi:
            return w_hi
        g, dg = _stall_excess(s, w_lo, w_hi, lam, h, tail)
        if abs(step) <= 1e-12 * w_hi or g <= 1e-12:
            break
    return s


@_jit
def _batch_expectations(
    B: float, p: float, n_batched: int, u: float, r: float, flush_s: float,
    call_s: float, per_folio_s: float, progressive: bool,
):  # fmt: skip
    """Expected (rounds, unmapped folios, Σ windows, copy calls, busy attempts, passes) of one batch."""
    rounds = 0.0
    unmapped = 0.0
    win_sum = 0.0
    busy = 0.0
    pk = 1.0  # p^k: probability a folio is still pending at pass k
    for _k in range(n_batched):
        qk = pk * (1.0 - p)
        if qk <= 0.0 and pk <= 0.0:
            break
        ec = B * qk
        ec2 = B * qk * (1.0 - qk) + ec * ec
        p_any = 1.0 - (1.0 - qk) ** B if qk < 1.0 else 1.0
        rounds += p_any
        unmapped += ec
        busy += B * pk * p
        slope = window_line(1.0, u, flush_s, call_s, per_folio_s, r, progressive)[1]
        # Σ_j W_j for c folios, with the line's c-dependence made explicit:
        # progressive: c·(c·u + F) + slope·c(c+1)/2; batch: c·(c·u + F + G + c·cf) + slope·c(c+1)/2
        if progressive:
            win_sum += ec2 * u + ec * flush_s + slope * 0.5 * (ec2 + ec)
        else:
            win_sum += ec2 * (u + per_folio_s) + ec * (flush_s + call_s) + slope * 0.5 * (ec2 + ec)
        pk *= p
    # Passes made over the batch: 1 + Σ_{k≥1} P(some folio needs more than k attempts)
    passes = 1.0
    pk = p
    for _k in range(1, TOTAL_PASSES):
        if pk <= 0.0:
            break
        passes += 1.0 - (1.0 - pk) ** B
        pk *= p
    return rounds, unmapped, win_sum, rounds, busy, passes


@_jit
def analytic_point(
    prof, emax_row, folio_kb, n, limit, engine, threads, targets, mapcount, p, rate, sync, out, i
):
    page_bytes = prof[PAGE_KB] * 1024.0
    fp = folio_kb / prof[PAGE_KB]
    folio_bytes = folio_kb * 1024.0
    b = folios_per_batch(limit, fp, n)
    n_batches = math.ceil(n / b)
    b_last = n - (n_batches - 1.0) * b
    u = unmap_phase_s(prof, fp, mapcount)
    r = remap_s(prof, mapcount)
    n_batched = ASYNC_BATCHED_PASSES if sync == 0 else SYNC_BATCHED_PASSES

    # Flush rounds of the batched passes and of the single-folio fallback.
    full = is_full_flush(prof, b, fp)
    tail_mean = prof[ACK_SCALE] * emax_row[int(targets) - 1] if targets > 1.0 else 0.0
    flush_s = flush_fixed_s(prof, full, fp, targets) + tail_mean
    full1 = is_full_flush(prof, 1.0, fp)
    flush1_s = flush_fixed_s(prof, full1, fp, targets) + tail_mean

    call_s, cf, cf_wait, call_wait, progressive, t_used = copy_engine_costs(
        prof, engine, threads, folio_bytes, b
    )
    call1_s, cf1, cf1_wait, call1_wait, _prog1, t1_used = copy_engine_costs(
        prof, engine, threads, folio_bytes, 1.0
    )

    rf, uf, wf, cf_calls, bf, pf = _batch_expectations(
        b, p, n_batched, u, r, flush_s, call_s, cf, progressive
    )
    n_full = n_batches - 1.0
    if b_last == b:
        rl, ul, wl, cl_calls, bl, pl = rf, uf, wf, cf_calls, bf, pf
    else:
        rl, ul, wl, cl_calls, bl, pl = _batch_expectations(
            b_last, p, n_batched, u, r, flush_s, call_s, cf, progressive
        )
    rounds_b = n_full * rf + rl
    unmapped_b = n_full * uf + ul
    win_b = n_full * wf + wl
    calls_b = n_full * cf_calls + cl_calls
    busy = n_full * bf + bl
    passes = (n_full * pf + pl) / n_batches

    # Synchronous one-by-one fallback: each folio pending after the batched passes, alone.
    succ_sync = 0.0
    if sync != 0 and p > 0.0:
        p3 = p**SYNC_BATCHED_PASSES
        succ_sync = n * p3 * (1.0 - p**SYNC_SINGLE_PASSES)
        busy += n * p3 * p * (1.0 - p**SYNC_SINGLE_PASSES) / (1.0 - p) if p < 1.0 else n * SYNC_SINGLE_PASSES
    failed = n * p**TOTAL_PASSES
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
    ipis = rounds * remote_targets
    remote_cpu = remote_targets * (
        rounds_b * remote_handler_s(prof, full) + succ_sync * remote_handler_s(prof, full1)
    )
    wait = unmapped_b * cf_wait + calls_b * call_wait + succ_sync * (cf1_wait + call1_wait)
    # Helper threads of a multi-threaded copy burn CPU for the copy's duration too.
    extra_threads = 0.0
    if engine == ENGINE_MT:
        extra_threads = (t_used - 1.0) * unmapped_b * cf + (t1_used - 1.0) * succ_sync * cf1

    migrated = unmapped_b + succ_sync
    out[O_TIME, i] = time
    out[O_PAGES_PER_S, i] = succeeded * fp / time
    out[O_BYTES_PER_S, i] = succeeded * fp * page_bytes / time
    out[O_FLUSH_ROUNDS, i] = rounds
    out[O_IPIS, i] = ipis
    out[O_CPU_TIME, i] = time - wait + extra_threads
    out[O_REMOTE_CPU, i] = remote_cpu
    out[O_WINDOW_MEAN, i] = (win_b + win_sync) / migrated if migrated > 0.0 else 0.0
    a, slope = window_line(b, u, flush_s, call_s, cf, r, progressive)
    out[O_WINDOW_P99, i] = line_quantile(a, slope, b, Q)
    w_first, w_last = a + slope, a + slope * b
    out[O_STALL_P99, i] = stall_quantile(min(w_first, w_last), max(w_first, w_last), rate, Q)
    out[O_FAILED, i] = failed
    out[O_PASSES, i] = passes


@nb.njit(cache=True, nogil=True, error_model="numpy", fastmath=True)
def analytic_kernel(
    pidx, folio_kb, n, limit, engine, threads, targets, mapcount, p, rate, sync, table, emax, out
):
    for i in range(folio_kb.shape[0]):
        pi = pidx[i]
        analytic_point(
            table[pi], emax[pi], folio_kb[i], n[i], limit[i], engine[i], threads[i], targets[i],
            mapcount[i], p[i], rate[i], sync[i], out, i,
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
