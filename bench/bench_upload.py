"""Time and peak memory of the explorer's upload parser on a small Parquet file of 10^6 rows.

    .venv/bin/python bench/bench_upload.py [MODULE]

MODULE is the module holding ``parse_measurement_upload`` (default ``app.evidence``; ``app.data``
for code before the split of issue 9). Each row repeats the first shipped measurement, so the file is
~90 KB with zstd: the limit on bytes as sent does not bound it.
"""

from __future__ import annotations

import importlib
import io
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

import models

ROWS = 1_000_000
LIMIT = 5 * 2**20  # the explorer's default upload limit


def main() -> None:
    module = sys.argv[1] if len(sys.argv) > 1 else "app.evidence"
    raw = pd.read_csv(
        Path(models.__file__).parent / "data" / "measurements.csv", dtype=str, keep_default_na=False
    )
    row = raw.iloc[0]
    big = pd.DataFrame({k: np.repeat(np.array([row[k]]), ROWS) for k in raw.columns if row[k] != ""})
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(big, preserve_index=False), buf, compression="zstd")
    content = buf.getvalue()
    parse = importlib.import_module(module).parse_measurement_upload
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    try:
        rows, _summary = parse(content, "big.parquet", LIMIT)
        outcome = f"accepted {len(rows):,} rows"
    except Exception as exc:  # the outcome is what is measured
        outcome = f"refused: {exc}"
    seconds = time.perf_counter() - t
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        f"{len(content):,} bytes, {ROWS:,} rows: {seconds:.2f} s, peak RSS +{(rss1 - rss0) / 1024:.0f} MB; {outcome}"
    )


if __name__ == "__main__":
    main()
