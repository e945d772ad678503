"""Commands of the cost model: ``profiles``, ``predict``, ``bench`` and ``run``."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    import pandas as pd

import json

from models.errors import UserError
from models.fileio import atomic_write

PREDICT_MODELS = ("analytic", "montecarlo", "regression")


def _check_out(out: Path) -> None:
    """Refuse an ``--out`` that cannot be a CSV file before any work is done."""
    if out.is_dir():
        raise UserError(f"--out {out}: is a folder (give a file name)")
    parent = out.parent
    if not parent.is_dir():
        raise UserError(f"--out {out}: folder {parent} does not exist")


FormatOpt = Annotated[
    str | None,
    typer.Option("--format", help="table | csv | json (default: table on the terminal, csv with --out)"),
]


def _check_format(fmt: str | None, out: Path | None) -> str:
    """The output format: ``--format`` checked, or its default (table, csv with --out)."""
    # imported when the command runs: app.cli loads this module at every start
    from app.output import TABLE_FORMATS

    if fmt is not None and fmt not in TABLE_FORMATS:
        raise UserError(f"--format: unknown format {fmt!r} (known: {', '.join(TABLE_FORMATS)})")
    if fmt == "table" and out is not None:
        raise UserError("--format table is for the terminal; with --out give csv or json")
    return fmt or ("csv" if out is not None else "table")


#: Short headings of parameters in terminal tables (units in the heading, not in each cell).
HEADINGS: dict[str, str] = {
    "folio_kb": "folio KiB",
    "n_folios": "folios",
    "batch_limit_pages": "batch limit (pages)",
    "copy_engine": "engine",
    "copy_threads": "threads",
    "target_cpus": "CPUs",
    "busy_prob": "busy prob",
    "access_rate_hz": "accesses/s",
    "folio_mix": "folio mix",
    "numa_hinting": "NUMA hinting",
    "writeback_prob": "writeback prob",
    "writeback_wait_s": "writeback wait (s)",
    "alloc_fail_prob": "alloc fail prob",
}


def _emit(rows: pd.DataFrame, fmt: str, table: Callable[[], None]) -> None:
    """Print ``rows`` as CSV or JSON (SI units), or call ``table()`` to print a terminal table."""
    # imported when the command runs: app.cli loads this module at every start
    from app.output import table_bytes

    if fmt == "table":
        table()
    else:
        sys.stdout.write(table_bytes(rows, fmt).decode())


def _count(v: float) -> str:
    return f"{v:,.0f}" if abs(v) < 1e12 else f"{v:.3g}"


def _with_error(value: float, se: float, lo: float, hi: float, f: Callable[[float], str]) -> str:
    """A value in human units with its Monte Carlo error (±1.645 se) or its 90 % interval."""
    text = f(value)
    if math.isfinite(se) and se > 0:
        return f"{text} ± {f(1.645 * se)}"
    if math.isfinite(lo) and math.isfinite(hi):
        return f"{text} [{f(lo)}, {f(hi)}]"
    return text


def _prediction_table(result: pd.DataFrame, given: list[str], width: int) -> pd.DataFrame:
    """One row per point: the parameters given or varying, then the main outputs in human units."""
    # imported when the command runs: app.cli loads this module at every start
    import numpy as np
    import pandas as pd

    from app.output import HUMAN
    from models.params import PARAMETERS

    shown = [
        c for c in PARAMETERS if c in result.columns and (c in given or result[c].nunique(dropna=False) > 1)
    ]
    rows = {c: result[c].map(lambda v: "–" if v is None or v != v else str(v)) for c in shown or ["profile"]}
    for c in ("time_s", "pages_per_s", "stall_p99_s", "window_p99_s", "ipis", "flush_rounds", "bytes_per_s"):
        if c not in result.columns:
            continue
        f = _count if c in ("flush_rounds", "ipis") else HUMAN[c][1]
        nan = np.full(len(result), np.nan)
        v, se, lo, hi = (
            result[name].to_numpy(dtype=np.float64) if name in result.columns else nan
            for name in (c, f"{c}_se", f"{c}_lo", f"{c}_hi")
        )
        rows[HUMAN[c][0]] = pd.Series(
            [_with_error(v[i], se[i], lo[i], hi[i], f) for i in range(len(result))], dtype=object
        )
    if "failed_folios" in result.columns and (result["failed_folios"] > 0).any():
        rows["failed folios"] = result["failed_folios"].map(lambda v: f"{v:,.4g}")
    table = pd.DataFrame(rows).rename(columns=HEADINGS)
    # Fit the terminal: outputs are in priority order; the last ones go first (csv/json have all).
    keep = len(rows) - sum(
        c in result.columns for c in ("window_p99_s", "ipis", "flush_rounds", "bytes_per_s")
    )
    while table.shape[1] > keep and _table_width(table) > width:
        table = table.drop(columns=table.columns[-1])
    return table


def _table_width(table: pd.DataFrame) -> int:
    """Rough width of a rich table of ``table``: widest cell (headings may wrap at spaces) + borders."""
    total = 1
    for col in table.columns:
        head = max(len(w) for w in str(col).split())
        cells = max((len(str(v)) for v in table[col]), default=0)
        total += max(head, cells) + 3
    return total


def profiles_cmd(fmt: FormatOpt = None) -> None:
    """List the hardware profiles with cores, sockets and copy engines."""
    # imported when the command runs: app.cli loads this module at every start
    import pandas as pd

    from models.profiles import get_profile, profile_names

    kind = _check_format(fmt, None)
    rows = pd.DataFrame(
        [
            {
                "name": p.name,
                "arch": p.arch,
                "sockets": p.sockets,
                "cores": p.cores,
                "cpus": p.cpus,
                "page_kb": p.page_kb,
                "default_batch_limit_pages": p.default_batch_limit_pages,
                "copy_engines": ",".join(p.copy_engines),
                "description": p.description,
            }
            for p in map(get_profile, profile_names())
        ]
    )

    def table() -> None:
        """One row per profile; names never cut; descriptions where the terminal has room."""
        # imported when the command runs: app.cli loads this module at every start
        from rich import box
        from rich.console import Console
        from rich.table import Table

        from app.output import terminal_width

        width = terminal_width()
        t = Table(
            title="foliotune hardware profiles", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False
        )
        for head in ("name", "arch", "sockets", "cores", "CPUs", "page KiB", "batch cap", "copy engines"):
            t.add_column(
                head,
                no_wrap=head in ("name", "arch"),
                justify="left" if head in ("name", "arch") else "right",
            )
        wide = width >= 140
        if wide:
            t.add_column("description", overflow="fold")
        for r in rows.itertuples(index=False):
            cells = [str(r.name), str(r.arch), str(r.sockets), str(r.cores), str(r.cpus), str(r.page_kb)]
            cells += [str(r.default_batch_limit_pages), str(r.copy_engines).replace(",", ", ")]
            t.add_row(*cells, *([str(r.description)] if wide else []))
        console = Console(width=width, highlight=False)
        console.print(t)
        if not wide:
            console.print("(descriptions: --format csv or json, or a terminal of 140 columns)")

    _emit(rows, kind, table)


def predict_cmd(
    points: Annotated[
        Path | None, typer.Option("--points", help="CSV of points (columns = parameters)")
    ] = None,
    model: Annotated[str, typer.Option("--model", help="analytic | montecarlo | regression")] = "analytic",
    out: Annotated[Path | None, typer.Option("--out", help="output CSV (input columns + outputs)")] = None,
    seed: Annotated[int, typer.Option(help="Monte Carlo seed")] = 0,
    replicas: Annotated[int, typer.Option(help="Monte Carlo replicas per point")] = 64,
    model_dir: Annotated[Path | None, typer.Option("--model-dir", help="fitted regression folder")] = None,
    profile: Annotated[str | None, typer.Option(help="single point: hardware profile")] = None,
    folio_kb: Annotated[str | None, typer.Option(metavar="INT", help="single point: folio size, KiB")] = None,
    n_folios: Annotated[
        str | None, typer.Option(metavar="INT", help="single point: folios in the call")
    ] = None,
    batch_limit_pages: Annotated[
        str | None, typer.Option(help="single point: batch cap in base pages (comma list allowed)")
    ] = None,
    copy_engine: Annotated[str | None, typer.Option(help="single point: cpu, mt-cpu, dma, dsa")] = None,
    copy_threads: Annotated[
        str | None, typer.Option(metavar="INT", help="single point: copy threads / DMA channels")
    ] = None,
    target_cpus: Annotated[
        str | None, typer.Option(metavar="INT", help="single point: CPUs to acknowledge a flush")
    ] = None,
    mapcount: Annotated[
        str | None, typer.Option(metavar="INT", help="single point: page tables mapping each folio")
    ] = None,
    busy_prob: Annotated[
        str | None, typer.Option(metavar="FLOAT", help="single point: busy probability per pass")
    ] = None,
    access_rate_hz: Annotated[
        str | None, typer.Option(metavar="FLOAT", help="single point: accesses/s per folio")
    ] = None,
    fmt: FormatOpt = None,
    mode: Annotated[str | None, typer.Option(help="single point: async or sync")] = None,
    kernel: Annotated[str | None, typer.Option(help="single point: kernel release MAJOR.MINOR")] = None,
    folio_mix: Annotated[
        str | None,
        typer.Option(metavar="KB:FRACTION,...", help="single point: folio sizes (not with --folio-kb)"),
    ] = None,
    numa_hinting: Annotated[
        str | None, typer.Option(metavar="0|1", help="single point: NUMA hinting faults")
    ] = None,
    writeback_prob: Annotated[
        str | None, typer.Option(metavar="FLOAT", help="single point: probability a folio is under writeback")
    ] = None,
    writeback_wait_s: Annotated[
        str | None, typer.Option(metavar="FLOAT", help="single point: writeback wait, s")
    ] = None,
    alloc_fail_prob: Annotated[
        str | None, typer.Option(metavar="FLOAT", help="single point: target allocation failure probability")
    ] = None,
) -> None:
    """Predict the outputs of points, from a CSV (--points) or from options (one point)."""
    # imported when the command runs: app.cli loads this module at every start
    from app.points import check_montecarlo, option_points, read_points_csv, refuse_folio_mix, validate_points
    from models.evaluate import evaluate
    from models.limits import MC_MIN_REPLICAS
    from models.params import PointError

    if model not in PREDICT_MODELS:
        raise UserError(f"--model: unknown model {model!r} (known: {', '.join(PREDICT_MODELS)})")
    if model == "montecarlo" and replicas < MC_MIN_REPLICAS:
        raise UserError(f"--replicas: must be >= {MC_MIN_REPLICAS} to estimate errors (got {replicas})")
    kind = _check_format(fmt, out)
    if out is not None:
        _check_out(out)
    if points is not None:
        pts = read_points_csv(points)
    else:
        single = {
            "profile": profile,
            "folio_kb": folio_kb,
            "n_folios": n_folios,
            "copy_engine": copy_engine,
            "copy_threads": copy_threads,
            "target_cpus": target_cpus,
            "mapcount": mapcount,
            "busy_prob": busy_prob,
            "access_rate_hz": access_rate_hz,
            "mode": mode,
            "kernel": kernel,
            "folio_mix": folio_mix,
            "numa_hinting": numa_hinting,
            "writeback_prob": writeback_prob,
            "writeback_wait_s": writeback_wait_s,
            "alloc_fail_prob": alloc_fail_prob,
        }
        pts = option_points(single, batch_limit_pages)
    typed, arrays = validate_points(pts)
    if model == "regression":
        refuse_folio_mix(pts, typed)
    if model == "montecarlo":
        check_montecarlo(pts, arrays, replicas)
    try:
        if model == "regression":
            # imported when the command runs: app.cli loads this module at every start
            from models.regression import predict_regression

            result = predict_regression(typed, model_dir=model_dir)
        else:
            result = evaluate(typed, model, seed=seed, replicas=replicas)
    except PointError as exc:  # validated above; a model's own refusal still names the input
        raise UserError(f"{pts.name}: {exc}") from None
    if out is not None:
        # imported when the command runs: app.cli loads this module at every start
        from app.output import table_bytes

        atomic_write(out, table_bytes(result, kind))
        print(f"wrote {len(result)} rows to {out}", file=sys.stderr)
    else:
        given = list(pts.table.columns)
        # imported when the command runs: app.cli loads this module at every start
        from app.output import render_table, terminal_width

        title = f"foliotune predict ({model})"

        def table() -> None:
            rows = _prediction_table(result, given, terminal_width())
            render_table(rows, title)
            if len(rows.columns) < len(set(rows.columns) | {"time"}) or "throughput" not in rows.columns:
                print("(every output, with errors: --format csv or json)")

        _emit(result, kind, table)


def bench_cmd(
    what: Annotated[str, typer.Argument(help="models")] = "models",
    json_out: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    points: Annotated[int, typer.Option(help="analytic points to time")] = 2_000_000,
    seconds: Annotated[float, typer.Option(help="minimum timed seconds per measurement")] = 1.0,
) -> None:
    """Benchmarks: `models` (analytic points/s, Monte Carlo folios/s, and their baselines)."""
    if what != "models":
        raise UserError(f"bench: unknown benchmark {what!r} (known: models)")
    # imported when the command runs: app.cli loads this module at every start
    from models.bench import bench_models

    result = bench_models(n_points=points, min_seconds=seconds)
    if json_out:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            print(f"{k:45s} {v:,.4g}" if isinstance(v, float) else f"{k:45s} {v}")


def run_cmd(
    profile: Annotated[
        list[str] | None,
        typer.Option(help="hardware profile (repeat for several; `local` after `foliotune measure`)"),
    ] = None,
    out: Annotated[Path, typer.Option(help="output folder")] = Path("foliotune-out"),
    serve: Annotated[bool, typer.Option(help="serve the explorer after the job")] = True,
    port: Annotated[int, typer.Option(help="explorer port on 127.0.0.1")] = 8050,
) -> None:
    """The main job: predictions, default sweep, fit, recommendations, then the explorer on 127.0.0.1."""
    # imported when the command runs: app.cli loads this module at every start
    from app.mainjob import run_main_job

    run_main_job(profile=profile, out=out, serve=serve, port=port)


def register(cli: typer.Typer) -> None:
    cli.command("profiles")(profiles_cmd)
    cli.command("predict")(predict_cmd)
    cli.command("bench")(bench_cmd)
    cli.command("run")(run_cmd)
