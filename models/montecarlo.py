"""Monte Carlo model: the phases of ``migrate_pages()`` with their random parts drawn.

Each replica is one ``migrate_pages()`` call of ``n_folios`` folios. Drawn per replica:
- which folios are busy on each pass (Bernoulli(busy_prob) per folio per attempt), hence the
  number unmapped per pass, the flush rounds, the passes and the synchronous fallbacks (in one-folio
  batches a folio's attempts touch no other folio, so its busy attempts before it gets through are
  drawn at once: geometric, by inversion of one uniform);
- each flush round's wait for the slowest of the ``target_cpus - 1`` remote acknowledgements
  (heavy-tailed Lomax tail per CPU; the max is drawn exactly by inverting F^k with one uniform);
- DMA/DSA completion jitter (the waiting part of a copy call scaled by a mean-1 factor);
- the application's first touch of each unmapped folio (Poisson, ``access_rate_hz``), giving that
  folio's stall ``max(0, W - E)``.

Per point it reports the mean over replicas of the same outputs as the analytic model, with Monte
Carlo standard errors (``*_se``); ratios (pages/s, mean window) are ratio estimators Σx/Σy with
delta-method errors. Quantiles (p50, p99 of the unmapped window and of the stall) are taken over
the folios of each call, exactly (sample-bracketed selection, branch-free quickselect; order
statistics of arithmetic sequences for long passes), and then averaged over replicas.

Reproducibility: each point's random stream is seeded from a hash of the sweep seed and the
point's parameter values (profile by name), so a point's result depends only on the point and the
seed, never on its position, its neighbours or the chunking.
"""

from __future__ import annotations

import math
import zlib

import numba as nb
import numpy as np

from models.params import OUTPUTS, PointArrays
from models.phases import (
    ACK_ALPHA,
    ACK_SCALE,
    ASYNC_BATCHED_PASSES,
    BUSY_ATTEMPT,
    CALL_SETUP,
    ENGINE_MT,
    IS_BROADCAST,
    PAGE_KB,
    SYNC_BATCHED_PASSES,
    SYNC_SINGLE_PASSES,
    TOTAL_PASSES,
    copy_engine_costs,
    copy_jitter_cv,
    draw_max_lomax,
    fast_log,
    flush_fixed_s,
    folios_per_batch,
    is_full_flush,
    remap_s,
    remote_handler_s,
    unmap_phase_s,
    window_line,
)

#: Monte Carlo columns beyond OUTPUTS.
MC_EXTRA: tuple[str, ...] = (
    "time_s_se",
    "pages_per_s_se",
    "flush_rounds_se",
    "ipis_se",
    "cpu_time_s_se",
    "window_mean_s_se",
    "window_p50_s",
    "window_p99_s_se",
    "stall_p50_s",
    "stall_p99_s_se",
    "failed_folios_se",
    "passes_se",
    "replicas",
)
_COLUMNS = OUTPUTS + MC_EXTRA
_C = {name: i for i, name in enumerate(_COLUMNS)}
N_COLS = len(_COLUMNS)
C_FLUSH_ROUNDS_SE = _C["flush_rounds_se"]
C_IPIS_SE = _C["ipis_se"]
C_CPU_TIME_S_SE = _C["cpu_time_s_se"]
C_WINDOW_P99_S_SE = _C["window_p99_s_se"]
C_STALL_P99_S_SE = _C["stall_p99_s_se"]
C_FAILED_FOLIOS_SE = _C["failed_folios_se"]
C_PASSES_SE = _C["passes_se"]
C_TIME_S_SE = _C["time_s_se"]
C_PAGES_PER_S_SE = _C["pages_per_s_se"]
C_WINDOW_MEAN_S_SE = _C["window_mean_s_se"]
C_WINDOW_P50_S = _C["window_p50_s"]
C_STALL_P50_S = _C["stall_p50_s"]
C_REPLICAS = _C["replicas"]

_jit = nb.njit(cache=True, nogil=True, error_model="numpy", _nrt=False)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_INV53 = 1.0 / 9007199254740992.0
_TAIL_SALT = np.uint64(0x5851F42D4C957F2D)


@_jit
def _mix(z):
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@_jit
def _u01(x) -> float:
    """The uniform in (0, 1) of SplitMix64 state x (already advanced by one step)."""
    return (float(_mix(x) >> _S11) + 0.5) * _INV53


@_jit
def _uniform(s0, j: int) -> float:
    """Uniform number j (0-based) of the counter-based stream at state ``s0``: a function of (s0, j)
    alone, so loops drawing them carry no dependence from one draw to the next and vectorize."""
    return _u01(s0 + np.uint64(j + 1) * _GOLDEN)


@_jit
def _stall(w: float, u: float, inv_rate: float) -> float:
    """Stall of a folio unmapped for ``w`` seconds whose first touch comes E = -log(u)/rate after
    its unmap (Poisson accesses): max(0, w - E)."""
    st = w + fast_log(u) * inv_rate
    return st if st > 0.0 else 0.0


_vec = nb.njit(cache=True, nogil=True, error_model="numpy", fastmath=True, _nrt=False)


@_vec
def _count_busy(s0, pending: int, p: float) -> int:
    """Busy folios among ``pending``, one Bernoulli(p) each: the next ``pending`` uniforms of the
    SplitMix64 stream at state ``s0`` (counter-based, so the loop vectorizes)."""
    busy = 0
    for j in range(pending):
        u = _uniform(s0, j)
        busy += 1 if u < p else 0
    return busy


@_vec
def _pass_windows(s0, c: int, a: float, slope: float, rate: float, wbuf, sbuf, m: int) -> float:
    """Windows W_j = a + slope·(j+1) of the c folios of one pass into ``wbuf[m:m+c]`` and their
    stalls max(0, W_j - E_j), E_j = -log(U_j)/rate, into ``sbuf`` (the next c uniforms of the stream
    at ``s0`` when rate > 0; no stalls, ``sbuf`` untouched, otherwise). Returns Σ W_j."""
    win = 0.0
    if rate > 0.0:
        inv_rate = 1.0 / rate
        for j in range(c):
            w = a + slope * (j + 1.0)
            win += w
            wbuf[m + j] = w
            sbuf[m + j] = _stall(w, _uniform(s0, j), inv_rate)
    else:
        for j in range(c):
            w = a + slope * (j + 1.0)
            win += w
            wbuf[m + j] = w
    return win


@_vec
def _count_positive(a, m: int) -> int:
    """Number of a[:m] above zero."""
    k = 0
    for i in range(m):
        k += 1 if a[i] > 0.0 else 0
    return k


@_jit
def _select(a, lo: int, hi: int, k: int) -> None:
    """In-place quickselect: a[k] becomes the k-th smallest of a[lo:hi], none larger left of it and
    none smaller right of it.

    Branch-free Lomuto partitions (an unconditional swap and a conditional increment per value,
    median-of-three pivot): the values here are random, so a comparison branch would be mispredicted
    about half the time; this is 2-3x faster on them. When the pivot is the least value of the range,
    a second pass splits off the values equal to it, so runs of ties (zero stalls) always shrink the
    range. Short ranges finish with an insertion sort.
    """
    hi -= 1
    while hi - lo > 12:
        x, y, z = a[lo], a[(lo + hi) >> 1], a[hi]
        pivot = max(min(x, y), min(max(x, y), z))
        first = lo
        for j in range(lo, hi + 1):  # a[lo:first] < pivot <= a[first:j+1]
            v = a[j]
            a[j] = a[first]
            a[first] = v
            first += v < pivot
        if k < first:
            hi = first - 1
            continue
        if first == lo:  # nothing below the pivot: a[lo:first] == pivot < a[first:]
            for j in range(lo, hi + 1):
                v = a[j]
                a[j] = a[first]
                a[first] = v
                first += v <= pivot
            if k < first:
                return
        lo = first
    for i in range(lo + 1, hi + 1):
        v = a[i]
        j = i - 1
        while j >= lo and a[j] > v:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = v


SAMPLE = 256  # sample size of the bracketing selection
SMALL = 4 * SAMPLE  # below this many values, plain quickselect


@_vec
def _count_below2(a, m: int, lo1: float, lo2: float):
    """(# of a[:m] < lo1, # <= lo1, # < lo2, # <= lo2): a pure reduction, so it vectorizes."""
    lt1 = le1 = lt2 = le2 = 0
    for i in range(m):
        x = a[i]
        lt1 += 1 if x < lo1 else 0
        le1 += 1 if x <= lo1 else 0
        lt2 += 1 if x < lo2 else 0
        le2 += 1 if x <= lo2 else 0
    return lt1, le1, lt2, le2


@_vec
def _copy_between2(a, m: int, lo1: float, hi1: float, lo2: float, hi2: float, tmp1, tmp2):
    """The values of a[:m] in (lo1, hi1] copied to tmp1 and those in (lo2, hi2] to tmp2, branch-free."""
    n1 = n2 = 0
    for i in range(m):
        x = a[i]
        tmp1[n1] = x
        n1 += (x > lo1) & (x <= hi1)
        tmp2[n2] = x
        n2 += (x > lo2) & (x <= hi2)
    return n1, n2


@_jit
def _gather_between2(a, m: int, lo1: float, hi1: float, lo2: float, hi2: float, tmp1, tmp2):
    """Two brackets: for each, (# of a[:m] < lo, # <= lo, # in (lo, hi]), the values in (lo, hi]
    copied to tmp1/tmp2. Ties at lo (e.g. many zero stalls) are counted, not copied. The counts
    are one vectorized pass; the copies a second, lighter one."""
    lt1, le1, lt2, le2 = _count_below2(a, m, lo1, lo2)
    n1, n2 = _copy_between2(a, m, lo1, hi1, lo2, hi2, tmp1, tmp2)
    return lt1, le1, n1, lt2, le2, n2


@_jit
def _bracket(samp, m: int, k: int, start: int):
    """Values of the sample ranks that bracket rank k of m with overwhelming probability, and the
    next ``start``.

    ``samp[start:]`` must hold no value below any of ``samp[:start]`` (0 for a fresh sample); the
    selection of a rank at or after ``start`` then looks at that part only (brackets of ascending
    ranks reuse the partitioning of the earlier ones)."""
    q = (k + 0.5) / m
    pos = q * SAMPLE
    d = 3.0 * math.sqrt(SAMPLE * q * (1.0 - q)) + 2.0
    r_lo = int(pos - d)
    r_hi = int(pos + d) + 1
    lo = -math.inf
    hi = math.inf
    if r_lo >= 0:
        _select(samp, start if r_lo >= start else 0, SAMPLE, r_lo)
        lo = samp[r_lo]
        start = r_lo + 1
    if r_hi < SAMPLE:
        _select(samp, start if r_hi >= start else 0, SAMPLE, r_hi)
        hi = samp[r_hi]
        start = r_hi + 1
    return lo, hi, start


@_jit
def _finish(a, m: int, k: int, lo: float, lt: int, le: int, n_in: int, tmp) -> float:
    """k-th smallest of a[:m] given a bracket's counts (< lo, <= lo) and its values in (lo, hi]."""
    if lt <= k < le:
        return lo
    if le <= k < le + n_in:
        _select(tmp, 0, n_in, k - le)
        return tmp[k - le]
    _select(a, 0, m, k)  # the bracket missed: exact, slower
    return a[k]


@_vec
def _count_below(a, m: int, lo: float):
    """(# of a[:m] < lo, # <= lo): a pure reduction, so it vectorizes."""
    lt = le = 0
    for i in range(m):
        x = a[i]
        lt += 1 if x < lo else 0
        le += 1 if x <= lo else 0
    return lt, le


@_vec
def _copy_between(a, m: int, lo: float, hi: float, tmp) -> int:
    """The values of a[:m] in (lo, hi] copied to tmp, branch-free; returns their number."""
    n = 0
    for i in range(m):
        x = a[i]
        tmp[n] = x
        n += (x > lo) & (x <= hi)
    return n


@_jit
def _gather_between(a, m: int, lo: float, hi: float, tmp):
    """One bracket of ``_gather_between2``: (# of a[:m] < lo, # <= lo, # in (lo, hi]), those copied."""
    lt, le = _count_below(a, m, lo)
    return lt, le, _copy_between(a, m, lo, hi, tmp)


@_jit
def _sample(a, m: int, samp) -> None:
    """SAMPLE values of a[:m], one from each of SAMPLE equal strides at an offset that moves along a
    golden-ratio sequence: windows come in ascending runs (one per pass), and a fixed offset would
    sample the same place of every run whenever the run length divides the stride."""
    stride = m // SAMPLE
    for j in range(SAMPLE):
        off = int(((j + 1) * 0.6180339887498949) % 1.0 * stride)
        samp[j] = a[j * stride + off]


@_jit
def _kth(a, m: int, k: int, samp, tmp) -> float:
    """k-th smallest of a[:m] (0-based), exact; may reorder a. One sample bracket as in ``_p50_p99``."""
    if m <= SMALL:
        _select(a, 0, m, k)
        return a[k]
    _sample(a, m, samp)
    lo, hi, _start = _bracket(samp, m, k, 0)
    lt, le, n_in = _gather_between(a, m, lo, hi, tmp)
    return _finish(a, m, k, lo, lt, le, n_in, tmp)


@_jit
def _p50_p99(a, m: int, samp, tmp1, tmp2):
    """(p50, p99) of a[:m] by the inverted-CDF definition (rank ceil(q·m) - 1), exact; may reorder a.

    Floyd-Rivest style for large m: ranks of a sample (``_sample``) bracket each answer ([lo, hi] holds it
    with overwhelming probability); one branch-free pass counts the values below each bracket and
    copies those inside, and a quickselect among the few copied ones finishes exactly. Should a
    bracket miss, a quickselect over everything gives the same result, slower. With lo = -inf the
    counts below it are zero, so the same logic covers brackets open at either end.
    """
    if m == 0:
        return 0.0, 0.0
    k99 = max(math.ceil(0.99 * m) - 1, 0)
    k50 = max(math.ceil(0.50 * m) - 1, 0)
    if m <= SMALL:
        _select(a, 0, m, k99)
        p99 = a[k99]
        if k50 < k99:
            _select(a, 0, k99, k50)
        return a[k50], p99
    _sample(a, m, samp)
    lo50, hi50, start = _bracket(samp, m, k50, 0)
    lo99, hi99, _start = _bracket(samp, m, k99, start)
    lt50, le50, n50, lt99, le99, n99 = _gather_between2(a, m, lo50, hi50, lo99, hi99, tmp1, tmp2)
    p50 = _finish(a, m, k50, lo50, lt50, le50, n50, tmp1)
    p99 = _finish(a, m, k99, lo99, lt99, le99, n99, tmp2)
    return p50, p99


@_jit
def _run_value(a: float, slope: float, j: float) -> float:
    """Window j of a pass: W_j = a + slope·(j+1)."""
    return a + slope * (j + 1.0)


@_jit
def _run_count(a: float, slope: float, c: int, x: float) -> int:
    """How many of W_j = a + slope·(j+1), j < c, are at or below x: O(1) (monotone in j)."""
    if slope == 0.0:
        return c if _run_value(a, slope, 0.0) <= x else 0
    t = (x - a) / slope - 1.0
    if slope > 0.0:
        j = int(min(max(math.floor(t), -1.0), c - 1.0))
        while j + 1 < c and _run_value(a, slope, j + 1.0) <= x:
            j += 1
        while j >= 0 and _run_value(a, slope, float(j)) > x:
            j -= 1
        return j + 1
    j = int(min(max(math.ceil(t), 0.0), float(c)))
    while j > 0 and _run_value(a, slope, j - 1.0) <= x:
        j -= 1
    while j < c and _run_value(a, slope, float(j)) > x:
        j += 1
    return c - j


@_jit
def _runs_count(runs, nr: int, x: float) -> int:
    n = 0
    for i in range(nr):
        n += _run_count(runs[0, i], runs[1, i], int(runs[2, i]), x)
    return n


RUN_MIN_FOLIOS = 64  # windows per pass (on average) from which the sequences are used
RUN_BRACKET = 64  # bisect until at most this many windows lie inside the bracket


@_jit
def _runs_kth(runs, nr: int, k: int, tmp) -> float:
    """k-th smallest (0-based) of the windows of ``nr`` passes, each an arithmetic sequence
    (``runs[:, i]`` = a, slope, count), exact, without materializing them: bisect the value until
    few lie in the bracket (lo, hi] (counts per sequence in O(1)), then select among those."""
    lo = math.inf
    hi = -math.inf
    for i in range(nr):
        a, sl, c = runs[0, i], runs[1, i], runs[2, i]
        v0 = _run_value(a, sl, 0.0)
        v1 = _run_value(a, sl, c - 1.0)
        lo = min(lo, v0, v1)
        hi = max(hi, v0, v1)
    n_lo = _runs_count(runs, nr, lo)
    if n_lo > k:
        return lo
    n_hi = _runs_count(runs, nr, hi)
    for _it in range(128):
        if n_hi - n_lo <= RUN_BRACKET:
            break
        mid = lo + 0.5 * (hi - lo)
        if mid <= lo or mid >= hi:
            break
        n_mid = _runs_count(runs, nr, mid)
        if n_mid > k:
            hi, n_hi = mid, n_mid
        else:
            lo, n_lo = mid, n_mid
    n = 0
    for i in range(nr):
        a, sl, c = runs[0, i], runs[1, i], int(runs[2, i])
        c_lo = _run_count(a, sl, c, lo)
        c_hi = _run_count(a, sl, c, hi)
        if sl >= 0.0:
            j0, j1 = (c_lo, c_hi) if sl > 0.0 else (0, c_hi - c_lo)
        else:
            j0, j1 = c - c_hi, c - c_lo
        for j in range(j0, j1):
            tmp[n] = _run_value(a, sl, float(j))
            n += 1
    _select(tmp, 0, n, k - n_lo)
    return tmp[k - n_lo]


@_jit
def _jitter(cv: float, u: float) -> float:
    """DMA completion jitter factor from one uniform: shifted exponential, mean 1, standard
    deviation cv, never negative (cv <= 1)."""
    return (1.0 - cv) - cv * fast_log(u)


@_jit
def _copy_call_s(s0, call_s, cf, cf_wait, call_wait, c, cv):
    """(duration, waiting part, draws used) of one copy call of c folios, the waiting part jittered
    (mean 1) with the next uniform of the stream at ``s0`` when it is random."""
    wait = call_wait + c * cf_wait
    if cv > 0.0 and wait > 0.0:
        j = _jitter(cv, _uniform(s0, 0))
        return call_s + c * cf - wait + wait * j, wait * j, 1
    return call_s + c * cf, wait, 0


TAIL_POOL = 64  # acknowledgement tails drawn ahead, in one vectorized loop


@_vec
def _fill_tails(s0, remote: float, alpha: float, pool) -> None:
    """``pool[j]`` = max of ``remote`` Lomax(alpha) tails from the j+1-th uniform of the stream at s0."""
    for j in range(pool.shape[0]):
        u = _uniform(s0, j)
        pool[j] = draw_max_lomax(remote, alpha, u)


@_jit
def _flush_s(ts, i: int, pool, fixed, scale, alpha, remote):
    """One flush round: the fixed part plus the slowest of ``remote`` acknowledgement tails.

    Tails come from their own stream (state ``ts``, seeded from the point's seed), drawn
    ``TAIL_POOL`` at a time; ``i`` is the next unused pool entry. Returns (flush, ts, i, draws).
    """
    if remote < 1.0:
        return fixed, ts, i, 0
    drawn = 0
    if i >= TAIL_POOL:
        _fill_tails(ts, remote, alpha, pool)
        ts += np.uint64(TAIL_POOL) * _GOLDEN
        drawn = TAIL_POOL
        i = 0
    return fixed + scale * pool[i], ts, i + 1, drawn


# One-folio batches (b == 1: the unbatched path, or folios as large as the batch limit). Each folio
# is its own batch, so its attempts do not interact with any other folio's: the busy attempts
# before it gets through are geometric, and every random part of a folio is one uniform of a
# counter-based stream. The whole replica is then a few vectorized passes over the folios instead
# of a loop of passes, flushes and copy calls per folio.


@_vec
def _lone_busy(s0, n: int, inv_log_p: float, kbuf):
    """Busy attempts of each of n lone folios before it gets through, K = floor(log U / log p)
    (P(K >= k) = p^k), capped at TOTAL_PASSES (= failed), into ``kbuf``. Returns (Σ K, # failed)."""
    tot = 0.0
    fails = 0
    cap = float(TOTAL_PASSES)
    for j in range(n):
        u = _uniform(s0, j)
        k = min(math.floor(fast_log(u) * inv_log_p), cap)
        kbuf[j] = k
        tot += k
        fails += 1 if k >= cap else 0
    return tot, fails


@_vec
def _lone_tails(ts, n: int, base: float, scale: float, remote: float, alpha: float, wbuf) -> None:
    """Windows ``base`` + the slowest of ``remote`` acknowledgement tails of each folio's flush."""
    for j in range(n):
        u = _uniform(ts, j)
        wbuf[j] = base + scale * draw_max_lomax(remote, alpha, u)


@_vec
def _lone_fill(n: int, base: float, wbuf) -> None:
    """Windows all ``base`` (nothing random in them: one CPU to flush, no jitter)."""
    for j in range(n):
        wbuf[j] = base


@_vec
def _lone_jitter(s0, n: int, wait: float, cv: float, wbuf) -> float:
    """Each folio's copy call jittered as in ``_copy_call_s`` (its waiting part ``wait`` scaled by
    a mean-1 factor): added to the windows. Returns Σ jitter factors."""
    tot = 0.0
    for j in range(n):
        f = _jitter(cv, _uniform(s0, j))
        wbuf[j] += wait * (f - 1.0)
        tot += f
    return tot


@_vec
def _lone_stalls(s0, m: int, inv_rate: float, wbuf, sbuf) -> float:
    """Stall max(0, W - E) of each folio, E = -log(U)/rate; returns Σ W."""
    win = 0.0
    for j in range(m):
        w = wbuf[j]
        win += w
        sbuf[j] = _stall(w, _uniform(s0, j), inv_rate)
    return win


@_vec
def _sum(a, m: int) -> float:
    t = 0.0
    for j in range(m):
        t += a[j]
    return t


@_jit
def _lone_replica(
    s0,
    ts,
    n: int,
    p: float,
    flush_fixed,
    scale,
    alpha,
    remote,
    call_s,
    cf,
    wait_s,
    cv,
    r,
    rate,
    wbuf,
    sbuf,
    kbuf,
):
    """One replica of n one-folio batches: (Σ copy waiting parts, busy attempts, failed folios,
    folios through m, Σ windows, s0, ts, draws); windows in ``wbuf[:m]``, stalls in ``sbuf[:m]``
    (when rate > 0). ``s0`` and ``ts`` are the main and tail streams, advanced past their draws."""
    nd = 0
    busy = 0.0
    failed = 0
    if p >= 1.0:
        return 0.0, float(TOTAL_PASSES) * n, float(n), 0, 0.0, s0, ts, 0
    if p > 0.0:
        busy, failed = _lone_busy(s0, n, 1.0 / math.log(p), kbuf)
        s0 += np.uint64(n) * _GOLDEN
        nd += n
    base = flush_fixed + call_s + cf + r
    if remote >= 1.0:
        _lone_tails(ts, n, base, scale, remote, alpha, wbuf)
        ts += np.uint64(n) * _GOLDEN
        nd += n
    else:
        _lone_fill(n, base, wbuf)
    jitter = cv > 0.0 and wait_s > 0.0
    js0 = s0
    jsum = float(n)
    if jitter:
        jsum = _lone_jitter(s0, n, wait_s, cv, wbuf)
        s0 += np.uint64(n) * _GOLDEN
        nd += n
    m = n
    if failed > 0:  # keep the folios that got through (in order); drop the failed ones' jitter
        m = 0
        for j in range(n):
            if kbuf[j] < TOTAL_PASSES:
                wbuf[m] = wbuf[j]
                m += 1
            elif jitter:
                jsum -= _jitter(cv, _uniform(js0, j))
    if rate > 0.0:
        win = _lone_stalls(s0, m, 1.0 / rate, wbuf, sbuf)
        s0 += np.uint64(m) * _GOLDEN
        nd += m
    else:
        win = _sum(wbuf, m)
    wait = wait_s * jsum if jitter else wait_s * m
    return wait, busy, float(failed), m, win, s0, ts, nd


@_jit
def mc_point(
    prof,
    seed,
    folio_kb,
    n,
    limit,
    engine,
    threads,
    targets,
    mapcount,
    p,
    rate,
    sync,
    replicas,
    wbuf,
    sbuf,
    state,
    pool,
    samp,
    tmp1,
    tmp2,
    runs,
    kbuf,
    out,
    col,
):
    """Simulate ``replicas`` calls of one point; write means and errors to ``out[:, col]``.

    ``state`` is a scratch array of four uint64 (SplitMix64 state, draw counter, tail-stream state,
    tail-pool position) and ``pool`` one of ``TAIL_POOL`` floats, both reset here.
    """
    # Stream states and the draw count live in locals (kept in registers); ``state`` gets them back.
    s0 = seed
    nd = 0
    ts = _mix(seed ^ _TAIL_SALT)
    tpos = TAIL_POOL
    page_kb = prof[PAGE_KB]
    fp = folio_kb / page_kb
    folio_bytes = folio_kb * 1024.0
    b = folios_per_batch(limit, fp, n)
    n_batches = int(math.ceil(n / b))
    b_last = n - (n_batches - 1) * b
    u = unmap_phase_s(prof, fp, mapcount)
    r = remap_s(prof, fp, mapcount)
    n_batched = ASYNC_BATCHED_PASSES if sync == 0 else SYNC_BATCHED_PASSES
    full = is_full_flush(prof, b, fp)
    full1 = is_full_flush(prof, 1.0, fp)
    remote = targets - 1.0
    flush_fixed = flush_fixed_s(prof, full, fp, targets)
    flush1_fixed = flush_fixed_s(prof, full1, fp, targets)
    scale = prof[ACK_SCALE]
    alpha = prof[ACK_ALPHA]
    call_s, cf, cf_wait, call_wait, progressive, t_used = copy_engine_costs(
        prof, engine, threads, folio_bytes, b
    )
    call1, cf1, cf1_wait, call1_wait, _prog1, t1_used = copy_engine_costs(
        prof, engine, threads, folio_bytes, 1.0
    )
    cv = copy_jitter_cv(prof, engine)
    remote_ipis = remote if prof[IS_BROADCAST] < 0.5 else 0.0
    h_full = remote_handler_s(prof, full)
    h1 = remote_handler_s(prof, full1)
    mt = engine == ENGINE_MT
    lone = b == 1.0  # one-folio batches: vectorized over the folios (``_lone_replica``)
    inv_rate = 1.0 / rate if rate > 0.0 else 0.0

    # Sums over replicas (x) and of squares (x2) for the standard errors.
    s_time = s_time2 = s_pages = s_pages2 = s_tp = 0.0
    s_rounds = s_rounds2 = s_ipis = s_ipis2 = s_cpu = s_cpu2 = s_remote = 0.0
    s_win = s_win2 = s_m = s_m2 = s_wm = 0.0
    s_w50 = s_w99 = s_w99sq = s_s50 = s_s99 = s_s99sq = 0.0
    s_failed = s_failed2 = s_passes = s_passes2 = 0.0
    for _rep in range(replicas):
        time = prof[CALL_SETUP]
        rounds_b = 0.0
        rounds_1 = 0.0
        wait = 0.0
        extra = 0.0
        busy = 0.0
        failed = 0.0
        passes_sum = 0.0
        win = 0.0
        m = 0
        nr = 0  # passes with windows, as arithmetic sequences in runs[:, :nr]
        if lone:
            wait, busy, failed, m, win, s0, ts, dr = _lone_replica(
                s0, ts, int(n), p, flush_fixed, scale, alpha, remote, call_s, cf, call_wait + cf_wait, cv, r, rate,
                wbuf, sbuf, kbuf,
            )  # fmt: skip
            nd += dr
            tpos = TAIL_POOL  # the tail stream moved on: refill the pool before its next use
            time += m * u + win  # each folio through: unmap + its window (flush, copy, remap)
            rounds_b = float(m)
            if mt:
                extra = (t_used - 1.0) * cf * m
            passes_sum = busy + m  # K + 1 attempts per folio through, TOTAL_PASSES per failed one
        else:
            for batch in range(n_batches):
                B = b if batch < n_batches - 1 else b_last
                pending = int(B)
                passes = 0
                for _k in range(n_batched):
                    if pending == 0:
                        break
                    passes += 1
                    c = pending
                    if p > 0.0:
                        if pending == 1:  # scalar: no vector-loop set-up for one draw (same stream)
                            nbusy = 1 if _u01(s0 + _GOLDEN) < p else 0
                        else:
                            nbusy = _count_busy(s0, pending, p)
                        s0 += np.uint64(pending) * _GOLDEN
                        nd += pending
                        c -= nbusy
                        busy += nbusy
                    pending -= c
                    if c == 0:
                        continue
                    fc = float(c)
                    flush, ts, tpos, dr = _flush_s(ts, tpos, pool, flush_fixed, scale, alpha, remote)
                    nd += dr
                    rounds_b += 1.0
                    copy, w, dr = _copy_call_s(s0, call_s, cf, cf_wait, call_wait, fc, cv)
                    s0 += np.uint64(dr) * _GOLDEN
                    nd += dr
                    wait += w
                    if mt:
                        extra += (t_used - 1.0) * fc * cf
                    time += fc * (u + r) + flush + copy
                    if progressive:
                        a, slope = window_line(fc, u, flush, 0.0, cf, r, True)
                    else:
                        a = fc * u + flush + copy
                        slope = r - u
                    runs[0, nr] = a
                    runs[1, nr] = slope
                    runs[2, nr] = fc
                    nr += 1
                    if c == 1:  # scalar: no vector-loop set-up for one folio (same stream)
                        w1 = a + slope
                        win += w1
                        wbuf[m] = w1
                        if rate > 0.0:
                            sbuf[m] = _stall(w1, _uniform(s0, 0), inv_rate)
                    else:
                        win += _pass_windows(s0, c, a, slope, rate, wbuf, sbuf, m)
                    if rate > 0.0:
                        s0 += np.uint64(c) * _GOLDEN
                        nd += c
                    m += c
                if sync != 0 and pending > 0:
                    # One-by-one synchronous fallback: each folio alone, flushed immediately.
                    most = 0
                    for _f in range(pending):
                        done = False
                        for attempt in range(SYNC_SINGLE_PASSES):
                            if p > 0.0:
                                s0 += _GOLDEN
                                nd += 1
                                if _u01(s0) < p:
                                    busy += 1.0
                                    continue
                            flush, ts, tpos, dr = _flush_s(ts, tpos, pool, flush1_fixed, scale, alpha, remote)
                            nd += dr
                            rounds_1 += 1.0
                            copy, w, dr = _copy_call_s(s0, call1, cf1, cf1_wait, call1_wait, 1.0, cv)
                            s0 += np.uint64(dr) * _GOLDEN
                            nd += dr
                            wait += w
                            if mt:
                                extra += (t1_used - 1.0) * cf1
                            time += u + flush + copy + r
                            wj = flush + copy + r
                            win += wj
                            wbuf[m] = wj
                            runs[0, nr] = wj
                            runs[1, nr] = 0.0
                            runs[2, nr] = 1.0
                            nr += 1
                            if rate > 0.0:
                                sbuf[m] = _stall(wj, _uniform(s0, 0), inv_rate)
                                s0 += _GOLDEN
                                nd += 1
                            m += 1
                            most = max(most, attempt + 1)
                            done = True
                            break
                        if not done:
                            failed += 1.0
                            most = SYNC_SINGLE_PASSES
                    passes += most
                elif pending > 0:
                    failed += pending
                passes_sum += passes
        time += busy * prof[BUSY_ATTEMPT]
        pages = (n - failed) * fp
        rounds = rounds_b + rounds_1
        ipis = rounds * remote_ipis
        cpu = time - wait + extra
        remote_cpu = remote_ipis * (rounds_b * h_full + rounds_1 * h1)
        if nr > 0 and nr * RUN_MIN_FOLIOS <= m:  # few long passes: order statistics of the sequences
            w50 = _runs_kth(runs, nr, max(math.ceil(0.50 * m) - 1, 0), tmp1)
            w99 = _runs_kth(runs, nr, max(math.ceil(0.99 * m) - 1, 0), tmp1)
        else:
            w50, w99 = _p50_p99(wbuf, m, samp, tmp1, tmp2)
        # Stalls are often mostly zero (no touch inside the window): then both quantiles are 0.
        # When half of them or more are zero the p50 is 0 and only the p99 needs a selection.
        st50 = st99 = 0.0
        if rate > 0.0 and m > 0:
            n_pos = _count_positive(sbuf, m)
            k99 = max(math.ceil(0.99 * m) - 1, 0)
            if n_pos >= m - max(math.ceil(0.50 * m) - 1, 0):
                st50, st99 = _p50_p99(sbuf, m, samp, tmp1, tmp2)
            elif n_pos >= m - k99:
                st99 = _kth(sbuf, m, k99, samp, tmp1)
        passes_mean = passes_sum / n_batches
        fm = float(m)
        s_time += time
        s_time2 += time * time
        s_pages += pages
        s_pages2 += pages * pages
        s_tp += time * pages
        s_rounds += rounds
        s_rounds2 += rounds * rounds
        s_ipis += ipis
        s_ipis2 += ipis * ipis
        s_cpu += cpu
        s_cpu2 += cpu * cpu
        s_remote += remote_cpu
        s_win += win
        s_win2 += win * win
        s_m += fm
        s_m2 += fm * fm
        s_wm += win * fm
        s_w50 += w50
        s_w99 += w99
        s_w99sq += w99 * w99
        s_s50 += st50
        s_s99 += st99
        s_s99sq += st99 * st99
        s_failed += failed
        s_failed2 += failed * failed
        s_passes += passes_mean
        s_passes2 += passes_mean * passes_mean

    R = float(replicas)

    def mean_se(s, s2):
        mu = s / R
        var = (s2 / R - mu * mu) * R / (R - 1.0) if R > 1.0 else 0.0
        return mu, math.sqrt(max(var, 0.0) / R)

    def ratio_se(sx, sx2, sy, sy2, sxy):
        # Ratio estimator Σx/Σy and its delta-method standard error.
        if sy <= 0.0:
            return 0.0, 0.0
        ratio = sx / sy
        if R <= 1.0:
            return ratio, 0.0
        # Σ (x - ratio·y)² = Σx² - 2·ratio·Σxy + ratio²·Σy²
        ss = sx2 - 2.0 * ratio * sxy + ratio * ratio * sy2
        ybar = sy / R
        return ratio, math.sqrt(max(ss, 0.0) / (R * (R - 1.0))) / ybar

    t_mu, t_se = mean_se(s_time, s_time2)
    pps, pps_se = ratio_se(s_pages, s_pages2, s_time, s_time2, s_tp)
    out[0, col] = t_mu
    out[1, col] = pps
    out[2, col] = pps * page_kb * 1024.0
    out[3, col], out[C_FLUSH_ROUNDS_SE, col] = mean_se(s_rounds, s_rounds2)
    out[4, col], out[C_IPIS_SE, col] = mean_se(s_ipis, s_ipis2)
    out[5, col], out[C_CPU_TIME_S_SE, col] = mean_se(s_cpu, s_cpu2)
    out[6, col] = s_remote / R
    wm, wm_se = ratio_se(s_win, s_win2, s_m, s_m2, s_wm)
    out[7, col] = wm
    out[8, col], out[C_WINDOW_P99_S_SE, col] = mean_se(s_w99, s_w99sq)
    out[9, col], out[C_STALL_P99_S_SE, col] = mean_se(s_s99, s_s99sq)
    out[10, col], out[C_FAILED_FOLIOS_SE, col] = mean_se(s_failed, s_failed2)
    out[11, col], out[C_PASSES_SE, col] = mean_se(s_passes, s_passes2)
    out[C_TIME_S_SE, col] = t_se
    out[C_PAGES_PER_S_SE, col] = pps_se
    out[C_WINDOW_MEAN_S_SE, col] = wm_se
    out[C_WINDOW_P50_S, col] = s_w50 / R
    out[C_STALL_P50_S, col] = s_s50 / R
    out[C_REPLICAS, col] = R
    state[0] = s0
    state[1] = nd
    state[2] = ts
    state[3] = tpos
    return nd


@nb.njit(cache=True, nogil=True, error_model="numpy")
def mc_kernel(
    pidx, seeds, folio_kb, n, limit, engine, threads, targets, mapcount, p, rate, sync, table, replicas, out
):
    nmax = 1
    for i in range(n.shape[0]):
        nmax = max(nmax, int(n[i]))
    wbuf = np.empty(nmax, dtype=np.float64)
    sbuf = np.empty(nmax, dtype=np.float64)
    state = np.zeros(4, dtype=np.uint64)
    pool = np.empty(TAIL_POOL, dtype=np.float64)
    samp = np.empty(SAMPLE, dtype=np.float64)
    tmp1 = np.empty(nmax + 1, dtype=np.float64)
    runs = np.empty((3, nmax + 1), dtype=np.float64)
    tmp2 = np.empty(nmax + 1, dtype=np.float64)
    kbuf = np.empty(nmax, dtype=np.float64)
    draws = 0
    for i in range(folio_kb.shape[0]):
        draws += mc_point(
            table[pidx[i]], seeds[i], folio_kb[i], n[i], limit[i], engine[i], threads[i], targets[i],
            mapcount[i], p[i], rate[i], sync[i], replicas, wbuf, sbuf, state, pool, samp, tmp1, tmp2, runs, kbuf, out, i,
        )  # fmt: skip
    return draws


def _splitmix_np(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> _S30)) * _M1
        z = (z ^ (z >> _S27)) * _M2
        return z ^ (z >> _S31)


def point_seeds(arrays: PointArrays, profile_names: tuple[str, ...], seed: int) -> np.ndarray:
    """Per-point 64-bit seeds from the sweep seed and the point's parameter values only."""
    name_hash = np.array([zlib.crc32(nm.encode()) for nm in profile_names], dtype=np.uint64)
    h = _splitmix_np(np.full(len(arrays), np.uint64(seed & 0xFFFFFFFFFFFFFFFF), dtype=np.uint64))
    cols = (
        name_hash[arrays.profile_index],
        arrays.folio_kb,
        arrays.n_folios,
        arrays.batch_limit_pages,
        arrays.engine_code.astype(np.float64),
        arrays.copy_threads,
        arrays.target_cpus,
        arrays.mapcount,
        arrays.busy_prob,
        arrays.access_rate_hz,
        arrays.sync_mode.astype(np.float64),
    )
    for col in cols:
        bits = col if col.dtype == np.uint64 else np.ascontiguousarray(col, dtype=np.float64).view(np.uint64)
        with np.errstate(over="ignore"):
            h = _splitmix_np(h ^ bits)
    return h


def montecarlo_outputs(
    arrays: PointArrays, table: np.ndarray, *, seed: int = 0, replicas: int = 64
) -> dict[str, np.ndarray]:
    """Monte Carlo means, quantiles and standard errors for validated point arrays."""
    from models.profiles import profile_names

    if replicas < 2:
        from models.errors import UserError

        raise UserError(f"replicas: must be >= 2 to estimate errors (got {replicas})")
    out = np.zeros((N_COLS, len(arrays)), dtype=np.float64)
    seeds = point_seeds(arrays, profile_names(), seed)
    mc_kernel(
        arrays.profile_index, seeds, arrays.folio_kb, arrays.n_folios, arrays.batch_limit_pages,
        arrays.engine_code, arrays.copy_threads, arrays.target_cpus, arrays.mapcount, arrays.busy_prob,
        arrays.access_rate_hz, arrays.sync_mode, table, replicas, out,
    )  # fmt: skip
    return {name: out[i] for i, name in enumerate(_COLUMNS)}
