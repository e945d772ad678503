"""Topology of this machine read from /sys and /proc (nothing timed), and the unit constants."""

from __future__ import annotations

import contextlib
import mmap
import os
import platform
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

KIB = 1024
MIB = 1024 * 1024
PAGE_BYTES = mmap.PAGESIZE
BASE_PROFILE = "epyc-zen3-2s"

#: ``move_pages`` / ``migrate_pages`` system call numbers (no libnuma needed).
SYS_MOVE_PAGES = {"x86_64": 279, "aarch64": 239, "arm64": 239, "ppc64le": 301, "riscv64": 239}
SIZES_KB: tuple[int, ...] = tuple(4 << i for i in range(10))  # 4 KiB ... 2 MiB

ProgressFn = Callable[[str], None]


def read_sys(path: str | Path, default: str = "") -> str:
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
        pkg = read_sys(topo / "physical_package_id", "0")
        packages.add(pkg)
        cores.add((pkg, read_sys(topo / "core_id", str(c))))
    n_sockets = max(1, len(packages))
    n_cores = max(1, len(cores))
    smt = max(1, round(len(cpus) / n_cores))
    nodes: dict[int, tuple[int, ...]] = {}
    node_mem: dict[int, int] = {}
    for d in sorted((sysfs / "node").glob("node[0-9]*")):
        n = int(d.name[4:])
        nodes[n] = tuple(parse_cpulist(read_sys(d / "cpulist")))
        mem = 0
        for line in read_sys(d / "meminfo").splitlines():
            if "MemTotal:" in line:
                mem = int(line.split()[-2]) * KIB
        node_mem[n] = mem
    if not nodes:  # kernels without NUMA support: one node holding everything
        nodes = {0: cpus}
        node_mem = {0: _meminfo("MemTotal")}
    llc = 0
    for idx in sorted((sysfs / f"cpu/cpu{cpus[0]}/cache").glob("index*")):
        if read_sys(idx / "type") in ("Unified", "Data"):
            llc = max(llc, _size_bytes(read_sys(idx / "size", "0")))
    cpuinfo = read_sys("/proc/cpuinfo")
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
    vm = "hypervisor" in flags.split() or bool(read_sys("/sys/hypervisor/type"))
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
    for line in read_sys("/proc/meminfo").splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * KIB
    return 0


def loadavg() -> float:
    try:
        return float(read_sys("/proc/loadavg", "0").split()[0])
    except (ValueError, IndexError):
        return 0.0


def read_tlb_interrupts() -> int | None:
    """Sum over CPUs of the ``/proc/interrupts`` "TLB" (TLB shootdowns) line; None if there is none."""
    for line in read_sys("/proc/interrupts").splitlines():
        parts = line.split()
        if parts and parts[0] == "TLB:":
            return sum(int(p) for p in parts[1:] if p.isdigit())
    return None


def kernel_release(release: str) -> str:
    """``"6.18.44-fc-v669"`` → ``"6.18"`` (the ``kernel`` column: MAJOR.MINOR)."""
    parts = release.split(".")
    return ".".join(p.split("-")[0] for p in parts[:2])


def kernel_batches_migration(release: str) -> bool:
    """Linux 6.3+ batches the TLB flush of ``migrate_pages()`` (NR_MAX_BATCHED_MIGRATION)."""
    try:
        major, minor = (int(x) for x in release.split(".")[:2])
    except ValueError:
        return True
    return (major, minor) >= (6, 3)
