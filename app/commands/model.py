"""Commands of the cost model: ``profiles``, ``predict``, ``bench`` and ``run``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    import pandas as pd

from models.errors import UserError

PREDICT_MODELS = ("analytic", "montecarlo", "regression")


def _write_atomic_csv(df: pd.DataFrame, out: Path) -> None:
    """Write ``df`` to ``out`` atomically (:func:`models.fileio.atomic_write`: one-line error, no temp left)."""
    from models.fileio import atomic_write

    atomic_write(out, write=lambda tmp: df.to_csv(tmp, index=False))


def _check_out(out: Path) -> None:
    """Refuse an ``--out`` that cannot be a CSV file before any work is done."""
    if out.is_dir():
        raise UserError(f"--out {out}: is a folder (give a file name)")
    parent = out.parent
    if not parent.is_dir():
        raise UserError(f"--out {out}: folder {parent} does not exist")


def _fmt(v: object) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _print_table(df: object, title: str) -> None:
    """One row per point, human units, fitting the terminal (``COLUMNS``); parameters that are the
    same for every point are said once above the table instead of repeated in columns."""
    import pandas as pd

    from app.output import fmt_rate, fmt_us, render_table
    from models.params import PARAMETERS

    assert isinstance(df, pd.DataFrame)
    params = [c for c in PARAMETERS if c in df.columns]
    fixed = [c for c in params if df[c].astype(str).nunique() <= 1 and len(df) > 1]
    varying = [c for c in params if c not in fixed] if len(df) > 1 else ["profile"] if "profile" in df else []
    if len(df) == 1:
        fixed = [c for c in params if c not in varying]
    main = [
        "pages_per_s",
        "bytes_per_s",
        "time_s",
        "stall_p99_s",
        "window_p99_s",
        "cpu_time_s",
        "ipis",
        "flush_rounds",
    ]
    shown = (
        varying + [c for c in main if c in df.columns] + [c for c in ("ipi_reduction", "speedup") if c in df]
    )
    table = df[shown].copy()
    for c in ("pages_per_s", "stall_p99_s"):
        se = f"{c}_se" if f"{c}_se" in df else None
        if se is not None:
            fmt = fmt_rate if c == "pages_per_s" else fmt_us
            table[c] = [f"{fmt(v)} ±{fmt(1.6448536 * e)}" for v, e in zip(df[c], df[se], strict=True)]
    if fixed:
        line = ", ".join(f"{c}={df[c].iloc[0]}" for c in fixed if str(df[c].iloc[0]) not in ("", "nan"))
        print(f"{title}: {line}" if line else title)
    render_table(
        table,
        title if not fixed else "",
        formatters={c: str for c in table.columns if table[c].dtype == object},
    )


def profiles_cmd(
    fmt: Annotated[str, typer.Option("--format", "-f", help="table, csv or json")] = "table",
) -> None:
    """List the hardware profiles with cores, sockets and copy engines."""
    import pandas as pd

    from app.output import TABLE_FORMATS, render_table, table_bytes
    from models.profiles import get_profile, profile_names

    if fmt not in TABLE_FORMATS:
        raise UserError(f"--format {fmt}: unknown (use {', '.join(TABLE_FORMATS)})")
    rows = []
    for name in profile_names():
        p = get_profile(name)
        rows.append(
            {
                "name": p.name,
                "arch": p.arch,
                "sockets": p.sockets,
                "cores": p.cores,
                "CPUs": p.cpus,
                "page KiB": p.page_kb,
                "default limit": p.default_batch_limit_pages,
                "copy engines": ", ".join(p.copy_engines),
                "description": p.description,
            }
        )
    df = pd.DataFrame(rows)
    if fmt != "table":
        sys.stdout.write(table_bytes(df, fmt).decode())
        return
    from app.output import terminal_width

    if terminal_width() < 160:  # the descriptions are in --format csv|json
        df = df.drop(columns=["description"])
    render_table(df, "foliotune hardware profiles")


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
    mode: Annotated[str | None, typer.Option(help="single point: async or sync")] = None,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="without --out: table (default), csv or json")
    ] = "table",
) -> None:
    """Predict the outputs of points, from a CSV (--points) or from options (one point)."""
    from app.points import check_montecarlo, option_points, read_points_csv, validate_points
    from models.evaluate import evaluate
    from models.limits import MC_MIN_REPLICAS
    from models.params import PointError

    if model not in PREDICT_MODELS:
        raise UserError(f"--model: unknown model {model!r} (known: {', '.join(PREDICT_MODELS)})")
    if fmt not in ("table", "csv", "json"):
        raise UserError(f"--format {fmt}: unknown (use table, csv, json)")
    if model == "montecarlo" and replicas < MC_MIN_REPLICAS:
        raise UserError(f"--replicas: must be >= {MC_MIN_REPLICAS} to estimate errors (got {replicas})")
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
        }
        pts = option_points(single, batch_limit_pages)
    typed, arrays = validate_points(pts)
    if model == "montecarlo":
        check_montecarlo(pts, arrays, replicas)
    try:
        if model == "regression":
            from models.regression import predict_regression

            result = predict_regression(typed, model_dir=model_dir)
        else:
            result = evaluate(typed, model, seed=seed, replicas=replicas)
    except PointError as exc:  # validated above; a model's own refusal still names the input
        raise UserError(f"{pts.name}: {exc}") from None
    if out is not None:
        _write_atomic_csv(result, out)
        print(f"wrote {len(result)} rows to {out}", file=sys.stderr)
    else:
        from app.output import table_bytes
        from models.params import OUTPUTS, PARAMETERS

        shown = [c for c in PARAMETERS if c in result.columns]
        for c in OUTPUTS:  # each output with its error or interval, where the model gives one
            shown += [x for x in (c, f"{c}_se", f"{c}_lo", f"{c}_hi") if x in result.columns]
        if fmt != "table":
            sys.stdout.write(table_bytes(result[shown], fmt).decode())
            return
        _print_table(result[shown], f"foliotune predict ({model})")


def bench_cmd(
    what: Annotated[str, typer.Argument(help="models")] = "models",
    json_out: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    points: Annotated[int, typer.Option(help="analytic points to time")] = 2_000_000,
    seconds: Annotated[float, typer.Option(help="minimum timed seconds per measurement")] = 1.0,
) -> None:
    """Benchmarks: `models` (analytic points/s, Monte Carlo folios/s, and their baselines)."""
    import json

    if what != "models":
        raise UserError(f"bench: unknown benchmark {what!r} (known: models)")
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
    from app.mainjob import run_main_job

    run_main_job(profile=profile, out=out, serve=serve, port=port)


def register(cli: typer.Typer) -> None:
    cli.command("profiles")(profiles_cmd)
    cli.command("predict")(predict_cmd)
    cli.command("bench")(bench_cmd)
    cli.command("run")(run_cmd)
