"""The Monte Carlo order statistics are exact: every selection routine against ``np.sort``.

The kernels take p50/p99 of the windows and stalls of every simulated call with a branch-free
quickselect (``quickselect``), a sample-bracketed selection for large arrays (``p50_p99``, ``kth_smallest``)
and order statistics of arithmetic sequences (``runs_kth``, tested in
``test_kernel_equivalence.py``). Inputs cover what the model produces: heavy tails, runs of ties
(zero stalls), constant arrays, sorted and reverse-sorted runs, a few distinct values.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.montecarlo import SAMPLE, SMALL, kth_smallest, p50_p99, quickselect, selection_sample


def arrays(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    return {
        "heavy tail": 1e-6 * (rng.pareto(4.0, n) + 1.0),
        "mostly zero": np.where(rng.random(n) < 0.9, 0.0, rng.exponential(1e-5, n)),
        "some zero": np.where(rng.random(n) < 0.4, 0.0, rng.exponential(1e-5, n)),
        "constant": np.full(n, 3e-6),
        "ascending": np.sort(rng.random(n)),
        "descending": np.sort(rng.random(n))[::-1].copy(),
        "runs": (rng.random((n, 1)) + rng.random((n, 1)) * np.arange(1, 9)).ravel()[:n],  # passes' windows
        "three values": rng.choice([1.0, 2.0, 3.0], n),
    }


def rank(q: float, m: int) -> int:
    """The inverted-CDF rank the kernels use: ceil(q·m) - 1."""
    return max(math.ceil(q * m) - 1, 0)


@pytest.mark.parametrize("n", [1, 2, 13, 14, 100, 1000])
def test_select_puts_the_kth_smallest_at_k_and_partitions_around_it(n: int) -> None:
    rng = np.random.default_rng(n)
    for name, x in arrays(rng, n).items():
        for k in sorted({0, n // 2, n - 1, int(rng.integers(0, n))}):
            a = x.copy()
            quickselect(a, 0, n, k)
            assert a[k] == np.sort(x)[k], (name, n, k)
            assert (a[:k] <= a[k]).all() and (a[k + 1 :] >= a[k]).all(), (name, n, k)
            assert np.array_equal(np.sort(a), np.sort(x)), (name, n, k)  # a permutation


def test_select_at_the_edges_of_runs_of_ties() -> None:
    # Ranks just inside and just past a run of equal values (zero stalls, a few distinct values):
    # where a partition around a tied pivot must stop exactly.
    rng = np.random.default_rng(3)
    for n in (20, 200, 3000):
        for name, x in arrays(rng, n).items():
            s = np.sort(x)
            values, counts = np.unique(x, return_counts=True)
            for c in np.cumsum(counts[counts > 1])[:3]:
                for k in (c - 1, c):
                    if k < n:
                        a = x.copy()
                        quickselect(a, 0, n, int(k))
                        assert a[k] == s[k], (name, n, k)


def test_select_on_a_subrange_leaves_the_rest_alone() -> None:
    x = np.random.default_rng(1).random(300)
    a = x.copy()
    quickselect(a, 100, 250, 180)
    assert np.array_equal(a[:100], x[:100]) and np.array_equal(a[250:], x[250:])
    assert a[180] == np.sort(x[100:250])[80]


@pytest.mark.parametrize("m", [1, 7, SMALL, SMALL + 1, 4096, 4097, 10_000])
def test_p50_p99_and_kth_are_exact(m: int) -> None:
    rng = np.random.default_rng(m)
    samp = np.empty(SAMPLE)
    tmp1 = np.empty(m + 1)
    tmp2 = np.empty(m + 1)
    for name, x in arrays(rng, m).items():
        s = np.sort(x)
        p50, p99 = p50_p99(x.copy(), m, samp, tmp1, tmp2)
        assert (p50, p99) == (s[rank(0.5, m)], s[rank(0.99, m)]), (name, m)
        for q in (0.0, 0.3, 0.99, 1.0):
            assert kth_smallest(x.copy(), m, rank(q, m), samp, tmp1) == s[rank(q, m)], (name, m, q)


def sampled_positions(m: int) -> np.ndarray:
    """The positions ``selection_sample`` reads, found by letting it sample the array of indices."""
    samp = np.empty(SAMPLE)
    selection_sample(np.arange(m, dtype=np.float64), m, samp)
    return samp.astype(np.int64)


def defeating(m: int, seen: float) -> np.ndarray:
    """Values in (2, 3], shuffled, except that every position the sample reads holds ``seen``."""
    x = np.random.default_rng(m).permutation(np.linspace(2.0, 3.0, m))
    x[sampled_positions(m)] = seen
    return x


def partitioned_at(a: np.ndarray, k: int) -> bool:
    return bool((a[:k] <= a[k]).all() and (a[k + 1 :] >= a[k]).all())


# (m, value the sample sees, ranks whose bracket misses). A sample of 0.5s brackets the p50 at
# [0.5, 0.5] while it lies among the unseen values; the p99 bracket is open above, so it holds.
# A sample of 4.0s above everything brackets both at [4.0, inf) while both lie below, once the
# SAMPLE sampled values are under 1 % of m (else the p99 is 4.0 itself).
MISSES = [
    (SMALL + 1, 0.5, (0.5,)),
    (4096, 0.5, (0.5,)),
    (10_000, 0.5, (0.5,)),
    (100 * SAMPLE + 1000, 4.0, (0.5, 0.99)),
]


@pytest.mark.parametrize(("m", "seen", "missed"), MISSES)
def test_selection_is_exact_when_the_sample_bracket_misses(
    m: int, seen: float, missed: tuple[float, ...]
) -> None:
    # The fallback (a quickselect over all of a, in place) is the only step that reorders ``a``:
    # a hit reads ``a`` and copies into the scratch arrays. So ``a`` partitioned at a missed rank
    # proves the fallback ran there (the input is not partitioned at any of these ranks).
    x = defeating(m, seen)
    assert len(set(sampled_positions(m))) == SAMPLE
    s = np.sort(x)
    k50, k99 = rank(0.5, m), rank(0.99, m)
    assert not partitioned_at(x, k50) and not partitioned_at(x, k99)
    samp, tmp1, tmp2 = np.empty(SAMPLE), np.empty(m + 1), np.empty(m + 1)
    a = x.copy()
    assert p50_p99(a, m, samp, tmp1, tmp2) == (s[k50], s[k99])
    assert partitioned_at(a, rank(missed[-1], m))  # the last fallback's partition
    for q in (0.5, 0.99):
        a = x.copy()
        assert kth_smallest(a, m, rank(q, m), samp, tmp1) == s[rank(q, m)]
        assert partitioned_at(a, rank(q, m)) == (q in missed), q


@pytest.mark.parametrize("m", [SMALL + 1, 4096, 10_000])
def test_p50_p99_leaves_the_array_alone_when_the_bracket_holds(m: int) -> None:
    # The counterpart: on ordinary data the bracket holds, so ``a`` is only read (which is what makes
    # the reordering above evidence of the fallback).
    x = np.random.default_rng(m).permutation(np.linspace(2.0, 3.0, m))
    a = x.copy()
    s = np.sort(x)
    assert p50_p99(a, m, np.empty(SAMPLE), np.empty(m + 1), np.empty(m + 1)) == (
        s[rank(0.5, m)],
        s[rank(0.99, m)],
    )
    assert np.array_equal(a, x)
