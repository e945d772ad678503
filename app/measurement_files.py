"""Measurement files beyond the shipped ones: their rows, and the profiles written beside them.

Used by ``foliotune fit|calibrate|validate|explore`` and the main job (library code: no CLI imports).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pandas as pd

from models.measurements import load_measurements
from models.profiles import ProfileError, load_profile_file, profile_names


def register_profiles_beside(measurements: list[Path]) -> None:
    """Profiles written beside measurement files (``foliotune measure --out DIR`` writes
    ``DIR/local.toml`` next to ``DIR/measurements-local.csv``) become known for this process (their
    folder joins ``FOLIOTUNE_PROFILE_PATH``), so local and imported rows are used without setting it."""
    known = set(profile_names())
    extra: list[str] = []
    for folder in sorted({Path(m).resolve().parent for m in measurements}):
        try:
            found = [load_profile_file(f) for f in sorted(folder.glob("*.toml"))]
        except ProfileError:
            continue  # a folder with a bad profile file is left alone (it would break the catalogue)
        new = [p for p in found if p.name not in known]
        if new:
            extra.append(str(folder))
            known |= {p.name for p in new}
            for p in new:
                print(f"profile {p.name!r} from {p.path or folder}", file=sys.stderr)
    if extra:
        old = os.environ.get("FOLIOTUNE_PROFILE_PATH", "")
        os.environ["FOLIOTUNE_PROFILE_PATH"] = ":".join([*extra, *([old] if old else [])])


def load_extra_measurements(measurements: list[Path]) -> pd.DataFrame | None:
    """Rows of measurement files beyond the shipped ones (validated; bad rows skipped and reported,
    profiles written beside them made known), or None when no file is given."""
    if not measurements:
        return None
    return load_measurement_files(measurements, strict=False, no_shipped=True)


def load_measurement_files(measurements: list[Path] | None, strict: bool, no_shipped: bool) -> pd.DataFrame:
    """The rows of ``measurements`` (and the shipped ones unless ``no_shipped``), validated; with
    ``strict`` a bad row is an error, else it is skipped and each file's report goes to stderr."""
    register_profiles_beside(measurements or [])
    data, reports = load_measurements(measurements or [], strict=strict, include_shipped=not no_shipped)
    for r in reports:
        if r.n_skipped or r.path != reports[0].path or no_shipped:
            print(r.summary(), file=sys.stderr)
    return data


__all__ = ["load_extra_measurements", "load_measurement_files", "register_profiles_beside"]
