# ruff: noqa: F811  (the fixtures imported from test_app_browser are test parameters here)
"""The Choose page in a real browser (Debian chromium via Playwright): live models for any workload,
the profile's default, intervals, the marginal view, figures, the URL, exports equal to the CLI.

Uses the explorer server and browser of ``tests/test_app_browser.py`` (same fixtures, same folder).
Screenshots at 1400×1000 and 1024×768 go to ``test-artifacts/choose-*.png``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.test_app_browser import (  # noqa: F401  (fixtures)
    _idle,
    _pick,
    _stamp,
    _wait_stamp,
    _wait_text,
    browser,
    folders,
    page,
    pytestmark,
    server,
)


def _open(pg: Any, url: str) -> None:
    pg.goto(url)
    pg.wait_for_selector("#ch-rec-batch")
    _idle(pg)


def _type_pick(pg: Any, dropdown_id: str, value: str) -> None:
    """Type a value into a workload field and pick it (any value, not only the suggested ones)."""
    old = _stamp(pg)
    pg.click(f"#{dropdown_id}")
    pg.fill(".dash-dropdown-content input.dash-dropdown-search", value)
    exact = re.compile(rf"^\s*{re.escape(value)}\s*$")
    pg.locator(".dash-dropdown-content [role=option]").filter(has_text=exact).first.click()
    _wait_stamp(pg, old)


def _fill_budget(pg: Any, value: str) -> None:
    old = _stamp(pg)
    pg.fill("#ch-budget", value)
    pg.press("#ch-budget", "Enter")
    _wait_stamp(pg, old)


def _shots(pg: Any, artifacts: Path, name: str) -> None:
    for w, h in ((1400, 1000), (1024, 768)):
        pg.set_viewport_size({"width": w, "height": h})
        pg.wait_for_timeout(500)
        _idle(pg)
        pg.screenshot(path=str(artifacts / f"choose-{name}-{w}.png"), full_page=True)
    pg.set_viewport_size({"width": 1400, "height": 1000})


def _fig(pg: Any, gid: str) -> Any:
    pg.wait_for_function(
        f"() => {{ const g = document.querySelector('#{gid} .js-plotly-plot'); return g && g.data && g.data.length; }}"
    )
    return pg.evaluate(
        f"() => {{ const g = document.querySelector('#{gid} .js-plotly-plot'); "
        "return {data: g.data.map(t => ({name: t.name, text: t.text, x: t.x, y: t.y, mode: t.mode})), "
        "layout: JSON.parse(JSON.stringify(g.layout))}; }"
    )


def test_live_is_the_default_and_any_value_can_be_typed(page: Any, server: str, artifacts_dir: Path) -> None:
    _open(page, server + "/")
    assert page.is_checked("#ch-model input[value=live]")
    assert "live evaluation" in page.inner_text("#ch-provenance")
    _type_pick(page, "ch-wl-n_folios", "3000")  # not a suggested value, not in the sweep
    assert "n_folios=3000" in page.inner_text("#ch-rec-context")
    _type_pick(page, "ch-wl-access_rate_hz", "2500")
    assert "access_rate_hz=2500" in page.inner_text("#ch-rec-context")
    # kernel and folio_mix are fields too; the model says when it does not know one yet
    assert (
        page.query_selector("#ch-wl-kernel") is not None
        and page.query_selector("#ch-wl-folio_mix") is not None
    )
    assert "assumption" in page.inner_text("#ch-stall-assumption")
    _shots(page, artifacts_dir, "live")


def test_2mib_folios_keep_the_default_and_match_the_cli(page: Any, server: str, tmp_path: Path) -> None:
    from app.commands.explore import recommend_live_export

    _open(page, server + "/")
    old = _stamp(page)
    _pick(page, "ch-profile", "xeon-e5-2650v3-2s")
    _wait_stamp(page, old)
    _fill_budget(page, "300")
    _type_pick(page, "ch-wl-folio_kb", "2048")
    assert page.inner_text("#ch-rec-batch") == "512"  # never 1: the constant is kernel-wide
    assert "kernel default (512, cpu)" in json.dumps(_fig(page, "ch-pareto")["data"])
    with page.expect_download() as dl:
        page.click("#ch-exp-json")
    path = tmp_path / "app.json"
    dl.value.save_as(path)
    got = path.read_bytes()
    wl = json.loads(got)["recommendations"][0]["workload"]
    want, _rec = recommend_live_export(profile="xeon-e5-2650v3-2s", workload=wl, stall_p99_us=300, fmt="json")
    assert got == want
    args = [f"--{k.replace('_', '-')}={v}" for k, v in wl.items()]
    p = subprocess.run(
        [sys.executable, "-m", "app.cli", "recommend", "--profile", "xeon-e5-2650v3-2s", "--stall-p99-us", "300",
         *args, "--format", "json"],
        capture_output=True, timeout=300,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert p.stdout == got


def test_grace_baseline_is_8192(page: Any, server: str) -> None:
    _open(page, server + "/")
    old = _stamp(page)
    _pick(page, "ch-profile", "grace-2s")
    _wait_stamp(page, old)
    assert "(8192 pages, cpu copy)" in page.inner_text("#ch-card")
    assert "kernel default 8192" in json.dumps(_fig(page, "ch-curves")["layout"]["annotations"])


def test_figures_marginal_pareto_and_curves(page: Any, server: str, artifacts_dir: Path) -> None:
    _open(page, server + "/")
    _fill_budget(page, "300")
    marg = _fig(page, "ch-marginal")
    labels = [t for tr in marg["data"] if tr.get("text") for t in tr["text"]]
    assert "512" in labels and "1" in labels  # every limit, labelled
    assert "Δ p99 stall" in marg["layout"]["xaxis"]["title"]["text"]
    pareto = _fig(page, "ch-pareto")
    front = next(t for t in pareto["data"] if str(t.get("name", "")).startswith("Pareto front"))
    assert front["text"] and all(t.isdigit() for t in front["text"])
    curves = _fig(page, "ch-curves")
    lay = curves["layout"]
    assert lay["yaxis4"]["type"] == "log"  # stall on a log axis
    xs = {
        int(v) for tr in curves["data"] if tr.get("x") and tr.get("mode") == "lines+markers" for v in tr["x"]
    }
    assert set(lay["xaxis"]["tickvals"]) <= xs  # ticks only where the model was evaluated
    assert any(tr.get("mode") == "lines+markers" for tr in curves["data"])
    assert lay["legend"]["y"] < 0  # the legend is under the panels, never over the title
    _shots(page, artifacts_dir, "figures")


def test_selection_lives_in_the_url(page: Any, server: str, browser: Any) -> None:
    _open(page, server + "/")
    old = _stamp(page)
    _pick(page, "ch-profile", "spr-dsa-2s")
    _wait_stamp(page, old)
    _fill_budget(page, "250")
    _type_pick(page, "ch-wl-target_cpus", "12")
    page.wait_for_function("() => location.search.includes('target_cpus=12')")
    url = page.url
    assert "profile=spr-dsa-2s" in url and "budget_us=250" in url
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    other = ctx.new_page()
    other.set_default_timeout(30_000)
    other.goto(url)
    other.wait_for_function(
        "() => { const e = document.getElementById('ch-rec-context'); return e && e.textContent.includes('spr-dsa-2s')"
        " && e.textContent.includes('target_cpus=12'); }"
    )
    assert other.input_value("#ch-budget") == "250"
    ctx.close()


@pytest.mark.parametrize("budget", ["0", "-3"])
def test_budget_must_be_positive(page: Any, server: str, budget: str) -> None:
    _open(page, server + "/")
    _fill_budget(page, budget)
    page.wait_for_selector("#ch-error")
    assert "must be > 0" in page.inner_text("#ch-error")


def test_the_first_layout_is_the_page_asked_for_evaluated(server: str) -> None:
    """The page the address names comes with the layout, already evaluated (no round trip through
    the router, no empty plots): a link's selection included."""
    import urllib.request

    req = urllib.request.Request(
        server + "/_dash-layout", headers={"Referer": server + "/?profile=xeon-e5-2650v3-2s&budget_us=300"}
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        text = json.dumps(json.loads(resp.read()), ensure_ascii=False)
    assert "ch-rec-batch" in text and "ch-marginal" in text
    assert "xeon-e5-2650v3-2s · " in text and "budget 300" in text  # the card and the figures
    req = urllib.request.Request(server + "/_dash-layout", headers={"Referer": server + "/sweeps"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        assert "ch-rec-batch" not in resp.read().decode()


def test_figures_off_screen_are_drawn_after_the_page_on_screen(page: Any, server: str) -> None:
    """At 1400×1000 the curves are below the screen: an interaction leaves them waiting (class
    ft-deferred) and they are drawn for the same update once the page on screen is drawn."""
    _open(page, server + "/")
    page.evaluate(
        """() => { window.__deferred = 0; const g = document.getElementById('ch-curves');
        new MutationObserver(() => { if (g.classList.contains('ft-deferred')) window.__deferred++; })
          .observe(g, {attributes: true, attributeFilter: ['class']}); }"""
    )
    box = page.evaluate("() => document.getElementById('ch-curves').getBoundingClientRect().top")
    assert box > 1000  # below the screen
    _fill_budget(page, "200")
    assert page.evaluate("() => window.__deferred") >= 1
    stamp = _stamp(page)
    curves = _fig(page, "ch-curves")
    assert curves["layout"]["uirevision"] == stamp  # drawn for this update (in idle time)
    assert "budget 200 µs" in json.dumps(curves["layout"]["annotations"], ensure_ascii=False)


def test_a_profile_change_shows_its_defaults_in_one_evaluation(page: Any, server: str) -> None:
    """Changing the machine resets the workload fields to its defaults: the fields show them, the
    card is evaluated for them, and it takes one evaluation (the fields are not left showing the
    old workload, whose value missing from the new options Dash would then clear and evaluate again)."""
    from models.params import defaults_for
    from models.profiles import get_profile

    _open(page, server + "/")
    _type_pick(page, "ch-wl-n_folios", "3001")
    _type_pick(page, "ch-wl-access_rate_hz", "2500")
    calls: list[str] = []
    page.on(
        "request",
        lambda r: calls.append(r.post_data or "") if "_dash-update-component" in r.url else None,
    )
    old = _stamp(page)
    _pick(page, "ch-profile", "kunpeng920-2s")
    _wait_stamp(page, old)
    page.wait_for_timeout(500)
    _idle(page)
    main = [c for c in calls if "ch-card.children" in c]
    assert len(main) == 1, [json.loads(c).get("changedPropIds") for c in main]
    d = defaults_for(get_profile("kunpeng920-2s"))
    context = page.inner_text("#ch-rec-context")
    for k in ("n_folios", "access_rate_hz"):
        shown = page.inner_text(f"#ch-wl-{k}").strip()
        assert shown == f"{d[k]:g}", (k, shown)
        assert f"{k}={d[k]:g}" in context, (k, context)
