"""The optimized kernels against the reference kernels.

- analytic: the same outputs to 1e-9 relative (1e-12 absolute floor) as the per-folio reference of
  ``models/MECHANISM.md`` (``tests/reference_kernels.py``) on random valid points over every
  profile, release, engine, mode, busy and writeback probability (0 and 1 included), NUMA hinting,
  folio mixes and access rate (0 included);
- Monte Carlo: means within 4 standard errors of the analytic expectations, and results that
  depend only on the point and the seed (reordering and chunking change nothing).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.params import ENGINES, OUTPUTS, check_points, complete_points
from models.profiles import get_profile, profile_names, profile_table
from tests import reference_kernels as ref

KERNELS = ("5.15", "6.2", "6.3", "6.4", "6.5", "6.6", "6.14", "6.15")


def random_points(
    n: int,
    seed: int,
    n_folios: tuple[int, ...] = (1, 2, 3, 7, 64, 333, 512, 4096),
    busy: tuple[float, ...] = (0.0, 0.0, 1e-6, 0.01, 0.1, 0.5, 0.9, 1.0, -1.0),
    mechanism: bool = True,
) -> pd.DataFrame:
    """``n`` random valid points spread over every profile and the corners of every parameter.

    A negative entry of ``busy`` stands for a uniform random busy probability. ``mechanism``: also
    vary the parameters of models/MECHANISM.md (kernel, NUMA hinting, writeback, folio mixes).
    """
    rng = np.random.default_rng(seed)
    rows = []
    names = profile_names()
    for i in range(n):
        prof = get_profile(names[i % len(names)])
        engine = str(rng.choice([e for e in ENGINES if e in prof.copy_engines]))
        max_t = prof.max_threads(engine)
        threads = (
            1 if engine == "cpu" else int(rng.choice([t for t in (1, 2, 3, 4, 8, 16, 64) if t <= max_t]))
        )
        sizes = [kb for kb in (4, 8, 16, 64, 512, 2048) if prof.page_kb <= kb <= prof.max_folio_kb]
        row = {
            "profile": prof.name,
            "folio_kb": int(rng.choice(sizes)),
            "n_folios": int(rng.choice(n_folios)),
            "batch_limit_pages": int(rng.choice([1, 2, 5, 16, 64, 512, 4096, 1 << 20])),
            "copy_engine": engine,
            "copy_threads": threads,
            "target_cpus": int(rng.choice([t for t in (1, 2, 3, 4, 8, 32, 64, prof.cpus) if t <= prof.cpus])),
            "mapcount": int(rng.choice([1, 2, 5])),
            "busy_prob": float(rng.choice([b if b >= 0.0 else rng.random() for b in busy])),
            "access_rate_hz": float(rng.choice([0.0, 1.0, 100.0, 1e4, 1e6, 10 ** rng.uniform(0, 6)])),
            "mode": str(rng.choice(["sync", "async"])),
        }
        if mechanism:
            row["kernel"] = str(rng.choice(KERNELS))
            row["numa_hinting"] = int(rng.random() < 0.2)
            row["writeback_prob"] = float(rng.choice([0.0, 0.0, 0.1, 1.0]))
            row["writeback_wait_s"] = float(rng.choice([0.0, 1e-3]))
            if rng.random() < 0.3 and len(sizes) > 1:
                two = rng.choice(sizes, size=2, replace=False)
                share = float(rng.choice([0.25, 0.5, 0.9]))
                row["folio_mix"] = f"{two[0]}:{share},{two[1]}:{1 - share}"
                row["folio_kb"] = None
        rows.append(row)
    return pd.DataFrame(rows)


def arrays_of(points: pd.DataFrame):
    arrays, reasons = check_points(complete_points(points))
    assert not (reasons != "").any(), reasons[reasons != ""][:3]
    return arrays


@pytest.fixture(scope="module")
def table() -> np.ndarray:
    return profile_table(profile_names())


def test_analytic_matches_reference_to_1e9(table: np.ndarray) -> None:
    from models.analytic import analytic_outputs

    arrays = arrays_of(random_points(600, seed=1, n_folios=(1, 2, 3, 7, 20, 64)))
    got = analytic_outputs(arrays, table)
    want = ref.analytic_outputs(arrays, table)
    for name in OUTPUTS:
        g, w = got[name], want[name]
        assert np.all(np.isfinite(g)), name
        bad = np.abs(g - w) > 1e-9 * np.abs(w) + 1e-12
        assert not bad.any(), (name, np.flatnonzero(bad)[:5], g[bad][:5], w[bad][:5])


def test_analytic_reuses_an_output_buffer(table: np.ndarray) -> None:
    from models.analytic import N_OUT, analytic_outputs

    arrays = arrays_of(random_points(100, seed=2, n_folios=(1, 7, 40)))
    buf = np.full((N_OUT, len(arrays)), np.nan)
    got = analytic_outputs(arrays, table, out=buf)
    want = ref.analytic_outputs(arrays, table)
    for name in OUTPUTS:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-9, atol=1e-12)


MC_MEANS = ("time_s", "flush_rounds", "ipis", "cpu_time_s", "failed_folios", "passes", "window_mean_s")


def test_montecarlo_means_agree_with_analytic_within_4_se(table: np.ndarray) -> None:
    from models.montecarlo import montecarlo_outputs

    # Busy probabilities whose rare events (a folio busy 10 times running, a batch done early) are
    # either seen often in 256 replicas or contribute far less than one standard error.
    replicas = 256
    arrays = arrays_of(
        random_points(240, seed=3, n_folios=(1, 2, 7, 64, 300), busy=(0.0, 0.0, 0.3, 0.7, 1.0))
    )
    mc = montecarlo_outputs(arrays, table, seed=11, replicas=replicas)
    an = ref.analytic_outputs(arrays, table)
    outside = 0
    for name in MC_MEANS:
        m, a, se = mc[name], an[name], mc[f"{name}_se"]
        slack = 1e-7 * np.abs(a) + 1e-12  # rounding of sums over many folios
        # Folios failing every attempt (expected count an["failed_folios"], often far below one
        # per 256 calls) may never fail in the replicas: their share of the output is missing.
        slack += 2.0 * an["failed_folios"] / arrays.n_folios * np.abs(a)
        # No variation seen: an event of probability below ~5/replicas per call may simply not
        # have happened; its effect on the mean is below 5/replicas of the output's scale.
        slack = np.where(se == 0.0, np.maximum(slack, 5.0 / replicas * np.maximum(np.abs(a), 1.0)), slack)
        gap = np.abs(m - a) - slack
        far = gap > 10.0 * se
        assert not far.any(), (name, np.flatnonzero(far)[:5], m[far][:5], a[far][:5], se[far][:5])
        outside += int((gap > 4.0 * se).sum())
    # 4 standard errors per comparison; over ~1700 comparisons of skewed, discrete statistics a
    # handful of excursions is chance (checked on the reference kernels with several seeds).
    assert outside <= 0.005 * len(MC_MEANS) * len(arrays), outside


def test_montecarlo_depends_only_on_point_and_seed(table: np.ndarray) -> None:
    from models.montecarlo import montecarlo_outputs

    points = random_points(120, seed=6, n_folios=(1, 5, 64, 700))
    whole = montecarlo_outputs(arrays_of(points), table, seed=9, replicas=8)
    order = np.random.default_rng(0).permutation(len(points))
    shuffled = montecarlo_outputs(
        arrays_of(points.iloc[order].reset_index(drop=True)), table, seed=9, replicas=8
    )
    parts: dict[str, list[np.ndarray]] = {}
    for s, e in ((0, 1), (1, 40), (40, 41), (41, 120)):
        chunk = montecarlo_outputs(
            arrays_of(points.iloc[s:e].reset_index(drop=True)), table, seed=9, replicas=8
        )
        for k, v in chunk.items():
            parts.setdefault(k, []).append(v)
    for name, values in whole.items():
        np.testing.assert_array_equal(values[order], shuffled[name], err_msg=name)
        np.testing.assert_array_equal(values, np.concatenate(parts[name]), err_msg=name)
    other = montecarlo_outputs(arrays_of(points), table, seed=10, replicas=8)
    assert not np.array_equal(whole["time_s"], other["time_s"])


def test_branch_free_log_and_exp_are_within_2_ulp() -> None:
    import numba as nb

    from models.phases import fast_exp, fast_log

    @nb.njit
    def apply(xs: np.ndarray, which: int) -> np.ndarray:
        out = np.empty_like(xs)
        for i in range(xs.shape[0]):
            out[i] = fast_log(xs[i]) if which == 0 else fast_exp(xs[i])
        return out

    rng = np.random.default_rng(0)
    xs = np.concatenate(
        [rng.random(100_000), 10.0 ** rng.uniform(-300, 300, 100_000), [1.0, 0.5, 2.0, 2.0**0.5]]
    )
    got, want = apply(xs, 0), np.log(xs)
    assert np.all(np.abs(got - want) <= 2.0 * np.spacing(np.abs(want)) + 1e-300)
    ys = np.concatenate([rng.uniform(-700, 700, 100_000), rng.uniform(-1, 1, 100_000), [0.0, -1e-12, 1e-12]])
    got, want = apply(ys, 1), np.exp(ys)
    assert np.all(np.abs(got - want) <= 2.0 * np.spacing(want))


def test_branch_free_expm1_is_accurate_near_zero_and_far() -> None:
    import numba as nb

    from models.phases import fast_expm1

    @nb.njit
    def apply(xs: np.ndarray) -> np.ndarray:
        out = np.empty_like(xs)
        for i in range(xs.shape[0]):
            out[i] = fast_expm1(xs[i])
        return out

    rng = np.random.default_rng(1)
    xs = np.concatenate(
        [
            rng.uniform(-700, 700, 100_000),
            rng.uniform(-1, 1, 100_000),
            np.sign(rng.uniform(-1, 1, 100_000)) * 10.0 ** rng.uniform(-300, 0, 100_000),
            [0.0, -1e-12, 1e-12, -0.35, 0.35, -0.7, 0.7],
        ]
    )
    got, want = apply(xs), np.expm1(xs)
    assert np.all(np.abs(got - want) <= 4.0 * np.spacing(np.abs(want)) + 1e-300)


def test_acknowledgement_tail_draw_inverts_the_max_of_k_lomax_into_the_far_tail() -> None:
    from models.phases import draw_max_lomax

    # F_max(x) = (1 - (1 + x)^-alpha)^k; the draw at u must be F_max^-1(u), also for u next to 1,
    # where the largest flush waits come from (a 1 - exp() there would lose most digits).
    for k in (1.0, 7.0, 63.0, 127.0):
        for alpha in (4.0, 6.5):
            for u in (1e-12, 1e-3, 0.5, 0.99, 1.0 - 1e-6, 1.0 - 1e-12):
                x = draw_max_lomax(k, alpha, u)
                want = (-np.expm1(np.log(u) / k)) ** (-1.0 / alpha) - 1.0
                assert abs(x - want) <= 1e-12 * want + 1e-15, (k, alpha, u, x, want)
                # and back: the tail probability of the draw is 1 - u
                tail = -np.expm1(k * np.log1p(-((1.0 + x) ** -alpha)))
                assert abs(tail - (1.0 - u)) <= 1e-9 * (1.0 - u), (k, alpha, u, tail)
    assert draw_max_lomax(0.0, 4.0, 0.5) == 0.0  # no remote CPU, no wait


def test_window_order_statistics_of_sequences_are_exact() -> None:
    from models.montecarlo import run_value, runs_kth

    rng = np.random.default_rng(3)
    for trial in range(300):
        nr = int(rng.integers(1, 12))
        runs = np.empty((3, nr))
        runs[0] = rng.choice([1e-6, 2e-5, 1e-3], nr) * rng.random(nr)
        runs[1] = rng.choice([-1.0, 0.0, 1.0, 1.0], nr) * rng.choice([1e-9, 1e-7, 3e-6], nr)
        runs[2] = rng.choice([1, 2, 7, 64, 500], nr)
        if trial % 10 == 0:
            runs[:, 1:] = runs[:, :1]  # identical sequences: ties
        values = np.sort([run_value(a, s, float(j)) for a, s, c in runs.T for j in range(int(c))])
        tmp = np.empty(values.size + 1)
        for k in {0, values.size // 2, int(0.99 * values.size), values.size - 1}:
            assert runs_kth(runs, nr, k, tmp) == values[k]
