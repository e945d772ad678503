"""``move_pages(2)``: the system-call path on one node and real migrations between NUMA nodes."""

from __future__ import annotations

import ctypes
import os
import platform
import time
from collections.abc import Callable

import numpy as np

from models.measure.native import MADV_HUGEPAGE, MADV_NOHUGEPAGE, MPOL_MF_MOVE, anon_mapping, get_libc, pinned
from models.measure.records import Result, Settings, mean_sd
from models.measure.topology import (
    KIB,
    MIB,
    PAGE_BYTES,
    SYS_MOVE_PAGES,
    ProgressFn,
    Topology,
    kernel_batches_migration,
    read_sys,
)

# move_pages(2)
MovePagesFn = Callable[[np.ndarray, np.ndarray | None, np.ndarray, int], int]


def sys_move_pages(pages: np.ndarray, nodes: np.ndarray | None, status: np.ndarray, flags: int) -> int:
    """``move_pages(0, n, pages, nodes, status, flags)`` through ``syscall()``; raises OSError on failure."""
    nr = SYS_MOVE_PAGES.get(platform.machine())
    if nr is None:
        raise OSError(f"move_pages system call number unknown on {platform.machine()}")
    libc = get_libc()
    fn = libc.syscall
    fn.restype = ctypes.c_long
    r = fn(
        ctypes.c_long(nr),
        ctypes.c_long(0),
        ctypes.c_ulong(len(pages)),
        ctypes.c_void_p(pages.ctypes.data),
        ctypes.c_void_p(nodes.ctypes.data if nodes is not None else None),
        ctypes.c_void_p(status.ctypes.data),
        ctypes.c_int(flags),
    )
    if r < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"move_pages: {os.strerror(err)}")
    return int(r)


def measure_move_pages_local(
    topo: Topology, s: Settings, progress: ProgressFn, move_pages: MovePagesFn = sys_move_pages
) -> list[Result]:
    """Per-page cost of ``move_pages`` status queries and of moves to the node the pages are on (no copy)."""
    out: list[Result] = []
    n_max = max(s.move_counts)
    with anon_mapping(n_max * PAGE_BYTES) as (buf, addr):
        buf[::PAGE_BYTES] = 1
        pages = (addr + np.arange(n_max, dtype=np.uint64) * PAGE_BYTES).astype(np.uint64)
        status = np.full(n_max, -1, np.int32)
        move_pages(pages[:1], None, status[:1], 0)
        here = int(status[0])
        if here < 0:
            raise OSError(-here, f"move_pages status query failed: {os.strerror(-here)}")
        nodes = np.full(n_max, here, np.int32)
        for count in s.move_counts:
            reps = max(1, min(500 if s.quick else 2000, 20000 // count))
            for kind, nd, flags in (("status-query", None, 0), ("same-node-move", nodes, MPOL_MF_MOVE)):
                move_pages(pages[:count], nd, status[:count], flags)
                samples = []
                for _ in range(s.move_repeats):
                    t0 = time.perf_counter()
                    for _i in range(reps):
                        move_pages(pages[:count], nd, status[:count], flags)
                    samples.append((time.perf_counter() - t0) / reps / count)
                m, sd = mean_sd(samples)
                out.append(
                    Result(
                        "time_per_page_s",
                        m,
                        "s",
                        sd,
                        f"move_pages-{kind}",
                        {"folio_kb": 4, "n_folios": count},
                        (
                            f"move_pages(2) of {count} resident 4 KiB pages "
                            + (
                                "with nodes=NULL (status query only)"
                                if nd is None
                                else f"to node {here}, where they already are: the syscall path "
                                "(lru_add_drain_all, page lookup) without any copy or unmap"
                            )
                            + "; includes one ctypes call per syscall (~1 us)"
                        ),
                        s.move_repeats,
                        in_schema=False,  # not a migration: must not be scored as one
                    )
                )
            progress(f"move_pages × {count}")
    return out


def fit_call_and_page(results: list[Result], variant: str) -> tuple[float, float] | None:
    """Least-squares ``time(count) = call + count * page`` over the move_pages rows of one variant."""
    rows = [r for r in results if r.variant == variant]
    if len(rows) < 2:
        return None
    n = np.array([r.params["n_folios"] for r in rows], dtype=np.float64)
    t = np.array([r.value for r in rows]) * n
    a = np.vstack([np.ones_like(n), n]).T
    (call, per), *_ = np.linalg.lstsq(a, t, rcond=None)
    return max(0.0, float(call)), max(0.0, float(per))


# Real migrations between NUMA nodes (two or more nodes with memory)
def _anon_huge_kb() -> int:
    for line in read_sys("/proc/self/smaps_rollup").splitlines():
        if line.startswith("AnonHugePages:"):
            return int(line.split()[1])
    return 0


def measure_numa_migration(
    topo: Topology, s: Settings, progress: ProgressFn, move_pages: MovePagesFn = sys_move_pages
) -> list[Result]:
    """Bounce a region between two NUMA nodes with ``move_pages(MPOL_MF_MOVE)``: throughput per folio
    size and folios per call. Requires two nodes with memory; the caller checks."""
    nodes = topo.memory_nodes
    if len(nodes) < 2:
        raise ValueError("needs two NUMA nodes with memory")
    node_a, node_b = nodes[0], nodes[1]
    cpu_a = (topo.numa_nodes.get(node_a) or topo.cpus)[0]
    madvise = get_libc().madvise
    madvise.argtypes = [ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    batch_cap = 512 if kernel_batches_migration(topo.kernel) else 1
    out: list[Result] = []
    for kb in s.numa_folio_kb:
        folio = kb * KIB
        region = max(s.numa_region_bytes - s.numa_region_bytes % folio, folio)
        n_folios = region // folio
        with anon_mapping(region, align=2 * MIB) as (buf, addr), pinned(cpu_a):
            huge_before = _anon_huge_kb()
            madvise(addr, region, MADV_HUGEPAGE if kb >= 2048 else MADV_NOHUGEPAGE)
            buf[::PAGE_BYTES] = 1  # first touch on a CPU of node A: pages land on node A
            huge_kb = max(0, _anon_huge_kb() - huge_before)
            heads = (addr + np.arange(n_folios, dtype=np.uint64) * folio).astype(np.uint64)
            status = np.full(n_folios, -1, np.int32)
            move_pages(heads, None, status, 0)
            on_a = float(np.mean(status == node_a))
            for per_call in s.numa_folios_per_call:
                if per_call > n_folios:
                    progress(f"NUMA {kb} KiB × {per_call}/call: region too small, skipped")
                    continue
                samples_bps, failed = [], 0
                for rep in range(2 * s.numa_repeats):
                    dest = node_b if rep % 2 == 0 else node_a
                    target = np.full(n_folios, dest, np.int32)
                    t0 = time.perf_counter()
                    for i in range(0, n_folios, per_call):
                        move_pages(
                            heads[i : i + per_call], target[i : i + per_call], status[i : i + per_call], 2
                        )
                    dt = time.perf_counter() - t0
                    failed += int(np.sum(status != dest))
                    samples_bps.append(region / dt)
                m, sd = mean_sd(samples_bps)
                pages_per_folio = folio // PAGE_BYTES
                params = {
                    "folio_kb": kb,
                    "n_folios": per_call,
                    "batch_limit_pages": batch_cap,
                    "copy_engine": "cpu",
                    "copy_threads": 1,
                    "target_cpus": 1,
                    "mapcount": 1,
                    "busy_prob": 0.0,
                    "mode": "sync",
                }
                note = (
                    f"move_pages(MPOL_MF_MOVE) of {n_folios} × {kb} KiB folios ({region // MIB} MiB) bounced "
                    f"between nodes {node_a} and {node_b}, {per_call} folios per call, {2 * s.numa_repeats} "
                    f"passes; first touch on CPU {cpu_a}; {on_a:.0%} on node {node_a} before; "
                    f"{failed} folio moves did not reach their node; THP backing {huge_kb // 1024} MiB; "
                    f"kernel {topo.kernel}"
                )
                out.append(Result("bytes_per_s", m, "B/s", sd, "", dict(params), note, len(samples_bps)))
                page_rate = [b / PAGE_BYTES for b in samples_bps]
                pm, psd = mean_sd(page_rate)
                out.append(
                    Result("pages_per_s", pm, "pages/s", psd, "", dict(params), note, len(samples_bps))
                )
                per_page = [1.0 / p for p in page_rate]
                tm, tsd = mean_sd(per_page)
                out.append(Result("time_per_page_s", tm, "s", tsd, "", dict(params), note, len(samples_bps)))
                if failed:
                    out.append(
                        Result(
                            "failed_folios",
                            failed / (2 * s.numa_repeats) / max(1, n_folios // per_call),
                            "count",
                            None,
                            "",
                            dict(params),
                            "folios per call whose status was not the destination node (mean over passes)",
                            len(samples_bps),
                        )
                    )
                del pages_per_folio
                progress(f"NUMA {kb} KiB × {per_call}/call")
    return out
