"""Plotly figure builders (pure: tables in, figures out; no Dash, no files), one module per page.

Every axis title carries its unit. Quantities are SI in the tables and shown in readable units
(µs for stalls, ms for CPU time). Bands are 90 % intervals: Monte Carlo (±1.645 standard errors) and,
for throughput, the regression's prediction interval.

- :mod:`app.figures.common`: engine colours, axis labels, the base layout, the empty figure;
- :mod:`app.figures.plain`: building blocks of figures built as plain dicts;
- :mod:`app.figures.choose`: against batch limit, Pareto front, marginal view;
- :mod:`app.figures.landscape`: the recommendation heatmap;
- :mod:`app.figures.evidence`: measurements over the model, residuals, Sobol indices.
"""

from app.figures.choose import choice_figure, marginal_figure, pareto_figure, pareto_front
from app.figures.common import ENGINE_COLORS, LABELS, empty_figure
from app.figures.evidence import evidence_figure, residual_figure, sobol_figure
from app.figures.landscape import landscape_figure

__all__ = [
    "ENGINE_COLORS",
    "LABELS",
    "choice_figure",
    "empty_figure",
    "evidence_figure",
    "landscape_figure",
    "marginal_figure",
    "pareto_figure",
    "pareto_front",
    "residual_figure",
    "sobol_figure",
]
