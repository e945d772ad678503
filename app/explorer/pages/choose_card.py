"""The Choose page's recommendation card: the choice, its gains with intervals, and the candidates."""

from __future__ import annotations

from typing import Any

from dash import html

from app.output import fmt_rate, fmt_us
from app.recommend import NOT_DISTINGUISHABLE, STALL_ASSUMPTION, Choice, Interval, Recommendation
from app.recommend_exports import ENGINE_SOURCE


def _iv(iv: Interval | None) -> str:
    return "–" if iv is None else f"{iv[0]:.3g}× [{iv[1]:.3g}, {iv[2]:.3g}]"


def _stall(c: Choice) -> str:
    s = fmt_us(c.stall_p99_s)
    if c.stall_p99_s_se > 0:
        s += f" [{fmt_us(c.stall_p99_s_lo)}, {fmt_us(c.stall_p99_s_hi)}]"
    return s


def _flags(rec: Recommendation, c: Choice) -> str:
    out = []
    if c.violates:
        out.append("over the limits")
    if c.stall_crosses_budget:
        out.append("stall interval crosses the budget")
    if c.gain is not None and c.gain[1] <= 1.0 <= c.gain[2] and c.key() != rec.baseline_key():
        out.append("≈ default")
    return "; ".join(out)


def card(rec: Recommendation) -> Any:
    c = rec.choice
    dl = rec.default_limit_pages
    if rec.feasible:
        head = [
            html.Div("Recommended", className="muted"),
            html.Div(
                ["NR_MAX_BATCHED_MIGRATION = ", html.Span(str(c.batch_limit_pages), id="ch-rec-batch")],
                className="big",
            ),
            html.Div(
                [
                    "copy engine ",
                    html.B(c.copy_engine, id="ch-rec-engine"),
                    " with ",
                    html.B(str(c.copy_threads), id="ch-rec-threads"),
                    " thread(s)",
                ]
            ),
        ]
    else:
        head = [
            html.Div("No choice meets the limits", className="big", id="ch-rec-none"),
            html.Div(
                [
                    "lowest-stall choice: ",
                    html.Span(str(c.batch_limit_pages), id="ch-rec-batch"),
                    f" pages, {c.copy_engine} ×{c.copy_threads}",
                ]
            ),
        ]
    context = f"{rec.profile} · " + ", ".join(f"{k}={v}" for k, v in rec.workload.items())
    p = rec.provenance
    gain_text = _iv(c.gain) if c.gain is not None else "not available"
    lines = [
        html.Div(context, className="muted", id="ch-rec-context"),
        html.Div(
            f"throughput {fmt_rate(c.pages_per_s)} base pages/s [90 %: {fmt_rate(c.pages_per_s_lo)}, "
            f"{fmt_rate(c.pages_per_s_hi)}]" + (" incl. the regression" if rec.regression_pages_per_s else "")
        ),
        html.Div(
            [
                "p99 stall ",
                html.Span(_stall(c), id="ch-rec-stall"),
                f" (budget {fmt_us(rec.constraints.stall_p99_s)})",
                html.Span(" — its interval crosses the budget", style={"color": "#a04000"})
                if c.stall_crosses_budget
                else "",
            ]
        ),
        html.Div(
            [
                f"gain over the kernel default ({dl} pages, cpu copy): ",
                html.B(gain_text, id="ch-rec-gain"),
                html.Span(f" — {NOT_DISTINGUISHABLE}", style={"color": "#a04000"}, id="ch-rec-indistinct")
                if rec.distinguishable is False
                else "",
            ]
        ),
        html.Div(
            [
                f"from the batch limit ({c.batch_limit_pages} vs {dl}, same engine): ",
                html.Span(_iv(rec.gain_from_batch_limit), id="ch-rec-gain-limit"),
                f" · from the copy engine ({c.copy_engine} ×{c.copy_threads} vs cpu at {dl}): ",
                html.Span(_iv(rec.gain_from_engine), id="ch-rec-gain-engine"),
            ],
            className="muted",
        ),
        html.Div(["why: ", html.Span(rec.why, id="ch-rec-why")], className="muted"),
    ]
    if c.copy_engine != "cpu":
        lines.append(html.Div(ENGINE_SOURCE, className="muted", id="ch-engine-source"))
    if rec.regression_note:
        lines.append(html.Div(rec.regression_note, className="warn", id="ch-reg-note"))
    heads = (
        "rank",
        "batch (pages)",
        "engine × threads",
        "pages/s [90 %]",
        "p99 stall [90 %]",
        "gain [90 %]",
        "",
    )
    rows = [html.Tr([html.Th(h) for h in heads])]
    shown = [(str(i), r) for i, r in enumerate([rec.choice, *rec.runners_up], start=1)]
    if rec.baseline is not None and all(r.key() != rec.baseline.key() for _, r in shown):
        shown.append(
            ("default", next((x for x in rec.choices if x.key() == rec.baseline_key()), rec.baseline))
        )
    for rank, r in shown:
        rows.append(
            html.Tr(
                [
                    html.Td(rank),
                    html.Td(str(r.batch_limit_pages)),
                    html.Td(f"{r.copy_engine} ×{r.copy_threads}"),
                    html.Td(
                        f"{fmt_rate(r.pages_per_s)} [{fmt_rate(r.pages_per_s_lo)}, {fmt_rate(r.pages_per_s_hi)}]"
                    ),
                    html.Td(_stall(r)),
                    html.Td(_iv(r.gain)),
                    html.Td(_flags(rec, r), className="muted"),
                ]
            )
        )
    screened = rec.extra.get("screened_out")
    source = (
        f"sweep {p.sweep_spec_hash} · model {p.model_version} ({p.results_model}) · data {p.data_hash[:12]}"
        if p.source == "sweep"
        else f"{p.source} · model {p.model_version}"
        + (
            f" · {screened} of {rec.extra.get('grid')} choices screened out by the analytic model"
            if screened
            else ""
        )
    )
    prov = html.Div(
        source + (f" · regression {p.regression_version}" if p.regression_version else ""),
        className="muted",
        id="ch-provenance",
    )
    note = html.Div(f"Assumption: {STALL_ASSUMPTION}.", className="muted", id="ch-stall-assumption")
    return html.Div(
        [*head, html.Hr(), *lines, html.Table(rows, id="ch-cands"), prov, note],
        className="panel card",
        id="ch-card-inner",
    )


__all__ = ["card"]
