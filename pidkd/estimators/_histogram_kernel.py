"""Numba kernel of :mod:`pidkd.estimators.histogram` (compiled on first use, cached on disk)."""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["histogram_into"]


@nb.njit(cache=True, parallel=True)
def _count(y, t, s, n_t, n_s, size, n_chunks):
    n = y.size
    local = np.zeros((n_chunks, size), dtype=np.int64)
    step = (n + n_chunks - 1) // n_chunks
    for c in nb.prange(n_chunks):
        lo = c * step
        hi = min(n, lo + step)
        row = local[c]
        for i in range(lo, hi):
            row[(y[i] * n_t + t[i]) * n_s + s[i]] += 1
    return local


def histogram_into(counts: np.ndarray, y: np.ndarray, t: np.ndarray, s: np.ndarray) -> None:
    """Add the joint counts of validated int64 codes to ``counts[y, t, s]`` in place.

    Samples are split into chunks counted in parallel into private histograms, which are summed:
    no atomics, and one pass over the codes.
    """
    n_y, n_t, n_s = counts.shape
    if y.size == 0:
        return
    n_chunks = max(1, min(nb.get_num_threads(), y.size // 100_000 + 1))
    local = _count(y, t, s, n_t, n_s, n_y * n_t * n_s, n_chunks)
    counts += local.sum(axis=0).reshape(counts.shape)
