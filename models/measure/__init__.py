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

Results are :class:`Result` records (``records``); :func:`results_frame` turns them into rows of the measurement
schema (``models/data/MEASUREMENTS.md``) and :func:`local_profile_dict` into a hardware profile.

Modules, one job each: ``topology`` (what the machine is), ``records`` (settings and results),
``native`` (compiled loops), ``copy``, ``tlb``, ``move_pages``, ``kernel_trace`` and ``kernel_run``
(real ``migrate_pages()`` timed through tracefs), ``run`` (the driver), ``profile`` (derived figures,
the local profile) and ``output`` (schema rows and files).
"""

from __future__ import annotations

from models.measure.copy import measure_copy_sizes, measure_copy_threads
from models.measure.move_pages import measure_move_pages_local, measure_numa_migration, sys_move_pages
from models.measure.native import warm_up
from models.measure.output import check_out_dir, results_frame, source_id, write_outputs
from models.measure.profile import derive_figures, fit_usl, local_profile_dict
from models.measure.records import Report, Result, Settings
from models.measure.run import plan_steps, run_measurements
from models.measure.tlb import measure_tlb_shootdown
from models.measure.topology import (
    KIB,
    MIB,
    PAGE_BYTES,
    SIZES_KB,
    Topology,
    kernel_batches_migration,
    parse_cpulist,
    read_tlb_interrupts,
    read_topology,
)

__all__ = [
    "KIB",
    "MIB",
    "PAGE_BYTES",
    "SIZES_KB",
    "Report",
    "Result",
    "Settings",
    "Topology",
    "check_out_dir",
    "derive_figures",
    "fit_usl",
    "kernel_batches_migration",
    "local_profile_dict",
    "measure_copy_sizes",
    "measure_copy_threads",
    "measure_move_pages_local",
    "measure_numa_migration",
    "measure_tlb_shootdown",
    "parse_cpulist",
    "plan_steps",
    "read_tlb_interrupts",
    "read_topology",
    "results_frame",
    "run_measurements",
    "source_id",
    "sys_move_pages",
    "warm_up",
    "write_outputs",
]
