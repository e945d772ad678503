"""Analytic model: expected cost of one ``migrate_pages()`` call, per point, in closed form.

Implements ``models/MECHANISM.md`` (the mechanism contract shared with the Monte Carlo model):
batches formed in list order until the page count reaches the cap; per batch all unmap passes,
one batch flush, the move phase; flushes deferred or immediate by kernel release and architecture;
-EAGAIN retries, -EBUSY writeback failures, the synchronous one-by-one fallback, allocation
failures (split and retry, or the end of the call); folio mixes as runs of sizes in list order.

Exact and approximate parts. With independent folios, every expectation of a batch is a sum over
folios and pairs of folios of per-pass probabilities, so the expected time, flush rounds, IPIs,
CPU time, migrated pages and the sum of the unmapped windows are **exact** for one batch, including
the order effects of retries (a folio unmapped on pass 1 waits for the later passes) — except:

- the batch in which an order-0 allocation failure ends the call is evaluated at the expected
  length of the prefix before the failing folio (approximate);
- the split-piece retry batch is evaluated at the expected number of pieces, each piece
  independently under writeback (approximate; its linear terms are exact);
- ``window_mean_s`` is the ratio of the expected window sum to the expected number of migrated
  folios; ``window_p99_s`` and ``stall_p99_s`` describe the first batch with every folio unmapped
  on pass 1 (the dominant case). The Monte Carlo model gives the full distributions.

Stall model: each folio is touched by the application as a Poisson stream of rate
``access_rate_hz``; the first touch inside the folio's unmapped window W blocks until the remap, so
the stall is ``max(0, W - E)`` with ``E ~ Exp(rate)``; ``stall_p99_s`` is its 99th percentile over
the folios of a call.

Results are bit-identical whatever the chunking: no ``fastmath``; each point's arithmetic (a scalar
loop here, or a SIMD lane of ``models.analyticfast`` doing the same operations) does not depend on
its neighbours; the only state shared between points, the batch-shape cache of
``models.passmoments``, is keyed by the exact bits of its inputs and returns what a recomputation would.

References
----------
mm/migrate.c ``migrate_pages()``, ``migrate_pages_batch()``, ``migrate_pages_sync()``,
``migrate_folio_unmap()`` (v6.3+; ``unmap_and_move()`` before); mm/rmap.c
``try_to_migrate_one()``, ``should_defer_flush()``, ``set_tlb_ubc_flush_pending()``;
arch/x86/mm/tlb.c ``arch_tlbbatch_flush()``; arch/arm64/include/asm/tlbflush.h.
"""

from __future__ import annotations

import functools
import math

import numba as nb
import numpy as np

from models.analyticfast import N_RESULT, N_SCRATCH, ROW, fast_points
from models.analyticvec import stall_quantiles_left
from models.params import MAX_MIX, OUTPUT_INDEX, OUTPUTS, PointArrays
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
    N_CACHE,
    N_MOM,
    cached_moments,
)
from models.phases import (
    ACK_ALPHA,
    ACK_SCALE,
    BCAST_ISSUE,
    BUSY_ATTEMPT,
    CALL_SETUP,
    CPUS,
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
    expected_max_lomax,
    folios_per_batch,
    line_quantile,
    pmd_mapped,
    uses_broadcast,
    window_line,
)

N_OUT = len(OUTPUTS)
# Output rows, by name (never by position).
O_TIME = OUTPUT_INDEX["time_s"]
O_PAGES_PER_S = OUTPUT_INDEX["pages_per_s"]
O_BYTES_PER_S = OUTPUT_INDEX["bytes_per_s"]
O_FLUSH_ROUNDS = OUTPUT_INDEX["flush_rounds"]
O_IPIS = OUTPUT_INDEX["ipis"]
O_CPU_TIME = OUTPUT_INDEX["cpu_time_s"]
O_REMOTE_CPU = OUTPUT_INDEX["remote_cpu_time_s"]
O_WINDOW_MEAN = OUTPUT_INDEX["window_mean_s"]
O_WINDOW_P99 = OUTPUT_INDEX["window_p99_s"]
O_STALL_P99 = OUTPUT_INDEX["stall_p99_s"]
O_FAILED = OUTPUT_INDEX["failed_folios"]
O_PASSES = OUTPUT_INDEX["passes"]
Q = 0.99

# No fastmath: the same point gives the same bits whatever its position in a chunk (issue 13).
# No reference-counting runtime either: a row view or an array argument per point would otherwise
# cost atomic increments and decrements (most of the time per point); scratch comes from the caller.
_jit = nb.njit(cache=True, nogil=True, error_model="numpy", fastmath=False, _nrt=False)
# Inlined (numba IR) where the call itself, with its many array arguments, cost more than the body.
_jit_inline = nb.njit(
    cache=True, nogil=True, error_model="numpy", fastmath=False, _nrt=False, inline="always"
)

# Columns of the per-type scratch (one row per folio size of a point, plus one for split pieces).
# T_CF/T_CFW: per-folio copy cost and its waiting part inside a batch's copy call; T_CF1, T_CFW1,
# T_CALL1, T_CALL1W, T_T1: the same for a copy call of this folio alone (fallback, before 6.3).
# T_CALL, T_CALLW, T_PROG, T_TUSED: the copy call of a batch whose first folio is of this type.
(T_FP, T_BYTES, T_PMD, T_UA, T_RA, T_QUEUED, T_UI, T_RI, T_R, T_CF, T_CFW, T_ABAR, T_ORDER0, T_CF1, T_CFW1,
 T_CALL1, T_CALL1W, T_T1, T_CALL, T_CALLW, T_PROG, T_TUSED) = range(22)  # fmt: skip
N_TCOL = 22
PIECE = MAX_MIX  # the row of split pieces
# Accumulator slots (expected values over the call).
(A_TIME, A_ROUNDS, A_IPIS, A_REMOTE, A_WAIT, A_EXTRA, A_PAGES, A_UNITS, A_WIN, A_COUNT, A_PASSES,
 A_BATCHES) = range(12)  # fmt: skip
N_ACC = 12


@_jit
def _pass_probs(abar: float, p: float, w: float, n_pass: int, q, f, pend) -> None:
    """Per-pass probabilities of one folio (models/MECHANISM.md §4.1): unmapped on pass k (q),
    a failed attempt on pass k (f: split, -EAGAIN or -EBUSY), still pending after pass k (pend)."""
    att = 1.0
    for k in range(n_pass):
        if k == 0:
            q[k] = (1.0 - abar) * (1.0 - p) * (1.0 - w)
            f[k] = abar + (1.0 - abar) * (p + (1.0 - p) * w)
            att = (1.0 - abar) * p
        else:
            q[k] = att * (1.0 - p) * (1.0 - w)
            f[k] = att * (p + (1.0 - p) * w)
            att = att * p
        pend[k] = att


@_jit_inline
def _batch_one(ty, t: int, B: float, n_pass: int, p: float, w: float, bc: float, flush_s: float,
               call_s: float, call_wait: float, progressive: bool, t_used: float, is_mt: bool,
               batch_ipis: float, batch_remote: float, entry_ipis: float, entry_remote: float,
               per_folio_move: bool, weight: float, acc, mkey, mval) -> None:  # fmt: skip
    """:func:`_batch` for a batch of ``B`` identical folios of type ``t``, in closed form.

    With one type, the pair sums of :func:`_batch` reduce to seven per-folio moments of the pass
    probabilities (X = Σq, Σf, Σk·q, Σq·Q(<k), Σq·F(<k), Σq², Σq·f) times polynomials in B.
    """
    abar = ty[t, T_ABAR]
    ua = ty[t, T_UA]
    i = cached_moments(abar, p, w, n_pass, B, mkey, mval)
    x = mval[i, M_X]
    sf = mval[i, M_SF]
    skq = mval[i, M_SKQ]
    a_qq_before = mval[i, M_QQB]
    a_qf_before = mval[i, M_QFB]
    a_qq = mval[i, M_QQ]
    a_qf = mval[i, M_QF]
    passes = mval[i, M_PASSES]
    p_call = mval[i, M_PCALL]
    queued = ty[t, T_QUEUED] > 0.5 and not per_folio_move
    p_flush = p_call if queued else 0.0
    ec = ua * x + bc * sf  # E[cost of one folio over the passes]
    bx = B * x
    if per_folio_move:
        move = ty[t, T_CALL1] + ty[t, T_CF1] + ty[t, T_R]
        time = B * ec + bx * move
        wait = bx * (ty[t, T_CFW1] + ty[t, T_CALL1W])
        extra = (ty[t, T_T1] - 1.0) * bx * ty[t, T_CF1] if is_mt else 0.0
        win = bx * move
    else:
        cf = ty[t, T_CF]
        r = ty[t, T_R]
        time = B * ec + bx * (cf + r) + p_flush * flush_s + p_call * call_s
        wait = bx * ty[t, T_CFW] + p_call * call_wait
        extra = (t_used - 1.0) * bx * cf if is_mt else 0.0
        pairs = B * (B - 1.0)
        own_xc = B * (bc * skq + ua * x)
        e_cd = own_xc + bx * (B - 1.0) * ec
        sum_tu = (
            own_xc + pairs * (ua * a_qq_before + bc * a_qf_before) + 0.5 * pairs * (ua * a_qq + bc * a_qf)
        )
        e_cf = flush_s * bx if queued else 0.0
        g = r + (cf if progressive else 0.0)
        pair_g = bx * g + pairs * g * a_qq_before + 0.5 * pairs * g * a_qq
        cf_pairs = 0.0 if progressive else bx * cf * (1.0 - x) + bx * bx * cf
        win = e_cd + e_cf + call_s * bx + pair_g + cf_pairs - sum_tu
    entry_rounds = bx * ty[t, T_RA]
    acc[A_TIME] += weight * time
    acc[A_ROUNDS] += weight * (entry_rounds + p_flush)
    acc[A_IPIS] += weight * (entry_rounds * entry_ipis + p_flush * batch_ipis)
    acc[A_REMOTE] += weight * (entry_rounds * entry_remote + p_flush * batch_remote)
    acc[A_WAIT] += weight * wait
    acc[A_EXTRA] += weight * extra
    acc[A_PAGES] += weight * bx * ty[t, T_FP]
    acc[A_UNITS] += weight * bx
    acc[A_WIN] += weight * win
    acc[A_COUNT] += weight * bx
    acc[A_PASSES] += weight * passes
    acc[A_BATCHES] += weight


@_jit
def _batch(ty, seg_t, seg_n, n_seg: int, n_pass: int, p: float, w: float, bc: float, flush_s: float,
           call_s: float, call_wait: float, progressive: bool, t_used: float, is_mt: bool, batch_ipis: float,
           batch_remote: float, entry_s: float, entry_ipis: float, entry_remote: float, per_folio_move: bool,
           weight: float, acc, qs, fs, ps, mkey, mval) -> None:  # fmt: skip
    """Add ``weight`` × the expectations of one batch to ``acc``.

    ``seg_t``/``seg_n``: the batch's runs of folio types in list order. Per type, ``ty`` holds the
    unmap step cost and immediate rounds of the async passes (T_UA, T_RA), whether its PTEs queue
    the batch flush (T_QUEUED), remap, copy and split probability. ``per_folio_move``: each folio
    is copied and remapped right after its unmap (before 6.3): no batch flush, window = own move.
    Exact for independent folios (pair sums over runs; see the module docstring).
    """
    t0 = seg_t[0]
    call_s = ty[t0, T_CALL]
    call_wait = ty[t0, T_CALLW]
    progressive = ty[t0, T_PROG] > 0.5
    t_used = ty[t0, T_TUSED]
    if n_seg == 1:
        _batch_one(ty, seg_t[0], seg_n[0], n_pass, p, w, bc, flush_s, call_s, call_wait, progressive, t_used,
                   is_mt, batch_ipis, batch_remote, entry_ipis, entry_remote, per_folio_move, weight, acc, mkey,
                   mval)  # fmt: skip
        return
    for s in range(n_seg):
        t = seg_t[s]
        _pass_probs(ty[t, T_ABAR], p, w, n_pass, qs[s], fs[s], ps[s])
    # Totals and the probabilities of "none of the batch" events.
    none_unmapped = 1.0
    none_queued = 1.0
    for s in range(n_seg):
        t = seg_t[s]
        x = 0.0
        for k in range(n_pass):
            x += qs[s, k]
        keep = (1.0 - x) ** seg_n[s]
        none_unmapped *= keep
        if ty[t, T_QUEUED] > 0.5 and not per_folio_move:
            none_queued *= keep
    p_call = 1.0 - none_unmapped
    p_flush = 1.0 - none_queued
    # Linear terms.
    time = 0.0
    rounds = 0.0
    unmapped = 0.0
    pages = 0.0
    wait = 0.0
    extra = 0.0
    cost_all = 0.0  # Σ_i E[cost_i] over every folio of the batch (unmap passes)
    own_xc = 0.0  # Σ_i E[X_i cost_i]
    for s in range(n_seg):
        t = seg_t[s]
        nn = seg_n[s]
        ua = ty[t, T_UA]
        ec = 0.0
        oxc = 0.0
        x = 0.0
        for k in range(n_pass):
            ec += ua * qs[s, k] + bc * fs[s, k]
            oxc += qs[s, k] * (k * bc + ua)
            x += qs[s, k]
        cost_all += nn * ec
        own_xc += nn * oxc
        unmapped += nn * x
        pages += nn * x * ty[t, T_FP]
        rounds += nn * x * ty[t, T_RA]
        if per_folio_move:
            time += nn * (ec + x * (ty[t, T_CALL1] + ty[t, T_CF1] + ty[t, T_R]))
            wait += nn * x * (ty[t, T_CFW1] + ty[t, T_CALL1W])
            if is_mt:
                extra += (ty[t, T_T1] - 1.0) * nn * x * ty[t, T_CF1]
        else:
            time += nn * (ec + x * (ty[t, T_CF] + ty[t, T_R]))
            wait += nn * x * ty[t, T_CFW]
            if is_mt:
                extra += (t_used - 1.0) * nn * x * ty[t, T_CF]
    if not per_folio_move:
        time += p_flush * flush_s + p_call * call_s
        wait += p_call * call_wait
    entry_rounds = rounds
    rounds += 0.0 if per_folio_move else p_flush
    passes = 1.0
    for k in range(n_pass - 1):
        none_pending = 1.0
        for s in range(n_seg):
            none_pending *= (1.0 - ps[s, k]) ** seg_n[s]
        passes += 1.0 - none_pending

    # Windows: Σ over unmapped folios of (remap end - unmap end), models/MECHANISM.md §5.
    if per_folio_move:
        win = 0.0
        for s in range(n_seg):
            t = seg_t[s]
            x = 0.0
            for k in range(n_pass):
                x += qs[s, k]
            win += seg_n[s] * x * (ty[t, T_CALL1] + ty[t, T_CF1] + ty[t, T_R])
    else:
        # E[C · unmap-phase time] and the unmap end times Σ_j t_u(j).
        e_cd = own_xc
        for s in range(n_seg):
            x = 0.0
            ec = 0.0
            t = seg_t[s]
            for k in range(n_pass):
                x += qs[s, k]
                ec += ty[t, T_UA] * qs[s, k] + bc * fs[s, k]
            e_cd += seg_n[s] * x * (cost_all - ec)
        sum_tu = own_xc
        for k in range(n_pass):
            before_all = 0.0  # Σ_t n_t Σ_{k'<k} e_tk'
            for s in range(n_seg):
                t = seg_t[s]
                for kk in range(k):
                    before_all += seg_n[s] * (ty[t, T_UA] * qs[s, kk] + bc * fs[s, kk])
            earlier_k = 0.0  # Σ over earlier runs of n_t e_tk
            for s in range(n_seg):
                t = seg_t[s]
                nn = seg_n[s]
                e_sk = ty[t, T_UA] * qs[s, k] + bc * fs[s, k]
                own_before = 0.0
                for kk in range(k):
                    own_before += ty[t, T_UA] * qs[s, kk] + bc * fs[s, kk]
                sum_tu += nn * qs[s, k] * (before_all - own_before + earlier_k + 0.5 * (nn - 1.0) * e_sk)
                earlier_k += nn * e_sk
        # E[C · flush]: the flush happens iff a queued folio is unmapped.
        unq_x = 0.0
        for s in range(n_seg):
            t = seg_t[s]
            if ty[t, T_QUEUED] <= 0.5:
                for k in range(n_pass):
                    unq_x += seg_n[s] * qs[s, k]
        e_cf = flush_s * (unmapped - unq_x * none_queued)
        # Remap ends in move order (pass, then list position): pair sums of g = cf + r or r.
        pair_g = 0.0
        cf_pairs = 0.0
        for s in range(n_seg):
            t = seg_t[s]
            g = ty[t, T_R] + (ty[t, T_CF] if progressive else 0.0)
            x = 0.0
            for k in range(n_pass):
                x += qs[s, k]
            pair_g += seg_n[s] * g * x
            cf_pairs += seg_n[s] * ty[t, T_CF] * x * (1.0 - x)
        cf_tot = 0.0
        for s in range(n_seg):
            x = 0.0
            for k in range(n_pass):
                x += qs[s, k]
            cf_tot += seg_n[s] * ty[seg_t[s], T_CF] * x
        cf_pairs += unmapped * cf_tot  # E[C Σcf] = Σ n cf x (1 - x) + (Σ n x)(Σ n cf x)
        for k in range(n_pass):
            gq_before_all = 0.0  # Σ_t n_t g_t Q_t(<k)
            for s in range(n_seg):
                t = seg_t[s]
                g = ty[t, T_R] + (ty[t, T_CF] if progressive else 0.0)
                for kk in range(k):
                    gq_before_all += seg_n[s] * g * qs[s, kk]
            earlier = 0.0  # Σ over earlier runs of n_t g_t q_tk
            for s in range(n_seg):
                t = seg_t[s]
                nn = seg_n[s]
                g = ty[t, T_R] + (ty[t, T_CF] if progressive else 0.0)
                own_q_before = 0.0
                for kk in range(k):
                    own_q_before += qs[s, kk]
                pair_g += (
                    nn
                    * qs[s, k]
                    * (gq_before_all - g * own_q_before + earlier + 0.5 * (nn - 1.0) * g * qs[s, k])
                )
                earlier += nn * g * qs[s, k]
        sum_tr = e_cd + e_cf + call_s * unmapped + pair_g + (0.0 if progressive else cf_pairs)
        win = sum_tr - sum_tu

    acc[A_TIME] += weight * time
    acc[A_ROUNDS] += weight * rounds
    acc[A_IPIS] += weight * (entry_rounds * entry_ipis + (0.0 if per_folio_move else p_flush * batch_ipis))
    acc[A_REMOTE] += weight * (
        entry_rounds * entry_remote + (0.0 if per_folio_move else p_flush * batch_remote)
    )
    acc[A_WAIT] += weight * wait
    acc[A_EXTRA] += weight * extra
    acc[A_PAGES] += weight * pages
    acc[A_UNITS] += weight * unmapped
    acc[A_WIN] += weight * win
    acc[A_COUNT] += weight * unmapped
    acc[A_PASSES] += weight * passes
    acc[A_BATCHES] += weight


@_jit_inline
def _fallback(ty, seg_t, seg_n, n_seg: int, p: float, w: float, n_pass_a: int, bc: float, wb_wait_s: float,
              is_mt: bool, entry_ipis: float, entry_remote: float, weight: float, acc) -> None:  # fmt: skip
    """Add ``weight`` × the synchronous one-by-one fallback of a batch (models/MECHANISM.md §4.3):
    every folio pending after the async passes or failed for writeback, alone, up to
    NR_MAX_MIGRATE_SYNC_RETRY attempts, immediate flushes (mm/migrate.c ``migrate_pages_sync()``)."""
    p_pa = p**n_pass_a
    p_s = p**NR_MAX_MIGRATE_SYNC_RETRY
    fails = p * (1.0 - p_s) / (1.0 - p) if p < 1.0 else float(NR_MAX_MIGRATE_SYNC_RETRY)
    for s in range(n_seg):
        t = seg_t[s]
        keep = seg_n[s] * (1.0 - ty[t, T_ABAR])
        cand = keep * (p_pa + (1.0 - p_pa) * w)
        if cand <= 0.0:
            continue
        ok = cand * (1.0 - p_s)
        move = ty[t, T_CALL1] + ty[t, T_CF1] + ty[t, T_R]
        waited = keep * w * (1.0 - p_s) * wb_wait_s
        acc[A_TIME] += weight * (cand * fails * bc + ok * (ty[t, T_UI] + move) + waited)
        acc[A_ROUNDS] += weight * ok * ty[t, T_RI]
        acc[A_IPIS] += weight * ok * ty[t, T_RI] * entry_ipis
        acc[A_REMOTE] += weight * ok * ty[t, T_RI] * entry_remote
        acc[A_WAIT] += weight * (ok * (ty[t, T_CFW1] + ty[t, T_CALL1W]) + waited)
        if is_mt:
            acc[A_EXTRA] += weight * (ty[t, T_T1] - 1.0) * ok * ty[t, T_CF1]
        acc[A_PAGES] += weight * ok * ty[t, T_FP]
        acc[A_UNITS] += weight * ok
        acc[A_WIN] += weight * ok * move
        acc[A_COUNT] += weight * ok


@_jit
def _expected_prefix(a: float, n0: float, b: float) -> float:
    """Folios before the first failing order-0 folio, given one fails in this batch of ``b``
    folios holding ``n0`` order-0 ones (scaled from the order-0 positions; approximate)."""
    r = 1.0 - a
    if n0 <= 0.0 or a <= 0.0:
        return b
    stop = 1.0 - r**n0
    if r <= 0.0:
        return 0.0
    # Σ_{j=0}^{n0-1} j r^j a / (1 - r^n0)
    mean = a * r * (1.0 - n0 * r ** (n0 - 1.0) + (n0 - 1.0) * r**n0) / ((1.0 - r) ** 2) / stop
    return mean * b / n0


@_jit_inline
def point_outputs(prof, tail_mean: float, kc: float, mix_len: int, mix_kb, mix_n, n: float, limit: float,
                  engine: float, threads: float, targets: float, mapcount: float, p: float, sync: bool,
                  numa: bool, w: float, wb_wait_s: float, a: float, out, col: int, ty, seg_t, seg_n, acc, qs,
                  fs, ps, mkey, mval, w_range) -> None:  # fmt: skip
    """Every output of one point (models/MECHANISM.md), written to ``out[:, col]``, but the stall
    quantile: its window range goes to ``w_range[:, col]`` (low, high) for
    :func:`models.analyticvec.stall_quantiles_left`."""
    page_kb = prof[PAGE_KB]
    page_bytes = page_kb * 1024.0
    bc = prof[BUSY_ATTEMPT]
    batched = kc >= K_BATCHED
    bcast = uses_broadcast(prof, kc, targets)
    defer = defers_flush(prof, kc, targets)
    skip_hint = numa and kc >= K_SKIP_INACCESSIBLE
    remote = targets - 1.0
    entry_s = entry_round_fixed_s(prof, bcast, targets) + (0.0 if bcast else tail_mean)
    entry_ipis = 0.0 if bcast else remote
    entry_remote = 0.0 if bcast else remote * prof[HANDLER_PAGE]
    flush_s = batch_round_fixed_s(prof, bcast, targets) + (0.0 if bcast else tail_mean)
    batch_ipis = 0.0 if bcast else remote
    batch_remote = 0.0 if bcast else remote * prof[HANDLER_FULL]
    is_mt = engine == ENGINE_MT

    # A multi-threaded copy splits the nominal full batch of each folio's size (models/MECHANISM.md
    # §4.2): ceil(limit / fp) folios, the one reaching the cap included (mm/migrate.c
    # migrate_pages(): list_cut_before() at the folio after it), at most the list's; split pieces:
    # min(limit, the largest size's pages). The call's fixed cost and threads: the batch's first folio.
    big = 1.0
    for k in range(mix_len):
        big = max(big, mix_n[k] * mix_kb[k] / page_kb)
    call_s = 0.0
    call_wait = 0.0
    progressive = True
    t_used = 1.0
    n_types = mix_len + 1 if a > 0.0 else mix_len  # split pieces only with allocation failures
    for k in range(n_types):
        row = k if k < mix_len else PIECE
        fp = mix_kb[k] / page_kb if k < mix_len else 1.0
        fbytes = fp * page_bytes
        pmd = pmd_mapped(prof, fp)
        entries = 1.0 if pmd else fp
        u0 = prof[FOLIO_SETUP] + prof[PAGE_SETUP] * fp + (prof[UNMAP] + prof[UNMAP_PTE] * entries) * mapcount
        # Immediate context: each PTE of each mapping flushed as cleared (ptep_clear_flush(), none
        # for inaccessible hinting PTEs); a PMD-mapped THP flushed by pmdp_invalidate(), always.
        r_imm = mapcount if pmd else (0.0 if numa else fp * mapcount)
        ty[row, T_FP] = fp
        ty[row, T_BYTES] = fbytes
        ty[row, T_PMD] = 1.0 if pmd else 0.0
        ty[row, T_UI] = u0 + r_imm * entry_s
        ty[row, T_RI] = r_imm
        if defer:
            # Deferred (mm/rmap.c try_to_migrate_one(), TTU_BATCH_FLUSH): PTEs queued for the batch
            # flush unless inaccessible from 6.4; broadcast machines issue one invalidation per
            # queued PTE at unmap (arm64 __flush_tlb_page_nosync(), x86 invlpgb_flush_user_nr_nosync()).
            queued = (not pmd) and not skip_hint
            r_a = mapcount if pmd else 0.0
            issue = fp * mapcount * prof[BCAST_ISSUE] if (queued and bcast) else 0.0
            ty[row, T_UA] = u0 + r_a * entry_s + issue
            ty[row, T_RA] = r_a
            ty[row, T_QUEUED] = 1.0 if queued else 0.0
        else:
            ty[row, T_UA] = ty[row, T_UI]
            ty[row, T_RA] = r_imm
            ty[row, T_QUEUED] = 0.0
        ty[row, T_R] = (prof[REMAP] + prof[REMAP_PTE] * entries) * mapcount
        unit = folios_per_batch(limit, fp, n) if k < mix_len else folios_per_batch(limit, 1.0, big)
        cs, cf, cfw, cw, prog, tu = copy_engine_costs(prof, engine, threads, fbytes, unit)
        ty[row, T_CALL] = cs
        ty[row, T_CALLW] = cw
        ty[row, T_PROG] = 1.0 if prog else 0.0
        ty[row, T_TUSED] = tu
        ty[row, T_CF] = cf
        ty[row, T_CFW] = cfw
        call_s, call_wait, progressive, t_used = cs, cw, prog, tu
        cs1, cf1, cfw1, cw1, _prog1, tu1 = copy_engine_costs(prof, engine, threads, fbytes, 1.0)
        ty[row, T_CF1] = cf1
        ty[row, T_CFW1] = cfw1
        ty[row, T_CALL1] = cs1
        ty[row, T_CALL1W] = cw1
        ty[row, T_T1] = tu1
        ty[row, T_ABAR] = a if fp > 1.0 else 0.0
        ty[row, T_ORDER0] = 1.0 if fp <= 1.0 else 0.0

    for i in range(N_ACC):
        acc[i] = 0.0
    acc[A_TIME] = prof[CALL_SETUP]
    n_pass = NR_MAX_MIGRATE_ASYNC_RETRY if sync else NR_MAX_MIGRATE_PAGES_RETRY
    per_folio = not batched

    # Batches in list order (models/MECHANISM.md §2); before 6.3 the whole list is one "batch".
    reach = 1.0
    first_c = -1.0
    first_t = 0
    k = 0
    left = mix_n[0]
    n_seg = 0
    acc_pages = 0.0
    while True:
        while k < mix_len and left <= 0.0:
            k += 1
            left = mix_n[k] if k < mix_len else 0.0
        mult = 1.0
        if k >= mix_len:
            if n_seg == 0:
                break
        elif per_folio:
            seg_t[n_seg] = k
            seg_n[n_seg] = left
            n_seg += 1
            left = 0.0
            continue
        elif n_seg == 0:
            # A run of identical full batches inside one size: ceil(limit / fp) folios each.
            fp = ty[k, T_FP]
            b = max(1.0, math.ceil(limit / fp))
            full = math.floor(left / b)
            seg_t[0] = k
            n_seg = 1
            if full >= 1.0:
                seg_n[0] = b
                mult = full
                left -= full * b
            else:
                seg_n[0] = left
                acc_pages = left * fp
                left = 0.0
                continue
        else:
            # Completing a batch begun by the previous size: until the pages reach the cap.
            fp = ty[k, T_FP]
            take = min(left, max(1.0, math.ceil((limit - acc_pages) / fp)))
            seg_t[n_seg] = k
            seg_n[n_seg] = take
            n_seg += 1
            left -= take
            acc_pages += take * fp
            if acc_pages < limit:
                continue
        # Evaluate `mult` identical batches of seg_t/seg_n, reached with probability `reach`.
        b_folios = 0.0
        n0 = 0.0
        for s in range(n_seg):
            b_folios += seg_n[s]
            if ty[seg_t[s], T_ORDER0] > 0.5:
                n0 += seg_n[s]
        if first_c < 0.0:
            first_c = seg_n[0]
            first_t = seg_t[0]
        r_ok = (1.0 - a) ** n0 if a > 0.0 else 1.0
        geom = (1.0 - r_ok**mult) / (1.0 - r_ok) if r_ok < 1.0 else mult
        w_reach = reach * geom
        # No order-0 allocation failure in the batch: order-0 folios allocate (conditioning).
        t0 = seg_t[0]
        if n_seg == 1:  # one size: the closed form, inlined here (what _batch would call)
            _batch_one(ty, t0, seg_n[0], n_pass, p, w, bc, flush_s, ty[t0, T_CALL], ty[t0, T_CALLW],
                       ty[t0, T_PROG] > 0.5, ty[t0, T_TUSED], is_mt, batch_ipis, batch_remote, entry_ipis,
                       entry_remote, per_folio, w_reach * r_ok, acc, mkey, mval)  # fmt: skip
        else:
            _batch(ty, seg_t, seg_n, n_seg, n_pass, p, w, bc, flush_s, call_s, call_wait, progressive, t_used,
                   is_mt, batch_ipis, batch_remote, entry_s, entry_ipis, entry_remote, per_folio,
                   w_reach * r_ok, acc, qs, fs, ps, mkey, mval)  # fmt: skip
        if sync:
            _fallback(ty, seg_t, seg_n, n_seg, p, w, n_pass, bc, wb_wait_s, is_mt, entry_ipis, entry_remote,
                      w_reach * r_ok, acc)  # fmt: skip
        pieces = 0.0
        for s in range(n_seg):
            pieces += seg_n[s] * ty[seg_t[s], T_ABAR] * ty[seg_t[s], T_FP]
        if pieces > 0.0:
            # Split pieces: one async pass after the batch (migrate_pages(): split_folios, nr_pass 1).
            seg_t[MAX_MIX] = PIECE
            seg_n[MAX_MIX] = pieces
            a_units = acc[A_UNITS]
            _batch(ty, seg_t[MAX_MIX:], seg_n[MAX_MIX:], 1, 1, p, w, bc, flush_s, call_s, call_wait,
                   progressive, t_used, is_mt, batch_ipis, batch_remote, entry_s, entry_ipis, entry_remote,
                   per_folio, w_reach * r_ok, acc, qs, fs, ps, mkey, mval)  # fmt: skip
            # A piece is 1/fp of its folio: convert the piece count added to folio units.
            added = acc[A_UNITS] - a_units
            share = 0.0
            for s in range(n_seg):
                share += seg_n[s] * ty[seg_t[s], T_ABAR]
            acc[A_UNITS] = a_units + (added * share / pieces if pieces > 0.0 else 0.0)
            acc[A_BATCHES] -= w_reach * r_ok  # the piece batch is not one of the call's batches
            acc[A_PASSES] -= w_reach * r_ok
        if r_ok < 1.0:
            # The batch holding the first failing order-0 folio: pass 1 over the prefix, then the
            # call ends (migrate_pages_batch() case -ENOMEM: goto move; migrate_pages(): goto out).
            pre = _expected_prefix(a, n0, b_folios)
            scale = pre / b_folios if b_folios > 0.0 else 0.0
            for s in range(n_seg):
                seg_n[s] *= scale
            _batch(ty, seg_t, seg_n, n_seg, 1, p, w, bc, flush_s, call_s, call_wait, progressive, t_used,
                   is_mt, batch_ipis, batch_remote, entry_s, entry_ipis, entry_remote, per_folio,
                   w_reach * (1.0 - r_ok), acc, qs, fs, ps, mkey, mval)  # fmt: skip
        if r_ok < 1.0:
            reach *= r_ok**mult
        n_seg = 0
        acc_pages = 0.0
        if reach <= 0.0:
            break

    time = acc[A_TIME]
    inv_time = 1.0 / time
    out[O_TIME, col] = time
    out[O_PAGES_PER_S, col] = acc[A_PAGES] * inv_time
    out[O_BYTES_PER_S, col] = acc[A_PAGES] * page_bytes * inv_time
    out[O_FLUSH_ROUNDS, col] = acc[A_ROUNDS]
    out[O_IPIS, col] = acc[A_IPIS]
    out[O_CPU_TIME, col] = time - acc[A_WAIT] + acc[A_EXTRA]
    out[O_REMOTE_CPU, col] = acc[A_REMOTE]
    out[O_WINDOW_MEAN, col] = acc[A_WIN] / acc[A_COUNT] if acc[A_COUNT] > 0.0 else 0.0
    out[O_FAILED, col] = max(n - acc[A_UNITS], 0.0)
    out[O_PASSES, col] = acc[A_PASSES] / acc[A_BATCHES] if acc[A_BATCHES] > 0.0 else 0.0
    # Quantiles: the first batch with every folio unmapped on pass 1 (dominant case).
    t = first_t
    c = max(first_c, 1.0)
    if per_folio:
        w1 = ty[t, T_CALL1] + ty[t, T_CF1] + ty[t, T_R]
        w_lo = w1
        w_hi = w1
        out[O_WINDOW_P99, col] = w1
    else:
        f_s = flush_s if ty[t, T_QUEUED] > 0.5 else 0.0
        a0, slope = window_line(
            c, ty[t, T_UA], f_s, ty[t, T_CALL], ty[t, T_CF], ty[t, T_R], ty[t, T_PROG] > 0.5
        )
        out[O_WINDOW_P99, col] = line_quantile(a0, slope, c, Q)
        w_first = a0 + slope
        w_last = a0 + slope * c
        w_lo = min(w_first, w_last)
        w_hi = max(w_first, w_last)
    w_range[0, col] = w_lo
    w_range[1, col] = w_hi


@nb.njit(cache=True, nogil=True, error_model="numpy", fastmath=False, _nrt=False)
def _analytic_points(pidx, kern, mix_len, mix_kb, mix_n, n, limit, engine, threads, targets, mapcount, p, sync,
                     numa, wb, wb_wait, alloc, table, emax, out, ty, seg_t, seg_n, acc, qs, fs, ps, mkey, mval,
                     w_range, done):  # fmt: skip
    """All outputs of every point not ``done`` by the fast path but the stall quantile (one scalar
    evaluation per point; no state shared between points but the exact batch-shape cache)."""
    for i in range(n.shape[0]):
        if done[i] != 0:
            continue
        pi = pidx[i]
        prof = table[pi]
        tg = targets[i]
        tail = prof[ACK_SCALE] * emax[pi, int(tg) - 1] if tg > 1.0 else 0.0
        point_outputs(prof, tail, kern[i], mix_len[i], mix_kb[i], mix_n[i], n[i], limit[i], engine[i],
                      threads[i], tg, mapcount[i], p[i], sync[i] != 0, numa[i] > 0.5, wb[i], wb_wait[i],
                      alloc[i], out, i, ty, seg_t, seg_n, acc, qs, fs, ps, mkey, mval, w_range)  # fmt: skip


@nb.njit(cache=True, nogil=True, error_model="numpy", fastmath=False)
def analytic_kernel(pidx, kern, mix_len, mix_kb, mix_n, n, limit, engine, threads, targets, mapcount, p, rate,
                    sync, numa, wb, wb_wait, alloc, table, emax, out):  # fmt: skip
    """All outputs of every point: the scratch, the fast path (:func:`models.analyticfast.fast_points`),
    then for the points it leaves :func:`_analytic_points` (no runtime) and
    :func:`models.analyticvec.stall_quantiles_left`."""
    ty = np.zeros((MAX_MIX + 1, N_TCOL))
    seg_t = np.zeros(MAX_MIX + 2, dtype=np.int64)
    seg_n = np.zeros(MAX_MIX + 2)
    acc = np.zeros(N_ACC)
    qs = np.zeros((MAX_MIX + 2, NR_MAX_MIGRATE_PAGES_RETRY))
    fs = np.zeros((MAX_MIX + 2, NR_MAX_MIGRATE_PAGES_RETRY))
    ps = np.zeros((MAX_MIX + 2, NR_MAX_MIGRATE_PAGES_RETRY))
    mkey = np.zeros((N_CACHE, 5), dtype=np.int64)
    mkey[:, 0] = -1  # no entry: n_pass is never negative
    mval = np.empty((N_CACHE, N_MOM))
    # The window range of each point's stall quantile (apart from ``out``: the vectorized loop then
    # passes the compiler's overlap check).
    w_range = np.empty((2, n.shape[0]))
    # One-size points without allocation failure: the vectorized fast path (models.analyticfast).
    done = np.empty(n.shape[0], dtype=np.int8)
    scratch = np.empty(N_SCRATCH * ROW)
    result = np.empty(N_RESULT * ROW)
    slots = np.empty(2 * ROW, dtype=np.int64)
    n_done = fast_points(pidx, kern, mix_len, mix_kb, mix_n, n, limit, engine, threads, targets, mapcount, p, rate,
                         sync, numa, wb, wb_wait, alloc, table, emax, out, done, mkey, mval, scratch, result,
                         slots)  # fmt: skip
    if n_done == n.shape[0]:
        return
    _analytic_points(pidx, kern, mix_len, mix_kb, mix_n, n, limit, engine, threads, targets, mapcount, p, sync,
                     numa, wb, wb_wait, alloc, table, emax, out, ty, seg_t, seg_n, acc, qs, fs, ps, mkey, mval,
                     w_range, done)  # fmt: skip
    stall_quantiles_left(w_range[0], w_range[1], rate, Q, done, out[O_STALL_P99])


def emax_table(table: np.ndarray) -> np.ndarray:
    """E[max of k Lomax acknowledgement tails] for k = 0..max CPUs - 1, one row per profile.

    Column k - 1 holds the expectation for k - 1 remote CPUs (the mm's other CPUs).
    """
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
    """Expected outputs of validated points (models/MECHANISM.md).

    Parameters
    ----------
    arrays : PointArrays
        Validated parameter arrays (:func:`models.params.check_points`); SI units.
    table : numpy.ndarray
        Profile rows (:func:`models.profiles.profile_table`), indexed by ``arrays.profile_index``.
    out : numpy.ndarray, optional
        A ``(len(OUTPUTS), n)`` float64 buffer to reuse.

    Returns
    -------
    dict of str to numpy.ndarray
        One float64 array per name of :data:`models.params.OUTPUTS` (SI units: s, pages/s, B/s,
        rounds, IPIs, folios, passes per batch).

    References
    ----------
    mm/migrate.c ``migrate_pages()``, ``migrate_pages_batch()``, ``migrate_pages_sync()``,
    ``migrate_folio_unmap()`` (Linux 6.3+); mm/rmap.c ``try_to_migrate_one()``,
    ``should_defer_flush()``, ``set_tlb_ubc_flush_pending()`` (6.4); arch/x86/mm/tlb.c
    ``arch_tlbbatch_flush()`` (INVLPGB from 6.15); arch/arm64/include/asm/tlbflush.h (6.6).
    """
    if out is None:
        out = np.empty((N_OUT, len(arrays)), dtype=np.float64)
    analytic_kernel(
        arrays.profile_index, arrays.kernel_code, arrays.mix_len, arrays.mix_kb, arrays.mix_folios,
        arrays.n_folios, arrays.batch_limit_pages, arrays.engine_code.astype(np.float64), arrays.copy_threads,
        arrays.target_cpus, arrays.mapcount, arrays.busy_prob, arrays.access_rate_hz, arrays.sync_mode,
        arrays.numa_hinting, arrays.writeback_prob, arrays.writeback_wait_s, arrays.alloc_fail_prob, table,
        _emax_cached(table.tobytes(), table.shape), out,
    )  # fmt: skip
    return {name: out[i] for i, name in enumerate(OUTPUTS)}
