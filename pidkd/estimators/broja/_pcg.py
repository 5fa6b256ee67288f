"""Newton steps by preconditioned conjugate gradients, for problems with many (t, s) cells.

The Newton system of :mod:`pidkd.estimators.broja._dual_newton` is H d = -g with
H = M + sum_ts c_ts u_ts u_ts^T: M holds one (|T|+|S|)-square block per label (a weighted
bipartite Laplacian, w = m r) and every cell (t, s) adds a rank-one term with c_ts = m_ts (1/eps - 1).
Factoring all |T||S| rank-one terms (:class:`~pidkd.estimators.broja._dual_newton.WoodburyStep`) or the
dense s-side Schur
complement costs O((|T||S|)^3) or O((|S||Y|)^3) per step; for large alphabets neither fits.

Here the step is computed by conjugate gradients with Hessian-vector products over the cells that
carry mass (O(|Y| cells) each, compiled) and the preconditioner

    P = M + sum_{ts in A} c_ts u_ts u_ts^T,

where A holds the cells whose rank-one term is large against M: lambda_ts = c_ts u_ts^T M^-1 u_ts
> :data:`SIGNIFICANT` (the eigenvalue the term would add to M^-1 H). P is applied through Woodbury
with a |A|-square capacitance matrix. Late in a solve only the cells of the optimal Q(t, s)'s
support carry mass, and A is about that support, so P^-1 H is close to the identity; earlier, when
eps is large, the rank-one terms are weak and M alone preconditions well.

Building P (block inverses, capacitance, Cholesky) costs far more than a CG iteration, so a
factorisation is kept for the next Newton steps of the same problem until CG needs more than
:data:`REFACTOR_AFTER` iterations with it. The step only has to be a descent direction (every CG
iterate is one); the line search and the certified duality gap of the solver are unchanged.

On problems with :data:`PARALLEL_SIZE` entries or more, H v and the products with the blocks of M^-1
run on numba's threads when called from the main thread (H v in :data:`HESS_PARTS` runs of cells,
summed in the same order either way, so both drivers give the same bits).
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass

import numba as nb
import numpy as np
import scipy.linalg
import scipy.linalg.blas
import scipy.linalg.lapack
from numpy.typing import NDArray

from pidkd.estimators.broja._schedule import RIDGE, RIDGE_FLOOR, _blas_threads
from pidkd.estimators.broja._woodbury_kernel import _parallel, capacitance

__all__ = ["PcgStep"]

_trsv = scipy.linalg.blas.dtrsv

#: A cell's rank-one term joins the preconditioner when it would add more than this to an
#: eigenvalue of M^-1 H (chosen by measurement: fewer cells make CG slow, more make P costly).
SIGNIFICANT = 1000.0
#: Most cells in the preconditioner's capacitance matrix (the most significant are kept).
MAX_CELLS = 4096
#: Largest capacitance matrix inverted explicitly; beyond it each CG iteration solves with its Cholesky factor.
EXPLICIT_INVERSE = 2048
#: A preconditioner is rebuilt once CG needed more iterations than this with it.
REFACTOR_AFTER = 30
#: CG stops at the relative residual min(ETA_MAX, max(ETA_MIN, sqrt(|g|_inf))) of the Newton system
#: (a forcing term of inexact Newton methods), or after MAX_CG iterations.
ETA_MAX = 0.1
ETA_MIN = 1e-10
MAX_CG = 300
#: Cells whose mass is below this fraction of the largest are left out of H v (below round-off).
NEGLIGIBLE = 1e-30
#: Problems with at least this many entries |Y||T||S| run the compiled loops on numba's threads (from
#: the main thread); smaller ones are faster on the calling thread (measured: 10x32x32 0.085 -> 0.16 s
#: on threads, 10x64x64 alike, 10x128x128 2.2 -> 1.5 s, 100x64x64 3.1 -> 2.6 s).
PARALLEL_SIZE = 150_000
#: H v sums the cells in this many runs, in the same order whether they run in parallel or not.
HESS_PARTS = 2


@nb.njit(cache=True, nogil=True)
def _hess_vec(kt, ks, wk, rk, ck, n_t, diag, v, out):
    """out = H v over the kept cells; v, out, diag are [|T|+|S|, |Y|] (a rows, then b rows)."""
    n, n_y = v.shape
    for i in range(n):
        for y in range(n_y):
            out[i, y] = diag[i, y] * v[i, y]
    _hess_cells(kt, ks, wk, rk, ck, n_t, v, out, 0, kt.size)


@nb.njit(cache=True, nogil=True)
def _hess_cells(kt, ks, wk, rk, ck, n_t, v, out, lo, hi):
    """Add the rank-one and Laplacian terms of the kept cells lo..hi-1 to out."""
    n_y = v.shape[1]
    for k in range(lo, hi):
        t, s = kt[k], n_t + ks[k]
        dot = 0.0
        for y in range(n_y):
            dot += rk[k, y] * (v[t, y] + v[s, y])
        dot *= ck[k]
        for y in range(n_y):
            h = wk[k, y] * (v[t, y] + v[s, y]) + dot * rk[k, y]
            out[t, y] += h
            out[s, y] += h


@nb.njit(cache=True, nogil=True)
def _hess_part(kt, ks, wk, rk, ck, n_t, v, parts, j):
    size = (kt.size + parts.shape[0] - 1) // parts.shape[0]
    parts[j] = 0.0
    _hess_cells(kt, ks, wk, rk, ck, n_t, v, parts[j], j * size, min(kt.size, (j + 1) * size))


@nb.njit(cache=True, nogil=True)
def _hess_sum(diag, v, parts, out):
    for i in range(v.shape[0]):
        for y in range(v.shape[1]):
            acc = diag[i, y] * v[i, y]
            for j in range(parts.shape[0]):
                acc += parts[j, i, y]
            out[i, y] = acc


@nb.njit(cache=True, nogil=True)
def _hess_vec_serial(kt, ks, wk, rk, ck, n_t, diag, parts, v, out):
    """H v as :func:`_hess_vec`, the cells summed in ``len(parts)`` runs (the parallel driver's order)."""
    for j in range(parts.shape[0]):
        _hess_part(kt, ks, wk, rk, ck, n_t, v, parts, j)
    _hess_sum(diag, v, parts, out)


@nb.njit(cache=True, nogil=True, parallel=True)
def _hess_vec_parallel(kt, ks, wk, rk, ck, n_t, diag, parts, v, out):
    for j in nb.prange(parts.shape[0]):
        _hess_part(kt, ks, wk, rk, ck, n_t, v, parts, j)
    _hess_sum(diag, v, parts, out)


@nb.njit(cache=True, nogil=True, fastmath=True)
def _label_matvec(minv, vt, out, y):
    """out[:, y] = minv[y] @ vt[y] (vt is [y, n], out [n, y])."""
    my, vy = minv[y], vt[y]
    for i in range(my.shape[0]):
        acc = 0.0
        for j in range(my.shape[1]):
            acc += my[i, j] * vy[j]
        out[i, y] = acc


@nb.njit(cache=True, nogil=True, fastmath=True)
def _cells_dot(n_t, ct, cs, rho, x):
    """U^T x over the cells (ct, cs)."""
    ut = np.empty(ct.size)
    for k in range(ct.size):
        acc = 0.0
        for y in range(rho.shape[1]):
            acc += rho[k, y] * (x[ct[k], y] + x[n_t + cs[k], y])
        ut[k] = acc
    return ut


@nb.njit(cache=True, nogil=True, fastmath=True)
def _cells_scatter(n_y, n, n_t, ct, cs, rho, z):
    """(U z)^T, [y, n]."""
    uzt = np.zeros((n_y, n))
    for k in range(ct.size):
        for y in range(n_y):
            uzt[y, ct[k]] += rho[k, y] * z[k]
            uzt[y, n_t + cs[k]] += rho[k, y] * z[k]
    return uzt


@nb.njit(cache=True, nogil=True, fastmath=True)
def _label_back(minv, uzt, x, out, y):
    """out[:, y] = x[:, y] - minv[y] @ uzt[y]."""
    _label_matvec(minv, uzt, out, y)
    for i in range(x.shape[0]):
        out[i, y] = x[i, y] - out[i, y]


@nb.njit(cache=True, nogil=True, fastmath=True)
def _forward_serial(minv, n_t, ct, cs, rho, v, x):
    """x = M^-1 v; returns U^T x over the cells (ct, cs)."""
    vt = v.T.copy()
    for y in range(minv.shape[0]):
        _label_matvec(minv, vt, x, y)
    return _cells_dot(n_t, ct, cs, rho, x)


@nb.njit(cache=True, nogil=True, fastmath=True, parallel=True)
def _forward_parallel(minv, n_t, ct, cs, rho, v, x):
    vt = v.T.copy()
    for y in nb.prange(minv.shape[0]):
        _label_matvec(minv, vt, x, y)
    return _cells_dot(n_t, ct, cs, rho, x)


@nb.njit(cache=True, nogil=True, fastmath=True)
def _backward_serial(minv, n_t, ct, cs, rho, z, x, out):
    """out = x - M^-1 U z."""
    uzt = _cells_scatter(x.shape[1], x.shape[0], n_t, ct, cs, rho, z)
    for y in range(minv.shape[0]):
        _label_back(minv, uzt, x, out, y)


@nb.njit(cache=True, nogil=True, fastmath=True, parallel=True)
def _backward_parallel(minv, n_t, ct, cs, rho, z, x, out):
    uzt = _cells_scatter(x.shape[1], x.shape[0], n_t, ct, cs, rho, z)
    for y in nb.prange(minv.shape[0]):
        _label_back(minv, uzt, x, out, y)


#: (forward, backward) of the Woodbury solve, by whether they run on numba's threads
_DRIVERS = {False: (_forward_serial, _backward_serial), True: (_forward_parallel, _backward_parallel)}


@dataclass
class _Preconditioner:
    """P^-1 = M^-1 - M^-1 U C^-1 U^T M^-1 (Woodbury) over the cells (ct, cs)."""

    minv: NDArray[np.float64]  # [y, n, n], pinned row and column 0
    n_t: int
    threads: bool  # the compiled loops in parallel (large alphabets, main thread)
    ct: NDArray[np.intp]  # the cells of the capacitance matrix C
    cs: NDArray[np.intp]
    rho: NDArray[np.float64]  # [K, y]
    cinv: NDArray[np.float64] | None  # C^-1 (small K), or
    chol: NDArray[np.float64] | None  # the lower Cholesky factor of C (large K), Fortran order
    iterations: int = 0  # CG iterations of the last solve with it

    def apply(self, v: NDArray[np.float64]) -> NDArray[np.float64]:
        forward, backward = _DRIVERS[self.threads]
        x = np.empty_like(v)
        ut = forward(self.minv, self.n_t, self.ct, self.cs, self.rho, v, x)
        if not ut.size:
            return x
        if self.cinv is not None:
            z = self.cinv @ ut
        else:
            # two triangular solves (BLAS trsv: about twice as fast as LAPACK's potrs for one right-hand side)
            z = _trsv(self.chol, _trsv(self.chol, ut, lower=1), lower=1, trans=1)
        out = np.empty_like(v)
        backward(self.minv, self.n_t, self.ct, self.cs, self.rho, z, x, out)
        return out


class PcgStep:
    """Newton steps of one solve by PCG, keeping each problem's preconditioner between steps (a step object of
    :func:`pidkd.estimators.broja._dual_newton.make_step`)."""

    name = "pcg"

    def __init__(self) -> None:
        self.cache: dict[int, _Preconditioner] = {}
        self.stats: list[tuple[float, int, int, bool]] = []  # (eps, cells in P, CG iterations, rebuilt)

    def __call__(self, pr, r, m, ga, gb, eps) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        da, db = np.empty_like(ga), np.empty_like(gb)
        for k in range(pr.n_b):
            da[k], db[k] = self._one(pr, k, r[k], m[k], ga[k], gb[k], float(eps[k]))
        return da, db

    def _one(self, pr, k, r, m, ga, gb, eps):
        n_t, n_s, n_y = r.shape
        if not (np.isfinite(m).all() and np.isfinite(r).all()):  # an overflowed point: no step (the stage ends)
            return np.full_like(ga, np.nan), np.full_like(gb, np.nan)
        inv_eps = 1.0 / eps
        w = m[..., None] * r
        c = np.maximum(m * (inv_eps - 1.0), 0.0)
        ridge = RIDGE * (w.max() * max(inv_eps, 1.0)) + RIDGE_FLOOR
        pin = pr.pin[k]
        iy = np.arange(n_y)
        key = int(pr.orig[k])
        large = n_y * n_t * n_s >= PARALLEL_SIZE
        prec = self.cache.get(key)
        rebuilt = prec is None or prec.iterations > REFACTOR_AFTER
        if rebuilt:
            prec = self.cache[key] = _build(pr, k, w, r, c, ridge, large and _parallel())
        kt, ks = np.nonzero(m > NEGLIGIBLE * m.max())
        diag = np.concatenate([pr.dummy_a[k], pr.dummy_b[k]]) + ridge
        diag[n_t + pin, iy] = 0.0
        args = (kt, ks, np.ascontiguousarray(w[kt, ks]), np.ascontiguousarray(r[kt, ks]), c[kt, ks], n_t, diag)
        if large:  # H v in HESS_PARTS runs of cells, in the same order on numba's threads or not
            parts = np.empty((HESS_PARTS, n_t + n_s, n_y))
            hess = functools.partial(_hess_vec_parallel if prec.threads else _hess_vec_serial, *args, parts)
        else:
            hess = functools.partial(_hess_vec, *args)
        g = -np.concatenate([ga, gb])  # [n, y]
        g[n_t + pin, iy] = 0.0  # the pinned b(y, .) is not a variable
        # Inexact Newton: a loose system solve while the gradient is large, superlinear near the end.
        tol = min(ETA_MAX, max(ETA_MIN, np.sqrt(np.abs(g).max())))
        x, it = _cg(hess, prec, g, (n_t + pin, iy), tol)
        prec.iterations = it
        self.stats.append((eps, len(prec.rho), it, rebuilt))
        return x[:n_t], x[n_t:]


def _build(pr, k, w, r, c, ridge, threads) -> _Preconditioner:
    """Block inverses of M and the Woodbury factor over the significant cells."""
    n_t, n_s, n_y = r.shape
    minv = pr.take(np.array([k])).block_inverses(w[None], np.array([ridge]))[0]
    # lambda_ts = c_ts u_ts^T M^-1 u_ts, u_ts = r_ts(y) on a(y, t) and b(y, s)
    dg = np.einsum("yii->iy", minv)
    cross = minv[:, :n_t, n_t:].transpose(1, 2, 0)  # [t, s, y]
    with np.errstate(invalid="ignore", over="ignore"):
        lam = c * (r**2 * (dg[:n_t, None, :] + dg[None, n_t:, :] + 2.0 * cross)).sum(axis=2)
    lam = np.where(np.isfinite(lam), lam, 0.0)
    cells = lam > SIGNIFICANT
    if cells.sum() > MAX_CELLS:
        cells &= lam >= np.partition(lam.ravel(), -MAX_CELLS)[-MAX_CELLS]
    ct, cs = np.nonzero(cells)
    none = _Preconditioner(minv, n_t, threads, ct[:0], cs[:0], np.zeros((0, n_y)), None, None)
    if not ct.size:
        return none
    rho = np.sqrt(c)[..., None] * r * cells[..., None]
    cap = capacitance(rho[None], minv[None], cells, upper_only=True)[0]
    cap[np.diag_indices_from(cap)] += 1.0
    # cap's upper triangle is the lower triangle of its Fortran-ordered transpose: factored in place,
    # on every core for large problems (the solver otherwise keeps BLAS on one thread)
    with _blas_threads(nb.get_num_threads()) if threads else contextlib.nullcontext():
        chol, info = scipy.linalg.lapack.dpotrf(cap.T, lower=1, clean=0, overwrite_a=1)
    if info != 0 or not np.isfinite(np.diag(chol)).all():  # P = M alone: CG still converges, more slowly
        return none
    rho_k = np.ascontiguousarray(rho[ct, cs])
    if ct.size > EXPLICIT_INVERSE:  # two triangular solves per CG iteration
        return _Preconditioner(minv, n_t, threads, ct, cs, rho_k, None, chol)
    # C^-1 explicitly: a CG iteration multiplies by it, several times faster than triangular solves
    cinv, info = scipy.linalg.lapack.dpotri(chol, lower=1, overwrite_c=1)
    cinv = np.tril(cinv) + np.tril(cinv, -1).T
    return _Preconditioner(minv, n_t, threads, ct, cs, rho_k, cinv, None)


@nb.njit(cache=True, nogil=True)
def _dot(a, b) -> float:
    """sum(a * b) of two [n, y] arrays in one pass."""
    acc = 0.0
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            acc += a[i, j] * b[i, j]
    return acc


@nb.njit(cache=True, nogil=True)
def _advance(x, res, direction, hp, alpha) -> float:
    """x += alpha direction, res -= alpha hp in place; returns |res|^2."""
    acc = 0.0
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            x[i, j] += alpha * direction[i, j]
            r = res[i, j] - alpha * hp[i, j]
            res[i, j] = r
            acc += r * r
    return acc


@nb.njit(cache=True, nogil=True)
def _turn(direction, z, beta) -> None:
    """direction = z + beta direction, in place."""
    for i in range(z.shape[0]):
        for j in range(z.shape[1]):
            direction[i, j] = z[i, j] + beta * direction[i, j]


def _cg(hess, prec: _Preconditioner, g: NDArray[np.float64], pinned, tol: float) -> tuple[NDArray[np.float64], int]:
    """Preconditioned conjugate gradients for H x = g from x = 0, ``hess(v, out)`` writing H v to out;
    returns x and the iterations.

    ``pinned`` indexes the gauge-pinned entries, which are not variables: they stay 0 in x. The
    vector updates run in compiled loops (one pass each instead of numpy's temporaries).
    """
    x = np.zeros_like(g)
    res = g.copy()
    hp = np.empty_like(g)
    z = prec.apply(res)
    direction = z.copy()
    rz = _dot(res, z)
    stop = (tol * np.sqrt(_dot(g, g))) ** 2
    for it in range(1, MAX_CG + 1):
        hess(direction, hp)
        hp[pinned] = 0.0
        curv = _dot(direction, hp)
        if not curv > 0.0:  # round-off level or non-finite: keep the last iterate
            return x, MAX_CG + 1 if it == 1 else it
        if _advance(x, res, direction, hp, rz / curv) <= stop:
            return x, it
        z = prec.apply(res)
        rz_new = _dot(res, z)
        _turn(direction, z, rz_new / rz)
        rz = rz_new
    return x, MAX_CG + 1
