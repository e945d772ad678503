"""The recommendation rule for one workload (see :mod:`app.recommend`), and the marginal view."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from app.recommend.choices import (
    ENGINE_RANK,
    NOT_DISTINGUISHABLE,
    RUNNERS_UP,
    Z90,
    Choice,
    Constraints,
    Interval,
    Provenance,
    Recommendation,
    RegressionFn,
    choices_from_table,
    default_limit_pages,
)
from app.recommend.intervals import ratio_interval, regression_ratio, regression_table, widen, with_intervals
from models.errors import UserError


def cost_key(c: Choice, default_limit: int) -> tuple[int, int, float, int]:
    """Cheaper first: fewer threads, the CPU copy, then the limit nearest the kernel default."""
    dist = abs(math.log2(max(c.batch_limit_pages, 1) / default_limit))
    return (c.copy_threads, ENGINE_RANK.get(c.copy_engine, 9), dist, c.batch_limit_pages)


def rank_allowed(choices: Sequence[Choice], default_limit: int = 512) -> tuple[list[Choice], int]:
    """Allowed choices, best first (see the module docstring), and how many tie with the best."""
    allowed = [c for c in choices if not c.violates]
    if not allowed:
        return [], 0
    allowed.sort(key=lambda c: (-c.pages_per_s, cost_key(c, default_limit)))
    top = allowed[0]
    tied = [
        c
        for c in allowed
        if top.pages_per_s - c.pages_per_s <= Z90 * math.hypot(top.pages_per_s_se, c.pages_per_s_se)
    ]
    best = min(tied, key=lambda c: (cost_key(c, default_limit), -c.pages_per_s))
    # The constant is kernel-wide: among the limits that behave like the best one for this engine and
    # thread count (within Monte Carlo noise of that engine's best, or the same analytic result, e.g.
    # every limit up to 512 pages for 2 MiB folios), take the one nearest the kernel default.
    same = [c for c in allowed if (c.copy_engine, c.copy_threads) == (best.copy_engine, best.copy_threads)]
    ref = max(same, key=lambda c: c.pages_per_s)
    equiv = [c for c in same if _behaves_like(c, ref)]
    best = min(equiv, key=lambda c: (cost_key(c, default_limit), -c.pages_per_s))
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
    choices = choices_from_table(candidates, constraints)
    base = None
    dl = int(default_limit) if default_limit is not None else default_limit_pages(profile)
    dkey = (dl, "cpu", 1)
    base = next((c for c in choices if c.key() == dkey), None)
    if base is None:
        base = baseline_choice(baseline, constraints)
    return decide(
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


def baseline_choice(baseline: pd.DataFrame | None, constraints: Constraints) -> Choice | None:
    """The default's choice from a one-row ``baseline`` frame (``None`` when there is none)."""
    if baseline is None or not len(baseline):
        return None
    b = choices_from_table(baseline.iloc[:1], constraints)
    return b[0] if b else None


def lowest_stall(choices: Sequence[Choice], default_limit: int) -> Choice:
    """What is reported when no choice meets the limits: the lowest p99 stall (then the highest
    pages/s, then the cheapest choice)."""
    return min(choices, key=lambda c: (c.stall_p99_s, -c.pages_per_s, cost_key(c, default_limit)))


def decide(
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
    """The recommendation among ``choices`` (already read, with their violations) against ``base``,
    the profile's default (``None``: no gain); the shared last step of :func:`recommend` and
    :func:`app.recommend.weighted.recommend_weighted`."""
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
            reg = regression_table(regression, profile, workload, keys)
            if not reg:
                note = note or "regression gave no pages/s prediction for these choices"
        except Exception as exc:  # the regression is optional: say why it is missing, go on
            note = f"regression unavailable ({type(exc).__name__}: {' '.join(str(exc).split())[:160]})"
    elif not note:
        note = "no fitted regression; intervals are Monte Carlo only"
    if base is not None:
        base = with_intervals([base], constraints, default_limit, base, reg)[0]
    choices = with_intervals(choices, constraints, default_limit, base, reg)

    ranked, tied = rank_allowed(choices, default_limit)
    feasible = bool(ranked)
    others: Sequence[Choice]
    if feasible:
        best = ranked[0]
        others = ranked[1 : 1 + runners_up]
        binding = _binding(choices, best)
    else:
        # Nothing meets the limits: report the lowest-stall choice so the user sees what is possible.
        best = lowest_stall(choices, default_limit)
        others = tuple(
            sorted((c for c in choices if c is not best), key=lambda c: c.stall_p99_s)[:runners_up]
        )
        binding = tuple(sorted({v for c in choices for v in c.violates}))

    gain_mc = None
    if base is not None and base.pages_per_s > 0:
        g = ratio_interval(best, base)
        gain_mc = (g[1], g[2])
    gain_reg = regression_ratio(reg.get(best.key()), reg.get(base.key())) if base is not None else None
    by_key = {c.key(): c for c in choices}
    eng_base = by_key.get((default_limit, best.copy_engine, best.copy_threads))
    gain_engine = None
    if base is not None and eng_base is not None and base.pages_per_s > 0:
        gain_engine = widen(
            ratio_interval(eng_base, base), regression_ratio(reg.get(eng_base.key()), reg.get(base.key()))
        )
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


__all__ = ["cost_key", "decide", "marginal", "rank_allowed", "recommend"]
