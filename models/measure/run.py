"""The driver of ``foliotune measure``: every measurement in order, with progress steps."""

from __future__ import annotations

import datetime as _dt
import time

import numpy as np

from models.measure.copy import measure_copy_sizes, measure_copy_threads
from models.measure.move_pages import (
    MovePagesFn,
    measure_move_pages_local,
    measure_numa_migration,
    sys_move_pages,
)
from models.measure.native import warm_up
from models.measure.profile import derive_figures
from models.measure.records import Report, Settings
from models.measure.tlb import measure_tlb_shootdown
from models.measure.topology import MIB, SIZES_KB, ProgressFn, Topology, loadavg, read_topology


def plan_steps(topo: Topology, s: Settings) -> int:
    """Number of progress steps :func:`run_measurements` reports."""
    n = 1 + len(SIZES_KB) + len(s.thread_sizes_kb) * topo.nproc + 2 * topo.nproc + len(s.move_counts)
    if len(topo.memory_nodes) >= 2:
        n += len(s.numa_folio_kb) * len(s.numa_folios_per_call)
    return n


def run_measurements(
    topo: Topology | None = None,
    quick: bool = False,
    progress: ProgressFn | None = None,
    move_pages: MovePagesFn = sys_move_pages,
    settings: Settings | None = None,
) -> Report:
    """Measure this machine. ``progress(step)`` is called after each step (see :func:`plan_steps`)."""
    t_start = time.perf_counter()
    topo = topo or read_topology()
    load1 = loadavg()
    s = settings or Settings.for_machine(topo, quick)
    rep = Report(topology=topo, settings=s, date=_dt.date.today().isoformat())
    prog = progress or (lambda _step: None)
    rng = np.random.default_rng(20240601)

    t = time.perf_counter()
    warm_up()
    rep.timings_s["compile"] = time.perf_counter() - t
    t = time.perf_counter()
    words = s.mem_buffer_bytes // 8
    src = np.empty(words, np.uint64)
    dst = np.empty(words, np.uint64)
    src[:] = np.arange(words, dtype=np.uint64)  # first touch (slow on fresh VM memory) happens here, untimed
    dst[:] = 0
    rep.timings_s["first_touch"] = time.perf_counter() - t
    prog("warm-up")

    t = time.perf_counter()
    rep.results += measure_copy_sizes(src, dst, s, prog, rng)
    rep.timings_s["copy_sizes"] = time.perf_counter() - t
    t = time.perf_counter()
    rep.results += measure_copy_threads(src, dst, topo, s, prog, rng)
    rep.timings_s["copy_threads"] = time.perf_counter() - t
    del src, dst
    llc = f"{topo.llc_bytes // MIB} MiB" if topo.llc_bytes else "unknown"
    for r in rep.results:
        r.notes = r.notes.replace("{llc}", llc)

    t = time.perf_counter()
    rep.results += measure_tlb_shootdown(topo, s, prog)
    rep.timings_s["tlb"] = time.perf_counter() - t
    if not topo.tlb_counter:
        rep.skipped.append("TLB-shootdown interrupt counts: /proc/interrupts has no 'TLB' line (unavailable)")

    t = time.perf_counter()
    try:
        rep.results += measure_move_pages_local(topo, s, prog, move_pages)
    except OSError as exc:
        rep.skipped.append(f"move_pages(2) cost: {exc}")
        for _ in s.move_counts:
            prog("move_pages skipped")
    rep.timings_s["move_pages"] = time.perf_counter() - t

    t = time.perf_counter()
    if len(topo.memory_nodes) >= 2:
        try:
            rep.results += measure_numa_migration(topo, s, prog, move_pages)
        except OSError as exc:
            rep.skipped.append(f"NUMA migrations between nodes: {exc}")
    else:
        rep.skipped.append(
            f"NUMA migrations between nodes: this machine has {len(topo.memory_nodes)} NUMA node(s) "
            "with memory; "
            "real migrations need two or more, so that part was skipped"
        )
    rep.timings_s["numa"] = time.perf_counter() - t
    load2 = loadavg()
    if max(load1, load2) > 0.5 * topo.nproc:
        rep.skipped.append(
            f"warning: other load on this machine (load average {load1:.1f} before, {load2:.1f} after, "
            f"{topo.nproc} CPUs): thread-scaling and TLB figures are unreliable; rerun on a quiet machine"
        )
    rep.derived = derive_figures(rep)
    rep.derived["loadavg_before_after"] = [load1, load2]
    rep.wall_s = time.perf_counter() - t_start
    return rep
