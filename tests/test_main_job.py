"""`foliotune run`: the main job end to end, as a user runs it (real embedded Ray, real files)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from models.params import OUTPUTS, PARAMETERS
from models.profiles import PROFILE_DIR

BIN = Path(sys.executable).parent / "foliotune"
#: The shipped profiles (other tests may register in-memory ones in this process).
SHIPPED = sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


def run(out: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "COLUMNS": "200"}
    return subprocess.run(
        [str(BIN), "run", "--no-serve", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


@pytest.mark.slow
def test_main_job_writes_sweep_and_recommendations_then_resumes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = run(out)
    assert first.returncode == 0, first.stderr[-2000:]
    sweeps = list(out.glob("sweep-*"))
    assert len(sweeps) == 1
    df = pd.read_parquet(sweeps[0])
    assert list(df.columns[:2]) == ["point", "model"]
    assert set(PARAMETERS) | set(OUTPUTS) <= set(df.columns)
    assert set(df["model"]) == {"analytic", "montecarlo"}
    assert set(df["profile"]) == set(SHIPPED)
    # the infeasible points of the default grid are explained, each reason with its point count
    reasons = df[df["infeasible"] != ""].drop_duplicates("point")["infeasible"].value_counts()
    for reason, n in reasons.items():
        assert f"{n:,} infeasible: {reason}" in first.stdout + first.stderr, reason

    recs = out / "recommendations"
    for name in SHIPPED:
        doc = json.loads((recs / f"foliotune-recommendation-{name}.json").read_text())
        best = doc["recommendations"][0]
        assert best["recommended"] and best["profile"] == name
        for key in ("batch_limit_pages", "copy_engine", "copy_threads", "pages_per_s", "stall_p99_s",
                    "gain_over_default", "constraint", "provenance"):  # fmt: skip
            assert key in best, key
        assert best["stall_p99_s"] <= best["constraint"]["stall_p99_s"]
        assert best["pages_per_s_lo"] <= best["pages_per_s"] <= best["pages_per_s_hi"]
        snippet = (recs / f"foliotune-recommendation-{name}.h").read_text()
        assert f"#define NR_MAX_BATCHED_MIGRATION {best['batch_limit_pages']}" in snippet
        assert name in snippet
    assert "127.0.0.1" not in first.stdout or "8050" not in first.stdout  # --no-serve: nothing served

    # Same code, same folder: the sweep is reused, the recommendations are the same bytes.
    before = {p.name: p.read_bytes() for p in recs.iterdir()}
    second = run(out)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "already done" in second.stdout + second.stderr
    assert {p.name: p.read_bytes() for p in recs.iterdir()} == before


@pytest.mark.slow
def test_run_on_the_local_profile_after_measure_and_on_several_profiles(tmp_path: Path) -> None:
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "COLUMNS": "160"}
    env.pop("FOLIOTUNE_PROFILE_PATH", None)
    m = subprocess.run([str(BIN), "measure", "--quick"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=600, env=env)  # fmt: skip
    assert m.returncode == 0, m.stderr[-2000:]
    assert (tmp_path / "measurements" / "local.toml").is_file()
    r = subprocess.run([str(BIN), "run", "--profile", "local", "--no-serve", "--out", "out"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=900, env=env)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    best = json.loads((tmp_path / "out/recommendations/foliotune-recommendation-local.json").read_text())
    rec = best["recommendations"][0]
    assert rec["profile"] == "local" and rec["stall_p99_s"] <= rec["constraint"]["stall_p99_s"]
    assert (
        (tmp_path / "out/recommendations/foliotune-recommendation-local.patch")
        .read_text()
        .startswith("--- a/mm/migrate.c")
    )
    two = subprocess.run(
        [str(BIN), "run", "--profile", "grace-2s", "--profile", "epyc-zen3-2s", "--no-serve", "--out", "out2"],
        cwd=tmp_path, capture_output=True, text=True, timeout=900, env=env,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    names = sorted(p.name for p in (tmp_path / "out2/recommendations").glob("*.json"))
    assert names == ["foliotune-recommendation-epyc-zen3-2s.json", "foliotune-recommendation-grace-2s.json"]
    grace = json.loads((tmp_path / "out2/recommendations/foliotune-recommendation-grace-2s.json").read_text())
    assert grace["recommendations"][0]["default"]["batch_limit_pages"] == 8192
    bad = subprocess.run([str(BIN), "run", "--profile", "nope", "--no-serve", "--out", "o3"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
    assert bad.returncode == 2 and "unknown" in bad.stderr and "Traceback" not in bad.stderr
