"""The Choose page's figure builders, on live evaluations (pure functions, no browser)."""

from __future__ import annotations

from app.figures.choose import choice_figure
from app.live import live_view
from app.queries import engine_curves
from app.recommend.choices import Constraints

NO_IPIS = "no IPIs"


def curves_figure(profile: str) -> dict:
    cons = Constraints(stall_p99_s=1e-3)
    rec, cands, _ = live_view(profile, {}, cons)
    return choice_figure(engine_curves(cands, cons), rec, cons)


def test_an_ipi_panel_with_no_ipis_says_why_instead_of_staying_blank() -> None:
    # arm64 (Grace): broadcast TLBI, no IPIs ever; a log axis cannot draw the zeros
    grace = curves_figure("grace-2s")
    assert any(NO_IPIS in a["text"] for a in grace["layout"]["annotations"])
    # x86 without INVLPGB sends IPIs: the panel has its curves and no such note
    epyc = curves_figure("xeon-8260l-2s")
    assert not any(NO_IPIS in a["text"] for a in epyc["layout"]["annotations"])
    ipi_traces = [t for t in epyc["data"] if t.get("yaxis") == "y2" and t.get("mode") == "lines+markers"]
    assert ipi_traces and any(y > 0 for t in ipi_traces for y in t["y"])
