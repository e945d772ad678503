"""The Evidence page's figures: measurements over the model, residuals per source, Sobol indices."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from app.figures.common import LABELS, base_layout, empty_figure

METRIC_LABELS: dict[str, tuple[str, float]] = {
    "bytes_per_s": ("migration bandwidth (GB/s)", 1e-9),
    "pages_per_s": ("throughput (base pages/s)", 1.0),
    "time_s": ("time per call (ms)", 1e3),
    "time_per_page_s": ("time per base page (µs)", 1e6),
    "cpu_time_s": ("CPU time per call (ms)", 1e3),
    "ipis": ("IPIs per call", 1.0),
    "flush_rounds": ("flush rounds per call", 1.0),
    "stall_p99_s": ("p99 stall (µs)", 1e6),
}


def _scaled(rows: pd.DataFrame, column: str, scale: float) -> dict[str, Any]:
    """The ``x`` and ``column`` × ``scale`` (display units) of ``rows`` as a trace's ``x``/``y``."""
    return {"x": rows["x"], "y": rows[column] * scale}


def evidence_figure(points: pd.DataFrame, curves: pd.DataFrame, metric: str, x: str) -> go.Figure:
    """Measured points (colored by source) over analytic model curves, against ``x``.

    ``points``: measured rows (``x``, ``value``, ``source``, ``group``); ``curves``: model rows
    (``x``, ``predicted``, ``group``) per configuration group.
    """
    label, scale = METRIC_LABELS.get(metric, (metric, 1.0))
    if points.empty:
        return empty_figure("no measurements of this metric for this profile")
    fig = go.Figure()
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
    groups = sorted(curves["group"].unique()) if len(curves) else []
    gcolor = {g: palette[k % len(palette)] for k, g in enumerate(groups)}
    symbols = ["circle", "square", "diamond", "triangle-up", "cross", "x", "star", "hexagon"]
    traces = [
        go.Scatter(
            mode="lines",
            name=f"model {grp}",
            line={"color": gcolor[grp], "width": 1.5},
            legendgroup=str(grp),
            **_scaled(g, "predicted", scale),
        )
        for grp, g in curves.groupby("group", sort=True)
    ]
    traces += [
        go.Scatter(
            mode="markers",
            name=f"measured ({src})",
            marker={
                "symbol": symbols[k % len(symbols)],
                "size": 9,
                "color": [gcolor.get(v, "#333") for v in g["group"]],
                "line": {"color": "#222", "width": 1},
            },
            customdata=g[["group"]].to_numpy(),
            hovertemplate=f"{src}<br>%{{customdata[0]}}<br>%{{x}}: %{{y:.4g}}<extra></extra>",
            **_scaled(g, "value", scale),
        )
        for k, (src, g) in enumerate(points.groupby("source", sort=True))
    ]
    fig.add_traces(traces)
    fig.update_xaxes(type="log", title_text=LABELS.get(x, x))
    fig.update_yaxes(title_text=label)
    base_layout(fig, f"Measured {metric} (markers) over the analytic model (lines)", 520)
    fig.update_layout(
        legend={
            "orientation": "v",
            "yanchor": "top",
            "y": 1,
            "xanchor": "left",
            "x": 1.02,
            "font": {"size": 11},
        },
        margin={"r": 230},
    )
    return fig


def residual_figure(resid: pd.DataFrame) -> go.Figure:
    """log10(measured / predicted) per source, for the analytic model and the regression."""
    if resid.empty:
        return empty_figure("no residuals to show")
    fig = go.Figure()
    colors = {"analytic": "#1f77b4", "regression": "#ff7f0e"}
    for model, g in resid.groupby("model", sort=True):
        fig.add_trace(
            go.Box(
                x=g["source"],
                y=g["log10_ratio"],
                name=str(model),
                marker_color=colors.get(str(model), "#555"),
                boxpoints="all",
                jitter=0.4,
                pointpos=0,
            )
        )
    fig.add_hline(y=0, line={"color": "#444", "width": 1})
    fig.update_layout(boxmode="group")
    fig.update_xaxes(title_text="source", tickangle=-30)
    fig.update_yaxes(title_text="log10(measured / predicted) (decades)")
    return base_layout(fig, "Residuals per source (0 = exact; ±0.1 ≈ ±26 %)", 520)


def sobol_figure(si: Mapping[str, Sequence[float]], names: Sequence[str], output: str) -> go.Figure:
    """First-order and total Sobol indices with their 95 % confidence intervals."""
    fig = go.Figure()
    labels = [LABELS.get(n, n) for n in names]
    for key, conf, name, color in (
        ("S1", "S1_conf", "first order S1", "#1f77b4"),
        ("ST", "ST_conf", "total ST", "#ff7f0e"),
    ):
        fig.add_trace(
            go.Bar(
                y=labels,
                x=list(si[key]),
                orientation="h",
                name=name,
                marker_color=color,
                error_x={"type": "data", "array": list(si[conf]), "visible": True},
            )
        )
    fig.update_layout(barmode="group")
    fig.update_xaxes(title_text="Sobol index (share of variance, 95 % CI)", range=[-0.05, 1.05])
    fig.update_yaxes(automargin=True)
    # The output goes in the title's subtitle (plotly lays out both lines; a "<br>" title was clipped).
    base_layout(fig, "Sobol sensitivity of the gain", 180 + 55 * len(names))
    fig.update_layout(title_subtitle={"text": output, "font": {"size": 11, "color": "#5d6677"}})
    return fig


__all__ = ["METRIC_LABELS", "evidence_figure", "residual_figure", "sobol_figure"]
