"""The vocabulary of a recommendation: what is chosen, the limits it must meet, what is reported.

The choice, constraint, provenance and recommendation types; the profile's kernel default; candidate
rows read into :class:`Choice` values with the limits each violates.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from models.errors import UserError
from models.params import CHOICE as _CHOICE
from models.params import CORE_WORKLOAD as _WORKLOAD
from models.params import OPTIONAL_WORKLOAD as _OPTIONAL_WORKLOAD
from models.profiles import get_profile

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


def _col(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name in frame.columns:
        return np.asarray(pd.to_numeric(frame[name], errors="coerce"), dtype=np.float64)
    return np.full(len(frame), np.nan)


def choices_from_table(cands: pd.DataFrame, cons: Constraints) -> list[Choice]:
    """One :class:`Choice` per candidate row with finite pages/s and p99 stall (SI columns; missing
    ``*_se`` columns mean no Monte Carlo error), each with the limits of ``cons`` it violates."""
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
                violates=violations(float(stall[i]), float(cpu[i]), float(remote[i]), cons),
                pages_per_s_analytic=float(ana[i]),
            )
        )
    return out


def violations(stall: float, cpu: float, remote: float, cons: Constraints) -> tuple[str, ...]:
    """Names of the limits of ``cons`` that a p99 stall, CPU time and remote CPU time (s) exceed."""
    v = []
    if stall > cons.stall_p99_s:
        v.append("stall_p99_s")
    if cons.cpu_time_s is not None and not cpu <= cons.cpu_time_s:
        v.append("cpu_time_s")
    if cons.remote_cpu_time_s is not None and not remote <= cons.remote_cpu_time_s:
        v.append("remote_cpu_time_s")
    return tuple(v)


__all__ = [
    "CHOICE",
    "DEFAULT_CHOICE",
    "ENGINE_RANK",
    "NOT_DISTINGUISHABLE",
    "OPTIONAL_WORKLOAD",
    "RUNNERS_UP",
    "STALL_ASSUMPTION",
    "WORKLOAD",
    "Z90",
    "Choice",
    "Constraints",
    "Interval",
    "Provenance",
    "Recommendation",
    "RegressionFn",
    "choices_from_table",
    "default_choice",
    "default_limit_pages",
    "violations",
]
