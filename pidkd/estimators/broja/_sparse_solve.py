"""The sparse path of :func:`pidkd.estimators.broja.broja_decompositions`: which path a pmf takes, and
the candidate optimum of a :class:`~pidkd.estimators.sparse.SparseJoint` (informations, closed forms,
the support solver of :mod:`pidkd.estimators.broja._sparse_newton`), never building the dense array.

Which path (:func:`route`), chosen by measurement (``benchmarks/sparse_support.py``,
docs/benchmarks/sparse.md, 2 shared cores, whose times vary up to 2x between runs): per support cell the
support solver costs far more than the dense solver's compiled loops per dense cell, and wins only on the
sparsest supports (40x32x32 pmfs: 0.07 s on the support against 0.18 s dense with 1/64 of the cells on the
support, 0.16 against 0.24 s at 1/16, 0.39 against 0.33 s at 1/4, 1.3 against 0.22 s at 0.56; 200x24x24: 0.17
against 0.55 s at 1/36, 0.48 against 0.68 s at 1/9, 6.8 against 0.87 s at 0.44; on a larger table the dense
path wins earlier: a label-permuted 1000x64x64 sample table with 1/13 of its cells on the support took 59-69 s
dense and 86 s on the support). So a pmf whose support cells (the (y, t, s) with P(y, t) > 0 and P(y, s) > 0)
fill more than ``1 / SPARSE_RATIO`` of its dense size runs on the dense path when that has at most
:data:`DENSE_MAX_SIZE` cells. Larger sparse input stays sparse, whatever its support (memory: the dense solver
peaked at about 20 doubles per dense cell; a 1000x64x64 sample table, 1/240 of it occupied and 1/76 on the
support: 12-17 s and 470 MB peak on the support, 47-56 s and 900 MB dense). A dense array of at least
:data:`AUTO_SPARSE_SIZE` cells whose support is below ``1 / SPARSE_RATIO`` runs on the support; every smaller
dense input stays on the dense path, as before.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from pidkd.estimators.broja._certificate import Candidate
from pidkd.estimators.sparse import SparseJoint

__all__ = ["AUTO_SPARSE_SIZE", "DENSE_MAX_SIZE", "SPARSE_RATIO", "informations", "route", "solve_sparse"]

#: A pmf runs on the support when its support cells are fewer than 1 / SPARSE_RATIO of its dense size.
SPARSE_RATIO = 32.0
#: Sparse input whose dense form has at most this many cells and a support above that fraction is densified
#: (8 M cells: about 1.3 GB at the dense solver's peak; a permuted-label resample of the 1000x64x64 sample table
#: has 1/13 of its cells on the support, where the support solver is many times slower than the dense one).
DENSE_MAX_SIZE = 8_000_000
#: Dense input with at least this many cells and a sparse enough support runs on the support.
AUTO_SPARSE_SIZE = 1_000_000


def support_cells(sp: SparseJoint) -> int:
    """Number of support cells: sum over labels of (codes t met) x (codes s met)."""
    n_t = np.bincount(sp.pairs(1)[0], minlength=sp.shape[0])
    n_s = np.bincount(sp.pairs(2)[0], minlength=sp.shape[0])
    return int((n_t.astype(np.int64) * n_s).sum())


def route(p: Any) -> Any:
    """The form a validated pmf is solved in: a dense array or a SparseJoint (see the module docstring)."""
    if isinstance(p, SparseJoint):
        if p.size <= DENSE_MAX_SIZE and support_cells(p) * SPARSE_RATIO >= p.size:
            return p.todense()
        return p
    if p.size >= AUTO_SPARSE_SIZE:
        y, t, s = np.nonzero(p)
        sp = SparseJoint.from_cells(p.shape, y, t, s, p[y, t, s])
        if support_cells(sp) * SPARSE_RATIO < p.size:
            return sp
    return p


def _entropy(w: NDArray[np.float64]) -> float:
    w = w[w > 0]
    return float(-(w * np.log(w)).sum())


def informations(sp: SparseJoint) -> tuple[float, float, float, float]:
    """I(Y;T), I(Y;S), I(Y;T,S) and H(Y|S) in nats, from the non-zero cells."""
    h_y, h_t, h_s = (_entropy(sp.marginal(k)) for k in range(3))
    h_yt, h_ys = _entropy(sp.pairs(1)[2]), _entropy(sp.pairs(2)[2])
    _, ts = np.unique(sp.t * sp.shape[2] + sp.s, return_inverse=True)
    h_ts = _entropy(np.bincount(ts.reshape(-1), weights=sp.p))
    h_yts = _entropy(sp.p)
    return h_y + h_t - h_yt, h_y + h_s - h_ys, h_y + h_ts - h_yts, h_ys - h_s


def closed_form(sp: SparseJoint, info: tuple[float, float, float, float], *, t_independent: bool) -> Candidate:
    """The closed-form optimum when I(Y;T) = 0 (Q = P(y,s) P(t)) or I(Y;S) = 0 (Q = P(y,t) P(s)), certified
    without building Q: H_Q(Y|T,S) is H(Y|S) or H(Y|T), and the residual is that of Q's other marginal,
    P(y) P(t) (or P(y) P(s)) against P(y, t) (P(y, s)), over every pair of occurring symbols."""
    axis = 1 if t_independent else 2
    py, pc = sp.marginal(0), sp.marginal(axis)
    pair_y, pair_c, pair_p = sp.pairs(axis)
    residual = float(np.abs(py[pair_y] * pc[pair_c] - pair_p).max())
    ys, cs = np.flatnonzero(py > 0), np.flatnonzero(pc > 0)
    if pair_p.size < ys.size * cs.size:  # pairs of occurring symbols that never occur together
        if ys.size * cs.size <= 10_000_000:
            prod = py[ys, None] * pc[None, cs]
            prod[np.searchsorted(ys, pair_y), np.searchsorted(cs, pair_c)] = 0.0
            residual = max(residual, float(prod.max()))
        else:  # an upper bound on their P(y) P(c)
            residual = max(residual, float(py.max() * pc.max()))
    mi_t, mi_s, _, h_y_given_s = info
    h_opt = h_y_given_s if t_independent else h_y_given_s - mi_t + mi_s  # H(Y|T) = H(Y|S) - I(Y;T) + I(Y;S)
    return Candidate(None, None, None, "optimal", 0, 0.0, "closed_form", (residual, h_opt, 0.0))


def solve_sparse(sp: SparseJoint, tol_nats: float, residual_tol: float, max_iter: int) -> Candidate:
    """The support solver's certified candidate; ``q`` is a 3-d ``scipy.sparse.coo_array`` of the support."""
    import scipy.sparse

    from pidkd.estimators.broja._sparse_newton import solve_support
    from pidkd.estimators.broja._support import Support

    sup = Support.of(sp)
    res = solve_support(sup, gap_tol=tol_nats, residual_tol=residual_tol, max_iter=max_iter)
    q = scipy.sparse.coo_array((res.q, sup.cells()), shape=sp.shape)
    status = "optimal" if res.converged else "max_iter"
    return Candidate(q, None, None, status, res.n_iter, res.solve_time, "NEWTON-sparse", (res.residual, res.h, res.gap))
