"""``foliotune run``: the main job, end to end on a fresh machine.

1. the default profile's analytic predictions over a batch-limit range (printed as a table);
2. the default sweep (``sweep/specs/default.toml``) on embedded Ray into ``OUT/sweep-<code version>`` (resumed if
   it is already there; if Ray cannot start, the same chunks are computed serially);
3. the regression fitted on the shipped measurements (skipped, with a note, if it is unavailable);
4. recommendations for every swept profile at its default workload and the default stall budget,
   written to ``OUT/recommendations/`` as JSON, CSV, YAML, a kernel snippet and a patch each;

``--profile`` (repeatable) sweeps only those profiles (the default spec's other axes), in a folder of
its own; ``local`` (written by ``foliotune measure`` to ``measurements/``) is found there when
``FOLIOTUNE_PROFILE_PATH`` does not name it. This module is library code: it imports no CLI module.
5. the explorer served at http://127.0.0.1:PORT (unless ``--no-serve``).
"""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console

from app.explorer import create_app
from app.measurement_files import load_extra_measurements
from app.output import render_table, write_atomic
from app.queries import recommend_for
from app.recommend import Constraints
from app.recommend_exports import FORMATS, export_bytes, export_filename
from app.regression_source import regression_with, shipped_regression
from app.results_view import load_results
from app.serving import serve as serve_app
from app.serving import warm_up
from models.errors import UserError
from models.evaluate import add_derived, evaluate
from models.profiles import DEFAULT_PROFILE, profile_names
from sweep.chunks import code_version
from sweep.runner import default_spec_path, run_sweep
from sweep.spec import spec_from_dict
from sweep.spec_doc import with_profiles
from sweep.storage import infeasible_reasons

#: Where ``foliotune measure`` writes its profile by default (app/commands/measure.py).
MEASURE_DEFAULT_OUT = Path("measurements")
BATCH_LIMITS = (1, 8, 32, 64, 128, 256, 512, 1024, 2048, 4096)
DEFAULT_BUDGET_US = 1000.0
#: The constraint that binds a recommendation, in words (the Recommendations table).
BINDING_WORDS = {"stall_p99_s": "stall", "cpu_time_s": "CPU time", "remote_cpu_time_s": "remote CPU"}


def predictions_table(profile: str | None = None) -> Any:
    """The default workload of ``profile`` over :data:`BATCH_LIMITS`, analytic model, with ratios."""
    points = pd.DataFrame({"profile": profile or DEFAULT_PROFILE, "batch_limit_pages": list(BATCH_LIMITS)})
    return add_derived(evaluate(points, "analytic"))


def sweep_spec(profiles: Sequence[str] | None) -> Any:
    """The default spec, its profile axis replaced by ``profiles`` when given."""
    path = default_spec_path()
    data = tomllib.loads(path.read_text())
    if profiles:
        data = with_profiles(data, profiles)
        data["sweep"]["name"] = f"default sweep for {', '.join(profiles)}"
    return spec_from_dict(data, str(path))


def find_local_profiles(profiles: Sequence[str] | None) -> None:
    """Make profiles written by ``foliotune measure`` (``measurements/NAME.toml``) known to the models."""
    known = set(profile_names())
    for name in profiles or ():
        f = MEASURE_DEFAULT_OUT / f"{name}.toml"
        if name not in known and f.is_file():
            extra = os.environ.get("FOLIOTUNE_PROFILE_PATH", "")
            os.environ["FOLIOTUNE_PROFILE_PATH"] = ":".join(
                x for x in (extra, str(MEASURE_DEFAULT_OUT.resolve())) if x
            )
    missing = [n for n in profiles or () if n not in set(profile_names())]
    if missing:
        raise UserError(
            f"--profile {', '.join(missing)}: unknown (known: {', '.join(profile_names())}; "
            "run `foliotune measure` first for `local`, or set FOLIOTUNE_PROFILE_PATH)"
        )


def run_default_sweep(out_dir: Path, say: Any, profiles: Sequence[str] | None = None) -> Any:
    spec = sweep_spec(profiles)
    try:
        return run_sweep(spec, out_dir, progress=True, yes=True, echo=say)
    except Exception as exc:
        if isinstance(exc, UserError):
            raise
        say(
            f"[yellow]Ray could not run the sweep ({type(exc).__name__}: {exc}); computing it serially[/yellow]"
        )
        return run_sweep(spec, out_dir, progress=True, yes=True, echo=say, backend="serial")


def write_recommendations(
    results_dir: Path, out_dir: Path, profiles: Sequence[str] | None, budget_us: float, regression: Any
) -> list[Any]:
    """One set of exports per profile (default workload); returns the recommendations."""
    results = load_results(results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    recs = []
    for prof in list(profiles or results.profiles()):
        rec = recommend_for(results, prof, None, Constraints(budget_us * 1e-6), regression=regression)
        for fmt in FORMATS:
            write_atomic(out_dir / export_filename(rec, fmt), export_bytes(rec, fmt))
        recs.append(rec)
    return recs


def run_main_job(
    profile: str | Sequence[str] | None, out: Path, serve: bool, port: int, host: str = "127.0.0.1"
) -> None:

    profiles = [profile] if isinstance(profile, str) else list(profile or [])
    find_local_profiles(profiles)
    console = Console(stderr=True)
    say = console.print
    cols = [
        "profile", "folio_kb", "batch_limit_pages", "pages_per_s", "bytes_per_s", "flush_rounds", "ipis",
        "window_mean_s", "stall_p99_s", "ipi_reduction", "speedup",
    ]  # fmt: skip
    shown: list[str | None] = list(profiles) or [None]
    for prof in shown:
        table = predictions_table(prof)
        render_table(
            table[cols],
            f"Default workload of {table['profile'].iloc[0]}, analytic model, against batch limit",
        )

    out = Path(out)
    # One folder per model version (a folder written by other model code is rightly refused) and
    # per profile set.
    suffix = "" if not profiles else "-" + "-".join(sorted(dict.fromkeys(profiles)))
    sweep_dir = out / f"sweep-{code_version().replace('+', '-')}{suffix}"
    say(f"[bold]1/4 default sweep[/bold] → {sweep_dir}")
    summary = run_default_sweep(sweep_dir, say, profiles)
    say(summary.describe())
    if summary.infeasible_points:
        # The grid crosses every engine and thread count with every profile; say why rows are empty.
        for reason, n in infeasible_reasons(sweep_dir).items():
            say(f"  {n:>6,} infeasible: {reason}", markup=False, highlight=False, soft_wrap=True)

    # `foliotune measure` rows of the profiles asked for (measurements/measurements-NAME.csv)
    local_files = [f for n in profiles if (f := MEASURE_DEFAULT_OUT / f"measurements-{n}.csv").is_file()]
    local_rows = load_extra_measurements(local_files)
    if local_rows is not None and len(local_rows):
        names = ", ".join(str(f) for f in local_files)
        say(f"[bold]2/4 regression[/bold] on the shipped measurements and {len(local_rows)} rows of {names}")
        try:
            reg = regression_with(local_rows, "local measurements")
        except UserError as exc:
            say(f"[yellow]no regression on the local rows ({exc}); using the shipped one[/yellow]")
            reg = shipped_regression()
    else:
        say("[bold]2/4 regression[/bold] on the shipped measurements")
        reg = shipped_regression()
    say(f"regression: {reg.version}" if reg.ok else f"[yellow]{reg.note}[/yellow]")

    say(
        f"[bold]3/4 recommendations[/bold] (p99 stall budget {DEFAULT_BUDGET_US:g} µs) → {out / 'recommendations'}"
    )
    recs = write_recommendations(sweep_dir, out / "recommendations", profiles, DEFAULT_BUDGET_US, reg)
    rows = [
        {
            "profile": r.profile,
            "folio_kb": r.workload.get("folio_kb"),
            "batch_limit_pages": r.choice.batch_limit_pages,
            "copy_engine": f"{r.choice.copy_engine} ×{r.choice.copy_threads}",
            "pages_per_s": r.choice.pages_per_s,
            "stall_p99_s": r.choice.stall_p99_s,
            "gain": "—" if r.gain is None else f"{r.gain:.2f}×" + ("" if r.distinguishable else "*"),
            "binding": ", ".join(BINDING_WORDS.get(b, b) for b in r.binding) or "none",
        }
        for r in recs
    ]
    render_table(
        pd.DataFrame(rows),
        f"Recommendations (p99 stall ≤ {DEFAULT_BUDGET_US:g} µs, default workloads; "
        "*: not distinguishable from the default, its 90 % interval includes 1)",
        headings={"gain": "gain over default", "binding": "limited by"},
    )

    if not serve:
        say("[bold]4/4 explorer[/bold] skipped (--no-serve); start it with "
            f"`foliotune explore --results {sweep_dir}`")  # fmt: skip
        return
    warm_up(sweep_dir, True)
    app = create_app(
        sweep_dir,
        sweeps_dir=out / "explorer-sweeps",
        measurements=local_rows,
        # step 2's regression (the shipped one if the local rows could not be fitted), not refitted
        measurements_regression=reg if local_rows is not None else None,
    )
    say(f"[bold]4/4 explorer[/bold] at http://{host}:{port}/  (Ctrl-C to stop)")
    print(f"http://{host}:{port}/", flush=True)
    sys.stdout.flush()
    serve_app(app, host, port)
