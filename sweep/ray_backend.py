"""The one module of foliotune that imports Ray.

:func:`run_chunks` evaluates chunks as Ray tasks (the plain :func:`sweep.chunks.compute_chunk`
wrapped by ``ray.remote``), keeps a bounded number of them in flight (so the driver never holds the
whole sweep), and hands every finished chunk to a callback as soon as ``ray.wait`` returns it.

Where Ray runs: an existing cluster when an address is given (``--address`` or ``RAY_ADDRESS``),
the already-initialized Ray of this process if there is one (tests, notebooks), otherwise an
embedded Ray started here and stopped again afterwards. The embedded Ray listens on loopback only:
node address 127.0.0.1 (which needs ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` before Ray is imported,
see :class:`sweep.executors.LazyRayExecutor`; without it Ray replaces 127.0.0.1 by the machine's
address and its servers listen on every interface), no dashboard; and a
:mod:`sweep.watchdog` kills whatever it started if this process dies without stopping it.

Tasks are retried (``max_retries``) when a worker process or node dies; since a chunk's result
depends only on the spec and the chunk number, a retried chunk is identical.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import ray

from sweep.chunks import ChunkResult, compute_chunk
from sweep.executors import ExecutorReport
from sweep.spec import SweepSpec
from sweep.watchdog import Watchdog

MAX_RETRIES = 5


def _chunk_task(spec: SweepSpec, spec_hash: str, chunk: int, chunk_points: int) -> tuple[ChunkResult, str]:
    """What a Ray task runs: the plain chunk evaluator, plus the id of the node it ran on."""
    return compute_chunk(spec, spec_hash, chunk, chunk_points), ray.get_runtime_context().get_node_id()


@dataclass
class RaySession:
    """How this run reached Ray: parallelism available and whether we must shut Ray down."""

    parallelism: int
    started_here: bool
    address: str
    nodes: set[str] = field(default_factory=set)  # ids of the nodes that ran chunks
    watchdog: Watchdog | None = None

    def close(self) -> None:
        if self.started_here and ray.is_initialized():
            ray.shutdown()
        if self.watchdog is not None:
            self.watchdog.close()
            self.watchdog = None


def _signal_handlers() -> dict[int, Any]:
    """This process's SIGTERM and SIGINT handlers (main thread only; else empty)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}


def _restore(handlers: dict[int, Any]) -> None:
    """Put back the handlers ``ray.init`` replaced: Ray's own SIGTERM handler prints a native stack
    dump (twice) and aborts, where the command line stops cleanly and says so."""
    for sig, handler in handlers.items():
        if handler is not None:
            signal.signal(sig, handler)


def connect(address: str | None = None, workers: int | None = None) -> RaySession:
    """Connect to a cluster, reuse this process's Ray, or start an embedded one (loopback only)."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if ray.is_initialized():
        cpus = int(ray.cluster_resources().get("CPU", 1))
        return RaySession(min(workers or cpus, cpus) or 1, started_here=False, address="(this process)")
    if address:
        handlers = _signal_handlers()
        try:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        finally:
            _restore(handlers)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        return RaySession(max(1, workers or cpus), started_here=True, address=address)
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    n = max(1, workers or os.cpu_count() or 1)
    guard = Watchdog()  # started first: a driver killed while Ray starts leaves nothing either
    handlers = _signal_handlers()
    try:
        ray.init(
            address="local",  # always a new embedded Ray, even if another Ray runs on this machine
            num_cpus=n,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            logging_level=logging.WARNING,
            log_to_driver=False,
            configure_logging=False,
        )
    except BaseException:
        guard.close()
        raise
    finally:
        _restore(handlers)
    guard.roots(guard.new_children())
    session = RaySession(n, started_here=True, address="embedded", watchdog=guard)
    node_ip = ray.util.get_node_ip_address()
    if node_ip != "127.0.0.1":
        session.close()
        raise RuntimeError(
            f"embedded Ray took the node address {node_ip}, not 127.0.0.1 (Ray was imported before "
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 was set); refusing to listen beyond loopback"
        )
    return session


def run_chunks(
    spec: SweepSpec,
    chunks: Iterable[int],
    chunk_points: int,
    on_result: Callable[[ChunkResult], None],
    *,
    address: str | None = None,
    workers: int | None = None,
    max_retries: int = MAX_RETRIES,
    on_start: Callable[[RaySession], None] | None = None,
) -> RaySession:
    """Run ``chunks`` as Ray tasks; call ``on_result`` (in this process) as each one finishes."""
    session = connect(address, workers)
    try:
        if on_start is not None:
            on_start(session)
        task = ray.remote(num_cpus=1, max_retries=max_retries)(_chunk_task).options(
            name="compute_chunk", scheduling_strategy="SPREAD"
        )
        spec_ref = ray.put(spec)
        inflight = max(2, 2 * session.parallelism)
        pending: dict[Any, int] = {}
        todo = iter(chunks)
        exhausted = False
        try:
            while True:
                while not exhausted and len(pending) < inflight:
                    c = next(todo, None)
                    if c is None:
                        exhausted = True
                        break
                    pending[task.remote(spec_ref, spec.hash, c, chunk_points)] = c
                if not pending:
                    break
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    c = pending.pop(ref)
                    try:
                        result, node = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        raise RuntimeError(f"chunk {c} failed: {exc}") from exc
                    del ref
                    session.nodes.add(node)
                    on_result(result)
        finally:
            # Tasks still out are cancelled only on a cluster we joined: an embedded Ray is shut down
            # next, which ends them, and cancelling first raced a finishing task's reply in Ray's core
            # worker ("Tried to complete task that was not pending": a native abort instead of exit
            # 130/143 after Ctrl-C or SIGTERM).
            if not session.started_here:
                for ref in pending:
                    ray.cancel(ref, force=False)
    finally:
        session.close()
    return session


@dataclass
class RayExecutor:
    """The :class:`sweep.executors.ChunkExecutor` running chunks as Ray tasks."""

    address: str | None = None
    workers: int | None = None

    def parallelism(self) -> int:
        return self.workers or os.cpu_count() or 1

    def run(
        self,
        spec: SweepSpec,
        chunks: Sequence[int],
        chunk_points: int,
        on_result: Callable[[ChunkResult], None],
    ) -> ExecutorReport:
        session = run_chunks(
            spec, chunks, chunk_points, on_result, address=self.address, workers=self.workers
        )
        n = len(session.nodes)
        return ExecutorReport(f"ray {session.address}, {session.parallelism} worker(s) on {n} node(s)", n)
