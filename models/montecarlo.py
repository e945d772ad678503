"""Monte Carlo model: one ``migrate_pages()`` call simulated folio by folio, random parts drawn.

Implements the mechanism of ``models/MECHANISM.md`` (shared with ``models.analytic``), per replica:

- the folio list in order (a ``folio_mix`` as runs of sizes), cut into batches as
  mm/migrate.c ``migrate_pages()`` cuts it (until the pages reach ``batch_limit_pages``; from 6.3);
  before 6.3 every folio alone (``unmap_and_move()``);
- per batch, every unmap pass over the pending folios in list order (``migrate_pages_batch()``):
  on pass 1 the destination allocation (``alloc_fail_prob``: -ENOMEM splits a large folio, whose
  pieces are retried once, async, after the batch, and ends the call for an order-0 one), then
  busy (``busy_prob``, -EAGAIN, retried) or under writeback (``writeback_prob``, -EBUSY), else the
  unmap step with what the release and architecture flush at unmap (one round per PTE per mapping
  when the flush is not deferred, one per PMD-mapped THP always); then **one** batch flush after
  all the passes if a deferred PTE is pending; then the move phase (copy, remaps) in unmap order.
  A folio's unmapped window runs from the end of its unmap step to the end of its remap, so a
  folio unmapped on pass 1 stays unmapped through the later passes;
- sync mode: 3 async passes, then each failed folio alone (``migrate_pages_sync()``), blocking
  on writeback (Exp(``writeback_wait_s``)), flushed immediately;
- each x86 IPI round's wait for the slowest of ``target_cpus - 1`` acknowledgements (Lomax tail per
  CPU; the max drawn exactly by inverting F^k with one uniform); broadcast rounds (arm64, INVLPGB
  from 6.15) are deterministic; DMA/DSA completion jitter per copy call;
- the application's first touch of each unmapped folio (Poisson, ``access_rate_hz``), giving that
  folio's stall ``max(0, W - E)``.

Fast paths give the same distributions with fewer instructions: batches of one folio (and every
pre-6.3 call) without writeback or allocation failure are simulated as vectorized passes over the
folios (a folio's busy attempts are then geometric over all its attempts); one-size batches with
only -EAGAIN take their busy draws in one vectorized loop and their move phase in closed form.

Per point it reports the mean over replicas of the same outputs as the analytic model, with Monte
Carlo standard errors (``*_se``); ratios (pages/s, mean window) are ratio estimators Σx/Σy with
delta-method errors. Quantiles (p50, p99 of the unmapped window and of the stall) are taken over
the folios of each call, exactly (sample-bracketed selection, branch-free quickselect; order
statistics of arithmetic sequences for long batches), and then averaged over replicas.

Reproducibility: each point's random stream is seeded from a hash of the sweep seed and the
point's parameter values (profile by name), and nothing but scratch buffers is shared between
points, so a point's result is bit-identical whatever its position, its neighbours or the chunking
(``tests/test_montecarlo_mechanism.py``).

References
----------
mm/migrate.c ``migrate_pages()``, ``migrate_pages_batch()``, ``migrate_pages_sync()``,
``migrate_folio_unmap()`` (v6.3+), ``unmap_and_move()`` (before); mm/rmap.c
``try_to_migrate_one()``, ``should_defer_flush()``, ``set_tlb_ubc_flush_pending()`` (v6.4:
inaccessible PTEs); mm/huge_memory.c ``set_pmd_migration_entry()``; arch/x86/mm/tlb.c
``arch_tlbbatch_flush()``, ``broadcast_tlb_flush()`` (v6.15); arch/arm64/include/asm/tlbflush.h
(batched from v6.6).
"""

from __future__ import annotations

import math
import zlib

import numba as nb
import numpy as np

from models.params import MAX_MIX, OUTPUTS, PointArrays
from models.phases import (
    ACK_ALPHA,
    ACK_SCALE,
    BCAST_ISSUE,
    BUSY_ATTEMPT,
    CALL_SETUP,
    ENGINE_MT,
    HANDLER_FULL,
    HANDLER_PAGE,
    K_BATCHED,
    K_SKIP_INACCESSIBLE,
    NR_MAX_MIGRATE_ASYNC_RETRY,
    NR_MAX_MIGRATE_PAGES_RETRY,
    NR_MAX_MIGRATE_SYNC_RETRY,
    PAGE_KB,
    batch_round_fixed_s,
    copy_engine_costs,
    copy_jitter_cv,
    defers_flush,
    draw_max_lomax,
    entry_round_fixed_s,
    fast_log,
    folios_per_batch,
    pmd_mapped,
    remap_s,
    unmap_phase_s,
    uses_broadcast,
)

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
C_TIME_S = _C["time_s"]
C_PAGES_PER_S = _C["pages_per_s"]
C_BYTES_PER_S = _C["bytes_per_s"]
C_FLUSH_ROUNDS = _C["flush_rounds"]
C_IPIS = _C["ipis"]
C_CPU_TIME_S = _C["cpu_time_s"]
C_REMOTE_CPU_TIME_S = _C["remote_cpu_time_s"]
C_WINDOW_MEAN_S = _C["window_mean_s"]
C_WINDOW_P99_S = _C["window_p99_s"]
C_STALL_P99_S = _C["stall_p99_s"]
C_FAILED_FOLIOS = _C["failed_folios"]
C_PASSES = _C["passes"]
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

_jit = nb.njit(cache=True, nogil=True, error_model="numpy", _nrt=False)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_INV53 = 1.0 / 9007199254740992.0
_TAIL_SALT = np.uint64(0x5851F42D4C957F2D)


@_jit
def _mix(z):
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@_jit
def _u01(x) -> float:
    """The uniform in (0, 1) of SplitMix64 state x (already advanced by one step)."""
    return (float(_mix(x) >> _S11) + 0.5) * _INV53


@_jit
def _uniform(s0, j: int) -> float:
    """Uniform number j (0-based) of the counter-based stream at state ``s0``: a function of (s0, j)
    alone, so loops drawing them carry no dependence from one draw to the next and vectorize."""
    return _u01(s0 + np.uint64(j + 1) * _GOLDEN)


@_jit
def _stall(w: float, u: float, inv_rate: float) -> float:
    """Stall of a folio unmapped for ``w`` seconds whose first touch comes E = -log(u)/rate after
    its unmap (Poisson accesses): max(0, w - E)."""
    st = w + fast_log(u) * inv_rate
    return st if st > 0.0 else 0.0


_vec = nb.njit(cache=True, nogil=True, error_model="numpy", fastmath=True, _nrt=False)


@_vec
def _count_positive(a, m: int) -> int:
    """Number of a[:m] above zero."""
    k = 0
    for i in range(m):
        k += 1 if a[i] > 0.0 else 0
    return k


@_jit
def quickselect(a, lo: int, hi: int, k: int) -> None:
    """In-place quickselect: a[k] becomes the k-th smallest of a[lo:hi], none larger left of it and
    none smaller right of it.

    Branch-free Lomuto partitions (an unconditional swap and a conditional increment per value,
    median-of-three pivot): the values here are random, so a comparison branch would be mispredicted
    about half the time; this is 2-3x faster on them. When the pivot is the least value of the range,
    a second pass splits off the values equal to it, so runs of ties (zero stalls) always shrink the
    range. Short ranges finish with an insertion sort.
    """
    hi -= 1
    while hi - lo > 12:
        x, y, z = a[lo], a[(lo + hi) >> 1], a[hi]
        pivot = max(min(x, y), min(max(x, y), z))
        first = lo
        for j in range(lo, hi + 1):  # a[lo:first] < pivot <= a[first:j+1]
            v = a[j]
            a[j] = a[first]
            a[first] = v
            first += v < pivot
        if k < first:
            hi = first - 1
            continue
        if first == lo:  # nothing below the pivot: a[lo:first] == pivot < a[first:]
            for j in range(lo, hi + 1):
                v = a[j]
                a[j] = a[first]
                a[first] = v
                first += v <= pivot
            if k < first:
                return
        lo = first
    for i in range(lo + 1, hi + 1):
        v = a[i]
        j = i - 1
        while j >= lo and a[j] > v:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = v


SAMPLE = 256  # sample size of the bracketing selection
SMALL = 4 * SAMPLE  # below this many values, plain quickselect


@_vec
def _count_below2(a, m: int, lo1: float, lo2: float):
    """(# of a[:m] < lo1, # <= lo1, # < lo2, # <= lo2): a pure reduction, so it vectorizes."""
    lt1 = le1 = lt2 = le2 = 0
    for i in range(m):
        x = a[i]
        lt1 += 1 if x < lo1 else 0
        le1 += 1 if x <= lo1 else 0
        lt2 += 1 if x < lo2 else 0
        le2 += 1 if x <= lo2 else 0
    return lt1, le1, lt2, le2


@_vec
def _copy_between2(a, m: int, lo1: float, hi1: float, lo2: float, hi2: float, tmp1, tmp2):
    """The values of a[:m] in (lo1, hi1] copied to tmp1 and those in (lo2, hi2] to tmp2, branch-free."""
    n1 = n2 = 0
    for i in range(m):
        x = a[i]
        tmp1[n1] = x
        n1 += (x > lo1) & (x <= hi1)
        tmp2[n2] = x
        n2 += (x > lo2) & (x <= hi2)
    return n1, n2


@_jit
def _gather_between2(a, m: int, lo1: float, hi1: float, lo2: float, hi2: float, tmp1, tmp2):
    """Two brackets: for each, (# of a[:m] < lo, # <= lo, # in (lo, hi]), the values in (lo, hi]
    copied to tmp1/tmp2. Ties at lo (e.g. many zero stalls) are counted, not copied. The counts
    are one vectorized pass; the copies a second, lighter one."""
    lt1, le1, lt2, le2 = _count_below2(a, m, lo1, lo2)
    n1, n2 = _copy_between2(a, m, lo1, hi1, lo2, hi2, tmp1, tmp2)
    return lt1, le1, n1, lt2, le2, n2


@_jit
def _bracket(samp, m: int, k: int, start: int):
    """Values of the sample ranks that bracket rank k of m with overwhelming probability, and the
    next ``start``.

    ``samp[start:]`` must hold no value below any of ``samp[:start]`` (0 for a fresh sample); the
    selection of a rank at or after ``start`` then looks at that part only (brackets of ascending
    ranks reuse the partitioning of the earlier ones)."""
    q = (k + 0.5) / m
    pos = q * SAMPLE
    d = 3.0 * math.sqrt(SAMPLE * q * (1.0 - q)) + 2.0
    r_lo = int(pos - d)
    r_hi = int(pos + d) + 1
    lo = -math.inf
    hi = math.inf
    if r_lo >= 0:
        quickselect(samp, start if r_lo >= start else 0, SAMPLE, r_lo)
        lo = samp[r_lo]
        start = r_lo + 1
    if r_hi < SAMPLE:
        quickselect(samp, start if r_hi >= start else 0, SAMPLE, r_hi)
        hi = samp[r_hi]
        start = r_hi + 1
    return lo, hi, start


@_jit
def _finish(a, m: int, k: int, lo: float, lt: int, le: int, n_in: int, tmp) -> float:
    """k-th smallest of a[:m] given a bracket's counts (< lo, <= lo) and its values in (lo, hi]."""
    if lt <= k < le:
        return lo
    if le <= k < le + n_in:
        quickselect(tmp, 0, n_in, k - le)
        return tmp[k - le]
    quickselect(a, 0, m, k)  # the bracket missed: exact, slower
    return a[k]


@_vec
def _count_below(a, m: int, lo: float):
    """(# of a[:m] < lo, # <= lo): a pure reduction, so it vectorizes."""
    lt = le = 0
    for i in range(m):
        x = a[i]
        lt += 1 if x < lo else 0
        le += 1 if x <= lo else 0
    return lt, le


@_vec
def _copy_between(a, m: int, lo: float, hi: float, tmp) -> int:
    """The values of a[:m] in (lo, hi] copied to tmp, branch-free; returns their number."""
    n = 0
    for i in range(m):
        x = a[i]
        tmp[n] = x
        n += (x > lo) & (x <= hi)
    return n


@_jit
def _gather_between(a, m: int, lo: float, hi: float, tmp):
    """One bracket of ``_gather_between2``: (# of a[:m] < lo, # <= lo, # in (lo, hi]), those copied."""
    lt, le = _count_below(a, m, lo)
    return lt, le, _copy_between(a, m, lo, hi, tmp)


@_jit
def selection_sample(a, m: int, samp) -> None:
    """SAMPLE values of a[:m], one from each of SAMPLE equal strides at an offset that moves along a
    golden-ratio sequence: windows come in ascending runs (one per pass), and a fixed offset would
    sample the same place of every run whenever the run length divides the stride."""
    stride = m // SAMPLE
    for j in range(SAMPLE):
        off = int(((j + 1) * 0.6180339887498949) % 1.0 * stride)
        samp[j] = a[j * stride + off]


@_jit
def kth_smallest(a, m: int, k: int, samp, tmp) -> float:
    """k-th smallest of a[:m] (0-based), exact; may reorder a. One sample bracket as in ``p50_p99``."""
    if m <= SMALL:
        quickselect(a, 0, m, k)
        return a[k]
    selection_sample(a, m, samp)
    lo, hi, _start = _bracket(samp, m, k, 0)
    lt, le, n_in = _gather_between(a, m, lo, hi, tmp)
    return _finish(a, m, k, lo, lt, le, n_in, tmp)


@_jit
def p50_p99(a, m: int, samp, tmp1, tmp2):
    """(p50, p99) of a[:m] by the inverted-CDF definition (rank ceil(q·m) - 1), exact; may reorder a.

    Floyd-Rivest style for large m: ranks of a sample (``selection_sample``) bracket each answer ([lo, hi] holds it
    with overwhelming probability); one branch-free pass counts the values below each bracket and
    copies those inside, and a quickselect among the few copied ones finishes exactly. Should a
    bracket miss, a quickselect over everything gives the same result, slower. With lo = -inf the
    counts below it are zero, so the same logic covers brackets open at either end.
    """
    if m == 0:
        return 0.0, 0.0
    k99 = max(math.ceil(0.99 * m) - 1, 0)
    k50 = max(math.ceil(0.50 * m) - 1, 0)
    if m <= SMALL:
        quickselect(a, 0, m, k99)
        p99 = a[k99]
        if k50 < k99:
            quickselect(a, 0, k99, k50)
        return a[k50], p99
    selection_sample(a, m, samp)
    lo50, hi50, start = _bracket(samp, m, k50, 0)
    lo99, hi99, _start = _bracket(samp, m, k99, start)
    lt50, le50, n50, lt99, le99, n99 = _gather_between2(a, m, lo50, hi50, lo99, hi99, tmp1, tmp2)
    p50 = _finish(a, m, k50, lo50, lt50, le50, n50, tmp1)
    p99 = _finish(a, m, k99, lo99, lt99, le99, n99, tmp2)
    return p50, p99


@_jit
def run_value(a: float, slope: float, j: float) -> float:
    """Window j of a pass: W_j = a + slope·(j+1)."""
    return a + slope * (j + 1.0)


@_jit
def _run_count(a: float, slope: float, c: int, x: float) -> int:
    """How many of W_j = a + slope·(j+1), j < c, are at or below x: O(1) (monotone in j)."""
    if slope == 0.0:
        return c if run_value(a, slope, 0.0) <= x else 0
    t = (x - a) / slope - 1.0
    if slope > 0.0:
        j = int(min(max(math.floor(t), -1.0), c - 1.0))
        while j + 1 < c and run_value(a, slope, j + 1.0) <= x:
            j += 1
        while j >= 0 and run_value(a, slope, float(j)) > x:
            j -= 1
        return j + 1
    j = int(min(max(math.ceil(t), 0.0), float(c)))
    while j > 0 and run_value(a, slope, j - 1.0) <= x:
        j -= 1
    while j < c and run_value(a, slope, float(j)) > x:
        j += 1
    return c - j


@_jit
def _runs_count(runs, nr: int, x: float) -> int:
    n = 0
    for i in range(nr):
        n += _run_count(runs[0, i], runs[1, i], int(runs[2, i]), x)
    return n


RUN_MIN_FOLIOS = 64  # windows per pass (on average) from which the sequences are used
RUN_BRACKET = 64  # bisect until at most this many windows lie inside the bracket


@_jit
def runs_kth(runs, nr: int, k: int, tmp) -> float:
    """k-th smallest (0-based) of the windows of ``nr`` passes, each an arithmetic sequence
    (``runs[:, i]`` = a, slope, count), exact, without materializing them: bisect the value until
    few lie in the bracket (lo, hi] (counts per sequence in O(1)), then select among those."""
    lo = math.inf
    hi = -math.inf
    for i in range(nr):
        a, sl, c = runs[0, i], runs[1, i], runs[2, i]
        v0 = run_value(a, sl, 0.0)
        v1 = run_value(a, sl, c - 1.0)
        lo = min(lo, v0, v1)
        hi = max(hi, v0, v1)
    n_lo = _runs_count(runs, nr, lo)
    if n_lo > k:
        return lo
    n_hi = _runs_count(runs, nr, hi)
    for _it in range(128):
        if n_hi - n_lo <= RUN_BRACKET:
            break
        mid = lo + 0.5 * (hi - lo)
        if mid <= lo or mid >= hi:
            break
        n_mid = _runs_count(runs, nr, mid)
        if n_mid > k:
            hi, n_hi = mid, n_mid
        else:
            lo, n_lo = mid, n_mid
    n = 0
    for i in range(nr):
        a, sl, c = runs[0, i], runs[1, i], int(runs[2, i])
        c_lo = _run_count(a, sl, c, lo)
        c_hi = _run_count(a, sl, c, hi)
        if sl >= 0.0:
            j0, j1 = (c_lo, c_hi) if sl > 0.0 else (0, c_hi - c_lo)
        else:
            j0, j1 = c - c_hi, c - c_lo
        for j in range(j0, j1):
            tmp[n] = run_value(a, sl, float(j))
            n += 1
    quickselect(tmp, 0, n, k - n_lo)
    return tmp[k - n_lo]


@_jit
def _jitter(cv: float, u: float) -> float:
    """DMA completion jitter factor from one uniform: shifted exponential, mean 1, standard
    deviation cv, never negative (cv <= 1)."""
    return (1.0 - cv) - cv * fast_log(u)


TAIL_POOL = 64  # acknowledgement tails drawn ahead, in one vectorized loop


@_vec
def _fill_tails(s0, remote: float, alpha: float, pool) -> None:
    """``pool[j]`` = max of ``remote`` Lomax(alpha) tails from the j+1-th uniform of the stream at s0."""
    for j in range(pool.shape[0]):
        u = _uniform(s0, j)
        pool[j] = draw_max_lomax(remote, alpha, u)


@_jit
def _tail_sum(ts, i: int, pool, k: int, remote, alpha):
    """Σ of ``k`` draws of the slowest of ``remote`` acknowledgement tails (unit scale), taken from
    the pool (refilled ``TAIL_POOL`` at a time). Returns (sum, ts, i, draws)."""
    tot = 0.0
    drawn = 0
    for _r in range(k):
        if i >= TAIL_POOL:
            _fill_tails(ts, remote, alpha, pool)
            ts += np.uint64(TAIL_POOL) * _GOLDEN
            drawn += TAIL_POOL
            i = 0
        tot += pool[i]
        i += 1
    return tot, ts, i, drawn


@_jit  # a plain copy (exact)
def _copy(src, dst, m: int) -> None:
    for j in range(m):
        dst[j] = src[j]


@_vec
def _stalls_inplace(s0, m: int, inv_rate: float, a) -> float:
    """``a[:m]`` holds the windows W; each becomes its stall max(0, W - E), E = -log(U)/rate.
    Returns Σ W. One array only: the compiled loop needs no run-time aliasing check, so which
    elements take the vector body and which the scalar tail depends on m alone (bit-identical
    results whatever else is in memory)."""
    win = 0.0
    for j in range(m):
        w = a[j]
        win += w
        a[j] = _stall(w, _uniform(s0, j), inv_rate)
    return win


@_vec
def _sum(a, m: int) -> float:
    t = 0.0
    for j in range(m):
        t += a[j]
    return t


# Per size class of a point (folio sizes of a mix, in list order; one class without a mix; the
# order-0 pieces of split folios last), the costs of one folio: rows of ``cc``.
(
    CC_FP, CC_U, CC_R, CC_CF, CC_CFW, CC_CALL, CC_CALLW, CC_PROG, CC_TUSED, CC_CF1, CC_CF1W, CC_CALL1,
    CC_CALL1W, CC_T1USED, CC_IMM_DEF, CC_IMM_NOW, CC_ISSUE, CC_QUEUE,
) = range(18)  # fmt: skip
CC_WIDTH = 18

# Point-level costs of flush rounds: rows of ``rc``.
(
    RC_IMM_FIXED, RC_IMM_TAIL, RC_IMM_IPIS, RC_IMM_REMOTE, RC_B_FIXED, RC_B_TAIL, RC_B_IPIS, RC_B_REMOTE,
    RC_SCALE, RC_ALPHA, RC_REMOTE, RC_DEFER, RC_BCAST,
) = range(13)  # fmt: skip
RC_WIDTH = 13


@_jit
def _round_costs(prof, kcode: float, targets: float, rc) -> None:
    """Flush-round costs of a point by kind (models/MECHANISM.md §3) into ``rc``.

    - x86 (IPI): an immediate round (``ptep_clear_flush()`` → ``flush_tlb_page()`` →
      ``flush_tlb_mm_range()``, arch/x86/mm/tlb.c) flushes one entry locally and sends IPIs to the
      mm's other CPUs, waiting for the slowest; the batch flush (``arch_tlbbatch_flush()``) is a
      full flush of the batch's cpumask, the same IPI round with the full-flush handler.
    - broadcast (arm64 TLBI ...IS + DSB ISH, arch/arm64/include/asm/tlbflush.h ``flush_tlb_page()``;
      x86 INVLPGB + TLBSYNC from 6.15 for an mm on >= 4 CPUs, arch/x86/mm/tlb.c
      ``broadcast_tlb_flush()``, ``consider_global_asid()``): no IPIs, no tail; the batch flush is
      the completion wait alone (arm64 ``arch_tlbbatch_flush()`` = ``dsb(ish)``, from 6.6; x86
      ``tlbsync()``, from 6.15).
    - deferral: mm/rmap.c ``should_defer_flush()`` (``defers_flush()``).
    """
    bcast = uses_broadcast(prof, kcode, targets)
    remote = targets - 1.0
    has_remote = (not bcast) and remote >= 1.0
    rc[RC_IMM_FIXED] = entry_round_fixed_s(prof, bcast, targets)
    rc[RC_IMM_TAIL] = 1.0 if has_remote else 0.0
    rc[RC_IMM_IPIS] = remote if has_remote else 0.0
    rc[RC_IMM_REMOTE] = remote * prof[HANDLER_PAGE] if has_remote else 0.0
    rc[RC_B_FIXED] = batch_round_fixed_s(prof, bcast, targets)
    rc[RC_B_TAIL] = rc[RC_IMM_TAIL]
    rc[RC_B_IPIS] = rc[RC_IMM_IPIS]
    rc[RC_B_REMOTE] = remote * prof[HANDLER_FULL] if has_remote else 0.0
    rc[RC_SCALE] = prof[ACK_SCALE]
    rc[RC_ALPHA] = prof[ACK_ALPHA]
    rc[RC_REMOTE] = remote
    rc[RC_DEFER] = 1.0 if defers_flush(prof, kcode, targets) else 0.0
    rc[RC_BCAST] = 1.0 if bcast else 0.0


@_jit
def _class_costs(prof, rc, kcode, hint, folio_kb, unit_folios, engine, threads, mapcount, cc, c) -> None:
    """Costs of one folio of ``folio_kb`` into row ``c`` of ``cc`` (models/MECHANISM.md §3, §4.1).

    Immediate rounds at unmap: a PMD-mapped THP is flushed when it is unmapped in every release and
    mode (``set_pmd_migration_entry()`` → ``pmdp_invalidate()``, mm/huge_memory.c), one round per
    mapping; a PTE-mapped folio unmapped without deferral flushes each PTE of each mapping as it is
    cleared (mm/rmap.c ``try_to_migrate_one()`` → ``ptep_clear_flush()``), none for NUMA-hinting
    entries (``pte_accessible()`` false). With deferral a PTE-mapped folio queues the batch flush
    (not from 6.4 for hinting entries: ``set_tlb_ubc_flush_pending()``) and, on broadcast machines,
    issues its TLBIs at unmap (arm64 ``arch_tlbbatch_add_pending()`` →
    ``__flush_tlb_page_nosync()``; x86 ``invlpgb_flush_user_nr_nosync()``).
    """
    page_kb = prof[PAGE_KB]
    fp = folio_kb / page_kb
    pmd = pmd_mapped(prof, fp)
    cc[c, CC_FP] = fp
    cc[c, CC_U] = unmap_phase_s(prof, fp, mapcount)
    cc[c, CC_R] = remap_s(prof, fp, mapcount)
    fb = folio_kb * 1024.0
    call_s, cf, cf_wait, call_wait, progressive, t_used = copy_engine_costs(
        prof, engine, threads, fb, unit_folios
    )
    call1, cf1, cf1_wait, call1_wait, _prog1, t1_used = copy_engine_costs(prof, engine, threads, fb, 1.0)
    cc[c, CC_CF] = cf
    cc[c, CC_CFW] = cf_wait
    cc[c, CC_CALL] = call_s
    cc[c, CC_CALLW] = call_wait
    cc[c, CC_PROG] = 1.0 if progressive else 0.0
    cc[c, CC_TUSED] = t_used
    cc[c, CC_CF1] = cf1
    cc[c, CC_CF1W] = cf1_wait
    cc[c, CC_CALL1] = call1
    cc[c, CC_CALL1W] = call1_wait
    cc[c, CC_T1USED] = t1_used
    hinted = hint > 0.5
    cc[c, CC_IMM_DEF] = mapcount if pmd else 0.0
    cc[c, CC_IMM_NOW] = mapcount if pmd else (0.0 if hinted else fp * mapcount)
    queue = (not pmd) and not (hinted and kcode >= K_SKIP_INACCESSIBLE)
    cc[c, CC_QUEUE] = 1.0 if queue else 0.0
    cc[c, CC_ISSUE] = prof[BCAST_ISSUE] * fp * mapcount if (queue and rc[RC_BCAST] > 0.5) else 0.0


TAIL_DIRECT = 16  # immediate rounds from which their tails are summed directly, not from the pool


@_jit
def _imm_rounds_s(rc, k: float, ts, tpos: int, pool):
    """Time of ``k`` immediate rounds (fixed part plus drawn tails). Returns (s, ts, tpos, draws).

    Many rounds at once (a large PTE-mapped folio flushed entry by entry) take their tails straight
    from the stream in one vectorized sum (``_tails_total``, a function of ``ts`` and ``k`` alone);
    the pool's remaining draws stay for later rounds (different uniforms, no overlap)."""
    if k <= 0.0:
        return 0.0, ts, tpos, 0
    s = k * rc[RC_IMM_FIXED]
    if rc[RC_IMM_TAIL] > 0.5:
        ki = int(k)
        if ki >= TAIL_DIRECT:  # many rounds (a large folio's PTEs): one vectorized reduction
            tails = _tails_total(ts, ki, rc[RC_REMOTE], rc[RC_ALPHA])
            return s + rc[RC_SCALE] * tails, ts + np.uint64(ki) * _GOLDEN, tpos, ki
        tails, ts, tpos, dr = _tail_sum(ts, tpos, pool, ki, rc[RC_REMOTE], rc[RC_ALPHA])
        return s + rc[RC_SCALE] * tails, ts, tpos, dr
    return s, ts, tpos, 0


@_jit
def _move(
    s0, ts, tpos, pool, cc, rc, queued: bool, unm: int, ubuf, fcls, tbuf, wbuf, m: int, time: float, cv: float,
    c_first: int,
):  # fmt: skip
    """The end of a batch (mm/migrate.c ``migrate_pages_batch()`` after the unmap passes): one
    ``try_to_unmap_flush()`` if a deferred flush is pending, then the move phase over the unmapped
    folios in unmap order: one copy call, each folio remapped (``cpu``: copied and remapped folio
    by folio). Windows (end of unmap step to end of remap) go to ``wbuf[m:m+unm]``.

    Returns (time, rounds, ipis, remote_cpu, wait, extra_cpu, s0, ts, tpos, draws)."""
    rounds = ipis = remote = wait = extra = 0.0
    nd = 0
    if queued:
        f = rc[RC_B_FIXED]
        if rc[RC_B_TAIL] > 0.5:
            t, ts, tpos, dr = _tail_sum(ts, tpos, pool, 1, rc[RC_REMOTE], rc[RC_ALPHA])
            f += rc[RC_SCALE] * t
            nd += dr
        time += f
        rounds = 1.0
        ipis = rc[RC_B_IPIS]
        remote = rc[RC_B_REMOTE]
    if unm == 0:
        return time, rounds, ipis, remote, wait, extra, s0, ts, tpos, nd
    c0 = c_first  # the call's fixed cost and threads: those of the batch's first folio
    call = cc[c0, CC_CALL]
    wpart = cc[c0, CC_CALLW]
    if cc[c0, CC_PROG] > 0.5:
        time += call
        for j in range(unm):
            c = fcls[ubuf[j]]
            time += cc[c, CC_CF] + cc[c, CC_R]
            wbuf[m + j] = time - tbuf[j]
        return time, rounds, ipis, remote, wait, extra, s0, ts, tpos, nd
    cf = 0.0
    for j in range(unm):
        c = fcls[ubuf[j]]
        cf += cc[c, CC_CF]
        wpart += cc[c, CC_CFW]
    total = call + cf
    if cv > 0.0 and wpart > 0.0:
        s0 += _GOLDEN
        nd += 1
        jf = _jitter(cv, _u01(s0))
        total += wpart * (jf - 1.0)
        wpart *= jf
    wait = wpart
    extra = (cc[c0, CC_TUSED] - 1.0) * cf
    time += total
    for j in range(unm):
        time += cc[fcls[ubuf[j]], CC_R]
        wbuf[m + j] = time - tbuf[j]
    return time, rounds, ipis, remote, wait, extra, s0, ts, tpos, nd


@_jit  # not fastmath: the same rounding in the vector body and the scalar tail
def _fill_windows(base: float, slope: float, unm: int, tbuf, wbuf, m: int) -> None:
    """Windows of a one-size move phase: folio j is remapped at base + (j+1)·slope."""
    for j in range(unm):
        wbuf[m + j] = base + slope * (j + 1.0) - tbuf[j]


@_jit
def _move_fast(
    s0, ts, tpos, pool, cc, rc, queued: bool, unm: int, tbuf, wbuf, m: int, time: float, cv: float
):
    """``_move`` for one folio size (class 0): the remaps in closed form, the windows in one
    vectorized loop. Also returns (base, slope): folio j's remap ends at base + (j+1)·slope."""
    rounds = ipis = remote = wait = extra = 0.0
    nd = 0
    if queued:
        f = rc[RC_B_FIXED]
        if rc[RC_B_TAIL] > 0.5:
            t, ts, tpos, dr = _tail_sum(ts, tpos, pool, 1, rc[RC_REMOTE], rc[RC_ALPHA])
            f += rc[RC_SCALE] * t
            nd += dr
        time += f
        rounds = 1.0
        ipis = rc[RC_B_IPIS]
        remote = rc[RC_B_REMOTE]
    if unm == 0:
        return time, rounds, ipis, remote, wait, extra, s0, ts, tpos, nd, time, 0.0
    cf = cc[0, CC_CF]
    if cc[0, CC_PROG] > 0.5:
        base = time + cc[0, CC_CALL]
        slope = cf + cc[0, CC_R]
    else:
        total = cc[0, CC_CALL] + unm * cf
        wpart = cc[0, CC_CALLW] + unm * cc[0, CC_CFW]
        if cv > 0.0 and wpart > 0.0:
            s0 += _GOLDEN
            nd += 1
            jf = _jitter(cv, _u01(s0))
            total += wpart * (jf - 1.0)
            wpart *= jf
        wait = wpart
        extra = (cc[0, CC_TUSED] - 1.0) * unm * cf
        base = time + total
        slope = cc[0, CC_R]
    _fill_windows(base, slope, unm, tbuf, wbuf, m)
    time = base + unm * slope
    return time, rounds, ipis, remote, wait, extra, s0, ts, tpos, nd, base, slope


@_jit
def _alone_copy(s0, cc, c: int, cv: float):
    """One copy call of one folio of class c: (duration, waiting part, s0, draws)."""
    call = cc[c, CC_CALL1] + cc[c, CC_CF1]
    w = cc[c, CC_CALL1W] + cc[c, CC_CF1W]
    if cv > 0.0 and w > 0.0:
        s0 += _GOLDEN
        jf = _jitter(cv, _u01(s0))
        return call + w * (jf - 1.0), w * jf, s0, 1
    return call, w, s0, 0


@_jit
def _alone_step(s0, ts, tpos: int, pool, cc, rc, c: int, cv: float):
    """One folio of class c alone, as ``unmap_and_move()`` (before 6.3) and the synchronous fallback
    (``migrate_pages_sync()``) move it: unmapped with a flush round per PTE, copied, remapped.

    Returns (time, copy-and-remap window, rounds, IPIs, remote CPUs, waiting part, extra copy-thread
    time, s0, ts, tpos, draws); the draws come in the same order as they always did (flush rounds first)."""
    k = cc[c, CC_IMM_NOW]
    r_s, ts, tpos, dr = _imm_rounds_s(rc, k, ts, tpos, pool)
    copy, w, s0, dr2 = _alone_copy(s0, cc, c, cv)
    extra = (cc[c, CC_T1USED] - 1.0) * cc[c, CC_CF1]
    dt = cc[c, CC_U] + r_s + copy + cc[c, CC_R]
    win = copy + cc[c, CC_R]
    return dt, win, k, k * rc[RC_IMM_IPIS], k * rc[RC_IMM_REMOTE], w, extra, s0, ts, tpos, dr + dr2


@_vec
def _busy_flags(s0, k: int, p: float, flags) -> int:
    """``flags[j]`` = 1.0 when draw j of the stream at ``s0`` is below p (busy), else 0; returns Σ."""
    tot = 0
    for j in range(k):
        b = 1 if _uniform(s0, j) < p else 0
        flags[j] = b
        tot += b
    return tot


@_vec
def _zeros(a, k: int) -> None:
    for j in range(k):
        a[j] = 0.0


@_jit
def _fast_pass(pend, npend: int, flags, busy_s: float, step: float, time: float, ubuf, tbuf, unm: int):
    """One unmap pass of one-size folios in list order, branch-free: a busy folio costs ``busy_s``
    and stays pending, the others cost ``step`` and are unmapped (their ends in ``tbuf``)."""
    newn = 0
    for idx in range(npend):
        f = pend[idx]
        b = flags[idx]
        time += busy_s if b > 0.5 else step
        ubuf[unm] = f
        tbuf[unm] = time
        unm += 0 if b > 0.5 else 1
        pend[newn] = f
        newn += 1 if b > 0.5 else 0
    return time, unm, newn


@_jit
def _replica(
    s0, ts, tpos, pool, cc, rc, fcls, bstart, nbat: int, pre63: bool, sync: bool, p, wb, wbwait, af,
    busy_s, cv, mt: bool, pcls: int, ncls: int, pend, ubuf, tbuf, fbuf, spl, wbf, wbuf, kbuf, runs,
):  # fmt: skip
    """One ``migrate_pages()`` call (models/MECHANISM.md §2-§4): the batches of ``bstart`` (before
    6.3 one "batch", the whole list, every folio alone), each with its unmap passes, batch flush,
    move phase, synchronous one-by-one fallback and split-piece retry.

    Returns (time without call set-up, rounds, ipis, remote CPU, waits, extra CPU, failed folios,
    Σ passes, windows m, pages moved, s0, ts, tpos, draws); windows in ``wbuf[:m]``.
    """
    time = rounds = ipis = remote = wait = extra = failed = passes_sum = moved = 0.0
    nd = 0
    m = 0
    nrun = 0
    ended = False
    n_passes = NR_MAX_MIGRATE_ASYNC_RETRY if sync else NR_MAX_MIGRATE_PAGES_RETRY
    defer = (not pre63) and rc[RC_DEFER] > 0.5
    imm0 = cc[0, CC_IMM_DEF] if defer else cc[0, CC_IMM_NOW]
    fast = ncls == 1 and af <= 0.0 and wb <= 0.0 and not pre63 and (imm0 == 0.0 or rc[RC_IMM_TAIL] < 0.5)
    step = cc[0, CC_U] + imm0 * rc[RC_IMM_FIXED] + (cc[0, CC_ISSUE] if defer else 0.0)
    runs_ok = fast and p <= 0.0  # then no fallback either (no busy folio, no writeback)
    nr = 0
    for bi in range(nbat):
        bs = bstart[bi]
        be = bstart[bi + 1]
        if ended:  # -ENOMEM on an order-0 folio ended the call: nothing after it migrates
            failed += be - bs
            continue
        nrun += 1
        npend = be - bs
        for j in range(npend):
            pend[j] = bs + j
        if wb > 0.0:
            for j in range(npend):
                wbf[bs + j] = 0
        unm = 0
        nfb = 0
        nspl = 0
        queued = False
        passes = 0
        for k in range(n_passes):
            if npend == 0:
                break
            passes += 1
            newn = 0
            idx = 0
            if fast:
                # One size, nothing but -EAGAIN: the busy draws of the pass in one vectorized loop,
                # then a branch-free pass in list order (unmap steps and busy attempts in time).
                nb_ = 0
                if p > 0.0:
                    nb_ = _busy_flags(s0, npend, p, kbuf)
                    s0 += np.uint64(npend) * _GOLDEN
                    nd += npend
                else:
                    _zeros(kbuf, npend)
                time, unm, newn = _fast_pass(pend, npend, kbuf, busy_s, step, time, ubuf, tbuf, unm)
                c_un = npend - nb_
                imm = cc[0, CC_IMM_DEF] if defer else cc[0, CC_IMM_NOW]
                rounds += imm * c_un
                ipis += imm * c_un * rc[RC_IMM_IPIS]
                remote += imm * c_un * rc[RC_IMM_REMOTE]
                moved += cc[0, CC_FP] * c_un
                queued = queued or (c_un > 0 and defer and cc[0, CC_QUEUE] > 0.5)
                npend = newn
                continue
            while idx < npend:
                f = pend[idx]
                idx += 1
                c = fcls[f]
                if k == 0:
                    # mm/migrate.c migrate_folio_unmap(): the destination is allocated first; -ENOMEM
                    # splits a large folio (try_split_folio()) and ends unmapping for an order-0 one.
                    if af > 0.0:
                        s0 += _GOLDEN
                        nd += 1
                        if _u01(s0) < af:
                            if cc[c, CC_FP] > 1.0:
                                spl[nspl] = f
                                nspl += 1
                                continue
                            ended = True
                            failed += 1.0 + (npend - idx) + newn  # it, the untried, the pending
                            break
                    if wb > 0.0:
                        s0 += _GOLDEN
                        nd += 1
                        wbf[f] = 1 if _u01(s0) < wb else 0
                if p > 0.0:
                    s0 += _GOLDEN
                    nd += 1
                    if _u01(s0) < p:  # -EAGAIN: locked elsewhere or an extra reference; retried
                        time += busy_s
                        pend[newn] = f
                        newn += 1
                        continue
                if wb > 0.0 and wbf[f] != 0:  # -EBUSY: under writeback, non-blocking attempt
                    time += busy_s
                    if sync:
                        fbuf[nfb] = f
                        nfb += 1
                    else:
                        failed += 1.0
                    continue
                if pre63:  # alone: unmap with immediate flushes, copy, remap (unmap_and_move())
                    dt, win, r1, i1, rm1, w, e1, s0, ts, tpos, dr = _alone_step(
                        s0, ts, tpos, pool, cc, rc, c, cv
                    )
                    nd += dr
                    rounds += r1
                    ipis += i1
                    remote += rm1
                    wait += w
                    if mt:
                        extra += e1
                    time += dt
                    wbuf[m] = win
                    m += 1
                    moved += cc[c, CC_FP]
                    continue
                imm = cc[c, CC_IMM_DEF] if defer else cc[c, CC_IMM_NOW]
                r_s, ts, tpos, dr = _imm_rounds_s(rc, imm, ts, tpos, pool)
                nd += dr
                rounds += imm
                ipis += imm * rc[RC_IMM_IPIS]
                remote += imm * rc[RC_IMM_REMOTE]
                time += cc[c, CC_U] + r_s
                if defer:
                    time += cc[c, CC_ISSUE]
                    queued = queued or cc[c, CC_QUEUE] > 0.5
                ubuf[unm] = f
                tbuf[unm] = time
                unm += 1
                moved += cc[c, CC_FP]
            npend = newn
            if ended:
                break
        passes_sum += passes
        if not ended:
            if sync:
                for j in range(npend):
                    fbuf[nfb] = pend[j]
                    nfb += 1
            else:
                failed += npend  # still busy after the last pass
        if fast:
            time, r1, i1, rm1, w1, e1, s0, ts, tpos, dr, base, slope = _move_fast(
                s0, ts, tpos, pool, cc, rc, queued, unm, tbuf, wbuf, m, time, cv
            )
            if runs_ok and unm > 0:  # every folio unmapped on pass 1: windows in arithmetic sequence
                if nr < runs.shape[1]:  # beyond, the sequences are not used (nr·RUN_MIN_FOLIOS > m)
                    runs[0, nr] = base - (tbuf[0] - step)
                    runs[1, nr] = slope - step
                    runs[2, nr] = unm
                nr += 1
        elif not pre63:
            time, r1, i1, rm1, w1, e1, s0, ts, tpos, dr = _move(
                s0, ts, tpos, pool, cc, rc, queued, unm, ubuf, fcls, tbuf, wbuf, m, time, cv, fcls[bs]
            )
        if not pre63:
            nd += dr
            rounds += r1
            ipis += i1
            remote += rm1
            wait += w1
            extra += e1 if mt else 0.0
            m += unm
        if ended:
            failed += nfb + nspl  # the fallback and the split pieces of this batch do not run
            continue
        # mm/migrate.c migrate_pages_sync(): each failed folio alone, MIGRATE_SYNC, up to 7
        # attempts; folio_lock() and folio_wait_writeback() block; unmapped without TTU_BATCH_FLUSH.
        # Its attempts are not passes of the batch (models/MECHANISM.md §5).
        for j in range(nfb):
            f = fbuf[j]
            c = fcls[f]
            done = False
            for _attempt in range(NR_MAX_MIGRATE_SYNC_RETRY):
                if p > 0.0:
                    s0 += _GOLDEN
                    nd += 1
                    if _u01(s0) < p:
                        time += busy_s
                        continue
                if wb > 0.0 and wbf[f] != 0 and wbwait > 0.0:
                    s0 += _GOLDEN
                    nd += 1
                    wt = -wbwait * fast_log(_u01(s0))
                    time += wt
                    wait += wt
                dt, win, r1, i1, rm1, w, e1, s0, ts, tpos, dr = _alone_step(s0, ts, tpos, pool, cc, rc, c, cv)
                nd += dr
                rounds += r1
                ipis += i1
                remote += rm1
                wait += w
                if mt:
                    extra += e1
                time += dt
                wbuf[m] = win
                m += 1
                moved += cc[c, CC_FP]
                done = True
                break
            if not done:
                failed += 1.0
        if nspl == 0:
            continue
        # Split pieces: migrate_pages() retries them once, MIGRATE_ASYNC, as one batch
        # (migrate_pages_batch(&split_folios, ..., MIGRATE_ASYNC, ..., 1)).
        unm = 0
        queued = False
        pdefer = (not pre63) and rc[RC_DEFER] > 0.5
        for j in range(nspl):
            f = spl[j]
            fp = cc[fcls[f], CC_FP]
            share = 1.0 / fp
            for _piece in range(int(fp)):
                if p > 0.0:
                    s0 += _GOLDEN
                    nd += 1
                    if _u01(s0) < p:
                        time += busy_s
                        failed += share
                        continue
                if wb > 0.0 and wbf[f] != 0:
                    time += busy_s
                    failed += share
                    continue
                if pre63:
                    r_s, ts, tpos, dr = _imm_rounds_s(rc, cc[pcls, CC_IMM_NOW], ts, tpos, pool)
                    nd += dr
                    rounds += cc[pcls, CC_IMM_NOW]
                    ipis += cc[pcls, CC_IMM_NOW] * rc[RC_IMM_IPIS]
                    remote += cc[pcls, CC_IMM_NOW] * rc[RC_IMM_REMOTE]
                    copy, w, s0, dr = _alone_copy(s0, cc, pcls, cv)
                    nd += dr
                    wait += w
                    if mt:
                        extra += (cc[pcls, CC_T1USED] - 1.0) * cc[pcls, CC_CF1]
                    time += cc[pcls, CC_U] + r_s + copy + cc[pcls, CC_R]
                    wbuf[m] = copy + cc[pcls, CC_R]
                    m += 1
                    moved += 1.0
                    continue
                imm = cc[pcls, CC_IMM_DEF] if pdefer else cc[pcls, CC_IMM_NOW]
                r_s, ts, tpos, dr = _imm_rounds_s(rc, imm, ts, tpos, pool)
                nd += dr
                rounds += imm
                ipis += imm * rc[RC_IMM_IPIS]
                remote += imm * rc[RC_IMM_REMOTE]
                time += cc[pcls, CC_U] + r_s
                if pdefer:
                    time += cc[pcls, CC_ISSUE]
                    queued = queued or cc[pcls, CC_QUEUE] > 0.5
                ubuf[unm] = -1
                tbuf[unm] = time
                unm += 1
                moved += 1.0
        if not pre63:
            # the pieces' classes: ``_move`` reads fcls[ubuf[j]]; point ubuf at a piece slot
            for j in range(unm):
                ubuf[j] = fcls.shape[0] - 1
            time, r1, i1, rm1, w1, e1, s0, ts, tpos, dr = _move(
                s0, ts, tpos, pool, cc, rc, queued, unm, ubuf, fcls, tbuf, wbuf, m, time, cv, pcls
            )
            nd += dr
            rounds += r1
            ipis += i1
            remote += rm1
            wait += w1
            extra += e1 if mt else 0.0
            m += unm
    passes_mean = passes_sum / max(nrun, 1)
    return time, rounds, ipis, remote, wait, extra, failed, passes_mean, m, moved, s0, ts, tpos, nd, nr


# Batches of one folio (6.3+ with a cap of at most one folio's pages) and the pre-6.3 path (every
# folio alone), one size, no writeback and no allocation failure: no folio's attempts touch
# another's, so a folio's busy attempts before it gets through are geometric over all its attempts
# (P(K >= k) = p^k, batched passes and fallback alike), and every random part of a folio is one
# uniform of a counter-based stream. The replica is then a few vectorized passes over the folios.


@_vec
def _lone_busy(s0, n: int, inv_log_p: float, kbuf):
    """Busy attempts of each of n lone folios before it gets through, K = floor(log U / log p),
    capped at NR_MAX_MIGRATE_PAGES_RETRY (= failed), into ``kbuf``. Returns Σ K."""
    tot = 0.0
    cap = float(NR_MAX_MIGRATE_PAGES_RETRY)
    for j in range(n):
        k = min(math.floor(fast_log(_uniform(s0, j)) * inv_log_p), cap)
        kbuf[j] = k
        tot += k
    return tot


@_vec
def _lone_tails(ts, n: int, remote: float, alpha: float, tbuf) -> None:
    """The slowest of ``remote`` acknowledgement tails (unit scale) of each folio's flush."""
    for j in range(n):
        tbuf[j] = draw_max_lomax(remote, alpha, _uniform(ts, j))


@_vec
def _tails_total(ts, k: int, remote: float, alpha: float) -> float:
    """Σ of k draws of the slowest of ``remote`` acknowledgement tails (unit scale)."""
    tot = 0.0
    for j in range(k):
        tot += draw_max_lomax(remote, alpha, _uniform(ts, j))
    return tot


@_jit
def _lone_replica(s0, ts, n: int, pre63: bool, sync: bool, p, busy_s, cv, mt: bool, cc, rc, kbuf, tbuf, wbuf):
    """One replica of n lone folios of class 0. Same returns as ``_replica``."""
    nd = 0
    # Attempts: async, NR_MAX_MIGRATE_PAGES_RETRY batched passes; sync, NR_MAX_MIGRATE_ASYNC_RETRY
    # batched (async, deferred) passes and then the rest alone, MIGRATE_SYNC (immediate flushes).
    n_batched = NR_MAX_MIGRATE_ASYNC_RETRY if sync else NR_MAX_MIGRATE_PAGES_RETRY
    cap = float(NR_MAX_MIGRATE_PAGES_RETRY)
    busy = 0.0
    if p >= 1.0:
        for j in range(n):
            kbuf[j] = cap
        busy = cap * n
    elif p > 0.0:
        busy = _lone_busy(s0, n, 1.0 / math.log(p), kbuf)
        s0 += np.uint64(n) * _GOLDEN
        nd += n
    else:
        for j in range(n):
            kbuf[j] = 0.0
    defer = (not pre63) and rc[RC_DEFER] > 0.5
    imm_b = cc[0, CC_IMM_DEF] if defer else cc[0, CC_IMM_NOW]
    imm_1 = cc[0, CC_IMM_NOW]
    queued = defer and cc[0, CC_QUEUE] > 0.5
    flush_b = rc[RC_B_FIXED] if queued else 0.0
    flush_tail = queued and rc[RC_B_TAIL] > 0.5
    if pre63:  # every attempt alone: unmap (immediate flushes), copy of one folio, remap
        call_b, cf_b, w_b, t_b = (
            cc[0, CC_CALL1],
            cc[0, CC_CF1],
            cc[0, CC_CALL1W] + cc[0, CC_CF1W],
            cc[0, CC_T1USED],
        )
    else:
        call_b, cf_b, w_b, t_b = (
            cc[0, CC_CALL],
            cc[0, CC_CF],
            cc[0, CC_CALLW] + cc[0, CC_CFW],
            cc[0, CC_TUSED],
        )
    call_1, cf_1, w_1, t_1 = (
        cc[0, CC_CALL1],
        cc[0, CC_CF1],
        cc[0, CC_CALL1W] + cc[0, CC_CF1W],
        cc[0, CC_T1USED],
    )
    u = cc[0, CC_U]
    r = cc[0, CC_R]
    issue = cc[0, CC_ISSUE] if defer else 0.0
    if flush_tail:
        _lone_tails(ts, n, rc[RC_REMOTE], rc[RC_ALPHA], tbuf)
        ts += np.uint64(n) * _GOLDEN
        nd += n
    jitter = cv > 0.0 and (w_b > 0.0 or w_1 > 0.0)
    js0 = s0
    if jitter:
        s0 += np.uint64(n) * _GOLDEN
        nd += n
    m = 0
    n_b = 0
    n_1 = 0
    failed = 0.0
    wait = 0.0
    tails_b = 0.0
    most_b = 0.0
    passes_sum = 0.0
    scale = rc[RC_SCALE]
    for j in range(n):
        k = kbuf[j]
        # Passes of the batched phase: min(K + 1, n_batched); the fallback's attempts are not
        # passes (models/MECHANISM.md §5).
        if k >= cap:
            failed += 1.0
            passes_sum += n_batched
            most_b = n_batched
            continue
        batched = k < n_batched
        jf = _jitter(cv, _uniform(js0, j)) if jitter else 1.0
        if batched:
            tl = tbuf[j] if flush_tail else 0.0
            tails_b += tl
            w = flush_b + scale * tl + call_b + cf_b + w_b * (jf - 1.0) + r
            wait += w_b * jf
            n_b += 1
            passes_sum += k + 1.0
            most_b = max(most_b, k + 1.0)
        else:
            w = call_1 + cf_1 + w_1 * (jf - 1.0) + r
            wait += w_1 * jf
            n_1 += 1
            passes_sum += n_batched  # then k - n_batched + 1 fallback attempts, not counted
            most_b = n_batched
        wbuf[m] = w
        m += 1
    win = _sum(wbuf, m)
    rounds_imm = n_b * imm_b + n_1 * imm_1
    time = busy * busy_s + n_b * (u + issue) + n_1 * u + rounds_imm * rc[RC_IMM_FIXED] + win
    if rc[RC_IMM_TAIL] > 0.5 and rounds_imm > 0.0:
        time += scale * _tails_total(ts, int(rounds_imm), rc[RC_REMOTE], rc[RC_ALPHA])
        ts += np.uint64(int(rounds_imm)) * _GOLDEN
        nd += int(rounds_imm)
    rounds_b = n_b if queued else 0.0
    rounds = rounds_imm + rounds_b
    ipis = rounds_imm * rc[RC_IMM_IPIS] + rounds_b * rc[RC_B_IPIS]
    remote = rounds_imm * rc[RC_IMM_REMOTE] + rounds_b * rc[RC_B_REMOTE]
    extra = ((t_b - 1.0) * cf_b * n_b + (t_1 - 1.0) * cf_1 * n_1) if mt else 0.0
    moved = (n_b + n_1) * cc[0, CC_FP]
    # Passes per batch (models/MECHANISM.md §5): before 6.3 the list is the batch.
    passes = most_b if pre63 else passes_sum / n
    return time, rounds, ipis, remote, wait, extra, failed, passes, m, moved, s0, ts, TAIL_POOL, nd, 0


@_jit
def mc_point(
    prof, seed, kcode, ncls, cls_kb, cls_cnt, n, limit, engine, threads, targets, mapcount, p, rate, sync,
    hint, wb, wbwait, af, replicas, cc, rc, fcls, bstart, pend, ubuf, tbuf, fbuf, spl, wbf, wbuf, sbuf,
    kbuf, runs, state, pool, samp, tmp1, tmp2, out, col,
):  # fmt: skip
    """Simulate ``replicas`` calls of one point; write means and errors to ``out[:, col]``.

    The folio list holds ``cls_cnt[c]`` folios of ``cls_kb[c]`` KiB for c = 0..ncls-1, in that
    order (one class without a mix). ``state`` gets the stream states back (four uint64).
    """
    s0 = seed
    nd = 0
    ts = _mix(seed ^ _TAIL_SALT)
    tpos = TAIL_POOL
    page_kb = prof[PAGE_KB]
    pre63 = kcode < K_BATCHED
    _round_costs(prof, kcode, targets, rc)
    n_int = int(n)
    # The list in order (mm/migrate.c migrate_pages(): batches cut when the pages reach the cap).
    # Copy costs per size: sized on that size's nominal batch (``folios_per_batch`` folios;
    # the pieces on the largest run of pages), models/MECHANISM.md §4.2.
    big = 1.0
    for c in range(ncls):
        big = max(big, cls_cnt[c] * cls_kb[c] / page_kb)
    f = 0
    for c in range(ncls):
        unit = folios_per_batch(limit, cls_kb[c] / page_kb, n)
        _class_costs(prof, rc, kcode, hint, cls_kb[c], unit, engine, threads, mapcount, cc, c)
        for _j in range(int(cls_cnt[c])):
            fcls[f] = c
            f += 1
    pcls = ncls  # order-0 pieces of split folios
    unit = folios_per_batch(limit, 1.0, big)
    _class_costs(prof, rc, kcode, hint, page_kb, unit, engine, threads, mapcount, cc, pcls)
    fcls[fcls.shape[0] - 1] = pcls
    nbat = 0
    bstart[0] = 0
    if pre63:
        nbat = 1
        bstart[1] = n_int
    else:
        pages = 0.0
        for j in range(n_int):
            pages += cc[fcls[j], CC_FP]
            if pages >= limit or j == n_int - 1:
                nbat += 1
                bstart[nbat] = j + 1
                pages = 0.0
    cv = copy_jitter_cv(prof, engine)
    mt = engine == ENGINE_MT
    busy_s = prof[BUSY_ATTEMPT]
    inv_rate = 1.0 / rate if rate > 0.0 else 0.0

    # Lone folios, one size, nothing that couples them (allocation failure ends the call;
    # writeback sends folios to the fallback in order): the vectorized replica.
    lone = ncls == 1 and af <= 0.0 and wb <= 0.0 and (pre63 or nbat == n_int)
    s_time = s_time2 = s_pages = s_pages2 = s_tp = 0.0
    s_rounds = s_rounds2 = s_ipis = s_ipis2 = s_cpu = s_cpu2 = s_remote = 0.0
    s_win = s_win2 = s_m = s_m2 = s_wm = 0.0
    s_w50 = s_w99 = s_w99sq = s_s50 = s_s99 = s_s99sq = 0.0
    s_failed = s_failed2 = s_passes = s_passes2 = 0.0
    for _rep in range(replicas):
        if lone:
            t, rounds, ipis, remote_cpu, wait, extra, failed, passes_sum, m, pages, s0, ts, tpos, dr, nr = (
                _lone_replica(s0, ts, n_int, pre63, sync != 0, p, busy_s, cv, mt, cc, rc, kbuf, tbuf, wbuf)
            )
        else:
            t, rounds, ipis, remote_cpu, wait, extra, failed, passes_sum, m, pages, s0, ts, tpos, dr, nr = _replica(
                s0, ts, tpos, pool, cc, rc, fcls, bstart, nbat, pre63, sync != 0, p, wb, wbwait, af, busy_s, cv,
                mt, pcls, ncls, pend, ubuf, tbuf, fbuf, spl, wbf, wbuf, kbuf, runs,
            )  # fmt: skip
        nd += dr
        time = prof[CALL_SETUP] + t
        cpu = time - wait + extra
        if rate > 0.0 and m > 0:
            _copy(wbuf, sbuf, m)
            win = _stalls_inplace(s0, m, inv_rate, sbuf)
            s0 += np.uint64(m) * _GOLDEN
            nd += m
        else:
            win = _sum(wbuf, m)
        if nr > 0 and nr * RUN_MIN_FOLIOS <= m:  # few long batches: order statistics of the sequences
            w50 = runs_kth(runs, nr, max(math.ceil(0.50 * m) - 1, 0), tmp1)
            w99 = runs_kth(runs, nr, max(math.ceil(0.99 * m) - 1, 0), tmp1)
        else:
            w50, w99 = p50_p99(wbuf, m, samp, tmp1, tmp2)
        # Stalls are often mostly zero (no touch inside the window): then both quantiles are 0.
        # When half of them or more are zero the p50 is 0 and only the p99 needs a selection.
        st50 = st99 = 0.0
        if rate > 0.0 and m > 0:
            n_pos = _count_positive(sbuf, m)
            k99 = max(math.ceil(0.99 * m) - 1, 0)
            if n_pos >= m - max(math.ceil(0.50 * m) - 1, 0):
                st50, st99 = p50_p99(sbuf, m, samp, tmp1, tmp2)
            elif n_pos >= m - k99:
                st99 = kth_smallest(sbuf, m, k99, samp, tmp1)
        passes_mean = passes_sum
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
    out[C_TIME_S, col] = t_mu
    out[C_PAGES_PER_S, col] = pps
    out[C_BYTES_PER_S, col] = pps * page_kb * 1024.0
    out[C_FLUSH_ROUNDS, col], out[C_FLUSH_ROUNDS_SE, col] = mean_se(s_rounds, s_rounds2)
    out[C_IPIS, col], out[C_IPIS_SE, col] = mean_se(s_ipis, s_ipis2)
    out[C_CPU_TIME_S, col], out[C_CPU_TIME_S_SE, col] = mean_se(s_cpu, s_cpu2)
    out[C_REMOTE_CPU_TIME_S, col] = s_remote / R
    wm, wm_se = ratio_se(s_win, s_win2, s_m, s_m2, s_wm)
    out[C_WINDOW_MEAN_S, col] = wm
    out[C_WINDOW_P99_S, col], out[C_WINDOW_P99_S_SE, col] = mean_se(s_w99, s_w99sq)
    out[C_STALL_P99_S, col], out[C_STALL_P99_S_SE, col] = mean_se(s_s99, s_s99sq)
    out[C_FAILED_FOLIOS, col], out[C_FAILED_FOLIOS_SE, col] = mean_se(s_failed, s_failed2)
    out[C_PASSES, col], out[C_PASSES_SE, col] = mean_se(s_passes, s_passes2)
    out[C_TIME_S_SE, col] = t_se
    out[C_PAGES_PER_S_SE, col] = pps_se
    out[C_WINDOW_MEAN_S_SE, col] = wm_se
    out[C_WINDOW_P50_S, col] = s_w50 / R
    out[C_STALL_P50_S, col] = s_s50 / R
    out[C_REPLICAS, col] = R
    state[0] = s0
    state[1] = nd
    state[2] = ts
    state[3] = tpos
    return nd


@_jit
def window_capacity(cls_kb, cls_cnt, ncls: int, n: float, page_kb: float) -> int:
    """Windows one call of a point may produce when its large folios can be split: every folio
    and every base page (the pieces)."""
    pages = 0.0
    for c in range(ncls):
        pages += cls_cnt[c] * cls_kb[c] / page_kb
    return int(n + pages)


#: Scratch bytes of the kernel per folio of the largest point (12 buffers of 8-byte values), and per
#: window beyond the folios (6 buffers: split pieces under allocation failure).
SCRATCH_BYTES_PER_FOLIO = 12 * 8
SCRATCH_BYTES_PER_PIECE = 6 * 8
#: Largest scratch one kernel call may ask for.
MAX_SCRATCH_BYTES = 4 * 2**30


@nb.njit(cache=True, nogil=True, error_model="numpy")
def mc_kernel(
    pidx, seeds, kcode, ncls, cls_kb, cls_cnt, n, limit, engine, threads, targets, mapcount, p, rate, sync,
    hint, wb, wbwait, af, table, replicas, out,
):  # fmt: skip
    """Every point of the arrays (one entry per point; ``cls_kb``/``cls_cnt`` one row per point)."""
    nmax = 1
    for i in range(n.shape[0]):
        nmax = max(nmax, int(n[i]))
    wmax = nmax
    for i in range(n.shape[0]):  # windows: folios plus the pieces of split folios
        if af[i] > 0.0:
            wmax = max(wmax, window_capacity(cls_kb[i], cls_cnt[i], ncls[i], n[i], table[pidx[i], PAGE_KB]))
    cc = np.zeros((MAX_MIX + 1, CC_WIDTH), dtype=np.float64)  # the mix's sizes, then pieces
    rc = np.zeros(RC_WIDTH, dtype=np.float64)
    fcls = np.zeros(nmax + 1, dtype=np.int64)
    bstart = np.zeros(nmax + 1, dtype=np.int64)
    pend = np.empty(nmax, dtype=np.int64)
    ubuf = np.empty(wmax, dtype=np.int64)
    tbuf = np.empty(wmax, dtype=np.float64)
    fbuf = np.empty(nmax, dtype=np.int64)
    spl = np.empty(nmax, dtype=np.int64)
    wbf = np.zeros(nmax, dtype=np.int64)
    kbuf = np.empty(nmax, dtype=np.float64)
    runs = np.empty((3, wmax // RUN_MIN_FOLIOS + 2), dtype=np.float64)
    wbuf = np.empty(wmax, dtype=np.float64)
    sbuf = np.empty(wmax, dtype=np.float64)
    state = np.zeros(4, dtype=np.uint64)
    pool = np.empty(TAIL_POOL, dtype=np.float64)
    samp = np.empty(SAMPLE, dtype=np.float64)
    tmp1 = np.empty(wmax + 1, dtype=np.float64)
    tmp2 = np.empty(wmax + 1, dtype=np.float64)
    draws = 0
    for i in range(n.shape[0]):
        draws += mc_point(
            table[pidx[i]], seeds[i], kcode[i], ncls[i], cls_kb[i], cls_cnt[i], n[i], limit[i], engine[i],
            threads[i], targets[i], mapcount[i], p[i], rate[i], sync[i], hint[i], wb[i], wbwait[i], af[i],
            replicas, cc, rc, fcls, bstart, pend, ubuf, tbuf, fbuf, spl, wbf, wbuf, sbuf, kbuf, runs, state,
            pool, samp, tmp1, tmp2, out, i,
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
    cols: list[np.ndarray] = [
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
        arrays.kernel_code,
        arrays.numa_hinting,
        arrays.writeback_prob,
        arrays.writeback_wait_s,
        arrays.alloc_fail_prob,
        *np.asarray(arrays.mix_kb, dtype=np.float64).T,
        *np.asarray(arrays.mix_folios, dtype=np.float64).T,
    ]
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
    n_pts = len(arrays)
    _check_scratch(arrays, table)
    out = np.zeros((N_COLS, n_pts), dtype=np.float64)
    seeds = point_seeds(arrays, profile_names(), seed)
    mc_kernel(*kernel_inputs(arrays, seeds), table, replicas, out)
    return {name: out[i] for i, name in enumerate(_COLUMNS)}


def _check_scratch(arrays: PointArrays, table: np.ndarray) -> None:
    """Refuse, with a message saying what fits, a call whose scratch would not fit in memory: a
    point with allocation failures keeps a window per split piece (every base page)."""
    from models.errors import UserError

    if len(arrays) == 0:
        return
    n = np.asarray(arrays.n_folios, dtype=np.float64)
    page_kb = table[arrays.profile_index, PAGE_KB]
    pages = (np.asarray(arrays.mix_folios) * np.asarray(arrays.mix_kb)).sum(axis=1) / page_kb
    pieces = np.where(np.asarray(arrays.alloc_fail_prob) > 0.0, pages, 0.0)
    need = n.max() * SCRATCH_BYTES_PER_FOLIO + pieces.max() * SCRATCH_BYTES_PER_PIECE
    if need > MAX_SCRATCH_BYTES:
        i = int(np.argmax(n * SCRATCH_BYTES_PER_FOLIO + pieces * SCRATCH_BYTES_PER_PIECE))
        raise UserError(
            f"point {i + 1}: the Monte Carlo scratch for {n[i]:.4g} folios"
            + (f" and {pieces[i]:.4g} split pieces (alloc_fail_prob > 0)" if pieces[i] > 0 else "")
            + f" is {need / 2**30:.1f} GiB, above {MAX_SCRATCH_BYTES // 2**30} GiB: fewer folios"
            + (", smaller folios or alloc_fail_prob = 0" if pieces[i] > 0 else "")
            + " fit"
        )


def kernel_inputs(arrays: PointArrays, seeds: np.ndarray) -> tuple[np.ndarray, ...]:
    """The per-point arrays of ``mc_kernel`` in its order (before ``table``). The folio list of a
    point is its mix (``mix_len`` sizes of ``mix_kb`` KiB, ``mix_folios`` folios each, in list
    order; a single ``folio_kb`` is a mix of one size, models/MECHANISM.md §1)."""
    f64 = np.float64
    return (
        arrays.profile_index, seeds, np.asarray(arrays.kernel_code, dtype=f64),
        np.ascontiguousarray(arrays.mix_len, dtype=np.int64), np.ascontiguousarray(arrays.mix_kb, dtype=f64),
        np.ascontiguousarray(arrays.mix_folios, dtype=f64), arrays.n_folios, arrays.batch_limit_pages,
        arrays.engine_code, arrays.copy_threads, arrays.target_cpus, arrays.mapcount, arrays.busy_prob,
        arrays.access_rate_hz, arrays.sync_mode, np.asarray(arrays.numa_hinting, dtype=f64),
        np.asarray(arrays.writeback_prob, dtype=f64), np.asarray(arrays.writeback_wait_s, dtype=f64),
        np.asarray(arrays.alloc_fail_prob, dtype=f64),
    )  # fmt: skip
