"""Numba kernels of :mod:`pidkd.estimators.histogram` (compiled on first use, cached on disk)."""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["code_ranges", "histogram_into"]


_BLOCK = 1024  # samples whose flat indices are computed before they are counted


@nb.njit(cache=True, parallel=True)
def _ranges(y, t, s, n_chunks):
    """Per chunk, (min, max) of each of the three code arrays, in one pass over all three."""
    out = np.empty((n_chunks, 6), dtype=np.int64)
    step = (y.size + n_chunks - 1) // n_chunks
    for c in nb.prange(n_chunks):
        a, b = c * step, min(y.size, (c + 1) * step)
        lo_y, hi_y, lo_t, hi_t, lo_s, hi_s = y[a], y[a], t[a], t[a], s[a], s[a]
        for i in range(a, b):
            lo_y, hi_y = min(lo_y, y[i]), max(hi_y, y[i])
            lo_t, hi_t = min(lo_t, t[i]), max(hi_t, t[i])
            lo_s, hi_s = min(lo_s, s[i]), max(hi_s, s[i])
        out[c, 0], out[c, 1], out[c, 2], out[c, 3], out[c, 4], out[c, 5] = lo_y, hi_y, lo_t, hi_t, lo_s, hi_s
    return out


@nb.njit(cache=True, parallel=True)
def _count(y, t, s, n_y, n_t, n_s, n_chunks):
    n = y.size
    local = np.zeros((n_chunks, n_y * n_t * n_s), dtype=np.int32)
    bad = np.zeros(n_chunks, dtype=np.bool_)
    step = (n + n_chunks - 1) // n_chunks
    # A negative code cast to uint64 is huge, so one unsigned compare checks both ends.
    uy, ut, us = np.uint64(n_y), np.uint64(n_t), np.uint64(n_s)
    for c in nb.prange(n_chunks):
        lo = c * step
        hi = min(n, lo + step)
        row = local[c]
        flat = np.empty(_BLOCK, dtype=np.int64)
        # Two loops per block: the index loop is branch-free and vectorises, the counting loop
        # then only does the scattered increments.
        for start in range(lo, hi, _BLOCK):
            stop = min(hi, start + _BLOCK)
            ok = True
            for i in range(start, stop):
                ok &= (np.uint64(y[i]) < uy) & (np.uint64(t[i]) < ut) & (np.uint64(s[i]) < us)
                flat[i - start] = (y[i] * n_t + t[i]) * n_s + s[i]
            if not ok:
                bad[c] = True
                break
            for j in range(stop - start):
                row[flat[j]] += 1
    return local, bad.any()


#: Below this many samples numpy is faster than starting the parallel kernels (and needs no
#: thread pool, so probes and sweeps in worker threads never launch one).
SMALL = 100_000


def _chunks(n: int) -> int:
    return max(1, min(nb.get_num_threads(), n // SMALL + 1))


def code_ranges(y: np.ndarray, t: np.ndarray, s: np.ndarray) -> list[tuple[int, int]]:
    """(min, max) of each of three non-empty, equally long int64 arrays, in one parallel pass."""
    if y.size < SMALL:
        return [(int(x.min()), int(x.max())) for x in (y, t, s)]
    per = _ranges(y, t, s, min(_chunks(y.size), y.size))
    lo, hi = per.min(axis=0), per.max(axis=0)
    return [(int(lo[k]), int(hi[k + 1])) for k in (0, 2, 4)]


def histogram_into(counts: np.ndarray, y: np.ndarray, t: np.ndarray, s: np.ndarray) -> bool:
    """Add the joint counts of int64 codes to ``counts[y, t, s]`` in place.

    Samples are split into chunks counted in parallel into private int32 histograms (each
    chunk has fewer than 2**31 samples), which are then summed: no atomics, one pass over the
    codes, with the range check in the same pass. Returns False (and changes nothing) if a code
    is negative or out of range.
    """
    n_y, n_t, n_s = counts.shape
    if y.size == 0:
        return True
    if y.size < SMALL:
        for x, n in ((y, n_y), (t, n_t), (s, n_s)):
            if x.min() < 0 or x.max() >= n:
                return False
        counts += np.bincount((y * n_t + t) * n_s + s, minlength=counts.size).reshape(counts.shape)
        return True
    n_chunks = max(_chunks(y.size), -(-y.size // (2**31 - 1)))
    local, bad = _count(y, t, s, n_y, n_t, n_s, n_chunks)
    if bad:
        return False
    counts += local.sum(axis=0, dtype=np.int64).reshape(counts.shape)
    return True
