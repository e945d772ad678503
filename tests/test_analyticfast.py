"""The analytic model's fast path (``models.analyticfast``) gives the bits of the scalar path.

The fast path takes one-size points without allocation failure in runs of one profile; points of
interleaved profiles (runs shorter than ``MIN_RUN``) take the scalar path of
``models.analytic.point_outputs``. The same points evaluated in both orders must give identical
outputs (``check_exact``), over every branch the fast path replaces with a selection.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from models.analytic import N_OUT, analytic_outputs, emax_table
from models.analyticfast import MIN_RUN, N_RESULT, N_SCRATCH, ROW, fast_points
from models.params import OUTPUTS, PointArrays, check_points, complete_points
from models.passmoments import N_CACHE, N_MOM
from models.phases import ENGINE_MT, K_BATCHED, K_SKIP_INACCESSIBLE, defers_flush, pmd_mapped, uses_broadcast
from models.profiles import get_profile, profile_names, profile_table
from tests.test_kernel_equivalence import random_points


def _points(n: int, seed: int) -> pd.DataFrame:
    """Random valid points over every profile and mechanism parameter, with remainder batches,
    batches of one folio, busy and writeback probabilities up to 1, and some allocation failures
    and mixes (which the fast path leaves to the scalar path)."""
    df = random_points(n, seed=seed, n_folios=(1, 2, 3, 7, 64, 333, 512, 4096, 65536))
    rng = np.random.default_rng(seed)
    df["alloc_fail_prob"] = np.where(rng.random(n) < 0.1, 0.01, 0.0)
    # Writeback probabilities and waits that round differently when reassociated.
    df["writeback_prob"] = np.where(rng.random(n) < 0.4, rng.random(n), df["writeback_prob"])
    df["writeback_wait_s"] = np.where(rng.random(n) < 0.5, rng.uniform(1e-5, 1e-2, n), df["writeback_wait_s"])
    return df


def _arrays(points: pd.DataFrame) -> PointArrays:
    arrays, reasons = check_points(complete_points(points))
    assert not (reasons != "").any()
    return arrays


def _frame(out: dict[str, np.ndarray]) -> pd.DataFrame:
    return pd.DataFrame({k: np.asarray(v) for k, v in out.items()})


def _done(arrays: PointArrays, table: np.ndarray) -> np.ndarray:
    """Which points the fast path evaluates."""
    n = len(arrays)
    mkey = np.zeros((N_CACHE, 5), dtype=np.int64)
    mkey[:, 0] = -1
    done = np.empty(n, dtype=np.int8)
    fast_points(
        arrays.profile_index, arrays.kernel_code, arrays.mix_len, arrays.mix_kb, arrays.mix_folios,
        arrays.n_folios, arrays.batch_limit_pages, arrays.engine_code.astype(np.float64), arrays.copy_threads,
        arrays.target_cpus, arrays.mapcount, arrays.busy_prob, arrays.access_rate_hz, arrays.sync_mode,
        arrays.numa_hinting, arrays.writeback_prob, arrays.writeback_wait_s, arrays.alloc_fail_prob, table,
        emax_table(table), np.empty((N_OUT, n)), done, mkey, np.empty((N_CACHE, N_MOM)),
        np.empty(N_SCRATCH * ROW), np.empty(N_RESULT * ROW), np.empty(2 * ROW, dtype=np.int64),
    )  # fmt: skip
    return done.astype(bool)


@pytest.fixture(scope="module")
def table() -> np.ndarray:
    return profile_table(profile_names())


@pytest.fixture(scope="module")
def points() -> pd.DataFrame:
    return _points(6_000, seed=21)


def test_fast_path_equals_scalar_path_exactly(table: np.ndarray, points: pd.DataFrame) -> None:
    # Interleaved profiles (random_points cycles through them): every point takes the scalar path.
    interleaved = _arrays(points)
    assert not _done(interleaved, table).any()
    scalar = _frame(analytic_outputs(interleaved, table))
    # Sorted by profile: long runs, so the eligible points take the fast path.
    order = np.argsort(points["profile"].to_numpy(), kind="stable")
    runs = points.iloc[order].reset_index(drop=True)
    sorted_arrays = _arrays(runs)
    done = _done(sorted_arrays, table)
    assert 0.3 < done.mean() < 1.0  # mixes, allocation failures and releases before 6.3 stay scalar
    fast = _frame(analytic_outputs(sorted_arrays, table))
    pd.testing.assert_frame_equal(fast, scalar.iloc[order].reset_index(drop=True), check_exact=True)
    assert list(fast.columns) == list(OUTPUTS)


def test_fast_points_cover_every_branch_of_the_fast_path(table: np.ndarray, points: pd.DataFrame) -> None:
    order = np.argsort(points["profile"].to_numpy(), kind="stable")
    arrays = _arrays(points.iloc[order].reset_index(drop=True))
    done = _done(arrays, table)
    names = profile_names()
    n = len(arrays)
    # The selections of the fast path, as the scalar path branches on them.
    flags: dict[str, list[bool]] = {k: [] for k in (
        "sync", "full", "remainder", "bcast", "defer", "pmd", "numa_skip", "mt", "cand", "no_cand",
    )}  # fmt: skip
    for i in np.flatnonzero(done):
        prof = table[arrays.profile_index[i]]
        kc = arrays.kernel_code[i]
        tg = arrays.target_cpus[i]
        fp = arrays.mix_kb[i, 0] / get_profile(names[arrays.profile_index[i]]).page_kb
        b = max(1.0, math.ceil(arrays.batch_limit_pages[i] / fp))
        full = math.floor(arrays.mix_folios[i, 0] / b)
        p, w = arrays.busy_prob[i], arrays.writeback_prob[i]
        flags["sync"].append(arrays.sync_mode[i] != 0)
        flags["full"].append(full >= 1)
        flags["remainder"].append(arrays.mix_folios[i, 0] - full * b > 0 and full >= 1)
        flags["bcast"].append(bool(uses_broadcast(prof, kc, tg)))
        flags["defer"].append(bool(defers_flush(prof, kc, tg)))
        flags["pmd"].append(bool(pmd_mapped(prof, fp)))
        flags["numa_skip"].append(arrays.numa_hinting[i] > 0.5 and kc >= K_SKIP_INACCESSIBLE)
        flags["mt"].append(arrays.engine_code[i] == ENGINE_MT)
        sync_cand = arrays.sync_mode[i] != 0 and (p > 0.0 or w > 0.0)
        flags["cand"].append(sync_cand)
        flags["no_cand"].append(arrays.sync_mode[i] != 0 and not sync_cand)
    for name, values in flags.items():
        share = np.mean(values)
        assert 0.02 < share < 0.98 or name in ("full",), (name, share)
    assert np.mean(flags["full"]) < 0.98 and np.mean(flags["full"]) > 0.02
    # Only eligible points: one size, a batched release, no allocation failure.
    eligible = (arrays.mix_len == 1) & (arrays.kernel_code >= K_BATCHED) & ~(arrays.alloc_fail_prob > 0.0)
    assert not (done & ~eligible).any()
    assert done[eligible].mean() > 0.99 and n > 4 * MIN_RUN


def test_fast_path_does_not_depend_on_the_block(table: np.ndarray, points: pd.DataFrame) -> None:
    order = np.argsort(points["profile"].to_numpy(), kind="stable")
    runs = points.iloc[order].reset_index(drop=True)
    whole = _frame(analytic_outputs(_arrays(runs), table))
    parts = []
    for s, e in ((0, 9), (9, 700), (700, 1_313), (1_313, len(runs))):
        parts.append(_frame(analytic_outputs(_arrays(runs.iloc[s:e].reset_index(drop=True)), table)))
    pd.testing.assert_frame_equal(pd.concat(parts, ignore_index=True), whole, check_exact=True)
