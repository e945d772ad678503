"""numba's on-disk cache of the compiled kernels follows edits to any module of ``models``.

numba checks only the source file of a cached function; ``models/__init__.py`` names the cache folder
by a hash of the whole package so that an edit to a module a kernel calls is compiled anew.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import models

# A cached kernel of models/analyticvec.py that calls models/phases.py (halley_step).
PROBE = """
import numpy as np
from models.analyticvec import stall_quantiles
out = np.empty(1)
stall_quantiles(np.array([1e-4]), np.array([3e-4]), np.array([20000.0]), 0.99, out)
print(repr(float(out[0])))
"""


def _run(root: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["PYTHONPATH"] = str(root)
    p = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=root, env=env, capture_output=True, text=True, timeout=600
    )
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def test_an_edit_to_a_called_module_is_compiled_anew(tmp_path: Path) -> None:
    src = Path(models.__file__).resolve().parent
    pkg = tmp_path / "models"
    shutil.copytree(src, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    before = _run(tmp_path)
    assert _run(tmp_path) == before  # compiled once, then read from the cache
    phases = pkg / "phases.py"
    text = phases.read_text()
    step = "    return x - 2.0 * f * d1 / (2.0 * d1 * d1 - f * (1.0 + emx))"
    assert step in text
    edited = text.replace(step, "    return x", 1)  # Halley's step now leaves x as it is
    assert edited != text
    phases.write_text(edited)
    assert _run(tmp_path) != before
