"""CPU copy bandwidth against transfer size and against threads (memory-bound and cache-hot)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence

import numpy as np

from models.measure.native import kernels
from models.measure.records import Result, Settings, mean_sd
from models.measure.topology import KIB, MIB, SIZES_KB, ProgressFn, Topology


def _offsets(n_chunks: int, chunk_words: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    src = rng.permutation(n_chunks).astype(np.int64) * chunk_words
    dst = rng.permutation(n_chunks).astype(np.int64) * chunk_words
    return src, dst


def measure_copy_sizes(
    src: np.ndarray, dst: np.ndarray, s: Settings, progress: ProgressFn, rng: np.random.Generator
) -> list[Result]:
    """Single-thread copy bandwidth per transfer size: memory-bound, cache-hot, and one Python call per 4K."""
    copy = kernels()["copy_chunks"]
    out: list[Result] = []
    buf_bytes = src.nbytes
    for kb in SIZES_KB:
        size = kb * KIB
        words = size // 8
        n = buf_bytes // size
        so, do = _offsets(n, words, rng)
        copy(src, dst, so[:2], do[:2], words, 1)
        samples = []
        for _ in range(s.copy_repeats):
            t0 = time.perf_counter()
            copy(src, dst, so, do, words, 1)
            samples.append(n * size / (time.perf_counter() - t0))
        m, sd = mean_sd(samples)
        common = {"folio_kb": kb, "n_folios": n, "copy_engine": "cpu", "copy_threads": 1}
        out.append(
            Result(
                "copy_bytes_per_s",
                m,
                "B/s",
                sd,
                "memory",
                dict(common),
                f"user-space numba copy of {n} chunks of {kb} KiB in random order between two "
                f"{buf_bytes // MIB} MiB buffers (> LLC {{llc}}); bytes copied / time "
                "(reads + writes = 2x traffic)",
                s.copy_repeats,
            )
        )
        k = max(1, s.hot_bytes // size)
        reps = max(1, s.hot_copy_bytes // (k * size))
        hs = np.arange(k, dtype=np.int64) * words
        hd = hs.copy()
        copy(src, dst, hs, hd, words, 1)
        samples = []
        for _ in range(s.copy_repeats):
            t0 = time.perf_counter()
            copy(src, dst, hs, hd, words, reps)
            samples.append(k * size * reps / (time.perf_counter() - t0))
        m, sd = mean_sd(samples)
        out.append(
            Result(
                "copy_bytes_per_s",
                m,
                "B/s",
                sd,
                "cache-hot",
                {**common, "n_folios": k},
                f"the same {k} chunk(s) of {kb} KiB ({k * size // KIB} KiB working set) copied {reps} times",
                s.copy_repeats,
            )
        )
        progress(f"copy {kb} KiB")
    # Contrast: one interpreted call per 4 KiB page (what a per-page Python loop would measure).
    one_s, one_d = np.zeros(1, np.int64), np.zeros(1, np.int64)
    words = 4 * KIB // 8
    calls = 2000 if s.quick else 10000
    samples = []
    for _ in range(s.copy_repeats):
        t0 = time.perf_counter()
        for _i in range(calls):
            copy(src, dst, one_s, one_d, words, 1)
        samples.append(calls * 4 * KIB / (time.perf_counter() - t0))
    m, sd = mean_sd(samples)
    out.append(
        Result(
            "copy_bytes_per_s",
            m,
            "B/s",
            sd,
            "python-call-per-4k",
            {"folio_kb": 4, "n_folios": 1, "copy_engine": "cpu", "copy_threads": 1},
            "contrast only: one Python->numba call per cache-hot 4 KiB copy (call overhead dominates)",
            s.copy_repeats,
        )
    )
    return out


def _threaded_copy(
    src: np.ndarray, dst: np.ndarray, so: np.ndarray, do: np.ndarray, words: int, cpus: Sequence[int]
) -> float:
    """Aggregate bytes/s of len(cpus) pinned threads copying interleaved parts of one chunk list."""
    copy = kernels()["copy_chunks"]
    t = len(cpus)
    parts = [(so[i::t].copy(), do[i::t].copy()) for i in range(t)]
    barrier = threading.Barrier(t)
    spans: list[tuple[float, float]] = [(0.0, 0.0)] * t
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            os.sched_setaffinity(0, {cpus[i]})
            ps, pd_ = parts[i]
            barrier.wait()
            t0 = time.perf_counter()
            copy(src, dst, ps, pd_, words, 1)
            spans[i] = (t0, time.perf_counter())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(t)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise errors[0]
    wall = max(e for _, e in spans) - min(b for b, _ in spans)
    return so.shape[0] * words * 8 / wall


def measure_copy_threads(
    src: np.ndarray,
    dst: np.ndarray,
    topo: Topology,
    s: Settings,
    progress: ProgressFn,
    rng: np.random.Generator,
) -> list[Result]:
    """Aggregate memory-bound copy bandwidth with 1 … nproc pinned threads (nogil numba)."""
    out: list[Result] = []
    for kb in s.thread_sizes_kb:
        size = kb * KIB
        words = size // 8
        n = src.nbytes // size
        so, do = _offsets(n, words, rng)
        for t in range(1, topo.nproc + 1):
            cpus = topo.cpus[:t]
            samples = [_threaded_copy(src, dst, so, do, words, cpus) for _ in range(s.copy_repeats)]
            m, sd = mean_sd(samples)
            sample_list = list(samples)
            out.append(
                Result(
                    "copy_bytes_per_s",
                    m,
                    "B/s",
                    sd,
                    "memory-threads",
                    {
                        "folio_kb": kb,
                        "n_folios": n,
                        "copy_engine": "cpu" if t == 1 else "mt-cpu",
                        "copy_threads": t,
                    },
                    f"{t} thread(s) pinned to CPUs {list(cpus)}, each copying every {t}-th of {n} "
                    "random-order "
                    f"{kb} KiB chunks of {src.nbytes // MIB} MiB buffers; total bytes / wall time",
                    s.copy_repeats,
                    samples=sample_list,
                )
            )
            progress(f"copy threads {t} × {kb} KiB")
    return out
