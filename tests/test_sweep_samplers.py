"""Index-based points (grid, Sobol, LHS) and the chunk evaluator against models.evaluate()."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from models.evaluate import evaluate
from models.params import OUTPUTS, PARAMETERS
from sweep.chunks import chunk_points_frame, compute_chunk, evaluate_points
from sweep.samplers import axis_columns
from sweep.spec import spec_from_toml

SAMPLED = """
[sweep]
seed = {seed}
models = ["analytic"]
sampler = "{sampler}"
n = 1000
[fixed]
profile = "epyc-zen3-2s"
copy_engine = "mt-cpu"
[axes]
n_folios = {{ start = 16, stop = 65536, log = true }}
busy_prob = {{ start = 0.0, stop = 0.3 }}
folio_kb = {{ log2_start = 2, log2_stop = 9 }}
copy_threads = [1, 2, 4, 8]
"""


@pytest.mark.parametrize("sampler", ["sobol", "lhs"])
def test_sampled_points_depend_only_on_index_and_seed(sampler: str) -> None:
    spec = spec_from_toml(SAMPLED.format(seed=3, sampler=sampler))
    whole = axis_columns(spec, 0, spec.n_points)
    cuts = [0, 1, 77, 500, 501, 1000]
    for name, values in whole.items():
        parts = np.concatenate([axis_columns(spec, a, b)[name] for a, b in zip(cuts, cuts[1:], strict=False)])
        assert np.array_equal(parts, values), name
    assert whole["n_folios"].min() >= 16 and whole["n_folios"].max() <= 65536
    assert whole["n_folios"].dtype == np.int64
    assert ((whole["busy_prob"] >= 0) & (whole["busy_prob"] <= 0.3)).all()
    assert set(whole["folio_kb"].tolist()) <= {4, 8, 16, 32, 64, 128, 256, 512}
    assert set(whole["copy_threads"].tolist()) == {1, 2, 4, 8}
    other = axis_columns(spec_from_toml(SAMPLED.format(seed=4, sampler=sampler)), 0, 1000)
    assert not np.array_equal(other["busy_prob"], whole["busy_prob"])


def test_lhs_is_stratified() -> None:
    spec = spec_from_toml(SAMPLED.format(seed=1, sampler="lhs"))
    u = axis_columns(spec, 0, spec.n_points)["busy_prob"] / 0.3
    strata = np.floor(u * spec.n_points).astype(int)
    assert sorted(strata.tolist()) == list(range(spec.n_points))


def test_chunk_evaluator_matches_evaluate_and_is_chunk_invariant() -> None:
    spec = spec_from_toml(SAMPLED.format(seed=5, sampler="sobol"))
    table, infeasible = evaluate_points(spec, 0, spec.n_points)
    df = table.to_pandas()
    assert list(df.columns[: 2 + len(PARAMETERS) + len(OUTPUTS)]) == ["point", "model", *PARAMETERS, *OUTPUTS]
    ref = evaluate(chunk_points_frame(spec, 0, spec.n_points), "analytic", seed=spec.seed, on_invalid="mark")
    for col in OUTPUTS:
        np.testing.assert_array_equal(df[col].to_numpy(), ref[col].to_numpy(dtype=np.float64), err_msg=col)
    assert (df["infeasible"] != "").sum() == infeasible == (ref["infeasible"] != "").sum()
    # Same rows, bit for bit, whatever the chunking.
    pieces = [evaluate_points(spec, a, b)[0].to_pandas() for a, b in ((0, 333), (333, 334), (334, 1000))]
    pd.testing.assert_frame_equal(pd.concat(pieces, ignore_index=True), df, check_exact=True)


def test_compute_chunk_encodes_parquet_with_identity(tmp_path) -> None:
    spec = spec_from_toml(SAMPLED.format(seed=5, sampler="sobol"))
    res = compute_chunk(spec, spec.hash, 2, 300)
    assert (res.start, res.stop, res.rows) == (600, 900, 300)
    path = tmp_path / "c.parquet"
    path.write_bytes(res.data.tobytes())
    t = pq.read_table(path)
    assert t.num_rows == 300 and t.column("point").to_pylist() == list(range(600, 900))
    from sweep.chunks import read_chunk_meta

    meta = read_chunk_meta(path)
    assert meta is not None and meta["chunk"] == 2 and meta["spec_hash"] == spec.hash
    path.write_bytes(res.data.tobytes()[: res.data.nbytes // 2])  # half-written
    assert read_chunk_meta(path) is None
