"""Recommendation exports (DESIGN.md §4, contract): JSON, CSV, YAML, a kernel snippet and a patch.

Exports are built in memory and hold no timestamps, so the same inputs give byte-identical files
from the CLI and from the app. Every export states that the p99 stall is a model assumption.

The patch (``--format patch``) is a unified diff of ``mm/migrate.c`` that replaces the values of the
``NR_MAX_BATCHED_MIGRATION`` definition, keeping its ``CONFIG_TRANSPARENT_HUGEPAGE`` form, with the
provenance comment above it. :data:`MIGRATE_C_CONTEXT` is the definition with the three lines either
side as they read in Linux 6.3 and later (checked in: the 6.3 merge-window series of Huang Ying,
``migrate_pages: batch flushing TLB``; a torvalds/linux ``mm/migrate.c`` with ``new_folio_t`` (6.6+);
one with ``try_split_folio(..., enum migrate_mode mode)`` (later)); the hunk's line number is only a
hint, ``git apply`` finds the context at any offset.

References
----------
mm/migrate.c, ``NR_MAX_BATCHED_MIGRATION`` (Linux 6.3+, commit "migrate_pages: restrict number of
pages to migrate in batch"); before 6.3 there is no batching and no such constant.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import yaml

from app.recommend import (
    NOT_DISTINGUISHABLE,
    OPTIONAL_WORKLOAD,
    STALL_ASSUMPTION,
    WORKLOAD,
    Choice,
    Interval,
    Recommendation,
)
from models.errors import UserError

FORMATS: tuple[str, ...] = ("json", "csv", "yaml", "kernel", "patch")
EXPORT_FORMAT = "foliotune-recommendation"
EXPORT_VERSION = 2
#: The definition and its context, Linux 6.3+ (tabs as in the source).
MIGRATE_C_BEFORE: tuple[str, ...] = ("\treturn rc;", "}", "")
MIGRATE_C_DEFINITION: tuple[str, ...] = (
    "#ifdef CONFIG_TRANSPARENT_HUGEPAGE",
    "#define NR_MAX_BATCHED_MIGRATION\tHPAGE_PMD_NR",
    "#else",
    "#define NR_MAX_BATCHED_MIGRATION\t512",
    "#endif",
)
MIGRATE_C_AFTER: tuple[str, ...] = (
    "#define NR_MAX_MIGRATE_PAGES_RETRY\t10",
    "#define NR_MAX_MIGRATE_ASYNC_RETRY\t3",
    "#define NR_MAX_MIGRATE_SYNC_RETRY\t\t\t\t\t\\",
)
MIGRATE_C_CONTEXT: tuple[str, ...] = (*MIGRATE_C_BEFORE, *MIGRATE_C_DEFINITION, *MIGRATE_C_AFTER)
#: Line of ``#ifdef CONFIG_TRANSPARENT_HUGEPAGE`` above the definition in the torvalds/linux text read
#: (a hint for the hunk header; it moves between versions).
MIGRATE_C_LINE_HINT = 1648
FIRST_BATCHED_KERNEL = (6, 3)
ENGINE_SOURCE = (
    "copy engine: mainline Linux (6.3 to now) copies with the CPU only and has no knob for it; "
    "mt-cpu/dma/dsa copy comes from patch series not merged upstream: Shivank Garg, "
    "'[PATCH RFC V2 0/9] Enhancements to Page Migration with Multi-threading and Batch Offloading "
    "to DMA' (2025-03-19), RFC v4 (2026-03-09) and V5 (2026-05); apply one of them to use it"
)


def _num(x: float | None, digits: int = 6) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return float(f"{x:.{digits}g}")


def _iv(x: Interval | None, digits: int = 5) -> dict[str, float | None] | None:
    if x is None:
        return None
    return {"value": _num(x[0], digits), "lo": _num(x[1], digits), "hi": _num(x[2], digits)}


def workload_clean(w: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in (*WORKLOAD, *OPTIONAL_WORKLOAD):
        if k not in w or w[k] is None or w[k] == "":
            continue
        v = w[k]
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float) and v.is_integer() and k not in ("busy_prob", "access_rate_hz"):
            v = int(v)
        out[k] = v
    return out


def _record(rec: Recommendation, rank: int, c: Choice) -> dict[str, Any]:
    first = rank == 1
    g = c.gain
    return {
        "rank": rank,
        "recommended": first and rec.feasible,
        "profile": rec.profile,
        "workload": workload_clean(rec.workload)
        if not rec.workloads
        else [{**w, "workload": workload_clean(w["workload"])} for w in rec.workloads],
        "batch_limit_pages": c.batch_limit_pages,
        "copy_engine": c.copy_engine,
        "copy_threads": c.copy_threads,
        "pages_per_s": _num(c.pages_per_s),
        "pages_per_s_lo": _num(c.pages_per_s_lo),
        "pages_per_s_hi": _num(c.pages_per_s_hi),
        "stall_p99_s": _num(c.stall_p99_s),
        "stall_p99_s_lo": _num(c.stall_p99_s_lo),
        "stall_p99_s_hi": _num(c.stall_p99_s_hi),
        "stall_interval_crosses_budget": c.stall_crosses_budget,
        "cpu_time_s": _num(c.cpu_time_s),
        "remote_cpu_time_s": _num(c.remote_cpu_time_s),
        "gain_over_default": _num(g[0], 5) if g else None,
        "gain_lo": _num(g[1], 5) if g else None,
        "gain_hi": _num(g[2], 5) if g else None,
        "gain_from_batch_limit": _iv(c.gain_from_batch_limit),
        "gain_from_engine": _iv(rec.gain_from_engine) if first else None,
        "engine_share": _num(rec.engine_share, 4) if first else None,
        "distinguishable_from_default": None if g is None else not (g[1] <= 1.0 <= g[2]),
        "default": rec.default_choice,
        "default_pages_per_s": _num(rec.baseline.pages_per_s) if rec.baseline is not None else None,
        "constraint": {k: _num(v) for k, v in rec.constraints.as_dict().items()},
        "binding_constraint": list(rec.binding) if first else [],
        "meets_constraints": not c.violates,
        "interval": "90 %: Monte Carlo standard errors"
        + (", widened to the regression prediction interval" if rec.regression_pages_per_s else ""),
        "stall_model": STALL_ASSUMPTION,
        "regression_note": rec.regression_note if first else "",
        "why": rec.why if first else "",
        "provenance": rec.provenance.as_dict(),
    }


def records(rec: Recommendation) -> list[dict[str, Any]]:
    """Export records (DESIGN.md §4): rank 1 is the recommendation, then the runners-up."""
    return [_record(rec, i, c) for i, c in enumerate([rec.choice, *rec.runners_up], start=1)]


def _flat(record: Mapping[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for k, v in record.items():
        if k == "workload" and isinstance(v, list):
            flat[k] = json.dumps(v, sort_keys=True, ensure_ascii=False)
        elif isinstance(v, Mapping) and k in ("gain_from_batch_limit", "gain_from_engine"):
            flat[k] = v.get("value")
            flat[f"{k}_lo"], flat[f"{k}_hi"] = v.get("lo"), v.get("hi")
        elif v is None and k in ("gain_from_batch_limit", "gain_from_engine"):
            flat[k] = flat[f"{k}_lo"] = flat[f"{k}_hi"] = None
        elif isinstance(v, Mapping):
            for k2, v2 in v.items():
                flat[f"{k}.{k2}" if k in ("constraint", "default", "provenance") else k2] = v2
        elif isinstance(v, list):
            flat[k] = "+".join(map(str, v))
        else:
            flat[k] = v
    return flat


def _x(iv: Interval | None) -> str:
    if iv is None:
        return "not available (the default is not among the candidates)"
    s = f"{iv[0]:.3f}x (90% interval {iv[1]:.3f}x .. {iv[2]:.3f}x)"
    if iv[1] <= 1.0 <= iv[2]:
        s += f", {NOT_DISTINGUISHABLE}"
    return s


def workload_text(rec: Recommendation, *, ascii_only: bool) -> str:
    """The workload of ``rec`` on one line: its ``name=value`` pairs, or each weighted workload with
    its share and stall budget. ``ascii_only`` (C comments): ``%``, ``<=``, ``us`` for `` %``, ``≤``, ``µs``."""
    pct, le, us = ("%", "<=", "us") if ascii_only else (" %", "≤", "µs")

    def pairs(workload: Mapping[str, Any]) -> str:
        return ", ".join(f"{k}={v}" for k, v in workload_clean(workload).items())

    if not rec.workloads:
        return pairs(rec.workload)
    return "; ".join(
        f"{w['weight'] * 100:.0f}{pct} {pairs(w['workload'])}"
        f" (p99 stall {le} {w['constraint']['stall_p99_s'] * 1e6:g} {us})"
        for w in rec.workloads
    )


def comment_lines(rec: Recommendation, kernel: str | None = None) -> list[str]:
    """The provenance comment (C comment lines) shared by the snippet and the patch."""
    c = rec.choice
    wl = workload_text(rec, ascii_only=True)
    limits = f"p99 stall <= {rec.constraints.stall_p99_s * 1e6:g} us"
    if rec.constraints.cpu_time_s is not None:
        limits += f", CPU time <= {rec.constraints.cpu_time_s * 1e3:g} ms"
    if rec.constraints.remote_cpu_time_s is not None:
        limits += f", remote IPI CPU time <= {rec.constraints.remote_cpu_time_s * 1e3:g} ms"
    p = rec.provenance
    src = f"sweep {p.sweep_spec_hash}, data {p.data_hash[:16]}" if p.source == "sweep" else p.source
    dl = rec.default_limit_pages
    lines = [
        "/*",
        " * foliotune recommendation for mm/migrate.c" + (f" (Linux {kernel})" if kernel else ""),
        f" * machine:  {rec.profile} (kernel default {dl} base pages = HPAGE_PMD_NR)",
        f" * workload: {wl}",
        f" * budget:   {limits}",
        f" * choice:   batch limit {c.batch_limit_pages} base pages, copy engine {c.copy_engine}, "
        f"{c.copy_threads} thread(s)",
        f" * predicted: {c.pages_per_s:.4g} pages/s, p99 stall {c.stall_p99_s * 1e6:.1f} us "
        f"(90% {c.stall_p99_s_lo * 1e6:.1f} .. {c.stall_p99_s_hi * 1e6:.1f} us)",
        f" * gain over the default ({dl} pages, cpu copy): {_x(c.gain)}",
        f" * gain from the batch limit alone ({c.batch_limit_pages} vs {dl} pages, "
        f"{c.copy_engine} x{c.copy_threads}): {_x(c.gain_from_batch_limit)}",
        f" * gain from the copy engine ({c.copy_engine} x{c.copy_threads} vs cpu at {dl} pages): "
        f"{_x(rec.gain_from_engine)}",
        f" * binding:  {', '.join(rec.binding) or 'none'}",
        f" * provenance: {src}, model {p.model_version} ({p.results_model})",
        f" * stall model: {STALL_ASSUMPTION}",
        f" * {ENGINE_SOURCE}",
    ]
    if c.stall_crosses_budget:
        lines.append(" * WARNING: the p99 stall interval crosses the budget")
    if not rec.feasible:
        lines.append(" * WARNING: no choice meets the budget; this is the lowest-stall choice")
    lines.append(" */")
    return lines


def kernel_snippet(rec: Recommendation) -> str:
    """A ``#define NR_MAX_BATCHED_MIGRATION`` line with a comment stating what it is based on."""
    return "\n".join(
        [*comment_lines(rec), f"#define NR_MAX_BATCHED_MIGRATION {rec.choice.batch_limit_pages}", ""]
    )


def parse_kernel(kernel: str) -> tuple[int, int]:
    try:
        major, minor = (int(x) for x in str(kernel).split(".")[:2])
    except ValueError:
        raise UserError(f"kernel {kernel!r}: expected MAJOR.MINOR, e.g. 6.8") from None
    return major, minor


def kernel_patch(rec: Recommendation, kernel: str) -> str:
    """A unified diff of ``mm/migrate.c`` for Linux ``kernel`` (6.3+) setting the batch limit.

    Both branches of the ``CONFIG_TRANSPARENT_HUGEPAGE`` definition get the recommended value; when
    it is the profile's default the THP branch keeps ``HPAGE_PMD_NR`` and only the comment is added.
    """
    if parse_kernel(kernel) < FIRST_BATCHED_KERNEL:
        raise UserError(
            f"kernel {kernel}: mm/migrate.c has no NR_MAX_BATCHED_MIGRATION before Linux 6.3 (no batching)"
        )
    n = rec.choice.batch_limit_pages
    thp = "HPAGE_PMD_NR" if n == rec.default_limit_pages else str(n)
    new_def = [
        "#ifdef CONFIG_TRANSPARENT_HUGEPAGE",
        f"#define NR_MAX_BATCHED_MIGRATION\t{thp}",
        "#else",
        f"#define NR_MAX_BATCHED_MIGRATION\t{n}",
        "#endif",
    ]
    body: list[str] = [" " + s for s in MIGRATE_C_BEFORE]
    body += ["+" + s for s in comment_lines(rec, kernel)]
    for old, new in zip(MIGRATE_C_DEFINITION, new_def, strict=True):
        body += [" " + old] if old == new else ["-" + old, "+" + new]
    body += [" " + s for s in MIGRATE_C_AFTER]
    old_n = sum(1 for b in body if b[0] in " -")
    new_n = sum(1 for b in body if b[0] in " +")
    start = MIGRATE_C_LINE_HINT - len(MIGRATE_C_BEFORE)
    head = [
        "--- a/mm/migrate.c",
        "+++ b/mm/migrate.c",
        f"@@ -{start},{old_n} +{start},{new_n} @@",
    ]
    return "\n".join([*head, *body, ""])


def export_bytes(rec: Recommendation, fmt: str, kernel: str | None = None) -> bytes:
    """The export in ``fmt`` (json, csv, yaml, kernel or patch), built in memory."""
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    if fmt == "kernel":
        return kernel_snippet(rec).encode()
    if fmt == "patch":
        return kernel_patch(rec, kernel or str(rec.workload.get("kernel") or "6.8")).encode()
    recs = records(rec)
    doc = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "stall_model": STALL_ASSUMPTION,
        "recommendations": recs,
    }
    if fmt == "json":
        return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()
    if fmt == "yaml":
        return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True).encode()
    rows = [_flat(r) for r in recs]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: "" if v is None else v for k, v in r.items()})
    return buf.getvalue().encode()


def export_filename(rec: Recommendation, fmt: str) -> str:
    ext = {"json": "json", "csv": "csv", "yaml": "yaml", "kernel": "h", "patch": "patch"}[fmt]
    return f"foliotune-recommendation-{rec.profile}.{ext}"


__all__ = [
    "ENGINE_SOURCE",
    "FORMATS",
    "MIGRATE_C_CONTEXT",
    "export_bytes",
    "export_filename",
    "kernel_patch",
    "kernel_snippet",
    "records",
    "workload_clean",
    "workload_text",
]
