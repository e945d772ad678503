"""The analytic model's fast path: one-size points without allocation failure, SIMD over points.

Most points of a sweep migrate folios of one size and never fail an allocation. For them,
:func:`models.analytic.point_outputs` reduces to a fixed shape: one folio type, at most two
batches (a run of ``full`` identical batches of ``b = ceil(limit / fp)`` folios, weighted by
``full``, then the remainder), each followed by the synchronous fallback in sync mode, then the
outputs and the first batch's window line. Here that shape runs over the points of a block, one
chunk of :data:`CHUNK` points of one profile at a time, in loops that each do one thing:

1. :func:`_prepare`: the chunk's inputs copied into a scratch (``memcpy`` loops), then
   :func:`_shapes` (vectorized): eligibility, batch shapes and the rows of the batch-shape cache,
   then a scalar loop: the acknowledgement tail (a gather) and both batches' moments from the exact
   cache of :mod:`models.passmoments` (a miss calls ``pow``, which has no vector form with the
   same bits), while it prefetches the next chunk's inputs (their transfer from memory then
   overlaps this chunk's arithmetic);
2. :func:`_fast_outputs` (vectorized): the per-size set-up, both batches' closed forms, the
   fallbacks, the outputs and the window range, written without branches (every case computed,
   then selected) so that the compiler runs it in SIMD lanes;
3. :func:`_stall_quantiles` (vectorized): the stall quantile from the window range.

The scratch rows are :data:`ROW` values apart and read by the vectorized loops through one array
each, so that the compiler needs one overlap check per loop (it gives up beyond a few).

Bit-identical to the scalar path: every value is the same IEEE-754 expression, operand for
operand, as in :func:`models.analytic.point_outputs` (no ``fastmath``, no FMA contraction); a
selection only picks a value. Where the scalar path skips an addition (a batch that does not run,
a fallback without candidates, a single-threaded copy's extra CPU time) the lanes add ``0.0``,
which leaves an accumulator unchanged: accumulators start at ``+0.0`` or a positive set-up time and
so are never ``-0.0``. ``tests/test_analyticfast.py`` compares both paths with ``check_exact``.

References
----------
mm/migrate.c ``migrate_pages()`` (batches cut with ``list_cut_before()`` when the pages reach
``NR_MAX_BATCHED_MIGRATION``), ``migrate_pages_batch()``, ``migrate_pages_sync()`` (v6.3+).
"""

from __future__ import annotations

import math

import numba as nb
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic
from numba.np.unsafe.ndarray import to_fixed_tuple

from models.analyticvec import stall_quantile_select
from models.params import OUTPUT_INDEX, OUTPUTS
from models.passmoments import (
    M_PASSES,
    M_PCALL,
    M_QF,
    M_QFB,
    M_QQ,
    M_QQB,
    M_SF,
    M_SKQ,
    M_X,
    moments_at,
    moments_slot,
)
from models.phases import (
    ACK_SCALE,
    BCAST_ISSUE,
    BUSY_ATTEMPT,
    CALL_SETUP,
    ENGINE_MT,
    FOLIO_SETUP,
    HANDLER_FULL,
    HANDLER_PAGE,
    K_BATCHED,
    K_SKIP_INACCESSIBLE,
    NR_MAX_MIGRATE_ASYNC_RETRY,
    NR_MAX_MIGRATE_PAGES_RETRY,
    NR_MAX_MIGRATE_SYNC_RETRY,
    PAGE_KB,
    PAGE_SETUP,
    REMAP,
    REMAP_PTE,
    UNMAP,
    UNMAP_PTE,
    batch_round_fixed_s,
    copy_engine_costs,
    defers_flush,
    entry_round_fixed_s,
    folios_per_batch,
    line_quantile,
    pmd_mapped,
    uses_broadcast,
    window_line,
)
from models.profiles import FIELD_INDEX


@intrinsic
def _prefetch(typingctx, arr, i):
    """Hint the cache to fetch ``arr[i]`` (1-D) or ``arr[i, 0]`` (2-D): ``llvm.prefetch``, read,
    high locality. Never faults, changes no value."""
    sig = types.void(arr, i)

    def codegen(context, builder, sig, args):
        aryty = sig.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        idx = [args[1]] + [context.get_constant(types.intp, 0)] * (aryty.ndim - 1)
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, idx, wraparound=False)
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module,
            ir.FunctionType(ir.VoidType(), [cgutils.voidptr_t, i32, i32, i32]),
            "llvm.prefetch.p0",
        )
        builder.call(fn, [builder.bitcast(ptr, cgutils.voidptr_t), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return sig, codegen


# No fastmath: a vector lane performs the scalar path's operations (issue 13).
_jit = nb.njit(cache=True, nogil=True, error_model="numpy", fastmath=False, _nrt=False)
_jit_inline = nb.njit(
    cache=True, nogil=True, error_model="numpy", fastmath=False, _nrt=False, inline="always"
)

O_TIME = OUTPUT_INDEX["time_s"]
O_PAGES_PER_S = OUTPUT_INDEX["pages_per_s"]
O_BYTES_PER_S = OUTPUT_INDEX["bytes_per_s"]
O_FLUSH_ROUNDS = OUTPUT_INDEX["flush_rounds"]
O_IPIS = OUTPUT_INDEX["ipis"]
O_CPU_TIME = OUTPUT_INDEX["cpu_time_s"]
O_REMOTE_CPU = OUTPUT_INDEX["remote_cpu_time_s"]
O_WINDOW_MEAN = OUTPUT_INDEX["window_mean_s"]
O_WINDOW_P99 = OUTPUT_INDEX["window_p99_s"]
O_FAILED = OUTPUT_INDEX["failed_folios"]
O_PASSES = OUTPUT_INDEX["passes"]
O_STALL_P99 = OUTPUT_INDEX["stall_p99_s"]
Q = 0.99

#: Points per chunk: the scratch of one chunk stays in the core's L1/L2 between the two loops.
CHUNK = 512
#: Row stride of the chunk scratch: not a multiple of 4 KiB, or every row of a column maps to the
#: same L1 set (and loads alias earlier stores), which costs more than the arithmetic.
ROW = CHUNK + 8
#: Shortest run of points of one profile worth the fast path (the profile row is loop-invariant).
MIN_RUN = 8
#: Largest folio count the batch shape is exact for in float64 (integers, no rounding).
_EXACT = 2.0**52

N_FIELDS = len(FIELD_INDEX)
N_OUT = len(OUTPUTS)
# Rows of the chunk scratch written by :func:`_prepare`.
# The point's inputs are copied there too: a vectorized loop over one array needs no run-time
# overlap check per input array (the compiler gives up beyond a few).
(S_OK, S_TAIL, S_N0, S_FP, S_X, S_SF, S_SKQ, S_QQB, S_QFB, S_QQ, S_QF, S_PASSES1, S_PCALL1, S_PASSES2,
 S_PCALL2, S_KERN, S_N, S_LIMIT, S_ENGINE, S_THREADS, S_TARGETS, S_MAPCOUNT, S_P, S_SYNC, S_NUMA, S_WB,
 S_WB_WAIT, S_ALLOC, S_MIXLEN, S_KB, S_ABAR, S_B1, S_B2, S_B, S_FULL, S_REM, S_RATE) = range(37)  # fmt: skip
N_SCRATCH = 37
# Rows of the chunk results: the outputs (by OUTPUT_INDEX), then the first batch's window range
# (:func:`_fast_outputs` writes it, :func:`_stall_quantiles` reads it).
R_W_LO = N_OUT
R_W_HI = N_OUT + 1
N_RESULT = N_OUT + 2


@_jit_inline
def batch_shape(limit: float, fp: float, n0: float):
    """``(b, full, rem)``: ``full`` batches of ``b`` folios then a remainder of ``rem`` folios, as
    :func:`models.analytic.point_outputs` cuts ``n0`` folios of ``fp`` pages (``full`` may be 0,
    ``rem`` may be 0)."""
    b = max(1.0, math.ceil(limit / fp))
    full = math.floor(n0 / b)
    rem = n0 - full * b if full >= 1.0 else n0
    return b, full, rem


@_jit_inline
def _copy_in(lo: int, m: int, src, sc, row: int) -> None:
    """``sc[row, :m] = src[lo:lo + m]`` (a loop of its own: the compiler makes it a memcpy)."""
    base = row * ROW
    for j in range(m):
        sc[base + j] = src[lo + j]


@_jit_inline
def _copy_in_first(lo: int, m: int, src, sc, row: int) -> None:
    """``sc[row, :m] = src[lo:lo + m, 0]`` (the first size or count of each point's mix)."""
    base = row * ROW
    for j in range(m):
        sc[base + j] = src[lo + j, 0]


@_jit_inline
def _copy_out(lo: int, m: int, res, row: int, dst) -> None:
    """``dst[lo:lo + m] = res[row, :m]``."""
    base = row * ROW
    for j in range(m):
        dst[lo + j] = res[base + j]


@_jit
def _shapes(m: int, page_kb: float, sc, slots) -> None:
    """Vectorized: eligibility, folio pages, the batch shape and the cache rows of both batches'
    moments of the ``m`` points in ``sc`` (``slots``: two rows of :data:`ROW` int64)."""
    for j in range(m):
        n0 = sc[S_N0 * ROW + j]
        a = sc[S_ALLOC * ROW + j]
        ok = (
            sc[S_MIXLEN * ROW + j] == 1.0
            and sc[S_KERN * ROW + j] >= K_BATCHED
            and not a > 0.0
            and n0 >= 1.0
            and n0 <= _EXACT
            and math.floor(n0) == n0
        )
        fp = sc[S_KB * ROW + j] / page_kb
        b, full, rem = batch_shape(sc[S_LIMIT * ROW + j], fp, n0)
        has1 = full >= 1.0
        abar = a if fp > 1.0 else 0.0
        n_pass = NR_MAX_MIGRATE_ASYNC_RETRY if sc[S_SYNC * ROW + j] != 0.0 else NR_MAX_MIGRATE_PAGES_RETRY
        b1 = b if has1 else rem
        b2 = rem if (has1 and rem > 0.0) else b1
        p = sc[S_P * ROW + j]
        w = sc[S_WB * ROW + j]
        sc[S_OK * ROW + j] = 1.0 if ok else 0.0
        sc[S_FP * ROW + j] = fp
        sc[S_ABAR * ROW + j] = abar
        sc[S_B * ROW + j] = b
        sc[S_FULL * ROW + j] = full
        sc[S_REM * ROW + j] = rem
        sc[S_B1 * ROW + j] = b1
        sc[S_B2 * ROW + j] = b2
        slots[j] = moments_slot(abar, p, w, n_pass, b1)
        slots[ROW + j] = moments_slot(abar, p, w, n_pass, b2)


@_jit
def _prepare(lo: int, hi: int, prof, pi: int, kern, mix_len, mix_kb, mix_n, n, limit, engine, threads, targets,
             mapcount, p, rate, sync, numa, wb, wb_wait, alloc, emax, mkey, mval, sc, slots, nxt: int) -> int:  # fmt: skip
    """The fast path's preparation of points ``lo..hi-1`` of one profile, into ``sc[:, i - lo]``
    (row stride :data:`ROW`): the inputs, then (vectorized, :func:`_shapes`) eligibility (one size,
    batched release, no allocation failure, an exact whole folio count) and batch shapes, then
    (scalar) the acknowledgement tail and both batches' moments from the cache of
    :mod:`models.passmoments`. Returns how many points are eligible."""
    m = hi - lo
    _copy_in(lo, m, kern, sc, S_KERN)
    _copy_in(lo, m, n, sc, S_N)
    _copy_in(lo, m, limit, sc, S_LIMIT)
    _copy_in(lo, m, engine, sc, S_ENGINE)
    _copy_in(lo, m, threads, sc, S_THREADS)
    _copy_in(lo, m, targets, sc, S_TARGETS)
    _copy_in(lo, m, mapcount, sc, S_MAPCOUNT)
    _copy_in(lo, m, p, sc, S_P)
    _copy_in(lo, m, sync, sc, S_SYNC)
    _copy_in(lo, m, numa, sc, S_NUMA)
    _copy_in(lo, m, wb, sc, S_WB)
    _copy_in(lo, m, wb_wait, sc, S_WB_WAIT)
    _copy_in(lo, m, alloc, sc, S_ALLOC)
    _copy_in(lo, m, rate, sc, S_RATE)
    _copy_in(lo, m, mix_len, sc, S_MIXLEN)
    _copy_in_first(lo, m, mix_kb, sc, S_KB)
    _copy_in_first(lo, m, mix_n, sc, S_N0)
    _shapes(m, prof[PAGE_KB], sc, slots)
    ack_scale = prof[ACK_SCALE]
    count = 0
    for j in range(m):
        # The next chunk's inputs, spread over this loop: their transfer from memory overlaps the
        # arithmetic of this chunk (one line holds 8 values of a vector, one point of a mix).
        k = hi + j
        if k < nxt:
            _prefetch(mix_kb, k)
            _prefetch(mix_n, k)
            if (j & 7) == 0:
                _prefetch(kern, k)
                _prefetch(n, k)
                _prefetch(limit, k)
                _prefetch(engine, k)
                _prefetch(threads, k)
                _prefetch(targets, k)
                _prefetch(mapcount, k)
                _prefetch(p, k)
                _prefetch(rate, k)
                _prefetch(sync, k)
                _prefetch(numa, k)
                _prefetch(wb, k)
                _prefetch(wb_wait, k)
                _prefetch(alloc, k)
                _prefetch(mix_len, k)
        if sc[S_OK * ROW + j] < 0.5:
            continue
        count += 1
        tg = sc[S_TARGETS * ROW + j]
        sc[S_TAIL * ROW + j] = ack_scale * emax[pi, int(tg) - 1] if tg > 1.0 else 0.0
        abar = sc[S_ABAR * ROW + j]
        pp = sc[S_P * ROW + j]
        w = sc[S_WB * ROW + j]
        n_pass = NR_MAX_MIGRATE_ASYNC_RETRY if sc[S_SYNC * ROW + j] != 0.0 else NR_MAX_MIGRATE_PAGES_RETRY
        r1 = moments_at(slots[j], abar, pp, w, n_pass, sc[S_B1 * ROW + j], mkey, mval)
        sc[S_X * ROW + j] = mval[r1, M_X]
        sc[S_SF * ROW + j] = mval[r1, M_SF]
        sc[S_SKQ * ROW + j] = mval[r1, M_SKQ]
        sc[S_QQB * ROW + j] = mval[r1, M_QQB]
        sc[S_QFB * ROW + j] = mval[r1, M_QFB]
        sc[S_QQ * ROW + j] = mval[r1, M_QQ]
        sc[S_QF * ROW + j] = mval[r1, M_QF]
        sc[S_PASSES1 * ROW + j] = mval[r1, M_PASSES]
        sc[S_PCALL1 * ROW + j] = mval[r1, M_PCALL]
        # The remainder batch (its own shape, or the first batch's again when there is none).
        r2 = moments_at(slots[ROW + j], abar, pp, w, n_pass, sc[S_B2 * ROW + j], mkey, mval)
        sc[S_PASSES2 * ROW + j] = mval[r2, M_PASSES]
        sc[S_PCALL2 * ROW + j] = mval[r2, M_PCALL]
    return count


@_jit_inline
def _batch_terms(B: float, weight: float, x: float, sf: float, skq: float, a_qq_before: float, a_qf_before: float,
                 a_qq: float, a_qf: float, passes: float, p_call: float, ua: float, ra: float, queued: bool,
                 cf: float, cfw: float, r: float, fp: float, call_s: float, call_wait: float, progressive: bool,
                 t_used: float, is_mt: bool, bc: float, flush_s: float, batch_ipis: float, batch_remote: float,
                 entry_ipis: float, entry_remote: float):  # fmt: skip
    """The twelve accumulator increments (A_TIME … A_BATCHES) of ``weight`` batches of ``B``
    identical folios: :func:`models.analytic._batch_one` (batched move), the same expressions."""
    p_flush = p_call if queued else 0.0
    ec = ua * x + bc * sf
    bx = B * x
    time = B * ec + bx * (cf + r) + p_flush * flush_s + p_call * call_s
    wait = bx * cfw + p_call * call_wait
    extra = (t_used - 1.0) * bx * cf if is_mt else 0.0
    pairs = B * (B - 1.0)
    own_xc = B * (bc * skq + ua * x)
    e_cd = own_xc + bx * (B - 1.0) * ec
    sum_tu = own_xc + pairs * (ua * a_qq_before + bc * a_qf_before) + 0.5 * pairs * (ua * a_qq + bc * a_qf)
    e_cf = flush_s * bx if queued else 0.0
    g = r + (cf if progressive else 0.0)
    pair_g = bx * g + pairs * g * a_qq_before + 0.5 * pairs * g * a_qq
    cf_pairs = 0.0 if progressive else bx * cf * (1.0 - x) + bx * bx * cf
    win = e_cd + e_cf + call_s * bx + pair_g + cf_pairs - sum_tu
    entry_rounds = bx * ra
    return (
        weight * time,
        weight * (entry_rounds + p_flush),
        weight * (entry_rounds * entry_ipis + p_flush * batch_ipis),
        weight * (entry_rounds * entry_remote + p_flush * batch_remote),
        weight * wait,
        weight * extra,
        weight * bx * fp,
        weight * bx,
        weight * win,
        weight * bx,
        weight * passes,
        weight,
    )


@_jit_inline
def _fallback_terms(count: float, weight: float, abar: float, p_pa: float, p_s: float, fails: float, w: float,
                    bc: float, wb_wait_s: float, ui: float, ri: float, move: float, cfw1: float, cw1: float,
                    tu1: float, cf1: float, fp: float, entry_ipis: float, entry_remote: float):  # fmt: skip
    """Whether the synchronous fallback of ``count`` folios has candidates, and its increments of
    A_TIME … A_COUNT (A_EXTRA: for multi-threaded copies): :func:`models.analytic._fallback`'s
    expressions."""
    keep = count * (1.0 - abar)
    cand = keep * (p_pa + (1.0 - p_pa) * w)
    ok = cand * (1.0 - p_s)
    waited = keep * w * (1.0 - p_s) * wb_wait_s
    return (
        not cand <= 0.0,  # the scalar path skips cand <= 0.0 (so a NaN is added)
        weight * (cand * fails * bc + ok * (ui + move) + waited),
        weight * ok * ri,
        weight * ok * ri * entry_ipis,
        weight * ok * ri * entry_remote,
        weight * (ok * (cfw1 + cw1) + waited),
        weight * (tu1 - 1.0) * ok * cf1,
        weight * ok * fp,
        weight * ok,
        weight * ok * move,
        weight * ok,
    )


@_jit
def _fast_outputs(m: int, prof, sc, res) -> None:
    """Every output but the stall quantile of the ``m`` points prepared in ``sc`` (one profile) as
    :func:`models.analytic.point_outputs` computes them for a one-size point without allocation
    failure, into ``res[:, j]`` (rows: outputs by index, then the window range); branch-free
    (vectorized). ``prof``: the profile row as a tuple (constant indices into it are registers, so
    the selections of the phase functions need no conditional loads). Points that are not eligible
    (``sc[S_OK]``) get values the caller discards."""
    page_kb = prof[PAGE_KB]
    page_bytes = page_kb * 1024.0
    bc = prof[BUSY_ATTEMPT]
    call_setup = prof[CALL_SETUP]
    for j in range(m):
        kc = sc[S_KERN * ROW + j]
        tg = sc[S_TARGETS * ROW + j]
        mc = sc[S_MAPCOUNT * ROW + j]
        eng = sc[S_ENGINE * ROW + j]
        thr = sc[S_THREADS * ROW + j]
        lim = sc[S_LIMIT * ROW + j]
        pp = sc[S_P * ROW + j]
        w = sc[S_WB * ROW + j]
        wb_wait = sc[S_WB_WAIT * ROW + j]
        a = sc[S_ALLOC * ROW + j]
        is_sync = sc[S_SYNC * ROW + j] != 0.0
        is_numa = sc[S_NUMA * ROW + j] > 0.5
        tail_mean = sc[S_TAIL * ROW + j]
        # Flush context (point_outputs, the lines before the per-size loop).
        bcast = uses_broadcast(prof, kc, tg)
        defer = defers_flush(prof, kc, tg)
        skip_hint = is_numa and kc >= K_SKIP_INACCESSIBLE
        remote = tg - 1.0
        entry_s = entry_round_fixed_s(prof, bcast, tg) + (0.0 if bcast else tail_mean)
        entry_ipis = 0.0 if bcast else remote
        entry_remote = 0.0 if bcast else remote * prof[HANDLER_PAGE]
        flush_s = batch_round_fixed_s(prof, bcast, tg) + (0.0 if bcast else tail_mean)
        batch_ipis = 0.0 if bcast else remote
        batch_remote = 0.0 if bcast else remote * prof[HANDLER_FULL]
        is_mt = eng == ENGINE_MT
        # The one folio type (the per-size loop at k = 0).
        fp = sc[S_FP * ROW + j]
        fbytes = fp * page_bytes
        pmd = pmd_mapped(prof, fp)
        entries = 1.0 if pmd else fp
        u0 = prof[FOLIO_SETUP] + prof[PAGE_SETUP] * fp + (prof[UNMAP] + prof[UNMAP_PTE] * entries) * mc
        r_imm = mc if pmd else (0.0 if is_numa else fp * mc)
        ui = u0 + r_imm * entry_s
        queued_d = (not pmd) and not skip_hint
        r_a = mc if pmd else 0.0
        issue = fp * mc * prof[BCAST_ISSUE] if (queued_d and bcast) else 0.0
        ua = u0 + r_a * entry_s + issue if defer else ui
        ra = r_a if defer else r_imm
        queued = queued_d and defer
        r = (prof[REMAP] + prof[REMAP_PTE] * entries) * mc
        unit = folios_per_batch(lim, fp, sc[S_N * ROW + j])
        cs, cf, cfw, cw, prog, tu = copy_engine_costs(prof, eng, thr, fbytes, unit)
        cs1, cf1, cfw1, cw1, _prog1, tu1 = copy_engine_costs(prof, eng, thr, fbytes, 1.0)
        abar = a if fp > 1.0 else 0.0
        # Batches: `full` identical batches of b folios (weight full), then the remainder.
        b = sc[S_B * ROW + j]
        full = sc[S_FULL * ROW + j]
        rem = sc[S_REM * ROW + j]
        has1 = full >= 1.0
        has2 = rem > 0.0
        x = sc[S_X * ROW + j]
        sf = sc[S_SF * ROW + j]
        skq = sc[S_SKQ * ROW + j]
        qqb = sc[S_QQB * ROW + j]
        qfb = sc[S_QFB * ROW + j]
        qq = sc[S_QQ * ROW + j]
        qf = sc[S_QF * ROW + j]
        t1 = _batch_terms(b, full, x, sf, skq, qqb, qfb, qq, qf, sc[S_PASSES1 * ROW + j], sc[S_PCALL1 * ROW + j], ua, ra, queued,
                          cf, cfw, r, fp, cs, cw, prog, tu, is_mt, bc, flush_s, batch_ipis, batch_remote,
                          entry_ipis, entry_remote)  # fmt: skip
        t2 = _batch_terms(rem, 1.0, x, sf, skq, qqb, qfb, qq, qf, sc[S_PASSES2 * ROW + j], sc[S_PCALL2 * ROW + j], ua, ra, queued,
                          cf, cfw, r, fp, cs, cw, prog, tu, is_mt, bc, flush_s, batch_ipis, batch_remote,
                          entry_ipis, entry_remote)  # fmt: skip
        # The synchronous fallback (models.analytic._fallback; n_pass_a = NR_MAX_MIGRATE_ASYNC_RETRY).
        p_pa = pp**NR_MAX_MIGRATE_ASYNC_RETRY
        p_s = pp**NR_MAX_MIGRATE_SYNC_RETRY
        fails = pp * (1.0 - p_s) / (1.0 - pp) if pp < 1.0 else float(NR_MAX_MIGRATE_SYNC_RETRY)
        move = cs1 + cf1 + r
        f1 = _fallback_terms(b, full, abar, p_pa, p_s, fails, w, bc, wb_wait, ui, r_imm, move, cfw1, cw1, tu1,
                             cf1, fp, entry_ipis, entry_remote)  # fmt: skip
        f2 = _fallback_terms(rem, 1.0, abar, p_pa, p_s, fails, w, bc, wb_wait, ui, r_imm, move, cfw1, cw1, tu1,
                             cf1, fp, entry_ipis, entry_remote)  # fmt: skip
        on1 = is_sync and has1 and f1[0]
        on2 = is_sync and has2 and f2[0]
        # Accumulators in the scalar path's order: batch 1, its fallback, batch 2, its fallback.
        s_time = call_setup + (t1[0] if has1 else 0.0)
        s_time = s_time + (f1[1] if on1 else 0.0)
        s_time = s_time + (t2[0] if has2 else 0.0)
        s_time = s_time + (f2[1] if on2 else 0.0)
        s_rounds = 0.0 + (t1[1] if has1 else 0.0)
        s_rounds = s_rounds + (f1[2] if on1 else 0.0)
        s_rounds = s_rounds + (t2[1] if has2 else 0.0)
        s_rounds = s_rounds + (f2[2] if on2 else 0.0)
        s_ipis = 0.0 + (t1[2] if has1 else 0.0)
        s_ipis = s_ipis + (f1[3] if on1 else 0.0)
        s_ipis = s_ipis + (t2[2] if has2 else 0.0)
        s_ipis = s_ipis + (f2[3] if on2 else 0.0)
        s_remote = 0.0 + (t1[3] if has1 else 0.0)
        s_remote = s_remote + (f1[4] if on1 else 0.0)
        s_remote = s_remote + (t2[3] if has2 else 0.0)
        s_remote = s_remote + (f2[4] if on2 else 0.0)
        s_wait = 0.0 + (t1[4] if has1 else 0.0)
        s_wait = s_wait + (f1[5] if on1 else 0.0)
        s_wait = s_wait + (t2[4] if has2 else 0.0)
        s_wait = s_wait + (f2[5] if on2 else 0.0)
        s_extra = 0.0 + (t1[5] if has1 else 0.0)
        s_extra = s_extra + (f1[6] if (on1 and is_mt) else 0.0)
        s_extra = s_extra + (t2[5] if has2 else 0.0)
        s_extra = s_extra + (f2[6] if (on2 and is_mt) else 0.0)
        s_pages = 0.0 + (t1[6] if has1 else 0.0)
        s_pages = s_pages + (f1[7] if on1 else 0.0)
        s_pages = s_pages + (t2[6] if has2 else 0.0)
        s_pages = s_pages + (f2[7] if on2 else 0.0)
        s_units = 0.0 + (t1[7] if has1 else 0.0)
        s_units = s_units + (f1[8] if on1 else 0.0)
        s_units = s_units + (t2[7] if has2 else 0.0)
        s_units = s_units + (f2[8] if on2 else 0.0)
        s_win = 0.0 + (t1[8] if has1 else 0.0)
        s_win = s_win + (f1[9] if on1 else 0.0)
        s_win = s_win + (t2[8] if has2 else 0.0)
        s_win = s_win + (f2[9] if on2 else 0.0)
        s_count = 0.0 + (t1[9] if has1 else 0.0)
        s_count = s_count + (f1[10] if on1 else 0.0)
        s_count = s_count + (t2[9] if has2 else 0.0)
        s_count = s_count + (f2[10] if on2 else 0.0)
        s_passes = 0.0 + (t1[10] if has1 else 0.0)
        s_passes = s_passes + (t2[10] if has2 else 0.0)
        s_batches = 0.0 + (t1[11] if has1 else 0.0)
        s_batches = s_batches + (t2[11] if has2 else 0.0)
        # Outputs (the end of point_outputs).
        inv_time = 1.0 / s_time
        res[O_TIME * ROW + j] = s_time
        res[O_PAGES_PER_S * ROW + j] = s_pages * inv_time
        res[O_BYTES_PER_S * ROW + j] = s_pages * page_bytes * inv_time
        res[O_FLUSH_ROUNDS * ROW + j] = s_rounds
        res[O_IPIS * ROW + j] = s_ipis
        res[O_CPU_TIME * ROW + j] = s_time - s_wait + s_extra
        res[O_REMOTE_CPU * ROW + j] = s_remote
        res[O_WINDOW_MEAN * ROW + j] = s_win / s_count if s_count > 0.0 else 0.0
        res[O_FAILED * ROW + j] = max(sc[S_N * ROW + j] - s_units, 0.0)
        res[O_PASSES * ROW + j] = s_passes / s_batches if s_batches > 0.0 else 0.0
        # The first batch's window line and its quantile.
        c = max(b if has1 else rem, 1.0)
        f_s = flush_s if queued else 0.0
        a0, slope = window_line(c, ua, f_s, cs, cf, r, prog)
        res[O_WINDOW_P99 * ROW + j] = line_quantile(a0, slope, c, Q)
        w_first = a0 + slope
        w_last = a0 + slope * c
        w_lo = min(w_first, w_last)
        w_hi = max(w_first, w_last)
        res[R_W_LO * ROW + j] = w_lo
        res[R_W_HI * ROW + j] = w_hi


@_jit
def _stall_quantiles(m: int, sc, res) -> None:
    """Vectorized: the stall quantile of the ``m`` points of a chunk from their window range (a loop
    of its own: inside :func:`_fast_outputs` it runs short of registers)."""
    for j in range(m):
        w_lo = res[R_W_LO * ROW + j]
        w_hi = res[R_W_HI * ROW + j]
        res[O_STALL_P99 * ROW + j] = stall_quantile_select(w_lo, w_hi, sc[S_RATE * ROW + j], Q)


@_jit
def fast_points(pidx, kern, mix_len, mix_kb, mix_n, n, limit, engine, threads, targets, mapcount, p, rate, sync,
                numa, wb, wb_wait, alloc, table, emax, out, done, mkey, mval, sc, res, slots) -> int:  # fmt: skip
    """The fast path over a block: for every eligible point (see :func:`_prepare`) in a run of at
    least :data:`MIN_RUN` points of one profile, every output into ``out[:, i]`` and ``done[i] = 1``;
    ``done[i] = 0`` for the points left to :func:`models.analytic.point_outputs` (their columns of
    ``out`` may hold anything meanwhile). ``sc``, ``res``, ``slots``: scratch of ``N_SCRATCH * ROW``
    and ``N_RESULT * ROW`` float64 and ``2 * ROW`` int64. Returns how many points are done."""
    total = n.shape[0]
    done[:] = 0
    n_done = 0
    s = 0
    while s < total:
        pi = pidx[s]
        e = s + 1
        while e < total and pidx[e] == pi:
            e += 1
        if e - s >= MIN_RUN:
            prof = table[pi]
            prof_t = to_fixed_tuple(prof, N_FIELDS)
            lo = s
            while lo < e:
                hi = min(lo + CHUNK, e)
                eligible = _prepare(lo, hi, prof, pi, kern, mix_len, mix_kb, mix_n, n, limit, engine, threads,
                                    targets, mapcount, p, rate, sync, numa, wb, wb_wait, alloc, emax, mkey,
                                    mval, sc, slots, min(hi + CHUNK, e))  # fmt: skip
                if eligible > 0:
                    _fast_outputs(hi - lo, prof_t, sc, res)
                    _stall_quantiles(hi - lo, sc, res)
                    # Every point of the chunk is copied (vectorized loops): the scalar path
                    # overwrites the points not done.
                    for r in range(N_OUT):
                        _copy_out(lo, hi - lo, res, r, out[r])
                    for i in range(lo, hi):
                        done[i] = 1 if sc[S_OK * ROW + i - lo] > 0.5 else 0
                    n_done += eligible
                lo = hi
        s = e
    return n_done
