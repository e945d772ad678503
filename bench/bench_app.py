"""Explorer benchmark: first page and Choose interactions, measured in a real browser.

    .venv/bin/python bench/bench_app.py [--results DIR] [--interactions 60] [--json OUT]

Without ``--results`` it sweeps SPEC below (analytic model, about 10.8 million points, over four million
feasible) into ``/tmp/foliotune-bench-app`` first (resumed if already there). Then it serves the
explorer in this process on 127.0.0.1, opens it in Debian chromium (Playwright) and measures

* ``launch``: ``foliotune explore`` started as a new process (first without the sorted copy of the
  sweep that the explorer writes once, then with it), from just before the process is started to the
  server accepting connections and to the first page usable (chromium started beforehand);
* ``queries``: in-process times of a candidates lookup and of Landscape maps on the sweep (DuckDB
  over the Parquet chunks; ``queries_without_sorted_copy`` before the copy is written);
* first page usable: from navigation start to the recommendation card and the Choose figures on
  screen drawn (a figure off screen is drawn when it is scrolled into view or when the browser is
  next idle, see ``app.explorer.pages.choose.SHOW_FIGURE``); ``first_page_all_figures_s``: until
  the figures off screen are drawn too;
* each Choose interaction (stall budget, profile, workload fields, and values typed into a field that
  no cache has seen), with the page's default source: the **live** models (analytic screening, then
  the Monte Carlo model at 64 replicas on the contenders, evaluated in the request): from the
  committing input event (Enter in the budget field, the click on an option) to the new
  recommendation and its figures drawn with no request pending, p50/p95/max, measured twice:

  - ``interactions`` (the bar): in the browser, from the input event's own timestamp
    (``event.timeStamp`` of the first pointerdown/keydown) to the animation frame in which the
    page is first seen updated (a requestAnimationFrame poll; the browser paints right after it);
  - ``interactions_all_figures``: in the browser, from the same event to the frame in which the
    figures off screen are drawn too;
  - ``interactions_wall``: wall clock in Python around Playwright, from before the key press or
    the option click (so it also counts Playwright's actionability checks and round trips).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import socket
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.chromium import CHROMIUM_ARGS  # noqa: E402

SPEC = """
[sweep]
name = "bench: explorer, >= 1e7 points"
seed = 11
models = ["analytic"]
sampler = "grid"
[fixed]
n_folios = 4096
[axes]
profile = ["xeon-e5-2650v3-2s", "epyc-zen3-2s", "xeon-8260l-2s", "kunpeng920-2s", "grace-2s", "spr-dsa-2s"]
batch_limit_pages = { log2_start = 0, log2_stop = 12 }
folio_kb = [4, 16, 64, 512, 2048]
copy_engine = ["cpu", "mt-cpu", "dma", "dsa"]
copy_threads = [1, 2, 4, 8]
target_cpus = [2, 4, 8, 16, 32, 64]
access_rate_hz = [100.0, 1000.0, 10000.0, 100000.0]
busy_prob = [0.0, 0.01, 0.05]
mapcount = [1, 2, 4]
mode = ["sync", "async"]
kernel = ["6.2", "6.3", "6.6", "6.15"]
"""
ARGS = list(CHROMIUM_ARGS)
# The page as seen: the card, and every figure of this update (its layout.uirevision is the page's
# stamp) either drawn or, off screen, waiting to be drawn (class ft-deferred, data-ft-stamp: drawn
# when scrolled into view or when the browser is next idle).
WAIT_DRAWN = """() => {
  const s = document.getElementById('ch-stamp');
  const stamp = s && s.textContent;
  if (!stamp || stamp.startsWith('error')) return false;
  const synced = ['ch-marginal', 'ch-pareto', 'ch-curves'].every((id) => {
    const g = document.getElementById(id);
    if (!g) return false;
    if (g.classList.contains('ft-deferred')) return g.dataset.ftStamp === stamp;
    const gd = g.querySelector('.js-plotly-plot');
    // (code before the stamp was in the figures, without window.ftShowFigure: drawn, not plotting)
    const mine = gd && gd.layout && (gd.layout.uirevision === stamp ||
                                     (!window.ftShowFigure && gd.layout.uirevision === undefined));
    return mine && gd.querySelector('.main-svg') && !gd.classList.contains('dash-graph--pending');
  });
  return synced && !document.querySelector('[data-dash-is-loading="true"]');
}"""
# Every figure drawn, the ones off screen too.
ALL_DRAWN = "() => (" + WAIT_DRAWN + ")() && !document.querySelector('.ft-deferred')"
# Records the timestamp of the first input event after the page arms it (window.__ftEvent = 0).
EVENT_CLOCK = """(() => {
  window.__ftEvent = -1;
  const first = (e) => { if (window.__ftEvent === 0) window.__ftEvent = e.timeStamp; };
  for (const t of ['pointerdown', 'mousedown', 'keydown']) window.addEventListener(t, first, true);
})();"""
# Polled once per animation frame: true when the interaction's result is on the page; notes when.
WAIT_UPDATED = (
    "(old) => { const s = document.getElementById('ch-stamp');"
    " const ok = s && s.textContent !== old && (" + WAIT_DRAWN + ")();"
    " if (ok && !window.__ftDone) window.__ftDone = performance.now(); return ok; }"
)
# Then polled until the figures off screen are drawn too; notes when.
WAIT_ALL = (
    "() => { const ok = (" + ALL_DRAWN + ")();"
    " if (ok && !window.__ftAll) window.__ftAll = performance.now(); return ok; }"
)


def ensure_sweep(out: Path) -> dict[str, Any]:
    from sweep.runner import run_sweep
    from sweep.spec import spec_from_toml
    from sweep.storage import read_manifest

    spec = spec_from_toml(SPEC, "bench/bench_app.py")
    m = read_manifest(out) if out.is_dir() else None
    if m is not None and m.get("complete") and m.get("spec_hash") == spec.hash:
        return {"points": spec.n_points, "seconds": None, "backend": f"reused ({m.get('code_version')})"}
    t = time.perf_counter()
    s = run_sweep(spec, out, progress=True, yes=True)
    return {"points": spec.n_points, "seconds": time.perf_counter() - t, "backend": s.backend}


def first_page_from_launch(
    results: Path, chromium: str, runs: int, cache_dir: str | None
) -> list[dict[str, float]]:
    """Launch ``foliotune explore --results RESULTS`` as a new process ``runs`` times and time, from
    just before the process is started: the server accepting connections, and the first page usable
    in chromium (started beforehand, as a user's browser is; navigating as soon as the port accepts).
    ``cache_dir``: the ``FOLIOTUNE_CACHE_DIR`` of the explorer (None: the default)."""
    import subprocess

    from playwright.sync_api import sync_playwright

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    if cache_dir is not None:
        env["FOLIOTUNE_CACHE_DIR"] = cache_dir
    out = []
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=ARGS)
        for _ in range(runs):
            ctx = b.new_context(viewport={"width": 1400, "height": 1000})
            pg = ctx.new_page()
            port = _free_port()
            cmd = [sys.executable, "-m", "app.cli", "explore", "--results", str(results), "--port", str(port)]
            t = time.perf_counter()
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                while True:
                    with socket.socket() as s:
                        if s.connect_ex(("127.0.0.1", port)) == 0:
                            break
                    if proc.poll() is not None:
                        raise RuntimeError(f"explore exited with {proc.returncode}: {' '.join(cmd)}")
                    time.sleep(0.02)
                up = time.perf_counter() - t
                pg.goto(f"http://127.0.0.1:{port}/")
                pg.wait_for_function(WAIT_DRAWN, timeout=120_000)
                first = time.perf_counter() - t
            finally:
                proc.terminate()
                proc.wait(timeout=60)
                ctx.close()
            out.append({"server_up_s": up, "first_page_s": first})
        b.close()
    return out


def sweep_queries(r: Any, repeat: int = 20) -> dict[str, Any]:
    """In-process times of the sweep queries behind the explorer: a candidates lookup (one workload's
    rows) over several workloads, and Landscape maps (every cell's rows in one query, then the rule)."""
    from app.queries import landscape
    from app.recommend import Constraints

    prof = "epyc-zen3-2s"
    vals = r.workload_values(prof)
    wls = [
        r.resolve_workload(prof, {"folio_kb": f, "target_cpus": t})
        for f in vals["folio_kb"]
        for t in vals["target_cpus"][:4]
    ]
    times = []
    for i in range(repeat):
        t = time.perf_counter()
        r.candidates(prof, wls[i % len(wls)])
        times.append(time.perf_counter() - t)
    land: dict[str, list[float]] = {}
    for x, y in (("folio_kb", "profile"), ("target_cpus", "access_rate_hz"), ("folio_kb", "target_cpus")):
        for budget in (300e-6, 1e-3, 5e-3):
            t = time.perf_counter()
            landscape(r, prof, r.default_workload(prof), x, y, Constraints(budget))
            land.setdefault(f"{x} x {y}", []).append(time.perf_counter() - t)
    return {
        "sorted_copy": bool(r.store.cached),
        "candidates_ms": {"p50": 1e3 * statistics.median(times), "max": 1e3 * max(times), "n": len(times)},
        "landscape_ms": {k: [round(1e3 * v, 1) for v in vs] for k, vs in land.items()},
    }


LANDSCAPE_DRAWN = """(label) => ['ls-heat-batch', 'ls-heat-gain'].every((id) => {
  const gd = document.querySelector('#' + id + ' .js-plotly-plot');
  const t = gd && gd.layout && gd.layout.xaxis && gd.layout.xaxis.title;
  return t && t.text === label && !gd.classList.contains('dash-graph--pending');
}) && !document.querySelector('[data-dash-is-loading="true"]')"""


def landscape_interactions(pg: Any, base: str, n: int) -> dict[str, Any]:
    """The Landscape page: from the click on a new x axis (y stays the hardware profile) to both maps
    redrawn with it, wall clock around Playwright (so it includes its round trips); and the page's
    first maps from navigation."""
    from app.figures.common import LABELS

    t = time.perf_counter()
    pg.goto(base + "landscape")
    pg.wait_for_selector("#ls-heat-batch .js-plotly-plot .main-svg", timeout=60_000)
    first = time.perf_counter() - t
    axes = ["target_cpus", "access_rate_hz", "busy_prob", "mapcount", "mode", "folio_kb"]
    times: list[float] = []
    for i in range(n):
        label = LABELS.get(axes[i % len(axes)], axes[i % len(axes)])
        pg.click("#ls-x")
        exact = re.compile(rf"^\s*{re.escape(label)}\s*$")
        opt = pg.locator(".dash-dropdown-content [role=option]").filter(has_text=exact).first
        opt.wait_for(state="visible")
        t = time.perf_counter()
        opt.click()
        pg.wait_for_function(LANDSCAPE_DRAWN, arg=label, timeout=60_000)
        times.append(time.perf_counter() - t)
    return {
        "first_maps_s": first,
        "x_axis_change_wall_ms": {
            "p50": 1e3 * statistics.median(times),
            "max": 1e3 * max(times),
            "n": len(times),
            "all": [round(1e3 * x) for x in times],
        },
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    k = max(0, min(len(xs) - 1, int(round(q * (len(xs) - 1)))))
    return xs[k]


def _summary(times: dict[str, list[float]]) -> dict[str, Any]:
    all_t = [x for v in times.values() for x in v]
    return {
        "n": len(all_t),
        "p50_ms": 1e3 * statistics.median(all_t),
        "p95_ms": 1e3 * _pct(all_t, 0.95),
        "max_ms": 1e3 * max(all_t),
        "by_kind_p95_ms": {k: 1e3 * _pct(v, 0.95) for k, v in times.items()},
        "by_kind_ms": {k: [round(1e3 * x, 1) for x in v] for k, v in times.items()},  # every sample
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", type=Path, default=None)
    ap.add_argument("--interactions", type=int, default=60)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument(
        "--launch-runs",
        type=int,
        default=3,
        help="explorer launches timed to the first page: one without the sorted copy, then with it",
    )
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument(
        "--source", default="live", help="live (default) or a results model (montecarlo, analytic)"
    )
    a = ap.parse_args()
    out: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    }
    results = a.results or Path("/tmp/foliotune-bench-app")
    if a.results is None:
        out["sweep"] = ensure_sweep(results)

    from werkzeug.serving import make_server

    from app.explorer import create_app
    from app.results_view import load_results
    from app.serving import warm_up

    launches: list[dict[str, Any]] = []
    if a.launch_runs > 0:  # first without the sorted copy of the sweep (a fresh cache folder)
        import tempfile

        with tempfile.TemporaryDirectory(prefix="foliotune-bench-cache-") as fresh:
            launches += [
                {"sorted_copy": False, **x} for x in first_page_from_launch(results, a.chromium, 1, fresh)
            ]
    t = time.perf_counter()
    r = load_results(results)
    out["load_s"] = time.perf_counter() - t
    out["rows_total"] = r.n_rows_total
    out["rows_feasible"] = r.n_rows_usable
    out["points"] = r.sweep.spec.n_points
    out["queries_without_sorted_copy"] = sweep_queries(r, repeat=5) if not r.store.cached else None
    t = time.perf_counter()
    r.store.ensure_cache(wait=True)
    out["sorted_copy_s"] = time.perf_counter() - t  # 0 when it was already written
    out["queries"] = sweep_queries(r)
    if a.launch_runs > 1:
        launches += [
            {"sorted_copy": True, **x}
            for x in first_page_from_launch(results, a.chromium, a.launch_runs - 1, None)
        ]
    out["launch"] = launches
    t = time.perf_counter()
    warm_up(results, True)
    out["warm_up_s"] = time.perf_counter() - t
    app = create_app(results, sweeps_dir=Path("/tmp/foliotune-bench-app-sweeps"))
    port = _free_port()
    srv = make_server("127.0.0.1", port, app.server, threaded=True)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    base = f"http://127.0.0.1:{port}/"

    from playwright.sync_api import sync_playwright

    load_before = os.getloadavg()
    firsts: list[float] = []
    firsts_all: list[float] = []
    times_all: dict[str, list[float]] = {}  # in the browser: input event -> every figure drawn
    times: dict[str, list[float]] = {}  # in the browser: input event -> updated frame
    wall: dict[str, list[float]] = {}  # in Python, around Playwright
    payload: list[int] = []
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=a.chromium, args=ARGS)
        for _ in range(3):
            ctx = b.new_context(viewport={"width": 1400, "height": 1000})
            pg = ctx.new_page()
            t = time.perf_counter()
            pg.goto(base)
            pg.wait_for_function(WAIT_DRAWN, timeout=60_000)
            firsts.append(time.perf_counter() - t)
            pg.wait_for_function(ALL_DRAWN, timeout=60_000)
            firsts_all.append(time.perf_counter() - t)
            ctx.close()
        ctx = b.new_context(viewport={"width": 1400, "height": 1000})
        ctx.add_init_script(EVENT_CLOCK)
        pg = ctx.new_page()
        pg.on(
            "response",
            lambda resp: payload.append(len(resp.body())) if "_dash-update-component" in resp.url else None,
        )
        pg.goto(base)
        pg.wait_for_function(WAIT_DRAWN, timeout=60_000)
        if a.source != "live":
            old = pg.text_content("#ch-stamp")
            pg.click(f"#ch-model input[value={a.source}]")
            pg.wait_for_function(WAIT_UPDATED, arg=old, timeout=60_000)
            values = r.workload_values("epyc-zen3-2s", r.default_model)
        else:
            from app.explorer.pages.choose import live_values
            from app.live import LIVE_REPLICAS

            values = live_values("epyc-zen3-2s", r)
            out["live_replicas"] = LIVE_REPLICAS
        out["source"] = a.source
        from app.explorer.pages.choose import option_label as label

        budgets = ["50", "200", "500", "1000", "2000", "100", "5000"]
        profiles = ["xeon-8260l-2s", "epyc-zen3-2s", "kunpeng920-2s", "epyc-zen3-2s"]
        actions: list[tuple[str, str, str]] = []
        i = 0
        while len(actions) < a.interactions:
            actions.append(("budget", "ch-budget", budgets[i % len(budgets)]))
            for k in ("folio_kb", "target_cpus", "access_rate_hz", "busy_prob", "mapcount", "mode"):
                opts = values.get(k, [])
                if len(opts) > 1:
                    actions.append((k, f"ch-wl-{k}", label(opts[(i + 1) % len(opts)])))
            if i % 3 == 0:
                actions.append(("profile", "ch-profile", profiles[(i // 3) % len(profiles)]))
            if a.source == "live":  # a value no cache has seen: a full live evaluation
                actions.append(("typed", "ch-wl-n_folios", str(1000 + 37 * i)))
            i += 1
        payload.clear()
        for kind, cid, value in actions[: a.interactions]:
            old = pg.text_content("#ch-stamp")
            # The clock starts at the committing input event (Enter in the budget field, the click on
            # a dropdown option), not when the dropdown is opened.
            if kind == "budget":
                pg.fill(f"#{cid}", value)
                pg.evaluate("() => { window.__ftEvent = 0; window.__ftDone = 0; window.__ftAll = 0; }")
                t = time.perf_counter()
                pg.press(f"#{cid}", "Enter")
            else:
                pg.click(f"#{cid}")
                if kind == "typed":
                    pg.fill(".dash-dropdown-content input.dash-dropdown-search", value)
                exact = re.compile(rf"^\s*{re.escape(value)}\s*$")
                opt = pg.locator(".dash-dropdown-content [role=option]").filter(has_text=exact).first
                if kind == "typed":
                    opt.wait_for(state="visible")
                if opt.count() == 0 or opt.get_attribute("aria-selected") == "true":
                    pg.keyboard.press("Escape")
                    continue
                opt.wait_for(state="visible")
                pg.evaluate("() => { window.__ftEvent = 0; window.__ftDone = 0; window.__ftAll = 0; }")
                t = time.perf_counter()
                opt.click()
            pg.wait_for_function(WAIT_UPDATED, arg=old, timeout=30_000)
            wall.setdefault(kind, []).append(time.perf_counter() - t)
            pg.wait_for_function(WAIT_ALL, timeout=30_000)
            ev, done, done_all = pg.evaluate("() => [window.__ftEvent, window.__ftDone, window.__ftAll]")
            if not ev > 0:
                raise RuntimeError(f"{kind}: the input event was not seen in the page")
            times.setdefault(kind, []).append((done - ev) / 1e3)
            times_all.setdefault(kind, []).append((done_all - ev) / 1e3)
        out["landscape"] = landscape_interactions(pg, base, 12)
        b.close()
    srv.shutdown()
    out["first_page_s"] = {"runs": firsts, "max": max(firsts)}
    out["first_page_all_figures_s"] = {"runs": firsts_all, "max": max(firsts_all)}
    out["interactions"] = _summary(times)
    out["interactions_all_figures"] = _summary(times_all)
    out["interactions_wall"] = _summary(wall)
    out["load_average"] = {"before": load_before, "after": os.getloadavg()}
    out["uptime"] = os.popen("uptime").read().strip()
    out["callback_payload_kb"] = {
        "median": statistics.median(payload) / 1e3 if payload else 0,
        "max": max(payload, default=0) / 1e3,
    }
    text = json.dumps(out, indent=2)
    print(text)
    if a.json:
        a.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
