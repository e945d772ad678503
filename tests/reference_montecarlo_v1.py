"""Frozen reference copies of the model kernels, used only by tests.

A verbatim snapshot of ``models/phases.py``, ``models/analytic.py`` and ``models/montecarlo.py`` as
they were before the performance work (one module, imports merged), with one deliberate fix: the
stall quantile is solved by bisection, because the original Newton solver did not converge (kept
as ``stall_quantile_newton_from_zero``). The optimized kernels in
``models/`` must reproduce the analytic outputs of this file to 1e-9 relative, and their Monte Carlo
means must agree with these analytic expectations within 4 standard errors. Do not edit the
physics here: this file is the yardstick.
"""

# ruff: noqa
# mypy: ignore-errors
from __future__ import annotations

import functools
import math
import zlib

import numba as nb
import numpy as np

from models.params import OUTPUTS, PointArrays
from models.profiles import FIELD_INDEX as _F

# ---------------------------------------------------------------- phases


# Compile-time indices into a profile row.
CALL_SETUP = _F["call_setup_us"]
FOLIO_SETUP = _F["folio_setup_us"]
PAGE_SETUP = _F["page_setup_ns"]
UNMAP = _F["unmap_per_mapping_us"]
REMAP = _F["remap_per_mapping_us"]
UNMAP_PTE = _F["unmap_per_pte_ns"]
REMAP_PTE = _F["remap_per_pte_ns"]
BUSY_ATTEMPT = _F["busy_attempt_us"]
LOCAL_PAGE_FLUSH = _F["local_page_flush_ns"]
LOCAL_FULL_FLUSH = _F["local_full_flush_us"]
FLUSH_CEILING = _F["single_flush_ceiling_pages"]
IPI_BASE = _F["ipi_send_base_us"]
IPI_PER_TARGET = _F["ipi_per_target_ns"]
HANDLER_PAGE = _F["ack_handler_page_us"]
HANDLER_FULL = _F["ack_handler_full_us"]
ACK_SCALE = _F["ack_tail_scale_us"]
ACK_ALPHA = _F["ack_tail_alpha"]
SOCKET_HOP = _F["socket_hop_us"]
SOCKETS = _F["sockets"]
PAGE_KB = _F["page_kb"]
CPU_BW = _F["cpu_copy_gbps"]
CPU_FIXED = _F["cpu_copy_fixed_ns"]
MT_SIGMA = _F["mt_sigma"]
MT_KAPPA = _F["mt_kappa"]
MT_DISPATCH = _F["mt_dispatch_us"]
MT_MIN_CHUNK = _F["mt_min_chunk_kb"]
MEM_CEILING = _F["mem_ceiling_gbps"]
DMA_BW = _F["dma_channel_gbps"]
DMA_DESC = _F["dma_desc_setup_us"]
DMA_SUBMIT = _F["dma_submit_us"]
DMA_COMPLETION = _F["dma_completion_us"]
DMA_CV = _F["dma_jitter_cv"]
DSA_OFFSET = _F["dsa_channel_gbps"] - _F["dma_channel_gbps"]
IS_BROADCAST = _F["flush_arm64"]
CPUS = _F["cpus"]

ENGINE_CPU, ENGINE_MT, ENGINE_DMA, ENGINE_DSA = 0, 1, 2, 3
ASYNC_BATCHED_PASSES = 10  # NR_MAX_MIGRATE_PAGES_RETRY, all batched, in MIGRATE_ASYNC mode
SYNC_BATCHED_PASSES = 3  # NR_MAX_MIGRATE_ASYNC_RETRY before the one-by-one fallback
SYNC_SINGLE_PASSES = 7  # NR_MAX_MIGRATE_SYNC_RETRY
TOTAL_PASSES = 10

_jit = nb.njit(cache=False, nogil=True, inline="always", error_model="numpy", fastmath=True)


@_jit
def folios_per_batch(batch_limit_pages: float, pages_per_folio: float, n_folios: float) -> float:
    """Folios in a full batch: the kernel adds folios until the page count reaches the cap."""
    if batch_limit_pages <= 1.0:
        return 1.0
    b = math.ceil(batch_limit_pages / pages_per_folio)
    return min(max(b, 1.0), n_folios)


@_jit
def entries_per_mapping(prof, pages_per_folio: float) -> float:
    """Page-table entries mapping one folio once: one PMD for a PMD-sized THP, else one PTE per page."""
    pmd_pages = prof[PAGE_KB] * 1024.0 / 8.0  # entries per page-table page
    return 1.0 if pages_per_folio >= pmd_pages else pages_per_folio


@_jit
def unmap_phase_s(prof, pages_per_folio: float, mapcount: float) -> float:
    """Per-folio time of the unmap loop: isolate/allocate/lock plus clearing every mapping's entries."""
    entries = entries_per_mapping(prof, pages_per_folio)
    return (
        prof[FOLIO_SETUP]
        + prof[PAGE_SETUP] * pages_per_folio
        + (prof[UNMAP] + prof[UNMAP_PTE] * entries) * mapcount
    )


@_jit
def remap_s(prof, pages_per_folio: float, mapcount: float) -> float:
    """Per-folio time to restore every mapping's entries (remove_migration_ptes) and unlock."""
    return (prof[REMAP] + prof[REMAP_PTE] * entries_per_mapping(prof, pages_per_folio)) * mapcount


@_jit
def spanned_sockets(prof, target_cpus: float) -> float:
    """Sockets the mm's CPUs span, threads packed socket by socket (an assumption)."""
    per_socket = prof[CPUS] / prof[SOCKETS]
    return min(prof[SOCKETS], math.ceil(target_cpus / per_socket))


@_jit
def is_full_flush(prof, folios_in_batch: float, pages_per_folio: float) -> bool:
    """Batched flush (two or more folios) is a full flush; one folio flushes its pages up to the ceiling."""
    return folios_in_batch >= 2.0 or pages_per_folio > prof[FLUSH_CEILING]


@_jit
def flush_fixed_s(prof, full: bool, pages_per_folio: float, target_cpus: float) -> float:
    """Deterministic part of one flush round on the initiating CPU (everything but the ack tail)."""
    t = prof[LOCAL_FULL_FLUSH] if full else prof[LOCAL_PAGE_FLUSH] * pages_per_folio
    if target_cpus > 1.0:
        handler = prof[HANDLER_FULL] if full else prof[HANDLER_PAGE]
        t += (
            prof[IPI_BASE]
            + prof[IPI_PER_TARGET] * (target_cpus - 1.0)
            + handler
            + prof[SOCKET_HOP] * (spanned_sockets(prof, target_cpus) - 1.0)
        )
    return t


@_jit
def remote_handler_s(prof, full: bool) -> float:
    """CPU time one remote CPU spends handling one flush IPI (0 with broadcast TLBI)."""
    if prof[IS_BROADCAST] > 0.5:
        return 0.0
    return prof[HANDLER_FULL] if full else prof[HANDLER_PAGE]


@_jit
def expected_max_lomax(k: float, alpha: float) -> float:
    """E[max of k i.i.d. Lomax(alpha, scale 1)] = Γ(k+1)Γ(1-1/α)/Γ(k+1-1/α) - 1 (0 for k < 1)."""
    if k < 1.0:
        return 0.0
    a = 1.0 / alpha
    return math.exp(math.lgamma(k + 1.0) + math.lgamma(1.0 - a) - math.lgamma(k + 1.0 - a)) - 1.0


@_jit
def draw_max_lomax(k: float, alpha: float, u: float) -> float:
    """One draw of the max of k Lomax(alpha) from one uniform u in (0, 1): F_max = F^k."""
    if k < 1.0:
        return 0.0
    v = u ** (1.0 / k)
    return (1.0 - v) ** (-1.0 / alpha) - 1.0


@_jit
def copy_engine_costs(prof, engine: int, threads: float, folio_bytes: float, unit_folios: float):
    """Cost structure of one copy call of ``unit_folios`` folios (nominal size).

    Returns ``(call_s, per_folio_s, per_folio_wait_s, call_wait_s, progressive, threads_used)``:
    the fixed cost per copy call, the cost per folio, the parts of both during which the initiating
    CPU only waits (DMA transfer and completion), whether folios are remapped one by one as they
    are copied (``cpu``) or after the whole batch, and the threads really used.
    """
    ceiling = prof[MEM_CEILING]
    one = min(prof[CPU_BW], ceiling)
    if engine == ENGINE_CPU:
        return 0.0, prof[CPU_FIXED] + folio_bytes / one, 0.0, 0.0, True, 1.0
    if engine == ENGINE_MT:
        chunks = max(1.0, math.floor(unit_folios * folio_bytes / prof[MT_MIN_CHUNK]))
        t = min(threads, prof[CPUS], chunks)
        if t <= 1.0:
            return 0.0, prof[CPU_FIXED] + folio_bytes / one, 0.0, 0.0, True, 1.0
        scale = t / (1.0 + prof[MT_SIGMA] * (t - 1.0) + prof[MT_KAPPA] * t * (t - 1.0))
        bw = min(prof[CPU_BW] * scale, ceiling)
        return prof[MT_DISPATCH], prof[CPU_FIXED] + folio_bytes / bw, 0.0, 0.0, False, t
    off = 0 if engine == ENGINE_DMA else DSA_OFFSET
    bw = min(threads * prof[DMA_BW + off], ceiling)
    transfer = folio_bytes / bw
    call = prof[DMA_SUBMIT + off] + prof[DMA_COMPLETION + off]
    return call, prof[DMA_DESC + off] + transfer, transfer, prof[DMA_COMPLETION + off], False, threads


@_jit
def copy_jitter_cv(prof, engine: int) -> float:
    if engine == ENGINE_DMA:
        return prof[DMA_CV]
    if engine == ENGINE_DSA:
        return prof[DMA_CV + DSA_OFFSET]
    return 0.0


@_jit
def window_line(
    c: float, u: float, flush_s: float, call_s: float, per_folio_s: float, r: float, progressive: bool
):
    """Unmapped windows of the ``c`` folios of one pass: ``W_j = a + slope * (j + 1)``, j = 0..c-1.

    Folio j's PTEs are cleared at the end of its unmap step, (j+1)·u; it is remapped at
    c·u + flush + (j+1)·(copy + remap) when copied one by one, or after the whole copy call and
    j+1 remaps when the batch is copied as a unit.
    """
    if progressive:
        return c * u + flush_s, per_folio_s + r - u
    return c * u + flush_s + call_s + c * per_folio_s, r - u


# ---------------------------------------------------------------- analytic


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

_jit = nb.njit(cache=False, nogil=True, inline="always", error_model="numpy", fastmath=True)


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
def stall_quantile_newton_from_zero(w_lo: float, w_hi: float, rate_hz: float, q: float) -> float:
    """The original solver, kept for the record: NOT used by the reference kernel.

    Newton's method from s = 0 assumed P(S > s) convex, but it is concave for s < w_lo
    (1 - e^{λs}·const), so the iterates overshoot: they return w_hi (where P(S > s) = 0) or stop
    unconverged; about a quarter of random points were off by up to ~10 %.
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
def stall_quantile(w_lo: float, w_hi: float, rate_hz: float, q: float) -> float:
    """q-quantile of max(0, W - E), W uniform on [w_lo, w_hi], E ~ Exp(rate_hz).

    The one deliberate change to the frozen kernels: P(S > s) = 1 - q is solved by bisection of the
    same tail function on [0, w_hi] to the last bit (slow and sure), replacing the Newton iteration
    above, which did not converge (see ``stall_quantile_newton_from_zero``).
    """
    tail = 1.0 - q
    if rate_hz <= 0.0 or w_hi <= 0.0:
        return 0.0
    lam = rate_hz
    h = w_hi - w_lo
    if h < 1e-9 * w_hi:
        s = w_hi + math.log(1.0 - tail) / lam  # 1 - exp(-λ(W - s)) = tail
        return max(s, 0.0)
    if _stall_excess(0.0, w_lo, w_hi, lam, h, tail)[0] <= 0.0:
        return 0.0
    lo, hi = 0.0, w_hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid <= lo or mid >= hi:
            break
        if _stall_excess(mid, w_lo, w_hi, lam, h, tail)[0] > 0.0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


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
    r = remap_s(prof, fp, mapcount)
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


@nb.njit(cache=False, nogil=True, error_model="numpy", fastmath=True)
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


# ---------------------------------------------------------------- montecarlo


#: Monte Carlo columns beyond OUTPUTS.
MC_EXTRA: tuple[str, ...] = (
    "time_s_se",
    "pages_per_s_se",
    "flush_rounds_se",
    "ipis_se",
    "cpu_time_s_se",
    "window_mean_s_se",
    "window_p50_s",
    "window_p99_s_se",
    "stall_p50_s",
    "stall_p99_s_se",
    "failed_folios_se",
    "passes_se",
    "replicas",
)
_COLUMNS = OUTPUTS + MC_EXTRA
_C = {name: i for i, name in enumerate(_COLUMNS)}
N_COLS = len(_COLUMNS)
C_FLUSH_ROUNDS_SE = _C["flush_rounds_se"]
C_IPIS_SE = _C["ipis_se"]
C_CPU_TIME_S_SE = _C["cpu_time_s_se"]
C_WINDOW_P99_S_SE = _C["window_p99_s_se"]
C_STALL_P99_S_SE = _C["stall_p99_s_se"]
C_FAILED_FOLIOS_SE = _C["failed_folios_se"]
C_PASSES_SE = _C["passes_se"]
C_TIME_S_SE = _C["time_s_se"]
C_PAGES_PER_S_SE = _C["pages_per_s_se"]
C_WINDOW_MEAN_S_SE = _C["window_mean_s_se"]
C_WINDOW_P50_S = _C["window_p50_s"]
C_STALL_P50_S = _C["stall_p50_s"]
C_REPLICAS = _C["replicas"]

_jit = nb.njit(cache=False, nogil=True, error_model="numpy")

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_INV53 = 1.0 / 9007199254740992.0
_ONE = np.uint64(1)


@_jit
def _mix(z):
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@_jit
def _uniform(state):
    """SplitMix64 step on ``state[0]``; a uniform in (0, 1). ``state[1]`` counts the draws."""
    state[0] += _GOLDEN
    state[1] += _ONE
    return (float(_mix(state[0]) >> _S11) + 0.5) * _INV53


@_jit
def _select(a, lo: int, hi: int, k: int) -> None:
    """In-place quickselect: a[k] becomes the k-th smallest of a[lo:hi], smaller ones left of it."""
    hi -= 1
    while lo < hi:
        pivot = a[(lo + hi) >> 1]
        i, j = lo, hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            return


@_jit
def _p50_p99(a, m: int):
    """(p50, p99) of a[:m] by the inverted-CDF definition (rank ceil(q·m) - 1); reorders a."""
    if m == 0:
        return 0.0, 0.0
    k99 = max(math.ceil(0.99 * m) - 1, 0)
    k50 = max(math.ceil(0.50 * m) - 1, 0)
    _select(a, 0, m, k99)
    p99 = a[k99]
    if k50 < k99:
        _select(a, 0, k99, k50)
    return a[k50], p99


@_jit
def _copy_call_s(state, call_s, cf, cf_wait, call_wait, c, cv):
    """(duration, waiting part) of one copy call of c folios, the waiting part jittered (mean 1)."""
    wait = call_wait + c * cf_wait
    if cv > 0.0 and wait > 0.0:
        # Shifted exponential factor: mean 1, standard deviation cv, never negative (cv <= 1).
        j = (1.0 - cv) - cv * math.log(_uniform(state))
        wait_j = wait * j
    else:
        wait_j = wait
    return call_s + c * cf - wait + wait_j, wait_j


@_jit
def _flush_s(state, fixed, scale, alpha, remote):
    if remote < 1.0:
        return fixed
    return fixed + scale * draw_max_lomax(remote, alpha, _uniform(state))


@_jit
def mc_point(
    prof,
    seed,
    folio_kb,
    n,
    limit,
    engine,
    threads,
    targets,
    mapcount,
    p,
    rate,
    sync,
    replicas,
    wbuf,
    sbuf,
    out,
    col,
):
    """Simulate ``replicas`` calls of one point; write means and errors to ``out[:, col]``."""
    state = np.zeros(2, dtype=np.uint64)
    state[0] = seed
    page_kb = prof[PAGE_KB]
    fp = folio_kb / page_kb
    folio_bytes = folio_kb * 1024.0
    b = folios_per_batch(limit, fp, n)
    n_batches = int(math.ceil(n / b))
    b_last = n - (n_batches - 1) * b
    u = unmap_phase_s(prof, fp, mapcount)
    r = remap_s(prof, fp, mapcount)
    n_batched = ASYNC_BATCHED_PASSES if sync == 0 else SYNC_BATCHED_PASSES
    full = is_full_flush(prof, b, fp)
    full1 = is_full_flush(prof, 1.0, fp)
    remote = targets - 1.0
    flush_fixed = flush_fixed_s(prof, full, fp, targets)
    flush1_fixed = flush_fixed_s(prof, full1, fp, targets)
    scale = prof[ACK_SCALE]
    alpha = prof[ACK_ALPHA]
    call_s, cf, cf_wait, call_wait, progressive, t_used = copy_engine_costs(
        prof, engine, threads, folio_bytes, b
    )
    call1, cf1, cf1_wait, call1_wait, _prog1, t1_used = copy_engine_costs(
        prof, engine, threads, folio_bytes, 1.0
    )
    cv = copy_jitter_cv(prof, engine)
    remote_ipis = remote if prof[IS_BROADCAST] < 0.5 else 0.0
    h_full = remote_handler_s(prof, full)
    h1 = remote_handler_s(prof, full1)
    mt = engine == ENGINE_MT

    # Sums over replicas (x) and of squares (x2) for the standard errors.
    s_time = s_time2 = s_pages = s_pages2 = s_tp = 0.0
    s_rounds = s_rounds2 = s_ipis = s_ipis2 = s_cpu = s_cpu2 = s_remote = 0.0
    s_win = s_win2 = s_m = s_m2 = s_wm = 0.0
    s_w50 = s_w99 = s_w99sq = s_s50 = s_s99 = s_s99sq = 0.0
    s_failed = s_failed2 = s_passes = s_passes2 = 0.0
    for _rep in range(replicas):
        time = prof[CALL_SETUP]
        rounds_b = 0.0
        rounds_1 = 0.0
        wait = 0.0
        extra = 0.0
        busy = 0.0
        failed = 0.0
        passes_sum = 0.0
        win = 0.0
        m = 0
        for batch in range(n_batches):
            B = b if batch < n_batches - 1 else b_last
            pending = int(B)
            passes = 0
            for _k in range(n_batched):
                if pending == 0:
                    break
                passes += 1
                c = pending
                if p > 0.0:
                    for _f in range(pending):
                        if _uniform(state) < p:
                            c -= 1
                    busy += pending - c
                pending -= c
                if c == 0:
                    continue
                fc = float(c)
                flush = _flush_s(state, flush_fixed, scale, alpha, remote)
                rounds_b += 1.0
                copy, w = _copy_call_s(state, call_s, cf, cf_wait, call_wait, fc, cv)
                wait += w
                if mt:
                    extra += (t_used - 1.0) * fc * cf
                time += fc * (u + r) + flush + copy
                if progressive:
                    a, slope = window_line(fc, u, flush, 0.0, cf, r, True)
                else:
                    a = fc * u + flush + copy
                    slope = r - u
                for j in range(c):
                    wj = a + slope * (j + 1.0)
                    win += wj
                    wbuf[m] = wj
                    if rate > 0.0:
                        e = -math.log(_uniform(state)) / rate
                        sbuf[m] = wj - e if wj > e else 0.0
                    else:
                        sbuf[m] = 0.0
                    m += 1
            if sync != 0 and pending > 0:
                # One-by-one synchronous fallback: each folio alone, flushed immediately.
                most = 0
                for _f in range(pending):
                    done = False
                    for attempt in range(SYNC_SINGLE_PASSES):
                        if p > 0.0 and _uniform(state) < p:
                            busy += 1.0
                            continue
                        flush = _flush_s(state, flush1_fixed, scale, alpha, remote)
                        rounds_1 += 1.0
                        copy, w = _copy_call_s(state, call1, cf1, cf1_wait, call1_wait, 1.0, cv)
                        wait += w
                        if mt:
                            extra += (t1_used - 1.0) * cf1
                        time += u + flush + copy + r
                        wj = flush + copy + r
                        win += wj
                        wbuf[m] = wj
                        if rate > 0.0:
                            e = -math.log(_uniform(state)) / rate
                            sbuf[m] = wj - e if wj > e else 0.0
                        else:
                            sbuf[m] = 0.0
                        m += 1
                        most = max(most, attempt + 1)
                        done = True
                        break
                    if not done:
                        failed += 1.0
                        most = SYNC_SINGLE_PASSES
                passes += most
            elif pending > 0:
                failed += pending
            passes_sum += passes
        time += busy * prof[BUSY_ATTEMPT]
        pages = (n - failed) * fp
        rounds = rounds_b + rounds_1
        ipis = rounds * remote_ipis
        cpu = time - wait + extra
        remote_cpu = remote_ipis * (rounds_b * h_full + rounds_1 * h1)
        w50, w99 = _p50_p99(wbuf, m)
        st50, st99 = _p50_p99(sbuf, m)
        passes_mean = passes_sum / n_batches
        fm = float(m)
        s_time += time
        s_time2 += time * time
        s_pages += pages
        s_pages2 += pages * pages
        s_tp += time * pages
        s_rounds += rounds
        s_rounds2 += rounds * rounds
        s_ipis += ipis
        s_ipis2 += ipis * ipis
        s_cpu += cpu
        s_cpu2 += cpu * cpu
        s_remote += remote_cpu
        s_win += win
        s_win2 += win * win
        s_m += fm
        s_m2 += fm * fm
        s_wm += win * fm
        s_w50 += w50
        s_w99 += w99
        s_w99sq += w99 * w99
        s_s50 += st50
        s_s99 += st99
        s_s99sq += st99 * st99
        s_failed += failed
        s_failed2 += failed * failed
        s_passes += passes_mean
        s_passes2 += passes_mean * passes_mean

    R = float(replicas)

    def mean_se(s, s2):
        mu = s / R
        var = (s2 / R - mu * mu) * R / (R - 1.0) if R > 1.0 else 0.0
        return mu, math.sqrt(max(var, 0.0) / R)

    def ratio_se(sx, sx2, sy, sy2, sxy):
        # Ratio estimator Σx/Σy and its delta-method standard error.
        if sy <= 0.0:
            return 0.0, 0.0
        ratio = sx / sy
        if R <= 1.0:
            return ratio, 0.0
        # Σ (x - ratio·y)² = Σx² - 2·ratio·Σxy + ratio²·Σy²
        ss = sx2 - 2.0 * ratio * sxy + ratio * ratio * sy2
        ybar = sy / R
        return ratio, math.sqrt(max(ss, 0.0) / (R * (R - 1.0))) / ybar

    t_mu, t_se = mean_se(s_time, s_time2)
    pps, pps_se = ratio_se(s_pages, s_pages2, s_time, s_time2, s_tp)
    out[0, col] = t_mu
    out[1, col] = pps
    out[2, col] = pps * page_kb * 1024.0
    out[3, col], out[C_FLUSH_ROUNDS_SE, col] = mean_se(s_rounds, s_rounds2)
    out[4, col], out[C_IPIS_SE, col] = mean_se(s_ipis, s_ipis2)
    out[5, col], out[C_CPU_TIME_S_SE, col] = mean_se(s_cpu, s_cpu2)
    out[6, col] = s_remote / R
    wm, wm_se = ratio_se(s_win, s_win2, s_m, s_m2, s_wm)
    out[7, col] = wm
    out[8, col], out[C_WINDOW_P99_S_SE, col] = mean_se(s_w99, s_w99sq)
    out[9, col], out[C_STALL_P99_S_SE, col] = mean_se(s_s99, s_s99sq)
    out[10, col], out[C_FAILED_FOLIOS_SE, col] = mean_se(s_failed, s_failed2)
    out[11, col], out[C_PASSES_SE, col] = mean_se(s_passes, s_passes2)
    out[C_TIME_S_SE, col] = t_se
    out[C_PAGES_PER_S_SE, col] = pps_se
    out[C_WINDOW_MEAN_S_SE, col] = wm_se
    out[C_WINDOW_P50_S, col] = s_w50 / R
    out[C_STALL_P50_S, col] = s_s50 / R
    out[C_REPLICAS, col] = R
    return state[1]


@nb.njit(cache=False, nogil=True, error_model="numpy")
def mc_kernel(
    pidx, seeds, folio_kb, n, limit, engine, threads, targets, mapcount, p, rate, sync, table, replicas, out
):
    nmax = 1
    for i in range(n.shape[0]):
        nmax = max(nmax, int(n[i]))
    wbuf = np.empty(nmax, dtype=np.float64)
    sbuf = np.empty(nmax, dtype=np.float64)
    draws = 0
    for i in range(folio_kb.shape[0]):
        draws += mc_point(
            table[pidx[i]], seeds[i], folio_kb[i], n[i], limit[i], engine[i], threads[i], targets[i],
            mapcount[i], p[i], rate[i], sync[i], replicas, wbuf, sbuf, out, i,
        )  # fmt: skip
    return draws


def _splitmix_np(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> _S30)) * _M1
        z = (z ^ (z >> _S27)) * _M2
        return z ^ (z >> _S31)


def point_seeds(arrays: PointArrays, profile_names: tuple[str, ...], seed: int) -> np.ndarray:
    """Per-point 64-bit seeds from the sweep seed and the point's parameter values only."""
    name_hash = np.array([zlib.crc32(nm.encode()) for nm in profile_names], dtype=np.uint64)
    h = _splitmix_np(np.full(len(arrays), np.uint64(seed & 0xFFFFFFFFFFFFFFFF), dtype=np.uint64))
    cols = (
        name_hash[arrays.profile_index],
        arrays.folio_kb,
        arrays.n_folios,
        arrays.batch_limit_pages,
        arrays.engine_code.astype(np.float64),
        arrays.copy_threads,
        arrays.target_cpus,
        arrays.mapcount,
        arrays.busy_prob,
        arrays.access_rate_hz,
        arrays.sync_mode.astype(np.float64),
    )
    for col in cols:
        bits = col if col.dtype == np.uint64 else np.ascontiguousarray(col, dtype=np.float64).view(np.uint64)
        with np.errstate(over="ignore"):
            h = _splitmix_np(h ^ bits)
    return h


def montecarlo_outputs(
    arrays: PointArrays, table: np.ndarray, *, seed: int = 0, replicas: int = 64
) -> dict[str, np.ndarray]:
    """Monte Carlo means, quantiles and standard errors for validated point arrays."""
    from models.profiles import profile_names

    if replicas < 2:
        from models.errors import UserError

        raise UserError(f"replicas: must be >= 2 to estimate errors (got {replicas})")
    out = np.zeros((N_COLS, len(arrays)), dtype=np.float64)
    seeds = point_seeds(arrays, profile_names(), seed)
    mc_kernel(
        arrays.profile_index, seeds, arrays.folio_kb, arrays.n_folios, arrays.batch_limit_pages,
        arrays.engine_code, arrays.copy_threads, arrays.target_cpus, arrays.mapcount, arrays.busy_prob,
        arrays.access_rate_hz, arrays.sync_mode, table, replicas, out,
    )  # fmt: skip
    return {name: out[i] for i, name in enumerate(_COLUMNS)}
