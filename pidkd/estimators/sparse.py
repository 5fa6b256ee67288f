"""Joint distributions stored by their non-zero cells: what the sparse BROJA path takes.

:class:`SparseJoint` holds a validated pmf p[y, t, s] as coordinate arrays and positive values;
:func:`pidkd.pid` and :func:`pidkd.pid_batch` build one from a 3-d ``scipy.sparse.coo_array``, a
pydata ``sparse.COO``, a ``{(y, t, s): p}`` mapping or a ``dit.Distribution`` without ever making
the dense array (the checks and their messages are in :mod:`pidkd._validation`), and
:func:`pidkd.estimators.joint_histogram` returns one for samples whose dense table would be large.
Its cost in memory is that of its non-zero cells, whatever ``shape`` is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["SparseJoint"]


@dataclass(frozen=True, eq=False)
class SparseJoint:
    """A joint pmf ``p[y, t, s]`` kept as its non-zero cells (sorted by (y, t, s), no duplicates).

    Build one with :func:`pidkd._validation.as_joint_pmf` (from any supported sparse input) or
    :meth:`from_cells`; a SparseJoint passed to :func:`pidkd.pid` is solved on its support.

    Attributes
    ----------
    shape : tuple of int
        (n_y, n_t, n_s); symbols that never occur cost nothing.
    y, t, s : ndarray of int64
        Coordinates of the non-zero cells.
    p : ndarray of float64
        Their probabilities: positive, summing to 1.

    Examples
    --------
    >>> sp = SparseJoint.from_cells((2, 2, 2), [0, 1], [0, 1], [0, 1], [0.5, 0.5])
    >>> sp.nnz, float(sp.todense()[1, 1, 1])
    (2, 0.5)
    """

    shape: tuple[int, int, int]
    y: NDArray[np.int64]
    t: NDArray[np.int64]
    s: NDArray[np.int64]
    p: NDArray[np.float64]

    ndim = 3

    @classmethod
    def from_cells(cls, shape: Any, y: Any, t: Any, s: Any, p: Any) -> SparseJoint:
        """A SparseJoint of already valid cells: coordinates inside ``shape``, no duplicates, ``p`` > 0
        summing to 1 (zeros are dropped; the cells are sorted here). Use
        :func:`pidkd._validation.as_joint_pmf` for input that needs checking."""
        shape = tuple(int(n) for n in shape)
        y, t, s = (np.asarray(v, dtype=np.int64).reshape(-1) for v in (y, t, s))
        p = np.asarray(p, dtype=np.float64).reshape(-1)
        keep = p > 0
        if not keep.all():
            y, t, s, p = y[keep], t[keep], s[keep], p[keep]
        order = np.lexsort((s, t, y))
        return cls(shape, y[order], t[order], s[order], p[order])  # type: ignore[arg-type]

    @property
    def nnz(self) -> int:
        """Number of non-zero cells."""
        return int(self.p.size)

    @property
    def size(self) -> int:
        """Number of cells of the dense array (``n_y * n_t * n_s``), which is never built here."""
        return int(np.prod(self.shape, dtype=np.float64))

    def todense(self) -> NDArray[np.float64]:
        """The dense array p[y, t, s] (allocates ``size`` doubles)."""
        out = np.zeros(self.shape)
        out[self.y, self.t, self.s] = self.p
        return out

    def to_coo(self) -> Any:
        """The same pmf as a 3-d ``scipy.sparse.coo_array``."""
        import scipy.sparse

        return scipy.sparse.coo_array((self.p, (self.y, self.t, self.s)), shape=self.shape)

    def pairs(self, axis: int) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
        """The occurring (y, t) pairs (``axis=1``) or (y, s) pairs (``axis=2``), sorted, and their marginal."""
        other = self.t if axis == 1 else self.s
        n = self.shape[axis]
        key, inverse = np.unique(self.y * n + other, return_inverse=True)
        return key // n, key % n, np.bincount(inverse.reshape(-1), weights=self.p)

    def marginal(self, axis: int) -> NDArray[np.float64]:
        """The marginal of one axis (0: Y, 1: T, 2: S), dense over that axis."""
        return np.bincount((self.y, self.t, self.s)[axis], weights=self.p, minlength=self.shape[axis])

    def __repr__(self) -> str:
        return f"SparseJoint(shape={self.shape}, nnz={self.nnz})"
