"""Sweep specs: a TOML file parsed into a frozen, validated :class:`SweepSpec`.

Format (the minimal form is a contract, DESIGN.md §3)::

    [sweep]
    seed = 7
    models = ["analytic", "montecarlo"]
    replicas = 64            # Monte Carlo replicas per point
    sampler = "grid"         # or "lhs" / "sobol" (then n = 4096 and ranges instead of lists)
    # n = 4096               # number of points (lhs / sobol only)
    # out = "results/zen3"   # default output folder (--out wins)
    # name = "zen3 batch"    # free text
    [fixed]
    profile = "epyc-zen3-2s"
    [axes]
    batch_limit_pages = [1, 16, 64, 256, 512, 1024, 4096]
    folio_kb = { log2_start = 2, log2_stop = 11 }       # 4, 8, ..., 2048
    n_folios = { start = 512, stop = 65536, num = 8, log = true }
    busy_prob = { start = 0.0, stop = 0.2, num = 5 }
    copy_engine = ["cpu", "mt-cpu", "dma"]

A union of grids (grid sampler only): ``[[parts]]`` tables, each with its own ``fixed`` values and
``axes``, added to the common ones; the sweep is part 1's grid, then part 2's, and so on (inside a
part the common axes vary slowest). A parameter is given in one place: common, or in parts. This is
how a sweep crosses each profile only with what it can run::

    [axes]
    batch_limit_pages = [1, 64, 512, 4096]
    [[parts]]
    fixed = { copy_engine = "dma" }
    axes = { profile = ["epyc-zen3-2s"], copy_threads = [1, 4] }
    [[parts]]
    fixed = { profile = "spr-dsa-2s", copy_engine = "dsa" }
    axes = { copy_threads = [1, 4] }

Axis forms:

* a list of values;
* ``{ start, stop, num }`` — ``num`` evenly spaced values, both ends included (``log = true``:
  geometric spacing);
* ``{ start, stop, step }`` — ``start, start+step, ...`` up to and including ``stop``;
* ``{ log2_start, log2_stop [, log2_step] }`` — powers of two ``2**log2_start ... 2**log2_stop``.

With ``sampler = "lhs"`` or ``"sobol"`` every axis is one dimension of the ``scipy.stats.qmc`` design:
a list (or one of the discrete forms above) is sampled as a categorical choice; ``{ start, stop }``
without ``num``/``step`` is a continuous interval (``log = true``: log-uniform); integer parameters are
rounded to the nearest integer.

Errors a user can fix are :class:`SpecError` (a :class:`~models.errors.UserError`) with one line that
names the file and the key. Values that are wrong whatever the other parameters (a folio size that is
not a power of two, a negative count, an unknown engine or profile) are spec errors; combinations that
a particular profile cannot run (an engine it lacks, more target CPUs than it has, more copy threads
than the engine allows) are *infeasible points*: they are kept as rows with NaN outputs and a reason in
the ``infeasible`` column, counted and reported.
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from models.errors import UserError
from models.evaluate import MODELS
from models.params import INTEGER_PARAMETERS, PARAMETERS, STRING_PARAMETERS, check_value
from models.profiles import profile_names

SAMPLERS: tuple[str, ...] = ("grid", "lhs", "sobol")
SWEEP_KEYS: tuple[str, ...] = ("seed", "models", "replicas", "sampler", "n", "out", "name")
TOP_KEYS: tuple[str, ...] = ("sweep", "fixed", "axes", "parts")
PART_KEYS: tuple[str, ...] = ("fixed", "axes")
MAX_PARTS = 1000
RANGE_KEYS: tuple[str, ...] = ("start", "stop", "num", "step", "log", "log2_start", "log2_stop", "log2_step")
MAX_AXIS_VALUES = 1_000_000
MAX_SAMPLED_POINTS = 1 << 30  # scipy's Sobol generator is limited to 2**30 points
MAX_LHS_POINTS = 2_000_000  # a Latin hypercube is built whole (per worker); beyond this use sobol
MAX_REPLICAS = 1_000_000
MAX_GRID_POINTS = 2**53  # point indices are int64; a grid this size would take centuries anyway
#: Version of the spec semantics; part of the spec hash.
SPEC_FORMAT = 1


class SpecError(UserError):
    """A sweep spec that cannot be used; the one-line message names the file and the key."""


@dataclass(frozen=True)
class Axis:
    """One swept parameter.

    ``values`` holds the discrete values (grid axes and categorical sampled axes). A continuous
    sampled axis has ``values == ()`` and an interval ``low``..``high`` (``log``: log-uniform).
    """

    name: str
    values: tuple[Any, ...] = ()
    low: float = 0.0
    high: float = 0.0
    log: bool = False

    @property
    def continuous(self) -> bool:
        return not self.values

    def to_json(self) -> dict[str, Any]:
        if self.continuous:
            return {"name": self.name, "low": self.low, "high": self.high, "log": self.log}
        return {"name": self.name, "values": list(self.values)}


@dataclass(frozen=True)
class Part:
    """One grid of a union: its own fixed values and axes, added to the spec's common ones."""

    fixed: tuple[tuple[str, Any], ...]
    axes: tuple[Axis, ...]

    @property
    def n_points(self) -> int:
        return math.prod(len(a.values) for a in self.axes)

    def to_json(self) -> dict[str, Any]:
        return {"fixed": {k: v for k, v in self.fixed}, "axes": [a.to_json() for a in self.axes]}


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep. Build it with :func:`load_spec` or :func:`spec_from_dict`."""

    seed: int
    models: tuple[str, ...]
    replicas: int
    sampler: str
    n: int  # number of points for lhs/sobol; 0 for grid
    fixed: tuple[tuple[str, Any], ...]
    axes: tuple[Axis, ...]
    out: str | None = None
    name: str = ""
    source: str = "<spec>"
    parts: tuple[Part, ...] = ()  # a union of grids (grid sampler only); () = one grid

    @property
    def n_points(self) -> int:
        """Number of points (rows per model)."""
        if self.sampler == "grid":
            common = math.prod(len(a.values) for a in self.axes)
            return common * (sum(p.n_points for p in self.parts) if self.parts else 1)
        return self.n

    def grids(self) -> tuple[tuple[int, SweepSpec], ...]:
        """The spec as plain grids without parts, each with the index of its first point.

        A spec without parts is its own single grid. Part *k*'s points follow part *k-1*'s; inside a
        part the common axes come first (they vary slowest), then the part's own axes.
        """
        if not self.parts:
            return ((0, self),)
        order = {p: i for i, p in enumerate(_parameters())}
        out: list[tuple[int, SweepSpec]] = []
        offset = 0
        for part in self.parts:
            fixed = tuple(sorted(self.fixed + part.fixed, key=lambda kv: order[kv[0]]))
            g = replace(self, fixed=fixed, axes=self.axes + part.axes, parts=())
            out.append((offset, g))
            offset += g.n_points
        return tuple(out)

    @property
    def n_rows(self) -> int:
        """Rows of the result dataset: one per point and model."""
        return self.n_points * len(self.models)

    def canonical(self) -> dict[str, Any]:
        """Everything that determines the results, as plain JSON data (the hash covers exactly this)."""
        return {
            "format": SPEC_FORMAT,
            "seed": self.seed,
            "models": list(self.models),
            "replicas": self.replicas,
            "sampler": self.sampler,
            "n": self.n,
            "fixed": {k: v for k, v in self.fixed},
            "axes": [a.to_json() for a in self.axes],
        } | ({"parts": [p.to_json() for p in self.parts]} if self.parts else {})

    @property
    def hash(self) -> str:
        """SHA-256 (hex, first 16 digits) of :meth:`canonical`; ``out`` and ``name`` are not part of it."""
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _parameters() -> tuple[str, ...]:
    return tuple(PARAMETERS)


# --------------------------------------------------------------------------------------------------
# parsing


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a spec file; every problem is a one-line :class:`SpecError`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{p}: no such spec file") from None
    except IsADirectoryError:
        raise SpecError(f"{p}: is a folder, not a spec file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{p}: cannot read spec file ({_one_line(exc)})") from None
    return spec_from_toml(text, source=str(p))


def spec_from_toml(text: str, source: str = "<spec>") -> SweepSpec:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{source}: not valid TOML ({_one_line(exc)})") from None
    return spec_from_dict(data, source=source)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _printable(name: str) -> str:
    """A name from the spec as one line: characters that do not print (a newline in a TOML key)
    are shown escaped, so an error stays one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)


def spec_from_dict(data: Mapping[str, Any], source: str = "<spec>") -> SweepSpec:
    """Validate a parsed spec (the TOML document as a dict)."""

    def err(key: str, message: str) -> SpecError:
        return SpecError(f"{source}: {_printable(key)}: {message}")

    if not isinstance(data, Mapping):
        raise SpecError(f"{source}: a spec must be a TOML document")
    for key in data:
        if key not in TOP_KEYS:
            raise err(str(key), f"unknown section (known: {', '.join(TOP_KEYS)})")
    sweep = data.get("sweep")
    if sweep is None:
        raise err("sweep", "missing section [sweep]")
    for section in ("sweep", "fixed", "axes"):
        if section in data and not isinstance(data[section], Mapping):
            raise err(section, "must be a table [" + section + "]")
    for key in sweep:
        if key not in SWEEP_KEYS:
            raise err(f"sweep.{key}", f"unknown key (known: {', '.join(SWEEP_KEYS)})")

    seed = sweep.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or not (0 <= seed < 2**63):
        raise err("sweep.seed", "must be an integer between 0 and 2**63-1")

    models_raw = sweep.get("models", ["analytic"])
    if isinstance(models_raw, str):
        models_raw = [models_raw]
    if not isinstance(models_raw, list) or not models_raw:
        raise err("sweep.models", f"must be a non-empty list of model names ({', '.join(MODELS)})")
    for m in models_raw:
        if m not in MODELS:
            raise err("sweep.models", f"unknown model {m!r} (known: {', '.join(MODELS)})")
    if len(set(models_raw)) != len(models_raw):
        raise err("sweep.models", "a model is listed twice")

    replicas = sweep.get("replicas", 64)
    if not isinstance(replicas, int) or isinstance(replicas, bool) or not (1 <= replicas <= MAX_REPLICAS):
        raise err("sweep.replicas", f"must be an integer between 1 and {MAX_REPLICAS}")

    sampler = sweep.get("sampler", "grid")
    if sampler not in SAMPLERS:
        raise err("sweep.sampler", f"unknown sampler {sampler!r} (known: {', '.join(SAMPLERS)})")

    n = sweep.get("n")
    if sampler == "grid":
        if n is not None:
            raise err("sweep.n", "only for sampler = 'lhs' or 'sobol' (a grid's size comes from its axes)")
        n = 0
    else:
        limit = MAX_LHS_POINTS if sampler == "lhs" else MAX_SAMPLED_POINTS
        if n is None:
            raise err("sweep.n", f"sampler {sampler!r} needs the number of points n")
        if not isinstance(n, int) or isinstance(n, bool) or not (1 <= n <= limit):
            hint = " (use sampler = 'sobol' for more)" if sampler == "lhs" else ""
            raise err("sweep.n", f"must be an integer between 1 and {limit}{hint}")

    out = sweep.get("out")
    if out is not None and (not isinstance(out, str) or not out.strip()):
        raise err("sweep.out", "must be a folder name")
    name = sweep.get("name", "")
    if not isinstance(name, str):
        raise err("sweep.name", "must be a string")

    fixed, axes = _parse_grid(data.get("fixed", {}), data.get("axes", {}), sampler, "", set(), err)
    if sampler != "grid" and not axes:
        raise err("axes", f"sampler {sampler!r} needs at least one axis")
    parts = _parse_parts(data.get("parts"), sampler, fixed, axes, err)
    common = math.prod(len(a.values) for a in axes)
    if sampler == "grid" and common * (sum(p.n_points for p in parts) if parts else 1) > MAX_GRID_POINTS:
        raise err("axes", f"the grid has more than {MAX_GRID_POINTS:.0e} points")
    spec = SweepSpec(
        seed=int(seed),
        models=tuple(models_raw),
        replicas=int(replicas),
        sampler=str(sampler),
        n=int(n),
        fixed=tuple(fixed),
        axes=tuple(axes),
        out=out,
        name=name,
        source=source,
        parts=parts,
    )
    return spec


def _parse_grid(
    fixed_raw: Any, axes_raw: Any, sampler: str, prefix: str, taken: set[str], err: Any
) -> tuple[tuple[tuple[str, Any], ...], tuple[Axis, ...]]:
    """The ``fixed`` and ``axes`` tables of the spec (``prefix`` "") or of one part (``parts[k].``).

    ``taken``: parameters the common tables already give (a part may not give them again).
    """
    for section, raw in (("fixed", fixed_raw), ("axes", axes_raw)):
        if not isinstance(raw, Mapping):
            raise err(prefix + section, f"must be a table [{prefix}{section}]")
    fixed: list[tuple[str, Any]] = []
    for key, value in fixed_raw.items():
        if key not in PARAMETERS:
            raise err(f"{prefix}fixed.{key}", f"unknown parameter (known: {', '.join(PARAMETERS)})")
        if key in axes_raw:
            raise err(f"{prefix}fixed.{key}", "is also an axis; give it in one place")
        if key in taken:
            raise err(f"{prefix}fixed.{key}", "is already given for every part; give it in one place")
        fixed.append((key, _check_value(key, value, f"{prefix}fixed.{key}", err)))
    axes: list[Axis] = []
    for key, value in axes_raw.items():
        if key not in PARAMETERS:
            raise err(f"{prefix}axes.{key}", f"unknown parameter (known: {', '.join(PARAMETERS)})")
        if key in taken:
            raise err(f"{prefix}axes.{key}", "is already given for every part; give it in one place")
        axes.append(_parse_axis(key, value, sampler, err, prefix))
    order = {p: i for i, p in enumerate(PARAMETERS)}
    fixed.sort(key=lambda kv: order[kv[0]])
    return tuple(fixed), tuple(axes)


def _parse_parts(
    raw: Any,
    sampler: str,
    fixed: tuple[tuple[str, Any], ...],
    axes: tuple[Axis, ...],
    err: Any,
) -> tuple[Part, ...]:
    """``[[parts]]``: a union of grids, each adding its own fixed values and axes to the common ones."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw or not all(isinstance(p, Mapping) for p in raw):
        raise err("parts", "must be an array of tables [[parts]], each with its own [parts.axes]")
    if sampler != "grid":
        raise err("parts", "a union of grids needs sampler = 'grid'")
    if len(raw) > MAX_PARTS:
        raise err("parts", f"more than {MAX_PARTS} parts")
    taken = {k for k, _ in fixed} | {a.name for a in axes}
    parts: list[Part] = []
    for i, p in enumerate(raw):
        prefix = f"parts[{i}]."
        for key in p:
            if key not in PART_KEYS:
                raise err(f"{prefix}{key}", f"unknown key (known: {', '.join(PART_KEYS)})")
        pf, pa_ = _parse_grid(p.get("fixed", {}), p.get("axes", {}), sampler, prefix, taken, err)
        parts.append(Part(fixed=pf, axes=pa_))
    return tuple(parts)


def spec_from_canonical(data: Any, source: str = "<manifest>") -> SweepSpec:
    """The :class:`SweepSpec` whose :meth:`SweepSpec.canonical` is ``data`` (the inverse of it).

    Used to read the spec stored in a sweep folder's manifest: every value is validated again, so
    the result is a spec like one loaded from a file. Raises :class:`SpecError` naming ``source``.
    """

    def axes_doc(raw: Any, where: str) -> dict[str, Any]:
        if not isinstance(raw, list):
            raise SpecError(f"{source}: {where}: must be a list of axes")
        doc: dict[str, Any] = {}
        for a in raw:
            if not isinstance(a, Mapping) or not isinstance(a.get("name"), str) or a["name"] in doc:
                raise SpecError(f"{source}: {where}: an axis without a (unique) name")
            if "values" in a:
                doc[a["name"]] = a["values"]
            else:
                doc[a["name"]] = {"start": a.get("low"), "stop": a.get("high"), "log": a.get("log", False)}
        return doc

    if not isinstance(data, Mapping):
        raise SpecError(f"{source}: the spec must be a JSON object")
    if data.get("format") != SPEC_FORMAT:
        raise SpecError(f"{source}: spec format {data.get('format')!r}, this foliotune reads {SPEC_FORMAT}")
    sweep = {k: data[k] for k in ("seed", "models", "replicas", "sampler") if k in data}
    if data.get("sampler", "grid") != "grid":
        sweep["n"] = data.get("n")
    doc: dict[str, Any] = {
        "sweep": sweep,
        "fixed": data.get("fixed", {}),
        "axes": axes_doc(data.get("axes"), "axes"),
    }
    if "parts" in data:
        if not isinstance(data["parts"], list):
            raise SpecError(f"{source}: parts: must be a list")
        doc["parts"] = [
            {"fixed": p.get("fixed", {}), "axes": axes_doc(p.get("axes"), f"parts[{i}].axes")}
            if isinstance(p, Mapping)
            else p
            for i, p in enumerate(data["parts"])
        ]
    return spec_from_dict(doc, source=source)


def _check_value(param: str, value: Any, key: str, err: Any) -> Any:
    """Validate one parameter value that is wrong whatever the rest of the point; return it normalized.

    The ranges are the parameter table's (:func:`models.params.check_value`).
    """
    if param == "profile":
        if not isinstance(value, str):
            raise err(key, f"must be a string, not {value!r}")
        names = profile_names()
        if value not in names:
            raise err(key, f"unknown profile {value!r} (known: {', '.join(names)})")
        return value
    why = check_value(param, value)
    if why is not None:
        raise err(key, why)
    if param in STRING_PARAMETERS:
        return value
    return int(value) if param in INTEGER_PARAMETERS else float(value)


def _parse_axis(param: str, raw: Any, sampler: str, err: Any, prefix: str = "") -> Axis:
    key = f"{prefix}axes.{param}"
    if isinstance(raw, list):
        if not raw:
            raise err(key, "empty axis")
        if len(raw) > MAX_AXIS_VALUES:
            raise err(key, f"more than {MAX_AXIS_VALUES} values")
        values = [_check_value(param, v, f"{key}[{i}]", err) for i, v in enumerate(raw)]
        if len(set(values)) != len(values):
            raise err(key, "a value is listed twice")
        return Axis(param, tuple(values))
    if not isinstance(raw, Mapping):
        raise err(key, "must be a list of values or a range table {start, stop, num}")
    for k in raw:
        if k not in RANGE_KEYS:
            raise err(f"{key}.{k}", f"unknown range key (known: {', '.join(RANGE_KEYS)})")
    if param in STRING_PARAMETERS:
        raise err(key, "a text parameter takes a list of values, not a range")
    for k, v in raw.items():
        if k == "log":
            if not isinstance(v, bool):
                raise err(f"{key}.log", "must be true or false")
        elif not _is_number(v) or not math.isfinite(float(v)):
            raise err(f"{key}.{k}", f"must be a finite number, not {v!r}")
    is_int = param in INTEGER_PARAMETERS

    if "log2_start" in raw or "log2_stop" in raw or "log2_step" in raw:
        extra = [k for k in raw if k not in ("log2_start", "log2_stop", "log2_step")]
        if extra:
            raise err(f"{key}.{extra[0]}", "cannot be combined with log2_start/log2_stop")
        for k in ("log2_start", "log2_stop"):
            if k not in raw:
                raise err(f"{key}.{k}", "missing")
        a, b = raw["log2_start"], raw["log2_stop"]
        step = raw.get("log2_step", 1)
        for k, v in (("log2_start", a), ("log2_stop", b), ("log2_step", step)):
            if v != int(v) or abs(v) > 62:
                raise err(f"{key}.{k}", f"must be an integer between -62 and 62, not {v!r}")
        if step <= 0:
            raise err(f"{key}.log2_step", "must be >= 1")
        if b < a:
            raise err(key, "empty axis (log2_stop < log2_start)")
        exps = range(int(a), int(b) + 1, int(step))
        if len(exps) > MAX_AXIS_VALUES:
            raise err(key, f"more than {MAX_AXIS_VALUES} values")
        vals = [2**e if e >= 0 else 2.0**e for e in exps]
        return Axis(param, tuple(_check_value(param, v, key, err) for v in vals))

    for k in ("start", "stop"):
        if k not in raw:
            raise err(f"{key}.{k}", "missing (a range is {start, stop, num} or {start, stop, step})")
    start, stop = float(raw["start"]), float(raw["stop"])
    log = bool(raw.get("log", False))
    if "num" in raw and "step" in raw:
        raise err(key, "give num or step, not both")
    if log and (start <= 0 or stop <= 0):
        raise err(key, "a log range needs start > 0 and stop > 0")
    if "num" not in raw and "step" not in raw:
        if sampler == "grid":
            raise err(key, "a grid range needs num or step ({start, stop, num})")
        if param == "folio_kb":
            raise err(key, "sample folio sizes from a list or {log2_start, log2_stop}")
        if not stop > start:
            raise err(key, "empty range (stop must be above start)")
        _check_value(param, round(start) if is_int else start, f"{key}.start", err)
        _check_value(param, round(stop) if is_int else stop, f"{key}.stop", err)
        return Axis(param, (), low=start, high=stop, log=log)
    if "num" in raw:
        num = raw["num"]
        if num != int(num) or num < 1:
            raise err(f"{key}.num", f"must be an integer >= 1, not {num!r}")
        if num > MAX_AXIS_VALUES:
            raise err(f"{key}.num", f"more than {MAX_AXIS_VALUES} values")
        arr: np.ndarray = np.geomspace(start, stop, int(num)) if log else np.linspace(start, stop, int(num))
    else:
        if log:
            raise err(f"{key}.log", "use num with a log range")
        step = float(raw["step"])
        if step == 0 or (stop - start) / step < 0:
            raise err(key, "empty range (step leads away from stop)")
        count = int(math.floor((stop - start) / step + 1e-9)) + 1
        if count > MAX_AXIS_VALUES:
            raise err(key, f"more than {MAX_AXIS_VALUES} values")
        arr = start + step * np.arange(count)
    if is_int:
        arr = np.round(arr)
    out: list[Any] = []
    seen = set()
    for v in arr.tolist():
        v2 = _check_value(param, int(v) if is_int else float(v), key, err)
        if v2 not in seen:  # rounding a dense integer range may repeat values
            seen.add(v2)
            out.append(v2)
    if not out:
        raise err(key, "empty axis")
    return Axis(param, tuple(out))


def spec_summary(spec: SweepSpec) -> str:
    axes = ", ".join(
        f"{a.name}[{len(a.values)}]" if not a.continuous else f"{a.name}[{a.low:g}..{a.high:g}]"
        for a in spec.axes
    )
    if spec.parts:
        axes += f" in a union of {len(spec.parts)} grids"
    return (
        f"{spec.sampler} sweep of {spec.n_points:,} points × {len(spec.models)} model(s) "
        f"({', '.join(spec.models)}) over {axes or 'no axes'}; spec hash {spec.hash}"
    )
