"""Joint histograms of integer codes (y, t, s): one-shot and streaming.

The kernel is compiled with Numba on first use (cached on disk) and counts in parallel over chunks
of samples. Codes are validated once: equal lengths, 1-d, integers (or integral floats), no
negatives, and below the alphabet sizes when those are given.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pidkd._optional import loaded_module

__all__ = ["SPARSE_CELLS_PER_SAMPLE", "JointHistogram", "joint_histogram", "sparse_cells"]

#: ``joint_histogram(sparse=None)`` and :func:`pidkd.pid_from_samples` count sparsely when the dense table
#: would have more than this many cells per sample (it would then be mostly zeros, and its solve cost
#: would follow its size, not its support: see docs/solvers.md, "Sparse input").
SPARSE_CELLS_PER_SAMPLE = 64


def _codes(x: Any, name: str, caller: str) -> NDArray[np.int64]:
    torch = loaded_module("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(
            f"{caller} expects `{name}` to be a 1-d array of integer codes, one per sample; got shape "
            f"{arr.shape}. Quantize multi-dimensional representations first (pidkd.estimators.quantize)."
        )
    if arr.dtype.kind in "iu":
        out = arr.astype(np.int64, copy=False)
    elif arr.dtype.kind == "f" or arr.dtype.kind == "b":
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise ValueError(f"{caller} expects `{name}` to hold integer codes; got NaN or infinite values.")
        out = arr.astype(np.int64)
        if arr.dtype.kind == "f" and np.any(out != arr):
            bad = float(arr[out != arr][0])
            raise ValueError(
                f"{caller} expects `{name}` to hold integer codes; got non-integer values (e.g. {bad!r}). "
                "Quantize continuous values first (pidkd.estimators.quantize)."
            )
    else:
        raise TypeError(f"{caller} expects `{name}` to be an integer array; got dtype {arr.dtype}.")
    return np.ascontiguousarray(out)


def _code_ranges(codes, caller: str) -> list[tuple[int, int]]:
    """(min, max) of the y, t and s codes in one pass over all three; rejects negative codes."""
    if codes[0].size == 0:
        return [(0, 0)] * 3
    if codes[0].size < 10_000:
        ranges = [(int(c.min()), int(c.max())) for c in codes]
    else:
        from pidkd.estimators._histogram_kernel import code_ranges

        ranges = code_ranges(*codes)
    for c, (lo, _), name in zip(codes, ranges, "yts"):
        if lo < 0:
            raise ValueError(
                f"{caller} expects `{name}` to hold non-negative codes; got {lo} at sample {int(np.argmin(c))}."
            )
    return ranges


def _table_limit_bytes() -> int:
    """Half the machine's physical memory (16 GiB where the platform does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (AttributeError, ValueError, OSError):
        return 16 * 2**30


def _check_table(shape: tuple[int, int, int], caller: str) -> None:
    """Refuse a count table that would not fit in memory, before allocating it."""
    need = 8 * shape[0] * shape[1] * shape[2]
    if need > _table_limit_bytes():
        raise MemoryError(
            f"{caller} would allocate a count table of shape {shape} ({need / 2**30:.1f} GiB of int64), more "
            "than half of this machine's memory: the codes index the table directly, and some are very large. "
            "Compact sparse codes to 0..k-1 first (np.unique(codes, return_inverse=True)[1]; pid_from_samples "
            "does this itself) or give smaller alphabet sizes."
        )


def _sizes(codes, given, caller, check: bool = True) -> tuple[int, int, int]:
    if codes[0].size == 0 and any(n is None for n in given):
        raise ValueError(
            f"{caller} got no samples and no alphabet sizes, so the table has no shape. Give at least one "
            "sample, or n_y, n_t and n_s for an empty table."
        )
    sizes = []
    for (_, hi), n, name in zip(_code_ranges(codes, caller), given, ("n_y", "n_t", "n_s")):
        top = hi + 1
        if n is None:
            sizes.append(top)
            continue
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"The {name!r} parameter of {caller} must be a positive int. Got {n!r} instead.")
        if top > n:
            raise ValueError(
                f"{caller} got a code {top - 1} that is out of range for {name}={n} (codes must be "
                f"< {name}). Raise {name} or check the codes."
            )
        sizes.append(int(n))
    if check:
        _check_table((sizes[0], sizes[1], sizes[2]), caller)
    return sizes[0], sizes[1], sizes[2]


def _validated(y, t, s, caller):
    codes = [_codes(v, name, caller) for v, name in ((y, "y"), (t, "t"), (s, "s"))]
    lengths = [c.size for c in codes]
    if len(set(lengths)) != 1:
        raise ValueError(f"{caller} expects y, t and s to have one code per sample each; got lengths {lengths}.")
    return codes


def _count(cy, ct, cs, given, caller, counts=None) -> NDArray[np.int64]:
    """Count validated codes; the range check runs inside the kernel when sizes are given."""
    if all(g is not None for g in given) and cy.size >= 10_000:
        for g, name in zip(given, ("n_y", "n_t", "n_s")):
            if not isinstance(g, (int, np.integer)) or g < 1:
                raise ValueError(f"The {name!r} parameter of {caller} must be a positive int. Got {g!r} instead.")
        shape = tuple(int(g) for g in given)
        if counts is None:
            _check_table(shape, caller)
        out = np.zeros(shape, dtype=np.int64) if counts is None else counts
        from pidkd.estimators._histogram_kernel import histogram_into

        if histogram_into(out, cy, ct, cs):
            return out
        # a code is out of range: find it, with a clear message
    shape = _sizes((cy, ct, cs), given, caller)
    out = np.zeros(shape, dtype=np.int64) if counts is None else counts
    if cy.size:
        from pidkd.estimators._histogram_kernel import histogram_into

        histogram_into(out, cy, ct, cs)
    return out


def sparse_cells(
    cy: NDArray[np.int64], ct: NDArray[np.int64], cs: NDArray[np.int64], shape: tuple[int, int, int]
) -> tuple[tuple[NDArray[np.int64], ...], NDArray[np.int64], NDArray[np.int64]]:
    """The occupied cells of validated codes: their (y, t, s) coordinates (sorted), their counts, and the
    cell of every sample (so that resampled counts are one ``np.bincount`` over the same cells)."""
    flat = (cy * shape[1] + ct) * shape[2] + cs
    keys, cell = np.unique(flat, return_inverse=True)
    cell = cell.reshape(-1)
    coords = np.unravel_index(keys, shape)
    return tuple(c.astype(np.int64) for c in coords), np.bincount(cell, minlength=keys.size), cell


def joint_histogram(
    y: ArrayLike,
    t: ArrayLike,
    s: ArrayLike,
    *,
    n_y: int | None = None,
    n_t: int | None = None,
    n_s: int | None = None,
    normalize: bool = False,
    sparse: bool | None = False,
) -> Any:
    """Counts ``c[y, t, s]`` of the code triples (or their pmf with ``normalize=True``).

    Parameters
    ----------
    y, t, s : array_like of int, shape (n_samples,)
        Label, teacher and student codes.
    n_y, n_t, n_s : int, optional
        Alphabet sizes (default: largest code + 1).
    normalize : bool, default False
        Return the pmf (counts / n_samples) instead of int64 counts.
    sparse : bool or None, default False
        True: return a 3-d ``scipy.sparse.coo_array`` of the occupied cells, never allocating the dense
        table (:func:`pidkd.pid` solves it on its support). None: sparse when the dense table would have
        more than :data:`SPARSE_CELLS_PER_SAMPLE` cells per sample. False: a dense array.

    Examples
    --------
    >>> joint_histogram([0, 1, 1], [0, 1, 1], [1, 0, 0]).tolist()
    [[[0, 1], [0, 0]], [[0, 0], [2, 0]]]
    >>> joint_histogram([0, 1, 1], [0, 1, 1], [1, 0, 0], sparse=True).nnz
    2
    """
    caller = "joint_histogram()"
    if sparse not in (True, False, None):
        raise ValueError(f"The 'sparse' parameter of {caller} must be True, False or None. Got {sparse!r} instead.")
    cy, ct, cs = _validated(y, t, s, caller)
    if sparse is not False:
        shape = _sizes((cy, ct, cs), (n_y, n_t, n_s), caller, check=False)
        if sparse or float(np.prod(shape, dtype=np.float64)) > SPARSE_CELLS_PER_SAMPLE * max(cy.size, 1):
            import scipy.sparse

            coords, counts, _ = sparse_cells(cy, ct, cs, shape)
            if normalize:
                if cy.size == 0:
                    raise ValueError(f"{caller} cannot normalize an empty histogram: no samples were given.")
                return scipy.sparse.coo_array((counts / cy.size, coords), shape=shape)
            return scipy.sparse.coo_array((counts, coords), shape=shape)
    counts = _count(cy, ct, cs, (n_y, n_t, n_s), caller)
    if normalize:
        if cy.size == 0:
            raise ValueError(f"{caller} cannot normalize an empty histogram: no samples were given.")
        return counts / cy.size
    return counts


class JointHistogram:
    """Streaming joint histogram: ``update`` batch by batch, ``merge`` partial ones, ``compute``.

    Parameters
    ----------
    n_y, n_t, n_s : int
        Alphabet sizes, fixed up front so batches can be counted independently.

    Examples
    --------
    >>> h = JointHistogram(2, 2, 2)
    >>> h.update([0, 1], [0, 1], [0, 1]).update([1], [1], [0]).n_samples
    3
    >>> h.compute().sum()
    np.int64(3)
    """

    def __init__(self, n_y: int, n_t: int, n_s: int):
        self._sizes = _sizes((np.zeros(0, np.int64),) * 3, (n_y, n_t, n_s), "JointHistogram()")
        self.counts = np.zeros(self._sizes, dtype=np.int64)

    @property
    def n_samples(self) -> int:
        return int(self.counts.sum())

    def update(self, y: ArrayLike, t: ArrayLike, s: ArrayLike) -> JointHistogram:
        """Count one batch of codes (returns ``self``)."""
        caller = "JointHistogram.update()"
        cy, ct, cs = _validated(y, t, s, caller)
        _count(cy, ct, cs, self._sizes, caller, counts=self.counts)
        return self

    def merge(self, other: JointHistogram) -> JointHistogram:
        """Add the counts of another histogram with the same alphabet sizes (returns ``self``)."""
        if not isinstance(other, JointHistogram) or other.counts.shape != self.counts.shape:
            got = other.counts.shape if isinstance(other, JointHistogram) else type(other).__name__
            raise ValueError(
                f"JointHistogram.merge() expects a JointHistogram of shape {self.counts.shape}; got {got}."
            )
        self.counts += other.counts
        return self

    def reset(self) -> JointHistogram:
        self.counts[...] = 0
        return self

    def compute(self, *, normalize: bool = False) -> NDArray[Any]:
        """The counts so far (a copy), or their pmf with ``normalize=True``."""
        if normalize:
            n = self.n_samples
            if n == 0:
                raise ValueError("JointHistogram.compute() cannot normalize: no samples were counted yet.")
            return self.counts / n
        return self.counts.copy()
