"""A sweep point too large for the Monte Carlo model is infeasible for that model only (issue 13.2).

Before, a point with ``n_folios`` near 2^31 (inside the documented range) made the Monte Carlo
kernel ask for tens of GB of scratch and the whole chunk died of ``MemoryError``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sweep.runner import run_sweep
from sweep.spec import spec_from_toml
from sweep.storage import sweep_status

SPEC = """
[sweep]
seed = 3
models = ["analytic", "montecarlo"]
replicas = 4
[fixed]
profile = "epyc-zen3-2s"
folio_kb = 4
[axes]
n_folios = [512, 2000000000]
batch_limit_pages = [1, 512]
"""


def test_points_too_large_for_the_monte_carlo_keep_their_analytic_result(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    run_sweep(spec_from_toml(SPEC), out, progress=False, backend="serial")
    df = pd.read_parquet(out).sort_values(["point", "model"]).reset_index(drop=True)
    big = df["n_folios"] == 2_000_000_000
    mc = df["model"] == "montecarlo"

    # the huge points: Monte Carlo refused with a reason saying what fits, analytic computed
    assert df.loc[big & mc, "infeasible"].str.contains("Monte Carlo scratch").all()
    assert df.loc[big & mc, "infeasible"].str.contains("12,201,611 folios").all()
    assert df.loc[big & mc, "time_s"].isna().all()
    assert (df.loc[big & ~mc, "infeasible"] == "").all()
    analytic_big = df.loc[big & ~mc, "pages_per_s"].to_numpy()
    assert np.isfinite(analytic_big).all() and (analytic_big > 0).all()

    # the small points run in both models, unaffected by their large neighbours in the chunk
    assert (df.loc[~big, "infeasible"] == "").all()
    assert np.isfinite(df.loc[~big, "time_s"]).all()

    status = sweep_status(out)
    assert status["complete"]
