"""``foliotune recommend`` and ``foliotune explore``.

``recommend`` prints or writes the same export the explorer's buttons download (same function, same
inputs, same bytes). ``explore`` serves the explorer on 127.0.0.1 unless ``--host`` says otherwise.
Dash, scikit-learn and pyarrow are imported only when a command runs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from models.errors import UserError

RECOMMEND_HELP = """Recommend the batch limit, copy engine and threads for a profile and workload from sweep results.

\b
  foliotune recommend --results DIR --stall-p99-us 500 [--profile P] [--folio-kb 4 ...] --format json|csv|yaml|kernel [--out FILE]

Workload options left out take the profile's defaults where the sweep has them (else the first swept
value). The answer maximizes pages/s within the p99 stall budget (and the optional CPU-time limits);
see app/recommend.py for the rule."""


def _workload_options(
    folio_kb: int | None,
    n_folios: int | None,
    target_cpus: int | None,
    mapcount: int | None,
    busy_prob: float | None,
    access_rate_hz: float | None,
    mode: str | None,
) -> dict[str, Any]:
    given = {
        "folio_kb": folio_kb,
        "n_folios": n_folios,
        "target_cpus": target_cpus,
        "mapcount": mapcount,
        "busy_prob": busy_prob,
        "access_rate_hz": access_rate_hz,
        "mode": mode,
    }
    return {k: v for k, v in given.items() if v is not None}


def recommend_export(
    results_dir: str | Path,
    *,
    profile: str | None,
    workload: dict[str, Any],
    stall_p99_us: float,
    cpu_time_ms: float | None = None,
    remote_cpu_time_ms: float | None = None,
    model: str | None = None,
    fmt: str = "json",
    regression: bool = True,
    strict_workload: bool = True,
) -> tuple[bytes, Any]:
    """(export bytes, Recommendation) exactly as the explorer computes them."""
    from app.queries import recommend_for
    from app.recommend import Constraints, export_bytes
    from app.regression_source import shipped_regression
    from app.results_view import load_results

    results = load_results(results_dir)
    if model is not None and model not in results.models:
        raise UserError(f"--model {model}: not in {results_dir} (models there: {', '.join(results.models)})")
    cons = Constraints(
        stall_p99_us * 1e-6,
        None if cpu_time_ms is None else cpu_time_ms * 1e-3,
        None if remote_cpu_time_ms is None else remote_cpu_time_ms * 1e-3,
    )
    m = model or results.default_model
    if profile is not None and profile not in results.profiles(m):
        raise UserError(f"--profile {profile}: not in the sweep (profiles: {', '.join(results.profiles(m))})")
    from app.queries import default_profile

    profile = profile or default_profile(results, m)
    if strict_workload:
        values = results.workload_values(profile, m)
        for k, v in workload.items():
            from app.results_view import coerce_value

            if coerce_value(k, v) not in values.get(k, []):
                opts = ", ".join(map(str, values.get(k, [])))
                raise UserError(
                    f"--{k.replace('_', '-')} {v}: not in the sweep for {profile} (swept: {opts})"
                )
    reg = shipped_regression() if regression else None
    rec = recommend_for(results, profile, workload, cons, model=m, regression=reg)
    return export_bytes(rec, fmt), rec


def recommend_cmd(
    results: Annotated[Path, typer.Option("--results", "-r", help="Sweep results folder.")],
    stall_p99_us: Annotated[
        float, typer.Option("--stall-p99-us", min=0, help="p99 stall budget per access (µs).")
    ],
    fmt: Annotated[str, typer.Option("--format", "-f", help="json, csv, yaml or kernel.")] = "json",
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write here (default: standard output).")
    ] = None,
    profile: Annotated[
        str | None, typer.Option(help="Hardware profile (default: epyc-zen3-2s if swept).")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Results model: montecarlo (default if present) or analytic.")
    ] = None,
    cpu_time_ms: Annotated[
        float | None, typer.Option("--cpu-time-ms", min=0, help="CPU time per call limit (ms).")
    ] = None,
    remote_cpu_time_ms: Annotated[
        float | None, typer.Option("--remote-cpu-time-ms", min=0, help="Remote IPI CPU time limit (ms).")
    ] = None,
    folio_kb: Annotated[int | None, typer.Option(help="Folio size (KiB).")] = None,
    n_folios: Annotated[int | None, typer.Option(help="Folios per call.")] = None,
    target_cpus: Annotated[int | None, typer.Option(help="CPUs acknowledging each flush.")] = None,
    mapcount: Annotated[int | None, typer.Option(help="Page tables mapping each folio.")] = None,
    busy_prob: Annotated[float | None, typer.Option(help="Busy probability per pass.")] = None,
    access_rate_hz: Annotated[float | None, typer.Option(help="Accesses per second per folio.")] = None,
    mode: Annotated[str | None, typer.Option(help="async or sync.")] = None,
    regression: Annotated[bool, typer.Option(help="Add the fitted regression's interval.")] = True,
) -> None:
    """Recommend the batch limit, copy engine and threads (the explorer's export, without a browser)."""
    from app.recommend import FORMATS

    if fmt not in FORMATS:
        raise UserError(f"--format {fmt}: unknown (use {', '.join(FORMATS)})")
    wl = _workload_options(folio_kb, n_folios, target_cpus, mapcount, busy_prob, access_rate_hz, mode)
    data, rec = recommend_export(
        results,
        profile=profile,
        workload=wl,
        stall_p99_us=stall_p99_us,
        cpu_time_ms=cpu_time_ms,
        remote_cpu_time_ms=remote_cpu_time_ms,
        model=model,
        fmt=fmt,
        regression=regression,
    )
    if out is None:
        sys.stdout.write(data.decode())
        return
    write_bytes(out, data)
    c = rec.choice
    print(
        f"{out}: {c.batch_limit_pages} pages, {c.copy_engine} ×{c.copy_threads}"
        + (f", gain {rec.gain:.3f}× over the default" if rec.gain is not None else ""),
        file=sys.stderr,
    )


def write_bytes(out: Path, data: bytes) -> None:
    from models.fileio import atomic_write

    atomic_write(out, data)


def serve(app: Any, host: str, port: int) -> None:
    """Serve a Dash app with the threaded development server (stop with Ctrl-C)."""
    from app.explorer import is_loopback

    if not is_loopback(host):
        print(
            f"foliotune: warning: serving on {host}, reachable from other machines; the explorer has no "
            "authentication (use the default 127.0.0.1 unless you mean it)",
            file=sys.stderr,
        )
    app.run(host=host, port=port, debug=False)


def warm_up(results_dir: Path, use_regression: bool) -> None:
    """Load the results, the regression and the compiled kernels before the first page is served."""
    from app.queries import recommend_for
    from app.recommend import Constraints
    from app.regression_source import shipped_regression
    from app.results_view import ResultsError, load_results

    try:
        results = load_results(results_dir)
        reg = shipped_regression() if use_regression else None
        recommend_for(results, None, None, Constraints(1e-3), regression=reg)
    except (ResultsError, UserError) as exc:
        print(f"foliotune: {exc} (the explorer will show this)", file=sys.stderr)


def explore_cmd(
    results: Annotated[Path, typer.Option("--results", "-r", help="Sweep results folder.")],
    host: Annotated[str, typer.Option(help="Address to bind (default loopback only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8050,
    sweeps_dir: Annotated[
        Path | None, typer.Option("--sweeps-dir", help="Where sweeps started from the explorer go.")
    ] = None,
    upload_limit_mb: Annotated[
        float, typer.Option("--upload-limit-mb", min=0.01, help="Upload size limit (MiB).")
    ] = 5.0,
    regression: Annotated[bool, typer.Option(help="Use the fitted regression for intervals.")] = True,
) -> None:
    """Serve the explorer (Choose, Landscape, Evidence, Sweeps) for a results folder."""
    from app.explorer import create_app, stopping_cleanly

    sd = sweeps_dir or results.resolve().parent / "foliotune-explorer-sweeps"
    warm_up(results, regression)
    app = create_app(
        results, sweeps_dir=sd, upload_limit=int(upload_limit_mb * 2**20), use_regression=regression
    )
    print(f"foliotune explorer: http://{host}:{port}/  (results {results}; Ctrl-C to stop)", file=sys.stderr)
    with stopping_cleanly(app):  # SIGTERM like Ctrl-C; the validation worker ends with the server
        serve(app, host, port)


def register(cli: typer.Typer) -> None:
    cli.command("recommend", help=RECOMMEND_HELP)(recommend_cmd)
    cli.command("explore")(explore_cmd)
