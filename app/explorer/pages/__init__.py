"""Explorer pages. Each module has ``layout(state, results, selection)`` and ``register(app, state)``.

:data:`PAGES` is the one list of pages: the router, the navigation links and their highlighting
are all derived from it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from dash import Input, Output, State, ctx, dcc, html, no_update

from app.explorer import results_or_error


@dataclass(frozen=True)
class Page:
    """A page of the explorer: its module in this package, its title, the paths it answers and
    whether it shows the selected results folder (a page that does not opens even when the folder
    cannot be read)."""

    name: str
    title: str
    paths: tuple[str, ...]
    needs_results: bool = True

    @property
    def nav_id(self) -> str:
        return f"nav-{self.name}"


PAGES: tuple[Page, ...] = (
    Page("choose", "Choose", ("/", "/choose")),
    Page("landscape", "Landscape", ("/landscape",)),
    Page("evidence", "Evidence", ("/evidence",)),
    Page("sweeps", "Sweeps", ("/sweeps",), needs_results=False),
)
#: Path -> page.
PATHS: dict[str, Page] = {path: page for page in PAGES for path in page.paths}


def nav_links() -> list[Any]:
    """The header's links, one per page."""
    return [dcc.Link(p.title, href=p.paths[0], id=p.nav_id, className="nav") for p in PAGES]


def problem_page(message: str) -> Any:
    """What is wrong with the results folder, and what to do (never a traceback)."""
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


def page_content(
    state: Any, pathname: str | None, folder_id: Any, selection: dict[str, Any] | None, session: Any = None
) -> Any:
    """The page at ``pathname`` for the results folder ``folder_id`` (a problem page if it cannot be
    read); the Choose page comes evaluated for ``selection`` with the ``session``'s regression."""
    page = PATHS.get(pathname or "/")
    if page is None:
        return html.Div([html.H2("No such page"), html.P(f"{pathname} is not a page of the explorer.")])
    module = import_module(f"{__name__}.{page.name}")
    if not page.needs_results:
        return module.layout(state, None, selection)
    results, problem = results_or_error(state, folder_id)
    if results is None:
        return problem_page(problem)
    if page.name == "choose":
        return module.layout(state, results, selection or {}, session=session)
    return module.layout(state, results, selection or {})


def register(app: Any, state: Any) -> None:
    """The router, the navigation highlighting and every page's callbacks, on ``app``."""
    # Dash (and the pages, which use it) load only when an app is built: ~1 s the CLI need not pay.
    modules = {p.name: import_module(f"{__name__}.{p.name}") for p in PAGES}

    @app.callback(
        Output("page", "children"),
        Output("page-path", "data"),
        Input("url", "pathname"),
        Input("folder", "value"),
        State("selection", "data"),
        State("page-path", "data"),
        State("session", "data"),
        prevent_initial_call=True,
    )
    def route(
        pathname: str | None,
        folder_id: str | None,
        selection: dict[str, Any] | None,
        shown: Any,
        session: Any,
    ) -> Any:
        # The page the address names came with the layout (create_app): dcc.Location reporting
        # the same path on load changes nothing.
        if ctx.triggered_id == "url" and (pathname or "/") == shown:
            return no_update, no_update
        return page_content(state, pathname, folder_id, selection, session), pathname or "/"

    nav_of_path = {path: p.nav_id for p in PAGES for path in p.paths}
    nav_ids = [p.nav_id for p in PAGES]
    app.clientside_callback(
        f"""function(path) {{
            const map = {json.dumps(nav_of_path)};
            return {json.dumps(nav_ids)}.map(id => "nav" + (map[path] === id ? " active" : ""));
        }}""",
        *[Output(i, "className") for i in nav_ids],
        Input("url", "pathname"),
    )
    for m in modules.values():
        m.register(app, state)
