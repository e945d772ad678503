"""Reference analytic model of models/MECHANISM.md: slow, plain Python, one folio at a time.

Written from the mechanism contract, not from ``models/analytic.py``: the call's folio list is
built explicitly (one entry per folio), batches are cut from it folio by folio, and every
expectation is a sum over explicit folios and explicit pairs of folios (numpy outer products with
explicit masks), where the optimized kernel works on runs of identical folios in closed form. The
physics (what one unmap step, flush round, copy or remap costs) is the shared ``models.phases``;
this file checks the mechanism's combinatorics: batch formation, passes, deferred and immediate
flushes, the fallback, windows.

Scope: points with ``alloc_fail_prob = 0`` (the kernel's allocation-failure paths use documented
approximations that a per-folio reference cannot reproduce; properties test them instead). Small
calls only (the pair sums are O(folios²) per batch).
"""

# mypy: ignore-errors
from __future__ import annotations

import math

import numpy as np

from models.params import OUTPUTS
from models.phases import (
    ACK_ALPHA,
    ACK_SCALE,
    BCAST_ISSUE,
    BUSY_ATTEMPT,
    CALL_SETUP,
    ENGINE_MT,
    FOLIO_SETUP,
    HANDLER_FULL,
    HANDLER_PAGE,
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
    pmd_mapped,
    uses_broadcast,
)
from tests.reference_montecarlo_v1 import stall_quantile  # bisection; independent of the kernel's

RETRY_PAGES, RETRY_ASYNC, RETRY_SYNC = 10, 3, 7  # mm/migrate.c NR_MAX_MIGRATE_*_RETRY
Q = 0.99


def folio_list(mix_kb: list[float], mix_n: list[float]) -> list[float]:
    """The call's list of folio sizes (KiB), sizes in the order given, each size contiguous."""
    out: list[float] = []
    for kb, cnt in zip(mix_kb, mix_n, strict=True):
        out += [kb] * int(cnt)
    return out


def cut_batches(pages: list[float], limit: float, batched: bool) -> list[list[int]]:
    """Indices of each batch: folios in list order until the page count reaches the cap."""
    if not batched:
        return [list(range(len(pages)))]
    batches, cur, acc = [], [], 0.0
    for i, fp in enumerate(pages):
        cur.append(i)
        acc += fp
        if acc >= limit:
            batches.append(cur)
            cur, acc = [], 0.0
    if cur:
        batches.append(cur)
    return batches


def reference_point(prof: np.ndarray, pt: dict) -> dict[str, float]:
    """Expected outputs of one point (``pt``: kernel_code, mix_kb, mix_n, limit, engine, threads,
    targets, mapcount, p, sync, numa, w, wait, rate)."""
    page_kb = prof[PAGE_KB]
    kc, T, m, p, w = pt["kernel_code"], pt["targets"], pt["mapcount"], pt["p"], pt["w"]
    bc = prof[BUSY_ATTEMPT]
    batched = kc >= 603
    bcast = uses_broadcast(prof, kc, T)
    defer = defers_flush(prof, kc, T)
    skip_hint = pt["numa"] and kc >= 604
    tail = prof[ACK_SCALE] * expected_max_lomax(T - 1.0, prof[ACK_ALPHA]) if T > 1 else 0.0
    entry = entry_round_fixed_s(prof, bcast, T) + (0.0 if bcast else tail)
    batch_flush = batch_round_fixed_s(prof, bcast, T) + (0.0 if bcast else tail)
    ipis_per_round = 0.0 if bcast else T - 1.0
    engine, threads = pt["engine"], pt["threads"]
    sizes = folio_list(pt["mix_kb"], pt["mix_n"])
    fps = [kb / page_kb for kb in sizes]

    def folio(fp: float) -> dict:
        pmd = pmd_mapped(prof, fp)
        entries = 1.0 if pmd else fp
        u0 = prof[FOLIO_SETUP] + prof[PAGE_SETUP] * fp + (prof[UNMAP] + prof[UNMAP_PTE] * entries) * m
        imm_rounds = m if pmd else (0.0 if pt["numa"] else fp * m)
        d = {"fp": fp, "pmd": pmd, "u_imm": u0 + imm_rounds * entry, "r_imm": imm_rounds}
        if defer:
            queued = (not pmd) and not skip_hint
            ra = m if pmd else 0.0
            d.update(u=u0 + ra * entry + (fp * m * prof[BCAST_ISSUE] if queued and bcast else 0.0), ra=ra,
                     queued=queued)  # fmt: skip
        else:
            d.update(u=d["u_imm"], ra=imm_rounds, queued=False)
        d["remap"] = (prof[REMAP] + prof[REMAP_PTE] * entries) * m
        fb = fp * page_kb * 1024
        call, cf, cfw, cw, prog, tu = copy_engine_costs(prof, engine, threads, fb, nominal_folios(fp))
        d.update(cf=cf, cfw=cfw, call=call, call_wait=cw, progressive=prog, t_used=tu)
        call1, cf1, cfw1, cw1, _p1, tu1 = copy_engine_costs(prof, engine, threads, fb, 1.0)
        d.update(cf1=cf1, cfw1=cfw1, call1=call1, call1_wait=cw1, t1=tu1)
        return d

    def nominal_folios(fp: float) -> float:
        """A multi-threaded copy splits the nominal full batch of the folio's size (models/MECHANISM.md
        §4.2): the folios taken until the pages reach the cap, that folio included, at most the list."""
        if not batched:
            return 1.0
        pages, count = 0.0, 0
        while count < len(fps):
            count += 1
            pages += fp
            if pages >= pt["limit"]:
                break
        return float(count)

    kinds = {fp: folio(fp) for fp in set(fps)}
    n_pass = RETRY_ASYNC if pt["sync"] else RETRY_PAGES
    is_mt = engine == ENGINE_MT
    tot = dict(time=prof[CALL_SETUP], rounds=0.0, ipis=0.0, remote=0.0, wait=0.0, extra=0.0, pages=0.0, units=0.0,
               win=0.0, passes=0.0, batches=0.0)  # fmt: skip
    batches = cut_batches(fps, pt["limit"], batched)
    for idx in batches:
        F = [kinds[fps[i]] for i in idx]
        B = len(F)
        # Per folio and pass (0-based k): unmapped (q), failed attempt (f), pending after (pend).
        q = np.zeros((B, n_pass))
        f = np.zeros((B, n_pass))
        pend = np.zeros((B, n_pass))
        for i in range(B):
            for k in range(n_pass):
                reach = p**k
                q[i, k] = reach * (1 - p) * (1 - w)
                f[i, k] = reach * (p + (1 - p) * w)
                pend[i, k] = reach * p
        u = np.array([d["u"] for d in F])
        e = u[:, None] * q + bc * f  # expected cost of folio i on pass k
        X = q.sum(axis=1)
        queued = np.array([d["queued"] for d in F])
        per_folio = not batched
        p_call = 1 - np.prod(1 - X)
        p_flush = 0.0 if per_folio else 1 - np.prod(np.where(queued, 1 - X, 1.0))
        cf = np.array([d["cf1" if per_folio else "cf"] for d in F])
        cfw = np.array([d["cfw1" if per_folio else "cfw"] for d in F])
        rmp = np.array([d["remap"] for d in F])
        call1 = np.array([d["call1"] for d in F])
        time = e.sum() + (X * (cf + rmp)).sum()
        wait = (X * cfw).sum()
        if per_folio:
            time += (X * call1).sum()
            wait += (X * np.array([d["call1_wait"] for d in F])).sum()
        else:
            time += p_flush * batch_flush + p_call * F[0]["call"]
            wait += p_call * F[0]["call_wait"]
        entry_rounds = (X * np.array([d["ra"] for d in F])).sum()
        tot["time"] += time
        tot["wait"] += wait
        tot["rounds"] += entry_rounds + p_flush
        tot["ipis"] += (entry_rounds + p_flush) * ipis_per_round
        tot["remote"] += (
            0.0 if bcast else (T - 1) * (entry_rounds * prof[HANDLER_PAGE] + p_flush * prof[HANDLER_FULL])
        )
        if is_mt:
            t = np.array([d["t1"] for d in F]) if per_folio else F[0]["t_used"]
            tot["extra"] += ((t - 1) * X * cf).sum()
        tot["pages"] += (X * np.array([d["fp"] for d in F])).sum()
        tot["units"] += X.sum()
        # Passes of the batched phase that ran: 1 + Σ_k P(some folio still -EAGAIN after pass k).
        passes = 1.0
        for k in range(1, n_pass):
            passes += 1 - (1 - p**k) ** B
        tot["passes"] += passes
        tot["batches"] += 1
        # Windows (models/MECHANISM.md §5), explicit over folios and pairs.
        if per_folio:
            tot["win"] += (X * (call1 + cf + rmp)).sum()
        else:
            ks = np.arange(n_pass)
            own_before = ks[None, :] * bc  # k earlier busy attempts of the folio itself
            e_before = np.cumsum(e, axis=1) - e  # Σ_{k'<k} e[i, k'] for each folio
            all_before = e_before.sum(axis=0)  # over every folio
            lower = np.tril(np.ones((B, B)), -1)  # lower[i, i'] = 1 if i' < i
            earlier_same_pass = lower @ e  # Σ_{i'<i} e[i', k]
            t_u = (q * (all_before[None, :] - e_before + own_before + earlier_same_pass + u[:, None])).sum()
            own_cost = (q * (own_before + u[:, None])).sum(axis=1)
            cost = e.sum(axis=1)
            e_cm = own_cost.sum() + (X[:, None] * cost[None, :]).sum() - (X * cost).sum()
            none_q = np.prod(np.where(queued, 1 - X, 1.0))
            e_cf = batch_flush * (X.sum() - (X * ~queued).sum() * none_q)
            prog = F[0]["progressive"]
            g = rmp + (cf if prog else 0.0)
            # P(i' before i in move order, both unmapped): earlier pass, or same pass and i' < i.
            q_before = np.cumsum(q, axis=1) - q  # Σ_{k'<k} q[i', k']
            before = q @ q_before.T  # before[i, i'] = Σ_k q[i,k] Q_{i'}(<k)
            before += (q @ q.T) * lower  # same pass, earlier in the list
            np.fill_diagonal(before, 0.0)
            pair_g = (X * g).sum() + (before * g[None, :]).sum()
            both = np.outer(X, X)
            np.fill_diagonal(both, 0.0)
            e_c_cf = (X * cf).sum() + (both * cf[None, :]).sum()
            t_r = e_cm + e_cf + F[0]["call"] * X.sum() + pair_g + (0.0 if prog else e_c_cf)
            tot["win"] += t_r - t_u
        if pt["sync"]:
            pa, ps = p**n_pass, p**RETRY_SYNC
            fails = sum(p**j for j in range(1, RETRY_SYNC + 1))
            for d in F:
                cand = pa + (1 - pa) * w
                ok = cand * (1 - ps)
                move = d["call1"] + d["cf1"] + d["remap"]
                waited = w * (1 - ps) * pt["wait"]
                tot["time"] += cand * fails * bc + ok * (d["u_imm"] + move) + waited
                tot["rounds"] += ok * d["r_imm"]
                tot["ipis"] += ok * d["r_imm"] * ipis_per_round
                tot["remote"] += 0.0 if bcast else ok * d["r_imm"] * (T - 1) * prof[HANDLER_PAGE]
                tot["wait"] += ok * (d["cfw1"] + d["call1_wait"]) + waited
                if is_mt:
                    tot["extra"] += (d["t1"] - 1) * ok * d["cf1"]
                tot["pages"] += ok * d["fp"]
                tot["units"] += ok
                tot["win"] += ok * move
    out = {
        "time_s": tot["time"],
        "pages_per_s": tot["pages"] / tot["time"],
        "bytes_per_s": tot["pages"] * page_kb * 1024 / tot["time"],
        "flush_rounds": tot["rounds"],
        "ipis": tot["ipis"],
        "cpu_time_s": tot["time"] - tot["wait"] + tot["extra"],
        "remote_cpu_time_s": tot["remote"],
        "window_mean_s": tot["win"] / tot["units"] if tot["units"] > 0 else 0.0,
        "failed_folios": max(len(sizes) - tot["units"], 0.0),
        "passes": tot["passes"] / tot["batches"],
    }
    # Quantiles: the first batch, every folio unmapped on pass 1 (models/MECHANISM.md §5).
    first = [kinds[fps[i]] for i in batches[0] if fps[i] == fps[batches[0][0]]]
    d = first[0]
    c = len(first)
    if not batched:
        windows = [d["call1"] + d["cf1"] + d["remap"]] * c
    else:
        flush = batch_flush if d["queued"] else 0.0
        unmap_end = [(j + 1) * d["u"] for j in range(c)]
        start = c * d["u"] + flush
        if d["progressive"]:
            remap_end = [start + d["call"] + (j + 1) * (d["cf"] + d["remap"]) for j in range(c)]
        else:
            remap_end = [start + d["call"] + c * d["cf"] + (j + 1) * d["remap"] for j in range(c)]
        windows = [b - a for a, b in zip(unmap_end, remap_end, strict=True)]
    ws = sorted(windows)
    out["window_p99_s"] = ws[max(math.ceil(Q * len(ws)) - 1, 0)]
    out["stall_p99_s"] = stall_quantile(min(windows), max(windows), pt["rate"], Q)
    return out


def analytic_outputs(arrays, table: np.ndarray) -> dict[str, np.ndarray]:
    """The reference for every point of validated ``arrays`` (alloc_fail_prob must be 0)."""
    assert not (arrays.alloc_fail_prob > 0).any(), "the reference covers alloc_fail_prob = 0"
    res = {name: np.empty(len(arrays)) for name in OUTPUTS}
    for i in range(len(arrays)):
        k = int(arrays.mix_len[i])
        pt = dict(
            kernel_code=float(arrays.kernel_code[i]), mix_kb=list(arrays.mix_kb[i, :k]),
            mix_n=list(arrays.mix_folios[i, :k]), limit=float(arrays.batch_limit_pages[i]),
            engine=float(arrays.engine_code[i]), threads=float(arrays.copy_threads[i]),
            targets=float(arrays.target_cpus[i]), mapcount=float(arrays.mapcount[i]), p=float(arrays.busy_prob[i]),
            sync=bool(arrays.sync_mode[i]), numa=bool(arrays.numa_hinting[i] > 0.5),
            w=float(arrays.writeback_prob[i]), wait=float(arrays.writeback_wait_s[i]),
            rate=float(arrays.access_rate_hz[i]),
        )  # fmt: skip
        o = reference_point(table[arrays.profile_index[i]], pt)
        for name in OUTPUTS:
            res[name][i] = o[name]
    return res
