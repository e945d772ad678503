"""Tuning recommendations: the batch limit, copy engine and thread count to use.

Pure functions over small tables (no Dash, no files): the explorer and ``foliotune recommend`` both
call :func:`recommend` on the same candidate rows, so they give the same answer for the same inputs.
The rows come from a sweep (:mod:`app.results_view`, :mod:`app.queries`) or are evaluated live for any workload
(:mod:`app.live`); exports are in :mod:`app.recommend_exports`.

The package: :mod:`~app.recommend.choices` (the choice, constraint and recommendation types, the
profile's default), :mod:`~app.recommend.intervals` (90 % intervals of throughput and gains),
:mod:`~app.recommend.rule` (the rule below, one workload; the marginal view) and
:mod:`~app.recommend.weighted` (several weighted workloads, one choice).

The rule:

1. *Candidates* are the rows for one profile and one workload (every other parameter fixed), one row
   per choice ``(batch_limit_pages, copy_engine, copy_threads)``; infeasible rows are dropped.
2. A choice is *allowed* when its ``stall_p99_s`` is within the stall budget and, when given, its
   ``cpu_time_s`` and ``remote_cpu_time_s`` (CPU time other CPUs spend in flush IPIs) are within
   their limits.
3. The allowed choice with the most ``pages_per_s`` wins, except that choices statistically tied with
   it (difference within the 90 % Monte Carlo noise of the two; without Monte Carlo errors, exact
   ties only) are resolved towards the cheaper choice: fewer copy threads, then the plain CPU copy,
   then, among the limits that behave alike for that engine (within noise of its best, or the same
   analytic result), **the batch limit nearest to the profile's kernel default** (``NR_MAX_BATCHED_MIGRATION`` =
   ``HPAGE_PMD_NR``: 512 with 4 KiB pages, 8192 with 64 KiB pages), the default itself when it is
   among them. The constant is kernel-wide: a limit that behaves like the default for this workload
   (e.g. every limit up to 512 for 2 MiB folios, one folio per batch) must not change every other
   folio size's batching for no gain.
4. The gains are against the profile's kernel default (its default limit, CPU copy, one thread) for
   the same workload: ``gain_over_default`` (the whole choice), ``gain_from_batch_limit`` (the chosen
   limit against the default limit with the same engine and threads) and ``gain_from_engine`` (the
   engine and threads at the default limit against the CPU copy), each with a 90 % interval from the
   Monte Carlo standard errors and, with a fitted regression, its prediction intervals. When the gain
   interval includes 1 the choice is "not distinguishable from the default".
5. Every candidate carries the same intervals (pages/s, gain, p99 stall); a candidate whose stall
   interval crosses the budget is flagged. The stall model is an assumption (:data:`STALL_ASSUMPTION`).
6. *Binding* constraints are the ones that exclude a choice with more pages/s than the recommended
   one; with none, the recommendation is the throughput optimum of the candidates.

Several workloads (e.g. 70 % NUMA-balancing promotion of 4 KiB pages, 30 % THP compaction), each
under its own stall budget, are combined by :func:`recommend_weighted`: one kernel-wide choice, its
throughput the weighted harmonic mean (weights are shares of the migrated base pages), allowed only
when every workload meets its own limits.

References
----------
mm/migrate.c, ``NR_MAX_BATCHED_MIGRATION`` and ``migrate_pages()`` (Linux 6.3+): the cap counts base
pages of all folio sizes, so one constant governs every caller of ``migrate_pages()``.
"""

from app.recommend.choices import (
    CHOICE,
    DEFAULT_CHOICE,
    NOT_DISTINGUISHABLE,
    OPTIONAL_WORKLOAD,
    STALL_ASSUMPTION,
    WORKLOAD,
    Z90,
    Choice,
    Constraints,
    Interval,
    Provenance,
    Recommendation,
    RegressionFn,
    default_choice,
    default_limit_pages,
)
from app.recommend.rule import marginal, recommend
from app.recommend.weighted import WorkloadPart, recommend_weighted

__all__ = [
    "CHOICE",
    "DEFAULT_CHOICE",
    "NOT_DISTINGUISHABLE",
    "OPTIONAL_WORKLOAD",
    "STALL_ASSUMPTION",
    "WORKLOAD",
    "Z90",
    "Choice",
    "Constraints",
    "Interval",
    "Provenance",
    "Recommendation",
    "RegressionFn",
    "WorkloadPart",
    "default_choice",
    "default_limit_pages",
    "marginal",
    "recommend",
    "recommend_weighted",
]
