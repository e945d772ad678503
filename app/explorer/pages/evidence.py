"""Evidence: measurements over the model, residuals, the validation table, Sobol sensitivity; upload."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import pandas as pd
from dash import Input, Output, State, dcc, html

from app.evidence import (
    evidence_metrics,
    evidence_tables,
    evidence_x_options,
    parse_measurement_upload,
    residual_table,
    validation_table,
)
from app.explorer.pages.choose import DEFAULT_BUDGET_US, LIVE, constraints_from
from app.figures.common import LABELS, empty_figure
from app.figures.evidence import evidence_figure, residual_figure, sobol_figure
from app.live import recommend_live
from app.queries import default_profile, recommend_for
from app.regression_source import regression_with, rows_older_than_shipped
from app.results_view import Results
from app.sensitivity import sensitivity
from app.validation import validation_display
from models.errors import UserError


def measurements_for(state: Any, session: Any) -> pd.DataFrame:
    return state.measurements(session)  # type: ignore[no-any-return]


def _residuals(state: Any, session: Any) -> pd.DataFrame:
    resid = residual_table(measurements_for(state, session), state.regression(session))
    resid["model"] = resid["model"].replace({"regression": "regression (in sample)"})
    return resid


def _table(df: pd.DataFrame) -> Any:
    head = html.Tr([html.Th(str(c)) for c in df.columns])
    body = [html.Tr([html.Td(str(v)) for v in row]) for row in df.itertuples(index=False)]
    return html.Table([head, *body], className="data", id="ev-validation")


def layout(state: Any, results: Results, selection: dict[str, Any]) -> Any:
    meas = state.measurements()
    profiles = sorted(p for p in meas["profile"].unique() if evidence_metrics(meas, p))
    want = selection.get("profile")
    profile = want if want in profiles else (profiles[0] if profiles else None)
    metrics = evidence_metrics(meas, profile) if profile else []
    limit_mb = state.upload_limit / 2**20
    return html.Div(
        [
            html.Div(
                [
                    html.Div(
                        [
                            html.Label("profile with measurements", htmlFor="ev-profile"),
                            dcc.Dropdown(
                                id="ev-profile",
                                options=profiles,
                                value=profile,
                                clearable=False,
                                style={"width": "260px"},
                            ),
                        ]
                    ),
                    html.Div(
                        [
                            html.Label("metric", htmlFor="ev-metric"),
                            dcc.Dropdown(
                                id="ev-metric",
                                options=metrics,
                                value=metrics[0] if metrics else None,
                                clearable=False,
                                style={"width": "220px"},
                            ),
                        ]
                    ),
                    html.Div(
                        [
                            html.Label("x axis", htmlFor="ev-x"),
                            dcc.Dropdown(
                                id="ev-x", options=[], value=None, clearable=False, style={"width": "220px"}
                            ),
                        ]
                    ),
                    html.Div(
                        [
                            dcc.Upload(
                                html.Div(
                                    [
                                        "Drop or click to upload a measurement file (CSV or Parquet, schema of ",
                                        html.Code("models/data/MEASUREMENTS.md"),
                                        f", up to {limit_mb:g} MiB); the regression is refitted for this session.",
                                    ]
                                ),
                                id="ev-upload",
                                className="upload",
                                multiple=False,
                            ),
                            html.Div(id="ev-upload-status"),
                        ],
                        style={"flex": 1, "minWidth": "360px"},
                    ),
                ],
                className="row panel",
            ),
            html.Div(
                [
                    html.Div(
                        dcc.Graph(id="ev-measured", config={"displaylogo": False}), className="panel grow"
                    ),
                    html.Div(dcc.Graph(id="ev-resid", config={"displaylogo": False}), className="panel grow"),
                ],
                className="row",
                style={"marginTop": "14px"},
            ),
            html.Div(
                [
                    html.Div(
                        [
                            html.H3("Validation: error per source", style={"marginTop": 0}),
                            html.P(
                                "Mean absolute percentage error of each model per source and metric, as "
                                "`foliotune validate` reports it: analytic and Monte Carlo out of sample (no "
                                "fitting); calibrated and regression cross-validated (5-fold over "
                                "configurations, and leaving each source out).",
                                className="muted",
                            ),
                            html.Div(id="ev-validation-box", style={"overflowX": "auto"}),
                            dcc.Interval(id="ev-validation-poll", interval=2000, disabled=False),
                        ],
                        className="panel",
                        # full width: the cross-validated table has a column per model
                        style={"flex": "1 1 100%", "minWidth": 0, "boxSizing": "border-box"},
                    ),
                    html.Div(dcc.Graph(id="ev-sobol", config={"displaylogo": False}), className="panel grow"),
                ],
                className="row",
                style={"marginTop": "14px"},
            ),
        ]
    )


def upload_refused(reason: str) -> Any:
    """The upload status box's one-line refusal (the server sends it too, for requests above its
    size cap)."""
    return html.Div(f"Upload refused: {reason}", className="error", id="ev-upload-error")


def register(app: Any, state: Any) -> None:
    @app.callback(
        Output("ev-metric", "options"),
        Output("ev-metric", "value"),
        Input("ev-profile", "value"),
        State("ev-metric", "value"),
        State("session", "data"),
        prevent_initial_call=True,
    )
    def metrics(profile: Any, current: Any, session: Any) -> Any:
        ms = evidence_metrics(measurements_for(state, session), profile) if profile else []
        return ms, (current if current in ms else (ms[0] if ms else None))

    @app.callback(
        Output("ev-measured", "figure"),
        Output("ev-x", "options"),
        Output("ev-x", "value"),
        Input("ev-profile", "value"),
        Input("ev-metric", "value"),
        Input("ev-x", "value"),
        Input("ev-upload-status", "children"),
        State("session", "data"),
    )
    def measured(profile: Any, metric: Any, x: Any, _status: Any, session: Any) -> Any:
        if not profile or not metric:
            return empty_figure("no measurements for this profile"), [], None
        meas = measurements_for(state, session)
        opts = evidence_x_options(meas, profile, metric)
        pts, curves, x = evidence_tables(meas, profile, metric, x)
        options = [{"label": LABELS.get(o, o), "value": o} for o in opts]
        return evidence_figure(pts, curves, metric, x), options, x

    @app.callback(
        Output("ev-resid", "figure"),
        Input("ev-upload-status", "children"),
        State("session", "data"),
    )
    def residuals(_status: Any, session: Any) -> Any:
        return residual_figure(_residuals(state, session))

    @app.callback(
        Output("ev-validation-box", "children"),
        Output("ev-validation-poll", "disabled"),
        Input("ev-upload-status", "children"),
        Input("ev-validation-poll", "n_intervals"),
        State("session", "data"),
    )
    def validation(_status: Any, _n: Any, session: Any) -> Any:
        v = state.validation(measurements_for(state, session))
        if v.summary is not None:
            return [
                _table(validation_display(v.summary)),
                *[html.Div(n, className="muted") for n in v.notes],
            ], True
        status = v.status
        quick = _table(validation_table(_residuals(state, session)))
        if status == "queued":
            msg = "Cross-validation waits for other validations to finish; meanwhile, in-sample errors:"
            return [html.Div(msg, className="warn", id="ev-validation-status"), quick], False
        if status == "running":
            msg = "Cross-validating every model in the background (about a minute); meanwhile, in-sample errors:"
            return [html.Div(msg, className="warn", id="ev-validation-status"), quick], False
        msg = f"Cross-validation {status}; in-sample errors instead:"
        return [html.Div(msg, className="error", id="ev-validation-status"), quick], True

    @app.callback(
        Output("ev-sobol", "figure"),
        Input("ev-upload-status", "children"),
        State("selection", "data"),
        State("folder", "value"),
        State("session", "data"),
    )
    def sobol(_status: Any, selection: Any, folder_id: Any, session: Any) -> Any:
        sel = selection or {}
        try:
            results = state.results(folder_id)
            cons = constraints_from(
                sel.get("budget_us", DEFAULT_BUDGET_US), sel.get("cpu_ms"), sel.get("remote_ms")
            )
            model = sel.get("model")
            if model == LIVE or model not in results.models:  # Choose evaluated this workload live
                wl = {k: v for k, v in (sel.get("workload") or {}).items() if v is not None}
                profile = sel.get("profile") or default_profile(results)
                rec = recommend_live(str(profile), wl, cons)
            else:
                rec = recommend_for(results, sel.get("profile"), sel.get("workload"), cons, model)
        except UserError as exc:
            return empty_figure(str(exc))
        c = rec.choice
        choice = {
            "batch_limit_pages": c.batch_limit_pages,
            "copy_engine": c.copy_engine,
            "copy_threads": c.copy_threads,
        }
        si, names, label = sensitivity(rec.profile, rec.workload, choice, state.regression(session))
        return sobol_figure(si, names, f"{label}: {c.label()} on {rec.profile}")

    @app.callback(
        Output("ev-upload-status", "children"),
        Input("ev-upload", "contents"),
        State("ev-upload", "filename"),
        State("session", "data"),
        prevent_initial_call=True,
    )
    def upload(contents: Any, filename: Any, session: Any) -> Any:
        if not contents:
            return html.Div("empty upload", className="error", id="ev-upload-error")
        name = str(filename or "upload.csv")
        try:
            _kind, _, b64 = str(contents).partition(",")
            if len(b64) > state.upload_limit * 4 // 3 + 8:
                raise UserError(f"{name}: above the upload limit of {state.upload_limit:,} bytes")
            raw = base64.b64decode(b64, validate=True)
            rows, summary = parse_measurement_upload(raw, name, state.upload_limit)
            reg = regression_with(rows)
        except (UserError, binascii.Error, ValueError) as exc:
            return upload_refused(str(exc))
        s = state.session(session)
        s.rows, s.regression, s.summary = rows, reg, summary
        old = rows_older_than_shipped(rows)
        older = (
            f" {old:,} of {len(rows):,} rows are dated before the newest shipped measurement of their "
            "profile: the regression predicts for each profile's newest measurements, so they move it little."
            if old
            else ""
        )
        return html.Div(
            f"{summary}. Regression refitted on shipped + uploaded measurements for this session "
            f"({reg.version}); Choose now uses it for intervals.{older}",
            className="ok",
            id="ev-upload-ok",
        )
