"""Terminal and file output shared by the commands and the main job (no CLI imports here).

Tables are one row per item (candidate, limit, point), in human units (µs, M pages/s, GB/s), and
fit the terminal width (``COLUMNS``): cells wrap, names are never cut. ``--format csv|json`` gives
the same rows in SI units for programs.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from models.errors import UserError
from models.fileio import atomic_write

TABLE_FORMATS: tuple[str, ...] = ("table", "csv", "json")


def fmt_rate(pages_per_s: float) -> str:
    """Pages per second as "1.23 M" / "456 k"."""
    if not math.isfinite(pages_per_s):
        return "–"
    if abs(pages_per_s) >= 1e6:
        return f"{pages_per_s / 1e6:.3g} M"
    if abs(pages_per_s) >= 1e3:
        return f"{pages_per_s / 1e3:.3g} k"
    return f"{pages_per_s:.3g}"


def fmt_us(seconds: float) -> str:
    """Seconds as µs (or ms above 10 ms, s above 10 s)."""
    if not math.isfinite(seconds):
        return "–"
    a = abs(seconds)
    if a >= 1:
        return f"{seconds:.3g} s"
    if a >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} µs"


def fmt_bytes_rate(bytes_per_s: float) -> str:
    return "–" if not math.isfinite(bytes_per_s) else f"{bytes_per_s / 1e9:.3g} GB/s"


def fmt_x(x: float | None) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.3f}×"


#: Output column -> (heading, formatter) for the standard model outputs.
HUMAN: dict[str, tuple[str, Callable[[float], str]]] = {
    "pages_per_s": ("pages/s", fmt_rate),
    "bytes_per_s": ("throughput", fmt_bytes_rate),
    "time_s": ("time", fmt_us),
    "window_mean_s": ("window mean", fmt_us),
    "window_p99_s": ("window p99", fmt_us),
    "stall_p99_s": ("p99 stall", fmt_us),
    "cpu_time_s": ("CPU time", fmt_us),
    "remote_cpu_time_s": ("remote IPI CPU", fmt_us),
    "flush_rounds": ("flush rounds", lambda v: f"{v:,.4g}"),
    "ipis": ("IPIs", lambda v: f"{v:,.4g}"),
    "ipi_reduction": ("IPI reduction", lambda v: f"{v:.3g}×"),
    "speedup": ("speedup", lambda v: f"{v:.3g}×"),
}
#: Headings of parameter columns (their values print as they are).
PARAM_HEADINGS: dict[str, str] = {
    "batch_limit_pages": "batch limit (pages)",
    "folio_kb": "folio (KiB)",
    "n_folios": "folios",
    "copy_engine": "engine",
    "copy_threads": "threads",
    "target_cpus": "target CPUs",
    "busy_prob": "busy prob.",
    "access_rate_hz": "access rate (1/s)",
    "folio_mix": "folio mix",
}


def terminal_width() -> int:
    """``COLUMNS`` if set, else the terminal's width, else 100."""
    env = os.environ.get("COLUMNS", "")
    if env.isdigit() and int(env) > 20:
        return int(env)
    return shutil.get_terminal_size((100, 24)).columns


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def render_table(
    rows: pd.DataFrame,
    title: str = "",
    *,
    formatters: Mapping[str, Callable[[Any], str]] | None = None,
    headings: Mapping[str, str] | None = None,
    width: int | None = None,
    file: Any = None,
) -> None:
    """Print ``rows`` as a table that fits ``width`` (default :func:`terminal_width`).

    Standard outputs (:data:`HUMAN`) get their human units; other columns their ``formatters``.
    """
    fm = dict(formatters or {})
    hd = dict(headings or {})
    table = Table(title=title or None, title_justify="left", pad_edge=False, expand=False)
    body: list[list[str]] = []
    for rec in rows.itertuples(index=False):
        cells = []
        for name, v in zip(rows.columns, rec, strict=True):
            f = fm.get(str(name)) or (HUMAN[str(name)][1] if str(name) in HUMAN else None)
            try:
                cells.append(f(v) if f is not None and v is not None else _cell(v))
            except (TypeError, ValueError):
                cells.append(_cell(v))
        body.append(cells)
    heads = [
        hd.get(str(c)) or (HUMAN[str(c)][0] if str(c) in HUMAN else PARAM_HEADINGS.get(str(c), str(c)))
        for c in rows.columns
    ]
    # rich wraps cells between words where it can; the first column (the row's name) never wraps, so
    # names stay whole (rich's min_width would crop the table instead of fitting it: not used)
    first = max([len(r[0]) for r in body] + [1]) if body else 1
    for j, col in enumerate(rows.columns):
        table.add_column(
            heads[j],
            justify="left" if rows[col].dtype == object else "right",
            overflow="fold",
            no_wrap=j == 0 and first <= 32,
        )
    for cells in body:
        table.add_row(*cells)
    Console(width=width or terminal_width(), file=file, highlight=False, soft_wrap=False).print(table)


def table_bytes(rows: pd.DataFrame, fmt: str) -> bytes:
    """``rows`` as CSV or JSON records (SI units, machine-readable)."""
    if fmt == "csv":
        return rows.to_csv(index=False).encode()
    if fmt == "json":  # every float as Python's repr (round-trips; pandas' to_json keeps 10 digits)
        records = rows.astype(object).where(rows.notna(), None).to_dict(orient="records")
        return (json.dumps(records, indent=2, ensure_ascii=False, default=_json_scalar) + "\n").encode()
    raise UserError(f"--format {fmt}: unknown (use {', '.join(TABLE_FORMATS)})")


def _json_scalar(v: Any) -> Any:
    """NumPy scalars as Python numbers (for :func:`json.dumps`)."""
    if hasattr(v, "item"):
        return v.item()
    raise TypeError(f"not JSON serializable: {type(v).__name__}")


def write_atomic(out: Path, data: bytes) -> None:
    """Write ``data`` to ``out`` through :func:`models.fileio.atomic_write` (no partial file on failure)."""
    atomic_write(out, data)


def columns_present(df: pd.DataFrame, wanted: Sequence[str]) -> list[str]:
    return [c for c in wanted if c in df.columns]


__all__ = [
    "TABLE_FORMATS",
    "fmt_bytes_rate",
    "fmt_rate",
    "fmt_us",
    "fmt_x",
    "render_table",
    "table_bytes",
    "terminal_width",
    "write_atomic",
]
