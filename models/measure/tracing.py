"""One traced, timed window: the migrating task on its CPU, the private tracefs instance recording.

The three ways ``foliotune measure --kernel`` drives ``migrate_pages()`` (memory-block offline,
compaction, ``move_pages(2)``) share it: clear the instance's buffer, pin the calling thread (a child
process inherits its affinity), read the ``/proc/interrupts`` TLB counter, turn tracing on, run the
call, and take the wall time, the counter delta and the trace text afterwards.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from models.measure.native import pinned
from models.measure.topology import read_tlb_interrupts


@dataclass
class TracedWindow:
    """What one window saw (filled in when the ``with`` block ends)."""

    wall_s: float = 0.0  # the block, as seen from user space
    tlb_irqs: int | None = None  # /proc/interrupts TLB delta over the block (None: no such counter)
    text: str = ""  # the instance's trace of the block


@contextlib.contextmanager
def traced_window(inst: Path, cpu: int) -> Iterator[TracedWindow]:
    """Trace and time the block, run from a thread pinned to ``cpu``."""
    w = TracedWindow()
    (inst / "trace").write_text("")
    with pinned(cpu):
        c0 = read_tlb_interrupts()
        (inst / "tracing_on").write_text("1")
        t0 = time.perf_counter()
        try:
            yield w
        finally:
            w.wall_s = time.perf_counter() - t0
            (inst / "tracing_on").write_text("0")
            c1 = read_tlb_interrupts()
            w.tlb_irqs = None if c0 is None or c1 is None else c1 - c0
    w.text = (inst / "trace").read_text()


def fifo_shell(command: str) -> list[str]:
    """``sh -c command`` under ``chrt -f 10`` where chrt exists: the call is timed against the kernel,
    not against other load."""
    cmd = ["sh", "-c", command]
    return ["chrt", "-f", "10", *cmd] if shutil.which("chrt") else cmd


__all__ = ["TracedWindow", "fifo_shell", "traced_window"]
