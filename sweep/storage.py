"""Sweep results on disk: one Parquet file per chunk plus a JSON manifest, resumable.

Layout of an output folder ``DIR``::

    DIR/part-000000.parquet ...       one file per chunk (rows sorted by point), written atomically
    DIR/_foliotune_manifest.json      spec, spec hash, code version, chunk size, per-chunk status
    DIR/_foliotune.lock               held (flock) by the one driver writing the folder
    DIR/.tmp-*                        files being written (renamed into place when complete)

``pandas.read_parquet(DIR)`` (pyarrow), DuckDB (``read_parquet('DIR/*.parquet')``) and Polars
(``pl.read_parquet('DIR/*.parquet')``) read the dataset without foliotune: Arrow's dataset discovery
skips names starting with ``_`` or ``.``, and the globs match the chunk files only.

A chunk file is written to a temporary name, flushed, fsync'ed and renamed
(:func:`models.fileio.atomic_write`), so a killed driver leaves either the whole file or none (plus a
``.tmp-*`` leftover that the next run deletes). On resume every chunk file is verified: against the
manifest (size and SHA-256) or else against its own footer (spec hash, chunk number, bounds, rows,
code version) and its Parquet page checksums. A file that fails both is deleted and recomputed; a
file its footer vouches for is never deleted. The manifest itself is not trusted: one that is not
JSON, lacks a key, disagrees with its own spec or with the chunk files' footers (for instance an
edited ``n_chunks`` or ``chunk_points``) is rebuilt from the spec and the footers. It is replaced
atomically, so it is valid whenever the process dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.fileio import TMP_PREFIX, OutputFileError, atomic_write, os_message
from sweep.chunks import ChunkResult, read_chunk_meta
from sweep.results import (
    LOCK,
    MANIFEST,
    PART_RE,
    ChunkRecord,
    Manifest,
    ManifestError,
    StoreError,
    footer_vouches,
    open_results,
    part_files,
    part_name,
    record_from_file,
    sha256_file,
)
from sweep.results import read_manifest as read_typed_manifest
from sweep.results import sweep_status as results_status
from sweep.spec import SweepSpec

#: The manifest is rewritten at most this often while chunks stream in (and always at the end).
MANIFEST_INTERVAL_S = 1.0

__all__ = ["LOCK", "MANIFEST", "PART_RE", "TMP_PREFIX", "StoreError", "SweepStore", "part_name"]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def footer_chunk_points(files: dict[int, Path], spec: SweepSpec, code_version: str) -> int | None:
    """The chunk size the chunk files of this spec and code were written with (by their footers;
    the most common one if they disagree), or ``None`` if no file vouches for any."""
    votes: Counter[int] = Counter()
    for c, path in files.items():
        meta = read_chunk_meta(path)
        if meta is None or meta.get("spec_hash") != spec.hash or meta.get("chunk") != c:
            continue
        if meta.get("code_version") != code_version:
            continue
        start, stop = meta.get("start"), meta.get("stop")
        if not isinstance(start, int) or not isinstance(stop, int) or not 0 <= start < stop <= spec.n_points:
            continue
        if stop < spec.n_points:
            cp = stop - start
        elif c > 0:
            cp = start // c
        else:
            cp = max(stop - start, 1)
        if cp >= 1 and start == c * cp:
            votes[cp] += 1
    return votes.most_common(1)[0][0] if votes else None


def _foreign_footer(files: dict[int, Path], spec: SweepSpec, code_version: str) -> str | None:
    """A one-line reason if the chunk files belong to another sweep or to other code, else None."""
    for path in files.values():
        meta = read_chunk_meta(path)
        if meta is None:
            continue
        if meta.get("spec_hash") != spec.hash:
            return f"holds chunk files of a different sweep (spec hash {meta.get('spec_hash')}, this spec {spec.hash})"
        if meta.get("code_version") != code_version:
            return (
                f"holds chunk files computed by foliotune code {meta.get('code_version')}, this is {code_version}; "
                "results would mix model versions"
            )
    return None


@dataclass
class SweepStore:
    """An open output folder: the manifest in memory, the lock held, chunks written as they arrive."""

    out_dir: Path
    manifest: Manifest
    lock_fd: int
    chunks: dict[int, ChunkRecord] = field(default_factory=dict)
    damaged: int = 0
    rebuilt: str = ""  # why the manifest was rebuilt ("" if it was not)
    _last_flush: float = field(default=0.0)

    # ------------------------------------------------------------------ opening

    @staticmethod
    def inspect(
        spec: SweepSpec, out_dir: str | Path, chunk_points: int, code_version: str
    ) -> tuple[Manifest | None, str, int]:
        """Read-only checks of ``out_dir`` for ``spec``: raise :class:`StoreError` if it must be refused.

        Returns the folder's valid manifest (or ``None``), why the manifest must be rebuilt (``""``
        if not), and the chunk size to use for a new or rebuilt manifest.
        """
        out = Path(out_dir)
        manifest: Manifest | None = None
        rebuilt = ""
        if out.exists() and not out.is_dir():
            raise StoreError(f"{out}: exists and is not a folder")
        if out.is_dir():
            try:
                manifest = read_typed_manifest(out)
            except ManifestError as exc:
                rebuilt = str(exc).split("; rerun")[0]
            if manifest is not None:
                if manifest.spec_hash != spec.hash:
                    raise StoreError(
                        f"{out}: holds a different sweep (spec hash {manifest.spec_hash}, this spec "
                        f"{spec.hash}); choose another --out or delete the folder"
                    )
                if manifest.code_version != code_version:
                    raise StoreError(
                        f"{out}: was computed by foliotune code {manifest.code_version}, this is "
                        f"{code_version}; results would mix model versions, choose another --out"
                    )
            elif not rebuilt:
                ours = (LOCK,)
                leftovers = [
                    p.name
                    for p in out.iterdir()
                    if p.name not in ours and not p.name.startswith(TMP_PREFIX) and not PART_RE.match(p.name)
                ]
                if leftovers:
                    raise StoreError(
                        f"{out}: folder is not empty and holds no foliotune sweep; choose another --out"
                    )
            files = part_files(out)
            fcp = footer_chunk_points(files, spec, code_version) if files else None
            if manifest is None and files:
                foreign = _foreign_footer(files, spec, code_version)
                if foreign:
                    raise StoreError(f"{out}: {foreign}; choose another --out")
                if not rebuilt and fcp is None:  # no manifest, and no file says it is ours
                    raise StoreError(
                        f"{out}: folder is not empty and holds no foliotune sweep; choose another --out"
                    )
                rebuilt = rebuilt or f"{out / MANIFEST}: missing"
            if files:
                if manifest is not None and fcp is not None and fcp != manifest.chunk_points:
                    rebuilt = (
                        f"{out / MANIFEST}: chunk_points {manifest.chunk_points} disagrees with the chunk "
                        f"files' footers ({fcp})"
                    )
                    manifest = None
                if manifest is None and fcp is not None:
                    chunk_points = fcp
        return manifest, rebuilt, chunk_points

    @classmethod
    def open(cls, spec: SweepSpec, out_dir: str | Path, chunk_points: int, code_version: str) -> SweepStore:
        """Create or resume ``out_dir`` for ``spec``; refuse a folder that holds something else.

        ``chunk_points`` is used for a new folder only; a resumed folder keeps the chunk size it was
        started with (from its manifest, or from its chunk files' footers when the manifest is
        damaged), so its chunk files stay valid.
        """
        out = Path(out_dir)
        manifest, rebuilt, chunk_points = cls.inspect(spec, out, chunk_points, code_version)
        try:
            out.mkdir(parents=True, exist_ok=True)
            lock_fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"{out}: cannot create output folder ({os_message(exc)})") from None
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(lock_fd)
            raise StoreError(f"{out}: another foliotune sweep is writing this folder") from None
        try:  # again, now that no other driver can change the folder
            manifest, rebuilt, chunk_points = cls.inspect(spec, out, chunk_points, code_version)
        except BaseException:
            os.close(lock_fd)
            raise
        if manifest is None:
            now = _now()
            manifest = Manifest(
                path=out / MANIFEST,
                spec=spec,
                code_version=code_version,
                chunk_points=int(chunk_points),
                chunks={},
                name=spec.name,
                spec_source=spec.source,
                created=now,
                updated=now,
            )
        store = cls(
            out_dir=out, manifest=manifest, lock_fd=lock_fd, chunks=dict(manifest.chunks), rebuilt=rebuilt
        )
        try:
            store._scan(spec)
            store.flush(force=True)
        except OSError as exc:
            store.close()
            raise StoreError(f"{out}: cannot write ({os_message(exc)})") from None
        except BaseException:
            store.close()
            raise
        return store

    @property
    def chunk_points(self) -> int:
        return self.manifest.chunk_points

    @property
    def n_chunks(self) -> int:
        return self.manifest.n_chunks

    def _scan(self, spec: SweepSpec) -> None:
        """Delete leftovers of interrupted writes and damaged files; record every verified chunk file.

        A file counts as verified if it matches its manifest record (size, SHA-256) or, failing that,
        its footer vouches for it (then it is recorded afresh); only files failing both are deleted.
        """
        on_disk: dict[int, Path] = {}
        for p in self.out_dir.iterdir():
            if p.name.startswith(TMP_PREFIX):
                with contextlib.suppress(OSError):
                    p.unlink()
                continue
            m = PART_RE.match(p.name)
            if m:
                on_disk[int(m.group(1))] = p
        for c in list(self.chunks):
            if c not in on_disk:
                del self.chunks[c]  # recorded but gone: recompute
        cp, cv = self.chunk_points, self.manifest.code_version
        for c, path in sorted(on_disk.items()):
            rec = self.chunks.get(c)
            ok = c < self.n_chunks and path.name == part_name(c)
            if ok and rec is not None:
                ok = path.stat().st_size == rec.bytes and sha256_file(path) == rec.sha256
            if ok and rec is not None:
                continue
            if c < self.n_chunks and path.name == part_name(c) and footer_vouches(path, spec, c, cp, cv):
                self.chunks[c] = record_from_file(path, spec, c, cp)
                continue
            self.damaged += 1
            self.chunks.pop(c, None)
            path.unlink()

    # ------------------------------------------------------------------ writing

    def done_chunks(self) -> set[int]:
        return set(self.chunks)

    def done_points(self) -> int:
        return sum(r.points for r in self.chunks.values())

    def missing_chunks(self) -> list[int]:
        return [c for c in range(self.n_chunks) if c not in self.chunks]

    def write_chunk(self, result: ChunkResult) -> None:
        """Write one chunk file atomically and record it (the manifest is flushed at most every second)."""
        path = self.out_dir / part_name(result.chunk)
        try:
            atomic_write(path, result.data.data)
        except OutputFileError as exc:
            self.flush(force=True, quiet=True)
            why = str(exc).removeprefix(f"{path}: ")
            raise StoreError(
                f"{path}: {why}; the {len(self.chunks)} chunk(s) already written and the "
                "manifest are kept, rerun the same command to resume"
            ) from None
        self.chunks[result.chunk] = ChunkRecord(
            chunk=result.chunk,
            file=path.name,
            start=result.start,
            stop=result.stop,
            rows=result.rows,
            infeasible_points=result.infeasible_points,
            bytes=int(result.data.nbytes),
            sha256=result.sha256,
            seconds=round(result.seconds, 4),
        )
        self.flush()

    @property
    def complete(self) -> bool:
        return len(self.chunks) == self.n_chunks

    def manifest_json(self) -> dict[str, Any]:
        return replace(self.manifest, chunks=dict(self.chunks)).to_json(self.complete)

    def flush(self, force: bool = False, quiet: bool = False) -> None:
        """Rewrite the manifest atomically (if forced or the last write is over a second old)."""
        now = time.monotonic()
        if not force and now - self._last_flush < MANIFEST_INTERVAL_S:
            return
        self.manifest = replace(self.manifest, updated=_now())
        data = json.dumps(self.manifest_json(), indent=1).encode()
        try:
            atomic_write(self.out_dir / MANIFEST, data)
        except OutputFileError as exc:
            if quiet:
                return  # the previous manifest is still in place and valid
            raise StoreError(str(exc)) from None
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
        return sum(r.infeasible_points for r in self.chunks.values())


def read_manifest(out_dir: str | Path) -> dict[str, Any] | None:
    """The folder's manifest as plain JSON data after validation (``None`` if there is none).

    Kept for readers written before :mod:`sweep.results`; new code uses
    :func:`sweep.results.open_results` or :func:`sweep.results.read_manifest` (typed).
    """
    m = read_typed_manifest(out_dir)
    if m is None:
        return None
    files = part_files(Path(out_dir))
    complete = all(c in files for c in m.chunks) and len(m.chunks) == m.n_chunks
    return m.to_json(complete)


def sweep_status(out_dir: str | Path) -> dict[str, Any]:
    """:func:`sweep.results.sweep_status` as a dict, sizes checked only (cheap enough to poll a
    running sweep; kept for callers written before :mod:`sweep.results`, which has the full check)."""
    return results_status(out_dir, verify="size").to_dict()


def infeasible_reasons(out_dir: str | Path) -> dict[str, int]:
    """:meth:`sweep.results.SweepResults.infeasible_reasons` of a folder (kept for older callers)."""
    return open_results(out_dir).infeasible_reasons()
