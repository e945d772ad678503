"""``foliotune run``: the main job, end to end on a fresh machine.

1. the default profile's analytic predictions over a batch-limit range (printed as a table);
2. the default sweep (``sweep/specs/default.toml``) on embedded Ray into ``OUT/sweep-<code version>`` (resumed if
   it is already there; if Ray cannot start, the same chunks are computed serially);
3. the regression fitted on the shipped measurements (skipped, with a note, if it is unavailable);
4. recommendations for every swept profile at its default workload and the default stall budget,
   written to ``OUT/recommendations/`` as JSON, CSV, YAML and a kernel snippet each;
5. the explorer served at http://127.0.0.1:PORT (unless ``--no-serve``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

BATCH_LIMITS = (1, 8, 32, 64, 128, 256, 512, 1024, 2048, 4096)
DEFAULT_BUDGET_US = 1000.0


def predictions_table(profile: str | None = None) -> Any:
    """The default workload of ``profile`` over :data:`BATCH_LIMITS`, analytic model, with ratios."""
    import pandas as pd

    from models.evaluate import add_derived, evaluate
    from models.profiles import DEFAULT_PROFILE

    points = pd.DataFrame({"profile": profile or DEFAULT_PROFILE, "batch_limit_pages": list(BATCH_LIMITS)})
    return add_derived(evaluate(points, "analytic"))


def run_default_sweep(out_dir: Path, say: Any) -> Any:
    from sweep.runner import default_spec_path, run_sweep

    try:
        return run_sweep(default_spec_path(), out_dir, progress=True, yes=True, echo=say)
    except Exception as exc:
        from models.errors import UserError

        if isinstance(exc, UserError):
            raise
        say(
            f"[yellow]Ray could not run the sweep ({type(exc).__name__}: {exc}); computing it serially[/yellow]"
        )
        return run_sweep(default_spec_path(), out_dir, progress=True, yes=True, echo=say, backend="serial")


def write_recommendations(
    results_dir: Path, out_dir: Path, profile: str | None, budget_us: float, regression: Any
) -> list[Any]:
    """One set of exports per profile (default workload); returns the recommendations."""
    from app.commands.explore import write_bytes
    from app.queries import recommend_for
    from app.recommend import FORMATS, Constraints, export_bytes, export_filename
    from app.results_view import load_results

    results = load_results(results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    recs = []
    profiles = [profile] if profile else list(results.profiles())
    for prof in profiles:
        rec = recommend_for(results, prof, None, Constraints(budget_us * 1e-6), regression=regression)
        for fmt in FORMATS:
            write_bytes(out_dir / export_filename(rec, fmt), export_bytes(rec, fmt))
        recs.append(rec)
    return recs


def run_main_job(profile: str | None, out: Path, serve: bool, port: int, host: str = "127.0.0.1") -> None:
    import pandas as pd
    from rich.console import Console

    from app.commands.model import _print_table

    console = Console(stderr=True)
    say = console.print
    table = predictions_table(profile)
    cols = [
        "profile", "folio_kb", "batch_limit_pages", "pages_per_s", "bytes_per_s", "flush_rounds", "ipis",
        "window_mean_s", "stall_p99_s", "ipi_reduction", "speedup",
    ]  # fmt: skip
    _print_table(table[cols], "Default workload, analytic model, against batch limit")

    out = Path(out)
    from sweep.chunks import code_version

    # One folder per model version: a folder written by other model code is (rightly) refused.
    sweep_dir = out / f"sweep-{code_version().replace('+', '-')}"
    say(f"[bold]1/4 default sweep[/bold] → {sweep_dir}")
    summary = run_default_sweep(sweep_dir, say)
    say(summary.describe())
    if summary.infeasible_points:
        from sweep.storage import infeasible_reasons

        # The grid crosses every engine and thread count with every profile; say why rows are empty.
        for reason, n in infeasible_reasons(sweep_dir).items():
            say(f"  {n:>6,} infeasible: {reason}", markup=False, highlight=False, soft_wrap=True)

    say("[bold]2/4 regression[/bold] on the shipped measurements")
    from app.regression_source import shipped_regression

    reg = shipped_regression()
    say(f"regression: {reg.version}" if reg.ok else f"[yellow]{reg.note}[/yellow]")

    say(
        f"[bold]3/4 recommendations[/bold] (p99 stall budget {DEFAULT_BUDGET_US:g} µs) → {out / 'recommendations'}"
    )
    recs = write_recommendations(sweep_dir, out / "recommendations", profile, DEFAULT_BUDGET_US, reg)
    rows = [
        {
            "profile": r.profile,
            "folio_kb": r.workload.get("folio_kb"),
            "batch_limit_pages": r.choice.batch_limit_pages,
            "copy_engine": r.choice.copy_engine,
            "copy_threads": r.choice.copy_threads,
            "pages_per_s": r.choice.pages_per_s,
            "stall_p99_s": r.choice.stall_p99_s,
            "gain": r.gain if r.gain is not None else float("nan"),
            "binding": ",".join(r.binding) or "none",
        }
        for r in recs
    ]
    _print_table(
        pd.DataFrame(rows), f"Recommendations (p99 stall ≤ {DEFAULT_BUDGET_US:g} µs, default workloads)"
    )

    if not serve:
        say("[bold]4/4 explorer[/bold] skipped (--no-serve); start it with "
            f"`foliotune explore --results {sweep_dir}`")  # fmt: skip
        return
    from app.commands.explore import serve as serve_app
    from app.commands.explore import warm_up
    from app.explorer import create_app

    warm_up(sweep_dir, True)
    app = create_app(sweep_dir, sweeps_dir=out / "explorer-sweeps")
    say(f"[bold]4/4 explorer[/bold] at http://{host}:{port}/  (Ctrl-C to stop)")
    print(f"http://{host}:{port}/", flush=True)
    sys.stdout.flush()
    serve_app(app, host, port)
