"""How much Monte Carlo work fits: scratch memory per run and folio simulations per run.

The Monte Carlo kernel (:func:`models.montecarlo.mc_kernel`) allocates, once per call, scratch
arrays as long as the largest point's folio count ``N`` (ten 8-byte arrays: folio classes, batch
starts, pending, failed, split and writeback flags, keys, three rows of pass runs) and as long as
its largest window count
``W`` (six 8-byte arrays: unmap order, times, windows, stalls and two selection buffers), where a
point's windows are its folios plus the base-page pieces each folio may split into:
``W = n_folios + Σ folios_of_size × max(size_kb / page_kb, 1)`` over the sizes of its mix. It then
simulates every folio of every point in each of ``replicas`` calls. Both grow without bound:
``n_folios = 1e18`` asks for exabytes and died of ``MemoryError``, and 10^6 folios of 2 MiB on 4 KiB
pages ask for 24 GB. :func:`montecarlo_refusal` refuses such work before it starts, saying what
fits. The analytic and regression models have no such limit (their cost does not grow with
``n_folios``).
"""

from __future__ import annotations

import numpy as np

#: Bytes of scratch per unit of the largest folio count and of the largest window count.
MC_BYTES_PER_FOLIO = 10 * 8
MC_BYTES_PER_WINDOW = 6 * 8
#: Largest scratch of one run (2 GiB).
MC_MAX_SCRATCH_BYTES = 2**31
#: Largest ``n_folios`` of a point of base-page folios (no pieces: one window per folio).
MC_MAX_N_FOLIOS = MC_MAX_SCRATCH_BYTES // (MC_BYTES_PER_FOLIO + 2 * MC_BYTES_PER_WINDOW)
#: Largest number of folio simulations (``n_folios`` summed over the points, times ``replicas``)
#: of one run: about 20 minutes on one core at the benchmark's 80 M folios/s (README, Benchmarks).
MC_MAX_FOLIO_DRAWS = 10**11
#: Fewest replicas that give a standard error.
MC_MIN_REPLICAS = 2


def montecarlo_windows(
    n_folios: np.ndarray, mix_kb: np.ndarray, mix_folios: np.ndarray, mix_len: np.ndarray, page_kb: np.ndarray
) -> np.ndarray:
    """Windows of each point the kernel makes room for: its folios plus their base-page pieces.

    Parameters
    ----------
    n_folios : numpy.ndarray
        Folios per call, one per point.
    mix_kb, mix_folios : numpy.ndarray
        (points, sizes): KiB and folio count of each size of the point's mix (a single
        ``folio_kb`` is a mix of one size); entries beyond ``mix_len`` are ignored.
    mix_len : numpy.ndarray
        Sizes in each point's mix.
    page_kb : numpy.ndarray
        Base page of each point's profile, KiB.
    """
    kb = np.asarray(mix_kb, dtype=np.float64)
    used = np.arange(kb.shape[1])[None, :] < np.asarray(mix_len)[:, None]
    pieces = np.where(
        used, np.asarray(mix_folios, dtype=np.float64) * np.maximum(kb / page_kb[:, None], 1.0), 0.0
    )
    return np.asarray(n_folios, dtype=np.float64) + pieces.sum(axis=1)


def montecarlo_refusal(n_folios: np.ndarray, windows: np.ndarray, replicas: int) -> tuple[int, str] | None:
    """Why Monte Carlo work does not fit, or ``None`` when it does.

    Parameters
    ----------
    n_folios : numpy.ndarray
        Folios per ``migrate_pages()`` call of each (already validated) point.
    windows : numpy.ndarray
        Windows of each point (:func:`montecarlo_windows`).
    replicas : int
        Simulated calls per point (at least :data:`MC_MIN_REPLICAS`; the kernel refuses fewer).

    Returns
    -------
    tuple of (int, str) or None
        ``(i, why)``: point ``i`` needs too much scratch memory; ``(-1, why)``: the run as a whole
        (all points, or ``replicas``) is too much work. ``why`` says what fits.
    """
    n = np.asarray(n_folios, dtype=np.float64)
    w = np.asarray(windows, dtype=np.float64)
    if len(n) == 0:
        return None
    limit_mib = MC_MAX_SCRATCH_BYTES // 2**20
    own = MC_BYTES_PER_FOLIO * n + MC_BYTES_PER_WINDOW * w
    over = np.flatnonzero(own > MC_MAX_SCRATCH_BYTES)
    if len(over):
        i = int(over[0])
        per_folio = own[i] / n[i]
        fit = int(MC_MAX_SCRATCH_BYTES // per_folio)
        return i, (
            f"{n[i]:.4g} folios need {own[i] / 2**20:,.0f} MiB of Monte Carlo scratch ({per_folio:,.0f} bytes "
            f"per folio of these sizes, pieces of split folios included), above {limit_mib:,} MiB: up to "
            f"{fit:,} folios of these sizes fit (the analytic model has no such limit)"
        )
    run = MC_BYTES_PER_FOLIO * n.max() + MC_BYTES_PER_WINDOW * w.max()
    if run > MC_MAX_SCRATCH_BYTES:  # each point fits alone, the largest two together do not
        return -1, (
            f"the points need {run / 2**20:,.0f} MiB of Monte Carlo scratch together (the most folios and "
            f"the most windows come from different points), above {limit_mib:,} MiB; "
            "the points with the most folios or the largest folios fit in a run of their own"
        )
    draws = float(n.sum()) * float(replicas)
    if draws > MC_MAX_FOLIO_DRAWS:
        return -1, (
            f"Monte Carlo work of {draws:.3g} folio simulations (n_folios summed over the points "
            f"x {replicas:,} replicas) is above the limit of {MC_MAX_FOLIO_DRAWS:.0e} (about 20 min on one "
            "core); fewer points, folios or replicas fit"
        )
    return None


__all__ = [
    "MC_BYTES_PER_FOLIO",
    "MC_BYTES_PER_WINDOW",
    "MC_MAX_FOLIO_DRAWS",
    "MC_MAX_N_FOLIOS",
    "MC_MAX_SCRATCH_BYTES",
    "MC_MIN_REPLICAS",
    "montecarlo_refusal",
    "montecarlo_windows",
]
