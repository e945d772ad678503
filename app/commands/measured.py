"""Commands on measured results: ``fit``, ``calibrate`` and ``validate``.

Heavy libraries (scikit-learn, scipy, plotly) are imported inside the command functions.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from models.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

MeasurementsOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--measurements",
        "-m",
        help="Extra measurement file (CSV or Parquet in the schema of models/data/MEASUREMENTS.md); repeatable.",
    ),
]
StrictOpt = Annotated[
    bool,
    typer.Option("--strict", help="Refuse a file with any bad row (default: skip bad rows and report them)."),
]
NoShippedOpt = Annotated[
    bool, typer.Option("--no-shipped", help="Leave out the shipped published measurements.")
]


def _pct(x: object) -> str:
    try:
        f = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(x)
    return "—" if f != f else f"{100 * f:.1f} %"


def _rich_table(df: pd.DataFrame, title: str, pct_cols: tuple[str, ...] = ()) -> None:
    # imported when the command runs: app.cli loads this module at every start
    import pandas as pd
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for c in df.columns:
        numeric = pd.api.types.is_numeric_dtype(df[c])
        table.add_column(str(c), justify="right" if numeric else "left")
    for _, row in df.iterrows():
        table.add_row(*[_pct(row[c]) if c in pct_cols else str(row[c]) for c in df.columns])
    Console(width=200).print(table)


def _check_model_out(out: Path) -> None:
    """Refuse a model folder that cannot be written before fitting (a full disk shows only later)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    base = out
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir() or not os.access(base, os.W_OK | os.X_OK):
        raise UserError(f"--out {out}: cannot write in {base} (read-only or not permitted)")


def fit_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Model folder to write (created).")],
    measurements: MeasurementsOpt = None,
    strict: StrictOpt = False,
    no_shipped: NoShippedOpt = False,
    prior: Annotated[
        str, typer.Option(help="How the analytic model enters: residual, feature or none.")
    ] = "residual",
    cv: Annotated[
        bool, typer.Option("--cv/--no-cv", help="Report 5-fold and leave-one-source-out errors.")
    ] = True,
    seed: Annotated[int, typer.Option(help="Random seed of the folds and the trees.")] = 0,
) -> None:
    """Fit the regression model on measured results and save it (skops + model.json with hashes)."""
    # imported when the command runs: app.cli loads this module at every start
    from app.measurement_files import load_measurement_files
    from models.measurements import data_hash
    from models.regression import (
        ESTIMATOR_FILE,
        MANIFEST_FILE,
        PRIORS,
        MigrationRegressor,
        amd_tables_mask,
        cross_validate,
        cv_scores,
        save_model,
        training_table,
    )

    if prior not in PRIORS:
        raise UserError(f"--prior must be one of {', '.join(PRIORS)}")
    _check_model_out(out)
    t0 = time.perf_counter()
    data = load_measurement_files(measurements, strict, no_shipped)
    table = training_table(data)
    model = MigrationRegressor(prior=prior, random_state=seed).fit(table, table["value"].to_numpy())
    fit_s = time.perf_counter() - t0
    scores: dict[str, dict[str, float]] = {}
    if cv:
        amd = amd_tables_mask(table)
        for scheme in ("kfold", "source"):
            oof = cross_validate(table, scheme=scheme, seed=seed, prior=prior)
            scores[f"{scheme}_all"] = cv_scores(oof)
            scores[f"{scheme}_amd_tables"] = cv_scores(oof, amd)
    created = not out.exists()
    try:
        d = save_model(
            model,
            out,
            data_sha256=data_hash(table),
            extra={
                "cv": scores,
                "measurements": [str(p) for p in (measurements or [])] + ([] if no_shipped else ["shipped"]),
            },
        )
    except (OSError, UserError) as exc:
        if created:  # a folder this run made: no half model left in it, and it goes too
            with contextlib.suppress(OSError):
                for name in (ESTIMATOR_FILE, MANIFEST_FILE):
                    (out / name).unlink(missing_ok=True)
                out.rmdir()
        if isinstance(exc, UserError):
            raise  # one line naming the file (models.fileio)
        raise UserError(f"--out {out}: cannot write the model ({exc.strerror or exc})") from None
    total = time.perf_counter() - t0
    print(
        f"fitted on {len(table)} measurements ({', '.join(model.metrics_)}), prior={prior}, in {fit_s:.1f} s"
    )
    if scores:
        # imported when the command runs: app.cli loads this module at every start
        import pandas as pd

        rows = [
            {
                "cross-validation": k.replace("kfold", "5-fold").replace("source", "leave-one-source-out"),
                "n": int(s["n"]),
                "MAPE": s["mape"],
                "median APE": s["median_ape"],
                "90% PI coverage": s["coverage"],
            }
            for k, s in scores.items()
        ]
        _rich_table(pd.DataFrame(rows), "held-out errors", ("MAPE", "median APE", "90% PI coverage"))
    print(f"model written to {d} ({total:.1f} s in all)")


def calibrate_cmd(
    profile: Annotated[str, typer.Option("--profile", "-p", help="Profile to calibrate.")],
    measurements: MeasurementsOpt = None,
    strict: StrictOpt = False,
    no_shipped: NoShippedOpt = False,
    field: Annotated[
        list[str] | None,
        typer.Option("--field", "-f", help="Field to fit (repeatable; default: uncertain ones)."),
    ] = None,
    span: Annotated[float, typer.Option(help="Each field stays within this factor of its value.")] = 10.0,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Folder for the calibrated profile (default: next to the original)."
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Name of the calibrated profile (default: PROFILE-calibrated).")
    ] = None,
) -> None:
    """Fit a profile's uncertain parameters to its measurements (bounded least squares)."""
    # imported when the command runs: app.cli loads this module at every start
    import pandas as pd

    from app.measurement_files import load_measurement_files
    from models.calibrate import calibrate_profile, write_calibrated

    if span <= 1.0:
        raise UserError("--span must be above 1")
    data = load_measurement_files(measurements, strict, no_shipped)
    cal = calibrate_profile(data, profile, fields=field, span=span, name=name)
    path = write_calibrated(cal, out)
    per = cal.per_source.rename(columns={"mape_before": "MAPE before", "mape_after": "MAPE after"})
    total = {
        "source": "all",
        "n": int(per["n"].sum()),
        "MAPE before": cal.mape("before"),
        "MAPE after": cal.mape("after"),
    }
    per = pd.concat([per, pd.DataFrame([total])], ignore_index=True)
    _rich_table(per, f"{profile}: error per source before / after calibration", ("MAPE before", "MAPE after"))
    # imported when the command runs: app.cli loads this module at every start
    from models.profiles import FIELDS

    frows = []
    for f in cal.fields:
        factor = FIELDS[f][0]
        frows.append(
            {
                "field": f,
                "before": f"{cal.before[f] / factor:.4g}",
                "after": f"{cal.after[f] / factor:.4g}",
                "ratio": f"{cal.after[f] / cal.before[f]:.3g}",
            }
        )
    _rich_table(pd.DataFrame(frows), "fitted fields (units as in the key)")
    print(f"{cal.message} ({cal.seconds:.1f} s)")
    print(f"calibrated profile {cal.profile.name!r} written to {path}")
    if out is not None:
        print(f"use it with FOLIOTUNE_PROFILE_PATH={path.parent}")


def validate_cmd(
    measurements: MeasurementsOpt = None,
    strict: StrictOpt = False,
    no_shipped: NoShippedOpt = False,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for validation.csv, -rows.csv and .html.")
    ] = Path("validation"),
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model", help="analytic, montecarlo, calibrated, regression (repeatable; default all)."
        ),
    ] = None,
    replicas: Annotated[int, typer.Option(help="Monte Carlo replicas per point.")] = 32,
    seed: Annotated[int, typer.Option(help="Seed of Monte Carlo and of the folds.")] = 0,
) -> None:
    """Compare the models with the measurements: error per source and metric (terminal, CSV, HTML)."""
    # imported when the command runs: app.cli loads this module at every start
    from app.measurement_files import load_measurement_files
    from models.validate import ALL_MODELS, MODEL_COLUMNS, summary_table, validate, write_report

    t0 = time.perf_counter()
    data = load_measurement_files(measurements, strict, no_shipped)
    v = validate(data, models=tuple(model or ALL_MODELS), seed=seed, replicas=replicas)
    summary = summary_table(v)
    cols = ["source", "metric", "n", *[c for c in MODEL_COLUMNS if summary[c].notna().any()], "pi90_coverage"]
    shown = summary[[c for c in cols if c in summary.columns]]
    _rich_table(
        shown,
        "MAPE per source and metric (_cv: 5-fold, _loso: leave one source out)",
        (*MODEL_COLUMNS, "pi90_coverage"),
    )
    for n in v.notes:
        print(f"note: {n}", file=sys.stderr)
    paths = write_report(v, summary, out)
    print(f"wrote {paths['summary']}, {paths['rows']} and {paths['html']} ({time.perf_counter() - t0:.1f} s)")


def register(cli: typer.Typer) -> None:
    cli.command("fit")(fit_cmd)
    cli.command("calibrate")(calibrate_cmd)
    cli.command("validate")(validate_cmd)
