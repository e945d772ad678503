"""Several weighted workloads, one kernel-wide choice (see :mod:`app.recommend`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from app.recommend.choices import (
    RUNNERS_UP,
    Z90,
    Choice,
    Constraints,
    Provenance,
    Recommendation,
    choices_from_table,
    default_limit_pages,
)
from app.recommend.rule import decide
from models.errors import UserError


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
    per = [{c.key(): c for c in choices_from_table(p.candidates, p.constraints)} for p in parts]
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
    rec = decide(
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


__all__ = ["WorkloadPart", "recommend_weighted"]
