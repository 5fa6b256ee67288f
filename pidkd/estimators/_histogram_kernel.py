"""Numba kernels of :mod:`pidkd.estimators.histogram` (compiled on first use, cached on disk)."""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["code_range", "histogram_into"]


@nb.njit(cache=True, parallel=True)
def _range(x, n_chunks):
    lo = np.empty(n_chunks, dtype=np.int64)
    hi = np.empty(n_chunks, dtype=np.int64)
    step = (x.size + n_chunks - 1) // n_chunks
    for c in nb.prange(n_chunks):
        a, b = c * step, min(x.size, (c + 1) * step)
        mn, mx = x[a], x[a]
        for i in range(a, b):
            v = x[i]
            if v < mn:
                mn = v
            if v > mx:
                mx = v
        lo[c], hi[c] = mn, mx
    return lo.min(), hi.max()


@nb.njit(cache=True, parallel=True)
def _count(y, t, s, n_y, n_t, n_s, n_chunks):
    n = y.size
    local = np.zeros((n_chunks, n_y * n_t * n_s), dtype=np.int32)
    bad = np.zeros(n_chunks, dtype=np.bool_)
    step = (n + n_chunks - 1) // n_chunks
    for c in nb.prange(n_chunks):
        lo = c * step
        hi = min(n, lo + step)
        row = local[c]
        for i in range(lo, hi):
            a, b, d = y[i], t[i], s[i]
            if a < 0 or a >= n_y or b < 0 or b >= n_t or d < 0 or d >= n_s:
                bad[c] = True
                break
            row[(a * n_t + b) * n_s + d] += 1
    return local, bad.any()


#: Below this many samples numpy is faster than starting the parallel kernels (and needs no
#: thread pool, so probes and sweeps in worker threads never launch one).
SMALL = 100_000


def _chunks(n: int) -> int:
    return max(1, min(nb.get_num_threads(), n // SMALL + 1))


def code_range(x: np.ndarray) -> tuple[int, int]:
    """(min, max) of a non-empty int64 array in one parallel pass."""
    if x.size < SMALL:
        return int(x.min()), int(x.max())
    lo, hi = _range(x, min(_chunks(x.size), x.size))
    return int(lo), int(hi)


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
