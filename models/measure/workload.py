"""The workload whose mm is migrated: compiled threads that keep running on the CPUs it spans.

A flush reaches only the CPUs in the mm's cpumask, and x86 takes a CPU out of it when a flush finds
the CPU running another mm (arch/x86/mm/tlb.c ``flush_tlb_func()``, "remote wrong CPU", Linux 6.18);
``flush_tlb_mm_range()`` then flushes locally only. So the threads must be on their CPUs for the
whole call, and nothing of theirs may be migrated (a thread that faults on a migration entry sleeps
until the folio is remapped, and its CPU leaves the cpumask). Hence:

* the threads, their stacks and their buffer are made once, before the measured block is onlined
  movable, so none of their pages lies in it;
* while a call runs each thread spins in one compiled ``nogil`` loop (no GIL hand-over, no Python
  object touched) until a flag in its buffer is set;
* as root a spinning thread runs ``SCHED_FIFO`` (priority 1) so other processes' tasks cannot take
  its CPU, and it sleeps a few tens of microseconds every ~2 ms so that per-CPU kernel work the
  offline path waits for (``lru_add_drain_all()``, ``drain_all_pages()``) is not starved; while it
  sleeps its CPU is idle in lazy-TLB mode and stays in the cpumask.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator

import numpy as np

from models.measure.native import kernels
from models.measure.topology import PAGE_BYTES

#: Buffer each thread sweeps (one cache line per 512 bytes): small, so the CPU stays busy on the mm.
SPIN_BYTES = 64 * PAGE_BYTES
#: Sweeps between sleeps (a sweep of 64 pages at a 512-byte stride takes ~0.5 µs) and the sleep.
SWEEPS_PER_GAP = 4000
GAP_US = 20
FIFO_PRIORITY = 1
MAIN_PRIORITY = 10


class Workload:
    """One thread per CPU of ``cpus``, idle until :meth:`running` makes some of them spin."""

    def __init__(self, cpus: tuple[int, ...]) -> None:
        self.cpus = tuple(cpus)
        self._arena = np.ones((len(self.cpus), PAGE_BYTES + SPIN_BYTES), np.uint8)
        self._ctl = self._arena[:, :64]  # [i, 0] stop flag, [i, 1] 0 idle / 1 spinning / 2 stopped
        self._ctl[:] = 0
        self._go = [threading.Event() for _ in self.cpus]
        self._quit = False
        self._started = threading.Semaphore(0)
        self._threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True, name=f"foliotune-workload-{c}")
            for i, c in enumerate(self.cpus)
        ]

    def _run(self, i: int) -> None:
        os.sched_setaffinity(0, {self.cpus[i]})
        with contextlib.suppress(OSError):  # without root: nice -10 at least (this thread only)
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), -10)
        with contextlib.suppress(OSError):  # root only
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(FIFO_PRIORITY))
        spin = kernels()["spin_until"]
        row = self._arena[i]
        ctl, buf = row[:64], row[PAGE_BYTES:]
        ctl[0] = 1
        spin(buf, ctl, 1, 1, 0)  # touch the buffer, and the stack as deep as the loop goes, now
        ctl[1] = 0
        self._started.release()
        while True:
            self._go[i].wait()
            self._go[i].clear()
            if self._quit:
                return
            spin(buf, ctl, 1, SWEEPS_PER_GAP, GAP_US)

    def __enter__(self) -> Workload:
        for t in self._threads:
            t.start()
        for _ in self._threads:
            if not self._started.acquire(timeout=30):
                raise RuntimeError("workload thread did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._quit = True
        self._ctl[:, 0] = 1
        for e in self._go:
            e.set()
        for t in self._threads:
            t.join(timeout=10)

    @contextlib.contextmanager
    def running(self, cpus: tuple[int, ...]) -> Iterator[None]:
        """The threads of ``cpus`` spin for the block (they are spinning when it starts)."""
        idx = [self.cpus.index(c) for c in cpus]
        # The calling thread (it starts the migration and times it) runs above the spinning threads
        # meanwhile; a SCHED_OTHER caller would get their CPUs only in their short sleeps.
        policy = os.sched_getscheduler(0)
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(MAIN_PRIORITY))
        for i in idx:
            self._ctl[i, 0] = 0
            self._ctl[i, 1] = 0
            self._go[i].set()
        deadline = time.monotonic() + 10
        while not all(self._ctl[i, 1] == 1 for i in idx):
            if time.monotonic() > deadline:
                raise RuntimeError("workload threads did not start spinning")
            time.sleep(0.0005)
        try:
            yield
        finally:
            for i in idx:
                self._ctl[i, 0] = 1
            while not all(self._ctl[i, 1] == 2 for i in idx):
                if time.monotonic() > deadline + 60:
                    raise RuntimeError("workload threads did not stop")
                time.sleep(0.0005)
            with contextlib.suppress(OSError):
                os.sched_setscheduler(0, policy, os.sched_param(0))


__all__ = ["Workload"]
