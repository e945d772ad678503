"""Choose: profile, workload and limits in; recommendation, curves, Pareto front, marginal view, exports out.

The default source is **live**: the analytic and Monte Carlo models are evaluated in the request for
exactly the workload set on the page (every parameter editable: type a value into a field and pick
it), without a sweep (:mod:`app.live`, the same function as ``foliotune recommend`` without
``--results``). The sweep's models stay selectable. The selection lives in the URL (``?profile=…``), so
a link reproduces the view.
"""

from __future__ import annotations

import math
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pandas as pd
from dash import Input, Output, State, ctx, dcc, html, no_update

from app.explorer.pages.choose_card import card
from app.figures.choose import (
    CURVES_HEIGHT_PX,
    MARGINAL_HEIGHT_PX,
    PARETO_HEIGHT_PX,
    choice_figure,
    marginal_figure,
    pareto_figure,
)
from app.figures.common import LABELS
from app.live import live_view
from app.queries import default_profile, engine_curves, recommend_for, regression_band
from app.recommend import OPTIONAL_WORKLOAD, WORKLOAD, Constraints, Recommendation
from app.recommend_exports import FORMATS, export_bytes, export_filename
from app.results_view import KEY_WORKLOAD, Results
from models.errors import UserError
from models.params import defaults_for
from models.profiles import get_profile, profile_names

DEFAULT_BUDGET_US = 1000.0
LIVE = "live"
PARAMS: tuple[str, ...] = (*WORKLOAD, *OPTIONAL_WORKLOAD)
WL_IDS = [f"ch-wl-{k}" for k in WORKLOAD]
OPT_IDS = [f"ch-wl-{k}" for k in OPTIONAL_WORKLOAD]
ALL_IDS = [*WL_IDS, *OPT_IDS]
TEXT_PARAMS = ("mode", "kernel", "folio_mix")
#: Fields that may be left empty (folio_mix: one folio size, folio_kb, instead).
CLEARABLE = ("folio_mix",)
#: Suggested values per parameter in live mode (any other value can be typed in).
SUGGEST: dict[str, list[Any]] = {
    "folio_kb": [4, 16, 64, 512, 2048],
    "n_folios": [1, 16, 128, 512, 1024, 4096, 16384],
    "target_cpus": [1, 2, 4, 8, 16, 32, 64],
    "mapcount": [1, 2, 4, 8],
    "busy_prob": [0.0, 0.001, 0.01, 0.05, 0.1],
    "access_rate_hz": [10.0, 100.0, 1000.0, 10000.0, 100000.0],
    "mode": ["async", "sync"],
    "kernel": ["6.3", "6.6", "6.8", "6.12", "6.15"],
    "folio_mix": ["4:0.7,64:0.2,2048:0.1", "4:0.5,2048:0.5"],
}
OPT_LABELS = {
    "kernel": "kernel version (MAJOR.MINOR)",
    "folio_mix": "folio mix KB:share,… (optional)",
}


#: The page's figures: each graph is drawn from a store the server writes (see :data:`SHOW_FIGURE`).
GRAPHS: tuple[str, ...] = ("ch-marginal", "ch-pareto", "ch-curves")
#: Draws a figure now when its graph is on screen (or has no figure yet), else when it comes within
#: 200 px of the screen or the browser is idle after the update: an interaction then waits only
#: for what can be seen. A graph waiting to be drawn has the class ``ft-deferred`` and, in
#: ``data-ft-stamp``, the stamp of the figure it waits for (each figure's ``layout.uirevision``).
SHOW_FIGURE = """function(fig) {
  const show = window.ftShowFigure || (window.ftShowFigure = (() => {
    const waiting = {};
    const idle = window.requestIdleCallback || ((cb) => setTimeout(cb, 50));
    const onScreen = (el) => {
      const r = el.getBoundingClientRect();
      return r.bottom > 0 && r.top < window.innerHeight;
    };
    // after the page on screen is drawn: no request pending, no graph plotting (at most ~2 s)
    const whenDrawn = (cb, frames = 0) => requestAnimationFrame(() => {
      const busy = document.querySelector('[data-dash-is-loading="true"], .dash-graph--pending');
      if (busy && frames < 120) whenDrawn(cb, frames + 1); else cb();
    });
    const flush = (gid) => {
      if (!(gid in waiting)) return;
      const f = waiting[gid];
      delete waiting[gid];
      const el = document.getElementById(gid);
      if (el) el.classList.remove('ft-deferred');
      dash_clientside.set_props(gid, {figure: f});
    };
    const io = new IntersectionObserver((entries) => {
      for (const e of entries) if (e.isIntersecting) whenDrawn(() => flush(e.target.id));
    }, {rootMargin: '200px'});
    const defer = (el, f) => {
      el.dataset.ftStamp = (f && f.layout && f.layout.uirevision) || '';
      el.classList.add('ft-deferred');
      whenDrawn(() => {
        io.observe(el);
        idle(() => flush(el.id), {timeout: 1000});
      });
    };
    return (f, gid) => {
      const el = document.getElementById(gid);
      if (!el) return f;
      // a first figure is drawn at once: held back, the graph would draw an empty plot first
      if (onScreen(el) || !el.querySelector('.main-svg .trace')) {
        delete waiting[gid];
        el.classList.remove('ft-deferred');
        return f;
      }
      waiting[gid] = f;
      defer(el, f);
      return dash_clientside.no_update;
    };
  })());
  return show(fig, '__GRAPH__');
}"""
#: The selection goes into the address bar after the page is drawn (history.pushState is not free).
SHOW_QUERY = """function(q) {
  if (q) (window.requestIdleCallback || ((cb) => setTimeout(cb, 50)))(
    () => dash_clientside.set_props('ch-url', {search: q}), {timeout: 500});
  return dash_clientside.no_update;
}"""


def constraints_from(budget_us: Any, cpu_ms: Any, remote_ms: Any) -> Constraints:
    def num(v: Any, name: str, scale: float) -> float | None:
        if v in (None, ""):
            return None
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise UserError(f"{name}: not a number") from None
        if not math.isfinite(f) or f <= 0:
            raise UserError(f"{name}: must be > 0")
        return f * scale

    b = num(budget_us, "stall budget", 1e-6)
    if b is None:
        raise UserError("enter a p99 stall budget in µs")
    return Constraints(
        b, num(cpu_ms, "CPU-time limit", 1e-3), num(remote_ms, "remote IPI CPU-time limit", 1e-3)
    )


def _typed(name: str, v: Any) -> Any:
    """A typed-in value as the parameter's type (text for mode, kernel, folio_mix; else a number)."""
    if v is None or v == "":
        return None
    if name in TEXT_PARAMS:
        return str(v).strip()
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return int(f) if f.is_integer() and name not in ("busy_prob", "access_rate_hz") else f


def option_label(v: Any) -> str:
    """A dropdown option's label: floats without trailing zeros."""
    return f"{v:g}" if isinstance(v, float) else str(v)


def _options(values: list[Any]) -> list[dict[str, Any]]:
    return [{"label": option_label(v), "value": v} for v in values]


def live_values(profile: str, results: Results | None) -> dict[str, list[Any]]:
    """Suggested values per parameter for ``profile``: the typical ones, the profile's defaults, the sweep's."""
    prof = get_profile(profile)
    d = defaults_for(prof)
    swept: dict[str, list[Any]] = {}
    if results is not None and profile in results.profiles():
        swept = results.workload_values(profile)
    out: dict[str, list[Any]] = {}
    for k in PARAMS:
        vals = [*SUGGEST.get(k, []), *([d[k]] if d.get(k) is not None else []), *swept.get(k, [])]
        if k == "folio_kb":
            vals = [v for v in vals if v >= prof.page_kb]
        if k == "target_cpus":
            vals = [v for v in vals if v <= prof.cpus]
        out[k] = sorted({_typed(k, v) for v in vals} - {None}, key=lambda v: (isinstance(v, str), v))
    return out


def sweep_values(results: Results, profile: str, model: str) -> dict[str, list[Any]]:
    """Each field's values in the sweep's rows (the kernel version too when the sweep varies it);
    none for a folio mix (a sweep's rows are looked up by one folio size)."""
    swept = results.workload_values(profile, model)
    return {**swept, **{k: [] for k in PARAMS if k not in swept}}


def live_defaults(profile: str) -> dict[str, Any]:
    d = defaults_for(get_profile(profile))
    return {k: _typed(k, d.get(k)) for k in WORKLOAD}


def profiles_for(results: Results) -> list[str]:
    return list(dict.fromkeys([*results.profiles(), *profile_names()]))


def layout(state: Any, results: Results, selection: dict[str, Any], session: Any = None) -> Any:
    """The page, evaluated for ``selection`` (card, figures; an error in the card if it cannot be)."""
    models = [LIVE, *results.models]
    model = str(selection.get("model") if selection.get("model") in models else LIVE)
    profiles = profiles_for(results) if model == LIVE else list(results.profiles(model))
    profile = str(selection["profile"]) if selection.get("profile") in profiles else default_profile(results)
    if model == LIVE:
        wl = {**live_defaults(profile), **(selection.get("workload") or {})}
        values = live_values(profile, results)
    else:
        wl = results.resolve_workload(profile, selection.get("workload"), model)
        values = sweep_values(results, profile, model)
    budget = selection.get("budget_us", DEFAULT_BUDGET_US)
    try:
        rec, cons, cands, screened = evaluate_page(
            state,
            results,
            session,
            profile,
            model,
            [wl.get(k) for k in PARAMS],
            budget,
            selection.get("cpu_ms"),
            selection.get("remote_ms"),
        )
        shown_card, figures, stamp = page_outputs(state, session, model == LIVE, rec, cons, cands, screened)
    except UserError as exc:
        shown_card, figures = html.Div(str(exc), className="error", id="ch-error"), {}
        stamp = f"error {time.time()}"
    model_opts = [{"label": "live models (evaluated now)", "value": LIVE}]
    model_opts += [{"label": f"sweep: {m}", "value": m} for m in results.models]
    controls = [
        html.H3("Machine and workload", style={"marginTop": 0}),
        html.Label("hardware profile", htmlFor="ch-profile"),
        dcc.Dropdown(id="ch-profile", options=profiles, value=profile, clearable=False),
        html.Label("source"),
        dcc.RadioItems(id="ch-model", options=model_opts, value=model),
        html.Div("type any value into a field and pick it", className="muted", id="ch-hint"),
    ]
    for k, cid in zip(PARAMS, ALL_IDS, strict=True):
        optional = k in CLEARABLE
        controls += [
            html.Label(OPT_LABELS.get(k) or LABELS.get(k, k), htmlFor=cid),
            dcc.Dropdown(
                id=cid,
                options=_options(values.get(k, [])),
                value=wl.get(k),
                clearable=optional,
                searchable=True,
                placeholder="not set" if optional else None,
                disabled=model != LIVE and (optional or len(values.get(k, [])) < 2),
            ),
        ]
    controls += [
        html.H3("Limits"),
        html.Label("p99 stall budget (µs)", htmlFor="ch-budget"),
        dcc.Input(
            id="ch-budget",
            type="number",
            value=budget,
            debounce=True,
        ),
        html.Label("CPU time per call limit (ms, optional)", htmlFor="ch-cpu"),
        dcc.Input(id="ch-cpu", type="number", value=selection.get("cpu_ms"), debounce=True),
        html.Label("remote IPI CPU time limit (ms, optional)", htmlFor="ch-remote"),
        dcc.Input(id="ch-remote", type="number", value=selection.get("remote_ms"), debounce=True),
        html.H3("Export"),
        html.Div(
            [
                html.Button(
                    {"kernel": "kernel snippet", "patch": "patch"}.get(f, f.upper()), id=f"ch-exp-{f}"
                )
                for f in FORMATS
            ],
            className="exports",
        ),
        dcc.Download(id="ch-download"),
    ]
    warn = [html.Div(w, className="warn") for w in results.warnings]
    graph: Any = {"displaylogo": False}

    def plot(gid: str, height_px: int) -> Any:
        # drawn with its first figure (without one, dcc.Graph draws an empty plot first)
        first: dict[str, Any] = {"figure": figures[gid]} if gid in figures else {}
        return dcc.Graph(id=gid, config=graph, style={"height": f"{height_px}px"}, **first)

    return html.Div(
        [
            *warn,
            dcc.Location(id="ch-url", refresh=False),
            *[dcc.Store(id=f"{g}-fig", data=figures.get(g)) for g in GRAPHS],
            dcc.Store(id="ch-query"),
            html.Div(
                [
                    html.Div(controls, className="panel controls"),
                    html.Div(
                        [
                            html.Div(shown_card, id="ch-card"),
                            html.Span(stamp, id="ch-stamp", style={"display": "none"}),
                            html.Div(
                                plot("ch-marginal", MARGINAL_HEIGHT_PX),
                                className="panel",
                                style={"marginTop": "14px"},
                            ),
                            html.Div(
                                plot("ch-pareto", PARETO_HEIGHT_PX),
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
                plot("ch-curves", CURVES_HEIGHT_PX),
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
) -> tuple[Results, Recommendation, Constraints, pd.DataFrame, pd.DataFrame | None]:
    """(results, recommendation, constraints, candidates, screened-out rows) for the page's inputs."""
    results = state.results(folder_id)
    return (results, *evaluate_page(state, results, session, profile, model, wl_values, budget, cpu, remote))


def evaluate_page(
    state: Any,
    results: Results,
    session: Any,
    profile: Any,
    model: Any,
    wl_values: Any,
    budget: Any,
    cpu: Any,
    remote: Any,
) -> tuple[Recommendation, Constraints, pd.DataFrame, pd.DataFrame | None]:
    """(recommendation, constraints, candidates, screened-out rows) for the page's inputs."""
    cons = constraints_from(budget, cpu, remote)
    values = dict(zip(PARAMS, wl_values, strict=True))
    if model == LIVE:
        wl = {k: _typed(k, v) for k, v in values.items()}
        wl = {k: v for k, v in wl.items() if v is not None}
        rec, cands, screened = live_view(str(profile), wl, cons, regression=state.regression(session))
        return rec, cons, cands, screened
    rec = recommend_for(
        results,
        profile,
        {k: values[k] for k in KEY_WORKLOAD},
        cons,
        model=model,
        regression=state.regression(session),
    )
    return rec, cons, results.candidates(rec.profile, rec.workload, model), None


def page_outputs(
    state: Any,
    session: Any,
    live: bool,
    rec: Recommendation,
    cons: Constraints,
    cands: pd.DataFrame,
    screened: pd.DataFrame | None,
) -> tuple[Any, dict[str, dict[str, Any]], str]:
    """(the card, each graph's figure by id, the stamp) for one evaluation of the page."""
    band = regression_band(cands, rec, state.regression(session)) if not live else None
    c = rec.choice
    stamp = f"{c.batch_limit_pages}|{c.copy_engine}|{c.copy_threads}|{time.time()}"
    figures = {
        "ch-marginal": _stamped(marginal_figure(rec), stamp),
        "ch-pareto": _stamped(pareto_figure(cands, rec, cons, screened), stamp),
        "ch-curves": _stamped(choice_figure(engine_curves(cands, cons), rec, cons, band), stamp),
    }
    return card(rec), figures, stamp


def _stamped(fig: Any, stamp: str) -> dict[str, Any]:
    """``fig`` as a plain dict whose ``layout.uirevision`` is the page's stamp: the browser (and the
    benchmark) can tell which update a drawn figure belongs to. A new uirevision on every update is
    what no uirevision did before (the view is reset to the new figure); it redraws nothing."""
    out: dict[str, Any] = fig if isinstance(fig, dict) else fig.to_plotly_json()
    out["layout"]["uirevision"] = stamp
    return out


def selection_query(sel: dict[str, Any]) -> str:
    """The selection as a URL query (``?profile=…&model=…&folio_kb=…&budget_us=…``)."""
    items: list[tuple[str, str]] = [("profile", str(sel["profile"])), ("model", str(sel["model"]))]
    items += [(k, str(v)) for k, v in (sel.get("workload") or {}).items() if v is not None]
    items += [(k, str(sel[k])) for k in ("budget_us", "cpu_ms", "remote_ms") if sel.get(k) not in (None, "")]
    return "?" + urlencode(items)


def selection_from_query(search: str) -> dict[str, Any]:
    q = dict(parse_qsl((search or "").lstrip("?")))
    wl = {k: _typed(k, q[k]) for k in PARAMS if k in q}
    out: dict[str, Any] = {"workload": wl}
    for k in ("profile", "model"):
        if k in q:
            out[k] = q[k]
    for k in ("budget_us", "cpu_ms", "remote_ms"):
        if k in q:
            out[k] = _typed("n_folios", q[k])  # an int when whole
    return out


def register(app: Any, state: Any) -> None:
    inputs = [Input("ch-profile", "value"), Input("ch-model", "value")]
    inputs += [Input(cid, "value") for cid in ALL_IDS]
    inputs += [Input("ch-budget", "value"), Input("ch-cpu", "value"), Input("ch-remote", "value")]
    outputs = [Output(cid, "options", allow_duplicate=True) for cid in ALL_IDS]
    outputs += [Output(cid, "value", allow_duplicate=True) for cid in ALL_IDS]
    outputs += [Output(cid, "disabled") for cid in ALL_IDS]
    outputs += [Output("ch-profile", "options")]
    outputs += [
        Output("ch-card", "children"),
        Output("ch-curves-fig", "data"),
        Output("ch-pareto-fig", "data"),
        Output("ch-marginal-fig", "data"),
        Output("ch-stamp", "children"),
        Output("selection", "data"),
        Output("ch-query", "data"),
        Output("ch-profile", "value", allow_duplicate=True),
        Output("ch-model", "value", allow_duplicate=True),
        Output("ch-budget", "value"),
        Output("ch-cpu", "value"),
        Output("ch-remote", "value"),
    ]
    n = len(ALL_IDS)
    n_out = 3 * n + 13

    @app.callback(
        *outputs,
        *inputs,
        State("folder", "value"),
        State("session", "data"),
        State("url", "search"),
        prevent_initial_call=True,  # the page comes evaluated (layout)
    )
    def update(profile: Any, model: Any, *rest: Any) -> Any:
        *wl_values, budget, cpu, remote, folder_id, session, search = rest
        linked: list[Any] = [no_update] * 5
        # the first call for a freshly rendered page lists every input as triggered
        initial = ctx.triggered_id is None or len(ctx.triggered_prop_ids) >= len(inputs) - 1
        if initial and search:
            # a link with a selection (?profile=…): the page opens on it
            sel = selection_from_query(str(search))
            profile, model = sel.get("profile", profile), sel.get("model", model)
            wl_values = [sel["workload"].get(k, v) for k, v in zip(PARAMS, wl_values, strict=True)]
            budget = sel.get("budget_us", budget)
            cpu, remote = sel.get("cpu_ms", cpu), sel.get("remote_ms", remote)
            linked = [profile, model, budget, cpu, remote]
        on_page = list(wl_values)  # what the fields show now
        if model == LIVE and set(ctx.triggered_prop_ids) == {"ch-profile.value"}:
            # another machine: its own defaults (a folio size below its page size would be invalid)
            d = live_defaults(str(profile))
            wl_values = [d.get(k) for k in PARAMS]
        try:
            results, rec, cons, cands, screened = compute(
                state, folder_id, session, profile, model, wl_values, budget, cpu, remote
            )
        except UserError as exc:
            out: list[Any] = [no_update] * n_out
            out[3 * n + 1] = html.Div(str(exc), className="error", id="ch-error")
            out[3 * n + 5] = f"error {time.time()}"
            return tuple(out)
        live = model == LIVE
        if ctx.triggered_id in ("ch-profile", "ch-model", None) or linked[0] is not no_update:
            values = live_values(rec.profile, results) if live else sweep_values(results, rec.profile, model)
            options: list[Any] = [_options(values.get(k, [])) for k in PARAMS]
            disabled: list[Any] = [
                (not live) and (k in CLEARABLE or len(values.get(k, [])) < 2) for k in PARAMS
            ]
            profile_opts: Any = profiles_for(results) if live else list(results.profiles(model))
        else:
            options = [no_update] * n
            disabled = [no_update] * n
            profile_opts = no_update
        shown = {k: (None if v == "" else v) for k, v in rec.workload.items()}
        new_values = [
            no_update if shown.get(k) == _typed(k, v) else shown.get(k)
            for k, v in zip(PARAMS, on_page, strict=True)
        ]
        shown_card, figures, stamp = page_outputs(state, session, live, rec, cons, cands, screened)
        selection = {
            "profile": rec.profile,
            "model": model,
            "workload": rec.workload,
            "budget_us": budget,
            "cpu_ms": cpu,
            "remote_ms": remote,
        }
        return (
            *options,
            *new_values,
            *disabled,
            profile_opts,
            shown_card,
            figures["ch-curves"],
            figures["ch-pareto"],
            figures["ch-marginal"],
            stamp,
            selection,
            selection_query(selection),
            *linked,
        )

    for g in GRAPHS:
        app.clientside_callback(
            SHOW_FIGURE.replace("__GRAPH__", g), Output(g, "figure"), Input(f"{g}-fig", "data")
        )
    app.clientside_callback(SHOW_QUERY, Output("ch-url", "search"), Input("ch-query", "data"))

    for k, cid in zip(PARAMS, ALL_IDS, strict=True):

        def creatable(search: Any, options: Any, name: str = k) -> Any:
            """Offer what is typed into a field as an option, so any value can be chosen."""
            v = _typed(name, search)
            if v is None or any(o.get("value") == v for o in options or []):
                return no_update
            return [*(options or []), {"label": option_label(v), "value": v}]

        app.callback(
            Output(cid, "options", allow_duplicate=True),
            Input(cid, "search_value"),
            State(cid, "options"),
            prevent_initial_call=True,
        )(creatable)

    states = [State("ch-profile", "value"), State("ch-model", "value")]
    states += [State(cid, "value") for cid in ALL_IDS]
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
        nf = len(FORMATS)
        profile, model, *rest = args[nf:]
        *wl_values, budget, cpu, remote, folder_id, session = rest
        fmt = str(ctx.triggered_id or "").removeprefix("ch-exp-")
        if fmt not in FORMATS:
            return no_update
        try:
            _results, rec, _cons, _c, _s = compute(
                state, folder_id, session, profile, model, wl_values, budget, cpu, remote
            )
            data = export_bytes(rec, fmt)
        except UserError:
            return no_update
        return dcc.send_bytes(data, export_filename(rec, fmt))
