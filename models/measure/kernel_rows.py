"""Rows of the measurement schema from traced real migrations (``foliotune measure --kernel``).

Per folio size and target CPUs, the repeats of one call give two row sets: ``<method>-best`` (the
fastest call: the kernel's own cost) and ``<method>-median``. In a virtual machine with free-page
reporting a destination page the guest handed back to the host faults in the host when the copy
first writes it, so slow repeats measure the host, not ``migrate_pages()``: the local profile is
fitted to the best rows, and the median rows show how much the host added.
"""

from __future__ import annotations

import statistics
from typing import Any

import pandas as pd

from models.measure.kernel_run import KernelCall, KernelReport
from models.measure.topology import PAGE_BYTES, Topology, kernel_release
from models.measurements import COLUMNS

#: ``NR_MAX_BATCHED_MIGRATION`` = ``HPAGE_PMD_NR`` (include/linux/migrate.h, mm/migrate.c, Linux 6.3+).
KERNEL_BATCH_PAGES = 512


def call_figures(c: KernelCall) -> dict[str, float]:
    """Per-call figures in SI (pages are base pages; folios from the pages and the folio size)."""
    m = c.call
    pages = m.succeeded_pages
    per_folio = max(1, c.folio_kb * 1024 // PAGE_BYTES)
    folios = max(1, round(pages / per_folio))
    dur = m.duration_s
    return {
        "time_s": dur,
        "bytes_per_s": pages * PAGE_BYTES / dur,
        "pages_per_s": pages / dur,
        "time_per_page_s": dur / pages,
        "flush_rounds": float(m.flush_rounds),
        "ipis": float(m.flush_ipis),
        "n_folios": float(folios),
        "failed_pages": float(m.failed_pages),
    }


def kernel_rows(
    rep: KernelReport,
    topo: Topology,
    *,
    profile: str = "local",
    source: str,
    date: str,
    command: str,
) -> pd.DataFrame:
    """Measurement-schema rows (best and median per folio size × target CPUs), trust A."""
    groups: dict[tuple[int, int], list[KernelCall]] = {}
    for c in rep.calls:
        if c.call.succeeded_pages > 0 and c.call.duration_s > 0:
            groups.setdefault((c.folio_kb, c.target_cpus), []).append(c)
    kernel = kernel_release(rep.kernel)
    machine = f"{topo.cpu_model}, {topo.nproc} CPUs, {len(topo.memory_nodes)} NUMA node(s)" + (
        ", virtual machine" if topo.virtual_machine else ""
    )
    rows: list[dict[str, Any]] = []
    for (kb, k), calls in sorted(groups.items()):
        figs = [call_figures(c) for c in calls]
        best_i = min(range(len(calls)), key=lambda i: figs[i]["time_per_page_s"])
        best = calls[best_i]
        how = (
            f"real migrate_pages() of the running kernel ({rep.kernel}) traced with tracefs "
            "mm_migrate_pages_start/mm_migrate_pages and tlb:tlb_flush; "
            + (
                f"memory block {rep.block} (online_movable) holding the workload's buffer taken offline "
                "(do_migrate_range(): MIGRATE_SYNC, reason memory_hotplug), then onlined again"
                if rep.method == "memory-hotplug"
                else (
                    "memory compaction (/proc/sys/vm/compact_memory): the mean call of one compaction, "
                    "whatever movable memory the machine held; folio sizes not known (written as 4 KiB)"
                    if rep.method == "compaction"
                    else f"move_pages(2) of a 128 MiB buffer between NUMA nodes (method {rep.method})"
                )
            )
            + f"; workload threads (numba, nogil) on CPUs {list(best.workload_cpus)}, migrating task on CPU "
            f"{best.migrator_cpu}; {len(calls)} repeats"
        )
        for stat in ("best", "median"):
            if stat == "best":
                vals = figs[best_i]
                detail = (
                    f"fastest of {len(calls)} calls; THP succeeded {best.call.thp_succeeded}, split "
                    f"{best.call.thp_split}, large folios split {best.call.large_split}, failed pages "
                    f"{best.call.failed_pages}; {best.our_folios} folios in the block before (kpageflags); "
                    f"/proc/interrupts TLB delta {best.tlb_irqs}; tlb_flush events {best.call.flush_events}"
                )
            else:
                vals = {key: float(statistics.median(f[key] for f in figs)) for key in figs[0]}
                detail = f"median of {len(calls)} calls (free-page reporting: host faults on first writes)"
            n_folios = int(round(vals["n_folios"]))
            # target_cpus is the mm's cpumask as the model counts it (models/MECHANISM.md §3: the
            # migrating CPU plus the others): the workload's CPUs and the migrating task's CPU.
            mask = len(set(best.workload_cpus) | {best.migrator_cpu})
            params = {
                "folio_kb": kb,
                "n_folios": n_folios,
                "batch_limit_pages": KERNEL_BATCH_PAGES,
                "copy_engine": "cpu",
                "copy_threads": 1,
                "target_cpus": mask,
                "mapcount": 1,
                "busy_prob": 0.0,
                "mode": "sync",
            }
            metrics = [
                ("bytes_per_s", "B/s"),
                ("pages_per_s", "pages/s"),
                ("time_s", "s"),
                ("time_per_page_s", "s"),
                ("flush_rounds", "count"),
                ("ipis", "count"),
            ]
            for metric, unit in metrics:
                if vals[metric] <= 0:
                    continue  # a count of 0 has no place on the log scale the rows are scored on
                row: dict[str, Any] = dict.fromkeys(COLUMNS, None)
                row.update(params)
                row.update(
                    source=source,
                    reference=command,
                    machine=machine,
                    profile=profile,
                    date=date,
                    trust="A",
                    kernel=kernel,
                    variant=f"{rep.method}-{stat}; workload on {k} CPU(s)",
                    metric=metric,
                    value=vals[metric],
                    sd=None,
                    unit=unit,
                    notes=f"measured: {how}; {detail}"
                    + (
                        "; IPIs = tlb_flush 'remote shootdown' in the workload's threads"
                        if metric == "ipis"
                        else ""
                    ),
                    x_repeats=len(calls),
                )
                rows.append(row)
    df = pd.DataFrame(rows, columns=[*COLUMNS, "x_repeats"])
    for col in ("folio_kb", "n_folios", "batch_limit_pages", "copy_threads", "target_cpus", "mapcount"):
        df[col] = df[col].astype("Int64")
    return df
