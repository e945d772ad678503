"""TLB-shootdown cost: madvise/mprotect rounds with 1 … N CPUs running the mm; TLB IRQs per round."""

from __future__ import annotations

import math
import os
import threading
import time

from models.measure.native import anon_mapping, kernels, pinned
from models.measure.records import Result, Settings, mean_sd
from models.measure.topology import PAGE_BYTES, ProgressFn, Topology, read_tlb_interrupts


def measure_tlb_shootdown(topo: Topology, s: Settings, progress: ProgressFn) -> list[Result]:
    """Time per madvise/mprotect round on one page with 1 … N CPUs running the mm; TLB IRQs per round."""
    k = kernels()
    out: list[Result] = []
    n_pages = 64
    main_cpu = topo.cpus[0]
    methods = (("madvise", k["zap_rounds"]), ("mprotect", k["protect_rounds"]))
    with anon_mapping(n_pages * PAGE_BYTES) as (buf, addr), pinned(main_cpu):
        buf[:] = 1
        for target in range(1, topo.nproc + 1):
            helpers_cpus = topo.cpus[1:target]
            stop = threading.Event()
            ready = threading.Semaphore(0)

            def helper(cpu: int, stop: threading.Event = stop, ready: threading.Semaphore = ready) -> None:
                os.sched_setaffinity(0, {cpu})
                first = True
                while not stop.is_set():
                    # pages 1.. of the mapping: same mm, never the zapped page 0 (no fault interference)
                    k["spin"](buf, PAGE_BYTES, n_pages * PAGE_BYTES, 200)
                    if first:
                        ready.release()
                        first = False

            threads = [threading.Thread(target=helper, args=(c,), daemon=True) for c in helpers_cpus]
            for th in threads:
                th.start()
            try:
                for _ in threads:
                    if not ready.acquire(timeout=10):
                        raise RuntimeError("TLB helper thread did not start")
                for name, fn in methods:
                    fn(buf, addr, 50)
                    per_round, irqs = [], []
                    for _ in range(s.tlb_blocks):
                        c0 = read_tlb_interrupts()
                        t0 = time.perf_counter()
                        bad = fn(buf, addr, s.tlb_rounds)
                        dt = time.perf_counter() - t0
                        c1 = read_tlb_interrupts()
                        if bad:
                            raise OSError(f"{name} failed {bad} times on an mmap'ed page")
                        per_round.append(dt / s.tlb_rounds)
                        if c0 is not None and c1 is not None:
                            irqs.append((c1 - c0) / s.tlb_rounds)
                    # Blocks in which the helpers were descheduled (other load on a small machine) send
                    # few IPIs and would mix local-only rounds in: keep the blocks where every remote CPU
                    # took at least half an IPI per flush, unless none qualifies.
                    flushes = 1 if name == "madvise" else 2
                    keep = list(range(len(per_round)))
                    if irqs and target > 1:
                        good = [i for i, q in enumerate(irqs) if q >= 0.5 * flushes * (target - 1)]
                        if good:
                            keep = good
                    kept_note = (
                        f"; {len(keep)} of {len(per_round)} blocks of {s.tlb_rounds} rounds kept "
                        "(blocks where "
                        "the helpers were descheduled by other load, < 0.5 TLB IRQ per remote CPU and flush, "
                        "dropped)"
                        if len(keep) < len(per_round)
                        else ""
                    )
                    if irqs and target > 1 and all(q < 0.5 * flushes * (target - 1) for q in irqs):
                        kept_note = (
                            "; helpers were mostly descheduled by other load (few TLB IRQs): all blocks kept"
                        )
                    per_round = [per_round[i] for i in keep]
                    irqs = [irqs[i] for i in keep] if irqs else irqs
                    m, sd = mean_sd(per_round)
                    what = (
                        "write one page then madvise(MADV_DONTNEED) it"
                        if name == "madvise"
                        else "write one page, mprotect it read-only, then read-write (2 flushes)"
                    )
                    params = {"target_cpus": target, "folio_kb": 4, "n_folios": 1, "mapcount": 1}
                    out.append(
                        Result(
                            "tlb_shootdown_s",
                            m,
                            "s",
                            sd,
                            f"{name}-round",
                            params,
                            f"one round = {what}; main thread on CPU {main_cpu}, "
                            f"{len(helpers_cpus)} helper thread(s) "
                            f"spinning on other pages of the mapping on CPUs {list(helpers_cpus)}; "
                            "includes the "
                            "page fault; sd over blocks"
                            + kept_note
                            + (
                                ""
                                if topo.tlb_counter
                                else "; /proc/interrupts has no TLB line (IRQs unavailable)"
                            ),
                            len(per_round),
                        )
                    )
                    if irqs:
                        mi, sdi = mean_sd(irqs)
                        out.append(
                            Result(
                                "tlb_shootdown_irqs",
                                mi,
                                "count",
                                sdi,
                                f"{name}-round",
                                params,
                                "/proc/interrupts TLB line delta (all CPUs) per round; "
                                "includes any unrelated "
                                "shootdowns of other processes during the block" + kept_note,
                                len(irqs),
                            )
                        )
                    progress(f"TLB {name} × {target} CPU(s)")
            finally:
                stop.set()
                for th in threads:
                    th.join()
    # Remote part: round with N CPUs minus the local-only round.
    for name in ("madvise", "mprotect"):
        base = [r for r in out if r.metric == "tlb_shootdown_s" and r.variant == f"{name}-round"]
        local = next(r for r in base if r.params["target_cpus"] == 1)
        for r in base:
            if r.params["target_cpus"] == 1:
                continue
            sd = math.hypot(r.sd or 0.0, local.sd or 0.0)
            out.append(
                Result(
                    "tlb_shootdown_s",
                    max(0.0, r.value - local.value),
                    "s",
                    sd,
                    f"{name}-remote-part",
                    dict(r.params),
                    f"{name} round with {r.params['target_cpus']} CPUs minus the round with 1 CPU (same page "
                    "work): the cost of the flush IPIs and the wait for acknowledgements"
                    + (" (2 flushes per round)" if name == "mprotect" else ""),
                    r.repeats,
                )
            )
    return out
