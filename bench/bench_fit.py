"""Benchmark and accuracy figures of the measured-results pipeline (issue 4 bars).

    .venv/bin/python bench/bench_fit.py            # everything (about 2-3 minutes)
    .venv/bin/python bench/bench_fit.py --quick    # skip the prior comparison

Prints a Markdown report (copied into bench/RESULTS-fit.md) and writes bench/fit-results.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.calibrate import cross_validate_calibration  # noqa: E402
from models.measurements import load_measurements  # noqa: E402
from models.regression import (  # noqa: E402
    amd_tables_mask,
    cross_validate,
    cv_scores,
    predict_regression,
    training_table,
)


def _points(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    eng = rng.choice(["cpu", "mt-cpu", "dma"], n)
    return pd.DataFrame(
        {
            "profile": "epyc-zen3-2s",
            "folio_kb": 2 ** rng.integers(2, 12, n),
            "n_folios": 2 ** rng.integers(0, 14, n),
            "batch_limit_pages": 2 ** rng.integers(0, 13, n),
            "copy_engine": eng,
            "copy_threads": np.where(eng == "cpu", 1, 2 ** rng.integers(0, 5, n)),
            "busy_prob": rng.uniform(0, 0.1, n),
        }
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    res: dict[str, object] = {
        "machine": f"{platform.processor() or platform.machine()}, {platform.python_version()}"
    }
    data, _ = load_measurements()
    table = training_table(data)
    amd = amd_tables_mask(table)

    with tempfile.TemporaryDirectory() as tmp:
        # `foliotune fit` end to end (fresh process: imports, fit, 5-fold + LOSO CV, save)
        t = time.perf_counter()
        subprocess.run(
            [str(ROOT / ".venv/bin/foliotune"), "fit", "--out", f"{tmp}/m"], check=True, capture_output=True
        )
        res["fit_cli_s"] = time.perf_counter() - t
        t = time.perf_counter()
        subprocess.run(
            [str(ROOT / ".venv/bin/foliotune"), "fit", "--no-cv", "--out", f"{tmp}/m2"],
            check=True,
            capture_output=True,
        )
        res["fit_cli_no_cv_s"] = time.perf_counter() - t
        # predicting 1e6 points from a saved model folder (load + analytic prior + trees)
        pts = _points(1_000_000)
        predict_regression(pts.head(100), f"{tmp}/m")  # warm the analytic kernel (numba cache)
        times = []
        for _ in range(3):
            t = time.perf_counter()
            out = predict_regression(pts, f"{tmp}/m")
            times.append(time.perf_counter() - t)
        res["predict_1e6_s"] = {"min": min(times), "median": float(np.median(times)), "max": max(times)}
        res["predict_1e6_rows"] = len(out)

    scores: dict[str, object] = {}
    priors = ("residual",) if args.quick else ("residual", "feature", "none")
    for prior in priors:
        for scheme in ("kfold", "source"):
            t = time.perf_counter()
            oof = cross_validate(table, scheme=scheme, prior=prior)
            scores[f"regression_{prior}_{scheme}"] = {
                "all": cv_scores(oof),
                "amd_tables": cv_scores(oof, amd),
                "seconds": time.perf_counter() - t,
            }
    for scheme in ("kfold", "source"):
        oof = cross_validate_calibration(data, "epyc-zen3-2s", scheme=scheme)
        m = amd_tables_mask(oof)
        ape = np.abs(oof["pred"] - oof["value"]) / oof["value"]
        scores[f"calibrated_{scheme}"] = {
            "amd_tables_mape": float(ape[m].mean()),
            "all_epyc_mape": float(ape.mean()),
        }
    res["scores"] = scores
    (ROOT / "bench" / "fit-results.json").write_text(json.dumps(res, indent=2) + "\n")

    print(f"machine: {res['machine']}")
    print(
        f"foliotune fit (with 5-fold + LOSO CV): {res['fit_cli_s']:.1f} s; --no-cv: {res['fit_cli_no_cv_s']:.1f} s"
    )
    p = res["predict_1e6_s"]
    assert isinstance(p, dict)
    print(
        f"predict_regression 1e6 points: min {p['min']:.2f} s, median {p['median']:.2f} s, max {p['max']:.2f} s"
    )
    print()
    print("| model | CV | MAPE AMD tables | PI90 coverage AMD | MAPE all | PI90 coverage all | n all |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for k, s in scores.items():
        if k.startswith("regression"):
            assert isinstance(s, dict)
            a, b = s["amd_tables"], s["all"]
            print(
                f"| {k.rsplit('_', 1)[0]} | {k.rsplit('_', 1)[1]} | {100 * a['mape']:.1f} % | "
                f"{100 * a['coverage']:.1f} % | {100 * b['mape']:.1f} % | {100 * b['coverage']:.1f} % | {b['n']} |"
            )
        else:
            assert isinstance(s, dict)
            print(
                f"| {k.rsplit('_', 1)[0]} analytic | {k.rsplit('_', 1)[1]} | {100 * s['amd_tables_mape']:.1f} % | — | "
                f"{100 * s['all_epyc_mape']:.1f} % (EPYC rows) | — | — |"
            )


if __name__ == "__main__":
    main()
