"""Sweep results on disk: one Parquet file per chunk plus a JSON manifest, resumable.

Layout of an output folder ``DIR``::

    DIR/part-000000.parquet ...       one file per chunk (rows sorted by point), written atomically
    DIR/_foliotune_manifest.json      spec, spec hash, code version, chunk size, per-chunk status
    DIR/_foliotune.lock               held (flock) by the one driver writing the folder
    DIR/.tmp-*                        files being written (renamed into place when complete)

``pandas.read_parquet(DIR)`` (pyarrow), DuckDB (``read_parquet('DIR/*.parquet')``) and Polars
(``pl.read_parquet('DIR/*.parquet')``) read the dataset without foliotune: Arrow's dataset discovery
skips names starting with ``_`` or ``.``, and the globs match the chunk files only.

A chunk file is written to a temporary name, flushed, fsync'ed and renamed, so a killed driver leaves
either the whole file or none (plus a ``.tmp-*`` leftover that the next run deletes). On resume every
chunk file is verified (size and SHA-256 against the manifest, or, for a file the manifest had not yet
recorded, its footer: spec hash, chunk number and row count); a damaged file is deleted and recomputed.
The manifest itself is replaced atomically, so it is valid whenever the process dies.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.errors import UserError
from sweep.chunks import ChunkResult, chunk_bounds, n_chunks, read_chunk_meta
from sweep.spec import SweepSpec

MANIFEST = "_foliotune_manifest.json"
LOCK = "_foliotune.lock"
TMP_PREFIX = ".tmp-"
FORMAT = 1
PART_RE = re.compile(r"^part-(\d+)\.parquet$")
#: The manifest is rewritten at most this often while chunks stream in (and always at the end).
MANIFEST_INTERVAL_S = 1.0


class StoreError(UserError):
    """An output folder that cannot be used or written; the message names the folder or file."""


def part_name(chunk: int) -> str:
    return f"part-{chunk:06d}.parquet"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _os_message(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "no space left on device"
    if exc.errno == errno.EDQUOT:
        return "disk quota exceeded"
    if exc.errno == errno.EFBIG:
        return "file too large for this file system or process limit"
    return exc.strerror or str(exc)


def atomic_write_bytes(path: Path, data: Any) -> None:
    """Write ``data`` to ``path`` through a temporary file, fsync and rename (all or nothing)."""
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def read_manifest(out_dir: str | Path) -> dict[str, Any] | None:
    path = Path(out_dir) / MANIFEST
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"{path}: cannot read ({_os_message(exc)})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise StoreError(f"{path}: damaged manifest (not JSON); move the folder aside and rerun") from None
    if not isinstance(data, dict) or data.get("tool") != "foliotune-sweep":
        raise StoreError(f"{path}: not a foliotune sweep manifest")
    return data


@dataclass
class SweepStore:
    """An open output folder: the manifest in memory, the lock held, chunks written as they arrive."""

    out_dir: Path
    manifest: dict[str, Any]
    lock_fd: int
    damaged: int = 0
    _last_flush: float = field(default=0.0)

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, spec: SweepSpec, out_dir: str | Path, chunk_points: int, code_version: str) -> SweepStore:
        """Create or resume ``out_dir`` for ``spec``; refuse a folder that holds something else.

        ``chunk_points`` is used for a new folder only; a resumed folder keeps the chunk size it was
        started with (so its chunk files stay valid).
        """
        out = Path(out_dir)
        manifest = None
        if out.exists() and not out.is_dir():
            raise StoreError(f"{out}: exists and is not a folder")
        if out.is_dir():
            manifest = read_manifest(out)
            if manifest is None:
                leftovers = [p.name for p in out.iterdir() if p.name not in (LOCK,)]
                if leftovers:
                    raise StoreError(
                        f"{out}: folder is not empty and holds no foliotune sweep; choose another --out"
                    )
            else:
                if manifest.get("spec_hash") != spec.hash:
                    raise StoreError(
                        f"{out}: holds a different sweep (spec hash {manifest.get('spec_hash')}, this spec "
                        f"{spec.hash}); choose another --out or delete the folder"
                    )
                if manifest.get("code_version") != code_version:
                    raise StoreError(
                        f"{out}: was computed by foliotune code {manifest.get('code_version')}, this is "
                        f"{code_version}; results would mix model versions, choose another --out"
                    )
        try:
            out.mkdir(parents=True, exist_ok=True)
            lock_fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"{out}: cannot create output folder ({_os_message(exc)})") from None
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(lock_fd)
            raise StoreError(f"{out}: another foliotune sweep is writing this folder") from None
        if manifest is None:
            manifest = {
                "tool": "foliotune-sweep",
                "format": FORMAT,
                "spec_hash": spec.hash,
                "spec": spec.canonical(),
                "spec_source": spec.source,
                "name": spec.name,
                "code_version": code_version,
                "created": _now(),
                "updated": _now(),
                "n_points": spec.n_points,
                "n_rows": spec.n_rows,
                "models": list(spec.models),
                "chunk_points": int(chunk_points),
                "n_chunks": n_chunks(spec.n_points, chunk_points),
                "complete": False,
                "chunks": {},
            }
        store = cls(out_dir=out, manifest=manifest, lock_fd=lock_fd)
        try:
            store._scan(spec)
            store.flush(force=True)
        except OSError as exc:
            store.close()
            raise StoreError(f"{out}: cannot write ({_os_message(exc)})") from None
        except BaseException:
            store.close()
            raise
        return store

    @property
    def chunk_points(self) -> int:
        return int(self.manifest["chunk_points"])

    @property
    def n_chunks(self) -> int:
        return int(self.manifest["n_chunks"])

    def _scan(self, spec: SweepSpec) -> None:
        """Delete leftovers of interrupted writes; keep only verified chunk files in the manifest."""
        chunks: dict[str, Any] = self.manifest["chunks"]
        on_disk: dict[int, Path] = {}
        for p in self.out_dir.iterdir():
            if p.name.startswith(TMP_PREFIX):
                with contextlib.suppress(OSError):
                    p.unlink()
                continue
            m = PART_RE.match(p.name)
            if m:
                on_disk[int(m.group(1))] = p
        for key in list(chunks):
            if int(key) not in on_disk:
                del chunks[key]  # recorded but gone: recompute
        k = len(spec.models)
        for c, path in sorted(on_disk.items()):
            entry = chunks.get(str(c))
            ok = c < self.n_chunks
            if ok and entry is not None:
                ok = path.stat().st_size == entry.get("bytes") and _sha256_file(path) == entry.get("sha256")
            elif ok:
                meta = read_chunk_meta(path)
                start, stop = chunk_bounds(c, self.chunk_points, spec.n_points)
                ok = (
                    meta is not None
                    and meta.get("spec_hash") == spec.hash
                    and meta.get("chunk") == c
                    and meta.get("start") == start
                    and meta.get("stop") == stop
                    and meta.get("rows") == (stop - start) * k
                    and meta.get("code_version") == self.manifest["code_version"]
                )
                if ok and meta is not None:
                    chunks[str(c)] = {
                        "file": path.name,
                        "start": start,
                        "stop": stop,
                        "rows": meta["rows"],
                        "infeasible_points": meta.get("infeasible_points", 0),
                        "bytes": path.stat().st_size,
                        "sha256": _sha256_file(path),
                        "seconds": None,
                    }
            if not ok:
                self.damaged += 1
                chunks.pop(str(c), None)
                path.unlink()
        self.manifest["complete"] = len(chunks) == self.n_chunks

    # ------------------------------------------------------------------ writing

    def done_chunks(self) -> set[int]:
        return {int(c) for c in self.manifest["chunks"]}

    def missing_chunks(self) -> list[int]:
        done = self.done_chunks()
        return [c for c in range(self.n_chunks) if c not in done]

    def write_chunk(self, result: ChunkResult) -> None:
        """Write one chunk file atomically and record it (the manifest is flushed at most every second)."""
        path = self.out_dir / part_name(result.chunk)
        try:
            atomic_write_bytes(path, result.data.data)
        except OSError as exc:
            self.flush(force=True, quiet=True)
            done = len(self.manifest["chunks"])
            raise StoreError(
                f"{path}: cannot write ({_os_message(exc)}); the {done} chunk(s) already written and the "
                "manifest are kept, rerun the same command to resume"
            ) from None
        self.manifest["chunks"][str(result.chunk)] = {
            "file": path.name,
            "start": result.start,
            "stop": result.stop,
            "rows": result.rows,
            "infeasible_points": result.infeasible_points,
            "bytes": int(result.data.nbytes),
            "sha256": result.sha256,
            "seconds": round(result.seconds, 4),
        }
        self.flush()

    def flush(self, force: bool = False, quiet: bool = False) -> None:
        """Rewrite the manifest atomically (if forced or the last write is over a second old)."""
        now = time.monotonic()
        if not force and now - self._last_flush < MANIFEST_INTERVAL_S:
            return
        self.manifest["updated"] = _now()
        self.manifest["complete"] = len(self.manifest["chunks"]) == self.n_chunks
        chunks = self.manifest["chunks"]
        self.manifest["chunks"] = {k: chunks[k] for k in sorted(chunks, key=int)}
        data = json.dumps(self.manifest, indent=1).encode()
        try:
            atomic_write_bytes(self.out_dir / MANIFEST, data)
        except OSError as exc:
            if quiet:
                return  # the previous manifest is still in place and valid
            raise StoreError(f"{self.out_dir / MANIFEST}: cannot write ({_os_message(exc)})") from None
        self._last_flush = now

    def finish(self) -> None:
        self.flush(force=True)
        with contextlib.suppress(OSError):
            fd = os.open(self.out_dir, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def close(self) -> None:
        if self.lock_fd >= 0:
            with contextlib.suppress(OSError):
                fcntl.flock(self.lock_fd, fcntl.LOCK_UN)
            os.close(self.lock_fd)
            self.lock_fd = -1

    # ------------------------------------------------------------------ reporting

    def infeasible_points(self) -> int:
        return sum(int(e.get("infeasible_points", 0)) for e in self.manifest["chunks"].values())


def sweep_status(out_dir: str | Path) -> dict[str, Any]:
    """Progress of a sweep folder from its manifest and the chunk files present (read-only)."""
    out = Path(out_dir)
    if not out.is_dir():
        raise StoreError(f"{out}: no such folder")
    manifest = read_manifest(out)
    if manifest is None:
        raise StoreError(f"{out}: not a foliotune sweep folder (no {MANIFEST})")
    chunks = manifest.get("chunks", {})
    present = {int(m.group(1)) for p in out.iterdir() if (m := PART_RE.match(p.name))}
    recorded = {int(c) for c in chunks}
    n_ch = int(manifest["n_chunks"])
    done_points = sum(int(e["stop"]) - int(e["start"]) for c, e in chunks.items() if int(c) in present)
    return {
        "folder": str(out),
        "name": manifest.get("name", ""),
        "spec_hash": manifest["spec_hash"],
        "spec_source": manifest.get("spec_source", ""),
        "code_version": manifest["code_version"],
        "created": manifest.get("created"),
        "updated": manifest.get("updated"),
        "models": manifest.get("models", []),
        "n_points": int(manifest["n_points"]),
        "n_rows": int(manifest["n_rows"]),
        "chunk_points": int(manifest["chunk_points"]),
        "chunks_total": n_ch,
        "chunks_done": len(recorded & present),
        "chunks_unrecorded": len(present - recorded),
        "points_done": done_points,
        "infeasible_points": sum(int(e.get("infeasible_points", 0)) for e in chunks.values()),
        "bytes": sum(int(e.get("bytes", 0)) for c, e in chunks.items() if int(c) in present),
        "complete": bool(manifest.get("complete")) and len(recorded & present) == n_ch,
    }


def infeasible_reasons(out_dir: str | Path) -> dict[str, int]:
    """Why points were infeasible: reason → number of points, most frequent first (reads only the
    ``point`` and ``infeasible`` columns of the part files present)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    out = Path(out_dir)
    counts: dict[str, int] = {}
    for part in sorted(p for p in out.iterdir() if PART_RE.match(p.name)):
        try:
            t = pq.read_table(part, columns=["point", "infeasible"])
        except (OSError, pa.ArrowException):
            continue  # damaged or half-written: sweep_status and a rerun deal with it
        t = t.filter(pc.not_equal(t["infeasible"], ""))
        if t.num_rows == 0:
            continue
        df = t.to_pandas().drop_duplicates("point")  # one row per model: count points once
        for reason, n in df["infeasible"].astype(str).value_counts().items():
            counts[reason] = counts.get(reason, 0) + int(n)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
