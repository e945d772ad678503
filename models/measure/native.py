"""Compiled (numba, ``nogil``) loops and raw memory helpers shared by the measurements."""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

import numpy as np

from models.measure.topology import PAGE_BYTES

MADV_DONTNEED = 4
MADV_HUGEPAGE = 14
MADV_NOHUGEPAGE = 15
MADV_POPULATE_WRITE = 23  # Linux 5.14+
PROT_READ = 1
PROT_WRITE = 2
MPOL_MF_MOVE = 2


@cache
def get_libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


@cache
def kernels() -> dict[str, Callable[..., Any]]:
    """numba kernels: chunk copy, page spin, madvise/mprotect rounds (libc called from compiled code)."""
    from numba import njit  # numba (~0.5 s) and its compilation: only when a measurement runs

    libc = get_libc()
    # Addresses are passed as size_t (same register/ABI as a pointer on every 64-bit Linux ABI).
    madvise = libc.madvise
    madvise.argtypes = [ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    mprotect = libc.mprotect
    mprotect.argtypes = [ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int]
    mprotect.restype = ctypes.c_int
    usleep = libc.usleep
    usleep.argtypes = [ctypes.c_uint]
    usleep.restype = ctypes.c_int
    page = PAGE_BYTES

    @njit(nogil=True, cache=True)
    def copy_chunks(src, dst, src_off, dst_off, chunk_words, reps):  # pragma: no cover - compiled
        n = src_off.shape[0]
        for _ in range(reps):
            for i in range(n):
                a = src_off[i]
                b = dst_off[i]
                dst[b : b + chunk_words] = src[a : a + chunk_words]
        return dst[dst_off[0]]

    @njit(nogil=True, cache=True)
    def spin(buf, lo, hi, iters):  # pragma: no cover - compiled
        s = np.uint64(0)
        for _ in range(iters):
            for j in range(lo, hi, 512):
                s += buf[j]
                buf[j] = np.uint8(s & np.uint64(0xFF))
        return s

    @njit(nogil=True)
    def spin_until(buf, ctl, slot, sweeps_per_gap, gap_us):  # pragma: no cover - compiled
        # ctl and buf are views of one allocation (the same uint8 array type): the compiler cannot
        # prove the stores to buf leave ctl[0] unchanged, so the stop flag is read again every sweep.
        s = np.uint64(0)
        k = 0
        ctl[slot] = 1  # spinning
        while ctl[0] == 0:
            for j in range(0, buf.size, 512):
                s += buf[j]
                buf[j] = np.uint8(s & np.uint64(0xFF))
            k += 1
            if sweeps_per_gap > 0 and k % sweeps_per_gap == 0:
                usleep(gap_us)
        ctl[slot] = 2  # stopped
        return s

    @njit(nogil=True)
    def zap_rounds(buf, addr, rounds):  # pragma: no cover - compiled
        bad = 0
        for r in range(rounds):
            buf[0] = np.uint8(r & 0xFF)  # write fault: a fresh page is mapped
            if madvise(addr, page, MADV_DONTNEED) != 0:
                bad += 1
        return bad

    @njit(nogil=True)
    def protect_rounds(buf, addr, rounds):  # pragma: no cover - compiled
        bad = 0
        for r in range(rounds):
            buf[0] = np.uint8(r & 0xFF)
            if mprotect(addr, page, PROT_READ) != 0:
                bad += 1
            if mprotect(addr, page, PROT_READ | PROT_WRITE) != 0:
                bad += 1
        return bad

    return {
        "copy_chunks": copy_chunks,
        "spin": spin,
        "spin_until": spin_until,
        "zap_rounds": zap_rounds,
        "protect_rounds": protect_rounds,
    }


def warm_up() -> None:
    """Compile every kernel once (before anything is timed or run in threads)."""
    k = kernels()
    a = np.ones(1024, np.uint64)
    b = np.zeros(1024, np.uint64)
    off = np.zeros(1, np.int64)
    k["copy_chunks"](a, b, off, off, 512, 1)
    with anon_mapping(4 * PAGE_BYTES) as (buf, addr):
        k["spin"](buf, PAGE_BYTES, 4 * PAGE_BYTES, 1)
        k["zap_rounds"](buf, addr, 2)
        k["protect_rounds"](buf, addr, 2)


@contextlib.contextmanager
def anon_mapping(nbytes: int, align: int = 0) -> Iterator[tuple[np.ndarray, int]]:
    """A private anonymous mapping as a uint8 array and its address (optionally aligned)."""
    mm = mmap.mmap(-1, nbytes + align, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    whole = np.frombuffer(mm, dtype=np.uint8)
    base = whole.ctypes.data
    skip = (-base) % align if align else 0
    arr = whole[skip : skip + nbytes]
    try:
        yield arr, base + skip
    finally:
        del arr, whole
        with contextlib.suppress(BufferError):
            mm.close()


def populate(buf: np.ndarray, addr: int, nbytes: int, huge: bool) -> None:
    """Back ``[addr, addr + nbytes)`` (``buf`` over it) with pages now: ``MADV_HUGEPAGE`` (large folios
    where a size is enabled) or ``MADV_NOHUGEPAGE``, then one ``MADV_POPULATE_WRITE`` (the kernel
    faults it all in at once), or a write per page before Linux 5.14."""
    madvise = get_libc().madvise
    madvise.argtypes = [ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int]
    madvise(addr, nbytes, MADV_HUGEPAGE if huge else MADV_NOHUGEPAGE)
    if madvise(addr, nbytes, MADV_POPULATE_WRITE) != 0:
        buf[::PAGE_BYTES] = 1


@contextlib.contextmanager
def pinned(cpu: int) -> Iterator[None]:
    """Pin the calling thread to one CPU for the block (``sched_setaffinity(0)`` is per thread)."""
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, old)
