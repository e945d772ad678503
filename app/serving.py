"""Serving the explorer: warm the caches, then run the Dash server (used by ``explore`` and ``run``)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

from app.explorer import is_loopback
from app.live import live_candidates
from app.queries import default_profile, recommend_for
from app.recommend import Constraints
from app.regression_source import shipped_regression
from app.results_view import ResultsError, load_results
from models.errors import UserError


def serve(app: Any, host: str, port: int) -> None:
    """Serve a Dash app with the threaded development server (stop with Ctrl-C)."""
    if not is_loopback(host):
        print(
            f"foliotune: warning: serving on {host}, reachable from other machines; the explorer has no "
            "authentication (use the default 127.0.0.1 unless you mean it)",
            file=sys.stderr,
        )
    app.run(host=host, port=port, debug=False)


def warm_up_in_background(results_dir: Path, use_regression: bool) -> threading.Thread:
    """:func:`warm_up` in a daemon thread, so the server can accept connections meanwhile (the
    browser loads the page's scripts while the caches fill)."""
    th = threading.Thread(
        target=warm_up, args=(results_dir, use_regression), name="foliotune-warm-up", daemon=True
    )
    th.start()
    return th


def warm_up(results_dir: Path, use_regression: bool) -> None:
    """Load the results, the regression and the compiled kernels before the first page is served."""
    try:
        results = load_results(results_dir)
        results.store.ensure_cache()  # a large sweep: its sorted copy, written once in the background
        reg = shipped_regression() if use_regression else None
        profile = default_profile(results)
        live_candidates(profile, None)  # the live Choose page (the first page): its compiled kernels
        recommend_for(results, profile, None, Constraints(1e-3), regression=reg)  # then the sweep's path
    except (ResultsError, UserError) as exc:
        print(f"foliotune: {exc} (the explorer will show this)", file=sys.stderr)
