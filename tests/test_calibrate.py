"""Calibration recovers known parameters, respects its bounds and writes a loadable profile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.calibrate import CalibrationError, calibrate_profile, uncertain_fields, write_calibrated
from models.evaluate import evaluate
from models.params import PARAMETERS
from models.profiles import get_profile, load_profile_file, profile_table_with

BASE = "epyc-zen3-2s"


def _synthetic(truth: dict[str, float], sigma: float = 0.0) -> pd.DataFrame:
    """Measurements made by the analytic model on a profile whose ``truth`` fields differ (SI)."""
    table = profile_table_with({BASE: get_profile(BASE).with_values(BASE, truth, "test truth")})
    rows = []
    for fkb in (4, 16, 64, 256, 1024, 2048):
        for eng, th in (("cpu", 1), ("mt-cpu", 2), ("mt-cpu", 8), ("dma", 1), ("dma", 4)):
            for n in (1, 64, 4096):
                rows.append(
                    {
                        "profile": BASE,
                        "folio_kb": fkb,
                        "n_folios": n,
                        "copy_engine": eng,
                        "copy_threads": th,
                    }
                )
    pts = pd.DataFrame(rows)
    pts["metric"] = "bytes_per_s"
    full = evaluate(pts.drop(columns="metric"), "analytic", table=table)
    value = full["bytes_per_s"].to_numpy()
    t = full[list(PARAMETERS)].copy()
    t["metric"] = "bytes_per_s"
    t["value"] = value * np.exp(np.random.default_rng(0).normal(0, sigma, len(t)))
    t["source"] = np.where(np.arange(len(t)) % 2 == 0, "even", "odd")
    t["variant"] = ""
    t["predicted"] = True
    return t[[*PARAMETERS, "metric", "value", "source", "variant", "predicted"]]


def test_recovers_known_parameters() -> None:
    base = get_profile(BASE)
    truth = {
        "cpu_copy_gbps": base.values["cpu_copy_gbps"] * 0.6,
        "dma_channel_gbps": base.values["dma_channel_gbps"] * 1.8,
    }
    data = _synthetic(truth)
    cal = calibrate_profile(data, BASE, fields=list(truth), name="calib-test")
    for f, v in truth.items():
        assert cal.after[f] == pytest.approx(v, rel=0.02), f
    assert cal.mape("after") < 0.01 < cal.mape("before")
    assert list(cal.per_source["source"]) == ["even", "odd"]
    assert (cal.per_source["mape_after"] < cal.per_source["mape_before"]).all()
    assert cal.profile.name == "calib-test" and "calibrated" in cal.profile.sources["cpu_copy_gbps"]
    assert cal.profile.sources["cores"] == base.sources["cores"]


def test_bounds_hold_when_the_truth_is_outside(tmp_path: Path) -> None:
    base = get_profile(BASE)
    data = _synthetic({"cpu_copy_gbps": base.values["cpu_copy_gbps"] * 0.2})
    cal = calibrate_profile(data, BASE, fields=["cpu_copy_gbps"], span=2.0, name="calib-bounded")
    assert cal.after["cpu_copy_gbps"] == pytest.approx(base.values["cpu_copy_gbps"] / 2.0, rel=1e-3)
    path = write_calibrated(cal, tmp_path)
    loaded = load_profile_file(path)
    assert loaded.name == "calib-bounded"
    assert loaded.values["cpu_copy_gbps"] == pytest.approx(cal.after["cpu_copy_gbps"], rel=1e-9)
    assert "foliotune calibrate" in loaded.provenance and "rms log error" in loaded.provenance
    assert loaded.values["cores"] == base.values["cores"]


def test_default_fields_are_the_uncertain_ones() -> None:
    fields = uncertain_fields(get_profile(BASE))
    assert "cpu_copy_gbps" in fields and "ipi_send_base_us" in fields
    assert not {"cores", "sockets", "local_page_flush_ns", "dsa_channel_gbps", "default_n_folios"} & set(
        fields
    )


def test_refusals() -> None:
    data = _synthetic({})
    with pytest.raises(CalibrationError, match="unknown profile"):
        calibrate_profile(data, "no-such-profile")
    with pytest.raises(CalibrationError, match="no measurements"):
        calibrate_profile(data, "grace-2s")
    with pytest.raises(CalibrationError, match="cannot be calibrated"):
        calibrate_profile(data, BASE, fields=["cores"])
    with pytest.raises(CalibrationError, match="is 0"):
        calibrate_profile(data, BASE, fields=["cpu_copy_fixed_ns"])
