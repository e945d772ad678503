"""Real ``migrate_pages()`` calls of the running kernel, timed through a private tracefs instance.

On one NUMA node, a memory block onlined as ``online_movable`` (it can then hold only movable pages)
is filled with the workload's buffer and taken offline: ``offline_pages()`` migrates every page in
it with one ``migrate_pages(..., MIGRATE_SYNC, MR_MEMORY_HOTPLUG)`` call, then the block goes back
online. On two or more nodes ``move_pages(2)`` moves the buffer between nodes. Folio sizes: 4 KiB
and every mTHP/THP size the kernel offers (``hugepages-<size>kB/enabled`` = ``madvise`` with
``MADV_HUGEPAGE``), checked in ``/proc/kpageflags`` before and in the trace after (THP counts,
no splits). The workload's mm runs compiled (numba, no GIL) threads on 1 … N CPUs that keep running
while the migrating task has a CPU of its own where there is one.

References
----------
mm/memory_hotplug.c ``offline_pages()``, ``do_migrate_range()`` (Linux 6.18): isolates every movable
folio of the range and calls ``migrate_pages(&source, alloc_migration_target, NULL, &mtc,
MIGRATE_SYNC, MR_MEMORY_HOTPLUG, NULL)``. mm/migrate.c ``migrate_pages()`` /
``migrate_pages_sync()``: a synchronous call first runs ``migrate_pages_batch()`` in async mode,
``NR_MAX_BATCHED_MIGRATION`` (``HPAGE_PMD_NR``) base pages per batch.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.measure.kernel_compact import compaction_calls
from models.measure.kernel_numa import one_move_pages_call
from models.measure.kernel_trace import MigrateCall, parse_trace_text
from models.measure.native import anon_mapping, kernels, populate
from models.measure.sysstate import (
    MEMORY,
    SystemState,
    Unavailable,
    check_root,
    read_choice,
    set_block_state,
)
from models.measure.topology import KIB, MIB, PAGE_BYTES, Topology
from models.measure.tracing import fifo_shell, traced_window
from models.measure.workload import Workload

THP = Path("/sys/kernel/mm/transparent_hugepage")
EVENTS = ("migrate/mm_migrate_pages_start", "migrate/mm_migrate_pages", "tlb/tlb_flush")
KPF_COMPOUND_HEAD = 15
KPF_COMPOUND_TAIL = 16
SayFn = Callable[[str], None]


@dataclass
class KernelCall:
    """One traced migration and what the workload looked like."""

    folio_kb: int
    target_cpus: int
    repeat: int
    call: MigrateCall
    our_pages: int  # pages of the workload's buffer in the block before (pagemap)
    our_folios: int  # folio heads among them (kpageflags)
    tlb_irqs: int | None  # /proc/interrupts TLB delta over the offline write
    workload_cpus: tuple[int, ...]
    migrator_cpu: int
    wall_s: float  # offline write, as seen from user space
    trace_text: str = ""  # the raw trace of the call (kept for the report and for import-trace tests)


@dataclass
class KernelReport:
    method: str  # "memory-hotplug", "move_pages" or "compaction"
    kernel: str
    calls: list[KernelCall] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    block: str = ""


def folio_sizes_kb() -> list[int]:
    """4 KiB plus every mTHP/THP size this kernel offers."""
    sizes = [
        int(p.name.removeprefix("hugepages-").removesuffix("kB"))
        for p in THP.glob("hugepages-*kB")
        if (p / "enabled").exists()  # 8 KiB (order 1) is for shmem only: no anon control
    ]
    return [PAGE_BYTES // KIB] + sorted(s for s in sizes if s * KIB > PAGE_BYTES)


def check_kernel_support(topo: Topology) -> None:
    """Raise :class:`Unavailable` (one line: which and why) when real migrations cannot be driven here."""
    check_root()
    if not Path("/sys/kernel/tracing").exists():
        raise Unavailable(
            "tracefs: /sys/kernel/tracing does not exist (kernel built without CONFIG_TRACING?)"
        )
    if len(topo.memory_nodes) < 2 and not (MEMORY / "block_size_bytes").exists():
        raise Unavailable(
            "memory hotplug: one NUMA node and no /sys/devices/system/memory (CONFIG_MEMORY_HOTREMOVE off), "
            "so no migration can be driven"
        )


def _zone_free_pages(zone: str) -> int:
    text = Path("/proc/zoneinfo").read_text()
    total = 0
    for part in text.split("Node ")[1:]:
        head = part.split("\n", 1)[0]
        if head.split()[-1] == zone:
            for line in part.splitlines():
                if line.strip().startswith("pages free"):
                    total += int(line.split()[-1])
    return total


def _block_pfns(block: Path) -> tuple[int, int]:
    size = int((MEMORY / "block_size_bytes").read_text().strip(), 16)
    first = int(block.name.removeprefix("memory")) * size // PAGE_BYTES
    return first, first + size // PAGE_BYTES


def make_movable_block(st: SystemState, tries: int = 200) -> Path:
    """A block onlined as ZONE_MOVABLE: an existing one, or the highest online ZONE_NORMAL block that
    will go offline (blocks holding kernel memory refuse with EBUSY); its way back is registered first."""
    blocks = sorted(MEMORY.glob("memory[0-9]*"), key=lambda p: int(p.name[6:]), reverse=True)
    online = [b for b in blocks if read_choice(b / "state") == "online"]
    for b in online:
        if (b / "valid_zones").read_text().split()[0] == "Movable":
            return b
    tried: list[str] = []
    st.say(
        "will take one ZONE_NORMAL memory block offline and online it as online_movable (tried from the "
        "highest down; blocks holding kernel memory refuse at once); each traced call takes it offline and "
        "online movable again (and an untraced cycle empties it when other processes' pages landed in it); "
        "it goes back online in ZONE_NORMAL on exit"
    )
    for b in [b for b in online if (b / "valid_zones").read_text().split()[0] == "Normal"][:tries]:
        st.keep_block_state(b, "online", "Normal")  # before the change: a signal may come at any time
        try:  # refused at once (EBUSY, nothing migrated) when the block holds an unmovable page
            set_block_state(b, "offline", tries=1)
        except OSError as exc:
            st.drop_last()
            tried.append(f"{b.name}: {exc.strerror}")
            continue
        st.say(f"{b.name} taken offline (it was online, zone Normal); onlining it as online_movable")
        if "Movable" not in (b / "valid_zones").read_text().split():
            set_block_state(b, "online_kernel", tries=5)
            tried.append(f"{b.name}: cannot be movable")
            continue
        set_block_state(b, "online_movable", tries=5)
        return b
    raise Unavailable(
        "memory hotplug: no block could be taken offline to be onlined movable (" + "; ".join(tried[:3]) + ")"
    )


def set_folio_size(st: SystemState, kb: int) -> None:
    """Enable exactly the mTHP/THP size ``kb`` for MADV_HUGEPAGE regions (4 KiB: every size off)."""
    for p in THP.glob("hugepages-*kB"):
        if not (p / "enabled").exists():
            continue
        size = int(p.name.removeprefix("hugepages-").removesuffix("kB"))
        st.set_value(p / "enabled", "madvise" if size == kb else "never")


def page_frames(addr: int, n_pages: int) -> np.ndarray:
    """PFN of each page of [addr, addr + n_pages pages) from /proc/self/pagemap (0 when absent)."""
    with open("/proc/self/pagemap", "rb") as f:
        f.seek(addr // PAGE_BYTES * 8)
        raw = np.frombuffer(f.read(n_pages * 8), dtype=np.uint64)
    present = (raw >> np.uint64(63)) & np.uint64(1)
    return np.where(present == 1, raw & np.uint64((1 << 55) - 1), 0).astype(np.int64)


def folio_heads(pfns: np.ndarray) -> int:
    """Pages in ``pfns`` that start a folio (a compound head, or a base page that is no tail)."""
    if not len(pfns):
        return 0
    lo, hi = int(pfns.min()), int(pfns.max()) + 1
    with open("/proc/kpageflags", "rb") as f:
        f.seek(lo * 8)
        flags = np.frombuffer(f.read((hi - lo) * 8), dtype=np.uint64)[pfns - lo]
    tail = (flags >> np.uint64(KPF_COMPOUND_TAIL)) & np.uint64(1)
    return int(np.sum(tail == 0))


def warm_free_memory(nbytes: int) -> None:
    """Write ``nbytes`` of fresh anonymous memory and free it, just before a traced call.

    With free-page reporting (virtio-balloon ``free_page_reporting``, mm/page_reporting.c) the guest
    hands free blocks of ``pageblock_order`` and above back to the host about 2 s after they are freed
    (``PAGE_REPORTING_DELAY``); the first write to such a page faults in the host. The migration's
    destination pages come from the free lists, most recently freed first: writing and freeing as much
    memory as the call will allocate makes them pages the host still backs, so the call is timed
    against the guest kernel, not against the host's faults. (THP-backed where the kernel allows, so
    whole pageblocks are freed and merge back for large destination folios.)
    """
    with anon_mapping(nbytes, align=2 * MIB) as (buf, addr):
        populate(buf, addr, nbytes, huge=True)


def _offline_traced(inst: Path, block: Path, cpu: int) -> tuple[str, float, int | None, str]:
    """Take ``block`` offline from a task pinned to ``cpu``; return (trace text, wall s, TLB IRQs, error)."""
    with traced_window(inst, cpu) as w:
        r = subprocess.run(fifo_shell(f"echo offline > {block / 'state'}"), capture_output=True, text=True)
    return w.text, w.wall_s, w.tlb_irqs, r.stderr.strip() if r.returncode else ""


def _one_hotplug_call(
    st: SystemState,
    inst: Path,
    block: Path,
    kb: int,
    pool: Workload,
    workers: tuple[int, ...],
    migrator: int,
    repeat: int,
) -> KernelCall | str:
    lo, hi = _block_pfns(block)
    if _zone_free_pages("Movable") < (hi - lo) - 1024:
        # Other processes' movable pages (or the fragments they leave) landed in the block while it was
        # online: empty it again (untraced) so the buffer, and its large folios, fill it.
        set_block_state(block, "offline", tries=20)
        set_block_state(block, "online_movable", tries=20)
    free = _zone_free_pages("Movable")
    nbytes = max(2 * MIB, (free * PAGE_BYTES - 4 * MIB) // (2 * MIB) * (2 * MIB))
    with anon_mapping(nbytes, align=2 * MIB) as (buf, addr):
        # Populate at once in the kernel (the pages land in the highest, empty zone: the movable block)
        # before other processes' allocations take and fragment it.
        populate(buf, addr, nbytes, huge=kb * KIB > PAGE_BYTES)
        pfns = page_frames(addr, nbytes // PAGE_BYTES)
        mine = pfns[(pfns >= lo) & (pfns < hi)]
        if len(mine) < 0.5 * (hi - lo):
            return f"{kb} KiB: only {len(mine)} of the buffer's pages landed in {block.name}"
        heads = folio_heads(mine)
        warm_free_memory(nbytes + 16 * MIB)
        with pool.running(workers):
            text, wall, irqs, err = _offline_traced(inst, block, migrator)
        state = read_choice(block / "state")
        if state == "offline":
            set_block_state(block, "online_movable", tries=20)
        if err:
            return f"{kb} KiB: offline of {block.name} refused ({err})"
        calls = parse_trace_text(text, f"{inst}/trace").calls
        main = max(calls, key=lambda c: c.succeeded_pages)
        if kb * KIB > PAGE_BYTES and (main.thp_split or main.large_split):
            return f"{kb} KiB: {main.thp_split + main.large_split} large folios split during the call"
        return KernelCall(
            kb, len(workers), repeat, main, len(mine), heads, irqs, workers, migrator, wall, text
        )


def run_kernel_measurements(
    topo: Topology,
    *,
    repeats: int = 3,
    sizes_kb: list[int] | None = None,
    say: SayFn | None = None,
    progress: Callable[[str], None] | None = None,
    method: str = "auto",
) -> KernelReport:
    """Drive real migrations and trace them; every setting is restored before returning (or raising).

    ``method``: ``auto`` (memory hotplug on one node, ``move_pages`` on more, compaction when no block
    can be onlined movable), or ``compaction`` to force the fallback."""
    t_start = time.perf_counter()
    check_kernel_support(topo)
    say = say or (lambda _m: None)
    prog = progress or (lambda _m: None)
    rep = KernelReport(
        method="memory-hotplug" if len(topo.memory_nodes) < 2 else "move_pages", kernel=topo.kernel
    )
    kernels()  # compile before anything is changed
    # The workload's threads, stacks and buffers exist before a block is onlined movable: none of their
    # pages can be in the block the calls migrate.
    with SystemState(say) as st, Workload(tuple(topo.cpus)) as pool:
        try:
            inst = st.tracefs_instance()
            for ev in EVENTS:
                if not (inst / "events" / ev / "enable").exists():
                    raise Unavailable(f"tracefs: event {ev.replace('/', ':')} missing in this kernel")
                (inst / "events" / ev / "enable").write_text("1")
            (inst / "buffer_size_kb").write_text("16384")
            (inst / "trace_clock").write_text("mono")  # one clock for every CPU (the default is per CPU)
            block = None
            if method == "compaction":
                rep.method = "compaction"
            elif rep.method == "memory-hotplug":
                try:
                    block = make_movable_block(st)
                except Unavailable as exc:
                    say(f"{exc}; falling back to memory compaction (/proc/sys/vm/compact_memory)")
                    rep.method = "compaction"
            rep.block = block.name if block else ""
            migrator = topo.cpus[0]
            n = topo.nproc
            if rep.method == "compaction":
                compaction_calls(rep, inst, topo, pool, repeats, migrator, prog)
            for kb in [] if rep.method == "compaction" else (sizes_kb or folio_sizes_kb()):
                set_folio_size(st, kb)
                for k in range(1, n + 1):
                    workers = tuple(topo.cpus[1 : k + 1]) if k < n else tuple(topo.cpus)
                    for r in range(repeats):
                        got = (
                            _one_hotplug_call(st, inst, block, kb, pool, workers, migrator, r)
                            if block is not None
                            else one_move_pages_call(inst, topo, kb, pool, workers, migrator, r)
                        )
                        if isinstance(got, str):
                            rep.skipped.append(got)
                        else:
                            rep.calls.append(got)
                        prog(f"kernel {kb} KiB × {k} CPU(s) #{r + 1}")
        finally:
            pass  # SystemState.__exit__ restores every setting (also on error and signals)
    rep.restored = list(st.restored)
    rep.skipped += st.errors
    rep.wall_s = time.perf_counter() - t_start
    return rep


__all__ = ["KernelCall", "KernelReport", "check_kernel_support", "folio_sizes_kb", "run_kernel_measurements"]
