"""The cost models of batched page migration (no Ray, no Dash).

numba caches compiled kernels on disk (``cache=True``) and checks only the source file of each cached
function, not the modules it calls: after an edit to ``models/phases.py`` a kernel of
``models/analytic.py`` would go on running its old compiled code. Unless ``NUMBA_CACHE_DIR`` is set,
the kernels of this package are therefore cached in a folder named by a hash of all its modules
(``models/__pycache__/numba-<hash>``; the three newest such folders are kept), so that any edit to
them compiles them anew.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path


def _kernel_cache_dir() -> Path:
    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for f in sorted(here.rglob("*.py")):
        h.update(f.relative_to(here).as_posix().encode())
        h.update(f.read_bytes())
    return here / "__pycache__" / f"numba-{h.hexdigest()[:16]}"


def _prune(current: Path, keep: int = 3) -> None:
    """Delete the cache folders of older versions of the package but the ``keep`` newest."""
    try:
        others = sorted(
            (p for p in current.parent.glob("numba-*") if p != current),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
    except OSError:
        return
    for p in others[keep - 1 :]:
        shutil.rmtree(p, ignore_errors=True)


def _use_kernel_cache_dir() -> None:
    if os.environ.get("NUMBA_CACHE_DIR"):
        return  # the user's choice (and Ray workers inherit this process's)
    d = _kernel_cache_dir()
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # a read-only install: numba's own cache places
    if not os.access(d, os.W_OK):
        return
    os.environ["NUMBA_CACHE_DIR"] = str(d)
    _prune(d)
    config = sys.modules.get("numba.core.config")
    if config is not None:  # numba already imported: it read the environment then
        config.CACHE_DIR = str(d)  # type: ignore[attr-defined]


_use_kernel_cache_dir()
