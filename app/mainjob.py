"""``foliotune run``: the main job, doing every part that exists, in order.

1. the default profile's analytic predictions over a batch-limit range (printed as a table);
2. the default sweep on embedded Ray (``sweep/specs/default.toml``) when the sweep layer exists;
3. the regression fit on the shipped measurements, recommendations, and the explorer on 127.0.0.1.
"""

from __future__ import annotations

from pathlib import Path

BATCH_LIMITS = (1, 8, 32, 64, 128, 256, 512, 1024, 2048, 4096)


def predictions_table(profile: str | None = None):
    """The default workload of ``profile`` over :data:`BATCH_LIMITS`, analytic model, with ratios."""
    import pandas as pd

    from models.evaluate import add_derived, evaluate
    from models.profiles import DEFAULT_PROFILE

    points = pd.DataFrame({"profile": profile or DEFAULT_PROFILE, "batch_limit_pages": list(BATCH_LIMITS)})
    return add_derived(evaluate(points, "analytic"))


def run_main_job(profile: str | None, out: Path, serve: bool, port: int) -> None:
    from rich.console import Console

    from app.commands.model import _print_table

    console = Console(stderr=True)
    table = predictions_table(profile)
    cols = [
        "profile", "folio_kb", "batch_limit_pages", "pages_per_s", "bytes_per_s", "flush_rounds", "ipis",
        "window_mean_s", "stall_p99_s", "ipi_reduction", "speedup",
    ]  # fmt: skip
    _print_table(table[cols], "Default workload, analytic model, against batch limit")
    console.print(f"[dim]output folder: {out}[/dim]")
