"""The recommendation as terminal text: summary, one row per candidate, the marginal view per limit."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from rich.console import Console

from app.output import fmt_rate, fmt_us, fmt_x, render_table, terminal_width
from app.recommend import NOT_DISTINGUISHABLE, STALL_ASSUMPTION, Choice, Interval, Recommendation, marginal
from app.recommend_exports import ENGINE_SOURCE, workload_text


def _iv_x(iv: Interval | None) -> str:
    return "–" if iv is None else f"{iv[0]:.3g}× [{iv[1]:.3g}, {iv[2]:.3g}]"


def _rate_iv(c: Choice) -> str:
    return f"{fmt_rate(c.pages_per_s)} [{fmt_rate(c.pages_per_s_lo)}, {fmt_rate(c.pages_per_s_hi)}]"


def _stall_iv(c: Choice) -> str:
    s = fmt_us(c.stall_p99_s)
    if c.stall_p99_s_se > 0:
        s += f" [{fmt_us(c.stall_p99_s_lo)}, {fmt_us(c.stall_p99_s_hi)}]"
    return s


def candidate_rows(rec: Recommendation, limit: int | None = None) -> pd.DataFrame:
    """One row per candidate: the recommendation, the runners-up, then the default (human units)."""
    shown: list[tuple[str, Choice]] = [("1 ★" if rec.feasible else "lowest stall", rec.choice)]
    shown += [(str(i), c) for i, c in enumerate(rec.runners_up, start=2)]
    if rec.baseline is not None and all(c.key() != rec.baseline.key() for _, c in shown):
        base = next((c for c in rec.choices if c.key() == rec.baseline.key()), rec.baseline)
        shown.append(("default", base))
    rows = []
    for rank, c in shown[: limit or len(shown)]:
        notes = []
        if c.violates:
            notes.append("over " + ", ".join(v.removesuffix("_s").replace("_", " ") for v in c.violates))
        if c.stall_crosses_budget:
            notes.append("stall interval crosses the budget")
        if c.gain is not None and c.gain[1] <= 1.0 <= c.gain[2] and c.key() != rec.baseline_key():
            notes.append("≈ default")
        rows.append(
            {
                "rank": rank,
                "limit (pages)": c.batch_limit_pages,
                "engine": f"{c.copy_engine} ×{c.copy_threads}",
                "pages/s [90 %]": _rate_iv(c),
                "p99 stall [90 %]": _stall_iv(c),
                "gain over default": _iv_x(c.gain),
                "from the limit": _iv_x(c.gain_from_batch_limit),
                "notes": "; ".join(notes),
            }
        )
    return pd.DataFrame(rows)


def marginal_rows(rec: Recommendation) -> pd.DataFrame:
    """Δ throughput % and Δ p99 stall per limit against the default limit (same engine, threads)."""
    m = marginal(rec)
    rows = []
    for rec_row in m.to_dict("records"):
        limit = int(rec_row["batch_limit_pages"])
        d, lo, hi = (
            float(rec_row[k]) for k in ("d_pages_per_s_pct", "d_pages_per_s_pct_lo", "d_pages_per_s_pct_hi")
        )
        ds = float(rec_row["d_stall_p99_s"])
        rows.append(
            {
                "batch limit (pages)": f"{limit} (default)"
                if limit == rec.default_limit_pages
                else str(limit),
                "Δ pages/s % [90 %]": f"{d:+.1f} [{lo:+.1f}, {hi:+.1f}]",
                "Δ p99 stall": ("+" if ds >= 0 else "−") + fmt_us(abs(ds)),
                "p99 stall": fmt_us(float(rec_row["stall_p99_s"])),
                "meets limits": "yes" if rec_row["meets_constraints"] else "no",
            }
        )
    return pd.DataFrame(rows)


def summary_lines(rec: Recommendation) -> list[str]:
    c = rec.choice
    wl = workload_text(rec, ascii_only=False)
    head = (
        f"NR_MAX_BATCHED_MIGRATION = {c.batch_limit_pages}, copy engine {c.copy_engine} ×{c.copy_threads}"
        if rec.feasible
        else f"no choice meets the limits; lowest stall: {c.label()}"
    )
    lines = [
        head,
        f"  profile {rec.profile} (kernel default {rec.default_limit_pages} pages, cpu copy) · {wl}",
        f"  {fmt_rate(c.pages_per_s)} pages/s, p99 stall {_stall_iv(c)} "
        f"(budget {fmt_us(rec.constraints.stall_p99_s)})",
        f"  gain over the default: {_iv_x(c.gain)}"
        + (f" — {NOT_DISTINGUISHABLE}" if rec.distinguishable is False else ""),
        f"    from the batch limit ({c.batch_limit_pages} vs {rec.default_limit_pages}, same engine): "
        f"{_iv_x(rec.gain_from_batch_limit)}",
        f"    from the copy engine ({c.copy_engine} ×{c.copy_threads} vs cpu): {_iv_x(rec.gain_from_engine)}"
        + (
            f", {rec.engine_share * 100:.0f} % of the log gain"
            if rec.engine_share is not None and math.isfinite(rec.engine_share)
            else ""
        ),
        f"  why: {rec.why}",
    ]
    if rec.regression_note:
        lines.append(f"  note: {rec.regression_note}")
    if c.copy_engine != "cpu":
        lines.append(f"  {ENGINE_SOURCE}")
    lines.append(f"  assumption: {STALL_ASSUMPTION}")
    p = rec.provenance
    lines.append(
        "  source: "
        + (f"sweep {p.sweep_spec_hash}, data {p.data_hash[:12]}" if p.source == "sweep" else p.source)
        + f", model {p.model_version}"
    )
    return lines


def print_recommendation(rec: Recommendation, file: Any = None) -> None:
    width = terminal_width()
    console = Console(width=width, file=file, highlight=False)
    for line in summary_lines(rec):
        console.print(line, markup=False, soft_wrap=False)
    console.print()
    render_table(candidate_rows(rec), "Candidates (90 % intervals in brackets)", width=width, file=file)
    m = marginal_rows(rec)
    if len(m):
        console.print()
        c = rec.choice
        render_table(
            m,
            f"Each limit against the default {rec.default_limit_pages} pages, {c.copy_engine} ×{c.copy_threads}",
            width=width,
            file=file,
        )


__all__ = ["candidate_rows", "marginal_rows", "print_recommendation", "summary_lines", "fmt_x"]
