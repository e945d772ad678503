"""Recommendation rule, exports, results loading and the recommend CLI (no browser)."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from app.queries import engine_curves, landscape, recommend_for
from app.recommend import Constraints, Provenance, export_bytes, recommend, records
from app.results_view import ResultsError, load_results
from models.errors import UserError

SPEC = """
[sweep]
name = "test: recommendation"
seed = 3
models = ["analytic", "montecarlo"]
replicas = 16
sampler = "grid"
[fixed]
n_folios = 1024
mode = "sync"
busy_prob = 0.01
[axes]
profile = ["epyc-zen3-2s", "xeon-e5-2650v3-2s"]
batch_limit_pages = [1, 64, 256, 512, 1024, 4096]
folio_kb = [4, 64]
copy_engine = ["cpu", "mt-cpu", "dma"]
copy_threads = [1, 4]
"""


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sweep.runner import run_sweep
    from sweep.spec import spec_from_toml

    out = tmp_path_factory.mktemp("rec") / "sweep"
    run_sweep(spec_from_toml(SPEC, "test.toml"), out, progress=False, backend="serial")
    return out


def _cands(rows: list[tuple[int, str, int, float, float, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        rows,
        columns=[
            "batch_limit_pages",
            "copy_engine",
            "copy_threads",
            "pages_per_s",
            "pages_per_s_se",
            "stall_p99_s",
        ],
    ).assign(stall_p99_s_se=0.0, cpu_time_s=1e-3, remote_cpu_time_s=1e-4, ipis=10.0)


SYNTH = _cands(
    [
        (256, "cpu", 1, 900.0, 1.0, 100e-6),
        (512, "cpu", 1, 1000.0, 1.0, 200e-6),
        (1024, "cpu", 1, 1100.0, 1.0, 400e-6),
        (4096, "cpu", 1, 1200.0, 1.0, 1600e-6),
        (1024, "mt-cpu", 4, 1101.0, 5.0, 400e-6),  # tied with 1024/cpu within noise
    ]
)


def test_budget_binds_and_ties_go_to_the_cheaper_choice() -> None:
    rec = recommend(
        SYNTH,
        profile="p",
        workload={"folio_kb": 4},
        constraints=Constraints(500e-6),
        baseline=SYNTH.iloc[[1]],
    )
    assert rec.feasible
    assert rec.choice.key() == (1024, "cpu", 1)  # mt-cpu x4 is within MC noise: cheaper cpu x1 wins
    assert rec.tied == 1
    assert rec.binding == ("stall_p99_s",)  # 4096 is faster but over budget
    assert rec.gain == pytest.approx(1.1)
    assert rec.gain_lo is not None and rec.gain_hi is not None
    assert rec.gain_lo < 1.1 < rec.gain_hi
    assert [c.key() for c in rec.runners_up][:2] == [(1024, "mt-cpu", 4), (512, "cpu", 1)]


def test_no_constraint_binds_with_a_loose_budget() -> None:
    rec = recommend(SYNTH, profile="p", workload={}, constraints=Constraints(1.0), baseline=SYNTH.iloc[[1]])
    assert rec.choice.key() == (4096, "cpu", 1) and rec.binding == ()
    assert "no constraint binds" in rec.why


def test_cpu_limit_binds() -> None:
    c = SYNTH.copy()
    c.loc[c["batch_limit_pages"] == 1024, "cpu_time_s"] = 5e-3
    rec = recommend(c, profile="p", workload={}, constraints=Constraints(500e-6, cpu_time_s=2e-3))
    assert rec.choice.key() == (512, "cpu", 1)
    assert set(rec.binding) == {"cpu_time_s", "stall_p99_s"}
    assert rec.gain is None  # no baseline given


def test_nothing_feasible_reports_lowest_stall() -> None:
    rec = recommend(SYNTH, profile="p", workload={}, constraints=Constraints(10e-6))
    assert not rec.feasible and rec.choice.key() == (256, "cpu", 1)
    assert "no choice meets" in rec.why
    assert records(rec)[0]["recommended"] is False
    assert "WARNING" in export_bytes(rec, "kernel").decode()


def test_regression_failure_is_a_note_not_an_error() -> None:
    def broken(_points: pd.DataFrame) -> pd.DataFrame:
        raise RuntimeError("no model")

    rec = recommend(SYNTH, profile="p", workload={}, constraints=Constraints(500e-6), regression=broken)
    assert rec.regression_pages_per_s is None and "regression unavailable" in rec.regression_note


def test_invalid_constraint() -> None:
    with pytest.raises(UserError):
        Constraints(-1.0)
    with pytest.raises(UserError):
        recommend(SYNTH.iloc[:0], profile="p", workload={}, constraints=Constraints(1.0))


def test_exports_agree_and_are_deterministic() -> None:
    prov = Provenance(
        sweep_spec_hash="abc", model_version="v1", data_hash="d" * 64, results_model="montecarlo"
    )
    rec = recommend(
        SYNTH,
        profile="epyc-zen3-2s",
        workload={"folio_kb": 4, "mode": "sync"},
        constraints=Constraints(500e-6),
        baseline=SYNTH.iloc[[1]],
        provenance=prov,
    )
    js = json.loads(export_bytes(rec, "json"))
    ym = yaml.safe_load(export_bytes(rec, "yaml"))
    assert js == ym
    rows = list(csv.DictReader(io.StringIO(export_bytes(rec, "csv").decode())))
    assert len(rows) == len(js["recommendations"])
    first = js["recommendations"][0]
    for key in (
        "profile",
        "workload",
        "batch_limit_pages",
        "copy_engine",
        "copy_threads",
        "pages_per_s",
        "pages_per_s_lo",
        "pages_per_s_hi",
        "stall_p99_s",
        "gain_over_default",
        "constraint",
        "binding_constraint",
        "provenance",
    ):
        assert key in first
    assert first["provenance"]["sweep_spec_hash"] == "abc"
    assert rows[0]["batch_limit_pages"] == "1024" and rows[0]["provenance.model_version"] == "v1"
    assert export_bytes(rec, "json") == export_bytes(rec, "json")
    k = export_bytes(rec, "kernel").decode()
    assert "#define NR_MAX_BATCHED_MIGRATION 1024" in k
    assert "epyc-zen3-2s" in k and "p99 stall <= 500 us" in k and "1.100x" in k
    with pytest.raises(UserError):
        export_bytes(rec, "xml")


def test_results_folder_recommendation(results_dir: Path) -> None:
    r = load_results(results_dir)
    assert r.models == ("montecarlo", "analytic")
    assert set(r.profiles()) == {"epyc-zen3-2s", "xeon-e5-2650v3-2s"}
    tight = recommend_for(r, "epyc-zen3-2s", {"folio_kb": 4}, Constraints(50e-6))
    loose = recommend_for(r, "epyc-zen3-2s", {"folio_kb": 4}, Constraints(1.0))
    assert tight.choice.batch_limit_pages < loose.choice.batch_limit_pages
    assert tight.choice.stall_p99_s <= 50e-6
    assert tight.provenance.sweep_spec_hash == r.sweep.spec.hash
    assert tight.baseline is not None and tight.gain is not None
    curves = engine_curves(r.candidates("epyc-zen3-2s", tight.workload), Constraints(50e-6))
    assert curves.groupby("copy_engine")["copy_threads"].nunique().max() == 1
    cells = landscape(r, "epyc-zen3-2s", tight.workload, "folio_kb", "profile", Constraints(1e-3))
    assert len(cells) == 4  # 2 folio sizes x 2 profiles
    cell = cells[(cells["x"] == 4) & (cells["y"] == "epyc-zen3-2s")].iloc[0]
    rec = recommend_for(r, "epyc-zen3-2s", {"folio_kb": 4}, Constraints(1e-3))
    assert int(cell["batch_limit_pages"]) == rec.choice.batch_limit_pages


def test_baseline_is_evaluated_when_not_swept(tmp_path: Path) -> None:
    from sweep.runner import run_sweep
    from sweep.spec import spec_from_toml

    spec = SPEC.replace("[1, 64, 256, 512, 1024, 4096]", "[64, 1024]").replace(
        'profile = ["epyc-zen3-2s", "xeon-e5-2650v3-2s"]', 'profile = ["epyc-zen3-2s"]'
    )
    run_sweep(spec_from_toml(spec, "t.toml"), tmp_path / "s", progress=False, backend="serial")
    rec = recommend_for(load_results(tmp_path / "s"), None, None, Constraints(1.0))
    assert rec.baseline is not None and rec.baseline.batch_limit_pages == 512 and rec.gain is not None


def test_broken_folders_say_what_is_wrong(results_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="no such results folder"):
        load_results(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ResultsError, match="not a foliotune results folder"):
        load_results(tmp_path / "empty")
    bad = tmp_path / "bad"
    shutil.copytree(results_dir, bad)
    part = sorted(bad.glob("part-*.parquet"))[0]
    part.write_bytes(part.read_bytes()[:100])
    with pytest.raises(ResultsError, match="damaged chunk file"):
        load_results(bad)
    part.unlink()
    with pytest.raises(ResultsError, match="missing"):
        load_results(bad)
    (bad / "_foliotune_manifest.json").write_text("{not json")
    with pytest.raises(ResultsError, match="damaged manifest"):
        load_results(bad)


def test_cli_recommend(results_dir: Path, tmp_path: Path) -> None:
    from app.commands.explore import recommend_export

    out = tmp_path / "rec.json"
    cmd = [
        sys.executable,
        "-m",
        "app.cli",
        "recommend",
        "--results",
        str(results_dir),
        "--stall-p99-us",
        "200",
    ]
    p = subprocess.run(
        [*cmd, "--format", "json", "--out", str(out)], capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 0, p.stderr
    data, rec = recommend_export(results_dir, profile=None, workload={}, stall_p99_us=200, fmt="json")
    assert out.read_bytes() == data
    assert json.loads(data)["recommendations"][0]["batch_limit_pages"] == rec.choice.batch_limit_pages
    bad = subprocess.run([*cmd, "--folio-kb", "8"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "not in the sweep" in bad.stderr and "Traceback" not in bad.stderr
    missing = subprocess.run(
        [*cmd[:5], str(tmp_path / "none"), *cmd[6:]], capture_output=True, text=True, timeout=120
    )
    assert missing.returncode == 2 and "no such results folder" in missing.stderr
