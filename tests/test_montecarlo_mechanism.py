"""The Monte Carlo model follows the mechanism of ``models/MECHANISM.md``, rule by rule.

Each property test states a fact of mm/migrate.c and mm/rmap.c (with the release it holds for)
and checks the Monte Carlo outputs against it; the means are checked against the analytic model
(within 4 standard errors) for the new parameters; and a point's result is bit-identical however
points are chunked, ordered or grouped (``check_exact=True``).
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from models.evaluate import evaluate
from models.profiles import get_profile

MC = {"replicas": 32, "seed": 5}


def grid(**axes: list) -> pd.DataFrame:
    keys = list(axes)
    return pd.DataFrame([dict(zip(keys, combo, strict=True)) for combo in itertools.product(*axes.values())])


def mc(points: pd.DataFrame, **kw: object) -> pd.DataFrame:
    return evaluate(points, "montecarlo", **{**MC, **kw})


# --- flushes (MECHANISM.md §3) ---------------------------------------------------------------


def test_arm64_before_6_6_flushes_every_pte_batched_or_not() -> None:
    # No ARCH_WANT_BATCHED_UNMAP_TLB_FLUSH before 6.6: should_defer_flush() is false, so every PTE
    # is cleared with ptep_clear_flush(); batching saves no round.
    pts = grid(profile=["kunpeng920-2s"], kernel=["6.3", "6.5"], folio_kb=[4, 64], n_folios=[1000],
               batch_limit_pages=[1, 512], mapcount=[1, 2], mode=["async"])  # fmt: skip
    r = mc(pts)
    fp = pts["folio_kb"] / get_profile("kunpeng920-2s").page_kb
    assert np.array_equal(r["flush_rounds"], pts["n_folios"] * fp * pts["mapcount"])
    assert (r["ipis"] == 0).all()


def test_arm64_from_6_6_flushes_once_per_batch_without_ipis() -> None:
    pts = grid(profile=["kunpeng920-2s"], kernel=["6.6"], folio_kb=[4], n_folios=[4096],
               batch_limit_pages=[512], target_cpus=[2, 64], mode=["async"])  # fmt: skip
    r = mc(pts)
    assert (r["flush_rounds"] == 8).all() and (r["ipis"] == 0).all()
    # The sync reaches the whole machine: the same cost whatever the mm's CPUs.
    assert r["time_s"][0] == r["time_s"][1]


def test_thp_is_flushed_when_unmapped_in_every_release() -> None:
    # set_pmd_migration_entry() -> pmdp_invalidate(): one round per THP per mapping, never batched.
    pts = grid(kernel=["6.2", "6.3", "6.6", "6.15"], folio_kb=[2048], n_folios=[64], batch_limit_pages=[4096],
               mapcount=[1, 3], mode=["async"], target_cpus=[8])  # fmt: skip
    r = mc(pts)
    assert np.array_equal(r["flush_rounds"], 64 * pts["mapcount"])


def test_one_batch_flush_after_all_unmap_passes() -> None:
    # migrate_pages_batch(): every unmap pass (busy folios retried), then one try_to_unmap_flush().
    pts = grid(kernel=["6.6"], folio_kb=[4], n_folios=[4096], batch_limit_pages=[512], busy_prob=[0.0, 0.3, 0.6],
               mode=["async"], target_cpus=[8])  # fmt: skip
    r = mc(pts)
    assert (r["flush_rounds"] == 8).all() and (r["ipis"] == 8 * 7).all()
    assert r["passes"][0] == 1 and (r["passes"][1:] > 3).all()
    # Folios unmapped on pass 1 stay unmapped through the later passes: longer windows.
    assert r["window_mean_s"][0] < r["window_mean_s"][1] < r["window_mean_s"][2]


def test_before_6_3_every_pte_of_every_folio_is_flushed_alone() -> None:
    pts = grid(kernel=["6.2"], folio_kb=[4, 64], n_folios=[100], batch_limit_pages=[1, 512, 4096],
               mapcount=[1, 2], target_cpus=[1, 8], mode=["async"])  # fmt: skip
    r = mc(pts)
    fp = pts["folio_kb"] / 4
    assert np.array_equal(r["flush_rounds"], 100 * fp * pts["mapcount"])  # 64 KiB: 16 rounds per folio
    assert np.array_equal(r["ipis"], r["flush_rounds"] * (pts["target_cpus"] - 1))
    # batch_limit_pages means nothing before 6.3 (deterministic with one CPU: identical).
    one = r[pts["target_cpus"] == 1]
    for _, g in one.groupby(["folio_kb", "mapcount"]):
        assert g["time_s"].nunique() == 1 and g["window_mean_s"].nunique() == 1


def test_a_one_folio_async_batch_still_gets_a_full_flush() -> None:
    pts = grid(
        kernel=["6.6"], folio_kb=[4], n_folios=[300], batch_limit_pages=[1], mode=["async"], target_cpus=[8]
    )
    r = mc(pts)
    prof = get_profile("epyc-zen3-2s")
    assert r["flush_rounds"][0] == 300
    full = prof.values["ack_handler_full_us"]
    np.testing.assert_allclose(r["remote_cpu_time_s"][0], 300 * 7 * full, rtol=1e-12)


def test_invlpgb_from_6_15_sends_no_ipis() -> None:
    pts = grid(profile=["epyc-zen3-2s"], kernel=["6.14", "6.15"], folio_kb=[4], n_folios=[2048],
               batch_limit_pages=[512], target_cpus=[2, 8], mode=["async"])  # fmt: skip
    assert get_profile("epyc-zen3-2s").invlpgb
    r = mc(pts).set_index(pts.index)
    ipis = dict(zip(zip(pts["kernel"], pts["target_cpus"], strict=True), r["ipis"], strict=True))
    assert ipis[("6.14", 8)] == 4 * 7 and ipis[("6.14", 2)] == 4
    assert ipis[("6.15", 8)] == 0  # global ASID, broadcast: no IPIs
    assert ipis[("6.15", 2)] == 4  # fewer than 4 CPUs: no global ASID, IPIs as before


@pytest.mark.parametrize("kernel", ["6.3", "6.4"])
def test_numa_hinting_entries_skip_the_batch_flush_from_6_4(kernel: str) -> None:
    pts = grid(kernel=[kernel], folio_kb=[4], n_folios=[2048], batch_limit_pages=[512], numa_hinting=[0, 1],
               mode=["async"], target_cpus=[8])  # fmt: skip
    r = mc(pts)
    assert r["flush_rounds"][0] == 4
    assert r["flush_rounds"][1] == (4 if kernel == "6.3" else 0)


def test_sync_fallback_flushes_each_pte_immediately() -> None:
    # migrate_pages_sync(): folios still failing after 3 async passes go alone, MIGRATE_SYNC, with
    # no TTU_BATCH_FLUSH: one round per PTE per mapping.
    pts = grid(kernel=["6.6"], folio_kb=[64], n_folios=[1], batch_limit_pages=[512], busy_prob=[1.0],
               mode=["sync"], target_cpus=[8])  # fmt: skip
    r = mc(pts)
    assert r["failed_folios"][0] == 1 and r["flush_rounds"][0] == 0
    pts = pts.assign(busy_prob=0.0, writeback_prob=1.0)  # -EBUSY in async, waits in the fallback
    r = mc(pts)
    assert r["failed_folios"][0] == 0 and r["flush_rounds"][0] == 16


# --- failures (MECHANISM.md §4) ----------------------------------------------------------------


def test_writeback_fails_in_async_mode_and_waits_in_sync_mode() -> None:
    pts = grid(kernel=["6.6"], folio_kb=[4], n_folios=[1000], batch_limit_pages=[512], writeback_prob=[0.2],
               writeback_wait_s=[0.001], mode=["async", "sync"])  # fmt: skip
    r = mc(pts, replicas=64)
    a_fail, s_fail = r["failed_folios"]
    assert abs(a_fail - 200) < 4 * r["failed_folios_se"][0] + 1e-9 and s_fail == 0
    # ~200 waits of 1 ms on average; the CPU only waits meanwhile.
    assert 0.15 < r["time_s"][1] - r["time_s"][0] < 0.25
    assert r["cpu_time_s"][1] < r["time_s"][1] - 0.15


def test_allocation_failure_splits_large_folios_and_ends_the_call_for_small_ones() -> None:
    pts = grid(kernel=["6.6"], folio_kb=[4, 64], n_folios=[512], batch_limit_pages=[512], alloc_fail_prob=[1.0],
               mode=["async"])  # fmt: skip
    r = mc(pts)
    assert r["failed_folios"][0] == 512 and r["pages_per_s"][0] == 0  # the first -ENOMEM ends the call
    assert r["failed_folios"][1] == 0  # every 64 KiB folio split, its 16 pieces migrated once
    pts = pts.assign(alloc_fail_prob=0.01, folio_kb=4, n_folios=4096)
    r = mc(pts.iloc[:1], replicas=64)
    # The call ends at the first failing folio: E[folios before it] = (1 - q)/q = 99 for q = 0.01.
    assert abs(r["failed_folios"][0] - (4096 - 99)) < 4 * r["failed_folios_se"][0]


# --- folio mixes (MECHANISM.md §1-§2) -----------------------------------------------------------


@pytest.mark.parametrize("kb", [4, 64, 2048])
def test_a_one_size_mix_is_exactly_that_size(kb: int) -> None:
    base = grid(kernel=["6.2", "6.6"], n_folios=[300], batch_limit_pages=[1, 512], busy_prob=[0.0, 0.2],
                access_rate_hz=[1000.0], mode=["sync"], target_cpus=[8])  # fmt: skip
    one = mc(base.assign(folio_kb=kb))
    mixed = mc(base.assign(folio_mix=f"{kb}:1"))
    cols = [c for c in one.columns if c not in ("folio_kb", "folio_mix")]
    pd.testing.assert_frame_equal(one[cols], mixed[cols], check_exact=True)


def test_a_mix_forms_batches_over_the_list_in_order() -> None:
    # 64 × 4 KiB then 4 × 2 MiB at limit 512: the 4 KiB folios fill one batch (one flush round);
    # then each THP reaches the cap alone and is flushed at unmap (one round each).
    pts = pd.DataFrame({"folio_mix": ["4:0.94117647058823528,2048:0.0588235294117647"], "n_folios": [68],
                        "batch_limit_pages": [512], "kernel": ["6.6"], "mode": ["async"], "target_cpus": [8]})  # fmt: skip
    r = mc(pts)
    assert r["flush_rounds"][0] == 1 + 4
    pages = 64 + 4 * 512
    np.testing.assert_allclose(r["pages_per_s"][0] * r["time_s"][0], pages, rtol=0.05)


# --- Monte Carlo means against the analytic expectations ---------------------------------------

MEANS = (
    "time_s",
    "pages_per_s",
    "flush_rounds",
    "ipis",
    "cpu_time_s",
    "window_mean_s",
    "failed_folios",
    "passes",
)


def mechanism_points(n: int, seed: int) -> pd.DataFrame:
    """Points over the new parameters and every rule: releases around each change, both flush
    architectures and INVLPGB, hinting entries, writeback in both modes, mixes, THPs, busy folios."""
    rng = np.random.default_rng(seed)
    pts = pd.DataFrame(
        {
            "profile": rng.choice(["epyc-zen3-2s", "kunpeng920-2s", "xeon-8260l-2s"], n),
            "kernel": rng.choice(["5.15", "6.2", "6.3", "6.4", "6.5", "6.6", "6.14", "6.15"], n),
            "folio_kb": rng.choice([4, 16, 64, 2048], n).astype(object),
            "n_folios": rng.choice([1, 5, 64, 300], n),
            "batch_limit_pages": rng.choice([1, 16, 512, 4096], n),
            "copy_engine": rng.choice(["cpu", "mt-cpu"], n),
            "target_cpus": rng.choice([1, 2, 8, 32], n),
            "mapcount": rng.choice([1, 2], n),
            # Busy probabilities whose rare events (the sync fallback, a folio busy on every pass)
            # are seen often in the replicas or weigh far less than one standard error.
            "busy_prob": rng.choice([0.0, 0.3, 0.7], n),
            "access_rate_hz": rng.choice([0.0, 1000.0], n),
            "mode": rng.choice(["sync", "async"], n),
            "numa_hinting": rng.choice([0, 1], n),
            "writeback_prob": rng.choice([0.0, 0.0, 0.1], n),
            "writeback_wait_s": 1e-4,
        }
    )
    pts["copy_threads"] = np.where(pts["copy_engine"] == "cpu", 1, 4)
    mixed = rng.random(n) < 0.25
    pts["folio_mix"] = np.where(
        mixed, rng.choice(["4:0.7,64:0.2,2048:0.1", "16:0.5,4:0.5", "2048:0.3,4:0.7"], n), ""
    )
    pts.loc[mixed, "folio_kb"] = None
    return pts


def outside(m: pd.DataFrame, a: pd.DataFrame, replicas: int) -> tuple[int, int, list]:
    """(comparisons beyond 4 standard errors, comparisons, those beyond 10 standard errors)."""
    n_out = total = 0
    far = []
    for name in MEANS:
        mv, av, se = m[name].to_numpy(), a[name].to_numpy(), m[f"{name}_se"].to_numpy()
        slack = 1e-7 * np.abs(av) + 1e-12
        # No variation seen: an event of probability below ~5/replicas per call may not have happened.
        slack = np.where(se == 0.0, np.maximum(slack, 5.0 / replicas * np.maximum(np.abs(av), 1.0)), slack)
        gap = np.abs(mv - av) - slack
        n_out += int((gap > 4.0 * se).sum())
        total += len(mv)
        far += [(name, int(i), mv[i], av[i], se[i]) for i in np.flatnonzero(gap > 10.0 * se)]
    return n_out, total, far


def test_montecarlo_means_agree_with_analytic_for_the_new_mechanism() -> None:
    pts = mechanism_points(160, seed=8)
    a = evaluate(pts)
    m = mc(pts, replicas=256, seed=13)
    n_out, total, far = outside(m, a, 256)
    assert not far, far[:5]
    # 4 standard errors per comparison; skewed, discrete statistics allow a handful of excursions.
    assert n_out <= 0.005 * total, n_out


def test_montecarlo_failures_agree_with_analytic_under_allocation_failure() -> None:
    # The analytic model evaluates the split-piece batch at the expected number of pieces and the
    # batch where an order-0 failure ends the call at the expected prefix (approximations, said in
    # models/analytic.py); the folios and pages that fail or move are exact in expectation.
    pts = grid(kernel=["6.2", "6.6"], folio_kb=[4, 64], n_folios=[300], batch_limit_pages=[512],
               alloc_fail_prob=[0.001, 0.05], busy_prob=[0.0, 0.2], mode=["async", "sync"], target_cpus=[8])  # fmt: skip
    a = evaluate(pts)
    m = mc(pts, replicas=200, seed=17)
    moved_m = m["pages_per_s"] * m["time_s"]
    for name in ("failed_folios",):
        gap = np.abs(m[name] - a[name]) - 1e-9
        assert (gap <= 4.0 * m[f"{name}_se"] + 5.0 / 200 * a[name].clip(lower=1.0)).all(), (m[name], a[name])
    assert (moved_m > 0).all()


# --- reproducibility (issue 13.1) ---------------------------------------------------------------


def random_points(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    pts = pd.DataFrame(
        {
            "profile": rng.choice(["epyc-zen3-2s", "kunpeng920-2s", "xeon-8260l-2s"], n),
            "kernel": rng.choice(["5.15", "6.2", "6.3", "6.4", "6.6", "6.15"], n),
            "folio_kb": rng.choice([4, 64, 2048], n),
            "n_folios": rng.choice([1, 7, 300, 2000], n),
            "batch_limit_pages": rng.choice([1, 16, 512, 4096], n),
            "copy_engine": rng.choice(["cpu", "mt-cpu"], n),
            "target_cpus": rng.choice([1, 2, 8], n),
            "mapcount": rng.choice([1, 2], n),
            "busy_prob": rng.choice([0.0, 0.1, 0.5], n),
            "access_rate_hz": rng.choice([0.0, 1000.0], n),
            "mode": rng.choice(["sync", "async"], n),
            "numa_hinting": rng.choice([0, 1], n),
            "writeback_prob": rng.choice([0.0, 0.05], n),
            "alloc_fail_prob": rng.choice([0.0, 0.001], n),
        }
    )
    pts["copy_threads"] = np.where(pts["copy_engine"] == "cpu", 1, rng.choice([2, 4], n))
    return pts


def test_results_are_bit_identical_whatever_the_chunking_order_and_grouping() -> None:
    pts = random_points(90, seed=3)
    whole = mc(pts, replicas=6)
    for size in (1, 7, 50):
        parts = [
            mc(pts.iloc[s : s + size].reset_index(drop=True), replicas=6) for s in range(0, len(pts), size)
        ]
        pd.testing.assert_frame_equal(pd.concat(parts, ignore_index=True), whole, check_exact=True)
    order = np.random.default_rng(1).permutation(len(pts))
    shuffled = mc(pts.iloc[order].reset_index(drop=True), replicas=6)
    pd.testing.assert_frame_equal(shuffled, whole.iloc[order].reset_index(drop=True), check_exact=True)
    # Grouped with other points (larger scratch buffers, other profiles before it): the same.
    other = random_points(20, seed=4).assign(n_folios=5000)
    grouped = mc(pd.concat([other, pts], ignore_index=True), replicas=6).iloc[len(other) :]
    pd.testing.assert_frame_equal(grouped.reset_index(drop=True), whole, check_exact=True)
