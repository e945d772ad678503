"""``foliotune bench models``: model throughput against baselines measured in the same run.

- analytic points/s per core: the analytic kernel over a mixed grid (every engine, folio size,
  batch limit, busy probability and access rate), in blocks that reuse a warm output buffer;
- stream baseline: a compiled loop that reads the same input arrays (the 16 per-point vectors and
  each point's first mix size and count) and writes the same output arrays (the bytes the analytic
  model must move at the least);
- Monte Carlo simulated folios/s per core: folios × replicas simulated per second;
- RNG baseline: NumPy's PCG64 generating the same number of uniform variates as the Monte Carlo
  run drew, into a warm buffer.

Everything runs on one thread (per core = per process here); first touch of memory is done before
timing.
"""

from __future__ import annotations

import time

import numba as nb
import numpy as np
import pandas as pd

from models.analytic import N_OUT, analytic_kernel, emax_table
from models.montecarlo import N_COLS, kernel_inputs, mc_kernel, point_seeds
from models.params import check_points, complete_points
from models.profiles import profile_names, profile_table


def _mixed_points(n: int, rng: np.random.Generator, profile: str = "epyc-zen3-2s") -> pd.DataFrame:
    engine = rng.choice(["cpu", "mt-cpu", "dma"], n)
    return pd.DataFrame(
        {
            "profile": profile,
            "folio_kb": rng.choice([4, 16, 64, 512, 2048], n),
            "n_folios": rng.choice([64, 512, 4096, 65536], n),
            "batch_limit_pages": rng.choice([1, 16, 64, 256, 512, 1024, 4096], n),
            "copy_engine": engine,
            "copy_threads": np.where(engine == "cpu", 1, rng.choice([1, 2, 4, 8, 16], n)),
            "target_cpus": rng.choice([1, 2, 8, 32, 64], n),
            "mapcount": rng.choice([1, 2], n),
            "busy_prob": rng.choice([0.0, 0.0, 0.01, 0.1, 0.5], n),
            "access_rate_hz": rng.choice([0.0, 100.0, 1000.0, 10000.0], n),
            "mode": rng.choice(["sync", "async"], n),
        }
    )


@nb.njit(cache=True, nogil=True)
def _stream_kernel(vectors, mix_kb, mix_n, out):  # pragma: no cover - compiled
    """Read every input the analytic kernel reads per point (the rows of ``vectors``, and the first
    size and count of each point's mix, all a one-size point has) and write every output once."""
    for i in range(vectors.shape[1]):
        s = mix_kb[i, 0] + mix_n[i, 0]
        for k in range(vectors.shape[0]):
            s += vectors[k, i]
        for j in range(out.shape[0]):
            out[j, i] = s


def _timed(fn, min_seconds: float) -> float:
    """Seconds per call of fn(), best of repeated runs lasting at least min_seconds in all."""
    fn()  # warm up (compile, first touch)
    best = float("inf")
    spent = 0.0
    runs = 0
    while spent < min_seconds or runs < 3:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best = min(best, dt)
        spent += dt
        runs += 1
    return best


def bench_models(
    n_points: int = 2_000_000, min_seconds: float = 1.0, block: int = 1 << 16
) -> dict[str, float]:
    rng = np.random.default_rng(12345)
    arrays, reasons = check_points(complete_points(_mixed_points(n_points, rng)))
    assert not (reasons != "").any()
    table = profile_table(profile_names())
    emax = emax_table(table)
    out = np.zeros((N_OUT, block))
    # The analytic kernel's inputs, in its order (models.analytic.analytic_outputs).
    inputs = (
        arrays.profile_index, arrays.kernel_code, arrays.mix_len, arrays.mix_kb, arrays.mix_folios,
        arrays.n_folios, arrays.batch_limit_pages, arrays.engine_code.astype(np.float64), arrays.copy_threads,
        arrays.target_cpus, arrays.mapcount, arrays.busy_prob, arrays.access_rate_hz, arrays.sync_mode,
        arrays.numa_hinting, arrays.writeback_prob, arrays.writeback_wait_s, arrays.alloc_fail_prob,
    )  # fmt: skip
    vectors = np.vstack([np.asarray(x, dtype=np.float64) for x in inputs if np.ndim(x) == 1])
    mix_kb = np.ascontiguousarray(arrays.mix_kb, dtype=np.float64)
    mix_n = np.ascontiguousarray(arrays.mix_folios, dtype=np.float64)

    analytic_inputs = (
        arrays.profile_index, arrays.kernel_code, arrays.mix_len, arrays.mix_kb, arrays.mix_folios,
        arrays.n_folios, arrays.batch_limit_pages, arrays.engine_code.astype(np.float64), arrays.copy_threads,
        arrays.target_cpus, arrays.mapcount, arrays.busy_prob, arrays.access_rate_hz, arrays.sync_mode,
        arrays.numa_hinting, arrays.writeback_prob, arrays.writeback_wait_s, arrays.alloc_fail_prob,
    )  # fmt: skip

    def run_analytic() -> None:
        for s in range(0, n_points, block):
            e = min(s + block, n_points)
            sl = [x[s:e] for x in analytic_inputs]
            analytic_kernel(*sl, table, emax, out[:, : e - s])

    def run_stream() -> None:
        for s in range(0, n_points, block):
            e = min(s + block, n_points)
            _stream_kernel(vectors[:, s:e], mix_kb[s:e], mix_n[s:e], out[:, : e - s])

    t_analytic = _timed(run_analytic, min_seconds)
    t_stream = _timed(run_stream, min_seconds)

    # Monte Carlo: a smaller mixed set of points, all their folios simulated.
    mc_points = _mixed_points(256, np.random.default_rng(7))
    mc_points["n_folios"] = 4096
    mc_arrays, _ = check_points(complete_points(mc_points))
    replicas = 8
    seeds = point_seeds(mc_arrays, profile_names(), 1)
    mc_out = np.zeros((N_COLS, len(mc_arrays)))
    mc_inputs = kernel_inputs(mc_arrays, seeds)
    draws_box = [0]

    def run_mc() -> None:
        draws_box[0] = mc_kernel(*mc_inputs, table, replicas, mc_out)

    t_mc = _timed(run_mc, min_seconds)
    folios = float(mc_arrays.n_folios.sum()) * replicas
    draws = int(draws_box[0])
    gen = np.random.Generator(np.random.PCG64(3))
    buf = np.empty(draws)

    def run_rng() -> None:
        gen.random(out=buf)

    t_rng = _timed(run_rng, min_seconds)
    result = {
        "analytic_points_per_s_per_core": n_points / t_analytic,
        "stream_points_per_s_per_core": n_points / t_stream,
        "montecarlo_folios_per_s_per_core": folios / t_mc,
        "rng_folios_per_s_per_core": folios / t_rng,
        "montecarlo_draws_per_folio": draws / folios,
    }
    result["analytic_fraction_of_stream"] = (
        result["analytic_points_per_s_per_core"] / result["stream_points_per_s_per_core"]
    )
    result["montecarlo_fraction_of_rng"] = (
        result["montecarlo_folios_per_s_per_core"] / result["rng_folios_per_s_per_core"]
    )
    return result
