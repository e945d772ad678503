"""The phases of one ``migrate_pages()`` call as small compiled functions, shared by both models.

One function per physical concept (set-up and unmap, TLB flush round, copy, remap), SI units in
every name. The analytic model (``models.analytic``) combines their expectations in closed form; the
Monte Carlo model (``models.montecarlo``) draws the random parts around the same means. Keeping
the physics here, once, is what makes "Monte Carlo mean == analytic expectation" a meaningful test.

Profile values come as one float64 row ``prof`` (see ``models.profiles.FIELD_INDEX``).

The mechanism these functions serve is ``models/MECHANISM.md`` (batches cut in list order until
the pages reach the cap; all unmap passes, one batch flush, then the move phase; immediate
per-PTE flushes before 6.3, in the sync fallback and on arm64 before 6.6; PMD-mapped THPs flushed
at unmap; INVLPGB from 6.15). ``folios_per_batch`` sizes a copy's nominal batch (one size).
"""

from __future__ import annotations

import math

import numba as nb
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

from models.profiles import FIELD_INDEX as _F

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
DSA_BW = _F["dsa_channel_gbps"]
DSA_DESC = _F["dsa_desc_setup_us"]
DSA_SUBMIT = _F["dsa_submit_us"]
DSA_COMPLETION = _F["dsa_completion_us"]
DSA_CV = _F["dsa_jitter_cv"]
BCAST_ISSUE = _F["broadcast_issue_ns"]
BCAST_SYNC = _F["broadcast_sync_us"]
BCAST_PER_CPU = _F["broadcast_per_cpu_ns"]
FLUSH_ARM64 = _F["flush_arm64"]
INVLPGB = _F["invlpgb"]
CPUS = _F["cpus"]

ENGINE_CPU, ENGINE_MT, ENGINE_DMA, ENGINE_DSA = 0, 1, 2, 3
# Retry limits, mm/migrate.c (v6.3+; the same counts drive unmap_and_move()'s passes before 6.3).
NR_MAX_MIGRATE_PAGES_RETRY = 10  # passes of migrate_pages_batch() in MIGRATE_ASYNC mode
NR_MAX_MIGRATE_ASYNC_RETRY = 3  # async batched passes of migrate_pages_sync() before the fallback
NR_MAX_MIGRATE_SYNC_RETRY = NR_MAX_MIGRATE_PAGES_RETRY - NR_MAX_MIGRATE_ASYNC_RETRY  # 7, per folio
# Shorter names the Monte Carlo kernel uses for the same limits.
ASYNC_BATCHED_PASSES = NR_MAX_MIGRATE_PAGES_RETRY
SYNC_BATCHED_PASSES = NR_MAX_MIGRATE_ASYNC_RETRY
SYNC_SINGLE_PASSES = NR_MAX_MIGRATE_SYNC_RETRY

_jit = nb.njit(cache=True, nogil=True, inline="always", error_model="numpy", fastmath=True, _nrt=False)


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
    if prof[FLUSH_ARM64] > 0.5:
        return 0.0
    return prof[HANDLER_FULL] if full else prof[HANDLER_PAGE]


@_jit
def expected_max_lomax(k: float, alpha: float) -> float:
    """E[max of k i.i.d. Lomax(alpha, scale 1)] = Γ(k+1)Γ(1-1/α)/Γ(k+1-1/α) - 1 (0 for k < 1)."""
    if k < 1.0:
        return 0.0
    a = 1.0 / alpha
    return math.exp(math.lgamma(k + 1.0) + math.lgamma(1.0 - a) - math.lgamma(k + 1.0 - a)) - 1.0


@intrinsic
def as_bits(typingctx, x):
    """The IEEE-754 bits of a float64 as an int64 (a register move, no memory)."""

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(types.float64), codegen


@intrinsic
def _from_bits(typingctx, b):
    """The float64 whose IEEE-754 bits are the int64 ``b``."""

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


# fdlibm's e_log.c / e_exp.c reductions and minimax coefficients, branch-free so that loops calling
# them vectorize (libm calls do not without SVML). Both are within 2 ulp of the correctly rounded
# result: log for positive normal x, exp for -708 <= x <= 709 (clamped outside); checked against
# numpy in tests/test_kernel_equivalence.py.
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e00
_LG = (
    6.666666666666735130e-01,
    3.999999999940941908e-01,
    2.857142874366239149e-01,
    2.222219843214978396e-01,
    1.818357216161805012e-01,
    1.531383769920937332e-01,
    1.479819860511658591e-01,
)
_P = (
    1.66666666666666019037e-01,
    -2.77777777770155933842e-03,
    6.61375632143793436117e-05,
    -1.65339022054652515390e-06,
    4.13813679705723846039e-08,
)


@_jit
def fast_log(x: float) -> float:
    """Natural log of a positive normal float64, branch-free (vectorizable), < 2 ulp error."""
    bits = as_bits(x)
    e = (bits >> 52) - 1023
    m = _from_bits((bits & 0x000FFFFFFFFFFFFF) | 0x3FF0000000000000)
    big = m > 1.4142135623730951
    m = m * 0.5 if big else m
    dk = float(e + 1 if big else e)
    f = m - 1.0
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    r = w * (_LG[1] + w * (_LG[3] + w * _LG[5])) + z * (_LG[0] + w * (_LG[2] + w * (_LG[4] + w * _LG[6])))
    hfsq = 0.5 * f * f
    return dk * _LN2_HI - ((hfsq - (s * (hfsq + r) + dk * _LN2_LO)) - f)


@_jit
def _exp_reduced(x: float):
    """Shared by fast_exp and fast_expm1: x = k·ln2 + r (r = hi - lo), e**r - 1 = hi - (lo - r·c/(2 - c)).

    Returns ``(k, hi, lo, r, c)`` with x clamped to [-708, 709].
    """
    x = min(max(x, -708.0), 709.0)
    k = math.floor(x * _INV_LN2 + 0.5)
    hi = x - k * _LN2_HI
    lo = k * _LN2_LO
    r = hi - lo
    t = r * r
    c = r - t * (_P[0] + t * (_P[1] + t * (_P[2] + t * (_P[3] + t * _P[4]))))
    return k, hi, lo, r, c


@_jit
def fast_exp(x: float) -> float:
    """e**x for -708 <= x <= 709 (clamped outside), branch-free (vectorizable), < 2 ulp error."""
    k, hi, lo, r, c = _exp_reduced(x)
    y = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi)
    return y * _from_bits((int(k) + 1023) << 52)


@_jit
def fast_expm1(x: float) -> float:
    """e**x - 1 for -708 <= x <= 709 (clamped outside), branch-free (vectorizable), a few ulp.

    ``fast_exp``'s reduction x = k·ln2 + r gives e**x - 1 = q·2^k + (2^k - 1) with q = e**r - 1
    computed without adding 1, so nothing cancels near 0 (k = 0 there).
    """
    k, hi, lo, r, c = _exp_reduced(x)
    q = hi - (lo - (r * c) / (2.0 - c))
    scale = _from_bits((int(k) + 1023) << 52)
    return q * scale + (scale - 1.0)


@_jit
def draw_max_lomax(k: float, alpha: float, u: float) -> float:
    """One draw of the max of k Lomax(alpha) from one uniform u in (0, 1): F_max = F^k."""
    if k < 1.0:
        return 0.0
    # The max is M^(-1/alpha) - 1 with M = 1 - u^(1/k) the min of k uniforms, written with exp/log
    # (cheaper than two pow() calls). M = -expm1(log(u)/k) keeps its relative precision when it is
    # tiny (u near 1, many CPUs): 1 - exp() there would cancel, and M^(-1/alpha) is the largest tails.
    m = max(-fast_expm1(fast_log(u) / k), 1e-300)
    return fast_exp(-fast_log(m) / alpha) - 1.0


@_jit
def copy_engine_costs(prof, engine, threads: float, folio_bytes: float, unit_folios: float):
    """Cost structure of one copy call of ``unit_folios`` folios (nominal size).

    Returns ``(call_s, per_folio_s, per_folio_wait_s, call_wait_s, progressive, threads_used)``:
    the fixed cost per copy call, the cost per folio, the parts of both during which the initiating
    CPU only waits (DMA transfer and completion), whether folios are remapped one by one as they
    are copied (``cpu``) or after the whole batch, and the threads really used.

    Written branch-free (every engine's terms computed, then selected) with constant indices into
    ``prof``, so that a loop over points of mixed engines vectorizes; ``engine`` may be an int or a
    float code.
    """
    ceiling = prof[MEM_CEILING]
    one = min(prof[CPU_BW], ceiling)
    # cpu, and mt-cpu with one useful thread: folio by folio, remapped as copied.
    single_pf = prof[CPU_FIXED] + folio_bytes / one
    # mt-cpu: the batch split across t threads (USL scaling, capped by the memory ceiling).
    chunks = max(1.0, math.floor(unit_folios * folio_bytes / prof[MT_MIN_CHUNK]))
    t = min(threads, prof[CPUS], chunks)
    scale = t / (1.0 + prof[MT_SIGMA] * (t - 1.0) + prof[MT_KAPPA] * t * (t - 1.0))
    mt_pf = prof[CPU_FIXED] + folio_bytes / min(prof[CPU_BW] * scale, ceiling)
    # dma/dsa: one descriptor per folio on ``threads`` channels.
    dsa = engine == ENGINE_DSA
    chan_bw = prof[DSA_BW] if dsa else prof[DMA_BW]
    submit = prof[DSA_SUBMIT] if dsa else prof[DMA_SUBMIT]
    completion = prof[DSA_COMPLETION] if dsa else prof[DMA_COMPLETION]
    desc = prof[DSA_DESC] if dsa else prof[DMA_DESC]
    transfer = folio_bytes / min(threads * chan_bw, ceiling)

    is_dma = engine >= ENGINE_DMA
    single = engine == ENGINE_CPU or (not is_dma and t <= 1.0)
    call = submit + completion if is_dma else (0.0 if single else prof[MT_DISPATCH])
    per_folio = desc + transfer if is_dma else (single_pf if single else mt_pf)
    per_folio_wait = transfer if is_dma else 0.0
    call_wait = completion if is_dma else 0.0
    used = threads if is_dma else (1.0 if single else t)
    return call, per_folio, per_folio_wait, call_wait, single, used


@_jit
def copy_jitter_cv(prof, engine: int) -> float:
    if engine == ENGINE_DMA:
        return prof[DMA_CV]
    if engine == ENGINE_DSA:
        return prof[DSA_CV]
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


# ---------------------------------------------------------------------------------------------
# The mechanism of models/MECHANISM.md: which flushes happen, and what one round costs.
# ---------------------------------------------------------------------------------------------
#: Releases at which the mechanism changes (kernel_code = 100·MAJOR + MINOR).
K_BATCHED = 603  # mm/migrate.c migrate_pages_batch(): batches, TTU_BATCH_FLUSH in async mode (v6.3)
K_SKIP_INACCESSIBLE = 604  # mm/rmap.c set_tlb_ubc_flush_pending(): !pte_accessible() -> no batch flush (v6.4)
K_ARM64_BATCHED = 606  # arch/arm64: ARCH_WANT_BATCHED_UNMAP_TLB_FLUSH (v6.6)
K_INVLPGB = 615  # arch/x86/mm/tlb.c: broadcast_tlb_flush(), INVLPGB for mms with a global ASID (v6.15)
INVLPGB_MIN_CPUS = 4.0  # arch/x86/mm/tlb.c consider_global_asid(): mm_active_cpus_exceeds(mm, 3)


@_jit
def uses_broadcast(prof, kernel_code: float, targets: float) -> bool:
    """Flushes are broadcast invalidations (no IPIs): arm64 always; x86 with INVLPGB from 6.15 for
    an mm on 4 or more CPUs (arch/x86/mm/tlb.c ``consider_global_asid()``, v6.15)."""
    x86_bcast = prof[INVLPGB] > 0.5 and kernel_code >= K_INVLPGB and targets >= INVLPGB_MIN_CPUS
    return prof[FLUSH_ARM64] > 0.5 or x86_bcast


@_jit
def defers_flush(prof, kernel_code: float, targets: float) -> bool:
    """``should_defer_flush()`` for an unmap with ``TTU_BATCH_FLUSH`` (the async passes).

    mm/rmap.c ``should_defer_flush()``: never before 6.3 (migration did not pass
    ``TTU_BATCH_FLUSH``); x86 ``arch_tlbbatch_should_defer()``: another CPU in the mm's cpumask;
    arm64 only from 6.6 (``ARCH_WANT_BATCHED_UNMAP_TLB_FLUSH``).
    """
    if kernel_code < K_BATCHED:
        return False
    if prof[FLUSH_ARM64] > 0.5:
        return kernel_code >= K_ARM64_BATCHED
    return targets > 1.0


@_jit
def broadcast_sync_s(prof) -> float:
    """Wait for broadcast invalidations to complete (arm64 ``dsb(ish)``, x86 ``tlbsync()``): it
    reaches every CPU of the machine, not only the mm's (arm64 has no ``mm_cpumask``)."""
    return (
        prof[BCAST_SYNC] + prof[BCAST_PER_CPU] * (prof[CPUS] - 1.0) + prof[SOCKET_HOP] * (prof[SOCKETS] - 1.0)
    )


@_jit
def entry_round_fixed_s(prof, bcast: bool, targets: float) -> float:
    """Deterministic part of one immediate single-entry flush (one PTE or one PMD).

    x86: ``flush_tlb_mm_range()`` → INVLPG locally and an IPI to each other CPU of the mm (plus the
    acknowledgement tail, not included here); broadcast: ``flush_tlb_page()`` on arm64 (TLBI …IS +
    DSB ISH) or ``broadcast_tlb_flush()`` on x86 (INVLPGB + TLBSYNC).
    """
    if bcast:
        return prof[LOCAL_PAGE_FLUSH] + prof[BCAST_ISSUE] + broadcast_sync_s(prof)
    return flush_fixed_s(prof, False, 1.0, targets)


@_jit
def batch_round_fixed_s(prof, bcast: bool, targets: float) -> float:
    """Deterministic part of the batch flush ``try_to_unmap_flush()`` → ``arch_tlbbatch_flush()``.

    x86: a full flush of the batch's cpumask (IPIs; tail not included); broadcast: only the
    completion wait (the invalidations were issued per PTE at unmap).
    """
    if bcast:
        return broadcast_sync_s(prof)
    return flush_fixed_s(prof, True, 1.0, targets)


@_jit
def pmd_mapped(prof, pages_per_folio: float) -> bool:
    """A folio of PTRS_PER_PTE pages is mapped by one PMD (a PMD-sized THP)."""
    return pages_per_folio >= prof[PAGE_KB] * 1024.0 / 8.0


# ---------------------------------------------------------------------------------------------
# Windows and stalls: quantiles of the unmapped windows and of the application stall they cause.
# ---------------------------------------------------------------------------------------------
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
def halley_step(x: float, c: float) -> float:
    """Halley's step (cubic convergence) on f(x) = x + expm1(-x) - c; f' = -expm1(-x), f'' = e^-x."""
    emx = fast_expm1(-x)
    f = x + emx - c
    d1 = -emx
    return x - 2.0 * f * d1 / (2.0 * d1 * d1 - f * (1.0 + emx))


@_jit
def stall_quantile(w_lo: float, w_hi: float, rate_hz: float, q: float) -> float:
    """q-quantile of max(0, W - E), W uniform on [w_lo, w_hi], E ~ Exp(rate_hz).

    With tail τ = 1 - q, L = λ·(w_hi - w_lo) and s the quantile, P(S > s) = τ has two regimes:
    s <= w_lo (closed form) and s >= w_lo, where x = λ(w_hi - s) solves x + expm1(-x) = τL
    (two Halley steps from the inverse series or from τL + 1: within 6e-14 of the root).
    """
    if not (rate_hz > 0.0 and w_hi > 0.0):
        return 0.0
    tail = 1.0 - q
    lam = rate_hz
    h = w_hi - w_lo
    if h < 1e-9 * w_hi:
        return max(w_hi + fast_log(1.0 - tail) / lam, 0.0)
    L = lam * h
    em = fast_expm1(-L)
    c = tail * L
    if L + em <= c:
        return max(w_lo + fast_log((1.0 - tail) * L / -em) / lam, 0.0)
    y = math.sqrt(2.0 * c)
    x = y * (1.0 + y * (1.0 / 6.0 + y * (1.0 / 72.0))) if c < 1.0 else c + 1.0
    x = halley_step(halley_step(x, c), c)
    return max(w_hi - x / lam, 0.0)
