"""The model's command line: predict, profiles, bench, and its refusal of bad input."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from app.cli import main
from models.params import OUTPUTS, PARAMETERS

BIN = Path(sys.executable).parent / "foliotune"


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_predict_csv_keeps_input_columns_and_fills_defaults(tmp_path: Path, capsys) -> None:
    pts = write(
        tmp_path / "p.csv", "folio_kb,batch_limit_pages,copy_engine\n4,1,cpu\n4,512,cpu\n2048,512,dma\n"
    )
    out = tmp_path / "o.csv"
    code, _, err = run_cli(
        ["predict", "--points", str(pts), "--model", "analytic", "--out", str(out)], capsys
    )
    assert code == 0, err
    df = pd.read_csv(out)
    assert list(df.columns[:3]) == ["folio_kb", "batch_limit_pages", "copy_engine"]
    assert set(PARAMETERS) <= set(df.columns) and set(OUTPUTS) <= set(df.columns)
    assert (df["profile"] == "epyc-zen3-2s").all()
    assert df["pages_per_s"][1] > df["pages_per_s"][0]


def test_predict_montecarlo_is_reproducible_from_seed(tmp_path: Path, capsys) -> None:
    pts = write(tmp_path / "p.csv", "batch_limit_pages,busy_prob\n64,0.1\n512,0.1\n")
    outs = []
    for i, seed in enumerate(["3", "3", "4"]):
        out = tmp_path / f"o{i}.csv"
        code, _, err = run_cli(
            [
                "predict",
                "--points",
                str(pts),
                "--model",
                "montecarlo",
                "--seed",
                seed,
                "--replicas",
                "8",
                "--out",
                str(out),
            ],
            capsys,
        )
        assert code == 0, err
        outs.append(pd.read_csv(out))
    pd.testing.assert_frame_equal(outs[0], outs[1], check_exact=True)
    assert not outs[0]["stall_p99_s"].equals(outs[2]["stall_p99_s"])
    assert "time_s_se" in outs[0].columns


@pytest.mark.parametrize(
    "csv,needle",
    [
        ("profile,folio_kb\nnope,4\n", "row 2, column profile"),
        ("copy_engine\ncpu\nwarp\n", "row 3, column copy_engine"),
        ("batch_limit_pages\n0\n", "row 2, column batch_limit_pages"),
        ("folio_kb\n4\n12\n", "row 3, column folio_kb"),
        ("folio_kb\n4096\n", "row 2, column folio_kb"),
        ("target_cpus\n65\n", "row 2, column target_cpus"),
        ("busy_prob\n1.5\n", "row 2, column busy_prob"),
        ("busy_prob\n-0.1\n", "row 2, column busy_prob"),
        ("n_folios\nmany\n", "row 2, column n_folios"),
        ("copy_engine,copy_threads\ndsa,1\n", "row 2, column copy_engine"),
        ("copy_engine,copy_threads\ncpu,4\n", "row 2, column copy_threads"),
        ("mode\nlazy\n", "row 2, column mode"),
        ("bogus\n1\n", "unknown column 'bogus'"),
        ("", "empty file"),
    ],
)
def test_bad_points_give_one_line_exit_2_and_no_output(tmp_path: Path, capsys, csv: str, needle: str) -> None:
    pts = write(tmp_path / "p.csv", csv)
    out = tmp_path / "o.csv"
    code, _, err = run_cli(["predict", "--points", str(pts), "--out", str(out)], capsys)
    assert code == 2
    assert needle in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [pts]


def test_missing_points_file_and_unknown_model(tmp_path: Path, capsys) -> None:
    code, _, err = run_cli(["predict", "--points", str(tmp_path / "nope.csv")], capsys)
    assert code == 2 and "no such file" in err
    code, _, err = run_cli(["predict", "--model", "oracle"], capsys)
    assert code == 2 and "--model" in err


def test_single_point_prints_a_table(capsys) -> None:
    code, out, err = run_cli(["predict", "--folio-kb", "2048", "--batch-limit-pages", "1,512"], capsys)
    assert code == 0, err
    assert "pages/s" in out and "2048" in out


def test_predict_table_has_one_row_per_point_and_fits_the_terminal(capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = run_cli(["predict", "--folio-kb", "2048", "--batch-limit-pages", "1,512,4096"], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "#1" not in out  # not transposed
    body = [line for line in lines if line.startswith("│") and "ms" in line]
    assert [line.split("│")[2].strip() for line in body] == ["1", "512", "4096"]  # the limit column
    assert any(u in out for u in ("µs", "ms")) and " M" in out  # human units


def test_predict_and_profiles_formats(tmp_path: Path, capsys) -> None:
    args = ["predict", "--folio-kb", "2048", "--batch-limit-pages", "1,512", "--model", "montecarlo"]
    args += ["--replicas", "4"]
    code, out, err = run_cli([*args, "--format", "json"], capsys)
    assert code == 0, err
    as_json = pd.DataFrame(json.loads(out))
    csv_out = tmp_path / "p.csv"
    code, _, err = run_cli([*args, "--out", str(csv_out)], capsys)
    assert code == 0, err
    as_csv = pd.read_csv(csv_out)
    assert list(as_json.columns) == list(as_csv.columns)
    for col in ("time_s", "pages_per_s", "stall_p99_s", "time_s_se"):
        assert as_json[col].tolist() == as_csv[col].tolist(), col  # same numbers, SI units
    code, out, err = run_cli([*args, "--format", "csv"], capsys)
    assert code == 0, err
    assert out == csv_out.read_text()
    code, out, _ = run_cli(["profiles", "--format", "csv"], capsys)
    assert code == 0
    profiles = pd.read_csv(io.StringIO(out))
    assert {"name", "cpus", "page_kb", "default_batch_limit_pages", "copy_engines"} <= set(profiles.columns)
    assert "epyc-zen3-2s" in set(profiles["name"])
    code, out, _ = run_cli(["profiles", "--format", "json"], capsys)
    assert code == 0 and {p["name"] for p in json.loads(out)} == set(profiles["name"])
    for bad, needle in (
        (["--format", "yaml"], "--format: unknown format 'yaml'"),
        (["--format", "table", "--out", str(tmp_path / "t")], "--format table is for the terminal"),
    ):
        code, _, err = run_cli(["predict", *bad], capsys)
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1


def test_profiles_lists_every_shipped_machine(capsys) -> None:
    code, out, _ = run_cli(["profiles"], capsys)
    assert code == 0
    for name in (
        "xeon-e5-2650v3-2s",
        "epyc-zen3-2s",
        "xeon-8260l-2s",
        "kunpeng920-2s",
        "grace-2s",
        "spr-dsa-2s",
    ):
        assert name in out


def test_console_script_runs_and_bench_prints_contract_keys() -> None:
    r = subprocess.run(
        [str(BIN), "bench", "models", "--json", "--points", "20000", "--seconds", "0.01"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    for key in (
        "analytic_points_per_s_per_core",
        "stream_points_per_s_per_core",
        "montecarlo_folios_per_s_per_core",
        "rng_folios_per_s_per_core",
    ):
        assert data[key] > 0
