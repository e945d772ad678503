"""What every explorer figure shares: engine colours, axis labels with units, the base layout.

Plotly figure builders are pure (tables in, figures out; no Dash, no files); one module per page:
:mod:`app.figures.choose`, :mod:`app.figures.landscape`, :mod:`app.figures.evidence`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import plotly.graph_objects as go

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
    "numa_hinting": "NUMA-hinting PTEs, not flushed in the batch (0/1, 6.4+)",
    "writeback_prob": "writeback probability per folio",
    "writeback_wait_s": "writeback wait in sync mode (s)",
    "alloc_fail_prob": "destination allocation failure probability",
}


def rgba(hex_color: str, alpha: float) -> str:
    """``#rrggbb`` as a CSS ``rgba(...)`` colour with opacity ``alpha`` (0-1)."""
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


def layout_frame(title: str, height: int) -> dict[str, Any]:
    """The layout every figure shares, as a new plain dict: the title at the top left, the font,
    ``height`` (px), margins and a horizontal legend above the plot."""
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
        "font": FONT,
        "height": height,
        "margin": {"l": 70, "r": 20, "t": 96, "b": 60},
        "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.03, "xanchor": "left", "x": 0},
        "hoverlabel": {"namelength": -1},
    }


def base_layout(fig: go.Figure, title: str, height: int) -> go.Figure:
    """``fig`` with the shared layout (:func:`layout_frame`) and the white template; ``height`` in px."""
    fig.update_layout(template=_template(), **layout_frame(title, height))
    return fig


def empty_figure(message: str, height: int = 300) -> go.Figure:
    """A figure with no axes that says ``message`` (why there is nothing to draw)."""
    fig = go.Figure()
    fig.add_annotation(
        text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper", font={"size": 14}
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return base_layout(fig, "", height)


__all__ = ["ENGINE_COLORS", "FONT", "LABELS", "base_layout", "empty_figure", "layout_frame", "rgba"]
