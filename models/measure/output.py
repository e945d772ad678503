"""Rows in the measurement schema and the files ``foliotune measure`` writes."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from models.errors import UserError
from models.fileio import atomic_write
from models.measure.profile import local_profile_dict
from models.measure.records import Report
from models.measure.topology import kernel_release
from models.profiles import dump_profile_toml, load_profile_file, profile_dirs


def source_id(rep: Report) -> str:
    host = "".join(ch if ch.isalnum() or ch == "-" else "-" for ch in rep.topology.hostname.lower())
    return f"measure-{host}-{rep.date}"


def results_frame(rep: Report, profile_name: str = "local", command: str = "foliotune measure") -> Any:
    """Rows of the measurement schema (``models/data/MEASUREMENTS.md``) for the results kept in it."""
    # pandas and the measurement schema (~0.5 s with the model stack) load only when results are
    # written: `foliotune measure` imports this package before it measures
    import pandas as pd

    from models.measurements import COLUMNS

    topo = rep.topology
    trust = "C" if topo.virtual_machine else "A"
    machine = (
        f"{topo.cpu_model}, {topo.nproc} CPUs, {topo.sockets} socket(s), "
        f"{len(topo.memory_nodes)} NUMA node(s)" + (", virtual machine" if topo.virtual_machine else "")
    )
    rows = []
    for r in rep.results:
        if not r.in_schema or not r.value > 0:  # 0 (e.g. a remote part lost in noise): JSON report only
            continue
        row: dict[str, Any] = dict.fromkeys(COLUMNS, None)
        row.update(
            source=source_id(rep),
            reference=command,
            machine=machine,
            profile=profile_name,
            date=rep.date,
            trust=trust,
            variant=r.variant,
            metric=r.metric,
            value=r.value,
            sd=r.sd,
            unit=r.unit,
            notes=f"{r.notes}; kernel {topo.kernel}",
            kernel=kernel_release(topo.kernel),
        )
        row.update(r.params)
        row["x_repeats"] = r.repeats
        rows.append(row)
    df = pd.DataFrame(rows, columns=[*COLUMNS, "x_repeats"])
    for c in ("folio_kb", "n_folios", "batch_limit_pages", "copy_threads", "target_cpus", "mapcount"):
        df[c] = df[c].astype("Int64")
    return df


def check_out_dir(out_dir: str | Path) -> Path:
    """Create ``out_dir`` if needed and make sure it is writable; a one-line UserError otherwise."""
    p = Path(out_dir).expanduser()
    try:
        p.mkdir(parents=True, exist_ok=True)
        probe = p / f".foliotune-write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"--out {out_dir}: cannot write there ({exc.strerror or exc})") from None
    return p


def write_outputs(
    rep: Report, out_dir: str | Path, profile_name: str = "local", command: str = "foliotune measure"
) -> dict[str, Path]:
    """Write ``<name>.toml`` (profile), ``measurements-<name>.csv`` (schema rows), ``measure-<name>.json``."""
    out = check_out_dir(out_dir)
    paths = {
        "profile": out / f"{profile_name}.toml",
        "measurements": out / f"measurements-{profile_name}.csv",
        "report": out / f"measure-{profile_name}.json",
    }
    text = dump_profile_toml(local_profile_dict(rep, profile_name))
    # refuse to publish a profile the loader would refuse
    atomic_write(paths["profile"], text, check=load_profile_file)
    results_frame(rep, profile_name, command).to_csv(paths["measurements"], index=False)
    raw = {
        "date": rep.date,
        "command": command,
        "wall_s": rep.wall_s,
        "timings_s": rep.timings_s,
        "topology": rep.topology.to_dict(),
        "settings": asdict(rep.settings),
        "derived": rep.derived,
        "skipped": rep.skipped,
        "results": [asdict(r) for r in rep.results],
    }
    paths["report"].write_text(json.dumps(raw, indent=1, default=str) + "\n")
    return paths


def write_kernel_outputs(
    krep: Any,
    topo: Any,
    paths: dict[str, Path],
    profile_name: str,
    command: str,
    date: str,
    source: str,
) -> dict[str, Any]:
    """Add the real-migration rows to the measurement CSV, fit the profile to them and rewrite it.

    Returns the residual table (per folio size) and the fitted fields, also written to the JSON report.
    """
    # pandas and the measurement schema (~0.5 s with the model stack) load only when results are
    # written: `foliotune measure` imports this package before it measures
    import pandas as pd

    from models.measure.kernel_fit import fit_local_profile, residual_table
    from models.measure.kernel_rows import kernel_rows

    rows = kernel_rows(krep, topo, profile=profile_name, source=source, date=date, command=command)
    if rows.empty:
        return {"rows": 0}
    old = pd.read_csv(paths["measurements"], dtype=str, keep_default_na=False)
    both = pd.concat([old, rows.astype(object).where(rows.notna(), "")], ignore_index=True)
    with profile_dirs(paths["profile"].parent):  # the measured profile, read from its file
        fit = fit_local_profile(
            rows,
            profile_name,
            kernel=kernel_release(krep.kernel),
            date=date,
            method=krep.method,
            n_calls=len(krep.calls),
        )
    atomic_write(paths["profile"], dump_profile_toml(fit.profile), check=load_profile_file)
    both.to_csv(paths["measurements"], index=False)
    table = residual_table(fit)
    extra = {
        "rows": len(rows),
        "fitted": fit.after,
        "residuals": table.to_dict(orient="records"),
        "residual_rows": fit.residuals.to_dict(orient="records"),
        "kernel_wall_s": krep.wall_s,
        "restored": krep.restored,
        "skipped": krep.skipped,
        "calls": [
            {
                "folio_kb": c.folio_kb,
                "target_cpus": c.target_cpus,
                "repeat": c.repeat,
                "duration_s": c.call.duration_s,
                "succeeded_pages": c.call.succeeded_pages,
                "failed_pages": c.call.failed_pages,
                "thp_succeeded": c.call.thp_succeeded,
                "thp_split": c.call.thp_split,
                "large_split": c.call.large_split,
                "mode": c.call.mode,
                "reason": c.call.reason,
                "flush_rounds": c.call.flush_rounds,
                "flush_ipis": c.call.flush_ipis,
                "flush_events": c.call.flush_events,
                "tlb_irqs": c.tlb_irqs,
                "folios_in_block": c.our_folios,
                "wall_s": c.wall_s,
            }
            for c in krep.calls
        ],
    }
    report = json.loads(paths["report"].read_text())
    report["kernel"] = extra
    paths["report"].write_text(json.dumps(report, indent=1, default=str) + "\n")
    return extra
