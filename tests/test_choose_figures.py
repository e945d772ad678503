"""The Choose page's figure builders, on live evaluations (pure functions, no browser)."""

from __future__ import annotations

from app.figures.choose import choice_figure, marginal_figure
from app.live import live_view
from app.queries import engine_curves
from app.recommend import marginal
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


def test_limits_that_tie_share_one_label_in_the_marginal_view() -> None:
    # 2 MiB folios: every limit up to 512 pages makes one-folio batches, the same point exactly
    cons = Constraints(stall_p99_s=1e-2)
    rec, _, _ = live_view("epyc-zen3-2s", {"folio_kb": 2048}, cons)
    fig = marginal_figure(rec)
    pts = [t for t in fig["data"] if t.get("mode") == "markers+text"]
    texts = [s for t in pts for s in t["text"]]
    tied = [int(v) for v in marginal(rec)["batch_limit_pages"] if v <= 512]
    assert len(tied) > 1  # the grid has several limits up to 512, all evaluated
    assert f"{min(tied)}–512" in texts  # one label for the group...
    assert not any(s in {str(v) for v in tied} for s in texts)  # ...not one drawn over another
