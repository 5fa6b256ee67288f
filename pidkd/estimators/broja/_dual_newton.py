"""pidkd's own BROJA solver: Newton's method on a smoothed dual, driven to a certified gap.

The BROJA programme max_{Q in Delta_P} H_Q(Y|T,S) has the dual (see :mod:`pidkd.estimators.broja`)

    min_{a,b}  sum a(y,t) P(y,t) + sum b(y,s) P(y,s)   s.t.  L_ts(a,b) <= 0 for all (t,s),
    L_ts = log sum_y exp(-a(y,t) - b(y,s)).

Its constraints make it non-smooth: at the optimum only some (t,s) blocks carry mass (the optimal
Q(t,s) is sparse, like an optimal transport plan), which is also why generic interior-point
solvers stall at gaps of 1e-8 to 1e-6 bits on it. We solve it with the *exponential multiplier
method* (Tseng and Bertsekas 1993): each constraint is replaced by eps * mu_ts * exp(L_ts / eps),

    F(a, b) = a.P_yt + b.P_ys + eps * sum_ts mu_ts exp(L_ts / eps),

a smooth convex function of only |Y|(|T|+|S|) variables. Its minimiser gives the primal point
Q(y,t,s) = m_ts softmax_y(-a-b) with masses m_ts = mu_ts exp(L_ts / eps), and the gradient of F is
exactly the marginal residual of that Q. After each minimisation the masses become the next
multipliers (mu <- m) and eps shrinks to a floor; L_ts <= 0 then holds in the limit without
eps -> 0, so the Newton systems stay well conditioned. The Hessian has one |Y|x|Y| block per t,
one per s and one coupling block per (t, s), each a diagonal plus a rank-one matrix. Newton steps
are solved by a dense Schur complement on the s side (few labels), through the structure
(per-label blocks plus |T||S| rank-one terms, Woodbury; many labels, few cells), whichever costs
fewer flops for the shape (:func:`_step_cost`), or, when both are costly, by conjugate gradients
preconditioned with the per-label blocks and the rank-one terms of the cells that matter
(:mod:`pidkd.estimators.broja._pcg`). After every stage
:func:`pidkd.estimators.broja._certificate.certify` measures the residual and the duality gap of the
current (Q, a, b); the solver stops on ``gap <= tol``, never on an
iteration count alone (``max_iter`` only ends a solve that is then reported as not converged).

Problems are solved in batches: all arrays carry a leading batch axis, every problem follows its
own schedule of stages, and only the problems still running are computed on. Problems with at most
:data:`DENSE_MAX_VARS` dual variables run in the compiled kernel of
:mod:`pidkd.estimators.broja._kernels` (same algorithm, dense Hessian).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import scipy.linalg.lapack
from numpy.typing import NDArray

from pidkd.estimators.broja._certificate import Certificate, certify
from pidkd.estimators.broja._schedule import (
    _FAR,
    _MAX_STAGES,
    NUMPY,
    PCG_SHRINK,
    PCG_SHRINK_CELLS,
    RIDGE,
    RIDGE_FLOOR,
    SHRINK,
    _blas_threads,
    _stage_shift,
)

__all__ = ["DualNewtonResult", "SchurStep", "WoodburyStep", "make_step", "solve"]

#: Largest |Y|(|T|+|S|) solved by the dense numba kernel (pidkd.estimators.broja._kernels).
DENSE_MAX_VARS = 320
#: Largest per-label block (|T|+|S| rows) inverted by the compiled kernel; LAPACK beyond.
COMPILED_BLOCKS = 128
#: "auto" takes the PCG step (:mod:`pidkd.estimators.broja._pcg`) when the cheaper factorisation costs at
#: least this many flops per step and there are at least PCG_MIN_LABELS labels (chosen by measurement:
#: with 2 or 3 labels the dense Schur step stays faster up to 2x200x200).
PCG_MIN_FLOPS = 5e6
PCG_MIN_LABELS = 4


@dataclass
class DualNewtonResult:
    q: NDArray[np.float64]  # [B, y, t, s]
    a: NDArray[np.float64]  # [B, y, t]
    b: NDArray[np.float64]  # [B, y, s]
    cert: Certificate
    converged: NDArray[np.bool_]  # [B] gap and residual within tolerance
    n_iter: NDArray[np.int64]  # [B] Newton iterations
    solve_time: float


class _Problems:
    """A batch of same-shaped problems in (batch, t, s, y) layout."""

    def __init__(self, p: NDArray[np.float64], step: Any = "auto"):
        self.p = p
        self.n_b, self.n_y, self.n_t, self.n_s = p.shape
        self.orig = np.arange(self.n_b)  # problem numbers in the whole batch (PCG keeps state per problem)
        self.pyt = p.sum(axis=3).transpose(0, 2, 1).copy()  # [B, t, y]
        self.pys = p.sum(axis=2).transpose(0, 2, 1).copy()  # [B, s, y]
        # [B, t, s]: blocks with a cell, i.e. a label y with P(y, t) > 0 and P(y, s) > 0
        self.nonempty = np.einsum("bty,bsy->bts", (self.pyt > 0).astype(float), (self.pys > 0).astype(float)) > 0
        self.dummy_a = (self.pyt <= 0).astype(float)  # variables that touch no cell
        self.dummy_b = (self.pys <= 0).astype(float)
        # Gauge: a(y,.) + c, b(y,.) - c leaves F unchanged; pin one b per y in the Newton system.
        self.pin = np.argmax(self.pys, axis=1)  # [B, y] -> s
        pairs = cells = None
        if isinstance(step, str) and step == "auto":
            # cells each label can reach: the capacitance kernel visits only pairs of those
            reach = (self.pyt > 0).sum(axis=1) * (self.pys > 0).sum(axis=1)  # [B, y]
            pairs, cells = float((reach**2).sum(axis=1).mean()), int(self.nonempty.any(axis=0).sum())
        self.step = make_step(step, (self.n_y, self.n_t, self.n_s), pairs, cells)

    def take(self, idx: NDArray[np.intp]) -> _Problems:
        """The sub-batch of problems ``idx`` (sorted, as from np.flatnonzero): this batch itself if it is all."""
        if idx.size == self.n_b:
            return self
        sub = object.__new__(_Problems)
        sub.n_b, sub.n_y, sub.n_t, sub.n_s, sub.step = idx.size, self.n_y, self.n_t, self.n_s, self.step
        sub.orig = self.orig[idx]
        for name in ("p", "pyt", "pys", "nonempty", "dummy_a", "dummy_b", "pin"):
            setattr(sub, name, getattr(self, name)[idx])
        return sub

    def evaluate(self, a, b, eps, mu):
        """F [B], L [B,t,s], softmax r [B,t,s,y], masses m [B,t,s] (0 on empty blocks); compiled, one pass."""
        from pidkd.estimators.broja._cell_kernel import evaluate

        threads = True
        if self.step.name == "pcg":  # small problems' evaluations are faster on the calling thread
            from pidkd.estimators.broja._pcg import PARALLEL_SIZE

            threads = self.n_y * self.n_t * self.n_s >= PARALLEL_SIZE
        return evaluate(a, b, eps, mu, self.pyt, self.pys, threads=threads)

    def gradient(self, r, m, idx=None):
        """(ga [B,t,y], gb [B,s,y], residual [B]): the marginal residual of Q = m r (compiled); with
        ``idx``, of the problems ``idx`` (r and m given for those only)."""
        from pidkd.estimators.broja._cell_kernel import gradient

        if idx is None or idx.size == self.n_b:
            return gradient(self.pyt, self.pys, r, m)
        return gradient(self.pyt[idx], self.pys[idx], r, m)

    def newton_step(self, r, m, ga, gb, eps):
        """Solve H d = -g for every problem of the batch, with this batch's step object."""
        return self.step(self, r, m, ga, gb, eps)

    def block_inverses(self, w, ridge):
        """M_y^-1 of every problem and label [B, y, n, n], with the pinned row and column 0 (the pinned
        variable is not a variable: M^-1 acts on the others). A block the Cholesky factorisation cannot
        invert gets its pseudo-inverse, or NaN if it has non-finite entries. Compiled Cholesky up to
        :data:`COMPILED_BLOCKS` rows, LAPACK beyond (much faster for large blocks).
        """
        n = self.n_t + self.n_s
        if n <= COMPILED_BLOCKS:
            from pidkd.estimators.broja._woodbury_kernel import label_inverses

            minv, ok = label_inverses(w, self.dummy_a, self.dummy_b, ridge, self.pin)
            if not ok.all():
                minv[~ok] = _inv_spd(self._label_blocks(w, ridge)[~ok])
        else:
            minv = self._label_blocks(w, ridge)
            for blk in minv.reshape(-1, n, n):
                chol, info = scipy.linalg.lapack.dpotrf(blk, lower=0, clean=0)
                if info == 0:
                    inv, info = scipy.linalg.lapack.dpotri(chol, lower=0)
                blk[:] = np.triu(inv) + np.triu(inv, 1).T if info == 0 else _inv_spd(blk[None])[0]
        ib, iy, pin = np.arange(self.n_b)[:, None], np.arange(self.n_y)[None, :], self.n_t + self.pin
        minv[ib, iy, pin, :] = 0.0
        minv[ib, iy, :, pin] = 0.0
        return minv

    def _label_blocks(self, w, ridge):
        """The per-label blocks M_y [B, y, n, n] in numpy (pinned variable: unit row and column)."""
        nb, n_y, n_t, n_s = self.n_b, self.n_y, self.n_t, self.n_s
        it, is_ = np.arange(n_t), n_t + np.arange(n_s)
        mat = np.zeros((nb, n_y, n_t + n_s, n_t + n_s))
        mat[:, :, it, it] = (w.sum(axis=2) + self.dummy_a).transpose(0, 2, 1) + ridge[:, None, None]
        mat[:, :, is_, is_] = (w.sum(axis=1) + self.dummy_b).transpose(0, 2, 1) + ridge[:, None, None]
        mat[:, :, :n_t, n_t:] = w.transpose(0, 3, 1, 2)  # d2F / da(y,t) db(y,s) = w_ts(y)
        mat[:, :, n_t:, :n_t] = w.transpose(0, 3, 2, 1)
        ib, iy, pin = np.arange(nb)[:, None], np.arange(n_y)[None, :], n_t + self.pin
        mat[ib, iy, pin, :] = 0.0
        mat[ib, iy, :, pin] = 0.0
        mat[ib, iy, pin, pin] = 1.0
        return mat


class SchurStep:
    """Newton step by the dense Schur complement on the s side (few labels): solves H d = -g for every problem of
    the batch."""

    name = "schur"

    @staticmethod
    def cost(n_y: int, n_t: int, n_s: int, pairs: float | None = None, cells: int | None = None) -> float:
        """(|S||Y|)^3 / 3 flops for the Cholesky plus 2 |T||Y| (|S||Y|)^2 for forming the complement."""
        return (n_s * n_y) ** 3 / 3 + 2 * (n_t * n_y) * (n_s * n_y) ** 2

    def __call__(self, pr: _Problems, r, m, ga, gb, eps):
        nb, n_y, n_t, n_s = pr.n_b, pr.n_y, pr.n_t, pr.n_s
        w = m[..., None] * r  # [B, t, s, y]
        k = ((1.0 / eps - 1.0)[:, None, None, None, None]) * (w[..., :, None] * r[..., None, :])
        iy = np.arange(n_y)
        k[..., iy, iy] += w
        da_blk = k.sum(axis=2)  # [B, t, y, y]
        db_blk = k.sum(axis=1)  # [B, s, y, y]
        # Dummy variables get a unit diagonal; a tiny ridge keeps blocks whose masses all
        # underflowed invertible (the line search then controls the long step).
        ridge = RIDGE * np.abs(k).max(axis=(1, 2, 3, 4)) + RIDGE_FLOOR
        da_blk[..., iy, iy] += pr.dummy_a + ridge[:, None, None]
        db_blk[..., iy, iy] += pr.dummy_b + ridge[:, None, None]
        da_inv = _inv_spd(da_blk)
        c = k.transpose(0, 1, 3, 2, 4).reshape(nb, n_t * n_y, n_s * n_y)
        dinv_c = np.matmul(da_inv[:, :, None], k).transpose(0, 1, 3, 2, 4).reshape(nb, n_t * n_y, n_s * n_y)
        schur = -np.matmul(c.transpose(0, 2, 1), dinv_c)
        blocks = schur.reshape(nb, n_s, n_y, n_s, n_y)
        i_s = np.arange(n_s)
        blocks[:, i_s, :, i_s, :] += db_blk.transpose(1, 0, 2, 3)
        ra, rb = -ga.reshape(nb, -1), -gb.reshape(nb, -1)
        rhs = rb - np.einsum("bij,bi->bj", dinv_c, ra)
        pin = pr.pin * n_y + iy  # [B, y]
        ib = np.arange(nb)[:, None]
        schur[ib, pin, :] = 0.0
        schur[ib, :, pin] = 0.0
        schur[ib, pin, pin] = 1.0
        rhs[ib, pin] = 0.0
        db = _solve_spd(schur, rhs)
        da = np.einsum("btyz,btz->bty", da_inv, (ra - np.einsum("bij,bj->bi", c, db)).reshape(nb, n_t, n_y))
        return da, db.reshape(nb, n_s, n_y)


class WoodburyStep:
    """Newton step through the structure of H: per-label blocks plus |T||S| rank-one terms.

    The block of (t, s) in F is m_ts (diag(r) + (1/eps - 1) r r^T) in x_y = -(a(y,t) + b(y,s)).
    Its diagonal part decouples by label: for every y one (|T|+|S|)-square block M_y (a
    bipartite Laplacian weighted by w = m r). The rest is sum_ts u_ts u_ts^T with
    u_ts(y) = sqrt(m_ts (1/eps - 1)) r_ts(y) on a(y,t) and b(y,s). With U = [u_ts], Woodbury:
    H^-1 = M^-1 - M^-1 U C^-1 U^T M^-1, C = I + U^T M^-1 U of size |T||S|. Cost per step
    O(|Y| (|T|+|S|)^3 + |Y| (|T||S|)^2 + (|T||S|)^3) instead of O((|Y||S|)^3 + |T||Y|^3|S|^2).
    The gauge pin and the dummy variables are handled as in :class:`SchurStep`.
    """

    name = "woodbury"

    @staticmethod
    def cost(n_y: int, n_t: int, n_s: int, pairs: float | None = None, cells: int | None = None) -> float:
        """Per-label blocks plus the capacitance system over the ``cells`` (t, s) that some label reaches
        (default |T||S|); ``pairs`` is the sum over labels of the squared number of cells the label
        reaches (default |Y| (|T||S|)^2), which is what the capacitance kernel visits."""
        cells = n_t * n_s if cells is None else cells
        pairs = n_y * (n_t * n_s) ** 2 if pairs is None else pairs
        return n_y * (n_t + n_s) ** 3 + 3 * pairs + cells**3 / 3

    def __call__(self, pr: _Problems, r, m, ga, gb, eps):
        nb, n_y, n_t, n_s = pr.n_b, pr.n_y, pr.n_t, pr.n_s
        w = m[..., None] * r  # [B, t, s, y]
        inv_eps = 1.0 / eps
        ridge = RIDGE * (w.max(axis=(1, 2, 3)) * np.maximum(inv_eps, 1.0)) + RIDGE_FLOOR  # w >= 0 (or NaN)
        from pidkd.estimators.broja._woodbury_kernel import backward, capacitance, forward

        minv = pr.block_inverses(w, ridge)
        # rho[b, t, s, y] = sqrt(c_ts) r_ts(y): the entries of u_ts at a(y,t) and at b(y,s)
        c = np.maximum(m * (inv_eps - 1.0)[:, None, None], 0.0)
        rho = np.sqrt(c)[..., None] * r
        used = pr.nonempty.any(axis=0)  # [t, s]: cells outside it have rho = 0 and z = 0
        cap = capacitance(rho, minv, used)
        cap[:, np.arange(cap.shape[1]), np.arange(cap.shape[1])] += 1.0
        g = -np.concatenate([ga, gb], axis=1)  # [B, n, y]: -gradient
        g[np.arange(nb)[:, None], n_t + pr.pin, np.arange(n_y)[None, :]] = 0.0  # pinned: not a variable
        mg, utmg = forward(minv, rho, g)  # M^-1 g and U^T M^-1 g
        z = np.zeros((nb, n_t, n_s))
        z[:, used] = _solve_spd(cap, utmg[:, used])
        d = backward(minv, rho, z, mg)  # M^-1 g - M^-1 U C^-1 U^T M^-1 g
        return d[:, :n_t], d[:, n_t:]


#: The exact Newton steps by name; "pcg" (:class:`pidkd.estimators.broja._pcg.PcgStep`) is imported on
#: first use (it needs Numba).
FACTORISATIONS = {"schur": SchurStep, "woodbury": WoodburyStep}


def _step_cost(n_y: int, n_t: int, n_s: int, pairs: float | None = None, cells: int | None = None) -> tuple[str, float]:
    """The cheaper exact Newton step of a problem shape (:data:`FACTORISATIONS`), and its flops per step."""
    costs = {name: cls.cost(n_y, n_t, n_s, pairs, cells) for name, cls in FACTORISATIONS.items()}
    name = "woodbury" if costs["woodbury"] < costs["schur"] else "schur"
    return name, costs[name]


def make_step(step: Any, shape: tuple[int, int, int], pairs: float | None = None, cells: int | None = None) -> Any:
    """The Newton step object for ``step``: "auto", a name ("schur", "woodbury", "pcg") or an object.

    "auto" takes the exact step with fewer flops for the shape (:func:`_step_cost`), or the PCG step
    when that costs at least :data:`PCG_MIN_FLOPS` and there are :data:`PCG_MIN_LABELS` labels or
    more (chosen by measurement). An object is used as it is: it has a ``name`` and is called as
    ``step(problems, r, m, ga, gb, eps) -> (da, db)`` (see :class:`SchurStep`), so a test or a user
    can pass a step of their own.
    """
    if not isinstance(step, str):
        if not (callable(step) and isinstance(getattr(step, "name", None), str)):
            raise TypeError(f"A Newton step object must be callable and have a str `name`; got {type(step).__name__}.")
        return step
    if step not in ("auto", "schur", "woodbury", "pcg"):
        raise ValueError(f"The 'step' parameter of solve() must be 'auto', 'schur', 'woodbury' or 'pcg'. Got {step!r}.")
    if step == "auto":
        step, cost = _step_cost(*shape, pairs=pairs, cells=cells)
        if cost >= PCG_MIN_FLOPS and shape[0] >= PCG_MIN_LABELS:
            step = "pcg"
    if step == "pcg":  # compiled kernels: imported on first use (pidkd imports without numba)
        from pidkd.estimators.broja._pcg import PcgStep

        return PcgStep()
    return FACTORISATIONS[step]()


def _swap_sides(shape: tuple[int, ...], step: str) -> bool:
    """Whether to solve a problem of ``shape`` (y, t, s) with T and S swapped (the programme is symmetric).

    The Schur step eliminates the t side and factors the s side, (|S||Y|)^3 flops: a problem whose S
    is the larger alphabet is cheaper swapped (2x2x3000: 17.5 -> 0.35 s; its transpose 2x3000x2:
    0.19 s). The Woodbury and PCG steps cost the same either way.
    """
    n_y, n_t, n_s = shape
    name = step if isinstance(step, str) else step.name
    return name in ("auto", "schur") and _step_cost(n_y, n_s, n_t)[1] < _step_cost(n_y, n_t, n_s)[1]


def _inv_spd(mat: NDArray[np.float64]) -> NDArray[np.float64]:
    """Inverses of a stack of symmetric positive semidefinite matrices, never raising.

    A singular matrix gets its pseudo-inverse; one that cannot be inverted at all (non-finite
    entries from an overflowed trial point) gets NaN, which makes the Newton step no descent
    direction: the stage ends and an unfinished solve is reported as not converged.
    """
    try:
        return np.linalg.inv(mat)
    except np.linalg.LinAlgError:
        pass
    out = np.full_like(mat, np.nan)
    flat, res = mat.reshape(-1, *mat.shape[-2:]), out.reshape(-1, *mat.shape[-2:])
    for i, block in enumerate(flat):
        if np.all(np.isfinite(block)):
            try:
                res[i] = np.linalg.pinv(block, hermitian=True)
            except np.linalg.LinAlgError:
                pass
    return out


def _polish(q: NDArray[np.float64], p: NDArray[np.float64], sweeps: int = 50) -> NDArray[np.float64]:
    """Alternately rescale q[B,y,t,s] to the (y,t) and (y,s) marginals of p (iterative scaling).

    Starting from Newton's nearly feasible q, a few sweeps remove the round-off part of the
    marginal residual (1e-11 -> 1e-16) while moving q by the same relative amount only.
    """
    from pidkd.estimators.broja._cell_kernel import polish

    pyt, pys = p.sum(axis=3).transpose(0, 2, 1), p.sum(axis=2).transpose(0, 2, 1)
    return polish(q.transpose(0, 2, 3, 1), pyt, pys, sweeps).transpose(0, 3, 1, 2)


def _certify(p, m, r, a, b, gap_tol) -> tuple[Certificate, NDArray[np.intp], NDArray[np.float64]]:
    """Certificate of the current primal point; candidates near the tolerance are polished first.

    A gap measured on a q that misses the marginals by 1e-10 can be off by about as much, so a
    gap is only accepted after :func:`_polish` has made q feasible to round-off. Returns the
    certificate, the problems that were polished (``near``) and their polished q.
    """
    q = (m[..., None] * r).transpose(0, 3, 1, 2)
    cert = certify(p, q, a.transpose(0, 2, 1), b.transpose(0, 2, 1))
    near = np.flatnonzero(NUMPY.polish(cert.gap, gap_tol))
    fine_q = _polish(q[near], p[near]) if near.size else q[:0]
    if near.size:
        fine = certify(p[near], fine_q, a[near].transpose(0, 2, 1), b[near].transpose(0, 2, 1))
        for field in ("residual", "h", "bound"):
            getattr(cert, field)[near] = getattr(fine, field)
    return cert, near, fine_q


def _smoothed_gap(pr: _Problems, ln, m) -> NDArray[np.float64]:
    """The duality gap :func:`certify` finds once Q = m r is polished onto the marginals, to first order
    in the marginal residual, in O(cells): the repair (the largest L_ts > 0 per row or column, weighted by
    the row's or column's mass, the cheaper side) minus sum m L.

    With r = exp(-a - b - L), H_Q(Y|T,S) = sum a Q(y,t) + sum b Q(y,s) + sum m L, so for a Q that meets
    the marginals bound - H is exactly repair - sum m L. Only an estimate to decide whether a stage end
    gets the full certificate (its error costs at most a stage); NaN where an entry is not finite.
    """
    ml = np.where(pr.nonempty & (m > 0), m * ln, 0.0).sum(axis=(1, 2))
    viol = np.where(pr.nonempty, np.maximum(ln, 0.0), 0.0)
    repair_t = (viol.max(axis=2) * pr.pyt.sum(axis=2)).sum(axis=1)
    repair_s = (viol.max(axis=1) * pr.pys.sum(axis=2)).sum(axis=1)
    return np.minimum(repair_t, repair_s) - ml


def _solve_spd(mat: NDArray[np.float64], rhs: NDArray[np.float64]) -> NDArray[np.float64]:
    """Solve a stack of symmetric positive (semi)definite systems."""
    if mat.shape[0] == 1:
        _, x, info = scipy.linalg.lapack.dposv(mat[0], rhs[0])  # reads the upper triangle
        if info == 0:
            return x[None]
        return np.linalg.lstsq(mat[0], rhs[0], rcond=None)[0][None]
    try:
        return np.linalg.solve(mat, rhs[..., None])[..., 0]
    except np.linalg.LinAlgError:
        return np.stack([np.linalg.lstsq(m_, r_, rcond=None)[0] for m_, r_ in zip(mat, rhs)])


def solve(
    p: NDArray[np.float64],
    *,
    gap_tol: float,
    residual_tol: float,
    max_iter: int = 500,
    shrink: float | None = None,
    eps_min: float = 1e-8,
    trace: list | None = None,
    kernel: str = "auto",
    step: Any = "auto",
) -> DualNewtonResult:
    """Solve a batch ``p[B, y, t, s]`` of BROJA programmes to ``gap <= gap_tol`` (nats).

    Parameters
    ----------
    p : ndarray, shape (B, n_y, n_t, n_s)
        Validated pmfs.
    gap_tol : float
        Stop a problem once its certified duality gap is at most this (nats) and its marginal
        residual is at most ``residual_tol``.
    max_iter : int
        Newton iterations per problem before it is reported as not converged.
    shrink, eps_min : float
        eps schedule: eps <- max(eps * shrink, eps_min) after every stage. ``shrink=None``:
        :data:`SHRINK`, or :data:`PCG_SHRINK` when the Newton steps are by PCG and the problems have
        at least :data:`PCG_SHRINK_CELLS` cells (t, s).
    trace : list, optional
        Receives (eps, iterations, residual, gap) of problem 0 at every stage (numpy path).
    kernel : {"auto", "numba", "numpy"}
        "auto": the dense numba kernel up to DENSE_MAX_VARS dual variables, numpy beyond.
    step : {"auto", "schur", "woodbury", "pcg"} or a step object
        How the Newton systems are solved on the numpy path (:func:`make_step`); "auto" takes the
        factorisation with fewer flops for the shape (:class:`SchurStep`, :class:`WoodburyStep`),
        or "pcg" when that costs at least :data:`PCG_MIN_FLOPS` and there are
        :data:`PCG_MIN_LABELS` labels or more. "schur" and "woodbury" give the same step up to
        round-off; "pcg" an inexact Newton step (a descent direction), so the iterates differ
        slightly while the certificate is the same. An object is called for every step.
    """
    small = p.shape[1] * (p.shape[2] + p.shape[3]) <= DENSE_MAX_VARS
    if kernel == "numba" or (kernel == "auto" and small and trace is None):
        from pidkd.estimators.broja._kernels import solve_small_batch

        start = time.perf_counter()
        try:
            q, a, b, converged, n_iter = solve_small_batch(
                p,
                gap_tol=gap_tol,
                residual_tol=residual_tol,
                max_iter=max_iter,
                shrink=SHRINK if shrink is None else shrink,
                eps_min=eps_min,
                max_stages=_MAX_STAGES,
            )
        except np.linalg.LinAlgError:  # non-finite values in a kernel: the numpy path reports them per problem
            return _solve(p, gap_tol, residual_tol, max_iter, shrink, eps_min, None, step)
        with np.errstate(divide="ignore", invalid="ignore"):
            cert = certify(p, q, a, b)
        converged &= NUMPY.certified(cert.gap, cert.residual, gap_tol, residual_tol)
        return DualNewtonResult(q, a, b, cert, converged, n_iter, time.perf_counter() - start)
    swap = _swap_sides(p.shape[1:], step)
    if swap:
        p = np.ascontiguousarray(p.transpose(0, 1, 3, 2))
    # Trial points of the line search may overflow; they are rejected (non-finite F), and a NaN
    # reaching the end fails the certificate (gap <= tol is False for NaN), so nothing is hidden.
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"), _blas_threads(1):
        try:
            res = _solve(p, gap_tol, residual_tol, max_iter, shrink, eps_min, trace, step)
        except SystemError as err:  # a Ctrl-C inside one of the step's compiled kernels, as numba raises it
            from pidkd.estimators.broja._kernels import interrupted

            if interrupted(err):
                raise KeyboardInterrupt from err
            raise
    if swap:  # the certificate (residual, H(Y|T,S), gap) is symmetric in T and S
        res = replace(res, q=res.q.transpose(0, 1, 3, 2), a=res.b, b=res.a)
    return res


def _solve(p, gap_tol, residual_tol, max_iter, shrink, eps_min, trace, step) -> DualNewtonResult:
    start = time.perf_counter()
    pr = _Problems(p, step)
    if shrink is None:
        shrink = PCG_SHRINK if pr.step.name == "pcg" and pr.n_t * pr.n_s >= PCG_SHRINK_CELLS else SHRINK
    nb = pr.n_b
    py = p.sum(axis=(2, 3))
    a = np.where(pr.dummy_a > 0, 0.0, -np.log(pr.pyt))
    b = np.where(pr.dummy_b > 0, 0.0, -np.log(pr.pys) + np.log(np.where(py > 0, py, 1.0))[:, None, :] - 1.0)
    # At eps = 1, mu = 1/e this (a, b) is the exact minimiser: Q = P(y,t) P(y,s) / P(y).
    eps = np.ones(nb)
    mu = np.where(pr.nonempty, np.exp(-1.0), 0.0)
    f, ln, r, m = pr.evaluate(a, b, eps, mu)
    ga, gb, res = pr.gradient(r, m)
    n_iter = np.zeros(nb, dtype=np.int64)
    n_stages = np.zeros(nb, dtype=np.int64)
    running = np.ones(nb, dtype=bool)
    converged = np.zeros(nb, dtype=bool)
    stage_end = np.ones(nb, dtype=bool)  # the starting point ends stage 0
    # a converged problem's polished q and its certificate, kept from its last stage end
    final_q = np.empty(p.shape)
    final = {"residual": np.empty(nb), "h": np.empty(nb), "bound": np.empty(nb)}
    while running.any():
        ends = np.flatnonzero(stage_end & running)
        if ends.size:
            # The full certificate only where it can succeed: the gap it would find, estimated cheaply, is
            # near the tolerance or not finite (and always when tracing).
            check = np.ones(ends.size, dtype=bool)
            if trace is None:
                check = ~(_smoothed_gap(pr.take(ends), ln[ends], m[ends]) > _FAR * gap_tol)
            done = np.zeros(ends.size, dtype=bool)
            if check.any():
                sure = ends[check]
                sub = pr.take(sure)
                cert, near, fine_q = _certify(sub.p, m[sure], r[sure], a[sure], b[sure], gap_tol)
                if trace is not None and sure[0] == 0:  # (eps, iterations, residual, gap) of problem 0
                    trace.append((float(eps[0]), int(n_iter[0]), float(cert.residual[0]), float(cert.gap[0])))
                ok = NUMPY.certified(cert.gap, cert.residual, gap_tol, residual_tol)
                done[check] = ok
                keep = ok[near]  # converged implies polished (gap <= tol < 10 tol)
                final_q[sure[near[keep]]] = fine_q[keep]
                for field, values in final.items():
                    values[sure[ok]] = getattr(cert, field)[ok]
            converged[ends] = done
            running[ends] = ~done & NUMPY.more_stages(n_iter[ends], max_iter, n_stages[ends], _MAX_STAGES)
            stage_end[ends] = False
            nxt = ends[running[ends]]
            if nxt.size:
                # Exponential multiplier update, then a predictor: shift a(., t) and b(., s) so that
                # blocks with mass keep it (L_ts ~ 0 where m_ts is large).
                m_n, ln_n = m[nxt], ln[nxt]
                mu[nxt] = NUMPY.next_mu(m_n, pr.nonempty[nxt])
                alpha, beta = _stage_shift(m_n, ln_n)
                a[nxt] += alpha[..., None]
                b[nxt] += beta[..., None]
                shift = alpha[..., None] + beta[:, None, :]
                # The next eps keeps the masses mu exp(L / eps) finite where a stage ended with L_ts > 0.
                with np.errstate(divide="ignore", invalid="ignore"):
                    guard = NUMPY.guard_terms(ln_n - shift, mu[nxt], pr.nonempty[nxt]).max(axis=(1, 2))
                eps[nxt] = NUMPY.next_eps(eps[nxt], shrink, eps_min, guard)
                n_stages[nxt] += 1
                sub = pr.take(nxt)
                f[nxt], ln[nxt], r[nxt], m[nxt] = sub.evaluate(a[nxt], b[nxt], eps[nxt], mu[nxt])
                ga[nxt], gb[nxt], res[nxt] = sub.gradient(r[nxt], m[nxt])
        # Inner tolerance: loose while eps is large (path following), tight at the floor.
        inner_tol = NUMPY.inner_tolerance(eps, eps_min, residual_tol)
        stage_end |= running & ((res <= inner_tol) | (n_iter >= max_iter))
        idx = np.flatnonzero(running & ~stage_end)
        if idx.size:
            _newton_iteration(pr.take(idx), idx, a, b, eps, mu, f, ln, r, m, ga, gb, res, n_iter, stage_end)
    # The returned q: polished, and certified once more where the solve did not converge (a converged
    # problem's state has not changed since its last stage end, whose polished q and certificate are kept).
    rest = np.flatnonzero(~converged)
    if rest.size:
        final_q[rest] = _polish((m[rest, ..., None] * r[rest]).transpose(0, 3, 1, 2), p[rest])
        last = certify(p[rest], final_q[rest], a[rest].transpose(0, 2, 1), b[rest].transpose(0, 2, 1))
        for field, values in final.items():
            values[rest] = getattr(last, field)
    q, cert = final_q, Certificate(**final)
    converged &= NUMPY.certified(cert.gap, cert.residual, gap_tol, residual_tol)  # the returned q
    return DualNewtonResult(
        q=q,
        a=a.transpose(0, 2, 1),
        b=b.transpose(0, 2, 1),
        cert=cert,
        converged=converged,
        n_iter=n_iter,
        solve_time=time.perf_counter() - start,
    )


def _newton_iteration(sub, idx, a, b, eps, mu, f, ln, r, m, ga, gb, res, n_iter, stage_end) -> None:
    """One damped Newton step for the problems ``idx`` (arrays updated in place).

    When ``idx`` is the whole batch (one problem alone, or all of them), ln, r and m are read and
    updated in place rather than copied: r alone has |Y||T||S| entries, and several copies per step
    cost a large problem as much as its evaluations.
    """
    whole = idx.size == a.shape[0]
    a_i, b_i, e_i, mu_i, f_i, res_i = a[idx], b[idx], eps[idx], mu[idx], f[idx], res[idx]
    ga_i, gb_i = ga[idx], gb[idx]
    da, db = sub.newton_step(r if whole else r[idx], m if whole else m[idx], ga_i, gb_i, e_i)
    slope = (ga_i * da).sum(axis=(1, 2)) + (gb_i * db).sum(axis=(1, 2))
    ok_dir = slope < 0  # otherwise round-off level: no descent direction left
    stage_end[idx[~ok_dir]] = True
    n_iter[idx[ok_dir]] += 1
    step = np.where(ok_dir, 1.0, 0.0)
    pending = ok_dir.copy()
    # In the quadratic region F changes below its round-off, so Armijo cannot judge the step:
    # there the full Newton step is taken if it lowers the residual.
    quad = ok_dir & NUMPY.quadratic(slope)
    f_acc = f_i.copy()
    ln_acc, r_acc, m_acc = (ln, r, m) if whole else (ln[idx], r[idx], m[idx])
    while pending.any():
        f_new, ln_new, r_new, m_new = sub.evaluate(
            a_i + step[:, None, None] * da, b_i + step[:, None, None] * db, e_i, mu_i
        )
        ok = NUMPY.armijo(f_new, f_i, step, slope)
        if quad.any():
            ok = np.where(quad, np.isfinite(f_new) & (sub.gradient(r_new, m_new)[2] < res_i), ok)
        take = pending & ok  # keep the evaluation at the accepted step
        f_acc[take] = f_new[take]
        for acc, new in ((ln_acc, ln_new), (r_acc, r_new), (m_acc, m_new)):
            if take.all():
                acc[...] = new
            elif take.any():
                acc[take] = new[take]
        fail = pending & ~ok & NUMPY.give_up(step, quad)
        stage_end[idx[fail]] = True
        step = np.where(fail, 0.0, step)
        pending &= ~ok & ~fail
        step = np.where(pending, step * 0.5, step)
    moved = step > 0
    if moved.any():
        j = idx[moved]
        a[j] = a_i[moved] + step[moved, None, None] * da[moved]
        b[j] = b_i[moved] + step[moved, None, None] * db[moved]
        f[j] = f_acc[moved]
        if whole and moved.all():  # ln, r, m already hold the accepted evaluation
            ga[...], gb[...], res[...] = sub.gradient(r, m)
            return
        if not whole:
            ln[j], r[j], m[j] = ln_acc[moved], r_acc[moved], m_acc[moved]
        ga[j], gb[j], res[j] = sub.gradient(r[j], m[j], np.flatnonzero(moved))
