"""Numba kernels of the per-cell work of :mod:`pidkd.estimators.broja._dual_newton`'s batched path.

Every Newton step evaluates the smoothed dual at one or more trial points and its gradient, and
every stage end polishes a candidate Q to its marginals and certifies it. Each is a few passes over
the |B||Y||T||S| cells; written with numpy they took ten or more temporaries of that size (an
evaluation took 6.7 ms on average in ``pid_from_samples`` at 100 labels, whose batches hold up to
240 100x10x10 problems). Here each is one pass, in parallel over problems (and t) from the main
thread; other threads (the probes' worker) run them serially: numba's thread pool must not be
entered from two threads at once.

The results equal the numpy expressions they replace up to round-off (sums over y in another order);
non-finite inputs give non-finite outputs, so a trial point that overflowed is still rejected.

Compiled on first use and cached on disk (``cache=True``); imported lazily by the solver.
"""

from __future__ import annotations

import threading

import numba as nb
import numpy as np

__all__ = ["certificate", "evaluate", "gradient", "polish"]


@nb.njit(cache=True, nogil=True)
def _cells(a, b, eps, mu, pyt, pys, ln, r, m, item):
    """ln, r, m of the cells (t, .) of one problem; returns the sum of their masses m."""
    n_t, n_s, n_y = r.shape[1], r.shape[2], r.shape[3]
    bi, t = item // n_t, item % n_t
    total = 0.0
    for s in range(n_s):
        zmax = -np.inf
        bad = False
        for y in range(n_y):
            if pyt[bi, t, y] > 0.0 and pys[bi, s, y] > 0.0:
                z = -(a[bi, t, y] + b[bi, s, y])
                if not np.isfinite(z):
                    bad = True
                elif z > zmax:
                    zmax = z
        out = r[bi, t, s]
        if bad or zmax == -np.inf:  # no cell (nothing to normalise) or a non-finite trial point
            fill = np.nan if bad else 0.0
            for y in range(n_y):
                out[y] = fill
            ln[bi, t, s] = np.nan if bad else -np.inf
            m[bi, t, s] = np.nan if bad else 0.0
            total += m[bi, t, s]
            continue
        ssum = 0.0
        for y in range(n_y):
            if pyt[bi, t, y] > 0.0 and pys[bi, s, y] > 0.0:
                e = np.exp(-(a[bi, t, y] + b[bi, s, y]) - zmax)
                out[y] = e
                ssum += e
            else:
                out[y] = 0.0
        inv = 1.0 / ssum
        for y in range(n_y):
            out[y] *= inv
        lse = zmax + np.log(ssum)
        ln[bi, t, s] = lse
        m[bi, t, s] = mu[bi, t, s] * np.exp(lse / eps[bi])
        total += m[bi, t, s]
    return total


@nb.njit(cache=True, nogil=True)
def _evaluate_serial(a, b, eps, mu, pyt, pys, ln, r, m, msum):
    for item in range(msum.size):
        msum[item] = _cells(a, b, eps, mu, pyt, pys, ln, r, m, item)


@nb.njit(cache=True, nogil=True, parallel=True)
def _evaluate_parallel(a, b, eps, mu, pyt, pys, ln, r, m, msum):
    for item in nb.prange(msum.size):
        msum[item] = _cells(a, b, eps, mu, pyt, pys, ln, r, m, item)


@nb.njit(cache=True, nogil=True)
def _gradient(pyt, pys, r, m, ga, gb, res):
    """ga = pyt - sum_s m r, gb = pys - sum_t m r and res = max(|ga|, |gb|) of every problem."""
    n_b, n_t, n_s, n_y = r.shape
    for bi in range(n_b):
        ga[bi] = pyt[bi]
        gb[bi] = pys[bi]
        for t in range(n_t):
            for s in range(n_s):
                mts = m[bi, t, s]
                for y in range(n_y):
                    w = mts * r[bi, t, s, y]
                    ga[bi, t, y] -= w
                    gb[bi, s, y] -= w
        worst = 0.0
        for t in range(n_t):
            for y in range(n_y):
                v = abs(ga[bi, t, y])
                if v > worst or v != v:  # NaN wins and stays, as in numpy's max
                    worst = v
        for s in range(n_s):
            for y in range(n_y):
                v = abs(gb[bi, s, y])
                if v > worst or v != v:
                    worst = v
        res[bi] = worst


@nb.njit(cache=True, nogil=True)
def _polish_one(q, pyt, pys, sweeps):
    """Iterative scaling of one q[t, s, y] to the marginals pyt[t, y], pys[s, y], in place."""
    n_t, n_s, n_y = q.shape
    acc = np.empty(n_y)
    for _ in range(sweeps):
        for t in range(n_t):  # rows: q(y, t, .) sums to P(y, t)
            acc[:] = 0.0
            for s in range(n_s):
                for y in range(n_y):
                    acc[y] += q[t, s, y]
            for y in range(n_y):
                acc[y] = pyt[t, y] / acc[y] if acc[y] > 0.0 else 1.0
            for s in range(n_s):
                for y in range(n_y):
                    q[t, s, y] *= acc[y]
        for s in range(n_s):  # columns: q(y, ., s) sums to P(y, s)
            acc[:] = 0.0
            for t in range(n_t):
                for y in range(n_y):
                    acc[y] += q[t, s, y]
            for y in range(n_y):
                acc[y] = pys[s, y] / acc[y] if acc[y] > 0.0 else 1.0
            for t in range(n_t):
                for y in range(n_y):
                    q[t, s, y] *= acc[y]
        worst = 0.0
        for t in range(n_t):
            acc[:] = 0.0
            for s in range(n_s):
                for y in range(n_y):
                    acc[y] += q[t, s, y]
            for y in range(n_y):
                worst = max(worst, abs(acc[y] - pyt[t, y]))
        if worst <= 1e-15:
            return


@nb.njit(cache=True, nogil=True)
def _polish_serial(q, pyt, pys, sweeps):
    for bi in range(q.shape[0]):
        _polish_one(q[bi], pyt[bi], pys[bi], sweeps)


@nb.njit(cache=True, nogil=True, parallel=True)
def _polish_parallel(q, pyt, pys, sweeps):
    for bi in nb.prange(q.shape[0]):
        _polish_one(q[bi], pyt[bi], pys[bi], sweeps)


@nb.njit(cache=True, nogil=True)
def dual_bound(pyt, pys, a, b):
    """Weak-duality upper bound on max H_Q(Y|T,S) (nats) from multipliers a [y, t], b [y, s] of one problem.

    sum a P(y,t) + sum b P(y,s), plus the cheaper repair that makes (a, b) dual feasible: a constant per
    t added to a, or per s added to b, of the largest violation L_ts = log sum_y exp(-a - b) > 0 in that
    row or column. NaN when a multiplier of a cell is not finite (shared with the dense kernel's
    certificate, :func:`pidkd.estimators.broja._kernels.certify_one`).
    """
    n_y, n_t = pyt.shape
    n_s = pys.shape[1]
    lin = 0.0
    for y in range(n_y):
        for t in range(n_t):
            if pyt[y, t] > 0.0:
                lin += a[y, t] * pyt[y, t]
        for s in range(n_s):
            if pys[y, s] > 0.0:
                lin += b[y, s] * pys[y, s]
    viol_t, viol_s = np.zeros(n_t), np.zeros(n_s)
    for t in range(n_t):
        for s in range(n_s):
            zmax = -np.inf
            for y in range(n_y):
                if pyt[y, t] > 0.0 and pys[y, s] > 0.0:
                    z = -(a[y, t] + b[y, s])
                    if not np.isfinite(z):
                        return np.nan
                    zmax = max(zmax, z)
            if zmax == -np.inf:  # no cell
                continue
            ssum = 0.0
            for y in range(n_y):
                if pyt[y, t] > 0.0 and pys[y, s] > 0.0:
                    ssum += np.exp(-(a[y, t] + b[y, s]) - zmax)
            v = max(zmax + np.log(ssum), 0.0)  # L_ts, violated where > 0
            viol_t[t] = max(viol_t[t], v)
            viol_s[s] = max(viol_s[s], v)
    repair_t, repair_s = 0.0, 0.0
    for t in range(n_t):
        mass = 0.0
        for y in range(n_y):
            mass += pyt[y, t]
        repair_t += viol_t[t] * mass
    for s in range(n_s):
        mass = 0.0
        for y in range(n_y):
            mass += pys[y, s]
        repair_s += viol_s[s] * mass
    return lin + min(repair_t, repair_s)


@nb.njit(cache=True, nogil=True)
def _certify_one(p, q, a, b, dual, out):
    """(residual, H_q(Y|T,S), bound) of one problem into out; p, q are [y, t, s], a [y, t], b [y, s]."""
    n_y, n_t, n_s = p.shape
    pyt, pys = np.zeros((n_y, n_t)), np.zeros((n_y, n_s))
    qyt, qys = np.zeros((n_y, n_t)), np.zeros((n_y, n_s))
    h = 0.0
    for t in range(n_t):
        for s in range(n_s):
            qts = 0.0
            for y in range(n_y):
                v = q[y, t, s]
                pyt[y, t] += p[y, t, s]
                pys[y, s] += p[y, t, s]
                qyt[y, t] += v
                qys[y, s] += v
                qts += v
                if v > 0.0:
                    h -= v * np.log(v)
            if qts > 0.0:
                h += qts * np.log(qts)
    worst = 0.0
    for y in range(n_y):
        for t in range(n_t):
            v = abs(qyt[y, t] - pyt[y, t])
            if v > worst or v != v:
                worst = v
        for s in range(n_s):
            v = abs(qys[y, s] - pys[y, s])
            if v > worst or v != v:
                worst = v
    out[0], out[1], out[2] = worst, h, np.nan
    if not dual:
        return
    out[2] = dual_bound(pyt, pys, a, b)


@nb.njit(cache=True, nogil=True)
def _certify_serial(p, q, a, b, dual, out):
    for bi in range(p.shape[0]):
        _certify_one(p[bi], q[bi], a[bi], b[bi], dual, out[bi])


@nb.njit(cache=True, nogil=True, parallel=True)
def _certify_parallel(p, q, a, b, dual, out):
    for bi in nb.prange(p.shape[0]):
        _certify_one(p[bi], q[bi], a[bi], b[bi], dual, out[bi])


def _parallel(items: int) -> bool:
    return items > 1 and nb.get_num_threads() > 1 and threading.current_thread() is threading.main_thread()


def evaluate(
    a: np.ndarray,
    b: np.ndarray,
    eps: np.ndarray,
    mu: np.ndarray,
    pyt: np.ndarray,
    pys: np.ndarray,
    threads: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """F [B], L [B, t, s], softmax r [B, t, s, y] and masses m [B, t, s] of the smoothed dual.

    ``a[b, t, y]``, ``b[b, s, y]`` are the dual variables, ``pyt[b, t, y]``, ``pys[b, s, y]`` the
    marginals (a cell (t, s) takes label y when both are positive), ``mu[b, t, s]`` the multipliers.
    An empty cell gets L = -inf, r = 0, m = 0; a cell with a non-finite z gets NaN (and so does F).
    ``threads=False`` keeps it on the calling thread (numba's threads wait for cores that the BLAS
    threads of the PCG step's many small LAPACK calls still spin on: up to 20x slower, measured).
    """
    n_b, n_t, n_y = a.shape
    n_s = b.shape[1]
    ln = np.empty((n_b, n_t, n_s))
    r = np.empty((n_b, n_t, n_s, n_y))
    m = np.empty((n_b, n_t, n_s))
    msum = np.empty(n_b * n_t)
    a, b, mu = np.ascontiguousarray(a), np.ascontiguousarray(b), np.ascontiguousarray(mu)
    args = (a, b, np.ascontiguousarray(eps), mu, pyt, pys, ln, r, m, msum)
    (_evaluate_parallel if threads and _parallel(n_b * n_t) else _evaluate_serial)(*args)
    f = (pyt * a).sum(axis=(1, 2)) + (pys * b).sum(axis=(1, 2)) + eps * msum.reshape(n_b, n_t).sum(axis=1)
    return f, ln, r, m


def gradient(
    pyt: np.ndarray, pys: np.ndarray, r: np.ndarray, m: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The gradient of the smoothed dual, (ga [B, t, y], gb [B, s, y]), and its largest entry [B]: the
    marginal residual of Q = m r against ``pyt`` and ``pys``."""
    ga, gb, res = np.empty_like(pyt), np.empty_like(pys), np.empty(pyt.shape[0])
    _gradient(pyt, pys, np.ascontiguousarray(r), np.ascontiguousarray(m), ga, gb, res)
    return ga, gb, res


def certificate(
    p: np.ndarray, q: np.ndarray, a: np.ndarray | None, b: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(residual, H_q(Y|T,S), bound) [B] of :func:`pidkd.estimators.broja._certificate.certify`, in one
    pass per problem; ``p``, ``q`` are [B, y, t, s] in any memory layout."""
    n_b, n_y, n_t, n_s = p.shape
    dual = a is not None and b is not None
    if not dual:
        a, b = np.zeros((n_b, n_y, n_t)), np.zeros((n_b, n_y, n_s))
    out = np.empty((n_b, 3))
    args = (p, q, np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), dual, out)
    (_certify_parallel if _parallel(n_b) else _certify_serial)(*args)
    return out[:, 0], out[:, 1], out[:, 2]


def polish(q: np.ndarray, pyt: np.ndarray, pys: np.ndarray, sweeps: int = 50) -> np.ndarray:
    """``q[b, t, s, y]`` rescaled alternately to ``pyt[b, t, y]`` and ``pys[b, s, y]`` (a new array).

    At most ``sweeps`` sweeps per problem; a problem stops once its (y, t) marginals are met to 1e-15.
    """
    out = np.array(q, dtype=np.float64, order="C")
    args = (out, np.ascontiguousarray(pyt), np.ascontiguousarray(pys), sweeps)
    (_polish_parallel if _parallel(out.shape[0]) else _polish_serial)(*args)
    return out
