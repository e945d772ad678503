"""Fit the local profile's migration costs to this machine's real ``migrate_pages()`` calls.

``foliotune measure --kernel`` measures real migrations (``kernel_run``), writes them as rows
(``kernel_rows``), then calls :func:`models.calibrate.calibrate_profile` on the fastest call of each
configuration (``<method>-best`` rows; see ``kernel_rows`` for why) to fit the per-call, per-folio,
per-page, per-PTE and flush costs of the local profile. Fitted fields cite the real migrations.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from models.calibrate import calibrate_profile
from models.measurements import validate_table
from models.profiles import get_profile

#: The migration costs ``--kernel`` fits: per call, per folio, per page, per PTE (unmap and remap
#: of one mapping), the flush (local full flush, IPI send, the remote handler) and the copy (one
#: thread's bandwidth and fixed cost, and the memory ceiling: the user-space copy measured under other
#: load can sit below what the kernel's copy reaches).
KERNEL_FIELDS: tuple[str, ...] = (
    "call_setup_us",
    "folio_setup_us",
    "page_setup_ns",
    "unmap_per_mapping_us",
    "remap_per_mapping_us",
    "local_full_flush_us",
    "ipi_send_base_us",
    "ack_handler_full_us",
    "cpu_copy_gbps",
    "cpu_copy_fixed_ns",
    "mem_ceiling_gbps",
)
#: Metrics the fit uses (per call: throughput and time; flush rounds per call).
FIT_METRICS: tuple[str, ...] = ("bytes_per_s", "flush_rounds")


@dataclass
class KernelFit:
    profile: Any  # HardwareProfile
    fields: list[str]
    after: dict[str, float]
    residuals: pd.DataFrame  # folio_kb, target_cpus, metric, measured, predicted, error


def fit_local_profile(
    rows: pd.DataFrame, profile_name: str, *, kernel: str, date: str, method: str, n_calls: int
) -> KernelFit:
    """Calibrate ``profile_name`` (a known profile, e.g. inside ``models.profiles.profile_dirs``) to
    the ``*-best`` kernel rows; the fitted profile is returned, not registered."""
    data, _rep = validate_table(rows, "kernel rows", strict=True)
    best = data[data["variant"].str.contains("-best") & data["metric"].isin(FIT_METRICS)].reset_index(
        drop=True
    )
    base = get_profile(profile_name)
    fields = [f for f in KERNEL_FIELDS if base.values[f] > 0]
    cal = calibrate_profile(best, profile_name, fields=fields, name=profile_name, span=100.0, max_nfev=600)
    how = (
        f"measured: real migrate_pages() of Linux {kernel} on this machine, {date}; {n_calls} traced calls "
        f"({method}), fastest per configuration; fitted by foliotune calibrate (bounded least squares on "
        "log error of bytes/s and flush rounds)"
    )
    values = {f: cal.after[f] for f in fields}
    prof = base.with_values(profile_name, values, how)
    sources = dict(prof.sources)
    for f in fields:
        sources[f] = how
    prof = _with_sources(prof, sources, how)
    res = cal.rows.assign(predicted=cal.rows["pred_after"])
    res = res[["folio_kb", "target_cpus", "n_folios", "metric", "value", "predicted"]].rename(
        columns={"value": "measured"}
    )
    res["error"] = res["predicted"] / res["measured"] - 1.0
    return KernelFit(prof, fields, values, res.reset_index(drop=True))


def _with_sources(prof: Any, sources: dict[str, str], provenance: str) -> Any:
    return replace(prof, sources=MappingProxyType(sources), provenance=provenance)


def residual_table(fit: KernelFit) -> pd.DataFrame:
    """Per folio size: throughput error and flushes-per-folio error of the fitted model (best rows)."""
    r = fit.residuals
    out = []
    for kb in sorted(set(r["folio_kb"])):
        sel = r[r["folio_kb"] == kb]
        bps = sel[sel["metric"] == "bytes_per_s"]
        fl = sel[sel["metric"] == "flush_rounds"]
        out.append(
            {
                "folio_kb": int(kb),
                "throughput_error": float(np.mean(np.abs(bps["error"]))) if len(bps) else np.nan,
                "flush_per_folio_error": float(np.mean(np.abs(fl["error"]))) if len(fl) else np.nan,
                "measured_gbps": float(bps["measured"].mean() / 1e9) if len(bps) else np.nan,
                "predicted_gbps": float(bps["predicted"].mean() / 1e9) if len(bps) else np.nan,
                "measured_flush_per_folio": float((fl["measured"] / fl["n_folios"]).mean())
                if len(fl)
                else np.nan,
                "predicted_flush_per_folio": float((fl["predicted"] / fl["n_folios"]).mean())
                if len(fl)
                else np.nan,
            }
        )
    return pd.DataFrame(out)
