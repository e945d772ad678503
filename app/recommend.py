"""Tuning recommendations: the batch limit, copy engine and thread count to use (DESIGN.md §4).

Pure functions over small tables (no Dash, no files): the explorer and ``foliotune recommend`` both
call :func:`recommend` on the same candidate rows, so they give the same answer for the same inputs.
The rows come from a sweep (:mod:`app.results_view`, :mod:`app.queries`) or are evaluated live for any workload
(:mod:`app.live`); exports are in :mod:`app.recommend_exports`.

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

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from models.errors import UserError
from models.params import CHOICE as _CHOICE
from models.params import CORE_WORKLOAD as _WORKLOAD
from models.params import OPTIONAL_WORKLOAD as _OPTIONAL_WORKLOAD

# What foliotune recommends; the workload (everything of a point that is neither the profile nor a
# choice); the optional workload parameters (the kernel-faithful mechanism's, passed through when
# given). All derive from the parameter table, models.params.TABLE.
CHOICE: tuple[str, ...] = _CHOICE
WORKLOAD: tuple[str, ...] = _WORKLOAD
OPTIONAL_WORKLOAD: tuple[str, ...] = _OPTIONAL_WORKLOAD
#: The x86 kernel default; a profile's own default comes from :func:`default_choice`.
DEFAULT_CHOICE: dict[str, Any] = {"batch_limit_pages": 512, "copy_engine": "cpu", "copy_threads": 1}
ENGINE_RANK: dict[str, int] = {"cpu": 0, "mt-cpu": 1, "dma": 2, "dsa": 3}
Z90 = 1.6448536269514722  # two-sided 90 % normal quantile
RUNNERS_UP = 4
STALL_ASSUMPTION = (
    "the p99 stall is a model assumption, not a measurement: each folio is touched as a Poisson "
    "stream (access_rate_hz) and the first touch inside its unmapped window blocks until the remap; "
    "no published measurement of this window exists"
)
NOT_DISTINGUISHABLE = "not distinguishable from the default"

#: (points with parameter columns) -> table with pages_per_s, pages_per_s_lo, pages_per_s_hi
RegressionFn = Callable[[pd.DataFrame], pd.DataFrame]
Interval = tuple[float, float, float]  # (point, lo, hi)


def default_limit_pages(profile: str) -> int:
    """The profile's kernel default ``NR_MAX_BATCHED_MIGRATION`` (``HPAGE_PMD_NR``) in base pages.

    Read from the profile's ``default_batch_limit_pages``; a profile without it (or an unknown
    name) falls back to ``HPAGE_PMD_NR`` for its page size (2 MiB / 4 KiB = 512 on x86 with 4 KiB
    pages, 8192 with 64 KiB pages), else 512.
    """
    try:
        from models.profiles import get_profile

        prof = get_profile(profile)
    except (UserError, KeyError, ValueError):
        return int(DEFAULT_CHOICE["batch_limit_pages"])
    v = prof.values.get("default_batch_limit_pages")
    if v is not None and math.isfinite(float(v)) and float(v) >= 1:
        return int(v)
    # a page table holds page_size / 8 entries: HPAGE_PMD_NR = page_kb * 1024 / 8
    page_kb = float(prof.values.get("page_kb", 4.0))
    return int(page_kb * 128) if page_kb >= 4 else 512


def default_choice(profile: str) -> dict[str, Any]:
    """The baseline for ``profile``: its kernel default limit with the CPU copy engine, one thread."""
    return {"batch_limit_pages": default_limit_pages(profile), "copy_engine": "cpu", "copy_threads": 1}


@dataclass(frozen=True)
class Constraints:
    """Limits a choice must meet (SI). ``None`` = no limit."""

    stall_p99_s: float
    cpu_time_s: float | None = None
    remote_cpu_time_s: float | None = None

    def __post_init__(self) -> None:
        v = self.stall_p99_s
        if v is None or not math.isfinite(float(v)) or float(v) <= 0:
            raise UserError(f"stall budget: must be > 0, not {v!r}")
        for name in ("cpu_time_s", "remote_cpu_time_s"):
            v = getattr(self, name)
            if v is not None and (not math.isfinite(float(v)) or float(v) <= 0):
                raise UserError(f"constraint {name}: must be > 0, not {v!r}")

    def active(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.as_dict().items() if v is not None}

    def as_dict(self) -> dict[str, float | None]:
        return {
            "stall_p99_s": float(self.stall_p99_s),
            "cpu_time_s": None if self.cpu_time_s is None else float(self.cpu_time_s),
            "remote_cpu_time_s": None if self.remote_cpu_time_s is None else float(self.remote_cpu_time_s),
        }


@dataclass(frozen=True)
class Provenance:
    """Where the numbers come from: the sweep (or the live evaluation), the model code and the data."""

    sweep_spec_hash: str = ""
    model_version: str = ""  # code version of the cost model
    data_hash: str = ""  # SHA-256 over the sweep's chunk files ("" when evaluated live)
    results_model: str = ""  # analytic | montecarlo
    regression_version: str = ""
    measurements_hash: str = ""
    source: str = "sweep"  # sweep | live (seed, replicas)

    def as_dict(self) -> dict[str, str]:
        return {
            "source": self.source,
            "sweep_spec_hash": self.sweep_spec_hash,
            "model_version": self.model_version,
            "data_hash": self.data_hash,
            "results_model": self.results_model,
            "regression_version": self.regression_version,
            "measurements_hash": self.measurements_hash,
        }


@dataclass(frozen=True)
class Choice:
    """One candidate choice, its predicted figures (SI) and their 90 % intervals."""

    batch_limit_pages: int
    copy_engine: str
    copy_threads: int
    pages_per_s: float
    pages_per_s_se: float
    stall_p99_s: float
    stall_p99_s_se: float
    cpu_time_s: float
    remote_cpu_time_s: float
    ipis: float
    violates: tuple[str, ...] = ()
    # filled by recommend(): intervals (Monte Carlo, widened by the regression's when present)
    pages_per_s_lo: float = math.nan
    pages_per_s_hi: float = math.nan
    stall_p99_s_lo: float = math.nan
    stall_p99_s_hi: float = math.nan
    gain: Interval | None = None  # over the default (default limit, cpu, 1 thread)
    gain_from_batch_limit: Interval | None = None  # over (default limit, same engine and threads)
    stall_crosses_budget: bool = False
    pages_per_s_analytic: float = math.nan
    stall_by_workload: tuple[float, ...] = ()  # recommend_weighted: each workload's p99 stall

    def key(self) -> tuple[int, str, int]:
        return (self.batch_limit_pages, self.copy_engine, self.copy_threads)

    def label(self) -> str:
        return f"{self.batch_limit_pages} pages, {self.copy_engine} ×{self.copy_threads}"


@dataclass(frozen=True)
class Recommendation:
    profile: str
    workload: dict[str, Any]
    constraints: Constraints
    provenance: Provenance
    feasible: bool
    choice: Choice  # the recommendation (or, when nothing is allowed, the lowest-stall choice)
    baseline: Choice | None  # the profile's default: default limit, cpu copy, one thread
    gain: float | None
    gain_lo: float | None
    gain_hi: float | None
    gain_mc: tuple[float, float] | None
    gain_regression: tuple[float, float, float] | None  # (point, lo, hi)
    pages_per_s_lo: float
    pages_per_s_hi: float
    regression_pages_per_s: tuple[float, float, float] | None
    regression_note: str
    binding: tuple[str, ...]
    why: str
    runners_up: tuple[Choice, ...] = ()
    tied: int = 0
    n_candidates: int = 0
    n_allowed: int = 0
    default_limit_pages: int = 512
    gain_from_batch_limit: Interval | None = None
    gain_from_engine: Interval | None = None
    engine_share: float | None = None  # share of log(gain_over_default) due to the engine
    distinguishable: bool | None = None  # gain interval excludes 1 (None: no gain)
    choices: tuple[Choice, ...] = ()  # every candidate, with intervals
    workloads: tuple[dict[str, Any], ...] = ()  # recommend_weighted: weight, workload, constraints
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def default_choice(self) -> dict[str, Any]:
        return {"batch_limit_pages": self.default_limit_pages, "copy_engine": "cpu", "copy_threads": 1}

    def baseline_key(self) -> tuple[int, str, int]:
        return (self.default_limit_pages, "cpu", 1)


# --------------------------------------------------------------------------------------------------
# The rule


def _col(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name in frame.columns:
        return np.asarray(pd.to_numeric(frame[name], errors="coerce"), dtype=np.float64)
    return np.full(len(frame), np.nan)


def _choices(cands: pd.DataFrame, cons: Constraints) -> list[Choice]:
    pps, pps_se = _col(cands, "pages_per_s"), _col(cands, "pages_per_s_se")
    stall, stall_se = _col(cands, "stall_p99_s"), _col(cands, "stall_p99_s_se")
    cpu, remote, ipis = _col(cands, "cpu_time_s"), _col(cands, "remote_cpu_time_s"), _col(cands, "ipis")
    ana = _col(cands, "pages_per_s_analytic")
    bl = _col(cands, "batch_limit_pages")
    th = _col(cands, "copy_threads")
    eng = cands["copy_engine"].astype(str).to_numpy()
    out = []
    for i in range(len(cands)):
        if not (np.isfinite(pps[i]) and np.isfinite(stall[i])):
            continue
        out.append(
            Choice(
                batch_limit_pages=int(bl[i]),
                copy_engine=str(eng[i]),
                copy_threads=int(th[i]),
                pages_per_s=float(pps[i]),
                pages_per_s_se=float(pps_se[i]) if np.isfinite(pps_se[i]) else 0.0,
                stall_p99_s=float(stall[i]),
                stall_p99_s_se=float(stall_se[i]) if np.isfinite(stall_se[i]) else 0.0,
                cpu_time_s=float(cpu[i]),
                remote_cpu_time_s=float(remote[i]),
                ipis=float(ipis[i]),
                violates=_violations(float(stall[i]), float(cpu[i]), float(remote[i]), cons),
                pages_per_s_analytic=float(ana[i]),
            )
        )
    return out


def _violations(stall: float, cpu: float, remote: float, cons: Constraints) -> tuple[str, ...]:
    v = []
    if stall > cons.stall_p99_s:
        v.append("stall_p99_s")
    if cons.cpu_time_s is not None and not cpu <= cons.cpu_time_s:
        v.append("cpu_time_s")
    if cons.remote_cpu_time_s is not None and not remote <= cons.remote_cpu_time_s:
        v.append("remote_cpu_time_s")
    return tuple(v)


def _cost_key(c: Choice, default_limit: int) -> tuple[int, int, float, int]:
    """Cheaper first: fewer threads, the CPU copy, then the limit nearest the kernel default."""
    dist = abs(math.log2(max(c.batch_limit_pages, 1) / default_limit))
    return (c.copy_threads, ENGINE_RANK.get(c.copy_engine, 9), dist, c.batch_limit_pages)


def rank_allowed(choices: Sequence[Choice], default_limit: int = 512) -> tuple[list[Choice], int]:
    """Allowed choices, best first (see the module docstring), and how many tie with the best."""
    allowed = [c for c in choices if not c.violates]
    if not allowed:
        return [], 0
    allowed.sort(key=lambda c: (-c.pages_per_s, _cost_key(c, default_limit)))
    top = allowed[0]
    tied = [
        c
        for c in allowed
        if top.pages_per_s - c.pages_per_s <= Z90 * math.hypot(top.pages_per_s_se, c.pages_per_s_se)
    ]
    best = min(tied, key=lambda c: (_cost_key(c, default_limit), -c.pages_per_s))
    # The constant is kernel-wide: among the limits that behave like the best one for this engine and
    # thread count (within Monte Carlo noise of that engine's best, or the same analytic result, e.g.
    # every limit up to 512 pages for 2 MiB folios), take the one nearest the kernel default.
    same = [c for c in allowed if (c.copy_engine, c.copy_threads) == (best.copy_engine, best.copy_threads)]
    ref = max(same, key=lambda c: c.pages_per_s)
    equiv = [c for c in same if _behaves_like(c, ref)]
    best = min(equiv, key=lambda c: (_cost_key(c, default_limit), -c.pages_per_s))
    rest = [c for c in allowed if c is not best]
    return [best, *rest], len({id(c) for c in tied} | {id(c) for c in equiv}) - 1


def _behaves_like(c: Choice, ref: Choice) -> bool:
    """Within 90 % Monte Carlo noise of ``ref``'s pages/s, or the same analytic pages/s."""
    if ref.pages_per_s - c.pages_per_s <= Z90 * math.hypot(ref.pages_per_s_se, c.pages_per_s_se):
        return True
    a, b = c.pages_per_s_analytic, ref.pages_per_s_analytic
    return math.isfinite(a) and math.isfinite(b) and abs(a - b) <= 1e-9 * abs(b)


def _binding(choices: Sequence[Choice], best: Choice) -> tuple[str, ...]:
    better = [c for c in choices if c.violates and c.pages_per_s > best.pages_per_s]
    names: list[str] = []
    for c in sorted(better, key=lambda c: -c.pages_per_s):
        for v in c.violates:
            if v not in names:
                names.append(v)
    return tuple(names)


def _ratio(a: Choice, b: Choice) -> Interval:
    """a/b with its 90 % interval from independent standard errors (delta method in log space)."""
    r = a.pages_per_s / b.pages_per_s
    rel = math.hypot(
        a.pages_per_s_se / a.pages_per_s if a.pages_per_s else 0.0,
        b.pages_per_s_se / b.pages_per_s if b.pages_per_s else 0.0,
    )
    return (r, r * math.exp(-Z90 * rel), r * math.exp(Z90 * rel))


def _reg_ratio(a: Interval | None, b: Interval | None) -> Interval | None:
    """Ratio of two regression predictions; half-widths of the log intervals added in quadrature."""
    if a is None or b is None:
        return None
    if a == b:  # the same prediction: its errors cancel exactly
        return (1.0, 1.0, 1.0)
    h = math.hypot(math.log(a[2] / a[1]) / 2, math.log(b[2] / b[1]) / 2)
    g = a[0] / b[0]
    return (g, g * math.exp(-h), g * math.exp(h))


def _widen(mc: Interval | None, reg: Interval | None) -> Interval | None:
    """The Monte Carlo interval widened to cover the regression's (the point stays the model's)."""
    if mc is None:
        return None
    if reg is None:
        return mc
    return (mc[0], min(mc[1], reg[1]), max(mc[2], reg[2]))


def _regression_table(
    regression: RegressionFn, profile: str, workload: Mapping[str, Any], keys: Sequence[tuple[int, str, int]]
) -> dict[tuple[int, str, int], Interval]:
    rows = [{"profile": profile, **dict(workload), **dict(zip(CHOICE, k, strict=True))} for k in keys]
    table = regression(pd.DataFrame(rows))
    out: dict[tuple[int, str, int], Interval] = {}
    for i, k in enumerate(keys):
        try:
            p, lo, hi = (float(table[c].iloc[i]) for c in ("pages_per_s", "pages_per_s_lo", "pages_per_s_hi"))
        except (KeyError, IndexError, ValueError, TypeError):
            continue
        if all(math.isfinite(x) and x > 0 for x in (p, lo, hi)):
            out[k] = (p, lo, hi)
    return out


def _with_intervals(
    choices: Sequence[Choice],
    cons: Constraints,
    default_limit: int,
    base: Choice | None,
    reg: Mapping[tuple[int, str, int], Interval],
) -> list[Choice]:
    by_key = {c.key(): c for c in choices}
    out = []
    for c in choices:
        pps = (c.pages_per_s, c.pages_per_s - Z90 * c.pages_per_s_se, c.pages_per_s + Z90 * c.pages_per_s_se)
        pps = _widen(pps, reg.get(c.key())) or pps
        stall_lo = max(0.0, c.stall_p99_s - Z90 * c.stall_p99_s_se)
        stall_hi = c.stall_p99_s + Z90 * c.stall_p99_s_se
        gain = None
        if base is not None and base.pages_per_s > 0:
            gain = _widen(_ratio(c, base), _reg_ratio(reg.get(c.key()), reg.get(base.key())))
        same = by_key.get((default_limit, c.copy_engine, c.copy_threads))
        gbl = None
        if same is not None and same.pages_per_s > 0:
            gbl = _widen(_ratio(c, same), _reg_ratio(reg.get(c.key()), reg.get(same.key())))
        out.append(
            replace(
                c,
                pages_per_s_lo=pps[1],
                pages_per_s_hi=pps[2],
                stall_p99_s_lo=stall_lo,
                stall_p99_s_hi=stall_hi,
                gain=gain,
                gain_from_batch_limit=gbl,
                stall_crosses_budget=bool(c.stall_p99_s_se > 0 and stall_lo <= cons.stall_p99_s < stall_hi),
            )
        )
    return out


def recommend(
    candidates: pd.DataFrame,
    *,
    profile: str,
    workload: Mapping[str, Any],
    constraints: Constraints,
    baseline: pd.DataFrame | None = None,
    provenance: Provenance | None = None,
    regression: RegressionFn | None = None,
    regression_note: str = "",
    runners_up: int = RUNNERS_UP,
    default_limit: int | None = None,
) -> Recommendation:
    """The recommendation for one profile and workload (see the module docstring).

    ``candidates`` holds one row per choice (columns :data:`CHOICE` plus the outputs, and the Monte
    Carlo ``*_se`` columns when present). The baseline is the candidate row of the profile's default
    (``default_limit``, default :func:`default_limit_pages`, CPU copy, one thread), else the one-row
    ``baseline`` (``None`` and not among the candidates: no gain is given). ``regression`` predicts
    ``pages_per_s`` with a 90 % interval for parameter rows; when it is missing or fails, intervals
    are Monte Carlo only and ``regression_note`` says why.
    """
    choices = _choices(candidates, constraints)
    base = None
    dl = int(default_limit) if default_limit is not None else default_limit_pages(profile)
    dkey = (dl, "cpu", 1)
    base = next((c for c in choices if c.key() == dkey), None)
    if base is None and baseline is not None and len(baseline):
        b = _choices(baseline.iloc[:1], constraints)
        base = b[0] if b else None
    return _decide(
        choices,
        base,
        profile=profile,
        workload=workload,
        constraints=constraints,
        provenance=provenance,
        regression=regression,
        regression_note=regression_note,
        runners_up=runners_up,
        default_limit=dl,
    )


def _decide(
    choices: list[Choice],
    base: Choice | None,
    *,
    profile: str,
    workload: Mapping[str, Any],
    constraints: Constraints,
    provenance: Provenance | None,
    regression: RegressionFn | None,
    regression_note: str,
    runners_up: int,
    default_limit: int,
    workloads: tuple[dict[str, Any], ...] = (),
) -> Recommendation:
    if not choices:
        raise UserError(
            f"no feasible results for profile {profile!r} and this workload; "
            "choose another workload or sweep it first"
        )
    note = regression_note
    reg: dict[tuple[int, str, int], Interval] = {}
    if regression is not None:
        keys = [c.key() for c in choices]
        if base is not None and base.key() not in keys:
            keys.append(base.key())
        try:
            reg = _regression_table(regression, profile, workload, keys)
            if not reg:
                note = note or "regression gave no pages/s prediction for these choices"
        except Exception as exc:  # the regression is optional: say why it is missing, go on
            note = f"regression unavailable ({type(exc).__name__}: {' '.join(str(exc).split())[:160]})"
    elif not note:
        note = "no fitted regression; intervals are Monte Carlo only"
    if base is not None:
        base = _with_intervals([base], constraints, default_limit, base, reg)[0]
    choices = _with_intervals(choices, constraints, default_limit, base, reg)

    ranked, tied = rank_allowed(choices, default_limit)
    feasible = bool(ranked)
    others: Sequence[Choice]
    if feasible:
        best = ranked[0]
        others = ranked[1 : 1 + runners_up]
        binding = _binding(choices, best)
    else:
        # Nothing meets the limits: report the lowest-stall choice so the user sees what is possible.
        best = min(choices, key=lambda c: (c.stall_p99_s, -c.pages_per_s, _cost_key(c, default_limit)))
        others = tuple(
            sorted((c for c in choices if c is not best), key=lambda c: c.stall_p99_s)[:runners_up]
        )
        binding = tuple(sorted({v for c in choices for v in c.violates}))

    gain_mc = None
    if base is not None and base.pages_per_s > 0:
        g = _ratio(best, base)
        gain_mc = (g[1], g[2])
    gain_reg = _reg_ratio(reg.get(best.key()), reg.get(base.key())) if base is not None else None
    by_key = {c.key(): c for c in choices}
    eng_base = by_key.get((default_limit, best.copy_engine, best.copy_threads))
    gain_engine = None
    if base is not None and eng_base is not None and base.pages_per_s > 0:
        gain_engine = _widen(_ratio(eng_base, base), _reg_ratio(reg.get(eng_base.key()), reg.get(base.key())))
    share = None
    if best.gain is not None and gain_engine is not None and abs(math.log(best.gain[0])) > 1e-12:
        share = math.log(gain_engine[0]) / math.log(best.gain[0])
    distinguishable = None
    if best.gain is not None:
        distinguishable = not (best.gain[1] <= 1.0 <= best.gain[2])
    why = _why(best, feasible, binding, constraints, tied, base, distinguishable, default_limit)
    reg_best = reg.get(best.key())
    return Recommendation(
        profile=profile,
        workload=dict(workload),
        constraints=constraints,
        provenance=provenance or Provenance(),
        feasible=feasible,
        choice=best,
        baseline=base,
        gain=best.gain[0] if best.gain else None,
        gain_lo=best.gain[1] if best.gain else None,
        gain_hi=best.gain[2] if best.gain else None,
        gain_mc=gain_mc,
        gain_regression=gain_reg,
        pages_per_s_lo=best.pages_per_s_lo,
        pages_per_s_hi=best.pages_per_s_hi,
        regression_pages_per_s=reg_best,
        regression_note=note if reg_best is None else "",
        binding=binding,
        why=why,
        runners_up=tuple(others),
        tied=tied,
        n_candidates=len(choices),
        n_allowed=len(ranked),
        default_limit_pages=default_limit,
        gain_from_batch_limit=best.gain_from_batch_limit,
        gain_from_engine=gain_engine,
        engine_share=share,
        distinguishable=distinguishable,
        choices=tuple(choices),
        workloads=workloads,
    )


_CONSTRAINT_TEXT = {
    "stall_p99_s": "the p99 stall budget",
    "cpu_time_s": "the CPU-time limit",
    "remote_cpu_time_s": "the remote IPI CPU-time limit",
}


def _why(
    best: Choice,
    feasible: bool,
    binding: Sequence[str],
    cons: Constraints,
    tied: int,
    base: Choice | None,
    distinguishable: bool | None,
    default_limit: int,
) -> str:
    if not feasible:
        return (
            f"no choice meets {', '.join(_CONSTRAINT_TEXT[b] for b in binding)}; the lowest p99 stall is "
            f"{best.stall_p99_s * 1e6:.1f} µs ({best.label()})"
        )
    parts = []
    if binding:
        parts.append(
            "limited by " + " and ".join(_CONSTRAINT_TEXT[b] for b in binding) + ": faster choices exceed it"
        )
    else:
        parts.append("the highest throughput of the candidates; no constraint binds")
    parts.append(f"p99 stall {best.stall_p99_s * 1e6:.1f} µs of {cons.stall_p99_s * 1e6:g} µs budget")
    if best.stall_crosses_budget:
        parts.append("its p99 stall interval crosses the budget")
    if tied:
        parts.append(
            f"{tied} faster-looking choice(s) are within Monte Carlo noise; the cheapest, with the limit "
            f"nearest the kernel default {default_limit}, was taken"
        )
    if distinguishable is False:
        parts.append(f"{NOT_DISTINGUISHABLE}: the gain interval includes 1")
    if base is not None and base.violates:
        parts.append("the kernel default itself exceeds the limits")
    return "; ".join(parts)


# --------------------------------------------------------------------------------------------------
# Several workloads, one kernel-wide choice


@dataclass(frozen=True)
class WorkloadPart:
    """One workload of a weighted recommendation: its share of migrated base pages and its limits."""

    weight: float
    workload: Mapping[str, Any]
    constraints: Constraints
    candidates: pd.DataFrame

    def __post_init__(self) -> None:
        if not (math.isfinite(self.weight) and self.weight > 0):
            raise UserError(f"workload weight: must be > 0, not {self.weight!r}")


def recommend_weighted(
    parts: Sequence[WorkloadPart],
    *,
    profile: str,
    provenance: Provenance | None = None,
    runners_up: int = RUNNERS_UP,
    default_limit: int | None = None,
) -> Recommendation:
    """One choice for several workloads, each under its own limits (see the module docstring).

    Weights are shares of the migrated base pages (normalized to 1), so the combined throughput is
    the weighted harmonic mean ``1 / Σ wᵢ / ppsᵢ``; its standard error follows by the delta method.
    A choice is allowed only when every workload meets its own limits; its ``stall_p99_s`` is the
    largest of the workloads' (each is in ``stall_by_workload``). The combined constraint reported is
    the tightest stall budget.
    """
    if not parts:
        raise UserError("no workloads given")
    dl = int(default_limit) if default_limit is not None else default_limit_pages(profile)
    total = sum(p.weight for p in parts)
    w = [p.weight / total for p in parts]
    per = [{c.key(): c for c in _choices(p.candidates, p.constraints)} for p in parts]
    common = [k for k in per[0] if all(k in d for d in per[1:])]
    tight = min(p.constraints.stall_p99_s for p in parts)
    cons = Constraints(tight)
    combined: list[Choice] = []
    for k in common:
        cs = [d[k] for d in per]
        inv = sum(wi / c.pages_per_s for wi, c in zip(w, cs, strict=True))
        pps = 1.0 / inv
        se = pps**2 * math.sqrt(
            sum((wi * c.pages_per_s_se / c.pages_per_s**2) ** 2 for wi, c in zip(w, cs, strict=True))
        )
        worst = max(range(len(cs)), key=lambda i: cs[i].stall_p99_s)
        viol: list[str] = []
        for c in cs:
            viol += [v for v in c.violates if v not in viol]
        ana = [c.pages_per_s_analytic for c in cs]
        combined.append(
            Choice(
                batch_limit_pages=k[0],
                copy_engine=k[1],
                copy_threads=k[2],
                pages_per_s=pps,
                pages_per_s_se=se,
                stall_p99_s=cs[worst].stall_p99_s,
                stall_p99_s_se=cs[worst].stall_p99_s_se,
                cpu_time_s=sum(wi * c.cpu_time_s for wi, c in zip(w, cs, strict=True)),
                remote_cpu_time_s=sum(wi * c.remote_cpu_time_s for wi, c in zip(w, cs, strict=True)),
                ipis=sum(wi * c.ipis for wi, c in zip(w, cs, strict=True)),
                violates=tuple(viol),
                pages_per_s_analytic=(
                    1.0 / sum(wi / a for wi, a in zip(w, ana, strict=True))
                    if all(a > 0 for a in ana)
                    else math.nan
                ),
                stall_by_workload=tuple(c.stall_p99_s for c in cs),
            )
        )
    base = next((c for c in combined if c.key() == (dl, "cpu", 1)), None)
    described = tuple(
        {"weight": wi, "workload": dict(p.workload), "constraint": p.constraints.as_dict()}
        for wi, p in zip(w, parts, strict=True)
    )
    rec = _decide(
        combined,
        base,
        profile=profile,
        workload={"workloads": len(parts)},
        constraints=cons,
        provenance=provenance,
        regression=None,
        regression_note="several workloads: intervals are Monte Carlo only",
        runners_up=runners_up,
        default_limit=dl,
        workloads=described,
    )
    # a per-workload budget, not the tightest one, decides whether the interval crosses it
    budgets = [p.constraints.stall_p99_s for p in parts]

    def flag(c: Choice) -> Choice:
        crosses = any(
            max(0.0, s - Z90 * c.stall_p99_s_se) <= b < s + Z90 * c.stall_p99_s_se
            for s, b in zip(c.stall_by_workload, budgets, strict=True)
        )
        return replace(c, stall_crosses_budget=bool(c.stall_p99_s_se > 0 and crosses))

    return replace(
        rec,
        choice=flag(rec.choice),
        runners_up=tuple(flag(c) for c in rec.runners_up),
        choices=tuple(flag(c) for c in rec.choices),
    )


# --------------------------------------------------------------------------------------------------
# The marginal view


def marginal(rec: Recommendation) -> pd.DataFrame:
    """Each batch limit against the default limit with the recommended engine and threads.

    Columns: ``batch_limit_pages``, ``d_pages_per_s_pct`` (Δ throughput, %), its 90 % interval
    ``d_pages_per_s_pct_lo``/``_hi``, ``d_stall_p99_s`` (Δ p99 stall, s), ``stall_p99_s``,
    ``meets_constraints``; one row per limit, ascending. Empty when the default limit is not among
    the candidates for that engine.
    """
    c = rec.choice
    rows = [x for x in rec.choices if (x.copy_engine, x.copy_threads) == (c.copy_engine, c.copy_threads)]
    ref = next((x for x in rows if x.batch_limit_pages == rec.default_limit_pages), None)
    cols = [
        "batch_limit_pages",
        "d_pages_per_s_pct",
        "d_pages_per_s_pct_lo",
        "d_pages_per_s_pct_hi",
        "d_stall_p99_s",
        "stall_p99_s",
        "meets_constraints",
    ]
    if ref is None:
        return pd.DataFrame(columns=cols)
    out = []
    for x in sorted(rows, key=lambda x: x.batch_limit_pages):
        g = x.gain_from_batch_limit or (x.pages_per_s / ref.pages_per_s,) * 3
        out.append(
            {
                "batch_limit_pages": x.batch_limit_pages,
                "d_pages_per_s_pct": (g[0] - 1) * 100,
                "d_pages_per_s_pct_lo": (g[1] - 1) * 100,
                "d_pages_per_s_pct_hi": (g[2] - 1) * 100,
                "d_stall_p99_s": x.stall_p99_s - ref.stall_p99_s,
                "stall_p99_s": x.stall_p99_s,
                "meets_constraints": not x.violates,
            }
        )
    return pd.DataFrame(out, columns=cols)


def __getattr__(name: str) -> Any:
    """Exports live in :mod:`app.recommend_exports`; the old names still resolve here."""
    if name in ("FORMATS", "export_bytes", "export_filename", "kernel_snippet", "records", "kernel_patch"):
        from app import recommend_exports

        return getattr(recommend_exports, name)
    raise AttributeError(name)


__all__ = [
    "CHOICE",
    "Constraints",
    "DEFAULT_CHOICE",
    "NOT_DISTINGUISHABLE",
    "Provenance",
    "Recommendation",
    "STALL_ASSUMPTION",
    "WORKLOAD",
    "WorkloadPart",
    "default_choice",
    "default_limit_pages",
    "marginal",
    "recommend",
    "recommend_weighted",
]
