"""A sweep folder opened into one typed value: the read side of ``sweep/storage.py``.

:func:`open_results` checks a folder written by ``foliotune sweep`` and returns a
:class:`SweepResults`: the spec (a :class:`~sweep.spec.SweepSpec` rebuilt from the manifest and
checked against its hash), the validated :class:`Manifest`, the :class:`SweepStatus` (every chunk
file verified) and the verified chunk files, read whole (:meth:`SweepResults.table`,
:meth:`SweepResults.frame`) or scanned lazily (:meth:`SweepResults.dataset`). ``sweep status``, the
runner (through :mod:`sweep.storage`), the explorer and ``recommend`` all read folders through here.

The manifest is not trusted. :func:`read_manifest` checks it against the spec it holds (hash, point
count, chunk count, every chunk's bounds and rows); anything inconsistent is a
:class:`ManifestError` (one line naming the file and what is wrong). Chunk files are checked against
the manifest (size and SHA-256) and, when the manifest does not vouch for them, against their own
footer (spec hash, chunk number, bounds, rows, code version) and Parquet page checksums.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from models.errors import UserError
from models.fileio import TMP_PREFIX, os_message
from sweep.chunks import chunk_bounds, n_chunks, read_chunk_meta, verify_chunk_file
from sweep.spec import SpecError, SweepSpec, spec_from_canonical

#: The manifest's file name in a sweep folder (the one definition).
MANIFEST = "_foliotune_manifest.json"
LOCK = "_foliotune.lock"
#: Manifest format written by this version.
FORMAT = 1
TOOL = "foliotune-sweep"
PART_RE = re.compile(r"^part-(\d+)\.parquet$")
Verify = Literal["full", "size"]


class StoreError(UserError):
    """A sweep folder that cannot be used or written; the message names the folder or file."""


class ManifestError(StoreError):
    """A manifest that is damaged or disagrees with itself; a rerun of the same spec rebuilds it."""


def part_name(chunk: int) -> str:
    return f"part-{chunk:06d}.parquet"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------------
# the manifest


@dataclass(frozen=True)
class ChunkRecord:
    """What the manifest records about one written chunk file."""

    chunk: int
    file: str
    start: int
    stop: int
    rows: int
    infeasible_points: int
    bytes: int
    sha256: str
    seconds: float | None = None

    @property
    def points(self) -> int:
        return self.stop - self.start

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        del d["chunk"]
        return d


@dataclass(frozen=True)
class Manifest:
    """A validated manifest: its spec, chunking and recorded chunks."""

    path: Path
    spec: SweepSpec
    code_version: str
    chunk_points: int
    chunks: Mapping[int, ChunkRecord]
    name: str = ""
    spec_source: str = ""
    created: str = ""
    updated: str = ""

    @property
    def spec_hash(self) -> str:
        return self.spec.hash

    @property
    def n_chunks(self) -> int:
        return n_chunks(self.spec.n_points, self.chunk_points)

    def to_json(self, complete: bool) -> dict[str, Any]:
        """The manifest file's content (contract: keys as written since format 1)."""
        spec = self.spec
        return {
            "tool": TOOL,
            "format": FORMAT,
            "spec_hash": spec.hash,
            "spec": spec.canonical(),
            "spec_source": self.spec_source,
            "name": self.name,
            "code_version": self.code_version,
            "created": self.created,
            "updated": self.updated,
            "n_points": spec.n_points,
            "n_rows": spec.n_rows,
            "models": list(spec.models),
            "chunk_points": self.chunk_points,
            "n_chunks": self.n_chunks,
            "complete": complete,
            "chunks": {str(c): self.chunks[c].to_json() for c in sorted(self.chunks)},
        }


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def parse_manifest(data: Any, path: Path) -> Manifest:
    """Validate a manifest's JSON content against itself and the spec it holds.

    Raises :class:`ManifestError` with one line naming ``path`` and the first problem found.
    """

    def bad(what: str) -> ManifestError:
        return ManifestError(
            f"{path}: damaged manifest ({what}); rerun the same spec into this folder to rebuild it"
        )

    if not isinstance(data, dict) or data.get("tool") != TOOL:
        raise StoreError(f"{path}: not a foliotune sweep manifest")
    if data.get("format") != FORMAT:
        raise StoreError(f"{path}: manifest format {data.get('format')!r}, this foliotune reads {FORMAT}")
    try:
        spec = spec_from_canonical(data.get("spec"), source=f"{path}: spec")
    except SpecError as exc:
        raise bad(str(exc).removeprefix(f"{path}: ")) from None
    if data.get("spec_hash") != spec.hash:
        raise bad(f"spec_hash {data.get('spec_hash')!r} is not the hash of its spec, {spec.hash}")
    cp = _int(data.get("chunk_points"))
    if cp is None or cp < 1:
        raise bad(f"chunk_points {data.get('chunk_points')!r} is not a positive integer")
    nc = n_chunks(spec.n_points, cp)
    if "n_chunks" not in data:
        raise bad("no 'n_chunks'")
    if data["n_chunks"] != nc or _int(data["n_chunks"]) is None:
        raise bad(f"n_chunks {data['n_chunks']!r}, but {spec.n_points} points in chunks of {cp} make {nc}")
    for key, want in (("n_points", spec.n_points), ("n_rows", spec.n_rows)):
        if data.get(key) != want or _int(data.get(key)) is None:
            raise bad(f"{key} {data.get(key)!r}, the spec has {want}")
    cv = data.get("code_version")
    if not isinstance(cv, str) or not cv:
        raise bad("no 'code_version'")
    raw_chunks = data.get("chunks")
    if not isinstance(raw_chunks, dict):
        raise bad(f"'chunks' must be an object of chunk records, not {type(raw_chunks).__name__}")
    chunks: dict[int, ChunkRecord] = {}
    k = len(spec.models)
    for key, e in raw_chunks.items():
        c = int(key) if isinstance(key, str) and key.isdecimal() else -1
        if not 0 <= c < nc:
            raise bad(f"chunk {key!r} outside 0..{nc - 1}")
        start, stop = chunk_bounds(c, cp, spec.n_points)
        if not isinstance(e, dict):
            raise bad(f"chunk {c}: not an object")
        for name, want in (("start", start), ("stop", stop), ("rows", (stop - start) * k)):
            if e.get(name) != want or _int(e.get(name)) is None:
                raise bad(f"chunk {c}: {name} {e.get(name)!r}, expected {want}")
        size, sha = _int(e.get("bytes")), e.get("sha256")
        ip = _int(e.get("infeasible_points"))
        if size is None or size < 0 or not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise bad(f"chunk {c}: bytes or sha256 missing or malformed")
        if ip is None or not 0 <= ip <= stop - start:
            raise bad(f"chunk {c}: infeasible_points {e.get('infeasible_points')!r}")
        secs = e.get("seconds")
        chunks[c] = ChunkRecord(
            chunk=c,
            file=part_name(c),
            start=start,
            stop=stop,
            rows=(stop - start) * k,
            infeasible_points=ip,
            bytes=size,
            sha256=sha,
            seconds=float(secs) if isinstance(secs, int | float) and not isinstance(secs, bool) else None,
        )
    return Manifest(
        path=path,
        spec=spec,
        code_version=cv,
        chunk_points=cp,
        chunks=chunks,
        name=str(data.get("name", "") or ""),
        spec_source=str(data.get("spec_source", "") or ""),
        created=str(data.get("created", "") or ""),
        updated=str(data.get("updated", "") or ""),
    )


def read_manifest(folder: str | Path) -> Manifest | None:
    """The folder's validated manifest, ``None`` if it has none; :class:`ManifestError` if damaged."""
    path = Path(folder) / MANIFEST
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"{path}: cannot read ({os_message(exc)})") from None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise ManifestError(
            f"{path}: damaged manifest (not JSON); rerun the same spec into this folder to rebuild it"
        ) from None
    return parse_manifest(data, path)


# --------------------------------------------------------------------------------------------------
# chunk files and status


def part_files(folder: Path) -> dict[int, Path]:
    """Chunk files present in ``folder`` by chunk number."""
    return {int(m.group(1)): p for p in folder.iterdir() if (m := PART_RE.match(p.name))}


def stray_files(folder: Path, n_chunks_: int) -> list[str]:
    """Files a Parquet reader of the folder would pick up that are not chunks of this sweep."""
    out = []
    for p in folder.iterdir():
        if p.name.startswith(("_", ".")):
            continue
        m = PART_RE.match(p.name)
        if m and int(m.group(1)) < n_chunks_ and p.name == part_name(int(m.group(1))):
            continue
        out.append(p.name)
    return sorted(out)


def footer_vouches(path: Path, spec: SweepSpec, chunk: int, chunk_points: int, code_version: str) -> bool:
    """True if ``path``'s footer says it is ``chunk`` of this spec and code, and it reads whole."""
    start, stop = chunk_bounds(chunk, chunk_points, spec.n_points)
    return verify_chunk_file(
        path,
        {
            "spec_hash": spec.hash,
            "chunk": chunk,
            "start": start,
            "stop": stop,
            "rows": (stop - start) * len(spec.models),
            "code_version": code_version,
        },
    )


def record_from_file(path: Path, spec: SweepSpec, chunk: int, chunk_points: int) -> ChunkRecord:
    """A manifest record for a chunk file the footer vouches for (see :func:`footer_vouches`)."""
    start, stop = chunk_bounds(chunk, chunk_points, spec.n_points)
    meta = read_chunk_meta(path) or {}
    ip = meta.get("infeasible_points", 0)
    return ChunkRecord(
        chunk=chunk,
        file=path.name,
        start=start,
        stop=stop,
        rows=(stop - start) * len(spec.models),
        infeasible_points=int(ip) if isinstance(ip, int) else 0,
        bytes=path.stat().st_size,
        sha256=sha256_file(path),
    )


@dataclass(frozen=True)
class SweepStatus:
    """Progress and integrity of a sweep folder (every chunk file checked)."""

    folder: str
    name: str
    spec_hash: str
    spec_source: str
    code_version: str
    created: str
    updated: str
    models: tuple[str, ...]
    n_points: int
    n_rows: int
    chunk_points: int
    chunks_total: int
    chunks_done: int  # recorded and verified
    chunks_unrecorded: int  # present, vouched for by their footer, not yet in the manifest
    chunks_damaged: int  # present but failing verification (recomputed by a rerun)
    chunks_missing: int  # recorded but gone
    points_done: int
    infeasible_points: int
    bytes: int
    stray_files: tuple[str, ...]
    verified: str  # "full" (SHA-256 of every file) or "size"
    damaged_files: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        return self.chunks_done == self.chunks_total and not self.stray_files

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["models"] = list(self.models)
        d["stray_files"] = list(self.stray_files)
        d["damaged_files"] = list(self.damaged_files)
        d["complete"] = self.complete
        return d


def _check_folder(folder: str | Path) -> Path:
    out = Path(folder).expanduser()
    if not out.exists():
        raise StoreError(f"{out}: no such folder")
    if not out.is_dir():
        raise StoreError(f"{out}: is a file, not a sweep folder")
    return out


def _status(out: Path, m: Manifest, verify: Verify) -> tuple[SweepStatus, list[Path]]:
    try:
        present = part_files(out)
        strays = stray_files(out, m.n_chunks)
    except OSError as exc:
        raise StoreError(f"{out}: cannot list the folder ({os_message(exc)})") from None
    good: list[Path] = []
    done_points = infeasible = size = 0
    damaged: list[str] = []
    missing = unrecorded = 0
    for c in range(m.n_chunks):
        rec, path = m.chunks.get(c), present.get(c)
        if path is None:
            missing += rec is not None
            continue
        try:
            if rec is not None:
                ok = path.stat().st_size == rec.bytes and (
                    verify == "size" or sha256_file(path) == rec.sha256
                )
            else:
                ok = footer_vouches(path, m.spec, c, m.chunk_points, m.code_version)
        except OSError:
            ok = False
        if not ok:
            damaged.append(path.name)
        elif rec is None:
            unrecorded += 1
        else:
            good.append(path)
            done_points += rec.points
            infeasible += rec.infeasible_points
            size += rec.bytes
    spec = m.spec
    st = SweepStatus(
        folder=str(out),
        name=m.name,
        spec_hash=spec.hash,
        spec_source=m.spec_source,
        code_version=m.code_version,
        created=m.created,
        updated=m.updated,
        models=spec.models,
        n_points=spec.n_points,
        n_rows=spec.n_rows,
        chunk_points=m.chunk_points,
        chunks_total=m.n_chunks,
        chunks_done=len(good),
        chunks_unrecorded=unrecorded,
        chunks_damaged=len(damaged),
        chunks_missing=missing,
        points_done=done_points,
        infeasible_points=infeasible,
        bytes=size,
        stray_files=tuple(strays),
        verified=verify,
        damaged_files=tuple(damaged),
    )
    return st, good


def sweep_status(folder: str | Path, verify: Verify = "full") -> SweepStatus:
    """The status of a sweep folder (read-only): the one status function.

    ``verify="full"`` hashes every chunk file (a truncated or bit-flipped file is counted damaged,
    never done); ``"size"`` only compares sizes (cheap, for polling a running sweep).
    """
    return open_results(folder, verify=verify).status


# --------------------------------------------------------------------------------------------------
# the typed value


@dataclass(frozen=True)
class SweepResults:
    """An opened sweep folder: spec, manifest, status and the verified chunk files."""

    folder: Path
    manifest: Manifest
    status: SweepStatus
    files: tuple[Path, ...]  # verified chunk files, in chunk order

    @property
    def spec(self) -> SweepSpec:
        return self.manifest.spec

    @property
    def complete(self) -> bool:
        return self.status.complete

    @property
    def data_hash(self) -> str:
        """SHA-256 over the verified chunks' hashes: names the exact data a result came from."""
        h = hashlib.sha256()
        for c in sorted(self.manifest.chunks):
            if self.folder / self.manifest.chunks[c].file in self.files:
                h.update(f"{c}:{self.manifest.chunks[c].sha256}\n".encode())
        return h.hexdigest()

    def columns(self) -> list[str]:
        """Column names of the chunk files (from the first file's schema; [] without files)."""
        return list(pq.read_schema(self.files[0]).names) if self.files else []

    def dataset(self) -> ds.Dataset:
        """A lazy ``pyarrow.dataset`` over the verified chunk files (filter and project before reading)."""
        return ds.dataset([str(f) for f in self.files], format="parquet")

    def table(self, columns: Sequence[str] | None = None) -> pa.Table:
        """The verified rows as one Arrow table (``columns``: only these)."""
        try:
            return self.dataset().to_table(columns=list(columns) if columns is not None else None)
        except (OSError, pa.ArrowException) as exc:
            why = " ".join(str(exc).split())[:200]
            raise StoreError(f"{self.folder}: cannot read the chunk files ({why})") from None

    def frame(self, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The verified rows as a pandas DataFrame (rows in point order, then model order)."""
        return self.table(columns).to_pandas()

    def infeasible_reasons(self) -> dict[str, int]:
        """Why points were infeasible: reason → number of points, most frequent first."""
        counts: dict[str, int] = {}
        if not self.status.infeasible_points:
            return counts
        t = self.table(["point", "infeasible"])
        t = t.filter(pc.not_equal(t["infeasible"], ""))
        if t.num_rows:
            df = t.to_pandas().drop_duplicates("point")  # one row per model: count points once
            for reason, n in df["infeasible"].astype(str).value_counts().items():
                counts[str(reason)] = int(n)
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def open_results(folder: str | Path, verify: Verify = "full") -> SweepResults:
    """Open a sweep folder (read-only). Raises :class:`StoreError` (one line) if it is not usable.

    An incomplete sweep opens (``status.complete`` is false, ``files`` holds the verified chunks);
    a folder without a manifest or with a damaged one does not.
    """
    out = _check_folder(folder)
    m = read_manifest(out)
    if m is None:
        raise StoreError(
            f"{out}: not a foliotune sweep folder (no {MANIFEST}); give the folder `foliotune sweep` wrote"
        )
    st, good = _status(out, m, verify)
    return SweepResults(folder=out, manifest=m, status=st, files=tuple(good))


__all__ = [
    "FORMAT",
    "LOCK",
    "MANIFEST",
    "PART_RE",
    "TMP_PREFIX",
    "ChunkRecord",
    "Manifest",
    "ManifestError",
    "StoreError",
    "SweepResults",
    "SweepStatus",
    "open_results",
    "parse_manifest",
    "part_name",
    "read_manifest",
    "sweep_status",
]
