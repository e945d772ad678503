"""Derived figures and the ``local`` hardware profile built from a :class:`Report`."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from models.errors import UserError
from models.measure.move_pages import fit_call_and_page
from models.measure.records import Report
from models.measure.topology import (
    BASE_PROFILE,
    KIB,
    PAGE_BYTES,
    kernel_batches_migration,
    kernel_release,
    read_sys,
)
from models.profiles import FIELDS, KNOWN_KERNELS, get_profile, kernel_code, profile_to_toml_dict


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
        fit = fit_call_and_page(rep.results, variant)
        if fit:
            d[f"{variant}_call_s"], d[f"{variant}_page_s"] = fit
    d["numa_nodes_with_memory"] = len(rep.topology.memory_nodes)
    return d


def _base_profile(name: str, retries: int = 3, wait_s: float = 2.0) -> Any:
    for attempt in range(retries):
        try:
            return get_profile(name)
        except UserError:
            if attempt == retries - 1:
                raise
            time.sleep(wait_s)
    raise AssertionError("unreachable")


def _known_kernel(release: str) -> str:
    """This kernel's MAJOR.MINOR, or the newest release the model knows when it is newer."""
    k = kernel_release(release)
    return k if kernel_code(k) >= 0 else KNOWN_KERNELS[-1]


def local_profile_dict(rep: Report, name: str = "local", base: str = BASE_PROFILE) -> dict[str, Any]:
    """The profile file (as a dict with units in the keys) for this machine.

    Measured fields cite ``foliotune measure <date>``; the rest are copied from ``base`` and say so.
    """
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
    out["flush_mechanism"] = {
        "value": "arm64-tlbi" if topo.arch in ("aarch64", "arm64") else "x86-ipi",
        "source": f"{tag}: architecture {topo.arch}",
    }
    out["default_kernel"] = {"value": _known_kernel(topo.kernel), "source": f"{tag}: uname -r {topo.kernel}"}
    has_invlpgb = "invlpgb" in read_sys("/proc/cpuinfo").split()
    out["invlpgb"] = {
        "value": bool(has_invlpgb and topo.arch == "x86_64"),
        "source": f"{tag}: 'invlpgb' {'in' if has_invlpgb else 'not in'} the /proc/cpuinfo flags",
    }
    out["copy_engines"] = engines
    out["provenance"] = f"{tag} on {topo.hostname} (kernel {topo.kernel}); other fields copied from {base}"
    return out
