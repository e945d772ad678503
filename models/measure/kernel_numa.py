"""``measure --kernel`` on two or more NUMA nodes: one traced ``move_pages(2)`` call per measurement.

References
----------
mm/migrate.c ``kernel_move_pages()``, ``do_pages_move()`` (Linux 6.18): the pages bound for one node
go to ``migrate_pages(..., MIGRATE_SYNC, MR_SYSCALL)`` together.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from models.measure.kernel_trace import parse_trace_text
from models.measure.move_pages import sys_move_pages
from models.measure.native import anon_mapping, populate
from models.measure.topology import KIB, MIB, PAGE_BYTES, Topology
from models.measure.tracing import traced_window

if TYPE_CHECKING:
    from models.measure.kernel_run import KernelCall
    from models.measure.workload import Workload


def one_move_pages_call(
    inst: Path,
    topo: Topology,
    kb: int,
    pool: Workload,
    workers: tuple[int, ...],
    migrator: int,
    repeat: int,
) -> KernelCall | str:
    """Two or more nodes: one ``move_pages(2)`` call moving a 128 MiB buffer from the first node with
    memory to the second, traced like the hotplug path. (Not exercised on the one-node machine this
    was built on.)"""
    # kernel_run imports this module: its names are taken when the call runs (an import cycle)
    from models.measure.kernel_run import (
        KernelCall,
        folio_heads,
        page_frames,
    )

    src, dst = topo.memory_nodes[0], topo.memory_nodes[1]
    nbytes = 128 * MIB
    folio = max(kb * KIB, PAGE_BYTES)
    with anon_mapping(nbytes, align=2 * MIB) as (buf, addr):
        old = os.sched_getaffinity(0)
        os.sched_setaffinity(0, set(topo.numa_nodes.get(src) or topo.cpus))  # first touch on node src
        try:
            populate(buf, addr, nbytes, huge=folio > PAGE_BYTES)
        finally:
            os.sched_setaffinity(0, old)
        pfns = page_frames(addr, nbytes // PAGE_BYTES)
        heads = folio_heads(pfns[pfns > 0])
        pages = (addr + np.arange(0, nbytes, PAGE_BYTES, dtype=np.uint64)).astype(np.uint64)
        nodes = np.full(len(pages), dst, np.int32)
        status = np.full(len(pages), -1, np.int32)
        with pool.running(workers), traced_window(inst, migrator) as w:
            sys_move_pages(pages, nodes, status, 2)  # MPOL_MF_MOVE
    calls = parse_trace_text(w.text, f"{inst}/trace").calls
    main = max(calls, key=lambda c: c.succeeded_pages)
    return KernelCall(
        kb, len(workers), repeat, main, len(pages), heads, w.tlb_irqs, workers, migrator, w.wall_s, w.text
    )
