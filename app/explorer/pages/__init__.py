"""Explorer pages. Each module has ``layout(state, results, selection)`` and ``register(app, state)``."""

from __future__ import annotations

from typing import Any

PATHS = {
    "/": "choose",
    "/choose": "choose",
    "/landscape": "landscape",
    "/evidence": "evidence",
    "/sweeps": "sweeps",
}


def problem_page(message: str) -> Any:
    """What is wrong with the results folder, and what to do (never a traceback)."""
    from dash import dcc, html

    return html.Div(
        [
            html.H2("The results folder cannot be used"),
            html.Div(message, className="error", id="results-problem"),
            html.P(
                [
                    "Choose another folder above, open ",
                    dcc.Link("Sweeps", href="/sweeps"),
                    " to see the folders this explorer knows, or run ",
                    html.Code("foliotune sweep sweep/specs/default.toml --out DIR"),
                    " and start the explorer with ",
                    html.Code("foliotune explore --results DIR"),
                    ".",
                ],
                className="muted",
            ),
        ],
        className="panel",
    )


def register(app: Any, state: Any) -> None:
    from dash import Input, Output, State, html

    from app.explorer import results_or_error
    from app.explorer.pages import choose, evidence, landscape, sweeps

    modules = {"choose": choose, "landscape": landscape, "evidence": evidence, "sweeps": sweeps}

    @app.callback(
        Output("page", "children"),
        Input("url", "pathname"),
        Input("folder", "value"),
        State("selection", "data"),
    )
    def route(pathname: str | None, folder_id: str | None, selection: dict[str, Any] | None) -> Any:
        name = PATHS.get(pathname or "/")
        if name is None:
            return html.Div([html.H2("No such page"), html.P(f"{pathname} is not a page of the explorer.")])
        if name == "sweeps":
            return sweeps.layout(state, None, selection)
        results, problem = results_or_error(state, folder_id)
        if results is None:
            return problem_page(problem)
        return modules[name].layout(state, results, selection or {})

    app.clientside_callback(
        """function(path) {
            const map = {"/": "nav-choose", "/choose": "nav-choose", "/landscape": "nav-landscape",
                         "/evidence": "nav-evidence", "/sweeps": "nav-sweeps"};
            return ["nav-choose", "nav-landscape", "nav-evidence", "nav-sweeps"].map(
                id => "nav" + (map[path] === id ? " active" : ""));
        }""",
        Output("nav-choose", "className"),
        Output("nav-landscape", "className"),
        Output("nav-evidence", "className"),
        Output("nav-sweeps", "className"),
        Input("url", "pathname"),
    )
    for m in modules.values():
        m.register(app, state)
