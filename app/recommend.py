"""Tuning recommendations: the batch limit, copy engine and thread count to use (DESIGN.md §4).

Pure functions over small tables (no Dash, no files): the explorer and ``foliotune recommend`` both
call :func:`recommend` on the same candidate rows, so they give the same answer for the same inputs.

The rule:

1. *Candidates* are the sweep's rows for one profile and one workload (every other parameter fixed),
   one row per choice ``(batch_limit_pages, copy_engine, copy_threads)``; infeasible rows are dropped.
2. A choice is *allowed* when its ``stall_p99_s`` is within the stall budget and, when given, its
   ``cpu_time_s`` and ``remote_cpu_time_s`` (CPU time other CPUs spend in flush IPIs) are within
   their limits.
3. The allowed choice with the most ``pages_per_s`` wins, except that choices statistically tied with
   it (difference within the 90 % Monte Carlo noise of the two) are resolved towards the cheaper
   choice: fewer copy threads, then the plain CPU copy, then the smaller batch limit. Without Monte
   Carlo errors (analytic results) only exact ties are resolved this way.
4. The gain is over the kernel default (``NR_MAX_BATCHED_MIGRATION`` = 512 base pages, CPU copy, one
   thread) for the same workload, with a 90 % interval from the Monte Carlo standard errors and,
   when a fitted regression is available, from its prediction intervals.
5. *Binding* constraints are the ones that exclude a choice with more pages/s than the recommended
   one; with none, the recommendation is the throughput optimum of the sweep.

Exports (:func:`export_bytes`) are built in memory and hold no timestamps, so the same inputs give
byte-identical files from the CLI and from the app.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from models.errors import UserError
from models.params import CHOICE as _CHOICE
from models.params import WORKLOAD as _WORKLOAD

# What foliotune recommends, and the workload (everything of a point that is neither the profile
# nor a choice): both derive from the parameter table, models.params.TABLE.
CHOICE: tuple[str, ...] = _CHOICE
WORKLOAD: tuple[str, ...] = _WORKLOAD
DEFAULT_CHOICE: dict[str, Any] = {"batch_limit_pages": 512, "copy_engine": "cpu", "copy_threads": 1}
ENGINE_RANK: dict[str, int] = {"cpu": 0, "mt-cpu": 1, "dma": 2, "dsa": 3}
Z90 = 1.6448536269514722  # two-sided 90 % normal quantile
FORMATS: tuple[str, ...] = ("json", "csv", "yaml", "kernel")
EXPORT_FORMAT = "foliotune-recommendation"
EXPORT_VERSION = 1
RUNNERS_UP = 4

#: (points with parameter columns) -> table with pages_per_s, pages_per_s_lo, pages_per_s_hi
RegressionFn = Callable[[pd.DataFrame], pd.DataFrame]


@dataclass(frozen=True)
class Constraints:
    """Limits a choice must meet (SI). ``None`` = no limit."""

    stall_p99_s: float
    cpu_time_s: float | None = None
    remote_cpu_time_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("stall_p99_s", "cpu_time_s", "remote_cpu_time_s"):
            v = getattr(self, name)
            if v is None and name != "stall_p99_s":
                continue
            if v is None or not math.isfinite(float(v)) or float(v) < 0:
                raise UserError(f"constraint {name}: must be a finite number >= 0, not {v!r}")

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
    """Where the numbers come from: the sweep, the model code and the data."""

    sweep_spec_hash: str = ""
    model_version: str = ""  # code version of the sweep's cost model
    data_hash: str = ""  # SHA-256 over the sweep's chunk files
    results_model: str = ""  # analytic | montecarlo
    regression_version: str = ""
    measurements_hash: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "sweep_spec_hash": self.sweep_spec_hash,
            "model_version": self.model_version,
            "data_hash": self.data_hash,
            "results_model": self.results_model,
            "regression_version": self.regression_version,
            "measurements_hash": self.measurements_hash,
        }


@dataclass(frozen=True)
class Choice:
    """One candidate choice and its predicted figures (SI)."""

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
    baseline: Choice | None
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
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# The rule


def _choices(cands: pd.DataFrame, cons: Constraints) -> list[Choice]:
    def col(name: str) -> np.ndarray:
        if name in cands.columns:
            return np.asarray(pd.to_numeric(cands[name], errors="coerce"), dtype=np.float64)
        return np.full(len(cands), np.nan)

    pps, pps_se = col("pages_per_s"), col("pages_per_s_se")
    stall, stall_se = col("stall_p99_s"), col("stall_p99_s_se")
    cpu, remote, ipis = col("cpu_time_s"), col("remote_cpu_time_s"), col("ipis")
    bl = col("batch_limit_pages")
    th = col("copy_threads")
    eng = cands["copy_engine"].astype(str).to_numpy()
    out = []
    for i in range(len(cands)):
        if not (np.isfinite(pps[i]) and np.isfinite(stall[i])):
            continue
        v = []
        if stall[i] > cons.stall_p99_s:
            v.append("stall_p99_s")
        if cons.cpu_time_s is not None and not cpu[i] <= cons.cpu_time_s:
            v.append("cpu_time_s")
        if cons.remote_cpu_time_s is not None and not remote[i] <= cons.remote_cpu_time_s:
            v.append("remote_cpu_time_s")
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
                violates=tuple(v),
            )
        )
    return out


def _cost_key(c: Choice) -> tuple[int, int, int]:
    return (c.copy_threads, ENGINE_RANK.get(c.copy_engine, 9), c.batch_limit_pages)


def rank_allowed(choices: Sequence[Choice]) -> tuple[list[Choice], int]:
    """Allowed choices, best first (see the module docstring), and how many tie with the best."""
    allowed = [c for c in choices if not c.violates]
    if not allowed:
        return [], 0
    # Deterministic order: pages/s descending, then cheaper first.
    allowed.sort(key=lambda c: (-c.pages_per_s, _cost_key(c)))
    top = allowed[0]
    tied = [
        c
        for c in allowed
        if top.pages_per_s - c.pages_per_s <= Z90 * math.hypot(top.pages_per_s_se, c.pages_per_s_se)
    ]
    best = min(tied, key=lambda c: (_cost_key(c), -c.pages_per_s))
    rest = [c for c in allowed if c is not best]
    return [best, *rest], len(tied) - 1


def _binding(choices: Sequence[Choice], best: Choice) -> tuple[str, ...]:
    better = [c for c in choices if c.violates and c.pages_per_s > best.pages_per_s]
    names: list[str] = []
    for c in sorted(better, key=lambda c: -c.pages_per_s):
        for v in c.violates:
            if v not in names:
                names.append(v)
    return tuple(names)


def _ratio_interval(a: float, a_se: float, b: float, b_se: float) -> tuple[float, float]:
    """90 % interval of a/b from independent standard errors (delta method in log space)."""
    r = a / b
    rel = math.hypot(a_se / a if a else 0.0, b_se / b if b else 0.0)
    return (r * math.exp(-Z90 * rel), r * math.exp(Z90 * rel))


def _reg_triplet(table: pd.DataFrame, i: int) -> tuple[float, float, float] | None:
    try:
        p, lo, hi = (float(table[c].iloc[i]) for c in ("pages_per_s", "pages_per_s_lo", "pages_per_s_hi"))
    except (KeyError, IndexError, ValueError, TypeError):
        return None
    if not all(math.isfinite(x) and x > 0 for x in (p, lo, hi)):
        return None
    return (p, lo, hi)


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
) -> Recommendation:
    """The recommendation for one profile and workload (see the module docstring).

    ``candidates`` holds one row per choice (columns :data:`CHOICE` plus the outputs, and the Monte
    Carlo ``*_se`` columns when present). ``baseline`` is the one-row result of the kernel default for
    the same workload (``None``: no gain is given). ``regression`` predicts ``pages_per_s`` with a
    90 % interval for parameter rows; when it is missing or fails, intervals are Monte Carlo only and
    ``regression_note`` says why.
    """
    prov = provenance or Provenance()
    choices = _choices(candidates, constraints)
    if not choices:
        raise UserError(
            f"no feasible sweep results for profile {profile!r} and this workload; "
            "choose another workload or sweep it first"
        )
    ranked, tied = rank_allowed(choices)
    feasible = bool(ranked)
    others: Sequence[Choice]
    if feasible:
        best = ranked[0]
        others = ranked[1 : 1 + runners_up]
        binding = _binding(choices, best)
    else:
        # Nothing meets the limits: report the lowest-stall choice so the user sees what is possible.
        best = min(choices, key=lambda c: (c.stall_p99_s, -c.pages_per_s, _cost_key(c)))
        others = tuple(
            sorted((c for c in choices if c is not best), key=lambda c: c.stall_p99_s)[:runners_up]
        )
        binding = tuple(sorted({v for c in choices for v in c.violates}))

    base: Choice | None = None
    if baseline is not None and len(baseline):
        b = _choices(baseline.iloc[:1], constraints)
        base = b[0] if b else None

    pps_lo = best.pages_per_s - Z90 * best.pages_per_s_se
    pps_hi = best.pages_per_s + Z90 * best.pages_per_s_se
    gain = gain_lo = gain_hi = None
    gain_mc = None
    if base is not None and base.pages_per_s > 0:
        gain = best.pages_per_s / base.pages_per_s
        gain_mc = _ratio_interval(
            best.pages_per_s, best.pages_per_s_se, base.pages_per_s, base.pages_per_s_se
        )
        gain_lo, gain_hi = gain_mc

    reg_pps = None
    gain_reg = None
    note = regression_note
    if regression is not None:
        rows = [{"profile": profile, **dict(workload), **dict(zip(CHOICE, best.key(), strict=True))}]
        if base is not None:
            rows.append({"profile": profile, **dict(workload), **DEFAULT_CHOICE})
        try:
            table = regression(pd.DataFrame(rows))
            reg_pps = _reg_triplet(table, 0)
            if reg_pps is None:
                note = note or "regression gave no pages/s prediction for this choice"
            elif base is not None:
                rb = _reg_triplet(table, 1)
                if rb is not None:
                    h = math.hypot(math.log(reg_pps[2] / reg_pps[1]) / 2, math.log(rb[2] / rb[1]) / 2)
                    g = reg_pps[0] / rb[0]
                    gain_reg = (g, g * math.exp(-h), g * math.exp(h))
        except Exception as exc:  # the regression is optional: say why it is missing, go on
            note = f"regression unavailable ({type(exc).__name__}: {' '.join(str(exc).split())[:160]})"
            reg_pps = gain_reg = None
    elif not note:
        note = "no fitted regression; intervals are Monte Carlo only"
    if gain_reg is not None and gain_lo is not None and gain_hi is not None:
        gain_lo, gain_hi = min(gain_lo, gain_reg[1]), max(gain_hi, gain_reg[2])

    why = _why(best, feasible, binding, constraints, tied, base)
    return Recommendation(
        profile=profile,
        workload=dict(workload),
        constraints=constraints,
        provenance=prov,
        feasible=feasible,
        choice=best,
        baseline=base,
        gain=gain,
        gain_lo=gain_lo,
        gain_hi=gain_hi,
        gain_mc=gain_mc,
        gain_regression=gain_reg,
        pages_per_s_lo=pps_lo,
        pages_per_s_hi=pps_hi,
        regression_pages_per_s=reg_pps,
        regression_note=note if reg_pps is None else "",
        binding=binding,
        why=why,
        runners_up=tuple(others),
        tied=tied,
        n_candidates=len(choices),
        n_allowed=len(ranked),
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
        parts.append("the highest throughput in the sweep; no constraint binds")
    parts.append(f"p99 stall {best.stall_p99_s * 1e6:.1f} µs of {cons.stall_p99_s * 1e6:.1f} µs budget")
    if tied:
        parts.append(f"{tied} faster-looking choice(s) are within Monte Carlo noise; the cheapest was taken")
    if base is not None and base.violates:
        parts.append("the kernel default itself exceeds the limits")
    return "; ".join(parts)


# --------------------------------------------------------------------------------------------------
# Exports


def _num(x: float | None, digits: int = 6) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return float(f"{x:.{digits}g}")


def _workload_clean(w: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in WORKLOAD:
        if k not in w:
            continue
        v = w[k]
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float) and v.is_integer() and k not in ("busy_prob", "access_rate_hz"):
            v = int(v)
        out[k] = v
    return out


def records(rec: Recommendation) -> list[dict[str, Any]]:
    """Export records (DESIGN.md §4): rank 1 is the recommendation, then the runners-up."""
    base_pps = rec.baseline.pages_per_s if rec.baseline is not None else None
    out = []
    for rank, c in enumerate([rec.choice, *rec.runners_up], start=1):
        first = rank == 1
        if first:
            lo, hi = rec.pages_per_s_lo, rec.pages_per_s_hi
            if rec.regression_pages_per_s is not None:
                lo, hi = min(lo, rec.regression_pages_per_s[1]), max(hi, rec.regression_pages_per_s[2])
            g, glo, ghi = rec.gain, rec.gain_lo, rec.gain_hi
        else:
            lo, hi = c.pages_per_s - Z90 * c.pages_per_s_se, c.pages_per_s + Z90 * c.pages_per_s_se
            g = c.pages_per_s / base_pps if base_pps else None
            if base_pps and rec.baseline is not None:
                glo, ghi = _ratio_interval(
                    c.pages_per_s, c.pages_per_s_se, base_pps, rec.baseline.pages_per_s_se
                )
            else:
                glo = ghi = None
        out.append(
            {
                "rank": rank,
                "recommended": first and rec.feasible,
                "profile": rec.profile,
                "workload": _workload_clean(rec.workload),
                "batch_limit_pages": c.batch_limit_pages,
                "copy_engine": c.copy_engine,
                "copy_threads": c.copy_threads,
                "pages_per_s": _num(c.pages_per_s),
                "pages_per_s_lo": _num(lo),
                "pages_per_s_hi": _num(hi),
                "stall_p99_s": _num(c.stall_p99_s),
                "cpu_time_s": _num(c.cpu_time_s),
                "remote_cpu_time_s": _num(c.remote_cpu_time_s),
                "gain_over_default": _num(g, 5),
                "gain_lo": _num(glo, 5),
                "gain_hi": _num(ghi, 5),
                "default": dict(DEFAULT_CHOICE),
                "default_pages_per_s": _num(base_pps),
                "constraint": {k: _num(v) for k, v in rec.constraints.as_dict().items()},
                "binding_constraint": list(rec.binding) if first else [],
                "meets_constraints": not c.violates,
                "interval": "90 %: Monte Carlo standard errors"
                + (" and regression prediction interval" if first and rec.regression_pages_per_s else ""),
                "regression_note": rec.regression_note if first else "",
                "why": rec.why if first else "",
                "provenance": rec.provenance.as_dict(),
            }
        )
    return out


def _flat(record: Mapping[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for k, v in record.items():
        if isinstance(v, Mapping):
            for k2, v2 in v.items():
                flat[f"{k}.{k2}" if k in ("constraint", "default", "provenance") else k2] = v2
        elif isinstance(v, list):
            flat[k] = "+".join(map(str, v))
        else:
            flat[k] = v
    return flat


def kernel_snippet(rec: Recommendation) -> str:
    """A ``#define NR_MAX_BATCHED_MIGRATION`` line with a comment stating what it is based on."""
    c = rec.choice
    w = _workload_clean(rec.workload)
    wl = ", ".join(f"{k}={v}" for k, v in w.items())
    if rec.gain is not None:
        gain = f"{rec.gain:.3f}x"
        if rec.gain_lo is not None and rec.gain_hi is not None:
            gain += f" (90% interval {rec.gain_lo:.3f}x .. {rec.gain_hi:.3f}x)"
    else:
        gain = "not available (default not in the sweep)"
    limits = f"p99 stall <= {rec.constraints.stall_p99_s * 1e6:g} us"
    if rec.constraints.cpu_time_s is not None:
        limits += f", CPU time <= {rec.constraints.cpu_time_s * 1e3:g} ms"
    if rec.constraints.remote_cpu_time_s is not None:
        limits += f", remote IPI CPU time <= {rec.constraints.remote_cpu_time_s * 1e3:g} ms"
    lines = [
        "/*",
        " * foliotune recommendation for mm/migrate.c",
        f" * machine:  {rec.profile}",
        f" * workload: {wl}",
        f" * budget:   {limits}",
        f" * choice:   batch limit {c.batch_limit_pages} base pages, copy engine {c.copy_engine}, "
        f"{c.copy_threads} thread(s)",
        f" * predicted: {c.pages_per_s:.4g} pages/s, p99 stall {c.stall_p99_s * 1e6:.1f} us",
        f" * gain over the default (512 pages, cpu copy): {gain}",
        f" * binding:  {', '.join(rec.binding) or 'none'}",
        f" * provenance: sweep {rec.provenance.sweep_spec_hash}, model {rec.provenance.model_version}, "
        f"data {rec.provenance.data_hash[:16]}",
    ]
    if not rec.feasible:
        lines.append(" * WARNING: no choice meets the budget; this is the lowest-stall choice in the sweep")
    if c.copy_engine != "cpu":
        lines.append(f" * the copy engine ({c.copy_engine}) is chosen separately from this constant")
    lines += [" */", f"#define NR_MAX_BATCHED_MIGRATION {c.batch_limit_pages}", ""]
    return "\n".join(lines)


def export_bytes(rec: Recommendation, fmt: str) -> bytes:
    """The export in ``fmt`` (json, csv, yaml or kernel), built in memory."""
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    if fmt == "kernel":
        return kernel_snippet(rec).encode()
    recs = records(rec)
    doc = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "recommendations": recs}
    if fmt == "json":
        return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()
    if fmt == "yaml":
        import yaml

        return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True).encode()
    rows = [_flat(r) for r in recs]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: "" if v is None else v for k, v in r.items()})
    return buf.getvalue().encode()


def export_filename(rec: Recommendation, fmt: str) -> str:
    ext = {"json": "json", "csv": "csv", "yaml": "yaml", "kernel": "h"}[fmt]
    return f"foliotune-recommendation-{rec.profile}.{ext}"


__all__ = [
    "CHOICE",
    "Constraints",
    "DEFAULT_CHOICE",
    "FORMATS",
    "Provenance",
    "Recommendation",
    "WORKLOAD",
    "export_bytes",
    "export_filename",
    "kernel_snippet",
    "recommend",
    "records",
]
