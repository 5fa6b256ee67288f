"""The support of a BROJA programme: its cells, pairs and blocks as index arrays.

The programme max_{Q in Delta_P} H_Q(Y|T,S) only has variables on the *support cells* (y, t, s) with
P(y, t) > 0 and P(y, s) > 0; its dual only on the occurring (y, t) and (y, s) pairs. :class:`Support`
lists them: cells sorted by block (t, s), each with its (y, t) pair ``ci`` and (y, s) pair ``cj``.
Memory and work are linear in the number of cells (plus the pairs and blocks), whatever the shape.
The support certificate (:func:`certify_support`) is the dense certificate's arithmetic
(:func:`pidkd.estimators.broja._certificate.certify`) on these cells.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from pidkd.estimators.sparse import SparseJoint

__all__ = ["Support"]


@dataclass(eq=False)
class Support:
    """Index arrays of one programme's support (see the module docstring)."""

    shape: tuple[int, int, int]
    pyt: NDArray[np.float64]  # [n_a] P(y, t) of the occurring (y, t) pairs, sorted by (y, t)
    pys: NDArray[np.float64]  # [n_b] P(y, s)
    yt_y: NDArray[np.int64]  # label and code of every pair
    yt_t: NDArray[np.int64]
    ys_y: NDArray[np.int64]
    ys_s: NDArray[np.int64]
    yt_ptr: NDArray[np.int64]  # [n_y + 1] pairs of label y: yt_ptr[y] .. yt_ptr[y + 1]
    ys_ptr: NDArray[np.int64]
    ci: NDArray[np.int64]  # [K] cells, sorted by block
    cj: NDArray[np.int64]
    ptr: NDArray[np.int64]  # [G + 1] cells of block g: ptr[g] .. ptr[g + 1]
    bt: NDArray[np.int64]  # [G] code t and s of every block
    bs: NDArray[np.int64]
    blk: NDArray[np.int64]  # [K] block of every cell
    pt: NDArray[np.float64]  # [n_t] P(t), P(s) (dense over the codes)
    ps: NDArray[np.float64]

    @classmethod
    def of(cls, sp: SparseJoint) -> Support:
        """The support of a validated sparse pmf."""
        from pidkd.estimators.broja._sparse_kernel import build_cells, build_sorted

        n_y, n_t, n_s = sp.shape
        yt_y, yt_t, pyt = sp.pairs(1)
        ys_y, ys_s, pys = sp.pairs(2)
        yt_ptr = np.concatenate([[0], np.cumsum(np.bincount(yt_y, minlength=n_y))]).astype(np.int64)
        ys_ptr = np.concatenate([[0], np.cumsum(np.bincount(ys_y, minlength=n_y))]).astype(np.int64)
        n_cells = int((np.diff(yt_ptr) * np.diff(ys_ptr)).sum())
        if n_t * n_s <= 4 * n_cells + 1_000_000:  # a counting sort over the (t, s) keys: no key array, no sort
            table, gid = np.zeros(n_t * n_s, dtype=np.int64), np.empty(n_t * n_s, dtype=np.int64)
            ci, cj, blk, ptr, bt, bs = build_sorted(yt_ptr, ys_ptr, yt_t, ys_s, n_s, n_cells, table, gid)
            del table, gid
        else:  # codes too many for a table over (t, s): sort the keys
            ci, cj, key = build_cells(yt_ptr, ys_ptr, yt_t, ys_s, n_s, n_cells)
            keys, blk = np.unique(key, return_inverse=True)
            del key
            blk = blk.reshape(-1)
            order = np.argsort(blk, kind="stable")
            ci, cj, blk = ci[order], cj[order], blk[order].astype(np.int64)
            ptr = np.concatenate([[0], np.cumsum(np.bincount(blk, minlength=keys.size))]).astype(np.int64)
            bt, bs = keys // n_s, keys % n_s
        return cls(
            shape=sp.shape,
            pyt=pyt,
            pys=pys,
            yt_y=yt_y,
            yt_t=yt_t,
            ys_y=ys_y,
            ys_s=ys_s,
            yt_ptr=yt_ptr,
            ys_ptr=ys_ptr,
            ci=ci,
            cj=cj,
            ptr=ptr,
            bt=bt,
            bs=bs,
            blk=blk,
            pt=sp.marginal(1),
            ps=sp.marginal(2),
        )

    @property
    def n_cells(self) -> int:
        return int(self.ci.size)

    @property
    def n_blocks(self) -> int:
        return int(self.bt.size)

    def nbytes(self) -> int:
        """Bytes held by the index arrays."""
        return sum(v.nbytes for v in vars(self).values() if isinstance(v, np.ndarray))

    def cells(self) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
        """(y, t, s) of every cell, in the solver's (block) order."""
        return self.yt_y[self.ci], self.yt_t[self.ci], self.ys_s[self.cj]


def certify_support(
    sup: Support, q: NDArray[np.float64], a: NDArray[np.float64] | None, b: NDArray[np.float64] | None
) -> tuple[float, float, float]:
    """(residual, H_q(Y|T,S) in nats, dual bound in nats) of cell masses ``q`` with multipliers ``a``, ``b``.

    The same residual, entropy and bound as :func:`pidkd.estimators.broja._certificate.certify` of the
    dense arrays (pairs and blocks outside the support have no mass and no constraint); the bound is
    NaN without multipliers.
    """
    from pidkd.estimators.broja._sparse_kernel import certificate

    dual = a is not None and b is not None
    a_ = np.zeros(sup.pyt.size) if a is None else np.ascontiguousarray(a, dtype=np.float64)
    b_ = np.zeros(sup.pys.size) if b is None else np.ascontiguousarray(b, dtype=np.float64)
    res, h, bound = certificate(
        np.ascontiguousarray(q, dtype=np.float64),
        sup.ci,
        sup.cj,
        sup.ptr,
        sup.bt,
        sup.bs,
        sup.pyt,
        sup.pys,
        sup.pt,
        sup.ps,
        a_,
        b_,
        dual,
    )
    return float(res), float(h), float(bound)
