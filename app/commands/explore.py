"""``foliotune recommend`` and ``foliotune explore``.

``recommend`` prints or writes the same export the explorer's buttons download (same function, same
inputs, same bytes). ``explore`` serves the explorer on 127.0.0.1 unless ``--host`` says otherwise.
Dash, scikit-learn and pyarrow are imported only when a command runs.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from app.commands.measured import MeasurementsOpt
from models.errors import UserError

RECOMMEND_HELP = """Recommend the batch limit, copy engine and threads for a profile and workload.

\b
  foliotune recommend --stall-p99-us 300 [--profile P] [--folio-kb 2048 | --folio-mix 4:0.7,2048:0.3] [--kernel 6.8]
  foliotune recommend --stall-p99-us 300 --workload "0.7:folio_kb=4,mode=async" --workload "0.3:folio_kb=2048,stall_p99_us=2000"
  foliotune recommend --results DIR --stall-p99-us 500 ...   (from a sweep instead of a live evaluation)
  --format table (default) | json | csv | yaml | kernel | patch   [--out FILE]

Without --results every choice is evaluated now with the Monte Carlo and analytic models for exactly
the workload given (options left out take the profile's defaults). The answer maximizes pages/s
within the p99 stall budget (and the optional CPU-time limits); ties go to the limit nearest the
profile's kernel default; see app/recommend/__init__.py for the rule. The p99 stall is a model assumption."""

FORMATS_ALL = ("table", "json", "csv", "yaml", "kernel", "patch")


def _workload_options(
    folio_kb: int | None,
    n_folios: int | None,
    target_cpus: int | None,
    mapcount: int | None,
    busy_prob: float | None,
    access_rate_hz: float | None,
    mode: str | None,
    kernel: str | None = None,
    folio_mix: str | None = None,
    **more: Any,
) -> dict[str, Any]:
    given = {
        **more,
        "folio_kb": folio_kb,
        "n_folios": n_folios,
        "target_cpus": target_cpus,
        "mapcount": mapcount,
        "busy_prob": busy_prob,
        "access_rate_hz": access_rate_hz,
        "mode": mode,
        "kernel": kernel,
        "folio_mix": folio_mix,
    }
    return {k: v for k, v in given.items() if v is not None}


def parse_workload_spec(text: str, default_budget_us: float) -> tuple[float, dict[str, Any], float]:
    """``"WEIGHT:key=value,..."`` -> (weight, workload, stall budget µs); ``stall_p99_us`` sets the budget.

    ``folio_mix`` values hold commas and colons, so give it last: ``0.3:mode=sync,folio_mix=4:0.5,64:0.5``.
    """
    head, sep, rest = text.partition(":")
    try:
        weight = float(head)
    except ValueError:
        raise UserError(f"--workload {text!r}: expected WEIGHT:key=value,... (e.g. 0.7:folio_kb=4)") from None
    if not sep or not math.isfinite(weight) or weight <= 0:
        raise UserError(f"--workload {text!r}: the weight must be > 0 (e.g. 0.7:folio_kb=4)")
    wl: dict[str, Any] = {}
    budget = default_budget_us
    body = rest
    mix = ""
    if "folio_mix=" in body:
        body, _, mix = body.partition("folio_mix=")
        wl["folio_mix"] = mix
    for item in filter(None, (x.strip() for x in body.split(","))):
        key, eq, val = item.partition("=")
        if not eq:
            raise UserError(f"--workload {text!r}: {item!r} is not key=value")
        key = key.strip().replace("-", "_")
        if key == "stall_p99_us":
            budget = _positive(val, "stall_p99_us")
            continue
        wl[key] = _number_or_text(val.strip())
    return weight, wl, budget


def _number_or_text(v: str) -> Any:
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            continue
    return v


def _positive(v: Any, name: str) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise UserError(f"{name} {v!r}: not a number") from None
    if not math.isfinite(f) or f <= 0:
        raise UserError(f"{name} {v}: must be > 0")
    return f


def _constraints(stall_p99_us: float, cpu_time_ms: float | None, remote_cpu_time_ms: float | None) -> Any:
    # imported when the command runs: app.cli loads this module at every start
    from app.recommend import Constraints

    return Constraints(
        _positive(stall_p99_us, "--stall-p99-us") * 1e-6,
        None if cpu_time_ms is None else _positive(cpu_time_ms, "--cpu-time-ms") * 1e-3,
        None if remote_cpu_time_ms is None else _positive(remote_cpu_time_ms, "--remote-cpu-time-ms") * 1e-3,
    )


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
    kernel: str | None = None,
) -> tuple[bytes, Any]:
    """(export bytes, Recommendation) exactly as the explorer computes them from a sweep folder."""
    # imported when the command runs: app.cli loads this module at every start
    from app.queries import default_profile, recommend_for
    from app.recommend_exports import export_bytes
    from app.regression_source import shipped_regression
    from app.results_view import coerce_value, load_results

    results = load_results(results_dir)
    if model is not None and model not in results.models:
        raise UserError(f"--model {model}: not in {results_dir} (models there: {', '.join(results.models)})")
    cons = _constraints(stall_p99_us, cpu_time_ms, remote_cpu_time_ms)
    m = model or results.default_model
    if profile is not None and profile not in results.profiles(m):
        raise UserError(f"--profile {profile}: not in the sweep (profiles: {', '.join(results.profiles(m))})")
    profile = profile or default_profile(results, m)
    if strict_workload:
        values = results.workload_values(profile, m)
        for k, v in workload.items():
            if k not in values:
                raise UserError(
                    f"--{k.replace('_', '-')}: the sweep in {results_dir} has no such axis; leave out --results to evaluate it live"
                )
            if coerce_value(k, v) not in values.get(k, []):
                opts = ", ".join(map(str, values.get(k, [])))
                raise UserError(
                    f"--{k.replace('_', '-')} {v}: not in the sweep for {profile} (swept: {opts}); "
                    "leave out --results to evaluate it live"
                )
    reg = shipped_regression() if regression else None
    rec = recommend_for(results, profile, workload, cons, model=m, regression=reg)
    return (b"" if fmt == "table" else export_bytes(rec, fmt, kernel)), rec


def recommend_live_export(
    *,
    profile: str | None,
    workload: dict[str, Any],
    stall_p99_us: float,
    cpu_time_ms: float | None = None,
    remote_cpu_time_ms: float | None = None,
    fmt: str = "json",
    regression: bool = True,
    kernel: str | None = None,
    workloads: list[str] | None = None,
    replicas: int = 64,
) -> tuple[bytes, Any]:
    """(export bytes, Recommendation) from a live evaluation of the workload (the Choose page's path)."""
    # imported when the command runs: app.cli loads this module at every start
    from app.live import recommend_live, recommend_live_weighted
    from app.recommend_exports import export_bytes
    from models.profiles import DEFAULT_PROFILE, get_profile

    prof = profile or DEFAULT_PROFILE
    get_profile(prof)  # unknown profile: one line naming the known ones
    cons = _constraints(stall_p99_us, cpu_time_ms, remote_cpu_time_ms)
    if workloads:
        parts = []
        for text in workloads:
            w, wl, budget_us = parse_workload_spec(text, stall_p99_us)
            parts.append((w, {**workload, **wl}, _constraints(budget_us, cpu_time_ms, remote_cpu_time_ms)))
        rec = recommend_live_weighted(prof, parts, replicas=replicas)
    else:
        reg = None
        if regression:
            # imported when the command runs: app.cli loads this module at every start
            from app.regression_source import shipped_regression

            reg = shipped_regression()
        rec = recommend_live(prof, workload, cons, regression=reg, replicas=replicas)
    return (b"" if fmt == "table" else export_bytes(rec, fmt, kernel)), rec


def recommend_cmd(
    stall_p99_us: Annotated[
        float, typer.Option("--stall-p99-us", help="p99 stall budget per access (µs, > 0).")
    ],
    results: Annotated[
        Path | None, typer.Option("--results", "-r", help="Sweep results folder (default: evaluate live).")
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="table, json, csv, yaml, kernel or patch.")
    ] = "table",
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write here (default: standard output).")
    ] = None,
    profile: Annotated[str | None, typer.Option(help="Hardware profile (default: epyc-zen3-2s).")] = None,
    model: Annotated[
        str | None, typer.Option(help="With --results: montecarlo (default if present) or analytic.")
    ] = None,
    cpu_time_ms: Annotated[
        float | None, typer.Option("--cpu-time-ms", help="CPU time per call limit (ms).")
    ] = None,
    remote_cpu_time_ms: Annotated[
        float | None, typer.Option("--remote-cpu-time-ms", help="Remote IPI CPU time limit (ms).")
    ] = None,
    folio_kb: Annotated[int | None, typer.Option(help="Folio size (KiB).")] = None,
    folio_mix: Annotated[
        str | None, typer.Option(help="Folio sizes by share of folios, e.g. 4:0.7,64:0.2,2048:0.1.")
    ] = None,
    n_folios: Annotated[int | None, typer.Option(help="Folios per call.")] = None,
    target_cpus: Annotated[int | None, typer.Option(help="CPUs acknowledging each flush.")] = None,
    mapcount: Annotated[int | None, typer.Option(help="Page tables mapping each folio.")] = None,
    busy_prob: Annotated[float | None, typer.Option(help="Busy probability per pass.")] = None,
    access_rate_hz: Annotated[float | None, typer.Option(help="Accesses per second per folio.")] = None,
    mode: Annotated[str | None, typer.Option(help="async or sync.")] = None,
    numa_hinting: Annotated[
        int | None, typer.Option(help="1: NUMA-hinting (PROT_NONE) PTEs, not flushed in the batch (6.4+).")
    ] = None,
    writeback_prob: Annotated[
        float | None, typer.Option(help="Probability a folio is under writeback.")
    ] = None,
    writeback_wait_s: Annotated[float | None, typer.Option(help="Writeback wait in sync mode (s).")] = None,
    alloc_fail_prob: Annotated[
        float | None, typer.Option(help="Destination allocation failure probability.")
    ] = None,
    kernel: Annotated[
        str | None,
        typer.Option(help="Kernel version MAJOR.MINOR (the model's mechanism; the patch's target)."),
    ] = None,
    workload: Annotated[
        list[str] | None,
        typer.Option(
            "--workload",
            "-w",
            help="Several workloads: WEIGHT:key=value,... (weight = share of migrated pages; "
            "stall_p99_us=N sets its own budget). Repeat the option.",
        ),
    ] = None,
    replicas: Annotated[int, typer.Option(help="Monte Carlo replicas of the live evaluation.")] = 64,
    regression: Annotated[bool, typer.Option(help="Add the fitted regression's interval.")] = True,
) -> None:
    """Recommend the batch limit, copy engine and threads (the explorer's answer, without a browser)."""
    if fmt not in FORMATS_ALL:
        raise UserError(f"--format {fmt}: unknown (use {', '.join(FORMATS_ALL)})")
    _positive(stall_p99_us, "--stall-p99-us")
    wl = _workload_options(folio_kb, n_folios, target_cpus, mapcount, busy_prob, access_rate_hz, mode)
    extra = {
        "numa_hinting": numa_hinting,
        "writeback_prob": writeback_prob,
        "writeback_wait_s": writeback_wait_s,
        "alloc_fail_prob": alloc_fail_prob,
    }
    live_wl = _workload_options(
        folio_kb, n_folios, target_cpus, mapcount, busy_prob, access_rate_hz, mode, kernel, folio_mix, **extra
    )
    if results is not None:
        if workload:
            raise UserError("--workload: several workloads are evaluated live; leave out --results")
        if folio_mix is not None:
            raise UserError("--folio-mix: evaluated live only; leave out --results")
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
            kernel=kernel,
        )
    else:
        data, rec = recommend_live_export(
            profile=profile,
            workload=_known_only(live_wl),
            stall_p99_us=stall_p99_us,
            cpu_time_ms=cpu_time_ms,
            remote_cpu_time_ms=remote_cpu_time_ms,
            fmt=fmt,
            regression=regression,
            kernel=kernel,
            workloads=workload,
            replicas=replicas,
        )
    if fmt == "table":
        # imported when the command runs: app.cli loads this module at every start
        from app.recommend_table import print_recommendation

        if out is not None:
            raise UserError("--out: give --format json, csv, yaml, kernel or patch to write a file")
        print_recommendation(rec)
        return
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


def _known_only(wl: dict[str, Any]) -> dict[str, Any]:
    """``kernel`` is also the patch's target: pass it to the models only when they know it."""
    # imported when the command runs: app.cli loads this module at every start
    from app.live import known_parameters

    if "kernel" in wl and "kernel" not in known_parameters():
        wl = {k: v for k, v in wl.items() if k != "kernel"}
    return wl


def write_bytes(out: Path, data: bytes) -> None:
    # imported when the command runs: app.cli loads this module at every start
    from app.output import write_atomic

    write_atomic(out, data)


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
    measurements: MeasurementsOpt = None,
) -> None:
    """Serve the explorer (Choose, Landscape, Evidence, Sweeps) for a results folder.

    ``--measurements`` files (``foliotune measure --kernel`` or ``import-trace`` output) are shown
    on Evidence with the shipped measurements, and the regression is refitted on both."""
    if not results.is_dir():
        raise UserError(f"--results {results}: no such results folder")
    # imported when the command runs: app.cli loads this module at every start
    from app.explorer import create_app, stopping_cleanly
    from app.measurement_files import load_extra_measurements
    from app.serving import serve, warm_up_in_background

    rows = load_extra_measurements(measurements or [])
    sd = sweeps_dir or results.resolve().parent / "foliotune-explorer-sweeps"
    warm_up_in_background(results, regression)  # serving meanwhile; a first request computes what it lacks
    app = create_app(
        results,
        sweeps_dir=sd,
        upload_limit=int(upload_limit_mb * 2**20),
        use_regression=regression,
        measurements=rows,
    )
    print(f"foliotune explorer: http://{host}:{port}/  (results {results}; Ctrl-C to stop)", file=sys.stderr)
    with stopping_cleanly(app):  # SIGTERM like Ctrl-C; the validation worker ends with the server
        serve(app, host, port)


def register(cli: typer.Typer) -> None:
    cli.command("recommend", help=RECOMMEND_HELP)(recommend_cmd)
    cli.command("explore")(explore_cmd)
