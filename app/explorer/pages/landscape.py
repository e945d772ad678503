"""Landscape: the best batch limit and its gain over two chosen axes; sweep a selected region."""

from __future__ import annotations

from typing import Any

from dash import Input, Output, State, dcc, html, no_update
from werkzeug.exceptions import BadRequest

from app.explorer.jobs import RegionError, parse_region, region_spec
from app.explorer.pages.choose import DEFAULT_BUDGET_US, constraints_from
from app.figures.common import LABELS, empty_figure
from app.figures.landscape import landscape_figure
from app.queries import default_profile, landscape, landscape_axes
from app.results_view import KEY_WORKLOAD, Results
from models.errors import UserError


def _selection_context(results: Results, selection: dict[str, Any]) -> tuple[str, str, dict[str, Any], Any]:
    model = str(selection.get("model") if selection.get("model") in results.models else results.default_model)
    profs = results.profiles(model)
    profile = (
        str(selection["profile"]) if selection.get("profile") in profs else default_profile(results, model)
    )
    wl = results.resolve_workload(profile, selection.get("workload"), model)
    try:
        cons = constraints_from(
            selection.get("budget_us", DEFAULT_BUDGET_US), selection.get("cpu_ms"), selection.get("remote_ms")
        )
    except UserError:
        cons = constraints_from(DEFAULT_BUDGET_US, None, None)
    return model, profile, wl, cons


def layout(state: Any, results: Results, selection: dict[str, Any]) -> Any:
    model, profile, wl, cons = _selection_context(results, selection)
    axes = landscape_axes(results, profile, model)
    opts = [{"label": LABELS.get(a, a), "value": a} for a in axes]
    x = axes[0] if axes else None
    y = axes[1] if len(axes) > 1 else (axes[0] if axes else None)
    if "profile" in axes and len(axes) > 1:
        y = "profile" if x != "profile" else axes[0]
    context = (
        f"{profile} · {model} results · p99 stall budget {cons.stall_p99_s * 1e6:g} µs · other parameters: "
        + ", ".join(f"{k}={wl[k]}" for k in KEY_WORKLOAD)
        + " (set them on Choose)"
    )
    return html.Div(
        [
            html.Div(
                [
                    html.Div(
                        [
                            html.Label("x axis", htmlFor="ls-x"),
                            dcc.Dropdown(
                                id="ls-x", options=opts, value=x, clearable=False, style={"width": "300px"}
                            ),
                        ]
                    ),
                    html.Div(
                        [
                            html.Label("y axis", htmlFor="ls-y"),
                            dcc.Dropdown(
                                id="ls-y", options=opts, value=y, clearable=False, style={"width": "300px"}
                            ),
                        ]
                    ),
                    html.Div(
                        context, className="muted", style={"alignSelf": "flex-end", "maxWidth": "640px"}
                    ),
                ],
                className="row panel",
            ),
            html.Div(
                [
                    html.Div(
                        dcc.Graph(id="ls-heat-batch", config={"displaylogo": False}), className="panel grow"
                    ),
                    html.Div(
                        dcc.Graph(id="ls-heat-gain", config={"displaylogo": False}), className="panel grow"
                    ),
                ],
                className="row",
                style={"marginTop": "14px"},
            ),
            html.Div(
                [
                    html.H3("Sweep a region", style={"marginTop": 0}),
                    html.P(
                        "Drag a box (or lasso) over cells of the left map to select them; the new sweep refines "
                        "those axes and the batch limits, with the same engines, threads, models and seed.",
                        className="muted",
                    ),
                    html.Div("no cells selected", id="ls-selected"),
                    html.Button(
                        "Sweep this region", id="ls-launch", className="action primary", disabled=True
                    ),
                    html.Div(id="ls-job"),
                    dcc.Store(id="ls-region"),
                    dcc.Store(id="ls-job-id"),
                    dcc.Interval(id="ls-poll", interval=700, disabled=True),
                ],
                className="panel",
                style={"marginTop": "14px"},
            ),
        ]
    )


def _parse(axis: str, v: Any, values: list[Any]) -> Any:
    for cand in values:
        if str(cand) == str(v):
            return cand
    return None


def register(app: Any, state: Any) -> None:
    @app.callback(
        Output("ls-heat-batch", "figure"),
        Output("ls-heat-gain", "figure"),
        Input("ls-x", "value"),
        Input("ls-y", "value"),
        State("selection", "data"),
        State("folder", "value"),
    )
    def heatmaps(x: Any, y: Any, selection: Any, folder_id: Any) -> Any:
        if not x or not y or x == y:
            f = empty_figure("choose two different axes (the sweep needs two parameters with several values)")
            return f, f
        results = state.results(folder_id)
        model, profile, wl, cons = _selection_context(results, selection or {})
        cells = landscape(results, profile, wl, x, y, cons, model)
        return landscape_figure(cells, x, y, "batch"), landscape_figure(cells, x, y, "gain")

    @app.callback(
        Output("ls-selected", "children"),
        Output("ls-launch", "disabled"),
        Output("ls-region", "data"),
        Input("ls-heat-batch", "selectedData"),
        State("ls-x", "value"),
        State("ls-y", "value"),
        State("selection", "data"),
        State("folder", "value"),
        prevent_initial_call=True,
    )
    def selected(data: Any, x: Any, y: Any, selection: Any, folder_id: Any) -> Any:
        pts = (data or {}).get("points", [])
        if not pts or not x or not y:
            return "no cells selected", True, None
        results = state.results(folder_id)
        model, profile, wl, _cons = _selection_context(results, selection or {})
        vals = results.workload_values(profile, model)
        vals["profile"] = list(results.profiles(model))
        xs = sorted({v for p in pts if (v := _parse(x, p.get("x"), vals.get(x, []))) is not None}, key=str)
        ys = sorted({v for p in pts if (v := _parse(y, p.get("y"), vals.get(y, []))) is not None}, key=str)
        if not xs or not ys:
            return "no cells selected", True, None
        text = f"{len(xs) * len(ys)} cell(s): {LABELS.get(x, x)} ∈ {xs}, {LABELS.get(y, y)} ∈ {ys}"
        return text, False, {"axes": {x: xs, y: ys}, "profile": profile, "model": model, "workload": wl}

    @app.callback(
        Output("ls-job-id", "data"),
        Output("ls-poll", "disabled"),
        Output("ls-job", "children", allow_duplicate=True),
        Input("ls-launch", "n_clicks"),
        State("ls-region", "data"),
        State("folder", "value"),
        prevent_initial_call=True,
    )
    def launch(n: Any, region: Any, folder_id: Any) -> Any:
        if not n or not region:
            return no_update, no_update, no_update
        try:
            results = state.results(folder_id)
            parsed = parse_region(results, region)
        except RegionError as exc:  # not a region this page sent: refuse the request
            raise BadRequest(str(exc)) from None
        try:
            job = state.jobs.launch(region_spec(results, parsed))
        except UserError as exc:
            return no_update, True, html.Div(str(exc), className="error")
        return job.id, False, html.Div(f"sweep {job.id} queued ({job.n_points:,} points)", id="ls-job-status")

    @app.callback(
        Output("ls-job", "children"),
        Output("ls-poll", "disabled", allow_duplicate=True),
        Output("folder", "options", allow_duplicate=True),
        Input("ls-poll", "n_intervals"),
        State("ls-job-id", "data"),
        prevent_initial_call=True,
    )
    def poll(_n: Any, job_id: Any) -> Any:
        job = state.jobs.get(job_id) if job_id else None
        if job is None:
            return no_update, True, no_update
        p = state.jobs.progress(job)
        bar = html.Progress(value=str(p["done"]), max=str(max(p["total"], 1)))
        if p["state"] == "failed":
            return (
                html.Div(f"sweep {job.id} failed: {p['error']}", className="error", id="ls-job-status"),
                True,
                no_update,
            )
        if p["state"] == "done":
            fid = state.add_folder(job.out_dir)
            msg = html.Div(
                [
                    f"sweep {job.id} finished: {p['total']:,} points in {job.out_dir.name}. ",
                    "Pick it in the results list above, or see ",
                    dcc.Link("Sweeps", href="/sweeps"),
                    ".",
                ],
                className="ok",
                id="ls-job-status",
                **{"data-folder": fid},
            )
            return msg, True, state.folder_options()
        return (
            html.Div(
                [f"sweep {job.id} {p['state']}: {p['done']:,} of {p['total']:,} points ", bar],
                id="ls-job-status",
            ),
            False,
            no_update,
        )
