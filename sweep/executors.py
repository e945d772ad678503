"""Where chunks run: the :class:`ChunkExecutor` protocol and its in-process implementation.

:func:`sweep.runner.run_sweep` hands an executor the chunks still missing and a callback; the
executor evaluates them (in any order, possibly in parallel) and calls the callback in the driver
process as each one finishes. :class:`SerialExecutor` runs them one after another in this process;
:class:`sweep.ray_backend.RayExecutor` runs them as Ray tasks (the one module importing Ray).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from models.errors import UserError
from sweep.chunks import ChunkResult, compute_chunk
from sweep.spec import SweepSpec

OnResult = Callable[[ChunkResult], None]


@dataclass(frozen=True)
class ExecutorReport:
    """What an executor says about a run: a description for the summary and the nodes used."""

    description: str
    nodes: int


class ChunkExecutor(Protocol):
    """Evaluates chunks of a spec and hands each result to ``on_result`` in this process."""

    def parallelism(self) -> int:
        """How many chunks can run at once (sizes the chunks and the time estimate)."""
        ...

    def run(
        self, spec: SweepSpec, chunks: Sequence[int], chunk_points: int, on_result: OnResult
    ) -> ExecutorReport:
        """Evaluate ``chunks``; call ``on_result`` for each as it finishes; return a report."""
        ...


class SerialExecutor:
    """Every chunk in this process, one after another (no Ray; same files, same values)."""

    def parallelism(self) -> int:
        return 1

    def run(
        self, spec: SweepSpec, chunks: Sequence[int], chunk_points: int, on_result: OnResult
    ) -> ExecutorReport:
        for c in chunks:
            on_result(compute_chunk(spec, spec.hash, c, chunk_points))
        return ExecutorReport("serial", 1 if chunks else 0)


def make_executor(
    backend: str = "ray", *, address: str | None = None, workers: int | None = None
) -> ChunkExecutor:
    """The executor for a backend name: ``"ray"`` (embedded Ray, or the cluster at ``address`` /
    ``RAY_ADDRESS``) or ``"serial"``."""
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be >= 1, not {workers}")
    if backend == "serial":
        return SerialExecutor()
    if backend == "ray":
        return LazyRayExecutor(address=address, workers=workers)
    raise UserError(f"unknown backend {backend!r} (ray or serial)")


@dataclass
class LazyRayExecutor:
    """:class:`sweep.ray_backend.RayExecutor`, imported only when chunks actually run (Ray is a heavy
    import, and a resumed complete sweep needs none)."""

    address: str | None = None
    workers: int | None = None

    def parallelism(self) -> int:
        return self.workers or os.cpu_count() or 1

    def run(
        self, spec: SweepSpec, chunks: Sequence[int], chunk_points: int, on_result: OnResult
    ) -> ExecutorReport:
        if not chunks:
            return ExecutorReport("ray (nothing to run)", 0)
        if not (self.address or os.environ.get("RAY_ADDRESS")):
            # An embedded Ray listens on loopback only: Ray reads this when it is imported (it then
            # keeps 127.0.0.1 as the node address instead of replacing it by the machine's address).
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        from sweep.ray_backend import RayExecutor  # Ray is imported only here, when chunks run

        return RayExecutor(address=self.address, workers=self.workers).run(
            spec, chunks, chunk_points, on_result
        )
