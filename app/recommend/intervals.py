"""The interval arithmetic of a recommendation: 90 % intervals of throughput, stall and gains.

Monte Carlo standard errors give the intervals (delta method in log space for ratios); a fitted
regression's prediction intervals widen them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import pandas as pd

from app.recommend.choices import CHOICE, Z90, Choice, Constraints, Interval, RegressionFn


def ratio_interval(a: Choice, b: Choice) -> Interval:
    """a/b with its 90 % interval from independent standard errors (delta method in log space)."""
    r = a.pages_per_s / b.pages_per_s
    rel = math.hypot(
        a.pages_per_s_se / a.pages_per_s if a.pages_per_s else 0.0,
        b.pages_per_s_se / b.pages_per_s if b.pages_per_s else 0.0,
    )
    return (r, r * math.exp(-Z90 * rel), r * math.exp(Z90 * rel))


def regression_ratio(a: Interval | None, b: Interval | None) -> Interval | None:
    """Ratio of two regression predictions; half-widths of the log intervals added in quadrature."""
    if a is None or b is None:
        return None
    if a == b:  # the same prediction: its errors cancel exactly
        return (1.0, 1.0, 1.0)
    h = math.hypot(math.log(a[2] / a[1]) / 2, math.log(b[2] / b[1]) / 2)
    g = a[0] / b[0]
    return (g, g * math.exp(-h), g * math.exp(h))


def widen(mc: Interval | None, reg: Interval | None) -> Interval | None:
    """The Monte Carlo interval widened to cover the regression's (the point stays the model's)."""
    if mc is None:
        return None
    if reg is None:
        return mc
    return (mc[0], min(mc[1], reg[1]), max(mc[2], reg[2]))


def regression_table(
    regression: RegressionFn, profile: str, workload: Mapping[str, Any], keys: Sequence[tuple[int, str, int]]
) -> dict[tuple[int, str, int], Interval]:
    """The regression's pages/s (point, lo, hi) for each choice ``key`` of this profile and workload;
    a choice without a finite positive prediction is left out."""
    rows = [{"profile": profile, **dict(workload), **dict(zip(CHOICE, k, strict=True))} for k in keys]
    table = regression(pd.DataFrame(rows))
    out: dict[tuple[int, str, int], Interval] = {}
    try:  # columns as floats once (pandas indexing per cell cost ~1 ms per 10 choices)
        cols = [
            pd.to_numeric(table[c], errors="coerce").to_numpy(dtype=float)
            for c in ("pages_per_s", "pages_per_s_lo", "pages_per_s_hi")
        ]
    except (KeyError, ValueError, TypeError):
        return out
    for i, k in enumerate(keys):
        if i >= len(cols[0]):
            break
        p, lo, hi = (float(c[i]) for c in cols)
        if all(math.isfinite(x) and x > 0 for x in (p, lo, hi)):
            out[k] = (p, lo, hi)
    return out


def with_intervals(
    choices: Sequence[Choice],
    cons: Constraints,
    default_limit: int,
    base: Choice | None,
    reg: Mapping[tuple[int, str, int], Interval],
) -> list[Choice]:
    """``choices`` with their 90 % intervals: pages/s, p99 stall, gain over ``base`` and over the
    default limit with the same engine and threads (Monte Carlo, widened by the regression's ``reg``),
    and whether the stall interval crosses the budget."""
    by_key = {c.key(): c for c in choices}
    out = []
    for c in choices:
        pps = (c.pages_per_s, c.pages_per_s - Z90 * c.pages_per_s_se, c.pages_per_s + Z90 * c.pages_per_s_se)
        pps = widen(pps, reg.get(c.key())) or pps
        stall_lo = max(0.0, c.stall_p99_s - Z90 * c.stall_p99_s_se)
        stall_hi = c.stall_p99_s + Z90 * c.stall_p99_s_se
        gain = None
        if base is not None and base.pages_per_s > 0:
            gain = widen(ratio_interval(c, base), regression_ratio(reg.get(c.key()), reg.get(base.key())))
        same = by_key.get((default_limit, c.copy_engine, c.copy_threads))
        gbl = None
        if same is not None and same.pages_per_s > 0:
            gbl = widen(ratio_interval(c, same), regression_ratio(reg.get(c.key()), reg.get(same.key())))
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


__all__ = ["ratio_interval", "regression_ratio", "regression_table", "widen", "with_intervals"]
