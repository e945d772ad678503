"""What is measured and how much: :class:`Settings`, :class:`Result`, :class:`Report`."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from models.measure.topology import KIB, MIB, Topology


@dataclass(frozen=True)
class Settings:
    """How much to measure. :meth:`for_machine` picks sizes that fit the time budget of the mode."""

    quick: bool
    mem_buffer_bytes: int  # each of source and destination, > LLC
    hot_bytes: int  # working set of the cache-hot copy
    hot_copy_bytes: int  # bytes copied per hot sample
    copy_repeats: int
    thread_sizes_kb: tuple[int, ...]
    tlb_rounds: int  # rounds per block
    tlb_blocks: int  # blocks (sd is over blocks)
    move_counts: tuple[int, ...]  # pages per move_pages() call
    move_repeats: int
    numa_folio_kb: tuple[int, ...]
    numa_folios_per_call: tuple[int, ...]
    numa_region_bytes: int
    numa_repeats: int

    @classmethod
    def for_machine(cls, topo: Topology, quick: bool) -> Settings:
        llc = topo.llc_bytes or 32 * MIB
        want = llc + 32 * MIB if quick else 2 * llc
        cap = max(64 * MIB, topo.mem_available_bytes // 8)
        buf = int(min(max(64 * MIB, want), cap, 2048 * MIB))
        buf -= buf % (2 * MIB)
        return cls(
            quick=quick,
            mem_buffer_bytes=buf,
            hot_bytes=256 * KIB,
            hot_copy_bytes=(64 if quick else 512) * MIB,
            copy_repeats=3 if quick else 7,
            thread_sizes_kb=(4, 2048),
            tlb_rounds=1000 if quick else 2000,
            tlb_blocks=10 if quick else 25,
            move_counts=(1, 64, 512, 4096) if quick else (1, 8, 64, 512, 4096),
            move_repeats=3 if quick else 7,
            numa_folio_kb=(4, 2048) if quick else (4, 64, 2048),
            numa_folios_per_call=(1, 64, 512) if quick else (1, 16, 64, 512, 4096),
            numa_region_bytes=(64 if quick else 256) * MIB,
            numa_repeats=2 if quick else 4,
        )


@dataclass
class Result:
    """One measured figure: a metric of the schema, its parameters and how it was obtained."""

    metric: str
    value: float  # SI
    unit: str
    sd: float | None = None
    variant: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    repeats: int = 0
    in_schema: bool = True  # False: kept in the JSON report only (no metric of the schema fits)
    samples: list[float] = field(default_factory=list)  # the repeats behind value and sd (same unit)


@dataclass
class Report:
    """Everything ``foliotune measure`` found: topology, results, derived figures, what was skipped."""

    topology: Topology
    settings: Settings
    results: list[Result] = field(default_factory=list)
    derived: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    date: str = ""
    wall_s: float = 0.0

    def find(self, metric: str, variant: str, **params: Any) -> list[Result]:
        return [
            r
            for r in self.results
            if r.metric == metric
            and r.variant == variant
            and all(r.params.get(k) == v for k, v in params.items())
        ]


def mean_sd(samples: Sequence[float]) -> tuple[float, float | None]:
    xs = [float(x) for x in samples]
    return float(statistics.fmean(xs)), (float(statistics.stdev(xs)) if len(xs) > 1 else None)
