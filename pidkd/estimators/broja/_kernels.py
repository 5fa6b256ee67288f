"""Numba kernels: the Newton solver of :mod:`pidkd.estimators.broja._dual_newton` for small alphabets.

Same algorithm and schedule as the numpy implementation there (exponential multiplier method,
damped Newton, predictor, polish, stop on a certified gap), written as loops over one problem
with a dense Hessian, so that a 4x4x4 solve costs microseconds per iteration instead of numpy's
per-call overhead (a batch runs problem by problem in compiled code). Used when the dual has at
most :data:`pidkd.estimators.broja._dual_newton.DENSE_MAX_VARS` variables. The reported certificate is
still recomputed from the result by :func:`pidkd.estimators.broja._certificate.certify`.

Compiled on first use and cached on disk (``cache=True``); imported lazily by the solver.
"""

from __future__ import annotations

import time

import numpy as np

__all__ = ["solve_small_batch"]

import numba as nb

from pidkd.estimators.broja._cell_kernel import dual_bound
from pidkd.estimators.broja._schedule import RIDGE, RIDGE_FLOOR, scalar_rules

# The schedule's rules on scalars (numba inlines them; module globals, so that numba can resolve them).
SCALAR = scalar_rules()
_armijo, _certified, _give_up, _guard_terms = SCALAR.armijo, SCALAR.certified, SCALAR.give_up, SCALAR.guard_terms
_inner_tolerance, _more_stages, _next_eps, _next_mu = (
    SCALAR.inner_tolerance,
    SCALAR.more_stages,
    SCALAR.next_eps,
    SCALAR.next_mu,
)
_polish, _quadratic = SCALAR.polish, SCALAR.quadratic


@nb.njit(cache=True, nogil=True)
def evaluate(p_yt, p_ys, cell, a, b, eps, mu, ln, r, m):
    n_y, n_t = p_yt.shape
    n_s = p_ys.shape[1]
    f = 0.0
    for y in range(n_y):
        for t in range(n_t):
            f += p_yt[y, t] * a[y, t]
        for s in range(n_s):
            f += p_ys[y, s] * b[y, s]
    msum = 0.0
    for t in range(n_t):
        for s in range(n_s):
            zmax = -np.inf
            for y in range(n_y):
                if cell[t, s, y]:
                    z = -(a[y, t] + b[y, s])
                    if z > zmax:
                        zmax = z
            if zmax == -np.inf:
                ln[t, s] = -np.inf
                m[t, s] = 0.0
                for y in range(n_y):
                    r[t, s, y] = 0.0
                continue
            tot = 0.0
            for y in range(n_y):
                if cell[t, s, y]:
                    e = np.exp(-(a[y, t] + b[y, s]) - zmax)
                    r[t, s, y] = e
                    tot += e
                else:
                    r[t, s, y] = 0.0
            for y in range(n_y):
                r[t, s, y] /= tot
            ln[t, s] = zmax + np.log(tot)
            expo = ln[t, s] / eps
            m[t, s] = mu[t, s] * np.exp(expo) if expo < 700.0 else np.inf
            msum += m[t, s]
    return f + eps * msum


@nb.njit(cache=True, nogil=True)
def gradient(p_yt, p_ys, r, m, ga, gb):
    n_y, n_t = p_yt.shape
    n_s = p_ys.shape[1]
    ga[:, :] = p_yt
    gb[:, :] = p_ys
    for t in range(n_t):
        for s in range(n_s):
            if m[t, s] != 0.0:
                for y in range(n_y):
                    w = m[t, s] * r[t, s, y]
                    ga[y, t] -= w
                    gb[y, s] -= w
    res = 0.0
    for v in ga.ravel():
        res = max(res, abs(v))
    for v in gb.ravel():
        res = max(res, abs(v))
    return res


@nb.njit(cache=True, nogil=True)
def variable_index(p_yt, p_ys, pin):
    """Position of each dual variable in the Newton system, -1 for those left out of it.

    Left out: a(y,t) with P(y,t) = 0 and b(y,s) with P(y,s) = 0 (they touch no cell, so their
    gradient and Hessian rows are zero) and the pinned b(y, pin[y]) of the gauge. Their Newton
    step is exactly 0, so the system keeps only the variables that move; with sampled
    distributions (many empty (y,t) and (y,s) cells) it shrinks several-fold.
    """
    n_y, n_t = p_yt.shape
    n_s = p_ys.shape[1]
    ia = np.full((n_y, n_t), -1, dtype=np.int64)
    ib = np.full((n_y, n_s), -1, dtype=np.int64)
    k = 0
    for t in range(n_t):
        for y in range(n_y):
            if p_yt[y, t] > 0.0:
                ia[y, t] = k
                k += 1
    for s in range(n_s):
        for y in range(n_y):
            if p_ys[y, s] > 0.0 and pin[y] != s:
                ib[y, s] = k
                k += 1
    return ia, ib, k


@nb.njit(cache=True, nogil=True)
def newton_step(r, m, ga, gb, eps, ia, ib, n):
    """Newton direction (da, db) of the smoothed dual over the ``n`` variables indexed by ia, ib."""
    n_y, n_t = ga.shape
    n_s = gb.shape[1]
    h = np.zeros((n, n))
    kmax = 0.0
    idx = np.empty(2 * n_y, dtype=np.int64)
    for t in range(n_t):
        for s in range(n_s):
            mm = m[t, s]
            if mm == 0.0:
                continue
            kap = mm * (1.0 / eps - 1.0)
            for y in range(n_y):
                idx[y] = ia[y, t]
                idx[n_y + y] = ib[y, s]
            for y in range(n_y):
                ry = r[t, s, y]
                if ry == 0.0:
                    continue
                for z in range(n_y):
                    v = kap * ry * r[t, s, z]
                    if y == z:
                        v += mm * ry
                    if v == 0.0:
                        continue
                    kmax = max(kmax, abs(v))
                    for i in (idx[y], idx[n_y + y]):
                        if i < 0:
                            continue
                        for j in (idx[z], idx[n_y + z]):
                            if j >= 0:
                                h[i, j] += v
    ridge = RIDGE * kmax + RIDGE_FLOOR
    rhs = np.zeros(n)
    for y in range(n_y):
        for t in range(n_t):
            if ia[y, t] >= 0:
                rhs[ia[y, t]] = -ga[y, t]
        for s in range(n_s):
            if ib[y, s] >= 0:
                rhs[ib[y, s]] = -gb[y, s]
    for i in range(n):
        h[i, i] += ridge
    d = np.linalg.solve(h, rhs)
    da = np.zeros((n_y, n_t))
    db = np.zeros((n_y, n_s))
    for y in range(n_y):
        for t in range(n_t):
            if ia[y, t] >= 0:
                da[y, t] = d[ia[y, t]]
        for s in range(n_s):
            if ib[y, s] >= 0:
                db[y, s] = d[ib[y, s]]
    return da, db


@nb.njit(cache=True, nogil=True)
def certify_one(p_yt, p_ys, r, m, a, b, polish):
    """Polished q (as (t,s,y) masses), residual, H(Y|T,S) and dual bound, in nats."""
    n_y, n_t = p_yt.shape
    n_s = p_ys.shape[1]
    q = np.empty((n_t, n_s, n_y))
    for t in range(n_t):
        for s in range(n_s):
            for y in range(n_y):
                q[t, s, y] = m[t, s] * r[t, s, y]
    row = np.empty((n_y, n_t))
    col = np.empty((n_y, n_s))
    for sweep in range(polish + 1):
        row[:, :] = 0.0
        for t in range(n_t):
            for s in range(n_s):
                for y in range(n_y):
                    row[y, t] += q[t, s, y]
        if sweep == polish:
            break
        for t in range(n_t):
            for s in range(n_s):
                for y in range(n_y):
                    if row[y, t] > 0.0:
                        q[t, s, y] *= p_yt[y, t] / row[y, t]
        col[:, :] = 0.0
        for t in range(n_t):
            for s in range(n_s):
                for y in range(n_y):
                    col[y, s] += q[t, s, y]
        for t in range(n_t):
            for s in range(n_s):
                for y in range(n_y):
                    if col[y, s] > 0.0:
                        q[t, s, y] *= p_ys[y, s] / col[y, s]
    col[:, :] = 0.0
    h = 0.0
    for t in range(n_t):
        for s in range(n_s):
            qts = 0.0
            for y in range(n_y):
                v = q[t, s, y]
                col[y, s] += v
                qts += v
                if v > 0.0:
                    h -= v * np.log(v)
            if qts > 0.0:
                h += qts * np.log(qts)
    res = 0.0
    for y in range(n_y):
        for t in range(n_t):
            res = max(res, abs(row[y, t] - p_yt[y, t]))
        for s in range(n_s):
            res = max(res, abs(col[y, s] - p_ys[y, s]))
    return q, res, h, dual_bound(p_yt, p_ys, a, b)


@nb.njit(cache=True, nogil=True)
def stage_shift(m, ln, sweeps):
    """alpha [t], beta [s]: :func:`pidkd.estimators.broja._dual_newton._stage_shift` of one problem."""
    n_t, n_s = m.shape
    mt, ms, lt, ls = np.zeros(n_t), np.zeros(n_s), np.zeros(n_t), np.zeros(n_s)
    for t in range(n_t):
        for s in range(n_s):
            mt[t] += m[t, s]
            ms[s] += m[t, s]
            if m[t, s] > 0.0:
                lt[t] += m[t, s] * ln[t, s]
                ls[s] += m[t, s] * ln[t, s]
    for t in range(n_t):
        mt[t] = mt[t] if mt[t] > 0.0 else 1.0
    for s in range(n_s):
        ms[s] = ms[s] if ms[s] > 0.0 else 1.0
    alpha, beta = lt / mt, np.zeros(n_s)
    for _ in range(sweeps):
        for s in range(n_s):
            acc = ls[s]
            for t in range(n_t):
                acc -= m[t, s] * alpha[t]
            beta[s] = acc / ms[s]
        for t in range(n_t):
            acc = lt[t]
            for s in range(n_s):
                acc -= m[t, s] * beta[s]
            alpha[t] = acc / mt[t]
    return alpha, beta


@nb.njit(cache=True, nogil=True)
def solve_one(p, gap_tol, residual_tol, max_iter, shrink, eps_min, max_stages):
    n_y, n_t, n_s = p.shape
    p_yt = np.zeros((n_y, n_t))
    p_ys = np.zeros((n_y, n_s))
    p_y = np.zeros(n_y)
    for y in range(n_y):
        for t in range(n_t):
            for s in range(n_s):
                p_yt[y, t] += p[y, t, s]
                p_ys[y, s] += p[y, t, s]
                p_y[y] += p[y, t, s]
    cell = np.zeros((n_t, n_s, n_y), dtype=np.bool_)
    mu = np.zeros((n_t, n_s))
    for t in range(n_t):
        for s in range(n_s):
            for y in range(n_y):
                if p_yt[y, t] > 0.0 and p_ys[y, s] > 0.0:
                    cell[t, s, y] = True
                    mu[t, s] = np.exp(-1.0)
    pin = np.zeros(n_y, dtype=np.int64)
    a = np.zeros((n_y, n_t))
    b = np.zeros((n_y, n_s))
    for y in range(n_y):
        pin[y] = np.argmax(p_ys[y])
        for t in range(n_t):
            if p_yt[y, t] > 0.0:
                a[y, t] = -np.log(p_yt[y, t])
        for s in range(n_s):
            if p_ys[y, s] > 0.0:
                b[y, s] = -np.log(p_ys[y, s]) + np.log(p_y[y]) - 1.0
    ia, ib, n_act = variable_index(p_yt, p_ys, pin)
    eps = 1.0  # at eps = 1, mu = 1/e this (a, b) is exact: Q = P(y,t) P(y,s) / P(y)
    ln = np.empty((n_t, n_s))
    r = np.empty((n_t, n_s, n_y))
    m = np.empty((n_t, n_s))
    ln2 = np.empty((n_t, n_s))
    r2 = np.empty((n_t, n_s, n_y))
    m2 = np.empty((n_t, n_s))
    ga = np.empty((n_y, n_t))
    gb = np.empty((n_y, n_s))
    ga2 = np.empty((n_y, n_t))
    gb2 = np.empty((n_y, n_s))
    f = evaluate(p_yt, p_ys, cell, a, b, eps, mu, ln, r, m)
    res = gradient(p_yt, p_ys, r, m, ga, gb)
    n_iter = 0
    stages = 0
    converged = False
    while True:
        # ---- stage end: certify, stop or update multipliers
        q, cres, h, bound = certify_one(p_yt, p_ys, r, m, a, b, 0)
        if _polish(bound - h, gap_tol):
            q, cres, h, bound = certify_one(p_yt, p_ys, r, m, a, b, 10)
        if _certified(bound - h, cres, gap_tol, residual_tol):
            converged = True
            break
        if not _more_stages(n_iter, max_iter, stages, max_stages):
            break
        # multiplier update, then the predictor of _dual_newton._stage_shift (additive fit of L by the masses)
        for t in range(n_t):
            for s in range(n_s):
                mu[t, s] = _next_mu(m[t, s], cell[t, s].any())
        alpha, beta = stage_shift(m, ln, 2)
        for y in range(n_y):
            for t in range(n_t):
                a[y, t] += alpha[t]
            for s in range(n_s):
                b[y, s] += beta[s]
        # After the shift L_ts becomes ln - alpha - beta; eps must keep mu exp(L_ts / eps) finite when a stage
        # ended with constraints still violated (L_ts > 0), or the next stage starts from infinity.
        guard = 0.0
        for t in range(n_t):
            for s in range(n_s):
                guard = max(guard, _guard_terms(ln[t, s] - alpha[t] - beta[s], mu[t, s], cell[t, s].any()))
        eps = _next_eps(eps, shrink, eps_min, guard)
        stages += 1
        f = evaluate(p_yt, p_ys, cell, a, b, eps, mu, ln, r, m)
        res = gradient(p_yt, p_ys, r, m, ga, gb)
        # ---- Newton iterations of this stage
        inner_tol = _inner_tolerance(eps, eps_min, residual_tol)
        while res > inner_tol and n_iter < max_iter:
            da, db = newton_step(r, m, ga, gb, eps, ia, ib, n_act)
            slope = (ga * da).sum() + (gb * db).sum()
            if not slope < 0.0:
                break
            n_iter += 1
            quad = _quadratic(slope)
            step = 1.0
            accepted = False
            while True:
                f2 = evaluate(p_yt, p_ys, cell, a + step * da, b + step * db, eps, mu, ln2, r2, m2)
                if quad:
                    res2 = gradient(p_yt, p_ys, r2, m2, ga2, gb2)
                    accepted = np.isfinite(f2) and res2 < res
                    break
                if _armijo(f2, f, step, slope):
                    accepted = True
                    break
                step *= 0.5
                if _give_up(step, quad):
                    break
            if not accepted:
                break
            a += step * da
            b += step * db
            f = f2
            ln[:, :] = ln2
            r[:, :, :] = r2
            m[:, :] = m2
            res = gradient(p_yt, p_ys, r, m, ga, gb)
    qo = np.empty((n_y, n_t, n_s))
    for t in range(n_t):
        for s in range(n_s):
            for y in range(n_y):
                qo[y, t, s] = q[t, s, y]
    return qo, a, b, converged, n_iter


@nb.njit(cache=True, nogil=True)
def solve_batch(ps, gap_tol, residual_tol, max_iter, shrink, eps_min, max_stages):
    nb_, n_y, n_t, n_s = ps.shape
    q = np.empty(ps.shape)
    a = np.empty((nb_, n_y, n_t))
    b = np.empty((nb_, n_y, n_s))
    conv = np.zeros(nb_, dtype=np.bool_)
    iters = np.zeros(nb_, dtype=np.int64)
    for i in nb.prange(nb_):
        q[i], a[i], b[i], conv[i], iters[i] = solve_one(
            ps[i], gap_tol, residual_tol, max_iter, shrink, eps_min, max_stages
        )
    return q, a, b, conv, iters


#: Seconds of compiled solving between two returns to Python (where Ctrl-C is seen), about.
CHUNK_SECONDS = 0.1
_FIRST_CHUNK = 8  # problems in the first call, which measures the time per problem


def interrupted(err: BaseException) -> bool:
    """Whether ``err`` is, or was raised while handling, a KeyboardInterrupt.

    A SIGINT that arrives while compiled code runs is raised when Numba next calls into Python (to
    box the results), and surfaces as a ``SystemError`` whose ``__context__`` chain ends in the
    KeyboardInterrupt.
    """
    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


def solve_small_batch(ps, *, gap_tol, residual_tol, max_iter, shrink, eps_min, max_stages):
    """Solve a batch of small problems; returns q, a, b, converged, n_iter (numpy arrays).

    The batch is solved in chunks of about :data:`CHUNK_SECONDS` each, so that Python sees a
    pending signal (Ctrl-C) between them instead of after the whole batch; a KeyboardInterrupt is
    raised as such, never as the ``SystemError`` Numba wraps it in. Every problem is solved on its
    own, so the chunking changes no number.
    """
    ps = np.ascontiguousarray(ps, dtype=np.float64)
    nb_, n_y, n_t, n_s = ps.shape
    q = np.empty(ps.shape)
    a = np.empty((nb_, n_y, n_t))
    b = np.empty((nb_, n_y, n_s))
    conv = np.zeros(nb_, dtype=np.bool_)
    iters = np.zeros(nb_, dtype=np.int64)
    start, size = 0, _FIRST_CHUNK
    while start < nb_:
        stop = min(nb_, start + size)
        tic = time.perf_counter()
        try:
            out = solve_batch(ps[start:stop], gap_tol, residual_tol, max_iter, shrink, eps_min, max_stages)
        except SystemError as err:
            if interrupted(err):
                raise KeyboardInterrupt from err
            raise
        q[start:stop], a[start:stop], b[start:stop], conv[start:stop], iters[start:stop] = out
        per_problem = max(time.perf_counter() - tic, 1e-6) / (stop - start)
        start, size = stop, max(1, int(CHUNK_SECONDS / per_problem))
    return q, a, b, conv, iters
