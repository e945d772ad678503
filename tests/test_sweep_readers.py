"""A sweep folder is plain Parquet: pandas, pyarrow, Polars and DuckDB read the same table from it,
with the lock and manifest files beside the parts ignored (what `cluster/README.md` promises)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow.dataset as ds

from models.params import OUTPUTS, PARAMETERS
from sweep.runner import run_sweep

SPEC = """
[sweep]
seed = 5
models = ["analytic", "montecarlo"]
replicas = 4
[fixed]
n_folios = 64
[axes]
profile = ["epyc-zen3-2s", "kunpeng920-2s"]
batch_limit_pages = [1, 512]
copy_engine = ["cpu", "dsa"]
copy_threads = [1, 2]
"""


def test_pandas_pyarrow_polars_and_duckdb_read_the_same_table(tmp_path: Path) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    out = tmp_path / "out"
    summary = run_sweep(spec, out, chunk_points=3, progress=False, backend="serial")
    assert summary.n_points == 16 and summary.infeasible_points > 0  # no dsa engine on these profiles
    key = ["point", "model"]
    want = pd.read_parquet(out).sort_values(key, ignore_index=True)
    assert len(want) == 2 * summary.n_points
    assert {"point", "model", "infeasible", *PARAMETERS, *OUTPUTS} <= set(want.columns)

    readers = {
        "pyarrow": ds.dataset(out, format="parquet").to_table().to_pandas(),
        "polars": pl.read_parquet(str(out / "*.parquet")).to_pandas(),
        "duckdb": duckdb.sql(f"select * from read_parquet('{out}/*.parquet')").df(),
    }
    for name, got in readers.items():
        got = got.sort_values(key, ignore_index=True)
        assert list(got.columns) == list(want.columns), name
        for col in want.columns:
            a, b = want[col].to_numpy(), got[col].to_numpy()
            if want[col].dtype.kind == "f":
                np.testing.assert_array_equal(a, b, err_msg=f"{name}: {col}")  # NaN == NaN here
            else:
                assert [str(x) for x in a] == [str(x) for x in b], (name, col)
