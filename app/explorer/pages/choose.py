"""Choose: profile, workload and limits in; recommendation, curves, Pareto front and exports out."""

from __future__ import annotations

import math
import time
from typing import Any

from app.figures import LABELS, choice_figure, pareto_figure
from app.queries import default_profile, engine_curves, recommend_for, regression_band
from app.recommend import FORMATS, WORKLOAD, Constraints, Recommendation, export_bytes, export_filename
from app.results_view import Results
from models.errors import UserError

DEFAULT_BUDGET_US = 1000.0
WL_IDS = [f"ch-wl-{k}" for k in WORKLOAD]


def constraints_from(budget_us: Any, cpu_ms: Any, remote_ms: Any) -> Constraints:
    def num(v: Any, name: str, scale: float) -> float | None:
        if v in (None, ""):
            return None
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise UserError(f"{name}: not a number") from None
        if not math.isfinite(f) or f < 0:
            raise UserError(f"{name}: must be a number >= 0")
        return f * scale

    b = num(budget_us, "stall budget", 1e-6)
    if b is None:
        raise UserError("enter a p99 stall budget in µs")
    return Constraints(
        b, num(cpu_ms, "CPU-time limit", 1e-3), num(remote_ms, "remote IPI CPU-time limit", 1e-3)
    )


def _fmt_rate(x: float) -> str:
    return f"{x / 1e6:.3f} M" if x >= 1e6 else f"{x / 1e3:.1f} k"


def card(rec: Recommendation) -> Any:
    from dash import html

    c = rec.choice
    if rec.feasible:
        head = [
            html.Div("Recommended", className="muted"),
            html.Div(
                [
                    "NR_MAX_BATCHED_MIGRATION = ",
                    html.Span(str(c.batch_limit_pages), id="ch-rec-batch"),
                ],
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
    lines = [
        html.Div(context, className="muted", id="ch-rec-context"),
        html.Div(
            f"throughput {_fmt_rate(c.pages_per_s)} base pages/s "
            f"(90 %: {_fmt_rate(rec.pages_per_s_lo)} – {_fmt_rate(rec.pages_per_s_hi)} Monte Carlo"
            + (
                f"; regression {_fmt_rate(rec.regression_pages_per_s[1])} – {_fmt_rate(rec.regression_pages_per_s[2])}"
                if rec.regression_pages_per_s
                else ""
            )
            + ")"
        ),
        html.Div(
            f"p99 stall {c.stall_p99_s * 1e6:.1f} µs (budget {rec.constraints.stall_p99_s * 1e6:g} µs), "
            f"CPU time {c.cpu_time_s * 1e3:.2f} ms, remote IPI CPU time {c.remote_cpu_time_s * 1e3:.3f} ms"
        ),
    ]
    if rec.gain is not None:
        parts = [f"{rec.gain:.3f}×"]
        if rec.gain_lo is not None and rec.gain_hi is not None:
            parts.append(f" (90 % interval {rec.gain_lo:.3f}× – {rec.gain_hi:.3f}×")
            if rec.gain_mc:
                parts.append(f"; Monte Carlo {rec.gain_mc[0]:.3f}–{rec.gain_mc[1]:.3f}×")
            if rec.gain_regression:
                parts.append(f"; regression {rec.gain_regression[1]:.3f}–{rec.gain_regression[2]:.3f}×")
            parts.append(")")
        lines.append(
            html.Div(
                [
                    "gain over the kernel default (512 pages, cpu copy): ",
                    html.B("".join(parts), id="ch-rec-gain"),
                ]
            )
        )
    else:
        lines.append(html.Div("gain over the default: not available", id="ch-rec-gain"))
    lines.append(html.Div(["why: ", html.Span(rec.why, id="ch-rec-why")], className="muted"))
    if rec.regression_note:
        lines.append(html.Div(rec.regression_note, className="warn", id="ch-reg-note"))
    rows = [
        html.Tr(
            [html.Th(h) for h in ("rank", "batch (pages)", "engine × threads", "pages/s", "p99 stall (µs)")]
        )
    ]
    for i, r in enumerate([rec.choice, *rec.runners_up], start=1):
        rows.append(
            html.Tr(
                [
                    html.Td(str(i)),
                    html.Td(str(r.batch_limit_pages)),
                    html.Td(f"{r.copy_engine} ×{r.copy_threads}"),
                    html.Td(f"{r.pages_per_s:,.0f}"),
                    html.Td(f"{r.stall_p99_s * 1e6:.1f}"),
                ]
            )
        )
    p = rec.provenance
    prov = html.Div(
        f"sweep {p.sweep_spec_hash} · model {p.model_version} ({p.results_model}) · data {p.data_hash[:12]}"
        + (f" · regression {p.regression_version}" if p.regression_version else ""),
        className="muted",
    )
    return html.Div(
        [*head, html.Hr(), *lines, html.Table(rows), prov], className="panel card", id="ch-card-inner"
    )


def layout(state: Any, results: Results, selection: dict[str, Any]) -> Any:
    from dash import dcc, html

    model = str(selection.get("model") if selection.get("model") in results.models else results.default_model)
    profiles = results.profiles(model)
    profile = (
        str(selection["profile"]) if selection.get("profile") in profiles else default_profile(results, model)
    )
    wl = results.resolve_workload(profile, selection.get("workload"), model)
    values = results.workload_values(profile, model)
    controls = [
        html.H3("Machine and workload", style={"marginTop": 0}),
        html.Label("hardware profile", htmlFor="ch-profile"),
        dcc.Dropdown(id="ch-profile", options=list(profiles), value=profile, clearable=False),
        html.Label("results model"),
        dcc.RadioItems(id="ch-model", options=list(results.models), value=model, inline=True),
    ]
    for k, cid in zip(WORKLOAD, WL_IDS, strict=True):
        controls += [
            html.Label(LABELS.get(k, k), htmlFor=cid),
            dcc.Dropdown(
                id=cid,
                options=[{"label": str(v), "value": v} for v in values[k]],
                value=wl[k],
                clearable=False,
                disabled=len(values[k]) < 2,
            ),
        ]
    controls += [
        html.H3("Limits"),
        html.Label("p99 stall budget (µs)", htmlFor="ch-budget"),
        dcc.Input(
            id="ch-budget",
            type="number",
            min=0,
            value=selection.get("budget_us", DEFAULT_BUDGET_US),
            debounce=True,
        ),
        html.Label("CPU time per call limit (ms, optional)", htmlFor="ch-cpu"),
        dcc.Input(id="ch-cpu", type="number", min=0, value=selection.get("cpu_ms"), debounce=True),
        html.Label("remote IPI CPU time limit (ms, optional)", htmlFor="ch-remote"),
        dcc.Input(id="ch-remote", type="number", min=0, value=selection.get("remote_ms"), debounce=True),
        html.H3("Export"),
        html.Div(
            [
                html.Button(f.upper() if f != "kernel" else "kernel snippet", id=f"ch-exp-{f}")
                for f in FORMATS
            ],
            className="exports",
        ),
        dcc.Download(id="ch-download"),
    ]
    warn = [html.Div(w, className="warn") for w in results.warnings]
    return html.Div(
        [
            *warn,
            html.Div(
                [
                    html.Div(controls, className="panel controls"),
                    html.Div(
                        [
                            html.Div(id="ch-card"),
                            html.Span(id="ch-stamp", style={"display": "none"}),
                            html.Div(
                                dcc.Graph(id="ch-pareto", config={"displaylogo": False}),
                                className="panel",
                                style={"marginTop": "14px"},
                            ),
                        ],
                        className="grow",
                    ),
                ],
                className="row",
            ),
            html.Div(
                dcc.Graph(id="ch-curves", config={"displaylogo": False}),
                className="panel",
                style={"marginTop": "14px"},
            ),
        ]
    )


def compute(
    state: Any,
    folder_id: Any,
    session: Any,
    profile: Any,
    model: Any,
    wl_values: Any,
    budget: Any,
    cpu: Any,
    remote: Any,
) -> tuple[Results, Recommendation, Constraints]:
    """The recommendation for the page's inputs (shared by the update and export callbacks)."""
    results = state.results(folder_id)
    cons = constraints_from(budget, cpu, remote)
    rec = recommend_for(
        results,
        profile,
        dict(zip(WORKLOAD, wl_values, strict=True)),
        cons,
        model=model,
        regression=state.regression(session),
    )
    return results, rec, cons


def register(app: Any, state: Any) -> None:
    from dash import Input, Output, State, ctx, dcc, html, no_update

    inputs = [Input("ch-profile", "value"), Input("ch-model", "value")]
    inputs += [Input(cid, "value") for cid in WL_IDS]
    inputs += [Input("ch-budget", "value"), Input("ch-cpu", "value"), Input("ch-remote", "value")]
    outputs = [Output(cid, "options") for cid in WL_IDS] + [Output(cid, "value") for cid in WL_IDS]
    outputs += [
        Output("ch-card", "children"),
        Output("ch-curves", "figure"),
        Output("ch-pareto", "figure"),
        Output("ch-stamp", "children"),
        Output("selection", "data"),
    ]

    @app.callback(*outputs, *inputs, State("folder", "value"), State("session", "data"))
    def update(profile: Any, model: Any, *rest: Any) -> Any:
        *wl_values, budget, cpu, remote, folder_id, session = rest
        n = len(WL_IDS)
        try:
            results, rec, cons = compute(
                state, folder_id, session, profile, model, wl_values, budget, cpu, remote
            )
        except UserError as exc:
            msg = html.Div(str(exc), className="error", id="ch-error")
            return (*[no_update] * (2 * n), msg, no_update, no_update, f"error {time.time()}", no_update)
        # Only touch the workload dropdowns when their options or values change (fewer re-renders).
        if ctx.triggered_id in ("ch-profile", "ch-model", None):
            values = results.workload_values(rec.profile, model)
            options: list[Any] = [[{"label": str(v), "value": v} for v in values[k]] for k in WORKLOAD]
        else:
            options = [no_update] * n
        new_values = [
            no_update if rec.workload[k] == v else rec.workload[k]
            for k, v in zip(WORKLOAD, wl_values, strict=True)
        ]
        cands = results.candidates(rec.profile, rec.workload, model)
        band = regression_band(cands, rec, state.regression(session))
        selection = {
            "profile": rec.profile,
            "model": model,
            "workload": rec.workload,
            "budget_us": budget,
            "cpu_ms": cpu,
            "remote_ms": remote,
        }
        stamp = (
            f"{rec.choice.batch_limit_pages}|{rec.choice.copy_engine}|{rec.choice.copy_threads}|{time.time()}"
        )
        return (
            *options,
            *new_values,
            card(rec),
            choice_figure(engine_curves(cands, cons), rec, cons, band),
            pareto_figure(cands, rec, cons),
            stamp,
            selection,
        )

    states = [State("ch-profile", "value"), State("ch-model", "value")]
    states += [State(cid, "value") for cid in WL_IDS]
    states += [State("ch-budget", "value"), State("ch-cpu", "value"), State("ch-remote", "value")]

    @app.callback(
        Output("ch-download", "data"),
        *[Input(f"ch-exp-{f}", "n_clicks") for f in FORMATS],
        *states,
        State("folder", "value"),
        State("session", "data"),
        prevent_initial_call=True,
    )
    def export(*args: Any) -> Any:
        n = len(FORMATS)
        profile, model, *rest = args[n:]
        *wl_values, budget, cpu, remote, folder_id, session = rest
        fmt = str(ctx.triggered_id or "").removeprefix("ch-exp-")
        if fmt not in FORMATS:
            return no_update
        try:
            _results, rec, _cons = compute(
                state, folder_id, session, profile, model, wl_values, budget, cpu, remote
            )
        except UserError:
            return no_update
        return dcc.send_bytes(export_bytes(rec, fmt), export_filename(rec, fmt))
