"""Fallback of ``measure --kernel`` when no memory block can be onlined movable: memory compaction.

Writing ``1`` to ``/proc/sys/vm/compact_memory`` compacts every zone in the writer's context; each
isolated cluster of at most ``COMPACT_CLUSTER_MAX`` (32) folios is one ``migrate_pages(...,
MIGRATE_SYNC_LIGHT, MR_COMPACTION)`` call. The folios are whatever movable memory the machine holds
(not the workload's buffer; page-cache large folios among them, which the trace cannot tell from
base pages), so a row is the mean call of one compaction, written as 4 KiB folios (calls that moved
THPs are left out) and saying so: a weaker measurement than the memory-hotplug one.

References
----------
mm/compaction.c ``compact_node()``, ``compact_zone()`` (Linux 6.18): ``migrate_pages(&cc->migratepages,
compaction_alloc, compaction_free, (unsigned long)cc, cc->mode, MR_COMPACTION, &nr_succeeded)``;
``sysctl_compaction_handler()`` runs it for ``/proc/sys/vm/compact_memory``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from models.measure.kernel_trace import MigrateCall, parse_trace_text
from models.measure.tracing import fifo_shell, traced_window

if TYPE_CHECKING:
    from models.measure.kernel_run import KernelReport
    from models.measure.topology import Topology
    from models.measure.workload import Workload

COMPACT = Path("/proc/sys/vm/compact_memory")


def traced_compaction(inst: Path, cpu: int) -> tuple[MigrateCall, float, int | None, int, str]:
    """Compact memory once from a task on ``cpu``; return (mean call, wall s, TLB IRQs, calls, trace)."""
    with traced_window(inst, cpu) as w:
        subprocess.run(fifo_shell(f"echo 1 > {COMPACT}"), capture_output=True, check=True)
    calls = [
        c
        for c in parse_trace_text(w.text, f"{inst}/trace").calls
        if c.reason == "compaction" and c.succeeded_pages > 0 and c.thp_succeeded == 0 and c.duration_s > 0
    ]
    if not calls:
        raise RuntimeError("compaction migrated no base page")
    n = len(calls)
    mean = replace(
        calls[0],
        succeeded_pages=round(sum(c.succeeded_pages for c in calls) / n),
        failed_pages=round(sum(c.failed_pages for c in calls) / n),
        t_start_s=0.0,
        t_end_s=sum(c.duration_s for c in calls) / n,
        flush_rounds=round(sum(c.flush_rounds for c in calls) / n),
        flush_ipis=round(sum(c.flush_ipis for c in calls) / n),
    )
    return mean, w.wall_s, w.tlb_irqs, n, w.text


def compaction_calls(
    rep: KernelReport,
    inst: Path,
    topo: Topology,
    pool: Workload,
    repeats: int,
    migrator: int,
    prog: Callable[[str], None],
) -> None:
    # kernel_run imports this module: its names are taken when the call runs (an import cycle)
    from models.measure.kernel_run import KernelCall

    n = topo.nproc
    for k in range(1, n + 1):
        workers = tuple(topo.cpus[1 : k + 1]) if k < n else tuple(topo.cpus)
        for r in range(repeats):
            with pool.running(workers):
                try:
                    mean, wall, irqs, ncalls, text = traced_compaction(inst, migrator)
                except (RuntimeError, subprocess.CalledProcessError) as exc:
                    rep.skipped.append(f"compaction: {exc}")
                    continue
            call = KernelCall(
                4,
                k,
                r,
                mean,
                mean.succeeded_pages,
                mean.succeeded_pages,
                irqs,
                workers,  # type: ignore[attr-defined]
                migrator,
                wall,
                text,
            )
            rep.calls.append(call)
            prog(f"kernel compaction × {k} CPU(s) #{r + 1} ({ncalls} calls)")
