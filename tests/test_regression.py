"""Regression: honest cross-validation, calibrated intervals, safe persistence, fast prediction."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from models.errors import UserError
from models.measurements import load_measurements
from models.params import PARAMETERS
from models.regression import (
    ESTIMATOR_FILE,
    MANIFEST_FILE,
    MigrationRegressor,
    ModelDirError,
    amd_tables_mask,
    analytic_prior,
    config_groups,
    cross_validate,
    cv_scores,
    load_model,
    predict_regression,
    save_model,
    seal_manifest,
    training_table,
)


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    data, _ = load_measurements()
    return training_table(data)


def _synthetic(n_sources: int = 4, sigma: float = 0.1, seed: int = 1) -> pd.DataFrame:
    """Throughputs = analytic × a smooth distortion × lognormal noise: a known truth to check against."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_sources):
        for fkb in (4, 16, 64, 256, 1024, 2048):
            for eng, threads in (("cpu", 1), ("mt-cpu", 2), ("mt-cpu", 4), ("mt-cpu", 8), ("dma", 4)):
                rows.append(
                    {
                        "profile": "epyc-zen3-2s",
                        "folio_kb": fkb,
                        "n_folios": (1 << 20) // fkb,
                        "batch_limit_pages": 512,
                        "copy_engine": eng,
                        "copy_threads": threads,
                        "metric": "bytes_per_s",
                        "source": f"s{s}",
                        "variant": "",
                        "date": f"202{s}-01",
                    }
                )
    t = pd.DataFrame(rows)
    full, prior = analytic_prior(t, t["metric"].to_numpy())
    for c in PARAMETERS:
        t[c] = full[c].to_numpy()
    t["analytic_prior"] = prior
    distortion = 0.6 + 0.1 * np.log2(t["folio_kb"].to_numpy()) / 11
    t["value"] = prior * distortion * np.exp(rng.normal(0, sigma, len(t)))
    return t


def test_estimator_conventions(table: pd.DataFrame) -> None:
    est = MigrationRegressor(n_estimators=50)
    assert not hasattr(est, "estimator_")
    with pytest.raises(Exception, match="not fitted"):
        est.predict(table.head(3))
    assert est.fit(table, table["value"]) is est
    assert {"estimator_", "q_log_", "metrics_", "active_features_"} <= set(vars(est))
    twin = clone(est)
    assert twin.get_params() == est.get_params() and not hasattr(twin, "estimator_")
    assert twin.set_params(prior="feature").prior == "feature"
    # In-sample it fits the measurements far better than the uncalibrated analytic prior.
    ape = np.abs(est.predict(table) - table["value"]) / table["value"]
    prior_ape = np.abs(table["analytic_prior"] - table["value"]) / table["value"]
    assert ape.mean() < 0.5 * prior_ape.mean()


def test_kfold_never_splits_a_configuration(table: pd.DataFrame) -> None:
    # The same configuration measured by two sources (v4 and v5 tables) must land in one fold.
    groups = config_groups(table)
    assert len(np.unique(groups)) < len(table)
    oof = cross_validate(table, scheme="kfold", n_splits=5, n_estimators=60)
    folds = pd.DataFrame({"g": groups, "fold": oof["fold"]})
    assert (folds.groupby("g")["fold"].nunique() == 1).all()
    assert (oof["fold"] >= 0).all() and oof["fold"].nunique() == 5


def test_leave_one_source_out_holds_each_source_out(table: pd.DataFrame) -> None:
    oof = cross_validate(table, scheme="source", n_estimators=60)
    done = oof[oof["fold"] >= 0]
    assert (done.groupby("source")["fold"].nunique() == 1).all()
    assert (done.groupby("fold")["source"].nunique() == 1).all()
    assert done["source"].nunique() >= 3


def test_intervals_cover_about_90_percent_of_held_out_points() -> None:
    t = _synthetic()
    oof = cross_validate(t, scheme="kfold", n_splits=5, n_estimators=100)
    s = cv_scores(oof)
    assert s["n"] == len(t)
    assert 0.82 <= s["coverage"] <= 0.97, s
    # Out-of-sample error is close to the noise (lognormal sigma 0.1 -> MAPE ~ 0.08), not to zero.
    assert 0.04 < s["mape"] < 0.2, s


def test_issue_bars_on_the_shipped_amd_tables(table: pd.DataFrame) -> None:
    oof = cross_validate(table, scheme="kfold", n_splits=5)
    amd = cv_scores(oof, amd_tables_mask(oof))
    everything = cv_scores(oof)
    assert amd["n"] >= 120
    assert amd["mape"] <= 0.15, amd
    assert 0.85 <= everything["coverage"] <= 0.95, everything


def test_save_load_round_trip_and_refusals(tmp_path: Path, table: pd.DataFrame) -> None:
    model = MigrationRegressor(n_estimators=40).fit(table, table["value"])
    d = save_model(model, tmp_path / "m", data_sha256="abc")
    again, manifest = load_model(d)
    assert manifest["data_sha256"] == "abc"
    np.testing.assert_allclose(again.predict(table), model.predict(table))
    _p, lo, hi = again.predict_interval(table)
    assert (lo < hi).all()

    # tampered estimator file
    est = d / ESTIMATOR_FILE
    good = est.read_bytes()
    est.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(ModelDirError, match="SHA-256 does not match"):
        load_model(d)
    est.write_bytes(good)

    # another version
    mpath = d / MANIFEST_FILE
    man = json.loads(mpath.read_text())
    man["versions"]["scikit-learn"] = "0.0.1"
    mpath.write_text(json.dumps(man))
    with pytest.raises(ModelDirError, match="another version"):
        load_model(d)
    man["versions"] = json.loads(json.dumps(manifest["versions"]))
    man["format_version"] = 99
    mpath.write_text(json.dumps(man))
    with pytest.raises(ModelDirError, match="another version"):
        load_model(d)

    with pytest.raises(ModelDirError, match="not a foliotune model folder"):
        load_model(tmp_path)


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda m: m["learned"]["q_log"].update(bytes_per_s=5.0), id="quantile"),
        pytest.param(
            lambda m: m["learned"]["vintage"].update({k: 1990.0 for k in m["learned"]["vintage"]}),
            id="vintage",
        ),
        pytest.param(lambda m: m["params"].update(prior="none"), id="prior"),
        pytest.param(lambda m: m["learned"].update(metrics=["bytes_per_s"]), id="metrics"),
    ],
)
def test_an_edited_model_json_is_refused(tmp_path: Path, table: pd.DataFrame, edit: Any) -> None:
    model = MigrationRegressor(n_estimators=20).fit(table, table["value"])
    d = save_model(model, tmp_path / "m")
    mpath = d / MANIFEST_FILE
    man = json.loads(mpath.read_text())
    edit(man)
    mpath.write_text(json.dumps(man, indent=2))
    with pytest.raises(ModelDirError, match=r"model\.json: changed since it was written"):
        load_model(d)


def test_a_file_outside_model_json_is_refused(tmp_path: Path, table: pd.DataFrame) -> None:
    model = MigrationRegressor(n_estimators=20).fit(table, table["value"])
    d = save_model(model, tmp_path / "m")
    load_model(d)
    (d / "notes.txt").write_text("hello")
    with pytest.raises(ModelDirError, match=r"notes\.txt: not part of this model folder"):
        load_model(d)
    with pytest.raises(ModelDirError, match=r"notes\.txt: not part of a model folder"):
        save_model(model, d)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_saving_into_a_read_only_folder_is_one_line_and_leaves_nothing(
    tmp_path: Path, table: pd.DataFrame
) -> None:
    model = MigrationRegressor(n_estimators=20).fit(table, table["value"])
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    try:
        with pytest.raises(UserError, match=r"ro/estimator\.skops: cannot write \(Permission denied\)"):
            save_model(model, d)
        assert list(d.iterdir()) == []
    finally:
        d.chmod(0o755)


def test_fit_out_onto_a_full_disk_is_one_line_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    """A file-size limit makes every write of the estimator fail, as a full disk does."""
    import resource
    import signal
    import subprocess
    import sys

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))

    out = tmp_path / "m"
    env = {
        **os.environ,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
    }
    r = subprocess.run(
        [sys.executable, "-m", "app.cli", "fit", "--out", str(out)],
        preexec_fn=limit,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert r.returncode == 2, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("foliotune: error")]
    assert errors == [
        f"foliotune: error: {out}/estimator.skops: cannot write (file too large for this file system or process limit)"
    ]
    assert "Traceback" not in r.stderr
    assert not out.exists() or list(out.iterdir()) == []


class Gadget:
    """A type no model file should contain."""

    def __init__(self) -> None:
        self.x = 1


def test_types_outside_the_allow_list_are_never_loaded(tmp_path: Path, table: pd.DataFrame) -> None:
    import hashlib

    import skops.io as sio

    model = MigrationRegressor(n_estimators=20).fit(table, table["value"])
    d = save_model(model, tmp_path / "m")
    est = d / ESTIMATOR_FILE
    sio.dump({"payload": Gadget()}, est)  # consistent hashes: the attacker rewrote model.json too
    man = json.loads((d / MANIFEST_FILE).read_text())
    man["files"][ESTIMATOR_FILE] = hashlib.sha256(est.read_bytes()).hexdigest()
    (d / MANIFEST_FILE).write_text(json.dumps(seal_manifest(man)))
    with pytest.raises(ModelDirError, match="allow-list"):
        load_model(d)


def test_predict_regression_fits_the_shipped_model_once_and_adds_intervals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FOLIOTUNE_CACHE", str(tmp_path / "cache"))
    pts = pd.DataFrame(
        {
            "profile": ["epyc-zen3-2s"] * 3,
            "folio_kb": [4, 64, 2048],
            "copy_engine": ["cpu", "mt-cpu", "dma"],
            "copy_threads": [1, 4, 8],
        }
    )
    out = predict_regression(pts)
    cached = list((tmp_path / "cache").glob("regression-v*/*"))
    assert sorted(p.name for p in cached) == sorted([ESTIMATOR_FILE, MANIFEST_FILE])
    written = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in cached}
    for m in ("bytes_per_s", "pages_per_s", "time_s"):
        assert (out[f"{m}_lo"] <= out[m]).all() and (out[m] <= out[f"{m}_hi"]).all()
    assert (out["bytes_per_s"] > 1e8).all() and list(out["folio_kb"]) == [4, 64, 2048]
    again = predict_regression(pts)  # from the cache this time: a refit would rewrite both files
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in cached} == written
    pd.testing.assert_frame_equal(again, out, check_exact=True)
    # a damaged cache is refitted, not an error
    (cached[0].parent / MANIFEST_FILE).write_text("{}")
    third = predict_regression(pts)
    # both files written anew (not their inode numbers: a file system may give the freed ones again)
    assert json.loads((cached[0].parent / MANIFEST_FILE).read_text()) != {}
    assert (cached[0].parent / ESTIMATOR_FILE).stat().st_mtime_ns != written[ESTIMATOR_FILE][1]
    pd.testing.assert_frame_equal(third, out, check_exact=True)
