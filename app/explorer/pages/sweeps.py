"""Sweeps: the results folders the explorer knows (with their manifests) and background sweeps."""

from __future__ import annotations

from typing import Any

from dash import Input, Output, dcc, html, no_update

from app.results_view import ResultsError, load_results


def _folders_table(state: Any) -> Any:
    rows = [
        html.Tr(
            [
                html.Th(h)
                for h in (
                    "#",
                    "folder",
                    "name",
                    "points done",
                    "complete",
                    "models",
                    "spec hash",
                    "code",
                    "updated",
                    "state",
                )
            ]
        )
    ]
    for opt in state.folder_options():
        path = state.folder(opt["value"])
        try:
            st = load_results(path).status()
            cells = [
                st["name"][:60],
                f"{st['points_done']:,} / {st['n_points']:,}",
                "yes" if st["complete"] else "no",
                ", ".join(st["models"]),
                st["spec_hash"],
                st["code_version"],
                str(st["updated"]),
                "usable",
            ]
        except ResultsError as exc:
            cells = ["", "", "", "", "", "", "", html.Span(str(exc), className="error")]
        except Exception as exc:
            cells = ["", "", "", "", "", "", "", html.Span(f"{type(exc).__name__}: {exc}", className="error")]
        rows.append(
            html.Tr(
                [
                    html.Td(opt["value"]),
                    html.Td(str(path), style={"textAlign": "left"}),
                    *[html.Td(c) for c in cells],
                ]
            )
        )
    return html.Table(rows, className="data", id="sw-folders")


def _jobs_table(state: Any) -> Any:
    jobs = state.jobs.jobs()
    if not jobs:
        return html.P(
            "No sweeps started from this explorer yet (select cells on Landscape).", className="muted"
        )
    rows = [html.Tr([html.Th(h) for h in ("sweep", "points", "progress", "state", "folder")])]
    for j in jobs:
        p = state.jobs.progress(j)
        rows.append(
            html.Tr(
                [
                    html.Td(j.id),
                    html.Td(f"{p['done']:,} / {p['total']:,}"),
                    html.Td(html.Progress(value=str(p["done"]), max=str(max(p["total"], 1)))),
                    html.Td(
                        p["state"] + (f": {p['error']}" if p["error"] else ""),
                        className="error" if p["error"] else "",
                    ),
                    html.Td(str(j.out_dir), style={"textAlign": "left"}),
                ]
            )
        )
    return html.Table(rows, className="data", id="sw-jobs")


def layout(state: Any, results: Any, selection: Any) -> Any:
    return html.Div(
        [
            html.Div(
                [
                    html.H3("Results folders", style={"marginTop": 0}),
                    html.Div(_folders_table(state), id="sw-folders-box"),
                ],
                className="panel",
            ),
            html.Div(
                [
                    html.H3("Sweeps started here", style={"marginTop": 0}),
                    html.P(f"written under {state.sweeps_dir}", className="muted"),
                    html.Div(_jobs_table(state), id="sw-jobs-box"),
                ],
                className="panel",
                style={"marginTop": "14px"},
            ),
            dcc.Interval(id="sw-poll", interval=1000),
        ]
    )


def register(app: Any, state: Any) -> None:
    @app.callback(
        Output("sw-jobs-box", "children"),
        Output("sw-folders-box", "children"),
        Output("folder", "options", allow_duplicate=True),
        Input("sw-poll", "n_intervals"),
        prevent_initial_call=True,
    )
    def refresh(_n: Any) -> Any:
        for j in state.jobs.jobs():
            if state.jobs.progress(j)["state"] == "done":
                state.add_folder(j.out_dir)
        if not state.jobs.running() and _n and _n % 5:
            return no_update, no_update, no_update
        return _jobs_table(state), _folders_table(state), state.folder_options()
