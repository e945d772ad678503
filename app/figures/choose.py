"""The Choose page's figures: metrics against batch limit per engine, the Pareto front, the marginal view.

Bands are 90 % intervals: Monte Carlo (±1.645 standard errors) and, for throughput, the regression's
prediction interval. Quantities are SI in the tables and shown in readable units (µs for stalls, ms
for CPU time). Each figure is a plain dict (:mod:`app.figures.plain`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from app.figures.common import ENGINE_COLORS, empty_figure, rgba
from app.figures.plain import (
    GRID,
    STAR_MARKER,
    data_revision,
    json_list,
    layout_dict,
    legend_only,
    star_annotation,
)
from app.recommend import Z90, Constraints, Recommendation, marginal

#: Heights of the three figures (px); the page reserves them before a figure is drawn.
CURVES_HEIGHT_PX = 760
PARETO_HEIGHT_PX = 500
MARGINAL_HEIGHT_PX = 420
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
    layout = layout_dict(
        "Against batch limit, per copy engine (best thread count each; bands: 90 % intervals)",
        CURVES_HEIGHT_PX,
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
            **GRID,
            "domain": list(xd[k]),
            "anchor": f"y{n}",
            "type": "log",
            "tickvals": ticks,  # ticks only at evaluated limits
            "ticktext": [str(t) for t in ticks],
            "title": {"text": "batch limit (base pages)"},
        }
        logy = col in ("ipis", "stall_p99_s")
        layout[f"yaxis{n}"] = {
            **GRID,
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
                        "x": json_list(np.concatenate([x, x[::-1]])),
                        "y": json_list(np.concatenate([y + se, lo_band[::-1]])),
                        "fill": "toself",
                        "fillcolor": rgba(color, 0.18),
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
                    "x": json_list(x),
                    "y": json_list(y),
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
                        "x": json_list(x),
                        "y": json_list(np.maximum(cg["stall_p50_s"] * scale, floor_us)),
                        "name": f"{name} p50",
                        "legendgroup": name,
                        "showlegend": False,
                        "line": {"color": color, "width": 1.5, "dash": "dot"},
                        "hovertemplate": f"{name} p50<br>batch %{{x}} pages<br>%{{y:.4g}} µs<extra></extra>",
                        **ax,
                    }
                )
    ipis = [cg["ipis"] for _, cg in groups if "ipis" in cg]
    if ipis and not any((v > 0).any() for v in ipis):
        # a log axis cannot draw zeros: say why the panel is empty instead of leaving it blank
        k = [p[0] for p in PANELS].index("ipis")
        annotations.append(
            {
                "text": "no IPIs: the flush is a broadcast invalidation<br>here (arm64 TLBI, or INVLPGB from 6.15)",
                "x": (xd[k][0] + xd[k][1]) / 2,
                "y": (yd[k][0] + yd[k][1]) / 2,
                "xref": "paper",
                "yref": "paper",
                "showarrow": False,
                "font": {"color": "#555", "size": 12},
            }
        )
    if regression_band is not None and len(regression_band):
        g = regression_band.sort_values("batch_limit_pages")
        x = g["batch_limit_pages"].to_numpy(dtype=float)
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "x": json_list(np.concatenate([x, x[::-1]])),
                "y": json_list(
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
    data.append(legend_only("recommended", marker=STAR_MARKER))
    if rec is not None:
        rc = rec.choice
        hover = f"recommended: {rc.label()}"
        for k, yv in ((0, rc.pages_per_s), (3, math.log10(max(rc.stall_p99_s * 1e6, floor_us)))):
            n = "" if k == 0 else str(k + 1)
            if rc.batch_limit_pages > 0 and math.isfinite(yv):
                annotations.append(
                    star_annotation(math.log10(rc.batch_limit_pages), yv, f"x{n}", f"y{n}", hover)
                )
    layout["annotations"] = annotations
    layout["shapes"] = shapes
    layout["datarevision"] = data_revision(data)
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
                "x": json_list(stall_us[m]),
                "y": json_list(g["pages_per_s"].to_numpy(dtype=float)),
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
                "x": json_list(np.maximum(screened["stall_p99_s"].to_numpy(dtype=float) * 1e6, floor)),
                "y": json_list(screened["pages_per_s"].to_numpy(dtype=float)),
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
            "x": json_list(np.maximum(front["stall_p99_s"].to_numpy(dtype=float) * 1e6, floor)),
            "y": json_list(front["pages_per_s"].to_numpy(dtype=float)),
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
    # redraws only them (see data_revision).
    budget = constraints.stall_p99_s * 1e6
    budget_us = max(budget, floor)
    data.append(legend_only("stall budget", line={"color": "#c0392b", "dash": "dash", "width": 1.5}))
    data.append(legend_only("recommended", marker=STAR_MARKER))
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
            annotations.append(
                star_annotation(x, c.pages_per_s, "x", "y", f"recommended: {c.label()}", size=24)
            )
    layout = layout_dict("Pareto front: throughput against p99 stall", PARETO_HEIGHT_PX)
    layout["margin"]["t"] = 50
    layout["margin"]["b"] = 110
    layout["legend"] = {"orientation": "h", "yanchor": "top", "y": -0.2, "xanchor": "left", "x": 0}
    layout["xaxis"] = {
        **GRID,
        "type": "log",
        "title": {"text": "p99 stall per access (µs, log scale)"},
        "range": [math.log10(lo) - 0.2, math.log10(hi) + 0.2],
    }
    layout["yaxis"] = {**GRID, "title": {"text": "throughput (base pages/s)"}, "rangemode": "tozero"}
    layout["shapes"] = shapes
    layout["annotations"] = annotations
    layout["datarevision"] = data_revision(data)
    return {"data": data, "layout": layout}


def tie_labels(limits: list[int], x: np.ndarray, y: np.ndarray) -> list[str]:
    """One text label per point; limits that land on exactly the same point (limits that make the same
    batches tie exactly, e.g. every limit up to 512 for 2 MiB folios) share one label, "lo–hi", on
    the first of them, so their numbers are not drawn over each other."""
    groups: dict[tuple[float, float], list[int]] = {}
    for i, key in enumerate(zip(x.tolist(), y.tolist(), strict=True)):
        groups.setdefault(key, []).append(i)
    out = [""] * len(limits)
    for members in groups.values():
        vals = [limits[i] for i in members]
        lo, hi = min(vals), max(vals)
        out[members[0]] = str(lo) if lo == hi else f"{lo}–{hi}"
    return out


def marginal_figure(rec: Recommendation | None) -> dict[str, Any]:
    """Each batch limit against the kernel default, same engine and threads: Δ throughput % (with its
    90 % interval) against Δ p99 stall, each point labelled with its limit — where the knee is."""
    m = marginal(rec) if rec is not None else pd.DataFrame()
    if rec is None or m.empty:
        return empty_figure(
            "no marginal view: the default limit is not among the candidates", MARGINAL_HEIGHT_PX
        )
    c = rec.choice
    ok = m["meets_constraints"].to_numpy(dtype=bool)
    x = m["d_stall_p99_s"].to_numpy(dtype=float) * 1e6
    y = m["d_pages_per_s_pct"].to_numpy(dtype=float)
    lo = m["d_pages_per_s_pct_lo"].to_numpy(dtype=float)
    hi = m["d_pages_per_s_pct_hi"].to_numpy(dtype=float)
    limits = [int(v) for v in m["batch_limit_pages"].to_numpy()]
    labels = tie_labels(limits, x, y)
    data: list[dict[str, Any]] = [
        {
            "type": "scatter",
            "mode": "lines",
            "x": json_list(x),
            "y": json_list(y),
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
                "x": json_list(x[sel]),
                "y": json_list(y[sel]),
                "text": [t for t, s_ in zip(labels, sel, strict=True) if s_],
                "customdata": [v for v, s_ in zip(limits, sel, strict=True) if s_],
                "textposition": "top center",
                "textfont": {"size": 10},
                "name": name,
                "marker": {"color": color, "size": 8},
                "error_y": {
                    "type": "data",
                    "symmetric": False,
                    "array": json_list(hi[sel] - y[sel]),
                    "arrayminus": json_list(y[sel] - lo[sel]),
                    "color": rgba(color, 0.5),
                    "thickness": 1,
                },
                "hovertemplate": "batch %{customdata} pages<br>Δ p99 stall %{x:.3g} µs<br>Δ throughput %{y:.1f} %"
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
            star_annotation(
                float(row["d_stall_p99_s"].iloc[0]) * 1e6,
                float(row["d_pages_per_s_pct"].iloc[0]),
                "x",
                "y",
                f"recommended: {c.label()}",
            )
        )
    layout = layout_dict(
        f"Each limit against the default {rec.default_limit_pages} ({c.copy_engine} ×{c.copy_threads} both)",
        MARGINAL_HEIGHT_PX,
    )
    layout["margin"]["t"] = 50
    layout["margin"]["b"] = 100
    layout["legend"] = {"orientation": "h", "yanchor": "top", "y": -0.22, "xanchor": "left", "x": 0}
    layout["xaxis"] = {**GRID, "title": {"text": "Δ p99 stall per access (µs)"}, "zeroline": True}
    layout["yaxis"] = {**GRID, "title": {"text": "Δ throughput (%), 90 % interval"}, "zeroline": True}
    layout["annotations"] = annotations
    layout["datarevision"] = data_revision(data)
    return {"data": data, "layout": layout}


__all__ = [
    "CURVES_HEIGHT_PX",
    "MARGINAL_HEIGHT_PX",
    "PARETO_HEIGHT_PX",
    "PANELS",
    "choice_figure",
    "marginal_figure",
    "pareto_figure",
    "tie_labels",
    "pareto_front",
]
