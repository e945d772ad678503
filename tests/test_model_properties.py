"""Properties of the cost model that follow from the mechanism (models/MECHANISM.md), not from its
code: one test per rule, each stating the kernel fact it checks.

The Monte Carlo model follows the same contract: its means agree with the analytic expectations.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from models.evaluate import evaluate
from models.params import OUTPUTS, PointError
from models.profiles import get_profile, profile_names


def frame(**cols) -> pd.DataFrame:
    n = max(len(v) if isinstance(v, list | np.ndarray) else 1 for v in cols.values())
    return pd.DataFrame({k: (v if isinstance(v, list | np.ndarray) else [v] * n) for k, v in cols.items()})


def grid(**axes) -> pd.DataFrame:
    keys = list(axes)
    rows = [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*axes.values())]
    return pd.DataFrame(rows)


def one(**cols) -> pd.Series:
    return evaluate(frame(**cols)).iloc[0]


# --- §3: flushes by release and architecture -------------------------------------------------


def test_arm64_before_6_6_flushes_every_pte_batched_or_not() -> None:
    """arm64 < 6.6 has no ARCH_WANT_BATCHED_UNMAP_TLB_FLUSH: should_defer_flush() is false, so a
    batch saves no flush round: as many rounds at limit 512 as at limit 1, one per PTE."""
    pts = frame(profile="kunpeng920-2s", kernel="6.3", mode="async", n_folios=1000, folio_kb=[4, 4, 16, 16],
                batch_limit_pages=[512, 1, 512, 1], mapcount=2)  # fmt: skip
    r = evaluate(pts)
    assert r["flush_rounds"][0] == r["flush_rounds"][1] == 1000 * 1 * 2
    assert r["flush_rounds"][2] == r["flush_rounds"][3] == 1000 * 4 * 2
    assert (r["ipis"] == 0).all()  # arm64 never sends IPIs


def test_arm64_from_6_6_batches_the_flush_but_never_ipis() -> None:
    r = one(
        profile="kunpeng920-2s", kernel="6.6", mode="async", n_folios=4096, folio_kb=4, batch_limit_pages=512
    )
    assert r["flush_rounds"] == 8 and r["ipis"] == 0


def test_pmd_mapped_thps_are_flushed_at_unmap_never_in_the_batch() -> None:
    """set_pmd_migration_entry() → pmdp_invalidate(): 64 THPs at limit 4096 (8 per batch) make 64
    rounds, not 8, in every release."""
    for kernel in ("6.2", "6.6", "6.15"):
        r = one(profile="xeon-8260l-2s", kernel=kernel, mode="async", n_folios=64, folio_kb=2048,
                batch_limit_pages=4096, target_cpus=16)  # fmt: skip
        assert r["flush_rounds"] == 64, kernel


def test_one_flush_per_batch_after_all_unmap_passes() -> None:
    """migrate_pages_batch(): every unmap pass, then one try_to_unmap_flush(): 4096 × 4 KiB at limit
    512 with busy folios in async mode make 8 rounds, however many passes the retries take."""
    r = evaluate(frame(profile="epyc-zen3-2s", kernel="6.6", mode="async", n_folios=4096, folio_kb=4,
                       batch_limit_pages=512, busy_prob=[0.0, 0.3, 0.6], target_cpus=16))  # fmt: skip
    assert (r["flush_rounds"] == 8).all()
    assert r["passes"][0] == 1 and r["passes"][2] > r["passes"][1] > 1


def test_before_6_3_every_pte_of_every_mapping_is_flushed() -> None:
    """No batching before 6.3: ptep_clear_flush() per PTE: a 64 KiB mTHP (16 PTEs) makes 16 rounds
    per mapping, whatever batch_limit_pages says."""
    r = evaluate(frame(profile="epyc-zen3-2s", kernel="6.2", mode="async", n_folios=10, folio_kb=64,
                       batch_limit_pages=[1, 512, 4096], mapcount=[1, 1, 3], target_cpus=16))  # fmt: skip
    assert list(r["flush_rounds"]) == [160, 160, 480]
    assert list(r["ipis"]) == [160 * 15, 160 * 15, 480 * 15]


def test_a_batch_of_one_folio_in_async_mode_still_gets_a_full_flush() -> None:
    r = evaluate(frame(profile="epyc-zen3-2s", kernel=["6.6", "6.2"], mode="async", n_folios=100, folio_kb=16,
                       batch_limit_pages=1, target_cpus=16))  # fmt: skip
    assert r["flush_rounds"][0] == 100  # one deferred full flush per one-folio batch
    assert r["flush_rounds"][1] == 400  # one per PTE before 6.3


def test_invlpgb_from_6_15_sends_no_ipis() -> None:
    """arch/x86/mm/tlb.c: AMD INVLPGB broadcast invalidation from 6.15 for an mm on 4+ CPUs."""
    r = evaluate(frame(profile="epyc-zen3-2s", kernel=["6.14", "6.15", "6.15"], target_cpus=[16, 16, 3],
                       mode="async"))  # fmt: skip
    assert r["ipis"][0] > 0 and r["ipis"][1] == 0 and r["ipis"][2] > 0
    intel = one(profile="xeon-8260l-2s", kernel="6.15", target_cpus=16, mode="async")
    assert intel["ipis"] > 0  # no INVLPGB on Intel


def test_numa_hinting_ptes_leave_the_batch_flush_from_6_4() -> None:
    """set_tlb_ubc_flush_pending(): !pte_accessible() → nothing queued (6.4); still queued in 6.3."""
    r = evaluate(frame(profile="epyc-zen3-2s", kernel=["6.3", "6.4", "6.2"], numa_hinting=1, mode="async",
                       n_folios=1024, folio_kb=4, batch_limit_pages=512))  # fmt: skip
    assert list(r["flush_rounds"]) == [2, 0, 0]  # before 6.3 ptep_clear_flush() skips them too
    thp = one(profile="epyc-zen3-2s", kernel="6.6", numa_hinting=1, n_folios=8, folio_kb=2048, mode="async")
    assert thp["flush_rounds"] == 8  # pmdp_invalidate() flushes anyway


def test_x86_with_one_cpu_does_not_defer() -> None:
    """arch_tlbbatch_should_defer(): no other CPU in the mm's cpumask → immediate local flushes."""
    r = one(profile="epyc-zen3-2s", kernel="6.6", target_cpus=1, n_folios=100, folio_kb=16, mode="async")
    assert r["flush_rounds"] == 400 and r["ipis"] == 0


# --- §2: batch formation ----------------------------------------------------------------------


def test_the_folio_reaching_the_cap_is_in_the_batch() -> None:
    """migrate_pages(): pages accumulate until nr_pages >= NR_MAX_BATCHED_MIGRATION: limit 100 with
    16-page folios takes 7 folios per batch (112 pages): 70 folios make 10 batch flushes."""
    r = one(
        profile="epyc-zen3-2s", kernel="6.6", n_folios=70, folio_kb=64, batch_limit_pages=100, mode="async"
    )
    assert r["flush_rounds"] == 10


def test_a_cap_below_one_folio_still_copies_the_whole_folio() -> None:
    """migrate_pages() cuts the list after the folio that reaches the cap (list_cut_before() at
    the next one), so with 2 MiB folios every limit from 1 to 512 pages is a batch of one 2 MiB
    folio: a multi-threaded copy splits 2 MiB, not `batch_limit_pages` pages."""
    pts = grid(profile=["epyc-zen3-2s"], kernel=["6.6"], folio_kb=[2048], n_folios=[64], copy_engine=["mt-cpu"],
               copy_threads=[8], batch_limit_pages=[1, 16, 511, 512], mode=["async", "sync"])  # fmt: skip
    r = evaluate(pts)
    for _, g in r.groupby(pts["mode"]):
        for col in OUTPUTS:
            assert g[col].nunique() == 1, col


def test_a_one_size_mix_is_that_size() -> None:
    base = grid(profile=["epyc-zen3-2s", "grace-2s"], n_folios=[1, 333, 4096], busy_prob=[0.0, 0.2],
                mode=["sync", "async"], kernel=["6.2", "6.6"], writeback_prob=[0.0, 0.1],
                alloc_fail_prob=[0.0, 0.01])  # fmt: skip
    sizes = base["profile"].map({"epyc-zen3-2s": 64, "grace-2s": 2048})
    single = evaluate(base.assign(folio_kb=sizes))
    mixed = evaluate(base.assign(folio_mix=[f"{s}:1" for s in sizes]))
    pd.testing.assert_frame_equal(single[list(OUTPUTS)], mixed[list(OUTPUTS)], check_exact=True)


def test_a_mix_batches_across_sizes_in_list_order() -> None:
    """ "4:0.5,2048:0.5" of 1024 folios: 512 base pages fill the first batch exactly, then each THP
    reaches the cap alone: 1 batch flush + 512 THP flushes."""
    r = one(profile="epyc-zen3-2s", kernel="6.6", n_folios=1024, folio_mix="4:0.5,2048:0.5", mode="async",
            batch_limit_pages=512)  # fmt: skip
    assert r["flush_rounds"] == 1 + 512
    assert r["pages_per_s"] * r["time_s"] == pytest.approx(512 + 512 * 512)


# --- §4: passes, failures, fallbacks ----------------------------------------------------------


def test_writeback_fails_in_async_mode_and_waits_in_the_sync_fallback() -> None:
    r = evaluate(frame(profile="epyc-zen3-2s", kernel="6.6", mode=["async", "sync"], writeback_prob=1.0,
                       writeback_wait_s=0.01, n_folios=100, folio_kb=4, target_cpus=16))  # fmt: skip
    assert r["failed_folios"][0] == 100  # -EBUSY: failed for the call
    assert r["failed_folios"][1] == 0
    assert r["flush_rounds"][1] == 100  # fallback: one immediate flush per PTE, no batch flush
    assert r["time_s"][1] > 100 * 0.01 and r["cpu_time_s"][1] < 0.01  # waiting is not CPU time


def test_sync_passes_count_the_batched_passes_only_in_every_release() -> None:
    """The sync fallback's attempts (migrate_pages_sync(), and before 6.3 the forced passes,
    pass > 2) are not passes of the batch: at most 3 in sync mode, before and after 6.3, in
    both models (models/MECHANISM.md §5)."""
    pts = grid(kernel=["6.2", "6.6"], folio_kb=[4, 64], n_folios=[1, 300], batch_limit_pages=[1, 512],
               busy_prob=[0.5, 0.9], writeback_prob=[0.0, 0.3], mode=["sync"])  # fmt: skip
    a = evaluate(pts)
    m = evaluate(pts, "montecarlo", replicas=16, seed=3)
    assert (a["passes"] <= 3).all() and (m["passes"] <= 3).all()
    assert (m["passes"] > 2).any()  # the third pass does run
    r = evaluate(pts.assign(mode="async"), "montecarlo", replicas=16, seed=3)
    assert (r["passes"] <= 10).all() and (r["passes"] > 3).any()


def test_always_busy_fails_every_folio() -> None:
    r = evaluate(frame(busy_prob=1.0, mode=["sync", "async"], n_folios=1000, kernel="6.6"))
    assert (r["failed_folios"] == 1000).all() and (r["flush_rounds"] == 0).all()
    assert r["passes"][1] == 10 and r["passes"][0] == 3  # the batched passes that ran


def test_order0_allocation_failure_ends_the_call_and_large_folios_split() -> None:
    r = evaluate(frame(profile="epyc-zen3-2s", kernel="6.6", mode="async", alloc_fail_prob=1.0, n_folios=64,
                       folio_kb=[4, 2048]))  # fmt: skip
    assert r["failed_folios"][0] == 64 and r["pages_per_s"][0] == 0  # -ENOMEM: the call ends
    assert r["failed_folios"][1] == pytest.approx(0.0, abs=1e-9)  # split, pieces migrated
    assert r["pages_per_s"][1] * r["time_s"][1] == pytest.approx(64 * 512)
    some = one(
        profile="epyc-zen3-2s", kernel="6.6", mode="async", alloc_fail_prob=0.01, n_folios=4096, folio_kb=4
    )
    assert 0 < some["failed_folios"] < 4096


# --- outputs, stalls, costs -------------------------------------------------------------------


def test_throughput_rises_with_the_batch_limit_on_x86_from_6_3() -> None:
    r = evaluate(frame(profile="epyc-zen3-2s", kernel="6.6", folio_kb=4, n_folios=4096, mode="async",
                       batch_limit_pages=[1, 8, 64, 512]))  # fmt: skip
    assert np.all(np.diff(r["pages_per_s"]) > 0) and np.all(np.diff(r["window_mean_s"]) > 0)


def test_no_accesses_means_no_stall_and_more_accesses_more_stall() -> None:
    r = evaluate(frame(access_rate_hz=[0.0, 10.0, 1e4, 1e7], kernel="6.6"))
    assert r["stall_p99_s"][0] == 0
    assert np.all(np.diff(r["stall_p99_s"]) >= 0) and r["stall_p99_s"][3] > 0


def test_flush_cost_grows_with_target_cpus_on_x86_and_not_on_arm64() -> None:
    x86 = evaluate(frame(profile="xeon-8260l-2s", kernel="6.2", target_cpus=[2, 24, 96], n_folios=64))
    assert np.all(np.diff(x86["time_s"]) > 0)
    arm = evaluate(frame(profile="kunpeng920-2s", kernel="6.2", target_cpus=[2, 24, 96], n_folios=64))
    assert arm["time_s"].nunique() == 1  # a broadcast reaches the whole machine anyway


def test_every_shipped_profile_evaluates_its_defaults() -> None:
    for name in profile_names():
        r = one(profile=name)
        assert np.isfinite(r[list(OUTPUTS)].astype(float)).all()
        assert r["kernel"] == get_profile(name).default_kernel


# --- issue 13: identical whatever the chunking; documented ranges --------------------------------


def test_analytic_results_are_bit_identical_whatever_the_chunking() -> None:
    from tests.test_kernel_equivalence import random_points

    pts = random_points(700, seed=5)
    whole = evaluate(pts)
    for size in (1, 7, 50):
        parts = pd.concat(
            [evaluate(pts.iloc[i : i + size]) for i in range(0, len(pts), size)], ignore_index=True
        )
        pd.testing.assert_frame_equal(whole, parts, check_exact=True)


@pytest.mark.parametrize(
    "column,value,why",
    [
        ("batch_limit_pages", 1e19, "batch_limit_pages"),
        ("n_folios", 1e308, "n_folios"),
        ("n_folios", 2**31, "n_folios"),
        ("kernel", "6.99", "kernel"),
        ("kernel", "6", "kernel"),
        ("kernel", "6.03", "kernel"),
        ("folio_mix", "4:0.5,3:0.5", "folio_mix"),
        ("folio_mix", "4:0.7,64:0.2", "folio_mix"),
        ("folio_mix", "4:-0.5,64:1.5", "folio_mix"),
        ("folio_mix", "4:0.5,4:0.5", "folio_mix"),
        ("folio_mix", "4", "folio_mix"),
        ("numa_hinting", 2, "numa_hinting"),
        ("writeback_prob", 1.5, "writeback_prob"),
        ("alloc_fail_prob", -0.1, "alloc_fail_prob"),
        ("writeback_wait_s", 100.0, "writeback_wait_s"),
        ("mapcount", 1e6, "mapcount"),
    ],
)
def test_values_outside_the_documented_range_are_refused_naming_the_column(column, value, why) -> None:
    with pytest.raises(PointError, match=f"row 1, column {why}"):
        evaluate(pd.DataFrame([{column: value}]))


def test_folio_mix_with_folio_kb_and_sizes_outside_the_profile_are_refused() -> None:
    with pytest.raises(PointError, match="column folio_mix: given together with folio_kb"):
        evaluate(pd.DataFrame([{"folio_kb": 4, "folio_mix": "4:1"}]))
    with pytest.raises(PointError, match="column folio_mix: sizes must be powers of two between 64"):
        evaluate(pd.DataFrame([{"profile": "grace-2s", "folio_mix": "4:0.5,64:0.5"}]))


# --- Monte Carlo against analytic -------------------------------------------------------------


def _agree(a: pd.DataFrame, m: pd.DataFrame, col: str, se_col: str) -> np.ndarray:
    """|MC − analytic| within 4 standard errors, or exact where the MC saw no variation."""
    diff = np.abs(m[col].to_numpy() - a[col].to_numpy())
    se = m[se_col].to_numpy()
    scale = np.maximum(np.abs(a[col].to_numpy()), 1e-300)
    return (diff <= 4 * se) | (diff <= 1e-9 * scale)


def test_montecarlo_means_agree_with_analytic_for_the_new_parameters() -> None:
    pts = grid(profile=["epyc-zen3-2s", "kunpeng920-2s"], kernel=["6.2", "6.3", "6.6", "6.15"],
               folio_kb=[4, 64, 2048], batch_limit_pages=[1, 512], busy_prob=[0.0, 0.2],
               mode=["sync", "async"], n_folios=[300], target_cpus=[8], writeback_prob=[0.0, 0.1],
               numa_hinting=[0, 1])  # fmt: skip
    a = evaluate(pts)
    m = evaluate(pts, "montecarlo", replicas=200, seed=11)
    # Events of probability ~ busy_prob**7 per folio (failing every fallback attempt) may never
    # show in 200 replicas; the Monte Carlo then sees no variation and misses their small mass.
    p7 = pts["busy_prob"].to_numpy() ** 7
    rare = p7 * pts["n_folios"].to_numpy() * 512 * pts["target_cpus"].to_numpy()
    for col in ("time_s", "flush_rounds", "ipis", "failed_folios", "window_mean_s", "cpu_time_s", "passes"):
        ok = _agree(a, m, col, f"{col}_se")
        ok |= (m[f"{col}_se"].to_numpy() == 0) & (np.abs(m[col] - a[col]).to_numpy() <= rare + 1e-9)
        assert ok.all(), (col, pts[~ok].head(3).to_dict("records"), a[col][~ok].head(3), m[col][~ok].head(3))
