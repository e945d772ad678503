"""Measure this machine: CPU copy bandwidth, TLB-shootdown cost, ``move_pages(2)`` cost, NUMA topology.

Pure measurement code behind ``foliotune measure`` (no Ray, no Dash). Every timed loop is compiled
(numba, ``nogil``) or a system call; Python only drives the repetitions:

- **copy bandwidth** against transfer size (4 KiB … 2 MiB) and against threads: a numba loop copies
  many chunks of one size between two buffers, in a random chunk order (as migration visits folios
  scattered in memory). The *memory* figure uses buffers larger than the last-level cache (as reported
  by ``/sys``), the *hot* figure a small working set copied again and again. A contrast row times one
  Python call per 4 KiB copy, to show what a per-page interpreted call would cost.
- **TLB shootdown**: helper threads pinned one per CPU spin on pages of a shared mapping (so their CPU
  runs the mm and is in its cpumask) while the main thread, pinned to the first CPU, writes one page
  and zaps it with ``madvise(MADV_DONTNEED)`` (or toggles its protection with ``mprotect``) in a
  compiled loop. Time per round for 1 … N CPUs sharing the mm, and the ``/proc/interrupts`` ``TLB``
  counter delta per round (reported as unavailable, never invented, when the line is missing).
- **move_pages(2)** through ``syscall()`` (no libnuma): status query per page and "move" to the node
  the pages are already on. On one node nothing is copied: that measures the system-call path
  (``lru_add_drain_all``, page lookup), not a migration, and the rows say so.
- **real migrations** between two NUMA nodes (several folio sizes × folios per call), only when the
  machine has two or more nodes with memory.

Results are :class:`Result` records; :func:`results_frame` turns them into rows of the measurement
schema (``models/data/MEASUREMENTS.md``) and :func:`local_profile_dict` into a hardware profile.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as _dt
import json
import math
import mmap
import os
import platform
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from models.errors import UserError
from models.fileio import atomic_write

KIB = 1024
MIB = 1024 * 1024
PAGE_BYTES = mmap.PAGESIZE
BASE_PROFILE = "epyc-zen3-2s"
MADV_DONTNEED = 4
MADV_HUGEPAGE = 14
MADV_NOHUGEPAGE = 15
PROT_READ = 1
PROT_WRITE = 2
MPOL_MF_MOVE = 2
#: ``move_pages`` / ``migrate_pages`` system call numbers (no libnuma needed).
SYS_MOVE_PAGES = {"x86_64": 279, "aarch64": 239, "arm64": 239, "ppc64le": 301, "riscv64": 239}
SIZES_KB: tuple[int, ...] = tuple(4 << i for i in range(10))  # 4 KiB ... 2 MiB

ProgressFn = Callable[[str], None]


# --------------------------------------------------------------------------------------------------
# Topology
# --------------------------------------------------------------------------------------------------
def _read(path: str | Path, default: str = "") -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return default


def parse_cpulist(text: str) -> list[int]:
    """``"0-3,8,10-11"`` → ``[0, 1, 2, 3, 8, 10, 11]``."""
    out: list[int] = []
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-", 1)
            out.extend(range(int(lo), int(hi) + 1))
        else:
            out.append(int(part))
    return out


def _size_bytes(text: str) -> int:
    text = text.strip().upper()
    mult = {"K": KIB, "M": MIB, "G": 1024 * MIB}
    if text and text[-1] in mult:
        return int(float(text[:-1]) * mult[text[-1]])
    return int(text) if text.isdigit() else 0


@dataclass(frozen=True)
class Topology:
    """What this machine looks like, read from ``/sys`` and ``/proc`` (nothing timed)."""

    arch: str
    kernel: str
    hostname: str
    cpu_model: str
    cpu_mhz: float
    cpus: tuple[int, ...]  # CPUs this process may run on
    sockets: int
    cores: int  # physical cores over all sockets
    smt: int  # hardware threads per core
    numa_nodes: dict[int, tuple[int, ...]]  # node -> its CPUs (may be empty)
    node_mem_bytes: dict[int, int]
    llc_bytes: int
    mem_available_bytes: int
    virtual_machine: bool
    dma_channels: int
    dsa_devices: int
    tlb_counter: bool  # /proc/interrupts has a "TLB" line

    @property
    def nproc(self) -> int:
        return len(self.cpus)

    @property
    def memory_nodes(self) -> list[int]:
        return sorted(n for n, b in self.node_mem_bytes.items() if b > 0)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["numa_nodes"] = {str(k): list(v) for k, v in self.numa_nodes.items()}
        d["node_mem_bytes"] = {str(k): v for k, v in self.node_mem_bytes.items()}
        return d


def read_topology() -> Topology:
    """Read CPUs, sockets, cores, SMT, NUMA nodes, LLC size and devices of this machine."""
    sysfs = Path("/sys/devices/system")
    cpus = tuple(sorted(os.sched_getaffinity(0)))
    packages: set[str] = set()
    cores: set[tuple[str, str]] = set()
    for c in cpus:
        topo = sysfs / f"cpu/cpu{c}/topology"
        pkg = _read(topo / "physical_package_id", "0")
        packages.add(pkg)
        cores.add((pkg, _read(topo / "core_id", str(c))))
    n_sockets = max(1, len(packages))
    n_cores = max(1, len(cores))
    smt = max(1, round(len(cpus) / n_cores))
    nodes: dict[int, tuple[int, ...]] = {}
    node_mem: dict[int, int] = {}
    for d in sorted((sysfs / "node").glob("node[0-9]*")):
        n = int(d.name[4:])
        nodes[n] = tuple(parse_cpulist(_read(d / "cpulist")))
        mem = 0
        for line in _read(d / "meminfo").splitlines():
            if "MemTotal:" in line:
                mem = int(line.split()[-2]) * KIB
        node_mem[n] = mem
    if not nodes:  # kernels without NUMA support: one node holding everything
        nodes = {0: cpus}
        node_mem = {0: _meminfo("MemTotal")}
    llc = 0
    for idx in sorted((sysfs / f"cpu/cpu{cpus[0]}/cache").glob("index*")):
        if _read(idx / "type") in ("Unified", "Data"):
            llc = max(llc, _size_bytes(_read(idx / "size", "0")))
    cpuinfo = _read("/proc/cpuinfo")
    model, mhz, flags = "", 0.0, ""
    for line in cpuinfo.splitlines():
        key, _, val = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model", "CPU part") and not model:
            model = val.strip()
        elif key == "cpu MHz" and not mhz:
            with contextlib.suppress(ValueError):
                mhz = float(val)
        elif key in ("flags", "Features") and not flags:
            flags = val
    vm = "hypervisor" in flags.split() or bool(_read("/sys/hypervisor/type"))
    dma = sum(1 for _ in Path("/sys/class/dma").glob("dma*chan*")) if Path("/sys/class/dma").is_dir() else 0
    dsa = (
        sum(1 for _ in Path("/sys/bus/dsa/devices").glob("dsa*"))
        if Path("/sys/bus/dsa/devices").is_dir()
        else 0
    )
    return Topology(
        arch=platform.machine(),
        kernel=platform.release(),
        hostname=socket.gethostname(),
        cpu_model=model or platform.processor() or "unknown",
        cpu_mhz=mhz,
        cpus=cpus,
        sockets=n_sockets,
        cores=n_cores,
        smt=smt,
        numa_nodes=nodes,
        node_mem_bytes=node_mem,
        llc_bytes=llc,
        mem_available_bytes=_meminfo("MemAvailable"),
        virtual_machine=vm,
        dma_channels=dma,
        dsa_devices=dsa,
        tlb_counter=read_tlb_interrupts() is not None,
    )


def _meminfo(key: str) -> int:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * KIB
    return 0


def _loadavg() -> float:
    try:
        return float(_read("/proc/loadavg", "0").split()[0])
    except (ValueError, IndexError):
        return 0.0


def read_tlb_interrupts() -> int | None:
    """Sum over CPUs of the ``/proc/interrupts`` "TLB" (TLB shootdowns) line; None if there is none."""
    for line in _read("/proc/interrupts").splitlines():
        parts = line.split()
        if parts and parts[0] == "TLB:":
            return sum(int(p) for p in parts[1:] if p.isdigit())
    return None


def kernel_batches_migration(release: str) -> bool:
    """Linux 6.3+ batches the TLB flush of ``migrate_pages()`` (NR_MAX_BATCHED_MIGRATION)."""
    try:
        major, minor = (int(x) for x in release.split(".")[:2])
    except ValueError:
        return True
    return (major, minor) >= (6, 3)


# --------------------------------------------------------------------------------------------------
# Settings and results
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Settings:
    """How much to measure. :meth:`for_machine` picks sizes that fit the time budget of the mode."""

    quick: bool
    mem_buffer_bytes: int  # each of source and destination, > LLC
    hot_bytes: int  # working set of the cache-hot copy
    hot_copy_bytes: int  # bytes copied per hot sample
    copy_repeats: int
    thread_sizes_kb: tuple[int, ...]
    tlb_rounds: int  # rounds per block
    tlb_blocks: int  # blocks (sd is over blocks)
    move_counts: tuple[int, ...]  # pages per move_pages() call
    move_repeats: int
    numa_folio_kb: tuple[int, ...]
    numa_folios_per_call: tuple[int, ...]
    numa_region_bytes: int
    numa_repeats: int

    @classmethod
    def for_machine(cls, topo: Topology, quick: bool) -> Settings:
        llc = topo.llc_bytes or 32 * MIB
        want = llc + 32 * MIB if quick else 2 * llc
        cap = max(64 * MIB, topo.mem_available_bytes // 8)
        buf = int(min(max(64 * MIB, want), cap, 2048 * MIB))
        buf -= buf % (2 * MIB)
        return cls(
            quick=quick,
            mem_buffer_bytes=buf,
            hot_bytes=256 * KIB,
            hot_copy_bytes=(64 if quick else 512) * MIB,
            copy_repeats=3 if quick else 7,
            thread_sizes_kb=(4, 2048),
            tlb_rounds=1000 if quick else 2000,
            tlb_blocks=10 if quick else 25,
            move_counts=(1, 64, 512, 4096) if quick else (1, 8, 64, 512, 4096),
            move_repeats=3 if quick else 7,
            numa_folio_kb=(4, 2048) if quick else (4, 64, 2048),
            numa_folios_per_call=(1, 64, 512) if quick else (1, 16, 64, 512, 4096),
            numa_region_bytes=(64 if quick else 256) * MIB,
            numa_repeats=2 if quick else 4,
        )


@dataclass
class Result:
    """One measured figure: a metric of the schema, its parameters and how it was obtained."""

    metric: str
    value: float  # SI
    unit: str
    sd: float | None = None
    variant: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    repeats: int = 0
    in_schema: bool = True  # False: kept in the JSON report only (no metric of the schema fits)
    samples: list[float] = field(default_factory=list)  # the repeats behind value and sd (same unit)


@dataclass
class Report:
    """Everything ``foliotune measure`` found: topology, results, derived figures, what was skipped."""

    topology: Topology
    settings: Settings
    results: list[Result] = field(default_factory=list)
    derived: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    date: str = ""
    wall_s: float = 0.0

    def find(self, metric: str, variant: str, **params: Any) -> list[Result]:
        return [
            r
            for r in self.results
            if r.metric == metric
            and r.variant == variant
            and all(r.params.get(k) == v for k, v in params.items())
        ]


def _mean_sd(samples: Sequence[float]) -> tuple[float, float | None]:
    xs = [float(x) for x in samples]
    return float(statistics.fmean(xs)), (float(statistics.stdev(xs)) if len(xs) > 1 else None)


# --------------------------------------------------------------------------------------------------
# Compiled kernels (built on first use: no work at import time)
# --------------------------------------------------------------------------------------------------
@cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


@cache
def _kernels() -> dict[str, Callable[..., Any]]:
    """numba kernels: chunk copy, page spin, madvise/mprotect rounds (libc called from compiled code)."""
    from numba import njit

    libc = _libc()
    # Addresses are passed as size_t (same register/ABI as a pointer on every 64-bit Linux ABI).
    madvise = libc.madvise
    madvise.argtypes = [ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    mprotect = libc.mprotect
    mprotect.argtypes = [ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int]
    mprotect.restype = ctypes.c_int
    page = PAGE_BYTES

    @njit(nogil=True, cache=True)
    def copy_chunks(src, dst, src_off, dst_off, chunk_words, reps):  # pragma: no cover - compiled
        n = src_off.shape[0]
        for _ in range(reps):
            for i in range(n):
                a = src_off[i]
                b = dst_off[i]
                dst[b : b + chunk_words] = src[a : a + chunk_words]
        return dst[dst_off[0]]

    @njit(nogil=True, cache=True)
    def spin(buf, lo, hi, iters):  # pragma: no cover - compiled
        s = np.uint64(0)
        for _ in range(iters):
            for j in range(lo, hi, 512):
                s += buf[j]
                buf[j] = np.uint8(s & np.uint64(0xFF))
        return s

    @njit(nogil=True)
    def zap_rounds(buf, addr, rounds):  # pragma: no cover - compiled
        bad = 0
        for r in range(rounds):
            buf[0] = np.uint8(r & 0xFF)  # write fault: a fresh page is mapped
            if madvise(addr, page, MADV_DONTNEED) != 0:
                bad += 1
        return bad

    @njit(nogil=True)
    def protect_rounds(buf, addr, rounds):  # pragma: no cover - compiled
        bad = 0
        for r in range(rounds):
            buf[0] = np.uint8(r & 0xFF)
            if mprotect(addr, page, PROT_READ) != 0:
                bad += 1
            if mprotect(addr, page, PROT_READ | PROT_WRITE) != 0:
                bad += 1
        return bad

    return {
        "copy_chunks": copy_chunks,
        "spin": spin,
        "zap_rounds": zap_rounds,
        "protect_rounds": protect_rounds,
    }


def warm_up() -> None:
    """Compile every kernel once (before anything is timed or run in threads)."""
    k = _kernels()
    a = np.ones(1024, np.uint64)
    b = np.zeros(1024, np.uint64)
    off = np.zeros(1, np.int64)
    k["copy_chunks"](a, b, off, off, 512, 1)
    with _mapping(4 * PAGE_BYTES) as (buf, addr):
        k["spin"](buf, PAGE_BYTES, 4 * PAGE_BYTES, 1)
        k["zap_rounds"](buf, addr, 2)
        k["protect_rounds"](buf, addr, 2)


@contextlib.contextmanager
def _mapping(nbytes: int, align: int = 0) -> Iterator[tuple[np.ndarray, int]]:
    """A private anonymous mapping as a uint8 array and its address (optionally aligned)."""
    mm = mmap.mmap(-1, nbytes + align, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    whole = np.frombuffer(mm, dtype=np.uint8)
    base = whole.ctypes.data
    skip = (-base) % align if align else 0
    arr = whole[skip : skip + nbytes]
    try:
        yield arr, base + skip
    finally:
        del arr, whole
        with contextlib.suppress(BufferError):
            mm.close()


@contextlib.contextmanager
def _pinned(cpu: int) -> Iterator[None]:
    """Pin the calling thread to one CPU for the block (``sched_setaffinity(0)`` is per thread)."""
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, old)


# --------------------------------------------------------------------------------------------------
# CPU copy bandwidth
# --------------------------------------------------------------------------------------------------
def _offsets(n_chunks: int, chunk_words: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    src = rng.permutation(n_chunks).astype(np.int64) * chunk_words
    dst = rng.permutation(n_chunks).astype(np.int64) * chunk_words
    return src, dst


def measure_copy_sizes(
    src: np.ndarray, dst: np.ndarray, s: Settings, progress: ProgressFn, rng: np.random.Generator
) -> list[Result]:
    """Single-thread copy bandwidth per transfer size: memory-bound, cache-hot, and one Python call per 4K."""
    copy = _kernels()["copy_chunks"]
    out: list[Result] = []
    buf_bytes = src.nbytes
    for kb in SIZES_KB:
        size = kb * KIB
        words = size // 8
        n = buf_bytes // size
        so, do = _offsets(n, words, rng)
        copy(src, dst, so[:2], do[:2], words, 1)
        samples = []
        for _ in range(s.copy_repeats):
            t0 = time.perf_counter()
            copy(src, dst, so, do, words, 1)
            samples.append(n * size / (time.perf_counter() - t0))
        m, sd = _mean_sd(samples)
        common = {"folio_kb": kb, "n_folios": n, "copy_engine": "cpu", "copy_threads": 1}
        out.append(
            Result(
                "copy_bytes_per_s",
                m,
                "B/s",
                sd,
                "memory",
                dict(common),
                f"user-space numba copy of {n} chunks of {kb} KiB in random order between two "
                f"{buf_bytes // MIB} MiB buffers (> LLC {{llc}}); bytes copied / time "
                "(reads + writes = 2x traffic)",
                s.copy_repeats,
            )
        )
        k = max(1, s.hot_bytes // size)
        reps = max(1, s.hot_copy_bytes // (k * size))
        hs = np.arange(k, dtype=np.int64) * words
        hd = hs.copy()
        copy(src, dst, hs, hd, words, 1)
        samples = []
        for _ in range(s.copy_repeats):
            t0 = time.perf_counter()
            copy(src, dst, hs, hd, words, reps)
            samples.append(k * size * reps / (time.perf_counter() - t0))
        m, sd = _mean_sd(samples)
        out.append(
            Result(
                "copy_bytes_per_s",
                m,
                "B/s",
                sd,
                "cache-hot",
                {**common, "n_folios": k},
                f"the same {k} chunk(s) of {kb} KiB ({k * size // KIB} KiB working set) copied {reps} times",
                s.copy_repeats,
            )
        )
        progress(f"copy {kb} KiB")
    # Contrast: one interpreted call per 4 KiB page (what a per-page Python loop would measure).
    one_s, one_d = np.zeros(1, np.int64), np.zeros(1, np.int64)
    words = 4 * KIB // 8
    calls = 2000 if s.quick else 10000
    samples = []
    for _ in range(s.copy_repeats):
        t0 = time.perf_counter()
        for _i in range(calls):
            copy(src, dst, one_s, one_d, words, 1)
        samples.append(calls * 4 * KIB / (time.perf_counter() - t0))
    m, sd = _mean_sd(samples)
    out.append(
        Result(
            "copy_bytes_per_s",
            m,
            "B/s",
            sd,
            "python-call-per-4k",
            {"folio_kb": 4, "n_folios": 1, "copy_engine": "cpu", "copy_threads": 1},
            "contrast only: one Python->numba call per cache-hot 4 KiB copy (call overhead dominates)",
            s.copy_repeats,
        )
    )
    return out


def _threaded_copy(
    src: np.ndarray, dst: np.ndarray, so: np.ndarray, do: np.ndarray, words: int, cpus: Sequence[int]
) -> float:
    """Aggregate bytes/s of len(cpus) pinned threads copying interleaved parts of one chunk list."""
    copy = _kernels()["copy_chunks"]
    t = len(cpus)
    parts = [(so[i::t].copy(), do[i::t].copy()) for i in range(t)]
    barrier = threading.Barrier(t)
    spans: list[tuple[float, float]] = [(0.0, 0.0)] * t
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            os.sched_setaffinity(0, {cpus[i]})
            ps, pd_ = parts[i]
            barrier.wait()
            t0 = time.perf_counter()
            copy(src, dst, ps, pd_, words, 1)
            spans[i] = (t0, time.perf_counter())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(t)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise errors[0]
    wall = max(e for _, e in spans) - min(b for b, _ in spans)
    return so.shape[0] * words * 8 / wall


def measure_copy_threads(
    src: np.ndarray,
    dst: np.ndarray,
    topo: Topology,
    s: Settings,
    progress: ProgressFn,
    rng: np.random.Generator,
) -> list[Result]:
    """Aggregate memory-bound copy bandwidth with 1 … nproc pinned threads (nogil numba)."""
    out: list[Result] = []
    for kb in s.thread_sizes_kb:
        size = kb * KIB
        words = size // 8
        n = src.nbytes // size
        so, do = _offsets(n, words, rng)
        for t in range(1, topo.nproc + 1):
            cpus = topo.cpus[:t]
            samples = [_threaded_copy(src, dst, so, do, words, cpus) for _ in range(s.copy_repeats)]
            m, sd = _mean_sd(samples)
            sample_list = list(samples)
            out.append(
                Result(
                    "copy_bytes_per_s",
                    m,
                    "B/s",
                    sd,
                    "memory-threads",
                    {
                        "folio_kb": kb,
                        "n_folios": n,
                        "copy_engine": "cpu" if t == 1 else "mt-cpu",
                        "copy_threads": t,
                    },
                    f"{t} thread(s) pinned to CPUs {list(cpus)}, each copying every {t}-th of {n} "
                    "random-order "
                    f"{kb} KiB chunks of {src.nbytes // MIB} MiB buffers; total bytes / wall time",
                    s.copy_repeats,
                    samples=sample_list,
                )
            )
            progress(f"copy threads {t} × {kb} KiB")
    return out


# --------------------------------------------------------------------------------------------------
# TLB shootdown
# --------------------------------------------------------------------------------------------------
def measure_tlb_shootdown(topo: Topology, s: Settings, progress: ProgressFn) -> list[Result]:
    """Time per madvise/mprotect round on one page with 1 … N CPUs running the mm; TLB IRQs per round."""
    k = _kernels()
    out: list[Result] = []
    n_pages = 64
    main_cpu = topo.cpus[0]
    methods = (("madvise", k["zap_rounds"]), ("mprotect", k["protect_rounds"]))
    with _mapping(n_pages * PAGE_BYTES) as (buf, addr), _pinned(main_cpu):
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
                    m, sd = _mean_sd(per_round)
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
                        mi, sdi = _mean_sd(irqs)
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


# --------------------------------------------------------------------------------------------------
# move_pages(2)
# --------------------------------------------------------------------------------------------------
MovePagesFn = Callable[[np.ndarray, np.ndarray | None, np.ndarray, int], int]


def sys_move_pages(pages: np.ndarray, nodes: np.ndarray | None, status: np.ndarray, flags: int) -> int:
    """``move_pages(0, n, pages, nodes, status, flags)`` through ``syscall()``; raises OSError on failure."""
    nr = SYS_MOVE_PAGES.get(platform.machine())
    if nr is None:
        raise OSError(f"move_pages system call number unknown on {platform.machine()}")
    libc = _libc()
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
    with _mapping(n_max * PAGE_BYTES) as (buf, addr):
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
                m, sd = _mean_sd(samples)
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


def _fit_call_and_page(results: list[Result], variant: str) -> tuple[float, float] | None:
    """Least-squares ``time(count) = call + count * page`` over the move_pages rows of one variant."""
    rows = [r for r in results if r.variant == variant]
    if len(rows) < 2:
        return None
    n = np.array([r.params["n_folios"] for r in rows], dtype=np.float64)
    t = np.array([r.value for r in rows]) * n
    a = np.vstack([np.ones_like(n), n]).T
    (call, per), *_ = np.linalg.lstsq(a, t, rcond=None)
    return max(0.0, float(call)), max(0.0, float(per))


# --------------------------------------------------------------------------------------------------
# Real migrations between NUMA nodes (two or more nodes with memory)
# --------------------------------------------------------------------------------------------------
def _anon_huge_kb() -> int:
    for line in _read("/proc/self/smaps_rollup").splitlines():
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
    madvise = _libc().madvise
    madvise.argtypes = [ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    batch_cap = 512 if kernel_batches_migration(topo.kernel) else 1
    out: list[Result] = []
    for kb in s.numa_folio_kb:
        folio = kb * KIB
        region = max(s.numa_region_bytes - s.numa_region_bytes % folio, folio)
        n_folios = region // folio
        with _mapping(region, align=2 * MIB) as (buf, addr), _pinned(cpu_a):
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
                m, sd = _mean_sd(samples_bps)
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
                pm, psd = _mean_sd(page_rate)
                out.append(
                    Result("pages_per_s", pm, "pages/s", psd, "", dict(params), note, len(samples_bps))
                )
                per_page = [1.0 / p for p in page_rate]
                tm, tsd = _mean_sd(per_page)
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


# --------------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------------
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
    load1 = _loadavg()
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
    load2 = _loadavg()
    if max(load1, load2) > 0.5 * topo.nproc:
        rep.skipped.append(
            f"warning: other load on this machine (load average {load1:.1f} before, {load2:.1f} after, "
            f"{topo.nproc} CPUs): thread-scaling and TLB figures are unreliable; rerun on a quiet machine"
        )
    rep.derived = derive_figures(rep)
    rep.derived["loadavg_before_after"] = [load1, load2]
    rep.wall_s = time.perf_counter() - t_start
    return rep


# --------------------------------------------------------------------------------------------------
# Derived figures and the local profile
# --------------------------------------------------------------------------------------------------
def fit_usl(threads: Sequence[float], speedup: Sequence[float]) -> tuple[float, float]:
    """Universal scalability law ``X(t)/X(1) = t / (1 + σ(t-1) + κ t(t-1))`` by grid least squares.

    With only two thread counts κ is not identifiable and is fixed at 0.
    """
    t = np.asarray(threads, dtype=np.float64)
    y = np.asarray(speedup, dtype=np.float64)
    sig = np.linspace(0.0, 1.0, 1001)
    kap = np.linspace(0.0, 0.1, 201) if len(t) >= 3 else np.zeros(1)
    sg, kg = np.meshgrid(sig, kap, indexing="ij")
    pred = t[None, None, :] / (1 + sg[..., None] * (t - 1) + kg[..., None] * t * (t - 1))
    err = ((pred - y) ** 2).sum(axis=-1)
    i, j = np.unravel_index(int(np.argmin(err)), err.shape)
    return float(sig[i]), float(kap[j])


def derive_figures(rep: Report) -> dict[str, Any]:
    """Profile-level figures from the raw results (SI), each with a note of how it was derived."""
    d: dict[str, Any] = {}
    mem = [r for r in rep.results if r.variant == "memory"]
    if mem:
        sizes = np.array([r.params["folio_kb"] * KIB for r in mem], dtype=np.float64)
        per_chunk = sizes / np.array([r.value for r in mem])
        # Relative least squares (each equation divided by its time): the noise of a 2 MiB chunk
        # (tens of µs) would otherwise swamp an intercept of well under a µs.
        a = np.vstack([np.ones_like(sizes), sizes]).T / per_chunk[:, None]
        (fixed, inv_bw), *_ = np.linalg.lstsq(a, np.ones_like(sizes), rcond=None)
        big = max(mem, key=lambda r: r.params["folio_kb"])
        d["cpu_copy_bytes_per_s"] = float(1.0 / inv_bw) if inv_bw > 0 else float(big.value)
        d["cpu_copy_fixed_s"] = max(0.0, float(fixed))
        d["copy_memory_2m_bytes_per_s"] = float(big.value)
    hot = [r for r in rep.results if r.variant == "cache-hot"]
    if hot:
        d["copy_hot_max_bytes_per_s"] = max(r.value for r in hot)
    pc = [r for r in rep.results if r.variant == "python-call-per-4k"]
    if pc:
        d["python_call_per_4k_bytes_per_s"] = pc[0].value
    thr = [r for r in rep.results if r.variant == "memory-threads"]
    if thr:
        d["mem_ceiling_bytes_per_s"] = max(r.value for r in thr)
        kb = max(r.params["folio_kb"] for r in thr)
        curve = sorted((r.params["copy_threads"], r.value) for r in thr if r.params["folio_kb"] == kb)
        x1 = curve[0][1]
        ts = [c[0] for c in curve]
        if len(ts) >= 2:
            sigma, kappa = fit_usl(ts, [c[1] / x1 for c in curve])
            d["mt_sigma"], d["mt_kappa"] = sigma, kappa
            d["mt_speedup"] = {str(t): v / x1 for t, v in curve}
    tlb = {
        r.params["target_cpus"]: r
        for r in rep.results
        if r.metric == "tlb_shootdown_s" and r.variant == "madvise-remote-part"
    }
    if tlb:
        d["tlb_remote_part_s"] = {str(k): v.value for k, v in sorted(tlb.items())}
        ks = sorted(tlb)
        if len(ks) >= 2:
            x = np.array([k - 1 for k in ks], dtype=np.float64)
            y = np.array([tlb[k].value for k in ks])
            slope = float(np.polyfit(x, y, 1)[0])
            d["ipi_per_target_s"] = max(0.0, slope)
        starved = any(
            "mostly descheduled" in r.notes
            for r in rep.results
            if r.variant == "madvise-round" and r.metric == "tlb_shootdown_s"
        )
        # A remote part measured while the helpers were off their CPUs is not an IPI cost: not derived.
        d["tlb_remote_2cpu_s"] = tlb[ks[0]].value if ks[0] == 2 and not starved else None
        d["tlb_helpers_starved"] = starved
    rounds = {
        r.params["target_cpus"]: r.value
        for r in rep.results
        if r.variant == "madvise-round" and r.metric == "tlb_shootdown_s"
    }
    if rounds:
        d["tlb_round_s"] = {str(k): v for k, v in sorted(rounds.items())}
    irq = {
        r.params["target_cpus"]: r.value
        for r in rep.results
        if r.metric == "tlb_shootdown_irqs" and r.variant == "madvise-round"
    }
    d["tlb_irqs_per_round"] = (
        {str(k): v for k, v in sorted(irq.items())}
        if irq
        else "unavailable (no TLB line in /proc/interrupts)"
    )
    for variant in ("move_pages-status-query", "move_pages-same-node-move"):
        fit = _fit_call_and_page(rep.results, variant)
        if fit:
            d[f"{variant}_call_s"], d[f"{variant}_page_s"] = fit
    d["numa_nodes_with_memory"] = len(rep.topology.memory_nodes)
    return d


def _base_profile(name: str, retries: int = 3, wait_s: float = 2.0) -> Any:
    from models.profiles import get_profile

    for attempt in range(retries):
        try:
            return get_profile(name)
        except UserError:
            if attempt == retries - 1:
                raise
            time.sleep(wait_s)
    raise AssertionError("unreachable")


def local_profile_dict(rep: Report, name: str = "local", base: str = BASE_PROFILE) -> dict[str, Any]:
    """The profile file (as a dict with units in the keys) for this machine.

    Measured fields cite ``foliotune measure <date>``; the rest are copied from ``base`` and say so.
    """
    from models.profiles import FIELDS, profile_to_toml_dict

    topo, d = rep.topology, rep.derived
    prof = _base_profile(base)
    tag = f"foliotune measure {rep.date}"
    measured: dict[str, tuple[float, str]] = {}

    def put(key: str, si_value: float | None, how: str) -> None:
        if si_value is None or not math.isfinite(si_value):
            return
        factor, lo, hi = FIELDS[key]
        v = min(max(si_value / factor, lo), hi)
        measured[key] = (v, f"{tag}: {how}")

    put("sockets", topo.sockets, "distinct physical_package_id in /sys/devices/system/cpu")
    put("cores", topo.cores, "distinct (package, core_id) in /sys/devices/system/cpu")
    put("smt", topo.smt, "CPUs per core in /sys/devices/system/cpu")
    put("page_kb", PAGE_BYTES / KIB, "mmap.PAGESIZE")
    put(
        "default_batch_limit_pages",
        512 if kernel_batches_migration(topo.kernel) else 1,
        f"kernel {topo.kernel}",
    )
    if topo.cpu_mhz:
        put("cpu_ghz", topo.cpu_mhz / 1000.0, "'cpu MHz' in /proc/cpuinfo (read, not timed)")
    if "cpu_copy_bytes_per_s" in d:
        put(
            "cpu_copy_gbps",
            d["cpu_copy_bytes_per_s"],
            "1-thread user-space copy, buffers > LLC, random chunk order; slope of time vs size 4K..2M",
        )
        put("cpu_copy_fixed_ns", d["cpu_copy_fixed_s"], "intercept of the same fit (per chunk)")
    cpus = topo.nproc
    put("mt_max_threads", cpus, "CPUs this process may use")
    put("default_target_cpus", cpus, "CPUs this process may use")
    if "mem_ceiling_bytes_per_s" in d:
        put(
            "mem_ceiling_gbps",
            d["mem_ceiling_bytes_per_s"],
            f"best aggregate copy bandwidth over 1..{cpus} threads (a lower bound of the ceiling)",
        )
    if "mt_sigma" in d:
        put("mt_sigma", d["mt_sigma"], "USL fit to 2 MiB-chunk copy bandwidth vs threads")
        how = "USL fit" if cpus >= 3 else "set to 0: not identifiable from 2 thread counts"
        put("mt_kappa", d["mt_kappa"], how)
    remote = d.get("tlb_remote_2cpu_s")
    if remote is not None:
        pv = prof.values
        per_target = d.get("ipi_per_target_s") if cpus >= 3 else None
        if per_target is not None:
            put("ipi_per_target_ns", per_target, "slope of the madvise remote part vs target CPUs")
        pt = per_target if per_target is not None else pv["ipi_per_target_ns"]
        alpha = pv["ack_tail_alpha"]
        tail = pv["ack_tail_scale_us"] / (alpha - 1.0)
        base_s = max(0.0, remote - pt - pv["ack_handler_page_us"] - tail)
        put(
            "ipi_send_base_us",
            base_s,
            "madvise one-page round with 2 CPUs minus with 1 CPU, less the assumed per-target, "
            "page-handler and mean ack-tail terms",
        )
    if "move_pages-same-node-move_call_s" in d:
        put(
            "call_setup_us",
            d["move_pages-same-node-move_call_s"],
            "per-call intercept of move_pages() to the current node (no copy; lru_add_drain_all, lookup)",
        )
    put("dma_channels_max", float(topo.dma_channels), "channels in /sys/class/dma")
    put("dsa_channels_max", float(topo.dsa_devices), "devices in /sys/bus/dsa/devices")

    out = profile_to_toml_dict(prof)
    for key in FIELDS:
        if key in measured:
            v, src = measured[key]
            out[key] = {
                "value": int(round(v)) if isinstance(out[key]["value"], int) else float(v),
                "source": src,
            }
        else:
            out[key] = {"value": out[key]["value"], "source": f"assumed (copied from {base})"}
    engines = ["cpu"] + (["mt-cpu"] if cpus > 1 else [])
    if topo.dma_channels:
        engines.append("dma")
    if topo.dsa_devices:
        engines.append("dsa")
    out["name"] = name
    out["description"] = (
        f"This machine: {topo.cpu_model}, {cpus} CPUs ({topo.sockets} socket(s), {topo.cores} cores, "
        f"SMT {topo.smt}), "
        f"{len(topo.memory_nodes)} NUMA node(s) with memory"
        f"{', virtual machine' if topo.virtual_machine else ''}; "
        f"measured by foliotune measure {rep.date}"
    )
    out["arch"] = topo.arch
    out["flush_mechanism"] = "broadcast" if topo.arch in ("aarch64", "arm64") else "ipi"
    out["copy_engines"] = engines
    out["provenance"] = f"{tag} on {topo.hostname} (kernel {topo.kernel}); other fields copied from {base}"
    return out


# --------------------------------------------------------------------------------------------------
# Rows in the measurement schema and files
# --------------------------------------------------------------------------------------------------
def source_id(rep: Report) -> str:
    host = "".join(ch if ch.isalnum() or ch == "-" else "-" for ch in rep.topology.hostname.lower())
    return f"measure-{host}-{rep.date}"


def results_frame(rep: Report, profile_name: str = "local", command: str = "foliotune measure") -> Any:
    """Rows of the measurement schema (``models/data/MEASUREMENTS.md``) for the results kept in it."""
    import pandas as pd

    from models.measurements import COLUMNS

    topo = rep.topology
    trust = "C" if topo.virtual_machine else "A"
    machine = (
        f"{topo.cpu_model}, {topo.nproc} CPUs, {topo.sockets} socket(s), "
        f"{len(topo.memory_nodes)} NUMA node(s)" + (", virtual machine" if topo.virtual_machine else "")
    )
    rows = []
    for r in rep.results:
        if not r.in_schema:
            continue
        row: dict[str, Any] = dict.fromkeys(COLUMNS, None)
        row.update(
            source=source_id(rep),
            reference=command,
            machine=machine,
            profile=profile_name,
            date=rep.date,
            trust=trust,
            variant=r.variant,
            metric=r.metric,
            value=r.value,
            sd=r.sd,
            unit=r.unit,
            notes=f"{r.notes}; kernel {topo.kernel}",
        )
        row.update(r.params)
        row["x_repeats"] = r.repeats
        rows.append(row)
    df = pd.DataFrame(rows, columns=[*COLUMNS, "x_repeats"])
    for c in ("folio_kb", "n_folios", "batch_limit_pages", "copy_threads", "target_cpus", "mapcount"):
        df[c] = df[c].astype("Int64")
    return df


def check_out_dir(out_dir: str | Path) -> Path:
    """Create ``out_dir`` if needed and make sure it is writable; a one-line UserError otherwise."""
    p = Path(out_dir).expanduser()
    try:
        p.mkdir(parents=True, exist_ok=True)
        probe = p / f".foliotune-write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"--out {out_dir}: cannot write there ({exc.strerror or exc})") from None
    return p


def write_outputs(
    rep: Report, out_dir: str | Path, profile_name: str = "local", command: str = "foliotune measure"
) -> dict[str, Path]:
    """Write ``<name>.toml`` (profile), ``measurements-<name>.csv`` (schema rows), ``measure-<name>.json``."""
    import models.profiles as profiles_mod
    from models.profiles import load_profile_file

    def dump(d: dict[str, Any]) -> str:
        fn = getattr(profiles_mod, "dump_profile_toml", None)  # one `key = { value, source }` line per number
        if fn is not None:
            return str(fn(d))
        import tomli_w  # older profiles module: plain TOML writer

        return str(tomli_w.dumps(d))

    out = check_out_dir(out_dir)
    paths = {
        "profile": out / f"{profile_name}.toml",
        "measurements": out / f"measurements-{profile_name}.csv",
        "report": out / f"measure-{profile_name}.json",
    }
    text = dump(local_profile_dict(rep, profile_name))
    # refuse to publish a profile the loader would refuse
    atomic_write(paths["profile"], text, check=load_profile_file)
    results_frame(rep, profile_name, command).to_csv(paths["measurements"], index=False)
    raw = {
        "date": rep.date,
        "command": command,
        "wall_s": rep.wall_s,
        "timings_s": rep.timings_s,
        "topology": rep.topology.to_dict(),
        "settings": asdict(rep.settings),
        "derived": rep.derived,
        "skipped": rep.skipped,
        "results": [asdict(r) for r in rep.results],
    }
    paths["report"].write_text(json.dumps(raw, indent=1, default=str) + "\n")
    return paths


__all__ = [
    "Report",
    "Result",
    "Settings",
    "Topology",
    "check_out_dir",
    "derive_figures",
    "fit_usl",
    "local_profile_dict",
    "measure_numa_migration",
    "plan_steps",
    "read_tlb_interrupts",
    "read_topology",
    "results_frame",
    "run_measurements",
    "sys_move_pages",
    "write_outputs",
]
