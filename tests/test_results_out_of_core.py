"""A sweep folder queried out of core (DuckDB over its Parquet chunks): same answers, rows not held.

Real sweeps written by ``sweep.runner.run_sweep`` (serial backend), real Parquet, real DuckDB.
"""

from __future__ import annotations

import math
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import app.results_store as store_mod
import app.results_view as view_mod
from app.explorer.jobs import parse_region, region_spec
from app.queries import landscape, recommend_for
from app.recommend import WORKLOAD, Constraints, recommend
from app.results_view import Results, load_results

# Monte Carlo at few replicas (choices tie within noise) and the analytic model (exact ties); grace-2s
# has its kernel default (8192 pages) outside the swept limits, so its baseline is evaluated.
SPEC = """
[sweep]
name = "test: out of core"
seed = 5
models = ["montecarlo", "analytic"]
replicas = 8
sampler = "grid"
[fixed]
n_folios = 512
mode = "sync"
mapcount = 1
[axes]
profile = ["epyc-zen3-2s", "grace-2s"]
batch_limit_pages = [1, 16, 64, 512, 2048]
folio_kb = [4, 64, 2048]
copy_engine = ["cpu", "mt-cpu"]
copy_threads = [1, 2]
busy_prob = [0.0, 0.05]
target_cpus = [2, 16]
"""

# Many rows, cheap to evaluate: the analytic model only.
BIG_SPEC = """
[sweep]
name = "test: a larger sweep"
seed = 2
models = ["analytic"]
sampler = "grid"
[fixed]
n_folios = 256
[axes]
profile = ["epyc-zen3-2s", "xeon-e5-2650v3-2s"]
batch_limit_pages = { log2_start = 0, log2_stop = 12 }
folio_kb = [4, 16, 64, 512, 2048]
copy_engine = ["cpu", "mt-cpu", "dma"]
copy_threads = [1, 2, 4]
target_cpus = [2, 4, 8, 16, 32]
access_rate_hz = [100.0, 1000.0, 10000.0, 100000.0]
busy_prob = [0.0, 0.01, 0.05]
mapcount = [1, 2]
"""


def _sweep(out: Path, spec: str) -> Path:
    from sweep.runner import run_sweep
    from sweep.spec import spec_from_toml

    run_sweep(spec_from_toml(spec, "t.toml"), out, progress=False, backend="serial")
    return out


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _sweep(tmp_path_factory.mktemp("ooc") / "small", SPEC)


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _sweep(tmp_path_factory.mktemp("ooc") / "big", BIG_SPEC)


@pytest.fixture()
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("FOLIOTUNE_CACHE_DIR", str(d))
    view_mod._load_cached.cache_clear()
    yield d
    view_mod._load_cached.cache_clear()


def _per_cell(r: Results, profile: str, x: str, y: str, cons: Constraints, model: str) -> pd.DataFrame:
    """The landscape as the explorer computed it before: recommend() per cell on that cell's rows."""
    rows = []
    profiles = list(r.profiles(model)) if "profile" in (x, y) else [profile]
    base_wl = r.default_workload(profile, model)
    for prof in profiles:
        vals = r.workload_values(prof, model)
        for xv in [prof] if x == "profile" else vals[x]:
            for yv in [prof] if y == "profile" else vals[y]:
                partial = dict(base_wl)
                partial.update({k: v for k, v in ((x, xv), (y, yv)) if k != "profile"})
                wl = r.resolve_workload(prof, partial, model)
                cands = r.candidates(prof, wl, model)
                rec = recommend(
                    cands, profile=prof, workload=wl, constraints=cons, baseline=r.baseline(prof, wl, model)
                )
                c, ok = rec.choice, rec.feasible
                rows.append(
                    {
                        "x": xv,
                        "y": yv,
                        "profile": prof,
                        "batch_limit_pages": c.batch_limit_pages if ok else math.nan,
                        "copy_engine": c.copy_engine if ok else "",
                        "copy_threads": c.copy_threads if ok else 0,
                        "gain": rec.gain if ok and rec.gain is not None else math.nan,
                        "gain_lo": rec.gain_lo if ok and rec.gain_lo is not None else math.nan,
                        "gain_hi": rec.gain_hi if ok and rec.gain_hi is not None else math.nan,
                        "pages_per_s": c.pages_per_s,
                        "stall_p99_s": c.stall_p99_s,
                        "feasible": ok,
                    }
                )
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    "cons",
    [
        Constraints(1.0),  # nothing binds
        Constraints(200e-6),  # the budget binds in some cells
        Constraints(300e-6, cpu_time_s=2e-3),  # and a CPU-time limit
        Constraints(1e-9, cpu_time_s=1e-12),  # nothing meets it: the lowest-stall choice, not feasible
    ],
    ids=["loose", "budget", "cpu-limit", "infeasible"],
)
def test_the_landscape_is_recommend_in_every_cell(small: Path, cons: Constraints) -> None:
    r = load_results(small)
    for model in ("montecarlo", "analytic"):
        for x, y in (("folio_kb", "profile"), ("busy_prob", "target_cpus")):
            got = landscape(r, "epyc-zen3-2s", r.default_workload("epyc-zen3-2s", model), x, y, cons, model)
            want = _per_cell(r, "epyc-zen3-2s", x, y, cons, model)
            assert len(got) == len(want) > 1
            pd.testing.assert_frame_equal(
                got.reset_index(drop=True), want, check_exact=True, check_dtype=False
            )
            if cons.cpu_time_s is not None and cons.cpu_time_s < 1e-9:
                assert not got["feasible"].any()


def test_candidates_are_the_raw_rows_of_the_workload_in_point_order(small: Path) -> None:
    r = load_results(small)
    raw = pd.read_parquet(small)
    raw = raw[(raw["infeasible"] == "") & (raw["model"] == "montecarlo") & (raw["profile"] == "grace-2s")]
    wl = r.resolve_workload("grace-2s", {"folio_kb": 64, "busy_prob": 0.05, "target_cpus": 2}, "montecarlo")
    sel = np.ones(len(raw), dtype=bool)
    for k in WORKLOAD:
        sel &= (raw[k] == wl[k]).to_numpy()
    want = raw[sel].sort_values("point")
    got = r.candidates("grace-2s", wl, "montecarlo")
    assert len(got) == len(want) > 10
    for col in got.columns:
        np.testing.assert_array_equal(got[col].astype(str).to_numpy(), want[col].astype(str).to_numpy())
    # the index: every feasible workload of the folder, nothing else
    keys = raw.groupby(list(WORKLOAD), observed=True).size()
    assert sum(1 for k in r.index if k[:2] == ("montecarlo", "grace-2s")) == len(keys)


def test_a_region_sweep_takes_the_swept_choices_of_the_selected_profiles(small: Path) -> None:
    r = load_results(small)
    region = parse_region(
        r,
        {
            "axes": {"profile": ["grace-2s"], "folio_kb": [64, 2048]},
            "profile": "grace-2s",
            "model": "analytic",
        },
    )
    spec = region_spec(r, region)
    raw = pd.read_parquet(small)
    raw = raw[(raw["infeasible"] == "") & (raw["profile"] == "grace-2s")]
    assert spec["axes"]["copy_engine"] == sorted(raw["copy_engine"].astype(str).unique())
    assert spec["axes"]["copy_threads"] == sorted(int(v) for v in raw["copy_threads"].unique())
    assert set(raw["batch_limit_pages"].unique()) <= set(spec["axes"]["batch_limit_pages"])


def test_opening_a_large_folder_does_not_hold_its_rows(big: Path, cache_dir: Path) -> None:
    """Opening the folder and answering a recommendation and a landscape allocates a small fraction
    of what the usable rows take in memory (the explorer before this held them all: a peak of 25 MB
    here, against ~2 MB now)."""
    view_mod._load_cached.cache_clear()
    tracemalloc.start()
    try:
        r = load_results(big)
        rec = recommend_for(r, "epyc-zen3-2s", {"folio_kb": 64}, Constraints(300e-6))
        cells = landscape(r, "epyc-zen3-2s", rec.workload, "folio_kb", "target_cpus", Constraints(300e-6))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rows_bytes = r.n_rows_usable * 20 * 8  # ~20 numeric columns of 8 bytes
    assert r.n_rows_usable > 100_000 and len(cells) == 25
    assert peak < rows_bytes / 4, (peak, rows_bytes)


def test_the_sorted_copy_gives_the_same_answers_and_is_reused(
    big: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_mod, "CACHE_MIN_ROWS", 1000)
    r = load_results(big)
    assert not r.store.cached and not cache_dir.exists()
    wl = r.resolve_workload("xeon-e5-2650v3-2s", {"folio_kb": 2048, "mapcount": 2})
    cons = Constraints(500e-6)
    before = r.candidates("xeon-e5-2650v3-2s", wl)
    land_before = landscape(r, "xeon-e5-2650v3-2s", wl, "access_rate_hz", "profile", cons)
    r.store.ensure_cache(wait=True)  # the explorer starts it (app.serving.warm_up)
    assert r.store.cached, r.store.cache_error
    assert [p.name for p in cache_dir.iterdir()] == [r.store.cache_path.name]
    pd.testing.assert_frame_equal(r.candidates("xeon-e5-2650v3-2s", wl), before, check_exact=True)
    pd.testing.assert_frame_equal(
        landscape(r, "xeon-e5-2650v3-2s", wl, "access_rate_hz", "profile", cons),
        land_before,
        check_exact=True,
    )
    # a new process (here: a fresh open) reads the index and rows from the copy at once
    view_mod._load_cached.cache_clear()
    again = load_results(big)
    assert again is not r and again.store.cached and again.index == r.index
    pd.testing.assert_frame_equal(again.candidates("xeon-e5-2650v3-2s", wl), before, check_exact=True)


def test_a_damaged_cache_file_is_rebuilt_not_an_error(
    big: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_mod, "CACHE_MIN_ROWS", 1000)
    r = load_results(big)
    path = r.store.cache_path
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a database" * 100)
    view_mod._load_cached.cache_clear()
    r = load_results(big)
    assert not r.store.cached
    want = recommend_for(r, None, None, Constraints(1e-3))
    r.store.ensure_cache(wait=True)
    assert r.store.cached, r.store.cache_error
    got = recommend_for(r, None, None, Constraints(1e-3))
    assert repr(got.choice) == repr(want.choice) and got.gain == want.gain


def test_a_copy_written_for_other_keys_is_not_read(
    big: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy of the same data written by a version that keyed the rows by fewer columns (here: the
    key without the kernel version) is another file: the index still has every key column."""
    monkeypatch.setattr(store_mod, "CACHE_MIN_ROWS", 1000)
    keys = view_mod.KEY_COLUMNS
    monkeypatch.setattr(view_mod, "KEY_COLUMNS", tuple(c for c in keys if c != "kernel"))
    old = load_results(big)
    old.store.ensure_cache(wait=True)
    assert old.store.cached, old.store.cache_error
    monkeypatch.setattr(view_mod, "KEY_COLUMNS", keys)
    view_mod._load_cached.cache_clear()
    r = load_results(big)
    assert r.store.cache_path != old.store.cache_path and not r.store.cached
    assert all(len(k) == len(view_mod.KEY_COLUMNS) for k in r.index)
    r.store.ensure_cache(wait=True)
    assert r.store.cached and len(list(cache_dir.iterdir())) == 2


KERNEL_SPEC = """
[sweep]
name = "test: a kernel axis"
seed = 3
models = ["analytic"]
sampler = "grid"
[fixed]
profile = "epyc-zen3-2s"
n_folios = 512
folio_kb = 4
copy_engine = "cpu"
copy_threads = 1
[axes]
batch_limit_pages = [1, 64, 512, 2048]
kernel = ["6.2", "6.6"]
"""


def test_a_sweep_over_kernel_versions_keeps_them_apart(tmp_path: Path) -> None:
    """Rows of different kernel versions are different workloads: a workload's candidates are one row
    per choice, all of the kernel asked for (or the profile's default kernel), never a mix."""
    r = load_results(_sweep(tmp_path / "k", KERNEL_SPEC))
    assert r.workload_values("epyc-zen3-2s")["kernel"] == ["6.2", "6.6"]
    for kernel in ("6.2", "6.6"):
        wl = r.resolve_workload("epyc-zen3-2s", {"kernel": kernel})
        cands = r.candidates("epyc-zen3-2s", wl)
        assert sorted(cands["batch_limit_pages"].tolist()) == [1, 64, 512, 2048]
        assert set(cands["kernel"].astype(str)) == {kernel}
    assert r.resolve_workload("epyc-zen3-2s", {})["kernel"] == "6.6"  # the profile's default kernel
    # before 6.3 every limit migrates folio by folio: all tie, and the profile's default is kept
    rec = recommend_for(r, "epyc-zen3-2s", {"kernel": "6.2"}, Constraints(1.0))
    assert rec.choice.batch_limit_pages == 512 and rec.workload["kernel"] == "6.2"
    batched = recommend_for(r, "epyc-zen3-2s", {"kernel": "6.6"}, Constraints(1.0))
    assert batched.workload["kernel"] == "6.6"
    assert batched.choice.pages_per_s > rec.choice.pages_per_s
