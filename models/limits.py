"""How much Monte Carlo work fits: scratch memory per point and folio draws per run.

The Monte Carlo kernel (:func:`models.montecarlo.mc_kernel`) allocates, once per call, eight float64
buffers as long as the largest point's ``n_folios`` (the unmapped windows, the stalls, two
selection buffers, the key buffer and three rows of pass runs), and then simulates every folio of
every point in each of ``replicas`` calls. Both grow without bound with ``n_folios``: ``1e18``
folios asks for 64 EB of scratch and dies of ``MemoryError`` after minutes of nothing. These limits
refuse such work up front with a message saying what fits. The analytic and regression models
have no such limits (their cost does not depend on ``n_folios``).
"""

from __future__ import annotations

import numpy as np

#: Scratch bytes the Monte Carlo kernel keeps per folio of the largest point (8 float64 buffers).
MC_SCRATCH_BYTES_PER_FOLIO = 8 * 8
#: Largest scratch allowed (1 GiB), hence the largest ``n_folios`` of a Monte Carlo point.
MC_MAX_SCRATCH_BYTES = 2**30
MC_MAX_N_FOLIOS = MC_MAX_SCRATCH_BYTES // MC_SCRATCH_BYTES_PER_FOLIO  # 16,777,216
#: Largest number of folio simulations (``n_folios`` summed over the points, times ``replicas``)
#: of one run: about 20 minutes on one core at the benchmark's 80 M folios/s (README, Benchmarks).
MC_MAX_FOLIO_DRAWS = 10**11
#: Fewest replicas that give a standard error.
MC_MIN_REPLICAS = 2


def montecarlo_refusal(n_folios: np.ndarray, replicas: int) -> tuple[int, str] | None:
    """Why Monte Carlo work does not fit, or ``None`` when it does.

    Parameters
    ----------
    n_folios : numpy.ndarray
        Folios per ``migrate_pages()`` call of each (already validated) point.
    replicas : int
        Simulated calls per point (at least :data:`MC_MIN_REPLICAS`; the kernel refuses fewer).

    Returns
    -------
    tuple of (int, str) or None
        ``(i, why)``: point ``i`` is too large for the scratch memory; ``(-1, why)``: the run as a
        whole (all points, or ``replicas``) is too much work. ``why`` says what fits.
    """
    n = np.asarray(n_folios, dtype=np.float64)
    over = np.flatnonzero(n > MC_MAX_N_FOLIOS)
    if len(over):
        i = int(over[0])
        return i, (
            f"{n[i]:.4g} folios do not fit the Monte Carlo's scratch memory "
            f"({MC_SCRATCH_BYTES_PER_FOLIO} bytes per folio, at most {MC_MAX_SCRATCH_BYTES // 2**20:,} MiB): "
            f"up to {MC_MAX_N_FOLIOS:,} folios per point fit (the analytic model has no such limit)"
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
    "MC_MAX_FOLIO_DRAWS",
    "MC_MAX_N_FOLIOS",
    "MC_MAX_SCRATCH_BYTES",
    "MC_MIN_REPLICAS",
    "MC_SCRATCH_BYTES_PER_FOLIO",
    "montecarlo_refusal",
]
