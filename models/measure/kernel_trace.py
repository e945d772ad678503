"""Read migration tracepoints: raw tracefs ``trace`` files, ``trace-cmd report`` and ``perf script`` text.

Each ``migrate:mm_migrate_pages_start`` is paired with the next ``migrate:mm_migrate_pages`` of the
same task (a task runs one ``migrate_pages()`` at a time; it may sleep in it and end on another CPU,
so the CPU is recorded at both ends, not matched). ``tlb:tlb_flush`` events between the two
timestamps are counted per call: flushes sent and done by the migrating task (flush rounds) and
flushes done on other CPUs in the IPI handler (IPIs received).

References
----------
include/trace/events/migrate.h (Linux 6.18): ``mm_migrate_pages_start`` (mode, reason) and
``mm_migrate_pages`` (succeeded and failed base pages, THP succeeded/failed/split, large-folio split,
mode, reason), emitted at the start and end of ``migrate_pages()`` in mm/migrate.c.
include/trace/events/tlb.h: ``tlb_flush`` reasons 0 task switch, 1 remote shootdown (IPI handler),
2 local shootdown, 3 local MM shootdown, 4 remote IPI send (arch/x86/mm/tlb.c
``native_flush_tlb_multi()``), 5 remote wrong CPU.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from models.errors import UserError

START = "mm_migrate_pages_start"
END = "mm_migrate_pages"
FLUSH = "tlb_flush"
#: tlb_flush reason codes (include/trace/events/tlb.h, ``TLB_FLUSH_REASON``).
FLUSH_REASONS = {
    0: "task switch",
    1: "remote shootdown",
    2: "local shootdown",
    3: "local MM shootdown",
    4: "remote IPI send",
    5: "remote wrong CPU",
}
_FLUSH_NAME_TO_CODE = {v: k for k, v in FLUSH_REASONS.items()}

# ftrace / trace-cmd:  [buffer: ]comm-PID [(TGID)] [CPU] [flags] TIMESTAMP: [system:]event: args
_FTRACE = re.compile(
    r"^\s*(?:[\w.-]+:\s+)?(?P<comm>.*?)-(?P<pid>\d+)\s+(?:\(\s*[\d-]+\)\s+)?\[(?P<cpu>\d+)\]\s+(?:[\w.]{4,6}\s+)?"
    r"(?P<ts>\d+\.\d+):\s+(?P<event>[\w:]+):\s?(?P<args>.*)$"
)
# perf script:  comm PID[/TID] [CPU] TIMESTAMP: system:event: args
_PERF = re.compile(
    r"^\s*(?P<comm>.*?)\s+(?:\d+/)?(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+"
    r"(?P<ts>\d+\.\d+):\s+(?P<event>[\w:]+):\s?(?P<args>.*)$"
)
_SKIP = re.compile(r"^\s*(#|$|cpus=\d+|version\s*=|CPU \d+ is empty|trace-cmd:)")
_KV = re.compile(r"(\w+)=(\S+)")


class TraceError(UserError):
    """A trace that cannot give migration rows; the message names the file and line."""


@dataclass
class MigrateCall:
    """One ``migrate_pages()`` call seen in a trace (times in seconds of the trace clock)."""

    pid: int
    comm: str
    cpu_start: int
    cpu_end: int
    t_start_s: float
    t_end_s: float
    line: int  # line of the start event
    succeeded_pages: int
    failed_pages: int
    thp_succeeded: int
    thp_failed: int
    thp_split: int
    large_split: int
    mode: str
    reason: str
    flush_rounds: int = 0  # flushes issued by the migrating task (local or IPI send)
    flush_ipis: int = 0  # remote shootdowns done in the IPI handler on other CPUs
    flush_events: dict[str, int] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return self.t_end_s - self.t_start_s


@dataclass
class ParsedTrace:
    path: str
    calls: list[MigrateCall]
    events: int
    unreadable: list[int]  # line numbers
    lost_events: int = 0
    other_events: set[str] = field(default_factory=set)


def _event_name(event: str) -> str:
    return event.rsplit(":", 1)[-1]


def _flush_reason(args: str) -> int | None:
    m = re.search(r"\((\d+)\)\s*$", args)
    if m:
        return int(m.group(1))
    m = re.search(r"reason[:=](.+?)\s*$", args)
    if m:
        return _FLUSH_NAME_TO_CODE.get(m.group(1).strip())
    return None


def parse_trace_text(text: str, path: str = "<trace>", handler_pids: set[int] | None = None) -> ParsedTrace:
    """Parse trace text into paired calls; raises :class:`TraceError` naming ``path`` and the line."""
    if not text.strip():
        raise TraceError(f"{path}: empty trace")
    if not text.endswith("\n"):
        n = text.count("\n") + 1
        raise TraceError(f"{path}: line {n}: truncated mid-line (the file does not end with a newline)")
    open_calls: dict[int, tuple[int, int, float, str, dict[str, str]]] = {}
    calls: list[MigrateCall] = []
    flushes: list[tuple[float, int, int, int]] = []  # ts, pid, cpu, reason
    unreadable: list[int] = []
    lost = 0
    events = 0
    other: set[str] = set()
    for i, line in enumerate(text.split("\n")[:-1], start=1):
        if _SKIP.match(line):
            continue
        if "LOST" in line and "EVENTS" in line:
            lost += 1
            unreadable.append(i)
            continue
        m = _FTRACE.match(line) or _PERF.match(line)
        if m is None:
            unreadable.append(i)
            continue
        events += 1
        ev = _event_name(m.group("event"))
        pid, cpu, ts, args = int(m.group("pid")), int(m.group("cpu")), float(m.group("ts")), m.group("args")
        if ev == START:
            if pid in open_calls:
                raise TraceError(
                    f"{path}: line {open_calls[pid][0]}: {START} of task {pid} has no {END} before the "
                    f"task's next call at line {i} (unpaired events)"
                )
            open_calls[pid] = (i, cpu, ts, m.group("comm").strip(), dict(_KV.findall(args)))
        elif ev == END:
            kv = dict(_KV.findall(args))
            if pid not in open_calls:
                raise TraceError(
                    f"{path}: line {i}: {END} of task {pid} without its {START} (unpaired events)"
                )
            try:
                nums = [
                    int(kv[k])
                    for k in (
                        "nr_succeeded",
                        "nr_failed",
                        "nr_thp_succeeded",
                        "nr_thp_failed",
                        "nr_thp_split",
                    )
                ]
                large_split = int(kv.get("nr_split", "0"))
            except (KeyError, ValueError):
                raise TraceError(
                    f"{path}: line {i}: {END} without its nr_succeeded/nr_failed/... fields"
                ) from None
            line0, cpu0, ts0, comm, kv0 = open_calls.pop(pid)
            calls.append(
                MigrateCall(
                    pid=pid,
                    comm=comm,
                    cpu_start=cpu0,
                    cpu_end=cpu,
                    t_start_s=ts0,
                    t_end_s=ts,
                    line=line0,
                    succeeded_pages=nums[0],
                    failed_pages=nums[1],
                    thp_succeeded=nums[2],
                    thp_failed=nums[3],
                    thp_split=nums[4],
                    large_split=large_split,
                    mode=kv.get("mode", kv0.get("mode", "")),
                    reason=kv.get("reason", kv0.get("reason", "")),
                )
            )
        elif ev == FLUSH:
            code = _flush_reason(args)
            if code is None:
                unreadable.append(i)
                continue
            flushes.append((ts, pid, cpu, code))
        else:
            other.add(m.group("event"))
    if open_calls:
        line0 = min(v[0] for v in open_calls.values())
        raise TraceError(
            f"{path}: line {line0}: {START} without its {END} (unpaired events; trace cut short?)"
        )
    if not calls:
        seen = ", ".join(sorted(other)[:5]) or ("tlb_flush only" if flushes else "none readable")
        where = f"line {unreadable[0]}: " if unreadable and not events else ""
        raise TraceError(
            f"{path}: {where}no migration in this trace (no {START}/{END} pair; events seen: {seen})"
        )
    _attach_flushes(calls, flushes, handler_pids)
    return ParsedTrace(path, calls, events, unreadable, lost, other)


def _attach_flushes(
    calls: list[MigrateCall], flushes: Iterable[tuple[float, int, int, int]], handler_pids: set[int] | None
) -> None:
    """Count per call the flush rounds of the migrating task and the IPIs handled elsewhere.

    A round is one ``flush_tlb_multi()``/``arch_tlbbatch_flush()``: reason 4 (IPIs sent) and/or reason 2
    (local full flush) by the migrating task, so rounds = max of the two counts. Reason 3 (local MM
    shootdown) by the migrating task is not counted: about 27 of them come with every memory-hotplug
    call whatever the folio size (kernel-range flushes of the offline path). IPIs = reason 1 (the
    handler) on CPUs other than the one the call started on, in any task (the handler runs in
    whatever task the IPI interrupts), or only in tasks ``handler_pids`` when given; IPIs that
    other processes' flushes caused in the window count too.
    """
    fl = sorted(flushes)
    for c in calls:
        counts: dict[str, int] = {}
        sends = local = handled = 0
        for ts, pid, _cpu, code in fl:
            if ts < c.t_start_s:
                continue
            if ts > c.t_end_s:
                break
            name = FLUSH_REASONS.get(code, str(code))
            counts[name] = counts.get(name, 0) + 1
            if pid == c.pid and code == 4:
                sends += 1
            elif pid == c.pid and code == 2:
                local += 1
            elif code == 1 and _cpu != c.cpu_start and (handler_pids is None or pid in handler_pids):
                handled += 1
        c.flush_events = counts
        # One round is one flush_tlb_multi()/arch_tlbbatch_flush(): it sends IPIs, flushes locally, or both.
        c.flush_rounds = max(sends, local)
        c.flush_ipis = handled


def read_trace_file(path: str | Path) -> ParsedTrace:
    """Read one trace file (text); binary ``perf.data`` and unreadable files are refused with one line."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise TraceError(f"{p}: cannot read ({exc.strerror or exc})") from None
    if data.startswith(b"PERFILE2") or data.startswith(b"PERFFILE"):
        raise TraceError(f"{p}: line 1: binary perf.data; convert it first: perf script -i {p} > {p}.txt")
    if data.startswith(b"\x17\x08\x44tracing"):
        raise TraceError(
            f"{p}: line 1: binary trace.dat; convert it first: trace-cmd report -i {p} > {p}.txt"
        )
    nul = data.find(b"\x00")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise TraceError(f"{p}: line {line}: binary data (NUL byte), not trace text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise TraceError(f"{p}: line {line}: not UTF-8 text") from None
    return parse_trace_text(text, str(p))
