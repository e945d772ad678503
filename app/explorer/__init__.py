"""The foliotune explorer: a Dash multi-page app over a sweep's results (DESIGN.md §4).

:func:`create_app` builds a new app around an :class:`ExplorerState` (the results folders it may
show, background sweeps, per-session regressions). Pages live in ``app.explorer.pages``: each owns
its layout and registers its callbacks on the app it is given; callbacks are a few lines that load
aggregated data (:mod:`app.results_view`, :mod:`app.queries`, :mod:`app.evidence`, ...) and call pure builders (:mod:`app.figures`,
:mod:`app.recommend`). Importing this package does no work and keeps no global state.

Security: the browser only ever names a results folder by its number in the server's list; uploads
are read in memory within limits on bytes and rows; exports are built in memory.

Resources: at most ``MAX_SESSIONS`` sessions (a session idle for ``SESSION_IDLE_S`` is dropped), each
holding its uploaded rows and refitted regression in memory only; one validation worker process
with a short queue (:class:`app.validation.ValidationQueue`); :meth:`ExplorerState.close` (called
by :func:`stopping_cleanly` on exit or SIGTERM) cancels queued work and ends the worker.
"""

from __future__ import annotations

import ipaddress
import signal
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pandas as pd

from app.evidence import shipped_measurements
from app.explorer.jobs import SweepJobs
from app.regression_source import RegressionSource, regression_with, shipped_regression
from app.results_view import Results, ResultsError, load_results
from app.validation import ValidationQueue, ValidationResult

DEFAULT_UPLOAD_LIMIT = 5 * 1024 * 1024
# Styles are inlined in the page (no assets folder to package or serve).
CSS = """
body { margin: 0; font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; color: #1d2330;
       background: #f6f7f9; }
.header { display: flex; align-items: center; gap: 28px; padding: 10px 24px; background: #1d2330; color: #fff; }
.header .title { font-size: 20px; } .brand { font-weight: 700; }
.header nav { display: flex; gap: 6px; }
.nav { color: #d7dbe3; text-decoration: none; padding: 6px 12px; border-radius: 6px; }
.nav:hover, .nav.active { background: #39414f; color: #fff; }
.folder { margin-left: auto; display: flex; align-items: center; gap: 8px; color: #1d2330; }
.folder label { color: #d7dbe3; }
main { padding: 18px 24px; }
.row { display: flex; gap: 18px; align-items: flex-start; flex-wrap: wrap; }
.panel { background: #fff; border: 1px solid #e1e4ea; border-radius: 10px; padding: 14px 16px; }
.controls { width: 300px; flex: none; }
.controls label { display: block; font-size: 13px; color: #4a5263; margin: 10px 0 3px; }
.controls input[type=number] { width: 100%; box-sizing: border-box; padding: 6px; border: 1px solid #c9ced8;
       border-radius: 5px; font-size: 14px; }
.grow { flex: 1; min-width: 520px; }
.card h2 { margin: 0 0 6px; font-size: 20px; } .card .big { font-size: 26px; font-weight: 700; }
.card .muted, .muted { color: #5d6677; font-size: 13px; }
.card table, table.data { border-collapse: collapse; font-size: 13px; margin-top: 6px; }
table.data td, table.data th, .card td, .card th { border-bottom: 1px solid #e6e8ec; padding: 4px 8px;
       text-align: right; } table.data th { background: #f0f2f5; }
.error { color: #a61b1b; background: #fdecec; border: 1px solid #f3b9b9; border-radius: 8px; padding: 10px 14px; }
.ok { color: #17643a; background: #eaf7ef; border: 1px solid #b7e1c6; border-radius: 8px; padding: 10px 14px; }
.warn { color: #7a5200; background: #fff6e0; border: 1px solid #f1d48a; border-radius: 8px; padding: 8px 12px; }
.exports button, button.action { margin: 4px 6px 0 0; padding: 6px 12px; border-radius: 6px;
       border: 1px solid #9aa3b5; background: #fff; cursor: pointer; font-size: 14px; }
button.action.primary { background: #2456c8; color: #fff; border-color: #2456c8; }
button:disabled { opacity: 0.5; cursor: default; }
.upload { border: 2px dashed #9aa3b5; border-radius: 8px; padding: 14px; text-align: center; cursor: pointer; }
progress { width: 260px; height: 14px; vertical-align: middle; }
"""
INDEX = """<!DOCTYPE html>
<html lang="en"><head>{%metas%}<title>{%title%}</title>{%favicon%}{%css%}<style>/*CSS*/</style></head>
<body>{%app_entry%}<footer>{%config%}{%scripts%}{%renderer%}</footer></body></html>"""
MAX_SESSIONS = 16
#: A session not seen for this long is dropped with its upload and regression (s).
SESSION_IDLE_S = 3600.0
#: How old a results folder's file listing may be before an interaction lists it again (s).
RESULTS_MAX_AGE_S = 1.0


@dataclass
class Session:
    rows: Any = None  # uploaded measurement rows (pandas DataFrame) or None
    regression: RegressionSource | None = None
    summary: str = ""
    seen: float = field(default_factory=time.monotonic)


@dataclass
class ExplorerState:
    """Everything the app's callbacks share; created per app, never a module global."""

    folders: list[Path]
    sweeps_dir: Path
    upload_limit: int = DEFAULT_UPLOAD_LIMIT
    use_regression: bool = True
    sweep_backend: str = "ray"
    sweep_workers: int | None = None
    #: Measurement rows given to the explorer (``foliotune measure --kernel``, ``import-trace``):
    #: shown on Evidence beside the shipped ones, and the regression is refitted on both.
    local_rows: pd.DataFrame | None = None
    _local_regression: RegressionSource | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _sessions: OrderedDict[str, Session] = field(default_factory=OrderedDict, repr=False)
    _jobs: Any = field(default=None, repr=False)
    _validations: ValidationQueue = field(default_factory=ValidationQueue, repr=False)

    # ---- results folders (the browser names them by index only)
    def folder_options(self) -> list[dict[str, str]]:
        with self._lock:
            return [{"label": f"{p.name}  ({p.parent})", "value": str(i)} for i, p in enumerate(self.folders)]

    def folder(self, folder_id: Any) -> Path:
        with self._lock:
            try:
                i = int(folder_id)
            except (TypeError, ValueError):
                i = 0
            return self.folders[i] if 0 <= i < len(self.folders) else self.folders[0]

    def add_folder(self, path: Path) -> str:
        with self._lock:
            p = Path(path).resolve()
            for i, f in enumerate(self.folders):
                if f.resolve() == p:
                    return str(i)
            self.folders.append(p)
            return str(len(self.folders) - 1)

    def results(self, folder_id: Any) -> Results:
        return load_results(self.folder(folder_id), max_age_s=RESULTS_MAX_AGE_S)

    # ---- background sweeps
    @property
    def jobs(self) -> Any:
        with self._lock:
            if self._jobs is None:
                self._jobs = SweepJobs(
                    self.sweeps_dir, backend=self.sweep_backend, workers=self.sweep_workers
                )
            return self._jobs

    # ---- per-session regression (refitted on an upload)
    def session(self, sid: Any) -> Session:
        """The session ``sid`` (new if unknown); the least recently seen beyond ``MAX_SESSIONS``
        and those idle for ``SESSION_IDLE_S`` are dropped."""
        key = str(sid or "")
        now = time.monotonic()
        with self._lock:
            s = self._sessions.get(key)
            if s is None:
                s = Session()
                self._sessions[key] = s
            else:
                self._sessions.move_to_end(key)
            s.seen = now
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)
            while self._sessions:
                oldest = next(iter(self._sessions.values()))
                if now - oldest.seen <= SESSION_IDLE_S:
                    break
                self._sessions.popitem(last=False)
            return s

    def regression(self, sid: Any) -> RegressionSource | None:
        if not self.use_regression:
            return RegressionSource(
                note="regression disabled (--no-regression); intervals are Monte Carlo only"
            )
        s = self.session(sid)
        if s.regression is not None:
            return s.regression
        if self.local_rows is None:
            return shipped_regression()
        with self._lock:
            if self._local_regression is None:
                self._local_regression = regression_with(self.local_rows, "local measurements")
            return self._local_regression

    def measurements(self, sid: Any = None) -> pd.DataFrame:
        """Shipped rows, the explorer's local rows, and the session's upload (if any)."""
        parts = [shipped_measurements()]
        if self.local_rows is not None:
            parts.append(self.local_rows)
        rows = self.session(sid).rows if sid is not None else None
        if rows is not None and len(rows):
            parts.append(rows)
        return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)

    # ---- background validation (one worker process, a short queue)
    def validation(self, meas: Any) -> ValidationResult:
        return self._validations.summary(meas)

    def close(self) -> None:
        """Stop background work: queued validations and sweeps are cancelled, the worker ends."""
        self._validations.close()
        with self._lock:
            jobs = self._jobs
        if jobs is not None:
            jobs.shutdown()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _answer_oversized_uploads(app: Any, upload_limit: int) -> None:
    """A callback request above the server's size cap can only be an upload. Flask refuses it
    (413) before the callback runs, so the page would show nothing; answer it instead the way the
    upload callback answers a refused file: a one-line error in its status box."""
    # with Dash (create_app): Flask and plotly are loaded by then; the pages import this package
    from flask import Response, request
    from plotly.io.json import to_json_plotly

    from app.explorer.pages.evidence import upload_refused

    @app.server.errorhandler(413)
    def too_large(err: Any) -> Any:
        if not request.path.endswith("/_dash-update-component"):
            return err
        message = upload_refused(f"the file is far above the upload limit of {upload_limit:,} bytes")
        body = {"multi": True, "response": {"ev-upload-status": {"children": message}}}
        return Response(to_json_plotly(body), mimetype="application/json")


def create_app(
    results_dir: str | Path | list[str | Path],
    *,
    sweeps_dir: str | Path | None = None,
    upload_limit: int = DEFAULT_UPLOAD_LIMIT,
    use_regression: bool = True,
    sweep_backend: str = "ray",
    sweep_workers: int | None = None,
    measurements: pd.DataFrame | None = None,
    measurements_regression: RegressionSource | None = None,
) -> Any:
    """A new Dash app showing ``results_dir`` (or several folders; the first is shown first).

    ``measurements``: validated rows (e.g. from ``foliotune measure --kernel`` or ``import-trace``)
    shown on Evidence with the shipped ones; the regression is refitted on both at the first use,
    unless the caller gives the one to use (``measurements_regression``).
    """
    # Dash loads only when an app is built (~1 s that `foliotune recommend` and the tests of the
    # data layer need not pay).
    import dash
    from dash import dcc, html
    from flask import has_request_context, request

    from app.explorer import pages  # the pages use Dash and import this package
    from app.explorer.pages.choose import selection_from_query

    dirs = results_dir if isinstance(results_dir, list) else [results_dir]
    folders = [Path(d).expanduser().resolve() for d in dirs]
    if sweeps_dir is None:
        sweeps_dir = Path(tempfile.gettempdir()) / "foliotune-explorer-sweeps"
    state = ExplorerState(
        folders=folders,
        sweeps_dir=Path(sweeps_dir).resolve(),
        upload_limit=upload_limit,
        use_regression=use_regression,
        sweep_backend=sweep_backend,
        sweep_workers=sweep_workers,
        local_rows=measurements if measurements is not None and len(measurements) else None,
        _local_regression=measurements_regression,
    )
    app = dash.Dash(
        __name__,
        title="foliotune explorer",
        suppress_callback_exceptions=True,
        update_title="",
        assets_ignore=".*",
    )
    app.index_string = INDEX.replace("/*CSS*/", CSS)
    # Uploads arrive base64-encoded in a callback request: cap the request size (4/3 + slack).
    app.server.config["MAX_CONTENT_LENGTH"] = int(upload_limit * 4 / 3) + 2 * 1024 * 1024
    _answer_oversized_uploads(app, upload_limit)

    def layout() -> Any:
        # The page the browser asked for is in the layout itself (the address is the referrer of
        # this request): the first page needs no round trip through the router, and its graphs
        # start loading plotly.js at once.
        path, query = "/", ""
        if has_request_context() and request.referrer:
            path, query = urlsplit(request.referrer).path or "/", urlsplit(request.referrer).query
        selection = selection_from_query(query) if query else None  # a link with a selection
        session = uuid.uuid4().hex
        return html.Div(
            [
                dcc.Location(id="url"),
                dcc.Store(id="page-path", data=path),
                dcc.Store(id="session", data=session),
                dcc.Store(id="selection", data=selection, storage_type="memory"),
                html.Header(
                    [
                        html.Div(
                            [html.Span("foliotune", className="brand"), html.Span(" explorer")],
                            className="title",
                        ),
                        html.Nav(pages.nav_links()),
                        html.Div(
                            [
                                html.Label("results", htmlFor="folder"),
                                dcc.Dropdown(
                                    id="folder",
                                    options=state.folder_options(),  # type: ignore[arg-type]
                                    value="0",
                                    clearable=False,
                                    searchable=False,
                                    style={"minWidth": "360px"},
                                ),
                            ],
                            className="folder",
                        ),
                    ],
                    className="header",
                ),
                html.Main(pages.page_content(state, path, "0", selection, session), id="page"),
            ]
        )

    app.layout = layout
    pages.register(app, state)
    app.server.extensions["foliotune_state"] = state
    return app


@contextmanager
def stopping_cleanly(app: Any) -> Iterator[None]:
    """Serve inside this: SIGTERM ends the server like Ctrl-C, and either way the app's background
    work (validation worker, queued sweeps) is stopped before the process exits."""
    state: ExplorerState = app.server.extensions["foliotune_state"]

    def on_term(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        state.close()


def results_or_error(state: ExplorerState, folder_id: Any) -> tuple[Results | None, str]:
    try:
        return state.results(folder_id), ""
    except ResultsError as exc:
        return None, str(exc)
    except Exception as exc:  # never a traceback in the browser
        return None, f"{state.folder(folder_id)}: cannot be read ({type(exc).__name__}: {exc})"


__all__ = ["ExplorerState", "create_app", "is_loopback", "results_or_error", "stopping_cleanly"]
