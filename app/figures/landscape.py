"""The Landscape page's heatmap: the recommended batch limit, or its gain, over two workload axes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from app.figures.common import LABELS, base_layout, empty_figure


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
    return base_layout(fig, title, 420 + 18 * max(0, len(ys) - 6))


__all__ = ["landscape_figure"]
