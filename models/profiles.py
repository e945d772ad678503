"""Hardware profiles: frozen, validated values loaded from TOML data files.

Each numeric field of a profile file is an inline table ``{ value = ..., source = "..." }`` whose
key carries the unit (``ipi_send_base_us``, ``cpu_copy_gbps``); ``source`` names where the number
comes from or says ``assumed``. Values are converted to SI when loaded (µs → s, GB/s → B/s,
KiB → bytes), so the kernels never see anything but SI.

Profiles live in ``models/profiles/*.toml`` (shipped) and in extra directories named by the
``FOLIOTUNE_PROFILE_PATH`` environment variable (``:``-separated), where ``foliotune measure`` and
``foliotune calibrate`` write theirs.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import tomli_w

from models.errors import UserError

PROFILE_DIR = Path(__file__).with_name("profiles")
DEFAULT_PROFILE = "epyc-zen3-2s"
ENGINE_NAMES = ("cpu", "mt-cpu", "dma", "dsa")


class ProfileError(UserError):
    """A profile file that cannot be used; the message names the file and the field."""


# name -> (unit suffix conversion factor to SI, lower bound, upper bound)
# Every numeric field a profile must give. Bounds are sanity checks, not physics.
_US = 1e-6
_NS = 1e-9
_GBPS = 1e9
_KB = 1024.0
FIELDS: dict[str, tuple[float, float, float]] = {
    # topology
    "sockets": (1.0, 1, 16),
    "cores": (1.0, 1, 4096),
    "smt": (1.0, 1, 8),
    "page_kb": (1.0, 4, 64),
    "max_folio_kb": (1.0, 4, 1 << 20),
    "default_batch_limit_pages": (1.0, 1, 1 << 20),
    "cpu_ghz": (1.0, 0.5, 6.0),
    # per-call and per-folio software costs
    "call_setup_us": (_US, 0, 1e4),
    "folio_setup_us": (_US, 0, 1e3),
    "page_setup_ns": (_NS, 0, 1e4),
    "unmap_per_mapping_us": (_US, 0, 1e3),
    "remap_per_mapping_us": (_US, 0, 1e3),
    "unmap_per_pte_ns": (_NS, 0, 1e5),  # per PTE of a PTE-mapped folio (a PMD-mapped THP has one PMD)
    "remap_per_pte_ns": (_NS, 0, 1e5),
    "busy_attempt_us": (_US, 0, 1e3),
    # TLB flush
    "local_page_flush_ns": (_NS, 0, 1e4),
    "local_full_flush_us": (_US, 0, 1e3),
    "single_flush_ceiling_pages": (1.0, 1, 1 << 20),
    "ipi_send_base_us": (_US, 0, 1e3),
    "ipi_per_target_ns": (_NS, 0, 1e5),
    "ack_handler_page_us": (_US, 0, 1e3),
    "ack_handler_full_us": (_US, 0, 1e3),
    "ack_tail_scale_us": (_US, 0, 1e3),
    # Lomax shape >= 4: a finite fourth moment keeps Monte Carlo standard errors trustworthy.
    "ack_tail_alpha": (1.0, 4.0, 100),
    "socket_hop_us": (_US, 0, 1e3),
    # Broadcast invalidation (arm64 TLBI ...IS + DSB ISH; x86 INVLPGB + TLBSYNC), models/MECHANISM.md §3
    "broadcast_issue_ns": (_NS, 0, 1e5),
    "broadcast_sync_us": (_US, 0, 1e3),
    "broadcast_per_cpu_ns": (_NS, 0, 1e5),
    # CPU copy
    "cpu_copy_gbps": (_GBPS, 0.01, 1e4),
    "cpu_copy_fixed_ns": (_NS, 0, 1e5),
    "mt_sigma": (1.0, 0, 1),
    "mt_kappa": (1.0, 0, 1),
    "mt_dispatch_us": (_US, 0, 1e4),
    "mt_min_chunk_kb": (_KB, 1, 1 << 20),
    "mt_max_threads": (1.0, 1, 4096),
    "mem_ceiling_gbps": (_GBPS, 0.01, 1e4),
    # DMA engines (PTDMA/IOAT style) and Intel DSA
    "dma_channels_max": (1.0, 0, 1024),
    "dma_channel_gbps": (_GBPS, 0, 1e4),
    "dma_desc_setup_us": (_US, 0, 1e3),
    "dma_submit_us": (_US, 0, 1e4),
    "dma_completion_us": (_US, 0, 1e4),
    "dma_jitter_cv": (1.0, 0, 1),
    "dsa_channels_max": (1.0, 0, 1024),
    "dsa_channel_gbps": (_GBPS, 0, 1e4),
    "dsa_desc_setup_us": (_US, 0, 1e3),
    "dsa_submit_us": (_US, 0, 1e4),
    "dsa_completion_us": (_US, 0, 1e4),
    "dsa_jitter_cv": (1.0, 0, 1),
    # workload defaults
    "default_n_folios": (1.0, 1, 1 << 40),
    "default_target_cpus": (1.0, 1, 1 << 20),
    "default_access_rate_hz": (1.0, 0, 1e12),
}
#: Order of the SI values in :meth:`HardwareProfile.vector` (what the kernels read).
FIELD_ORDER: tuple[str, ...] = tuple(FIELDS)
#: Derived values appended to the vector after the file fields: the flush mechanism as numbers
#: (``flush_arm64`` 1.0 for ``arm64-tlbi``; ``invlpgb`` 1.0 when the CPU has INVLPGB) and the CPUs.
DERIVED_FIELDS: tuple[str, ...] = ("flush_arm64", "invlpgb", "cpus")
FIELD_INDEX: dict[str, int] = {name: i for i, name in enumerate(FIELD_ORDER + DERIVED_FIELDS)}
_INTEGER_FIELDS = {
    "sockets",
    "cores",
    "smt",
    "page_kb",
    "max_folio_kb",
    "default_batch_limit_pages",
    "single_flush_ceiling_pages",
    "mt_max_threads",
    "dma_channels_max",
    "dsa_channels_max",
    "default_n_folios",
    "default_target_cpus",
}
#: Numeric fields a file may leave out (profiles written before they existed), with the value used.
_OPTIONAL_FIELDS: dict[str, float] = {
    "broadcast_issue_ns": 0.0,
    "broadcast_sync_us": 0.0,
    "broadcast_per_cpu_ns": 0.0,
}
#: Flush mechanisms (models/MECHANISM.md §3) and the older names still accepted in files.
FLUSH_MECHANISMS: tuple[str, ...] = ("x86-ipi", "arm64-tlbi")
_FLUSH_ALIASES = {"ipi": "x86-ipi", "broadcast": "arm64-tlbi"}
#: Text and boolean fields, each ``{ value = ..., source = "..." }`` (a bare value is accepted for
#: files written before sources were required; its source then says so).
TEXT_FIELDS: tuple[str, ...] = ("flush_mechanism", "default_kernel", "invlpgb")
_TEXT_DEFAULTS: dict[str, tuple[Any, str]] = {
    "default_kernel": ("6.6", "assumed (not given in the file)"),
    "invlpgb": (False, "assumed (not given in the file)"),
}


def kernel_code(version: str) -> int:
    """A kernel release as a number the kernels compare.

    Parameters
    ----------
    version : str
        ``"MAJOR.MINOR"``, e.g. ``"6.3"``; known releases are 4.14–4.20, 5.0–5.19, 6.0–6.18 (THP
        migration, ``CONFIG_ARCH_ENABLE_THP_MIGRATION``, exists from 4.14).

    Returns
    -------
    int
        ``100·MAJOR + MINOR`` (6.3 → 603, 6.15 → 615), or -1 when not a known release.
    """
    text = str(version).strip()
    parts = text.split(".")
    if len(parts) != 2 or not all(p.isdigit() and (p == "0" or not p.startswith("0")) for p in parts):
        return -1
    major, minor = int(parts[0]), int(parts[1])
    known = {4: range(14, 21), 5: range(0, 20), 6: range(0, 19)}
    return 100 * major + minor if minor in known.get(major, ()) else -1


KNOWN_KERNELS: tuple[str, ...] = tuple(
    f"{a}.{b}" for a, r in ((4, range(14, 21)), (5, range(0, 20)), (6, range(0, 19))) for b in r
)


@dataclass(frozen=True)
class HardwareProfile:
    """A machine, as SI numbers with a source for each (read-only).

    The fields the code reads by name are typed properties; every number is also in ``values``
    (SI) and its source in ``sources``.
    """

    name: str
    description: str
    arch: str
    flush_mechanism: str  # "x86-ipi" or "arm64-tlbi" (models/MECHANISM.md §3)
    invlpgb: bool  # x86 AMD Zen 3+: broadcast INVLPGB (used from Linux 6.15)
    default_kernel: str  # "MAJOR.MINOR"
    copy_engines: tuple[str, ...]
    values: MappingProxyType  # field -> SI float
    sources: MappingProxyType  # numeric field -> source text or "assumed"
    text_sources: MappingProxyType  # TEXT_FIELDS -> source text
    path: str = ""
    provenance: str = ""
    _vector: np.ndarray | None = field(default=None, repr=False, compare=False)

    def _int(self, key: str) -> int:
        return int(self.values[key])

    @property
    def page_kb(self) -> int:
        """Base page size, KiB."""
        return self._int("page_kb")

    @property
    def max_folio_kb(self) -> int:
        """Largest folio, KiB (a PMD-mapped THP)."""
        return self._int("max_folio_kb")

    @property
    def default_batch_limit_pages(self) -> int:
        """``NR_MAX_BATCHED_MIGRATION`` = ``HPAGE_PMD_NR`` (512 with 4 KiB pages, 8192 with 64 KiB)."""
        return self._int("default_batch_limit_pages")

    @property
    def default_n_folios(self) -> int:
        return self._int("default_n_folios")

    @property
    def default_target_cpus(self) -> int:
        return self._int("default_target_cpus")

    @property
    def default_access_rate_hz(self) -> float:
        return float(self.values["default_access_rate_hz"])

    @property
    def sockets(self) -> int:
        return self._int("sockets")

    @property
    def cores(self) -> int:
        return self._int("cores")

    @property
    def smt(self) -> int:
        return self._int("smt")

    @property
    def cpus(self) -> int:
        """Logical CPUs (cores × SMT threads)."""
        return int(self.values["cores"] * self.values["smt"])

    def max_threads(self, engine: str) -> int:
        if engine == "cpu":
            return 1
        if engine == "mt-cpu":
            return int(min(self.values["mt_max_threads"], self.cpus))
        if engine == "dma":
            return int(self.values["dma_channels_max"])
        if engine == "dsa":
            return int(self.values["dsa_channels_max"])
        raise KeyError(engine)

    def vector(self) -> np.ndarray:
        """SI values in :data:`FIELD_ORDER` (float64, read-only), plus :data:`DERIVED_FIELDS`."""
        if self._vector is None:
            derived = [
                1.0 if self.flush_mechanism == "arm64-tlbi" else 0.0,
                1.0 if self.invlpgb else 0.0,
                float(self.cpus),
            ]
            v = np.array([self.values[k] for k in FIELD_ORDER] + derived, dtype=np.float64)
            v.setflags(write=False)
            object.__setattr__(self, "_vector", v)
            return v
        return self._vector

    def with_values(self, name: str, updates: dict[str, float], provenance: str) -> HardwareProfile:
        """A new profile with some SI values replaced (used by calibration)."""
        values = dict(self.values)
        sources = dict(self.sources)
        for k, v in updates.items():
            if k not in FIELDS:
                raise ProfileError(f"{name}: unknown field {k!r}")
            values[k] = float(v)
            sources[k] = f"calibrated ({provenance})"
        return dataclasses.replace(
            self,
            name=name,
            values=MappingProxyType(values),
            sources=MappingProxyType(sources),
            path="",
            provenance=provenance,
            _vector=None,
        )


def _text_field(data: dict[str, Any], key: str, where: str) -> tuple[Any, str]:
    """(value, source) of a text/boolean field given as ``{ value, source }`` or bare."""
    if key not in data:
        if key in _TEXT_DEFAULTS:
            return _TEXT_DEFAULTS[key]
        raise ProfileError(f"{where}: missing field {key!r}")
    entry = data[key]
    if isinstance(entry, dict):
        if "value" not in entry or "source" not in entry:
            raise ProfileError(f'{where}: field {key!r} must be {{ value = ..., source = "..." }}')
        value, source = entry["value"], entry["source"]
        if not isinstance(source, str) or not source.strip():
            raise ProfileError(f"{where}: field {key!r}: source must be a non-empty text or 'assumed'")
        return value, source.strip()
    return entry, "not given in the file"


def _profile_from_dict(data: dict[str, Any], where: str) -> HardwareProfile:
    def need(key: str, kind: type) -> Any:
        if key not in data:
            raise ProfileError(f"{where}: missing field {key!r}")
        if not isinstance(data[key], kind):
            raise ProfileError(f"{where}: field {key!r} must be a {kind.__name__}")
        return data[key]

    name = need("name", str)
    description = need("description", str)
    arch = need("arch", str)
    text_sources: dict[str, str] = {}
    mech, text_sources["flush_mechanism"] = _text_field(data, "flush_mechanism", where)
    mech = _FLUSH_ALIASES.get(mech, mech) if isinstance(mech, str) else mech
    if mech not in FLUSH_MECHANISMS:
        raise ProfileError(f"{where}: field 'flush_mechanism' must be one of {', '.join(FLUSH_MECHANISMS)}")
    kernel, text_sources["default_kernel"] = _text_field(data, "default_kernel", where)
    if not isinstance(kernel, str) or kernel_code(kernel) < 0:
        raise ProfileError(
            f"{where}: field 'default_kernel' must be a known release \"MAJOR.MINOR\" "
            f"({KNOWN_KERNELS[0]} … {KNOWN_KERNELS[-1]})"
        )
    invlpgb, text_sources["invlpgb"] = _text_field(data, "invlpgb", where)
    if not isinstance(invlpgb, bool):
        raise ProfileError(f"{where}: field 'invlpgb' must be true or false")
    if invlpgb and mech != "x86-ipi":
        raise ProfileError(f"{where}: field 'invlpgb' is an x86 capability (flush_mechanism x86-ipi)")
    engines = need("copy_engines", list)
    for e in engines:
        if e not in ENGINE_NAMES:
            raise ProfileError(f"{where}: field 'copy_engines': unknown engine {e!r}")
    if "cpu" not in engines:
        raise ProfileError(f"{where}: field 'copy_engines' must include 'cpu'")
    values: dict[str, float] = {}
    sources: dict[str, str] = {}
    known = set(FIELDS) | set(TEXT_FIELDS) | {"name", "description", "arch", "copy_engines", "provenance"}
    for key in data:
        if key not in known:
            raise ProfileError(f"{where}: unknown field {key!r}")
    for key, (factor, lo, hi) in FIELDS.items():
        entry = data.get(key)
        if entry is None and key in _OPTIONAL_FIELDS and not (mech == "arm64-tlbi" or invlpgb):
            values[key] = _OPTIONAL_FIELDS[key] * factor
            sources[key] = "not given in the file (unused by this flush mechanism)"
            continue
        if entry is None:
            raise ProfileError(f"{where}: missing field {key!r}")
        if not isinstance(entry, dict) or "value" not in entry or "source" not in entry:
            raise ProfileError(f'{where}: field {key!r} must be {{ value = ..., source = "..." }}')
        value, source = entry["value"], entry["source"]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ProfileError(f"{where}: field {key!r}: value must be a finite number")
        if not (lo <= value <= hi):
            raise ProfileError(f"{where}: field {key!r}: value {value} outside [{lo}, {hi}]")
        if key in _INTEGER_FIELDS and value != int(value):
            raise ProfileError(f"{where}: field {key!r}: value must be an integer")
        if not isinstance(source, str) or not source.strip():
            raise ProfileError(f"{where}: field {key!r}: source must be a non-empty text or 'assumed'")
        values[key] = float(value) * factor
        sources[key] = source.strip()
    if values["page_kb"] not in (4.0, 16.0, 64.0):
        raise ProfileError(f"{where}: field 'page_kb' must be 4, 16 or 64")
    if values["max_folio_kb"] < values["page_kb"]:
        raise ProfileError(f"{where}: field 'max_folio_kb' below 'page_kb'")
    for e, key in (("dma", "dma_channels_max"), ("dsa", "dsa_channels_max")):
        if e in engines and values[key] < 1:
            raise ProfileError(f"{where}: field {key!r} must be >= 1 when {e!r} is a copy engine")
    return HardwareProfile(
        name=name,
        description=description,
        arch=arch,
        flush_mechanism=mech,
        invlpgb=invlpgb,
        default_kernel=kernel,
        copy_engines=tuple(engines),
        values=MappingProxyType(values),
        sources=MappingProxyType(sources),
        text_sources=MappingProxyType(text_sources),
        path=where,
        provenance=str(data.get("provenance", "")),
    )


def load_profile_file(path: str | Path) -> HardwareProfile:
    """Load and validate one profile file; errors name the file and the field."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ProfileError(f"{p}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{p}: not valid TOML ({exc})") from None
    return _profile_from_dict(data, str(p))


def profile_to_toml_dict(profile: HardwareProfile) -> dict[str, Any]:
    """The file form of a profile (units as in the keys), for writing calibrated/measured profiles."""
    out: dict[str, Any] = {
        "name": profile.name,
        "description": profile.description,
        "arch": profile.arch,
        "copy_engines": list(profile.copy_engines),
    }
    for key in TEXT_FIELDS:
        out[key] = {"value": getattr(profile, key), "source": profile.text_sources[key]}
    if profile.provenance:
        out["provenance"] = profile.provenance
    for key, (factor, _lo, _hi) in FIELDS.items():
        v = profile.values[key] / factor
        if key in _INTEGER_FIELDS:
            v = int(round(v))
        out[key] = {"value": v, "source": profile.sources[key]}
    return out


def search_dirs() -> list[Path]:
    """Directories searched for profile files: the shipped ones, then ``FOLIOTUNE_PROFILE_PATH``."""
    dirs = [PROFILE_DIR]
    extra = os.environ.get("FOLIOTUNE_PROFILE_PATH", "")
    dirs += [Path(d) for d in extra.split(":") if d]
    return dirs


@cache
def _catalogue(key: str) -> MappingProxyType:
    """The profiles found in :func:`search_dirs` (read-only; one per ``FOLIOTUNE_PROFILE_PATH``)."""
    del key  # part of the cache key only
    reg: dict[str, HardwareProfile] = {}
    for d in search_dirs():
        if not d.is_dir():
            continue
        for f in sorted(d.glob("*.toml")):
            prof = load_profile_file(f)
            reg[prof.name] = prof
    return MappingProxyType(reg)


def catalogue() -> MappingProxyType:
    """Every known profile by name, read-only: nothing registers profiles at run time (calibration
    passes its trial values down as a profile table instead, see :func:`profile_table_with`)."""
    return _catalogue(os.environ.get("FOLIOTUNE_PROFILE_PATH", ""))


@contextmanager
def profile_dirs(*dirs: str | Path) -> Iterator[None]:
    """Within the block, also read profile files from ``dirs`` (as if they were on
    ``FOLIOTUNE_PROFILE_PATH``). Files, not in-memory registration: the catalogue stays read-only."""
    old = os.environ.get("FOLIOTUNE_PROFILE_PATH")
    extra = ":".join(str(d) for d in dirs)
    os.environ["FOLIOTUNE_PROFILE_PATH"] = f"{old}:{extra}" if old else extra
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("FOLIOTUNE_PROFILE_PATH", None)
        else:
            os.environ["FOLIOTUNE_PROFILE_PATH"] = old


def profile_names() -> tuple[str, ...]:
    """Names of every known profile, sorted."""
    return tuple(sorted(catalogue()))


def get_profile(name: str) -> HardwareProfile:
    """The profile called ``name``.

    Parameters
    ----------
    name : str
        A name from :func:`profile_names`.

    Returns
    -------
    HardwareProfile
        Read-only; SI values in ``values``, their sources in ``sources``.

    Raises
    ------
    ProfileError
        No such profile (the message lists the known ones).
    """
    reg = catalogue()
    if name not in reg:
        raise ProfileError(f"unknown profile {name!r} (known: {', '.join(sorted(reg))})")
    return reg[name]


def profile_table(names: tuple[str, ...]) -> np.ndarray:
    """2-D float64 array: one row of SI values per profile in ``names`` (what kernels index)."""
    return _profile_table(names, os.environ.get("FOLIOTUNE_PROFILE_PATH", ""))


@cache
def _profile_table(names: tuple[str, ...], key: str) -> np.ndarray:
    del key  # part of the cache key only (the catalogue depends on FOLIOTUNE_PROFILE_PATH)
    return np.stack([get_profile(n).vector() for n in names])


def profile_table_with(replacements: dict[str, HardwareProfile]) -> np.ndarray:
    """The table of every known profile with some rows replaced — how calibration evaluates trial
    values without registering anything.

    Parameters
    ----------
    replacements : dict of str to HardwareProfile
        Known profile name -> the profile whose values (SI) its row should hold.

    Returns
    -------
    numpy.ndarray
        A new float64 array, one row per :func:`profile_names` entry (what kernels index through
        ``PointArrays.profile_index``; pass it as ``run_kernel(..., table=...)``).
    """
    names = profile_names()
    table = profile_table(names).copy()
    for name, prof in replacements.items():
        table[names.index(name)] = prof.vector()
    return table


def _toml_scalar(x: Any) -> str:
    return tomli_w.dumps({"x": x}).split("=", 1)[1].strip()


def dump_profile_toml(data: dict[str, Any] | HardwareProfile) -> str:
    """Profile file text, one ``key = { value = ..., source = "..." }`` line per number."""
    d = profile_to_toml_dict(data) if isinstance(data, HardwareProfile) else data
    lines = [
        f"# foliotune hardware profile: {d['name']}",
        "# Every number is { value, source }; units are in the keys; 'assumed' means no public figure was found.",
    ]
    for key in ("name", "description", "arch", "copy_engines", "provenance"):
        if key in d:
            lines.append(f"{key} = {_toml_scalar(d[key])}")
    for key in TEXT_FIELDS:
        if key not in d:
            continue
        e = d[key]
        if isinstance(e, dict):
            lines.append(
                f"{key} = {{ value = {_toml_scalar(e['value'])}, source = {_toml_scalar(e['source'])} }}"
            )
        else:
            lines.append(f"{key} = {_toml_scalar(e)}")
    lines.append("")
    for key in FIELD_ORDER:
        if key not in d:
            continue
        e = d[key]
        lines.append(
            f"{key} = {{ value = {_toml_scalar(e['value'])}, source = {_toml_scalar(e['source'])} }}"
        )
    return "\n".join(lines) + "\n"
