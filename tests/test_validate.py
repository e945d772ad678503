"""validate: one report of every model against the measurements; works with the analytic model alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app.cli import main
from models.measurements import load_measurements
from models.validate import BAR_LABEL, summary_table, validate, write_report


def test_analytic_only_report(tmp_path: Path) -> None:
    data, _ = load_measurements()
    v = validate(data, models=("analytic",))
    s = summary_table(v)
    bar = s[s["source"] == BAR_LABEL].iloc[0]
    assert bar["n"] >= 120 and np.isfinite(bar["analytic"])
    assert s["regression_cv"].isna().all() and s["calibrated_cv"].isna().all()
    # the per-source MAPE is the mean of the per-row errors
    rows = v.rows[v.rows["source"] == "garg-v4-2026-03"]
    ape = (np.abs(rows["analytic"] - rows["value"]) / rows["value"]).mean()
    assert s.set_index("source").loc["garg-v4-2026-03", "analytic"] == pytest.approx(ape)
    paths = write_report(v, s, tmp_path)
    assert pd.read_csv(paths["summary"])["source"].tolist()[-2:] == [BAR_LABEL, "all"]
    html = paths["html"].read_text()
    assert "plotly" in html.lower() and "predicted vs measured" in html


def test_cli_validate_fit_calibrate_and_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["validate", "--model", "analytic", "--out", str(tmp_path / "v")])
    assert exc.value.code in (0, None)
    assert (tmp_path / "v" / "validation.html").is_file()
    assert BAR_LABEL in capsys.readouterr().out

    with pytest.raises(SystemExit) as exc:
        main(["fit", "--no-cv", "--out", str(tmp_path / "m")])
    assert exc.value.code in (0, None)
    assert (tmp_path / "m" / "model.json").is_file()

    with pytest.raises(SystemExit) as exc:
        main(
            [
                "calibrate",
                "--profile",
                "epyc-zen3-2s",
                "--field",
                "cpu_copy_gbps",
                "--out",
                str(tmp_path / "p"),
            ]
        )
    assert exc.value.code in (0, None)
    assert (tmp_path / "p" / "epyc-zen3-2s-calibrated.toml").is_file()
    out = capsys.readouterr().out
    assert "MAPE before" in out and "garg-v4-2026-03" in out

    bad = tmp_path / "bad.csv"
    bad.write_text(
        "source,profile,date,trust,metric,value,unit\ns,epyc-zen3-2s,2026-01,A,bytes_per_s,-3,GB/s\n"
    )
    with pytest.raises(SystemExit) as exc:
        main(["validate", "--model", "analytic", "--strict", "-m", str(bad), "--out", str(tmp_path / "w")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "row 2, column value: negative" in err
