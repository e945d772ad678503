"""Plotly figure builders (pure: tables in, figures out; no Dash, no files).

Every axis title carries its unit. Quantities are SI in the tables and shown in readable units
(µs for stalls, ms for CPU time). Bands are 90 % intervals: Monte Carlo (±1.645 standard errors) and,
for throughput, the regression's prediction interval.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from app.recommend import Z90, Constraints, Recommendation

ENGINE_COLORS: dict[str, str] = {"cpu": "#1f77b4", "mt-cpu": "#ff7f0e", "dma": "#2ca02c", "dsa": "#9467bd"}
FONT = {"family": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", "size": 13}
LABELS: dict[str, str] = {
    "folio_kb": "folio size (KiB)",
    "n_folios": "folios per call",
    "target_cpus": "target CPUs (flush acknowledgers)",
    "mapcount": "mappings per folio (page tables)",
    "busy_prob": "busy probability per pass",
    "access_rate_hz": "access rate per folio (1/s)",
    "mode": "migration mode",
    "profile": "hardware profile",
    "batch_limit_pages": "batch limit (base pages)",
    "copy_threads": "copy threads (threads/channels)",
}


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


@lru_cache(maxsize=1)
def _template() -> go.layout.Template:
    """A small white template (plotly_white's look without copying its full definition per figure)."""
    axis = {
        "gridcolor": "#EBF0F8",
        "linecolor": "#EBF0F8",
        "zerolinecolor": "#EBF0F8",
        "ticks": "",
        "automargin": True,
    }
    return go.layout.Template(
        layout={
            "paper_bgcolor": "white",
            "plot_bgcolor": "white",
            "xaxis": axis,
            "yaxis": axis,
            "colorway": list(ENGINE_COLORS.values()),
        }
    )


def _base_layout(fig: go.Figure, title: str, height: int) -> go.Figure:
    fig.update_layout(
        title={
            "text": title,
            "x": 0.01,
            "xanchor": "left",
            "y": 0.985,
            "yref": "container",
            "yanchor": "top",
            "font": {"size": 15},
        },
        template=_template(),
        font=FONT,
        height=height,
        margin={"l": 70, "r": 20, "t": 96, "b": 60},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.03, "xanchor": "left", "x": 0},
        hoverlabel={"namelength": -1},
    )
    return fig


def empty_figure(message: str, height: int = 300) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(
        text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper", font={"size": 14}
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _base_layout(fig, "", height)


# --------------------------------------------------------------------------------------------------
# Choose page

#: (column, standard-error column, scale to display units, panel title, axis title)
PANELS: tuple[tuple[str, str, float, str, str], ...] = (
    ("pages_per_s", "pages_per_s_se", 1.0, "Throughput", "throughput (base pages/s)"),
    ("ipis", "ipis_se", 1.0, "TLB-flush IPIs", "IPIs per call"),
    ("cpu_time_s", "cpu_time_s_se", 1e3, "CPU time", "CPU time per call (ms)"),
    (
        "stall_p99_s",
        "stall_p99_s_se",
        1e6,
        "Application stall (p50 dotted, p99 solid)",
        "stall per access (µs)",
    ),
)


def _layout_dict(title: str, height: int) -> dict[str, Any]:
    """The layout of :func:`_base_layout` as a plain dict (the Choose figures skip plotly's object model:
    building them as dicts is ~20x faster, which keeps each interaction well under the latency bar)."""
    return {
        "title": {
            "text": title,
            "x": 0.01,
            "xanchor": "left",
            "y": 0.985,
            "yref": "container",
            "yanchor": "top",
            "font": {"size": 15},
        },
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
        "font": FONT,
        "height": height,
        "margin": {"l": 70, "r": 20, "t": 96, "b": 60},
        "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.03, "xanchor": "left", "x": 0},
        "hoverlabel": {"namelength": -1},
    }


_GRID = {
    "gridcolor": "#EBF0F8",
    "linecolor": "#EBF0F8",
    "zerolinecolor": "#EBF0F8",
    # The labels fit the margins; checking them for overflow measures every label (forced layouts,
    # ~5 ms per draw of the 2 × 2 figure).
    "ticklabeloverflow": "allow",
}  # no automargin: it redraws


def _list(a: Any) -> list[Any]:
    return [None if isinstance(v, float) and not math.isfinite(v) else v for v in np.asarray(a).tolist()]


def _data_revision(data: list[dict[str, Any]]) -> str:
    """A digest of the traces, set as ``layout.datarevision``.

    With it, ``Plotly.react`` compares this string instead of treating every data array of a new
    figure as changed: when only the budget moves (shapes and annotations, below) the browser redraws
    those alone instead of every trace (~10 ms instead of ~100 ms in software-rendered chromium).
    """
    return hashlib.blake2b(json.dumps(data, separators=(",", ":")).encode(), digest_size=8).hexdigest()


def _star(x: float, y: float, xref: str, yref: str, hover: str, size: int = 22) -> dict[str, Any]:
    """The recommended point, drawn as an annotation (not a trace) so that moving it is cheap.

    ``x``/``y`` are in axis range units (log10 of the value on a log axis).
    """
    return {
        "text": "★",
        "x": x,
        "y": y,
        "xref": xref,
        "yref": yref,
        "showarrow": False,
        "xanchor": "center",
        "yanchor": "middle",
        "font": {"size": size, "color": "#111"},
        "hovertext": hover,
    }


def _legend_only(
    name: str, marker: dict[str, Any] | None = None, line: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A trace with no points: the legend entry for something drawn as a shape or an annotation."""
    return {
        "type": "scatter",
        "mode": "markers" if marker else "lines",
        "x": [None],
        "y": [None],
        "name": name,
        **({"marker": marker} if marker else {}),
        **({"line": line} if line else {}),
        "hoverinfo": "skip",
    }


STAR_MARKER = {"symbol": "star", "size": 16, "color": "#111", "line": {"color": "white", "width": 1}}


def choice_figure(
    curves: pd.DataFrame,
    rec: Recommendation | None,
    constraints: Constraints,
    regression_band: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Throughput, IPIs, CPU time and p50/p99 stall against batch limit, one line per copy engine.

    ``curves`` holds, per engine, the rows of one thread count (see :func:`app.queries.engine_curves`).
    ``regression_band``: rows of the recommended engine/threads with ``pages_per_s_lo``/``_hi``.
    Returns a plotly figure as a plain dict (2 × 2 panels).
    """
    xd = [(0.0, 0.445), (0.555, 1.0), (0.0, 0.445), (0.555, 1.0)]
    yd = [(0.61, 1.0), (0.61, 1.0), (0.0, 0.39), (0.0, 0.39)]
    layout = _layout_dict(
        "Against batch limit, per copy engine (best thread count each; bands: 90 % intervals)", 760
    )
    # the legend goes under the panels: above them it covered the title on narrow screens
    layout["margin"]["t"] = 80
    layout["margin"]["b"] = 130
    layout["legend"] = {"orientation": "h", "yanchor": "top", "y": -0.14, "xanchor": "left", "x": 0}
    default_limit = rec.default_limit_pages if rec is not None else 512
    floor_us = 0.05  # a zero stall is drawn at this floor on the log axis
    annotations: list[dict[str, Any]] = []
    shapes: list[dict[str, Any]] = []
    data: list[dict[str, Any]] = []
    # Each engine's rows as numpy columns, once (not a pandas groupby per panel).
    wanted = ["batch_limit_pages", "copy_threads", "stall_p50_s"]
    wanted += [c for panel in PANELS for c in panel[:2]]
    cols = [c for c in dict.fromkeys(wanted) if c in curves.columns]
    groups: list[tuple[str, dict[str, np.ndarray]]] = []
    for eng, rows in curves.groupby("copy_engine", sort=False):
        rows = rows.sort_values("batch_limit_pages")
        groups.append((str(eng), {c: rows[c].to_numpy(dtype=float) for c in cols}))
    swept = sorted({int(v) for _, cg in groups for v in cg["batch_limit_pages"]})
    ticks = swept if len(swept) <= 7 else swept[:: -(-len(swept) // 7)]  # at most 7, all evaluated
    for k, (col, se_col, scale, title, ytitle) in enumerate(PANELS):
        n = "" if k == 0 else str(k + 1)
        layout[f"xaxis{n}"] = {
            **_GRID,
            "domain": list(xd[k]),
            "anchor": f"y{n}",
            "type": "log",
            "tickvals": ticks,  # ticks only at evaluated limits
            "ticktext": [str(t) for t in ticks],
            "title": {"text": "batch limit (base pages)"},
        }
        logy = col in ("ipis", "stall_p99_s")
        layout[f"yaxis{n}"] = {
            **_GRID,
            "domain": list(yd[k]),
            "anchor": f"x{n}",
            "title": {"text": ytitle + (" (log scale)" if col == "stall_p99_s" else "")},
            **({"type": "log"} if logy else {"rangemode": "tozero"}),
        }
        # the profile's kernel default, marked in every panel
        shapes.append(
            {
                "type": "line",
                "xref": f"x{n}",
                "x0": default_limit,  # shapes take data values on log axes (annotations take log10)
                "x1": default_limit,
                "yref": f"y{n} domain",
                "y0": 0,
                "y1": 1,
                "line": {"color": "#777", "dash": "dot", "width": 1.2},
            }
        )
        if k == 0:
            annotations.append(
                {
                    "text": f"kernel default {default_limit}",
                    "xref": "x",
                    "x": math.log10(default_limit),
                    "xanchor": "left",
                    "yref": "y domain",
                    "y": 0.02,
                    "yanchor": "bottom",
                    "showarrow": False,
                    "font": {"color": "#555", "size": 11},
                }
            )
        annotations.append(
            {
                "text": title,
                "x": (xd[k][0] + xd[k][1]) / 2,
                "y": yd[k][1],
                "xref": "paper",
                "yref": "paper",
                "xanchor": "center",
                "yanchor": "bottom",
                "showarrow": False,
                "font": {"size": 14},
            }
        )
        ax = {"xaxis": f"x{n}", "yaxis": f"y{n}"}
        for eng, cg in groups:
            color = ENGINE_COLORS.get(eng, "#555")
            name = f"{eng} ×{int(cg['copy_threads'][0])}"
            x = cg["batch_limit_pages"]
            y = cg[col] * scale
            if col == "stall_p99_s":
                y = np.maximum(y, floor_us)
            if se_col in cg and np.isfinite(cg[se_col]).any():
                se = np.nan_to_num(cg[se_col]) * scale * Z90
                lo_band = np.maximum(y - se, floor_us) if col == "stall_p99_s" else y - se
                data.append(
                    {
                        "type": "scatter",
                        "mode": "lines",
                        "x": _list(np.concatenate([x, x[::-1]])),
                        "y": _list(np.concatenate([y + se, lo_band[::-1]])),
                        "fill": "toself",
                        "fillcolor": _rgba(color, 0.18),
                        "line": {"width": 0},
                        "hoverinfo": "skip",
                        "showlegend": False,
                        "legendgroup": name,
                        **ax,
                    }
                )
            data.append(
                {
                    "type": "scatter",
                    "mode": "lines+markers",  # markers: where the model was evaluated
                    "x": _list(x),
                    "y": _list(y),
                    "name": name,
                    "legendgroup": name,
                    "showlegend": k == 0,
                    "line": {"color": color, "width": 2},
                    "marker": {"size": 5, "color": color},
                    "hovertemplate": f"{name}<br>batch %{{x}} pages<br>%{{y:.4g}}<extra></extra>",
                    **ax,
                }
            )
            if col == "stall_p99_s" and "stall_p50_s" in cg and np.isfinite(cg["stall_p50_s"]).any():
                data.append(
                    {
                        "type": "scatter",
                        "mode": "lines",
                        "x": _list(x),
                        "y": _list(np.maximum(cg["stall_p50_s"] * scale, floor_us)),
                        "name": f"{name} p50",
                        "legendgroup": name,
                        "showlegend": False,
                        "line": {"color": color, "width": 1.5, "dash": "dot"},
                        "hovertemplate": f"{name} p50<br>batch %{{x}} pages<br>%{{y:.4g}} µs<extra></extra>",
                        **ax,
                    }
                )
    if regression_band is not None and len(regression_band):
        g = regression_band.sort_values("batch_limit_pages")
        x = g["batch_limit_pages"].to_numpy(dtype=float)
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "x": _list(np.concatenate([x, x[::-1]])),
                "y": _list(
                    np.concatenate(
                        [
                            g["pages_per_s_hi"].to_numpy(dtype=float),
                            g["pages_per_s_lo"].to_numpy(dtype=float)[::-1],
                        ]
                    )
                ),
                "fill": "toself",
                "fillcolor": "rgba(120,120,120,0.10)",
                "line": {"color": "rgba(90,90,90,0.6)", "width": 1, "dash": "dash"},
                "name": "regression 90 % interval",
                "hoverinfo": "skip",
                "xaxis": "x",
                "yaxis": "y",
            }
        )
    budget_us = constraints.stall_p99_s * 1e6
    shapes.append(
        {
            "type": "line",
            "xref": "x4 domain",
            "x0": 0,
            "x1": 1,
            "yref": "y4",
            "y0": budget_us,  # shapes take data values on log axes (annotations take log10)
            "y1": budget_us,
            "line": {"color": "#c0392b", "dash": "dash", "width": 1.5},
        }
    )
    annotations.append(
        {
            "text": f"budget {budget_us:g} µs",
            "xref": "x4 domain",
            "x": 0,
            "xanchor": "left",
            "yref": "y4",
            "y": math.log10(budget_us),
            "yanchor": "bottom",
            "showarrow": False,
            "font": {"color": "#c0392b", "size": 11},
        }
    )
    data.append(_legend_only("recommended", marker=STAR_MARKER))
    if rec is not None:
        rc = rec.choice
        hover = f"recommended: {rc.label()}"
        for k, yv in ((0, rc.pages_per_s), (3, math.log10(max(rc.stall_p99_s * 1e6, floor_us)))):
            n = "" if k == 0 else str(k + 1)
            if rc.batch_limit_pages > 0 and math.isfinite(yv):
                annotations.append(_star(math.log10(rc.batch_limit_pages), yv, f"x{n}", f"y{n}", hover))
    layout["annotations"] = annotations
    layout["shapes"] = shapes
    layout["datarevision"] = _data_revision(data)
    return {"data": data, "layout": layout}


def pareto_front(df: pd.DataFrame) -> pd.DataFrame:
    """Rows not dominated in (higher pages/s, lower p99 stall), sorted by stall."""
    d = df.sort_values(["stall_p99_s", "pages_per_s"], ascending=[True, False])
    best = -np.inf
    keep = []
    for i, v in zip(d.index, d["pages_per_s"].to_numpy(), strict=True):
        if v > best:
            keep.append(i)
            best = v
    return d.loc[keep]


def pareto_figure(
    cands: pd.DataFrame,
    rec: Recommendation | None,
    constraints: Constraints,
    screened: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Every choice as pages/s against p99 stall, the Pareto front (each point labelled with its batch
    limit), the budget, the kernel default and the recommendation (a plotly figure as a plain dict).

    ``screened``: choices the analytic model screened out of a live evaluation (drawn hollow, analytic).
    """
    df = cands.copy()
    df["copy_engine"] = df["copy_engine"].astype(str)
    data: list[dict[str, Any]] = []
    floor = 0.05  # µs: a zero stall is drawn at this floor on the log axis
    stall_us = np.maximum(df["stall_p99_s"].to_numpy(dtype=float) * 1e6, floor)
    eng_col = df["copy_engine"].to_numpy()
    for eng in [e for e in ENGINE_COLORS if e in set(eng_col)]:
        m = eng_col == eng
        g = df[m]
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "x": _list(stall_us[m]),
                "y": _list(g["pages_per_s"].to_numpy(dtype=float)),
                "name": eng,
                "marker": {"color": ENGINE_COLORS[eng], "size": 7, "opacity": 0.75},
                "customdata": np.stack(
                    [g["batch_limit_pages"].to_numpy(dtype=int), g["copy_threads"].to_numpy(dtype=int)],
                    axis=1,
                ).tolist(),
                "hovertemplate": f"{eng} ×%{{customdata[1]}}, batch %{{customdata[0]}}<br>p99 stall %{{x:.3g}} µs"
                "<br>%{y:.4g} pages/s<extra></extra>",
            }
        )
    if screened is not None and len(screened):
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "x": _list(np.maximum(screened["stall_p99_s"].to_numpy(dtype=float) * 1e6, floor)),
                "y": _list(screened["pages_per_s"].to_numpy(dtype=float)),
                "name": "screened out (analytic)",
                "marker": {"color": "rgba(0,0,0,0)", "size": 6, "line": {"color": "#999", "width": 1}},
                "hovertemplate": "screened out by the analytic model<br>p99 stall %{x:.3g} µs"
                "<br>%{y:.4g} pages/s<extra></extra>",
            }
        )
    front = pareto_front(df)
    data.append(
        {
            "type": "scatter",
            "mode": "lines+text",
            "x": _list(np.maximum(front["stall_p99_s"].to_numpy(dtype=float) * 1e6, floor)),
            "y": _list(front["pages_per_s"].to_numpy(dtype=float)),
            "text": [str(int(v)) for v in front["batch_limit_pages"].to_numpy()],
            "textposition": "top left",
            "textfont": {"size": 10, "color": "#333"},
            "name": "Pareto front (labels: batch limit)",
            "line": {"color": "#444", "width": 1.5, "shape": "hv"},
            "hoverinfo": "skip",
        }
    )
    if rec is not None and rec.baseline is not None:
        bl = rec.baseline
        dl = rec.default_limit_pages
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "x": [max(bl.stall_p99_s * 1e6, floor)],
                "y": [bl.pages_per_s],
                "name": f"kernel default ({dl}, cpu)",
                "marker": {"symbol": "x", "size": 12, "color": "#c0392b"},
                "hovertemplate": f"kernel default: {dl} pages, cpu ×1<extra></extra>",
            }
        )
    # The budget and the recommendation are a shape and annotations, not traces: a budget change then
    # redraws only them (see _data_revision).
    budget = constraints.stall_p99_s * 1e6
    budget_us = max(budget, floor)
    data.append(_legend_only("stall budget", line={"color": "#c0392b", "dash": "dash", "width": 1.5}))
    data.append(_legend_only("recommended", marker=STAR_MARKER))
    finite = stall_us[np.isfinite(stall_us)]
    lo = min(float(finite.min()) if finite.size else floor, budget_us)
    hi = max(float(finite.max()) if finite.size else 1.0, budget_us)
    shapes = [
        {
            "type": "line",
            "xref": "x",
            "x0": budget_us,
            "x1": budget_us,
            "yref": "y domain",
            "y0": 0,
            "y1": 1,
            "line": {"color": "#c0392b", "dash": "dash", "width": 1.5},
        }
    ]
    annotations = [
        {
            "text": f"budget {budget:g} µs",
            "xref": "x",
            "x": math.log10(budget_us),
            "xanchor": "left",
            "yref": "y domain",
            "y": 1,
            "yanchor": "top",
            "showarrow": False,
            "font": {"color": "#c0392b", "size": 11},
        }
    ]
    if rec is not None:
        c = rec.choice
        if math.isfinite(c.pages_per_s):
            x = math.log10(max(c.stall_p99_s * 1e6, floor))
            annotations.append(_star(x, c.pages_per_s, "x", "y", f"recommended: {c.label()}", size=24))
    layout = _layout_dict("Pareto front: throughput against p99 stall", 500)
    layout["margin"]["t"] = 50
    layout["margin"]["b"] = 110
    layout["legend"] = {"orientation": "h", "yanchor": "top", "y": -0.2, "xanchor": "left", "x": 0}
    layout["xaxis"] = {
        **_GRID,
        "type": "log",
        "title": {"text": "p99 stall per access (µs, log scale)"},
        "range": [math.log10(lo) - 0.2, math.log10(hi) + 0.2],
    }
    layout["yaxis"] = {**_GRID, "title": {"text": "throughput (base pages/s)"}, "rangemode": "tozero"}
    layout["shapes"] = shapes
    layout["annotations"] = annotations
    layout["datarevision"] = _data_revision(data)
    return {"data": data, "layout": layout}


def marginal_figure(rec: Recommendation | None) -> dict[str, Any]:
    """Each batch limit against the kernel default, same engine and threads: Δ throughput % (with its
    90 % interval) against Δ p99 stall, each point labelled with its limit — where the knee is."""
    from app.recommend import marginal

    m = marginal(rec) if rec is not None else pd.DataFrame()
    if rec is None or m.empty:
        return empty_figure("no marginal view: the default limit is not among the candidates")
    c = rec.choice
    ok = m["meets_constraints"].to_numpy(dtype=bool)
    x = m["d_stall_p99_s"].to_numpy(dtype=float) * 1e6
    y = m["d_pages_per_s_pct"].to_numpy(dtype=float)
    lo = m["d_pages_per_s_pct_lo"].to_numpy(dtype=float)
    hi = m["d_pages_per_s_pct_hi"].to_numpy(dtype=float)
    labels = [str(int(v)) for v in m["batch_limit_pages"].to_numpy()]
    data: list[dict[str, Any]] = [
        {
            "type": "scatter",
            "mode": "lines",
            "x": _list(x),
            "y": _list(y),
            "line": {"color": "#bbb", "width": 1},
            "hoverinfo": "skip",
            "showlegend": False,
        }
    ]
    for sel, name, color in ((ok, "meets the limits", "#1f77b4"), (~ok, "over the limits", "#c0392b")):
        if not sel.any():
            continue
        data.append(
            {
                "type": "scatter",
                "mode": "markers+text",
                "x": _list(x[sel]),
                "y": _list(y[sel]),
                "text": [t for t, s_ in zip(labels, sel, strict=True) if s_],
                "textposition": "top center",
                "textfont": {"size": 10},
                "name": name,
                "marker": {"color": color, "size": 8},
                "error_y": {
                    "type": "data",
                    "symmetric": False,
                    "array": _list(hi[sel] - y[sel]),
                    "arrayminus": _list(y[sel] - lo[sel]),
                    "color": _rgba(color, 0.5),
                    "thickness": 1,
                },
                "hovertemplate": "batch %{text} pages<br>Δ p99 stall %{x:.3g} µs<br>Δ throughput %{y:.1f} %"
                "<extra></extra>",
            }
        )
    annotations = [
        {
            "text": f"default {rec.default_limit_pages}",
            "x": 0,
            "y": 0,
            "xref": "x",
            "yref": "y",
            "showarrow": True,
            "arrowhead": 0,
            "ax": 30,
            "ay": 30,
            "font": {"size": 11, "color": "#555"},
        }
    ]
    row = m[m["batch_limit_pages"] == c.batch_limit_pages]
    if len(row) and rec.feasible:
        annotations.append(
            _star(
                float(row["d_stall_p99_s"].iloc[0]) * 1e6,
                float(row["d_pages_per_s_pct"].iloc[0]),
                "x",
                "y",
                f"recommended: {c.label()}",
            )
        )
    layout = _layout_dict(
        f"Each limit against the default {rec.default_limit_pages} ({c.copy_engine} ×{c.copy_threads} both)",
        420,
    )
    layout["margin"]["t"] = 50
    layout["margin"]["b"] = 100
    layout["legend"] = {"orientation": "h", "yanchor": "top", "y": -0.22, "xanchor": "left", "x": 0}
    layout["xaxis"] = {**_GRID, "title": {"text": "Δ p99 stall per access (µs)"}, "zeroline": True}
    layout["yaxis"] = {**_GRID, "title": {"text": "Δ throughput (%), 90 % interval"}, "zeroline": True}
    layout["annotations"] = annotations
    layout["datarevision"] = _data_revision(data)
    return {"data": data, "layout": layout}


# --------------------------------------------------------------------------------------------------
# Landscape


def _axis_values(values: Sequence[Any]) -> list[str]:
    return [str(v) for v in values]


def landscape_figure(cells: pd.DataFrame, x: str, y: str, what: str) -> go.Figure:
    """Heatmap of the best batch limit (``what="batch"``) or its gain over the default (``"gain"``).

    A transparent marker sits on each cell so that box/lasso selection returns the cells.
    """
    if cells.empty:
        return empty_figure("no cells: the sweep has no results for these axes")
    xs = sorted(cells["x"].unique(), key=lambda v: (isinstance(v, str), v))
    ys = sorted(cells["y"].unique(), key=lambda v: (isinstance(v, str), v))
    xi = {v: i for i, v in enumerate(xs)}
    yi = {v: i for i, v in enumerate(ys)}
    z = np.full((len(ys), len(xs)), np.nan)
    text = np.full((len(ys), len(xs)), "", dtype=object)
    for row in cells.to_dict("records"):
        i, j = yi[row["y"]], xi[row["x"]]
        bl, gain = float(row["batch_limit_pages"]), float(row["gain"])
        if what == "batch":
            if math.isfinite(bl):
                z[i, j] = math.log2(bl)
                text[i, j] = f"{int(bl)}<br>{row['copy_engine']} ×{row['copy_threads']}"
            else:
                text[i, j] = "none<br>meets budget"
        elif math.isfinite(gain) and gain > 0:
            z[i, j] = math.log2(gain)  # a ratio: centred at 1 on a log scale
            text[i, j] = f"{gain:.2f}×"
            glo, ghi = float(row.get("gain_lo", math.nan)), float(row.get("gain_hi", math.nan))
            if math.isfinite(glo) and math.isfinite(ghi):
                text[i, j] += f"<br>[{glo:.2f}, {ghi:.2f}]" + ("<br>≈ default" if glo <= 1.0 <= ghi else "")
    if what == "batch":
        finite = z[np.isfinite(z)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 12.0)
        ticks = list(range(int(math.floor(lo)), int(math.ceil(hi)) + 1)) or [0]
        colorbar = {
            "title": {"text": "batch limit<br>(base pages)"},
            "tickvals": ticks,
            "ticktext": [str(2**t) for t in ticks],
        }
        colorscale = "Viridis"
        title = "Recommended batch limit (cell text: limit, engine × threads)"
        zmid = None
    else:
        finite = np.abs(z[np.isfinite(z)])
        span = max(float(finite.max()) if finite.size else 1.0, math.log2(1.25))
        ratios = [r for r in (0.25, 0.5, 0.8, 1.0, 1.25, 2.0, 4.0, 8.0) if abs(math.log2(r)) <= span * 1.001]
        colorbar = {
            "title": {"text": "gain over the<br>kernel default<br>(×, log scale)"},
            "tickvals": [math.log2(r) for r in ratios],
            "ticktext": [f"{r:g}×" for r in ratios],
        }
        colorscale = "RdBu"
        title = "Predicted gain of the recommendation over the kernel default (cell: 90 % interval)"
        zmid = 0.0
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=_axis_values(xs),
            y=_axis_values(ys),
            text=text,
            texttemplate="%{text}",
            textfont={"size": 11},
            colorscale=colorscale,
            zmid=zmid,
            colorbar=colorbar,
            hovertemplate=f"{LABELS.get(x, x)}: %{{x}}<br>{LABELS.get(y, y)}: %{{y}}<br>%{{text}}<extra></extra>",
            xgap=2,
            ygap=2,
        )
    )
    gx, gy = np.meshgrid(np.arange(len(xs)), np.arange(len(ys)))
    fig.add_trace(
        go.Scatter(
            x=[str(xs[j]) for j in gx.ravel()],
            y=[str(ys[i]) for i in gy.ravel()],
            mode="markers",
            marker={"size": 18, "opacity": 0.01, "color": "#000"},
            showlegend=False,
            hoverinfo="skip",
            name="cells",
        )
    )
    fig.update_xaxes(title_text=LABELS.get(x, x), type="category")
    fig.update_yaxes(title_text=LABELS.get(y, y), type="category")
    fig.update_layout(dragmode="select", clickmode="event+select")
    return _base_layout(fig, title, 420 + 18 * max(0, len(ys) - 6))


# --------------------------------------------------------------------------------------------------
# Evidence


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
    for k, (grp, g) in enumerate(curves.groupby("group", sort=True)):
        fig.add_trace(
            go.Scatter(
                x=g["x"],
                y=g["predicted"] * scale,
                mode="lines",
                name=f"model {grp}",
                line={"color": palette[k % len(palette)], "width": 1.5},
                legendgroup=str(grp),
            )
        )
    groups = sorted(curves["group"].unique()) if len(curves) else []
    gcolor = {g: palette[k % len(palette)] for k, g in enumerate(groups)}
    symbols = ["circle", "square", "diamond", "triangle-up", "cross", "x", "star", "hexagon"]
    for k, (src, g) in enumerate(points.groupby("source", sort=True)):
        fig.add_trace(
            go.Scatter(
                x=g["x"],
                y=g["value"] * scale,
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
            )
        )
    fig.update_xaxes(type="log", title_text=LABELS.get(x, x))
    fig.update_yaxes(title_text=label)
    _base_layout(fig, f"Measured {metric} (markers) over the analytic model (lines)", 520)
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
    return _base_layout(fig, "Residuals per source (0 = exact; ±0.1 ≈ ±26 %)", 520)


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
    _base_layout(fig, "Sobol sensitivity of the gain", 180 + 55 * len(names))
    fig.update_layout(title_subtitle={"text": output, "font": {"size": 11, "color": "#5d6677"}})
    return fig


__all__ = [
    "ENGINE_COLORS",
    "choice_figure",
    "empty_figure",
    "evidence_figure",
    "landscape_figure",
    "pareto_figure",
    "pareto_front",
    "residual_figure",
    "sobol_figure",
]
