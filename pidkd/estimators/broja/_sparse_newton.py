"""pidkd's Newton solver on the support: cost and memory that follow the support cells, not |Y||T||S|.

The same method as :mod:`pidkd.estimators.broja._dual_newton` (read its docstring first): Newton on the
exponential-multiplier smoothed dual

    F(a, b) = a.P_yt + b.P_ys + eps * sum_g mu_g exp(L_g / eps),   L_g = log sum_{k in g} exp(-a - b),

with the same schedule (the constants of :mod:`pidkd.estimators.broja._schedule`: eps shrinks by
``PCG_SHRINK``, as on the dense path's PCG step, down to ``eps_min``, stage ends at ``INNER``, multipliers
floored at ``_MU_FLOOR``, the ``EXP_LIMIT`` guard, Armijo backtracking) and the same certificate after every
stage. Here the dual variables are only the occurring (y, t) and (y, s) pairs, the blocks g only the (t, s)
with a support cell, and every array is over the cells of :class:`~pidkd.estimators.broja._support.Support`:
labels, codes and pairs that never occur cost nothing.

The Newton step is by preconditioned conjugate gradients with matrix-free Hessian products over the
cells (:func:`~pidkd.estimators.broja._sparse_kernel.hess_vec`). The preconditioner is that of the dense
PCG step (:mod:`pidkd.estimators.broja._pcg`) on the support: P = M + sum_{g in A} c_g u_g u_g^T, where
M has one block per label (a bipartite Laplacian over the label's pairs, whose two diagonal sides make
it cheap: the larger side is eliminated and the Schur complement over the smaller side is factored,
at most min(|T(y)|, |S(y)|)^2 entries per label), and A holds the blocks whose rank-one term is
significant against M; P is applied by Woodbury, with the capacitance matrix (sparse: two blocks are
coupled only through a label they share) factored densely when small and by sparse LU otherwise. A
factorisation serves the next Newton steps of its stage while CG with it takes fewer iterations than a
new factorisation costs (a cost model over its pairs, blocks and cells); a step whose CG runs past that
budget factors its own Hessian and goes on from where CG stopped, and the rest of the stage does not
reuse.

eps shrinks by 0.4 rather than 0.2 for the reason it does on the dense PCG path: a stage is a few Newton
steps from the predicted point when eps moves less (measured on the 1,000-label sample case: 47 Newton steps
and 21.6 s at 0.2, 35 and 12.8 s at 0.4; 0.6 and 0.8 were faster still, but on a near-deterministic pmf they
stopped at residuals near 2e-9, where the atoms are 3e-9 bits off, against 3e-12 at 0.2 and 0.4).

The stage predictor (the additive fit alpha(t) + beta(s) of L_g weighted by the masses) is
:func:`_block_shift`, :func:`pidkd.estimators.broja._schedule._stage_shift` written over blocks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numba as nb
import numpy as np
import scipy.linalg
import scipy.sparse
import scipy.sparse.linalg
from numpy.typing import NDArray

from pidkd.estimators.broja import _sparse_kernel as kern
from pidkd.estimators.broja._pcg import MAX_CG
from pidkd.estimators.broja._schedule import (
    _FAR,
    _MAX_STAGES,
    NUMPY,
    PCG_SHRINK,
    RIDGE,
    RIDGE_FLOOR,
    _blas_threads,
)
from pidkd.estimators.broja._support import Support, certify_support

__all__ = ["SparseNewtonResult", "solve_support"]

#: Most blocks in the preconditioner's capacitance matrix (the most significant are kept).
MAX_BLOCKS = 20_000
#: A block's rank-one term joins the preconditioner when it would add more than this to an eigenvalue of
#: M^-1 H. Lower than the dense PCG step's 1000: on the support a Newton step is cheap only when CG takes a
#: few iterations (measured on the 1,000-label sample case: at 1000, 3,600 CG iterations in 47 Newton steps
#: with the capacitance solve 70% of the time; at 1 and with the budget below, 281 iterations and 20.7 s).
SIGNIFICANT = 1.0
#: Cost model of a factorisation and of a CG iteration, in nanoseconds (fitted here: 2 cores, float32
#: capacitance Cholesky at about 3e-3 ns per n^3, its triangular solves about 0.6 ns per entry).
NS_PER_PAIR, NS_PER_CUBE, NS_PER_CELL_BUILD = 40.0, 3e-3, 100.0
NS_PER_CELL_ITER, NS_PER_SQUARE = 80.0, 0.6
#: CG stops at the relative residual min(ETA_MAX, max(ETA_MIN, |g|_inf)) of the Newton system: tighter than
#: the dense PCG step's sqrt(|g|) (measured: on a near-deterministic 6x6x5 pmf the looser forcing term took
#: 1000 Newton steps without certifying; this one 297, as the exact steps of the dense path).
ETA_MAX = 1e-4
ETA_MIN = 1e-12
#: Capacitance matrices up to this size, or filled to at least DENSE_FILL, are factored densely (Cholesky,
#: on every core); sparser ones by sparse LU (measured on the 1,000-label sample case, 2 cores: a
#: 2,000-4,000-square capacitance a quarter full took 3.5 s by SuperLU, 1.6 s by LAPACK on one thread).
DENSE_CAPACITANCE = 2048
DENSE_FILL = 0.02
#: Dense capacitance matrices larger than this are factored in single precision (float64 if that fails).
SINGLE_PRECISION = 1024


@dataclass
class SparseNewtonResult:
    q: NDArray[np.float64]  # [K] mass of every support cell (Support order), polished
    a: NDArray[np.float64]  # [n_a] multipliers of the (y, t) pairs
    b: NDArray[np.float64]  # [n_b]
    residual: float
    h: float  # H_q(Y|T,S), nats
    bound: float  # dual bound, nats
    converged: bool
    n_iter: int
    solve_time: float
    cg_iterations: int = 0
    trace: list = field(default_factory=list)

    @property
    def gap(self) -> float:
        return self.bound - self.h


class _Labels:
    """The per-label structure of M (fixed for a support): pinned variable, eliminated and kept sides."""

    def __init__(self, sup: Support):
        n_a, n_b = sup.pyt.size, sup.pys.size
        n_lab = sup.yt_ptr.size - 1
        self.n_a = n_a
        # Gauge: a(y,.) + c, b(y,.) - c leaves F unchanged; pin the b of each label's largest P(y, s).
        pin = np.full(n_lab, -1, dtype=np.int64)
        occurring = np.flatnonzero(np.diff(sup.ys_ptr) > 0)
        if occurring.size:
            order = np.lexsort((-sup.pys, sup.ys_y))  # within each label, the largest P(y, s) first
            pin[occurring] = order[sup.ys_ptr[occurring]]
        self.pinned = np.where(pin >= 0, n_a + pin, -1)
        n_t_y, n_s_y = np.diff(sup.yt_ptr), np.diff(sup.ys_ptr)
        keep_b = np.maximum(n_s_y - 1, 0) <= n_t_y  # factor the smaller side
        lab = sup.yt_y[sup.ci]
        kb = keep_b[lab]
        j_var = np.where(sup.cj == pin[lab], -1, n_a + sup.cj)
        self.ce = np.where(kb, sup.ci, j_var).astype(np.int64)
        self.ck = np.where(kb, j_var, sup.ci).astype(np.int64)
        var_label = np.concatenate([sup.yt_y, sup.ys_y])
        is_b = np.arange(n_a + n_b) >= n_a
        kept = np.where(keep_b[var_label], is_b, ~is_b)
        kept[self.pinned[self.pinned >= 0]] = False
        kept_var = np.flatnonzero(kept)
        kept_var = kept_var[np.argsort(var_label[kept_var], kind="stable")]
        self.kept_var = kept_var.astype(np.int64)
        self.n_kept = np.bincount(var_label[kept_var], minlength=n_lab).astype(np.int64)
        self.kept_ptr = np.concatenate([[0], np.cumsum(self.n_kept)]).astype(np.int64)
        self.loc = np.full(n_a + n_b, -1, dtype=np.int64)
        self.loc[kept_var] = np.arange(kept_var.size) - self.kept_ptr[var_label[kept_var]]
        self.off = np.concatenate([[0], np.cumsum(self.n_kept**2)]).astype(np.int64)
        self.lab_cells = np.lexsort((self.ce, lab)).astype(np.int64)
        self.lab_ptr = np.concatenate([[0], np.cumsum(np.bincount(lab, minlength=n_lab))]).astype(np.int64)
        self.lab = lab


@dataclass
class _Preconditioner:
    w: NDArray[np.float64]
    dg: NDArray[np.float64]
    factors: NDArray[np.float64]
    rho: NDArray[np.float64]
    sig: NDArray[np.int64]  # [G] index among the significant blocks, -1 if not
    n_sig: int
    solve_cap: object  # callable z = C^-1 u, or None
    budget: int  # CG iterations that cost as much as building this preconditioner (the cost model above)
    iterations: int = 0


class _Problem:
    def __init__(self, sup: Support):
        self.sup = sup
        self._labels: _Labels | None = None
        self.n_a, self.n_b = sup.pyt.size, sup.pys.size
        self.n_g = sup.n_blocks
        self.prec: _Preconditioner | None = None
        self.cg_total = 0
        self.reuse, self.eps = True, 0.0  # whether a factorisation may serve later steps of this stage

    @property
    def labels(self) -> _Labels:
        """The per-label structure, built on the first Newton step (a solve certified at its start needs none)."""
        if self._labels is None:
            self._labels = _Labels(self.sup)
        return self._labels

    def evaluate(self, a, b, eps, mu):
        """F, L [G], r [K] (a new array), m [G]."""
        sup = self.sup
        ln, r, m = np.empty(self.n_g), np.empty(sup.n_cells), np.empty(self.n_g)
        total = kern.evaluate(a, b, eps, mu, sup.ci, sup.cj, sup.ptr, ln, r, m)
        return float(a @ sup.pyt + b @ sup.pys + eps * total), ln, r, m

    def gradient(self, r, m):
        ga, gb = np.empty(self.n_a), np.empty(self.n_b)
        res = kern.gradient(self.sup.pyt, self.sup.pys, self.sup.ci, self.sup.cj, self.sup.ptr, r, m, ga, gb)
        return ga, gb, float(res)

    def _build(self, r, m, eps) -> _Preconditioner:
        sup, lab = self.sup, self.labels
        w = m[sup.blk] * r
        inv_eps = 1.0 / eps
        c = np.maximum(m * (inv_eps - 1.0), 0.0)
        ridge = RIDGE * (float(w.max(initial=0.0)) * max(inv_eps, 1.0)) + RIDGE_FLOOR
        dg = np.concatenate([np.bincount(sup.ci, w, self.n_a), np.bincount(sup.cj, w, self.n_b)]) + ridge
        factors = np.empty(int(lab.off[-1]))
        args = (lab.lab_ptr, lab.lab_cells, lab.ce, lab.ck, lab.loc, lab.n_kept, lab.off, w)
        kern.block_factors(*args[:7], w, dg, ridge, factors)
        lam = kern.significance(*args, r, c, sup.blk, dg, factors, np.empty(self.n_g))
        chosen = np.isfinite(lam) & (lam > SIGNIFICANT)
        if chosen.sum() > MAX_BLOCKS:
            chosen &= lam >= np.partition(np.where(chosen, lam, 0.0), -MAX_BLOCKS)[-MAX_BLOCKS]
        rho = np.sqrt(c[sup.blk]) * r
        sig = np.full(self.n_g, -1, dtype=np.int64)
        n_sig = int(chosen.sum())
        sig[chosen] = np.arange(n_sig)
        solve_cap = None
        if n_sig:
            per_label = np.bincount(lab.lab[chosen[sup.blk]], minlength=lab.lab_ptr.size - 1)
            n_pairs = int((per_label.astype(np.int64) ** 2).sum())
            rows, cols, vals = kern.capacitance_triplets(*args[:7], w, rho, sup.blk, sig, dg, factors, n_pairs)
            solve_cap = _factor_capacitance(rows, cols, vals, n_sig)
            if solve_cap is None:
                sig[:], n_sig = -1, 0
        else:
            n_pairs = 0
        build = NS_PER_PAIR * n_pairs + NS_PER_CUBE * float(n_sig) ** 3 + NS_PER_CELL_BUILD * sup.n_cells
        iteration = NS_PER_CELL_ITER * sup.n_cells + NS_PER_SQUARE * float(n_sig) ** 2
        budget = int(min(MAX_CG, max(1.0, build / iteration)))
        return _Preconditioner(w, dg, factors, rho, sig, n_sig, solve_cap, budget)

    def apply(self, prec: _Preconditioner, v):
        lab, sup = self.labels, self.sup
        x = np.empty_like(v)
        blocks = (lab.lab_ptr, lab.lab_cells, lab.ce, lab.ck, lab.loc, lab.kept_ptr, lab.kept_var, lab.n_kept)
        kern.apply_blocks(*blocks, lab.off, prec.w, prec.dg, prec.factors, lab.pinned, v, x)
        if not prec.n_sig:
            return x
        ut = kern.cells_dot(sup.ci, sup.cj, self.n_a, prec.rho, sup.blk, prec.sig, x, prec.n_sig)
        z = prec.solve_cap(ut)
        uz = np.empty_like(v)
        kern.cells_scatter(sup.ci, sup.cj, self.n_a, prec.rho, sup.blk, prec.sig, z, uz)
        back = np.empty_like(v)
        kern.apply_blocks(*blocks, lab.off, prec.w, prec.dg, prec.factors, lab.pinned, uz, back)
        return x - back

    def newton_step(self, r, m, ga, gb, eps):
        """An inexact Newton step (da, db) by PCG; NaN where the point is not finite."""
        if not (np.isfinite(m).all() and np.isfinite(r).all()):
            return np.full(self.n_a, np.nan), np.full(self.n_b, np.nan)
        sup = self.sup
        prec = self.prec
        if eps != self.eps:  # a new stage: its Hessians differ from the last stage's
            self.reuse, self.eps = True, eps
        # An earlier step's factorisation serves while CG with it costs less than a new one (its budget);
        # once it has failed that in a stage, every step of the stage gets its own.
        fresh = prec is None or not self.reuse or prec.iterations > prec.budget
        if fresh:
            prec = self.prec = self._build(r, m, eps)
        c = np.maximum(m * (1.0 / eps - 1.0), 0.0)
        w_max = float((m[sup.blk] * r).max(initial=0.0))
        ridge = RIDGE * (w_max * max(1.0 / eps, 1.0)) + RIDGE_FLOOR
        diag = np.full(self.n_a + self.n_b, ridge)
        pinned = self.labels.pinned[self.labels.pinned >= 0]
        out = np.empty(self.n_a + self.n_b)

        def hess(v):
            kern.hess_vec(sup.ci, sup.cj, sup.ptr, r, m, c, diag, self.n_a, v, out)
            out[pinned] = 0.0
            return out

        g = -np.concatenate([ga, gb])
        g[pinned] = 0.0
        tol = min(ETA_MAX, max(ETA_MIN, float(np.abs(g).max())))
        limit = MAX_CG if fresh else prec.budget
        x, it = _cg(hess, lambda v: self.apply(prec, v), g, tol, limit=limit)
        self.cg_total += min(it, limit)
        if not fresh and it > prec.budget:  # the old factorisation ran out of its budget: factor here, go on from x
            self.reuse = False
            prec = self.prec = self._build(r, m, eps)
            x, it = _cg(hess, lambda v: self.apply(prec, v), g, tol, x=x)
            self.cg_total += min(it, MAX_CG)
        prec.iterations = it
        return x[: self.n_a], x[self.n_a :]


def _factor_capacitance(rows, cols, vals, n):
    """z = (I + C)^-1 u for the capacitance triplets: dense Cholesky when small or well filled, sparse LU
    otherwise (duplicate triplets add up)."""
    if n <= DENSE_CAPACITANCE or rows.size >= DENSE_FILL * n * n:
        cap = np.bincount(rows * n + cols, vals, n * n).reshape(n, n)
        cap[np.diag_indices(n)] += 1.0
        if n > SINGLE_PRECISION:  # a preconditioner needs few digits: half the memory traffic and flops
            try:
                with _blas_threads(nb.get_num_threads()):
                    f32 = scipy.linalg.cho_factor(cap.astype(np.float32), lower=True, overwrite_a=True)
                if np.isfinite(np.diag(f32[0])).all():
                    return lambda u: scipy.linalg.cho_solve(f32, u.astype(np.float32), check_finite=False).astype(
                        np.float64
                    )
            except (np.linalg.LinAlgError, ValueError):
                pass
        try:
            with _blas_threads(nb.get_num_threads()):
                factor = scipy.linalg.cho_factor(cap, lower=True, check_finite=True, overwrite_a=True)
        except (np.linalg.LinAlgError, ValueError):
            return None
        return lambda u: scipy.linalg.cho_solve(factor, u, check_finite=False)
    cap = scipy.sparse.coo_array((vals, (rows, cols)), shape=(n, n)).tocsc()
    cap = cap + scipy.sparse.eye_array(n, format="csc")
    if not np.isfinite(cap.data).all():
        return None
    try:
        lu = scipy.sparse.linalg.splu(cap, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0)
    except RuntimeError:
        return None
    return lu.solve


def _cg(hess, prec, g, tol, limit=MAX_CG, x=None):
    """Preconditioned conjugate gradients for H x = g from ``x`` (default 0); returns x and the iterations,
    ``limit + 1`` when it stopped at ``limit`` iterations or its first direction had no positive curvature."""
    stop = (tol * np.sqrt(float(g @ g))) ** 2
    if x is None:
        x, res = np.zeros_like(g), g.copy()
    else:
        x, res = x.copy(), g - hess(x)
        if float(res @ res) <= stop:
            return x, 0
    z = prec(res)
    direction = z.copy()
    rz = float(res @ z)
    for it in range(1, limit + 1):
        hp = hess(direction)
        curv = float(direction @ hp)
        if not curv > 0.0:
            return x, limit + 1 if it == 1 else it
        alpha = rz / curv
        x += alpha * direction
        res -= alpha * hp
        if float(res @ res) <= stop:
            return x, it
        z = prec(res)
        rz_new = float(res @ z)
        direction = z + (rz_new / rz) * direction
        rz = rz_new
    return x, limit + 1


def _block_shift(sup: Support, m, ln, sweeps: int = 2):
    """:func:`pidkd.estimators.broja._schedule._stage_shift` over the blocks: alpha [n_t], beta [n_s]."""
    n_t, n_s = sup.shape[1], sup.shape[2]
    wl = np.where(m > 0, m * ln, 0.0)
    mt, ms = np.bincount(sup.bt, m, n_t), np.bincount(sup.bs, m, n_s)
    mt, ms = np.where(mt > 0, mt, 1.0), np.where(ms > 0, ms, 1.0)
    lt, ls = np.bincount(sup.bt, wl, n_t), np.bincount(sup.bs, wl, n_s)
    alpha, beta = lt / mt, np.zeros(n_s)
    for _ in range(sweeps):
        beta = (ls - np.bincount(sup.bs, m * alpha[sup.bt], n_s)) / ms
        alpha = (lt - np.bincount(sup.bt, m * beta[sup.bs], n_t)) / mt
    return alpha, beta


def _smoothed_gap(sup: Support, ln, m) -> float:
    """:func:`pidkd.estimators.broja._dual_newton._smoothed_gap` over the blocks."""
    ml = float(np.where(m > 0, m * ln, 0.0).sum())
    viol = np.maximum(ln, 0.0)
    vt, vs = np.zeros(sup.shape[1]), np.zeros(sup.shape[2])
    np.maximum.at(vt, sup.bt, viol)
    np.maximum.at(vs, sup.bs, viol)
    return min(float(vt @ sup.pt), float(vs @ sup.ps)) - ml


def _certify(pr: _Problem, m, r, a, b, gap_tol):
    """(residual, h, bound, q): certificate of Q = m r, polished first when near the tolerance."""
    sup = pr.sup
    q = m[sup.blk] * r
    res, h, bound = certify_support(sup, q, a, b)
    if NUMPY.polish(bound - h, gap_tol):
        q = q.copy()
        kern.polish(q, sup.ci, sup.cj, sup.pyt, sup.pys, 50)
        res, h, bound = certify_support(sup, q, a, b)
    return res, h, bound, q


def solve_support(
    sup: Support,
    *,
    gap_tol: float,
    residual_tol: float,
    max_iter: int = 1000,
    shrink: float = PCG_SHRINK,
    eps_min: float = 1e-8,
    trace: bool = False,
) -> SparseNewtonResult:
    """Solve the BROJA programme of ``sup`` to ``gap <= gap_tol`` (nats) and residual <= ``residual_tol``."""
    start = time.perf_counter()
    # BLAS on one thread, as on the dense path: its spinning threads otherwise take the cores from the
    # compiled loops between the many small vector operations of CG
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"), _blas_threads(1):
        out = _solve(sup, gap_tol, residual_tol, max_iter, shrink, eps_min, trace)
    out.solve_time = time.perf_counter() - start
    return out


def _solve(sup, gap_tol, residual_tol, max_iter, shrink, eps_min, trace) -> SparseNewtonResult:
    pr = _Problem(sup)
    py = np.bincount(sup.ys_y, sup.pys, sup.shape[0])
    a = -np.log(sup.pyt)
    b = -np.log(sup.pys) + np.log(py[sup.ys_y]) - 1.0
    # At eps = 1, mu = 1/e this (a, b) is the exact minimiser: Q = P(y,t) P(y,s) / P(y).
    eps = 1.0
    mu = np.full(pr.n_g, np.exp(-1.0))
    f, ln, r, m = pr.evaluate(a, b, eps, mu)
    ga, gb, res = pr.gradient(r, m)
    n_iter = n_stages = 0
    log: list = []
    best = None
    stage_end = True
    while True:
        if stage_end:
            if trace or not _smoothed_gap(sup, ln, m) > _FAR * gap_tol:
                c_res, c_h, c_bound, q = _certify(pr, m, r, a, b, gap_tol)
                if trace:
                    log.append((eps, n_iter, c_res, c_bound - c_h, pr.cg_total))
                best = (c_res, c_h, c_bound, q)
                if NUMPY.certified(c_bound - c_h, c_res, gap_tol, residual_tol):
                    break
            if not NUMPY.more_stages(n_iter, max_iter, n_stages, _MAX_STAGES):
                break
            mu = NUMPY.next_mu(m, True)  # every block of the support has cells
            alpha, beta = _block_shift(sup, m, ln)
            a = a + alpha[sup.yt_t]
            b = b + beta[sup.ys_s]
            guard = NUMPY.guard_terms(ln - (alpha[sup.bt] + beta[sup.bs]), mu, True).max(initial=0.0)
            eps = float(NUMPY.next_eps(eps, shrink, eps_min, guard))
            n_stages += 1
            f, ln, r, m = pr.evaluate(a, b, eps, mu)
            ga, gb, res = pr.gradient(r, m)
            stage_end = False
        inner_tol = NUMPY.inner_tolerance(eps, eps_min, residual_tol)
        if res <= inner_tol or n_iter >= max_iter:
            stage_end = True
            continue
        da, db = pr.newton_step(r, m, ga, gb, eps)
        slope = float(ga @ da + gb @ db)
        if not slope < 0:
            stage_end = True
            continue
        n_iter += 1
        quad = NUMPY.quadratic(slope)
        step = 1.0
        while True:
            f_new, ln_new, r_new, m_new = pr.evaluate(a + step * da, b + step * db, eps, mu)
            if quad:
                ok = np.isfinite(f_new) and pr.gradient(r_new, m_new)[2] < res
            else:
                ok = NUMPY.armijo(f_new, f, step, slope)
            if ok:
                break
            if NUMPY.give_up(step, quad):
                step = 0.0
                break
            step *= 0.5
        if step == 0.0:
            stage_end = True
            continue
        a, b = a + step * da, b + step * db
        f, ln, r, m = f_new, ln_new, r_new, m_new
        ga, gb, res = pr.gradient(r, m)
    if best is None or not NUMPY.certified(best[2] - best[1], best[0], gap_tol, residual_tol):
        c_res, c_h, c_bound, q = _certify(pr, m, r, a, b, gap_tol)
        if best is None or not (best[2] - best[1] <= c_bound - c_h):
            best = (c_res, c_h, c_bound, q)
        if not best[0] <= residual_tol or not NUMPY.polish(best[2] - best[1], gap_tol):
            q = best[3].copy()
            kern.polish(q, sup.ci, sup.cj, sup.pyt, sup.pys, 50)
            best = (*certify_support(sup, q, a, b), q)
    c_res, c_h, c_bound, q = best
    converged = bool(NUMPY.certified(c_bound - c_h, c_res, gap_tol, residual_tol))
    return SparseNewtonResult(
        q=q,
        a=a,
        b=b,
        residual=c_res,
        h=c_h,
        bound=c_bound,
        converged=converged,
        n_iter=n_iter,
        solve_time=0.0,
        cg_iterations=pr.cg_total,
        trace=log,
    )
