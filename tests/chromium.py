"""How tests and benchmarks start Debian's chromium headless on this closed network."""

from __future__ import annotations

#: Without the background-networking flags chromium keeps trying (and failing) to reach Google.
CHROMIUM_ARGS: tuple[str, ...] = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
