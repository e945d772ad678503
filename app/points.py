"""Points for ``foliotune predict``: read a points CSV strictly, validate points, name the culprit.

A points file is a CSV whose header row names parameters (DESIGN.md §2) and whose every other
non-blank line is one point. Reading is strict, because a silent misread gives exit 0 and wrong
numbers: every row has exactly the header's fields, no cell is empty (but ``folio_mix``, where
empty means one size, and ``folio_kb`` beside a ``folio_mix``), ``nan``/``inf`` are not numbers, a
column appears once, and a file with no data rows is refused. Columns left out of the header take
the profile's defaults (that is the only way to ask for a default).

Every refusal is a :class:`models.errors.UserError` whose message names the place: for a file
``FILE: row N, column C: why`` (N is the line of the file, the header being row 1), for the
single-point options ``--option: why``.
"""

from __future__ import annotations

import csv
import io
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from models.errors import UserError
from models.limits import montecarlo_refusal, montecarlo_windows
from models.params import (
    INTEGER_PARAMETERS,
    NUMERIC_PARAMETERS,
    PARAMETERS,
    PointArrays,
    check_points,
    complete_points,
)
from models.profiles import get_profile, profile_names

#: ``where(i, column)`` -> the place of point ``i`` (and its column, when known) in messages.
Where = Callable[[int, str | None], str]


@dataclass(frozen=True)
class Points:
    """Points as text cells (one column per parameter given) and how messages name each point."""

    table: pd.DataFrame
    where: Where
    name: str  # the file, or "options"


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        row = data.count(b"\n", 0, exc.start) + 1
        raise UserError(f"{path}: row {row}: not UTF-8 text (byte 0x{data[exc.start]:02x})") from None


def read_points_csv(path: Path) -> Points:
    """Read a points CSV strictly (see the module docstring); cells stay text, stripped.

    Raises
    ------
    UserError
        One line naming the file and, where it applies, the row and column.
    """
    try:
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            raise UserError(f"{path}: is a folder, not a points CSV file")
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            raise UserError(f"{path}: is a device, not a points CSV file")  # /dev/zero would never end
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None
    text = _decode(path, data)
    if not text.strip():
        raise UserError(f"{path}: empty file (expected a header row with parameter columns)")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True, skipinitialspace=True)
    header: list[str] | None = None
    rows: list[list[str]] = []
    lines: list[int] = []
    start = 1
    try:
        for fields in reader:
            line, start = start, reader.line_num + 1
            if len(fields) <= 1 and not "".join(fields).strip():
                continue  # a blank line is no point (nor a point of defaults)
            cells = [f.strip() for f in fields]
            if header is None:
                _check_header(path, line, cells)
                header = cells
                continue
            if len(cells) > len(header):
                raise UserError(
                    f"{path}: row {line}, column {len(header) + 1}: a field beyond the header's "
                    f"{len(header)} columns ({', '.join(header)})"
                )
            if len(cells) < len(header):
                raise UserError(
                    f"{path}: row {line}, column {header[len(cells)]}: missing (the row has {len(cells)} of "
                    f"the header's {len(header)} fields; leave a column out of the header to take defaults)"
                )
            for col, cell in zip(header, cells, strict=True):
                if not cell and not _may_be_empty(col, header, cells):
                    raise UserError(
                        f"{path}: row {line}, column {col}: empty "
                        "(leave the column out of the header to take the profile's default)"
                    )
            rows.append(cells)
            lines.append(line)
    except csv.Error as exc:
        raise UserError(f"{path}: row {reader.line_num}: not a readable CSV ({exc})") from None
    assert header is not None
    if not rows:
        raise UserError(f"{path}: no data rows (after the header row, each row is one point)")
    row_of = np.array(lines, dtype=np.int64)

    def where(i: int, col: str | None) -> str:
        return f"{path}: row {row_of[i]}" + (f", column {col}" if col else "")

    return Points(pd.DataFrame(rows, columns=header, dtype=object), where, str(path))


def _may_be_empty(col: str, header: list[str], cells: list[str]) -> bool:
    """An empty cell that is a value: ``folio_mix`` (one size), ``folio_kb`` beside a ``folio_mix``."""
    if col == "folio_mix":
        return True
    return col == "folio_kb" and "folio_mix" in header and bool(cells[header.index("folio_mix")])


def _check_header(path: Path, line: int, names: list[str]) -> None:
    for k, name in enumerate(names, start=1):
        if not name:
            raise UserError(f"{path}: row {line}, column {k}: empty column name")
        if name not in PARAMETERS:
            raise UserError(
                f"{path}: row {line}, column {k}: unknown column {name!r} (parameters are: {', '.join(PARAMETERS)})"
            )
        if name in names[: k - 1]:
            raise UserError(
                f"{path}: row {line}, column {k}: column {name!r} appears twice "
                f"(columns {names.index(name) + 1} and {k})"
            )


def option_points(values: Mapping[str, str | None], batch_limits: str | None) -> Points:
    """The single-point options as points; ``--batch-limit-pages`` may be a comma list (one point each).

    Messages name the option (``--folio-kb: ...``), and for a list the value (``value 2 of 3``).
    """
    given = {k: v.strip() for k, v in values.items() if v is not None}
    for name, v in given.items():
        if not v and name != "folio_mix":
            raise UserError(
                f"--{name.replace('_', '-')}: empty (leave the option out to take the profile's default)"
            )
    limits = [s.strip() for s in batch_limits.split(",")] if batch_limits is not None else [None]
    for k, lim in enumerate(limits):
        if lim == "":
            raise UserError(f"--batch-limit-pages: value {k + 1} of {len(limits)} is empty")
    rows = [given | ({"batch_limit_pages": lim} if lim is not None else {}) for lim in limits]
    table = pd.DataFrame(rows, dtype=object) if given or batch_limits is not None else pd.DataFrame(index=[0])

    def where(i: int, col: str | None) -> str:
        if col is None:
            return "options"
        opt = "--" + col.replace("_", "-")
        if col == "batch_limit_pages" and len(limits) > 1:
            return f"{opt} value {i + 1} of {len(limits)} ({limits[i]!r})"
        return opt

    return Points(table, where, "options")


_REASON = re.compile(r"column (\w+): (.*)", re.DOTALL)


def validate_points(points: Points) -> tuple[pd.DataFrame, PointArrays]:
    """Complete and validate points; return them typed (numbers as numbers) plus their arrays.

    The first invalid point raises one :class:`UserError` naming its place (``points.where``).
    """
    table = points.table
    if "profile" in table.columns:
        known = profile_names()
        unknown = ~table["profile"].isin(known).to_numpy()
        if unknown.any():
            i = int(np.flatnonzero(unknown)[0])
            raise UserError(
                f"{points.where(i, 'profile')}: unknown profile {table['profile'].iat[i]!r} "
                f"(known: {', '.join(known)})"
            )
    full = complete_points(table.reset_index(drop=True))
    arrays, reasons = check_points(full)
    bad = np.flatnonzero(reasons != "")
    if len(bad):
        i = int(bad[0])
        m = _REASON.fullmatch(str(reasons[i]))
        col, why = (m.group(1), m.group(2)) if m else (None, str(reasons[i]))
        more = f" ({len(bad) - 1} more invalid points)" if len(bad) > 1 else ""
        raise UserError(f"{points.where(i, col)}: {why}{more}")
    for col in NUMERIC_PARAMETERS:  # a cell check_points let pass unread (folio_kb beside a mix)
        text = full[col]
        given = (~text.isna() & (text.astype(str).str.strip() != "")).to_numpy()
        unread = given & ~np.isfinite(pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64))
        if unread.any():
            i = int(np.flatnonzero(unread)[0])
            raise UserError(f"{points.where(i, col)}: not a number ({text.iat[i]!r})")
    return _typed(full), arrays


def _typed(full: pd.DataFrame) -> pd.DataFrame:
    """Valid points with numeric columns as numbers (integers as int64 where they fit)."""
    out = full.copy()
    for col in NUMERIC_PARAMETERS:
        v = pd.to_numeric(out[col]).astype(np.float64)
        if col in INTEGER_PARAMETERS and bool((v.abs() < 2.0**63).all()):
            out[col] = v.astype(np.int64)
        else:
            out[col] = v
    for col in ("copy_engine", "mode"):  # read trimmed and case-insensitive: written as known
        out[col] = out[col].astype(str).str.strip().str.lower()
    return out


def refuse_folio_mix(points: Points, typed: pd.DataFrame) -> None:
    """The regression model is fitted on one folio size per point: refuse a point with a mix."""
    mix = (typed["folio_mix"].astype(str).str.strip() != "").to_numpy()
    if mix.any():
        raise UserError(
            f"{points.where(int(np.flatnonzero(mix)[0]), 'folio_mix')}: the regression model takes one folio "
            "size (folio_kb); mixes go to --model analytic or montecarlo"
        )


def check_montecarlo(points: Points, arrays: PointArrays, replicas: int) -> None:
    """Refuse Monte Carlo work that does not fit (:mod:`models.limits`), naming the point or --replicas."""
    page_kb = np.array([get_profile(p).page_kb for p in profile_names()], dtype=np.float64)[
        arrays.profile_index
    ]
    windows = montecarlo_windows(arrays.n_folios, arrays.mix_kb, arrays.mix_folios, arrays.mix_len, page_kb)
    refusal = montecarlo_refusal(arrays.n_folios, windows, replicas)
    if refusal is not None:
        i, why = refusal
        place = points.where(i, "n_folios") if i >= 0 else points.name
        if i < 0 and points.name == "options":
            place = "--replicas" if "replicas" in why else "options"
        raise UserError(f"{place}: {why}")


__all__ = [
    "Points",
    "check_montecarlo",
    "option_points",
    "read_points_csv",
    "refuse_folio_mix",
    "validate_points",
]
