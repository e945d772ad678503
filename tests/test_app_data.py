"""The explorer's data layer without a browser: results queries, evidence tables, the regression
adapter, sensitivity, uploads, region requests and the validation worker (real sweeps, real Parquet,
real processes)."""

from __future__ import annotations

import io
import json
import multiprocessing
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.evidence import (
    evidence_tables,
    parse_measurement_upload,
    residual_table,
    shipped_measurements,
)
from app.explorer.jobs import RegionError, parse_region, region_spec
from app.queries import recommend_for
from app.recommend import DEFAULT_CHOICE, Constraints
from app.regression_source import (
    regression_with,
    rows_older_than_shipped,
    shipped_regression,
    source_from_model,
)
from app.results_view import Results, ResultsError, load_results
from app.sensitivity import SOBOL_PARAMS, sensitivity
from app.validation import ValidationQueue
from models.errors import UserError
from models.evaluate import evaluate
from models.measurements import REQUIRED, write_measurements
from models.params import PARAMETERS
from models.regression import MigrationRegressor, load_model, predict_regression, save_model, training_table

SPEC = """
[sweep]
name = "test: data layer"
seed = 11
models = ["montecarlo", "analytic"]
replicas = 8
sampler = "grid"
[fixed]
n_folios = 256
mode = "sync"
busy_prob = 0.01
profile = "epyc-zen3-2s"
[axes]
batch_limit_pages = {batch}
folio_kb = [4, 64]
target_cpus = [4, 16]
copy_engine = ["cpu", "mt-cpu"]
copy_threads = [1, 4]
"""


def _sweep(out: Path, batch: list[int]) -> Path:
    from sweep.runner import run_sweep
    from sweep.spec import spec_from_toml

    run_sweep(spec_from_toml(SPEC.format(batch=batch), "data.toml"), out, progress=False, backend="serial")
    return out


@pytest.fixture(scope="module")
def with_default(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _sweep(tmp_path_factory.mktemp("data") / "with", [1, 64, 512, 2048])


@pytest.fixture(scope="module")
def without_default(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _sweep(tmp_path_factory.mktemp("data") / "without", [1, 64, 2048])


# ---- results queries


def test_candidates_are_the_sweep_rows_of_one_workload(with_default: Path) -> None:
    r = load_results(with_default)
    assert r.models == ("montecarlo", "analytic") and r.profiles() == ("epyc-zen3-2s",)
    wl = r.resolve_workload("epyc-zen3-2s", {"folio_kb": "64", "target_cpus": 16.0})
    assert (wl["folio_kb"], wl["target_cpus"]) == (64, 16)
    cands = r.candidates("epyc-zen3-2s", wl, "analytic")
    raw = pd.read_parquet(with_default)
    expect = raw[
        (raw["model"] == "analytic")
        & (raw["folio_kb"] == 64)
        & (raw["target_cpus"] == 16)
        & (raw["infeasible"] == "")
    ]
    assert len(cands) == len(expect) == 4 * 3  # batch limits × (cpu×1, mt-cpu×1, mt-cpu×4 ...)
    assert sorted(cands["pages_per_s"]) == sorted(expect["pages_per_s"])
    # a value the sweep lacks falls back to the default instead of failing
    assert r.resolve_workload("epyc-zen3-2s", {"folio_kb": 2048})["folio_kb"] in (4, 64)
    with pytest.raises(ResultsError, match="not in the sweep"):
        r.candidates("epyc-zen3-2s", {**wl, "folio_kb": 2048}, "analytic")
    with pytest.raises(ResultsError, match="no results for profile 'grace-2s'"):
        r.candidates("grace-2s", wl)


def test_status_is_the_sweep_status_plus_rows(with_default: Path) -> None:
    from sweep.results import sweep_status

    st = load_results(with_default).status()
    want = sweep_status(with_default).to_dict()
    assert {k: st[k] for k in want} == want
    raw = pd.read_parquet(with_default)
    assert st["complete"] and st["rows_total"] == len(raw) == 2 * st["n_points"]
    assert st["rows_loaded"] == int((raw["infeasible"] == "").sum()) < len(raw)


def test_an_evaluated_baseline_is_the_row_the_sweep_would_have_had(
    with_default: Path, without_default: Path
) -> None:
    """Same spec but without batch limit 512: the baseline is evaluated with the sweep's own seed and
    replicas, so it equals the other sweep's row bit for bit (Monte Carlo included)."""
    swept, evaluated = load_results(with_default), load_results(without_default)
    wl = swept.resolve_workload("epyc-zen3-2s", {"folio_kb": 64, "target_cpus": 16})
    for model in ("montecarlo", "analytic"):
        a = swept.baseline("epyc-zen3-2s", wl, model)
        b = evaluated.baseline("epyc-zen3-2s", wl, model)
        assert len(a) == len(b) == 1
        for col in ("pages_per_s", "stall_p99_s", "cpu_time_s"):
            assert a[col].iloc[0] == b[col].iloc[0], (model, col)


# ---- region requests (what the browser sends when a landscape region is swept)


def test_a_region_of_swept_values_becomes_a_spec_with_the_sweeps_own_settings(with_default: Path) -> None:
    r = load_results(with_default)
    wl = r.resolve_workload("epyc-zen3-2s", {})
    sent = json.loads(json.dumps(wl))  # as the browser sends it back: 1000.0 arrives as 1000
    sent["access_rate_hz"] = int(sent["access_rate_hz"])
    region = parse_region(
        r, {"axes": {"folio_kb": ["4", 64]}, "profile": "epyc-zen3-2s", "model": "analytic", "workload": sent}
    )
    assert region.axes == {"folio_kb": [4, 64]} and region.workload == wl
    spec = region_spec(r, region)
    manifest = json.loads((with_default / "_foliotune_manifest.json").read_text())
    for k in ("seed", "replicas"):
        assert spec["sweep"][k] == manifest["spec"][k]
    assert spec["axes"]["folio_kb"] == [4, 8, 16, 32, 64]


@pytest.mark.parametrize(
    ("region", "message"),
    [
        ("not an object", "expected an object"),
        ({"axes": {"folio_kb": [4]}, "profile": "epyc-zen3-2s", "model": "nonsense"}, "region.model"),
        ({"axes": {"folio_kb": [4]}, "profile": "grace-2s", "model": "analytic"}, "region.profile"),
        (
            {"axes": {"folio_kb": [8]}, "profile": "epyc-zen3-2s", "model": "analytic"},
            "8 is not in the results",
        ),
        (
            {"axes": {"n_folios": [10**12]}, "profile": "epyc-zen3-2s", "model": "analytic"},
            "not in the results",
        ),
        ({"axes": {"rm -rf": [1]}, "profile": "epyc-zen3-2s", "model": "analytic"}, "not a parameter"),
        ({"axes": [["folio_kb", 4]], "profile": "epyc-zen3-2s", "model": "analytic"}, "region.axes"),
        ({"axes": {"folio_kb": {"a": 1}}, "profile": "epyc-zen3-2s", "model": "analytic"}, "list of swept"),
        (
            {
                "axes": {"folio_kb": [4]},
                "profile": "epyc-zen3-2s",
                "model": "analytic",
                "workload": {"mode": "x"},
            },
            "region.workload.mode",
        ),
    ],
)
def test_a_region_that_is_not_in_the_results_is_refused(
    with_default: Path, region: Any, message: str
) -> None:
    with pytest.raises(RegionError, match=message):
        parse_region(load_results(with_default), region)


def test_the_server_answers_a_bad_region_with_400(with_default: Path, tmp_path: Path) -> None:
    from app.explorer import create_app

    app = create_app(with_default, sweeps_dir=tmp_path, sweep_backend="serial", use_regression=False)
    client = app.server.test_client()
    try:
        assert client.get("/").status_code == 200
        deps = client.get("/_dash-dependencies").get_json()
        dep = next(d for d in deps if "ls-job-id.data" in d["output"])
        for region in ({"axes": {"folio_kb": [3]}, "profile": "epyc-zen3-2s", "model": "analytic"}, [1, 2]):
            body = {
                "output": dep["output"],
                "outputs": [
                    {"id": o.split(".")[0], "property": o.split(".")[1].split("@")[0]}
                    for o in dep["output"].strip(".").split("...")
                ],
                "inputs": [{"id": "ls-launch", "property": "n_clicks", "value": 1}],
                "changedPropIds": ["ls-launch.n_clicks"],
                "state": [
                    {"id": "ls-region", "property": "data", "value": region},
                    {"id": "folder", "property": "value", "value": "0"},
                ],
            }
            r = client.post("/_dash-update-component", json=body)
            assert r.status_code == 400, r.get_data(as_text=True)[:300]
            assert "region" in r.get_data(as_text=True)
    finally:
        app.server.extensions["foliotune_state"].close()


# ---- the regression adapter


@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[MigrationRegressor, Path]:
    table = training_table(shipped_measurements())
    model = MigrationRegressor(n_estimators=30).fit(table, table["value"])
    return model, save_model(model, tmp_path_factory.mktemp("model") / "m")


def test_the_adapter_predicts_what_predict_regression_predicts(
    small_model: tuple[MigrationRegressor, Path], with_default: Path
) -> None:
    model, folder = small_model
    loaded, manifest = load_model(folder)
    src = source_from_model(loaded, manifest, "test")
    assert src.ok and src.predict is not None and "foliotune-regression v" in src.version
    r = load_results(with_default)
    rows = r.candidates("epyc-zen3-2s", r.default_workload("epyc-zen3-2s"))
    pts = rows[["profile", *DEFAULT_CHOICE, "folio_kb", "n_folios"]].head(40)
    got = src.predict(pts.astype(object).reset_index(drop=True))
    want = predict_regression(pts.reset_index(drop=True), model_dir=folder)
    for col in ("pages_per_s", "pages_per_s_lo", "pages_per_s_hi"):
        np.testing.assert_array_equal(got[col].to_numpy(), want[col].to_numpy())
    assert (got["pages_per_s_lo"] < got["pages_per_s"]).all() and (
        got["pages_per_s"] < got["pages_per_s_hi"]
    ).all()
    # pages/s and bytes/s agree through the page size (4 KiB on this profile)
    np.testing.assert_allclose(got["bytes_per_s"] / got["pages_per_s"], 4096.0, rtol=1e-12)


def test_a_model_without_throughput_is_a_note(small_model: tuple[MigrationRegressor, Path]) -> None:
    table = training_table(shipped_measurements())
    only_time = table[table["metric"] == "time_per_page_s"]
    if len(only_time) < 10:
        pytest.skip("too few time_per_page_s rows to fit")
    model = MigrationRegressor(n_estimators=10).fit(only_time, only_time["value"])
    src = source_from_model(model, {}, "test")
    assert not src.ok and "does not predict bytes_per_s" in src.note


def test_an_upload_changes_the_sessions_regression() -> None:
    """Uploaded measurements 8× the shipped throughput of one configuration pull the refitted
    regression's prediction there up; the shipped regression is left as it was."""
    meas = shipped_measurements()
    amd = meas[(meas["metric"] == "bytes_per_s") & (meas["profile"] == "epyc-zen3-2s")]
    up = pd.concat([amd.assign(source="upload", value=amd["value"] * 8.0)] * 3, ignore_index=True)
    pts = (
        amd[["profile", *DEFAULT_CHOICE, "folio_kb", "n_folios"]]
        .drop_duplicates()
        .head(10)
        .reset_index(drop=True)
    )
    shipped = shipped_regression()
    assert shipped.predict is not None
    before = shipped.predict(pts)["pages_per_s"].to_numpy()
    session = regression_with(up)
    assert session.predict is not None and session.label.startswith("shipped + uploaded")
    after = session.predict(pts)["pages_per_s"].to_numpy()
    assert np.median(after / before) > 2.0
    np.testing.assert_array_equal(shipped.predict(pts)["pages_per_s"].to_numpy(), before)


def test_uploaded_rows_older_than_their_profiles_shipped_ones_are_counted() -> None:
    """The regression predicts for a profile's newest measurements; the upload message counts the rows
    that are older than that (they move it little), by profile."""
    meas = shipped_measurements()
    amd = meas[meas["profile"] == "epyc-zen3-2s"].head(1)
    newest = str(meas.loc[meas["profile"] == "epyc-zen3-2s", "date"].astype(str).max())
    rows = pd.concat(
        [
            amd.assign(date="2001-01-01"),  # older than every shipped epyc row
            amd.assign(date="2001-06"),
            amd.assign(date=newest),  # as new as the newest: not older
            amd.assign(date="2099-01-01"),
            amd.assign(profile="local", date="2001-01-01"),  # no shipped rows of that profile
        ],
        ignore_index=True,
    )
    assert rows_older_than_shipped(rows) == 2
    assert rows_older_than_shipped(rows.iloc[2:]) == 0


def test_local_measurements_join_the_explorers_evidence_and_regression(tmp_path: Path) -> None:
    """Rows given to the explorer (``explore --measurements``, ``run --profile local``) are on the
    Evidence page beside the shipped ones for every session, and the regression is refitted on them."""
    from app.explorer import create_app
    from app.measurement_files import load_extra_measurements

    meas = shipped_measurements()
    amd = meas[(meas["metric"] == "bytes_per_s") & (meas["profile"] == "epyc-zen3-2s")]
    f = tmp_path / "measurements-local.csv"
    write_measurements(amd.assign(source="this-machine", date="2026-11-20", value=amd["value"] * 4.0), f)
    rows = load_extra_measurements([f])
    assert rows is not None and 100 < len(rows) <= len(amd)  # rows equal but for their source: one kept
    state = create_app(tmp_path, sweeps_dir=tmp_path / "sw", measurements=rows).server.extensions[
        "foliotune_state"
    ]
    seen = state.measurements("any session")
    assert len(seen) == len(meas) + len(rows) and (seen["source"] == "this-machine").sum() == len(rows)
    reg = state.regression("any session")
    assert reg.ok and reg.label == "shipped + local measurements"
    resid = residual_table(seen, reg)
    mine = resid[(resid["source"] == "this-machine") & (resid["model"] == "analytic")]
    assert len(mine) == len(rows)
    pts = amd[["profile", *DEFAULT_CHOICE, "folio_kb", "n_folios"]].drop_duplicates().reset_index(drop=True)
    shipped = shipped_regression()
    assert shipped.predict is not None and reg.predict is not None
    ratio = reg.predict(pts)["pages_per_s"].to_numpy() / shipped.predict(pts)["pages_per_s"].to_numpy()
    assert np.median(ratio) > 2.0  # the local rows are 4x the shipped ones and the newest
    state.close()
    given = create_app(
        tmp_path, sweeps_dir=tmp_path / "sw", measurements=rows, measurements_regression=shipped
    )
    assert given.server.extensions["foliotune_state"].regression("s") is shipped  # the run's, not refitted
    assert load_extra_measurements([]) is None


# ---- evidence tables


def test_residuals_of_throughput_and_time_per_page_mirror_each_other() -> None:
    """A throughput measured at twice the analytic value and the time per page measured at half of it
    (the same configuration, bytes/s × s/page = page bytes) are off by +log10 2 and -log10 2."""
    pt = pd.DataFrame(
        [
            {
                "profile": "epyc-zen3-2s",
                "folio_kb": 64,
                "n_folios": 512,
                "batch_limit_pages": 512,
                "copy_engine": "cpu",
                "copy_threads": 1,
                "target_cpus": 8,
                "mapcount": 1,
                "busy_prob": 0.0,
                "access_rate_hz": 1.0,
                "mode": "async",
            }
        ]
    )
    base = shipped_measurements().iloc[:1].assign(**pt.iloc[0].to_dict())
    config = base[[c for c in PARAMETERS if c in base.columns]]  # the shipped row's other parameters too
    bps = float(evaluate(config, "analytic")["bytes_per_s"].iloc[0])
    rows = pd.concat(
        [
            base.assign(metric="bytes_per_s", value=2.0 * bps, source="a"),
            base.assign(metric="time_per_page_s", value=4096.0 / (2.0 * bps), source="b"),
        ],
        ignore_index=True,
    ).assign(predicted=True)
    res = residual_table(rows).set_index("metric")["log10_ratio"]
    assert res["bytes_per_s"] == pytest.approx(np.log10(2.0), abs=1e-12)
    assert res["time_per_page_s"] == pytest.approx(-np.log10(2.0), abs=1e-12)


def test_evidence_tables_group_the_measured_rows_and_draw_feasible_curves() -> None:
    meas = shipped_measurements()
    pts, curves, x = evidence_tables(meas, "epyc-zen3-2s", "bytes_per_s")
    mine = meas[(meas["profile"] == "epyc-zen3-2s") & (meas["metric"] == "bytes_per_s")]
    assert 0 < len(pts) <= len(mine) and x in pts.columns
    assert set(curves["group"]) <= set(pts["group"]) and pts["group"].nunique() <= 6
    assert np.isfinite(curves["predicted"]).all() and (curves["predicted"] > 0).all()
    empty_pts, empty_curves, _ = evidence_tables(meas, "epyc-zen3-2s", "no such metric")
    assert empty_pts.empty and empty_curves.empty


# ---- sensitivity


def test_the_default_choice_has_no_gain_to_explain() -> None:
    wl = {"mode": "sync"}
    si, names, label = sensitivity("epyc-zen3-2s", wl, dict(DEFAULT_CHOICE), None, n=16)
    assert names == list(SOBOL_PARAMS) and label.endswith("constant")
    assert si["ST"] == [0.0] * len(names)


def test_sobol_indices_of_a_larger_batch_name_the_parameters_that_matter() -> None:
    choice = {"batch_limit_pages": 4096, "copy_engine": "mt-cpu", "copy_threads": 4}
    si, names, label = sensitivity("epyc-zen3-2s", {"mode": "sync"}, choice, None, n=64)
    assert "analytic model" in label
    st = dict(zip(names, si["ST"], strict=True))
    assert all(np.isfinite(v) for v in st.values())
    assert max(st, key=st.__getitem__) in ("folio_kb", "n_folios")  # the batch's size decides its gain
    assert st["mapcount"] < max(st.values())


# ---- uploads


def _parquet(df: pd.DataFrame, **kw: Any) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), buf, **kw)
    return buf.getvalue()


def test_a_small_parquet_of_a_million_rows_is_refused_before_decoding() -> None:
    row = shipped_measurements()[list(REQUIRED)].iloc[0]
    big = pd.DataFrame({k: np.repeat(np.array([v]), 1_000_000) for k, v in row.items()})
    content = _parquet(big, compression="zstd")
    assert len(content) < 200_000
    t = time.perf_counter()
    with pytest.raises(UserError, match=r"big\.parquet: 1,000,000 rows is above the upload limit"):
        parse_measurement_upload(content, "big.parquet", 5 * 2**20)
    assert time.perf_counter() - t < 2.0


def test_a_parquet_whose_strings_decode_to_gigabytes_is_refused() -> None:
    meas = shipped_measurements()
    cols = list(REQUIRED)
    bomb = pd.concat([meas[cols].iloc[:1]] * 5000, ignore_index=True).assign(source="x" * 100_000)
    content = _parquet(bomb, compression="zstd", use_dictionary=True)
    assert len(content) < 2**20
    with pytest.raises(UserError, match="decodes to more than"):
        parse_measurement_upload(content, "bomb.parquet", 2**20)


def test_a_csv_with_too_many_rows_is_refused_and_a_good_one_accepted() -> None:
    import models

    meas = shipped_measurements()
    csv = (Path(models.__file__).parent / "data" / "measurements.csv").read_bytes()
    rows, summary = parse_measurement_upload(csv, "m.csv", 2**20)
    assert len(rows) == len(meas) and "240" in summary
    with pytest.raises(UserError, match=r"m\.csv: 240 rows is above the upload limit of 100 rows"):
        parse_measurement_upload(csv, "m.csv", 2**20, max_rows=100)


# ---- the validation worker


def _workers() -> list[Any]:
    return [p for p in multiprocessing.active_children() if "Process" in type(p).__name__]


def test_validations_queue_and_the_worker_ends_on_close() -> None:
    meas = shipped_measurements()
    q = ValidationQueue(max_queued=1)
    try:
        assert q.summary(meas).status == "running"
        assert q.summary(meas.iloc[:200]).status == "running"  # waits in the pool's queue
        assert q.summary(meas.iloc[:100]).status == "queued"  # beyond the queue: not submitted
        assert len(_workers()) == 1
    finally:
        t = time.perf_counter()
        q.close()
    assert time.perf_counter() - t < 10 and _workers() == []
    assert q.summary(meas).status.startswith("failed: the explorer is stopping")


def test_a_validation_runs_to_done_and_is_cached() -> None:
    meas = shipped_measurements()
    small = meas[meas["source"] == meas["source"].iloc[0]].head(12)
    q = ValidationQueue()
    try:
        deadline = time.monotonic() + 300
        while (v := q.summary(small)).status in ("running", "queued") and time.monotonic() < deadline:
            time.sleep(0.5)
        assert v.status == "done", v.status
        assert v.summary is not None and "analytic" in v.summary.columns
        assert q.summary(small) is v
    finally:
        q.close()


def test_recommend_for_uses_the_given_regression_or_says_why_not(with_default: Path) -> None:
    r: Results = load_results(with_default)
    rec = recommend_for(r, None, None, Constraints(1e-3), regression=None)
    assert rec.profile == "epyc-zen3-2s"
    from app.regression_source import RegressionSource

    rec = recommend_for(r, None, None, Constraints(1e-3), regression=RegressionSource(note="off: a test"))
    assert "off: a test" in json.dumps(rec.__dict__, default=str)


_SERVER = """
import multiprocessing, sys, time
from app.explorer import create_app, stopping_cleanly
from app.evidence import shipped_measurements
app = create_app(sys.argv[1], sweeps_dir=sys.argv[2], sweep_backend="serial", use_regression=False)
with stopping_cleanly(app):
    print(app.server.extensions["foliotune_state"].validation(shipped_measurements()).status, flush=True)
    time.sleep(1)
    print(*[p.pid for p in multiprocessing.active_children()], flush=True)
    time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGKILL"])
def test_no_validation_worker_outlives_the_server(with_default: Path, tmp_path: Path, sig: str) -> None:
    """SIGTERM: the server stops its worker and exits 143; SIGKILL: the worker sees its server gone."""
    import os
    import signal
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(with_default), str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "running"
        workers = [int(p) for p in proc.stdout.readline().split()]
        assert len(workers) == 1 and _alive(workers[0])
        proc.send_signal(getattr(signal, sig))
        code = proc.wait(timeout=30)
        assert code == (143 if sig == "SIGTERM" else -9)
        deadline = time.monotonic() + 15  # the worker may still be starting (importing)
        while _alive(workers[0]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(workers[0]), f"validation worker {workers[0]} outlived the server"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sessions_are_bounded_and_expire_when_idle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import app.explorer as explorer

    state = explorer.ExplorerState(folders=[tmp_path], sweeps_dir=tmp_path)
    first = state.session("a")
    first.summary = "uploaded"
    assert state.session("a") is first
    for i in range(explorer.MAX_SESSIONS):
        state.session(f"other-{i}")
    assert state.session("a") is not first  # the least recently seen was dropped
    monkeypatch.setattr(explorer, "SESSION_IDLE_S", 0.2)
    kept = state.session("b")
    time.sleep(0.3)
    state.session("c")
    assert state.session("b") is not kept  # idle too long: dropped with its upload and regression
    assert not list(tmp_path.glob(".sessions*"))  # nothing written per session
