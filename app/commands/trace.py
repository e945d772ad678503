"""``foliotune import-trace``: migration traces captured elsewhere → rows of the measurement schema.

Reads ``perf script`` text, ``trace-cmd report`` text or a raw tracefs ``trace`` file, pairs each
``migrate:mm_migrate_pages_start`` with its ``migrate:mm_migrate_pages`` (per task; CPUs recorded)
and writes one row set per call and per trace. Bad input (empty, truncated mid-line, other events,
unpaired events, binary ``perf.data``): one line naming the file and line, exit 2, nothing written.
"""

from __future__ import annotations

import datetime as _dt
import re
import sys
from pathlib import Path
from typing import Annotated

import typer

from models.errors import UserError
from models.fileio import atomic_write


def register(cli: typer.Typer) -> None:
    cli.command("import-trace")(import_trace)


def import_trace(
    traces: Annotated[
        list[Path], typer.Argument(help="Trace files (perf script, trace-cmd report or tracefs text).")
    ],
    profile: Annotated[str, typer.Option("--profile", "-p", help="Profile the rows are compared against.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="CSV (or .parquet) file to write.")],
    folio_kb: Annotated[
        int | None,
        typer.Option(
            "--folio-kb", help="Folio size in KiB when the trace moved no THP (default: base pages)."
        ),
    ] = None,
    target_cpus: Annotated[
        int | None,
        typer.Option("--target-cpus", help="CPUs the migrated mm ran on (default: the profile's)."),
    ] = None,
    batch_limit_pages: Annotated[
        int, typer.Option("--batch-limit-pages", help="NR_MAX_BATCHED_MIGRATION of the traced kernel.")
    ] = 512,
    kernel: Annotated[str, typer.Option("--kernel", help="Kernel the trace ran on, MAJOR.MINOR.")] = "",
    source: Annotated[
        str | None, typer.Option("--source", help="Source id (default: from the file name).")
    ] = None,
    machine: Annotated[str, typer.Option("--machine", help="Machine, as text.")] = "",
    trust: Annotated[str, typer.Option("--trust", help="A, B or C.")] = "A",
) -> None:
    """Turn migration tracepoints captured elsewhere into measurement rows."""

    # imported when the command runs: app.cli loads this module at every start
    import pandas as pd

    from models.measure.kernel_trace import read_trace_file
    from models.measure.trace_rows import TraceOptions, trace_rows
    from models.measurements import validate_table, write_measurements
    from models.profiles import get_profile

    if kernel and not re.fullmatch(r"[1-9]\d*\.\d+", kernel):
        raise UserError(f"--kernel {kernel!r}: must be MAJOR.MINOR (e.g. 6.8)")
    if trust not in ("A", "B", "C"):
        raise UserError(f"--trust {trust!r}: must be A, B or C")
    if folio_kb is not None and (folio_kb <= 0 or folio_kb & (folio_kb - 1)):
        raise UserError(f"--folio-kb {folio_kb}: must be a power of two")
    if out.exists() and not out.is_file():
        raise UserError(f"--out {out}: exists and is not a regular file")
    prof = get_profile(profile)
    opt = TraceOptions(
        profile=profile,
        page_kb=int(prof.page_kb),
        folio_kb=folio_kb,
        target_cpus=target_cpus,
        batch_limit_pages=batch_limit_pages,
        kernel=kernel,
        trust=trust,
        machine=machine,
        date=_dt.date.today().isoformat(),
    )
    tables = []
    notes = []
    for path in traces:
        parsed = read_trace_file(path)
        src = source or "trace-" + re.sub(r"[^A-Za-z0-9]+", "-", path.stem).strip("-").lower()
        rows, left_out = trace_rows(parsed, opt, src, f"foliotune import-trace {path.name}")
        tables.append(rows)
        if parsed.unreadable:
            first = ", ".join(str(n) for n in parsed.unreadable[:5])
            notes.append(f"{path}: {len(parsed.unreadable)} unreadable line(s) skipped (first: {first})")
        if parsed.lost_events:
            notes.append(f"{path}: {parsed.lost_events} 'LOST EVENTS' mark(s): calls may be missing")
        if left_out:
            notes.append(
                f"{path}: {left_out} call(s) left out (moved nothing, or mixed THPs with base pages: "
                "give --folio-kb to keep those)"
            )
        notes.append(f"{path}: {len(parsed.calls)} migrate_pages() call(s) -> {len(rows)} rows")
    data = pd.concat(tables, ignore_index=True)
    validate_table(data.astype(object).where(data.notna(), ""), str(out), strict=True)  # before writing
    atomic_write(out, write=lambda tmp: write_measurements(data, tmp))
    for n in notes:
        print(n, file=sys.stderr)
    print(f"{len(data)} rows written to {out}", file=sys.stderr)
