"""Measurement rows from migration traces captured elsewhere (``foliotune import-trace``).

One row set per ``migrate_pages()`` call (variant ``call N``) and one per trace (variant ``trace``:
every call's pages over every call's time), each with bytes/s, pages/s, time per call, time per
page and, where the trace has ``tlb:tlb_flush`` events, flush rounds and IPIs per call.
A trace cannot say the folio size when no THP moved, nor which CPUs ran the mm: the caller gives them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from models.errors import UserError
from models.measure.kernel_trace import MigrateCall, ParsedTrace, TraceError
from models.measurements import COLUMNS

_MODES = {"MIGRATE_ASYNC": "async", "MIGRATE_SYNC": "sync", "MIGRATE_SYNC_LIGHT": "sync"}


class TraceInputError(UserError):
    """A trace file that cannot give rows (one line naming the file and the line)."""


@dataclass(frozen=True)
class TraceOptions:
    profile: str
    page_kb: int
    folio_kb: int | None  # when the trace has no THP (None: base pages)
    target_cpus: int | None
    batch_limit_pages: int
    kernel: str
    trust: str
    machine: str
    date: str


def _pmd_kb(opt: TraceOptions) -> int:
    # A PMD-mapped THP is HPAGE_PMD_NR base pages: 512 with 4 KiB pages (2 MiB).
    return {4: 2048, 16: 32 * 1024, 64: 512 * 1024}.get(opt.page_kb, 2048)


def _mixed(c: MigrateCall, opt: TraceOptions) -> bool:
    """THPs and base pages in one call: its folio size is not one number."""
    return bool(c.thp_succeeded) and c.thp_succeeded * (_pmd_kb(opt) // opt.page_kb) != c.succeeded_pages


def _folio_kb(c: MigrateCall, opt: TraceOptions) -> int:
    if c.thp_succeeded and not _mixed(c, opt):
        return _pmd_kb(opt)
    return opt.folio_kb or opt.page_kb


def _figures(calls: list[MigrateCall], opt: TraceOptions, folio_kb: int, flushes: bool) -> dict[str, float]:
    pages = sum(c.succeeded_pages for c in calls)
    dur = sum(c.duration_s for c in calls)
    page_b = opt.page_kb * 1024
    out = {
        "bytes_per_s": pages * page_b / dur,
        "pages_per_s": pages / dur,
        "time_s": dur / len(calls),
        "time_per_page_s": dur / pages,
    }
    if flushes:
        out["flush_rounds"] = sum(c.flush_rounds for c in calls) / len(calls)
        out["ipis"] = sum(c.flush_ipis for c in calls) / len(calls)
    out["n_folios"] = pages / len(calls) / max(1, folio_kb // opt.page_kb)
    return out


def trace_rows(
    parsed: ParsedTrace, opt: TraceOptions, source: str, reference: str
) -> tuple[pd.DataFrame, int]:
    """Rows for one parsed trace; returns the rows and the number of calls left out: those that moved
    nothing, and those mixing THPs with base pages when no ``folio_kb`` was given."""
    where = parsed.path
    has_flush = any(c.flush_events for c in parsed.calls)
    used = [
        c
        for c in parsed.calls
        if c.succeeded_pages > 0 and c.duration_s > 0 and (opt.folio_kb is not None or not _mixed(c, opt))
    ]
    if not used:
        raise TraceInputError(
            f"{where}: line {parsed.calls[0].line}: no usable call ({len(parsed.calls)} calls: none moved a "
            "page in a measurable time, or they mix THPs with base pages and no --folio-kb was given)"
        )
    rows: list[dict[str, Any]] = []
    sizes = {id(c): _folio_kb(c, opt) for c in used}
    groups: list[tuple[str, list[MigrateCall]]] = [(f"call {i + 1}", [c]) for i, c in enumerate(used)]
    if len({sizes[id(c)] for c in used}) == 1:
        groups.append(("trace", used))
    for variant, calls in groups:
        kb = sizes[id(calls[0])]
        f = _figures(calls, opt, kb, has_flush)
        c0 = calls[0]
        modes = {_MODES.get(c.mode, "") for c in calls}
        mode = modes.pop() if len(modes) == 1 else ""
        reasons = sorted({c.reason for c in calls})
        note = (
            f"imported from {Path(where).name}: "
            + (
                f"line {c0.line}, task {c0.comm}-{c0.pid}, CPU {c0.cpu_start}->{c0.cpu_end}"
                if len(calls) == 1
                else f"{len(calls)} calls"
            )
            + f"; mode {', '.join(sorted({c.mode for c in calls}))}; reason {', '.join(reasons)}; "
            f"THP succeeded {sum(c.thp_succeeded for c in calls)}, split {sum(c.thp_split for c in calls)}; "
            f"failed pages {sum(c.failed_pages for c in calls)}"
            + ("" if opt.folio_kb is None or kb != opt.folio_kb else "; folio size given with --folio-kb")
            + ("" if opt.target_cpus is None else "; target CPUs given with --target-cpus")
        )
        params = {
            "folio_kb": kb,
            "n_folios": max(1, round(f["n_folios"])),
            "batch_limit_pages": opt.batch_limit_pages,
            "copy_engine": "cpu",
            "copy_threads": 1,
            "target_cpus": opt.target_cpus,
            "mode": mode or None,
        }
        units = {
            "bytes_per_s": "B/s",
            "pages_per_s": "pages/s",
            "time_s": "s",
            "time_per_page_s": "s",
            "flush_rounds": "count",
            "ipis": "count",
        }
        for metric, unit in units.items():
            if metric not in f or f[metric] <= 0:
                continue
            row: dict[str, Any] = dict.fromkeys(COLUMNS, None)
            row.update(params)
            row.update(
                source=source,
                reference=reference,
                machine=opt.machine,
                profile=opt.profile,
                date=opt.date,
                trust=opt.trust,
                kernel=opt.kernel or None,
                variant=variant,
                metric=metric,
                value=f[metric],
                unit=unit,
                notes=note,
            )
            rows.append(row)
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    return df, len(parsed.calls) - len(used)


__all__ = ["TraceError", "TraceInputError", "TraceOptions", "trace_rows"]
