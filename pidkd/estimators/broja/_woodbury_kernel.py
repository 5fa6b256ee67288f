"""Numba kernels of the Woodbury Newton step of :mod:`pidkd.estimators.broja._dual_newton`.

Two pieces dominate that step when there are many labels: the inverses of the per-label blocks
M_y (size |T|+|S|) and the |T||S|-square capacitance matrix sum_y (rho_y rho_y^T) * (P^T M_y^-1 P).
The inverses are loops over labels (each through the block's structure). The capacitance is a
loop too when the labels reach few cells: it visits only the cells (t, s) that label y can reach
(rho(y, t, s) != 0), so a sampled pmf, where each label meets a few teacher and student codes,
costs the square of those cells per label instead of (|T||S|)^2; when they reach most cells it is
formed as matrix products (:func:`_capacitance_gemm`). ``forward`` and ``backward`` are the two
halves of the Woodbury solve around the capacitance system.

Every kernel has a serial and a parallel driver. The parallel one runs only from the main thread:
numba's default thread pool must not be entered from two threads at once, and pidkd's probes solve
in a background thread.

Compiled on first use and cached on disk (``cache=True``); imported lazily by the solver.
"""

from __future__ import annotations

import threading

import numba as nb
import numpy as np

__all__ = ["backward", "capacitance", "forward", "label_inverses"]


@nb.njit(cache=True, nogil=True)
def _inv_one(a, out) -> bool:
    """out = a^-1 for a symmetric positive definite a, by Cholesky; False if a is not.

    Rows without off-diagonal entries (variables of codes a label never meets, the pinned
    variable) are inverted as scalars; the Cholesky factorisation runs on the coupled rest only.
    """
    n = a.shape[0]
    idx = np.empty(n, dtype=np.int64)
    m = 0
    out[:, :] = 0.0
    for i in range(n):
        coupled = False
        for j in range(n):
            if j != i and a[i, j] != 0.0:
                coupled = True
                break
        if coupled:
            idx[m] = i
            m += 1
        elif a[i, i] > 0.0:
            out[i, i] = 1.0 / a[i, i]
        else:
            return False
    low = np.zeros((m, m))
    for j in range(m):
        d = a[idx[j], idx[j]]
        for k in range(j):
            d -= low[j, k] * low[j, k]
        if not d > 0.0:  # also catches NaN
            return False
        d = np.sqrt(d)
        low[j, j] = d
        for i in range(j + 1, m):
            v = a[idx[i], idx[j]]
            for k in range(j):
                v -= low[i, k] * low[j, k]
            low[i, j] = v / d
    inv_low = np.zeros((m, m))  # L^-1, lower triangular
    for j in range(m):
        inv_low[j, j] = 1.0 / low[j, j]
        for i in range(j + 1, m):
            v = 0.0
            for k in range(j, i):
                v -= low[i, k] * inv_low[k, j]
            inv_low[i, j] = v / low[i, i]
    for i in range(m):  # a^-1 = L^-T L^-1 on the coupled rows
        for j in range(i + 1):
            v = 0.0
            for k in range(i, m):
                v += inv_low[k, i] * inv_low[k, j]
            out[idx[i], idx[j]] = v
            out[idx[j], idx[i]] = v
    return np.isfinite(out).all()


@nb.njit(cache=True, nogil=True)
def _label_block(w, dummy_a, dummy_b, ridge, pin, y, x, sc, sinv, out) -> bool:
    """Write M_y^-1 of one problem to out (pinned b(y) row and column 0), through its structure.

    M_y = [[D_t, W], [W^T, D_s]] with diagonal D_t, D_s (the weighted degrees) and W = w[:, :, y]: the
    a-variables are eliminated first (X = D_t^-1 W), the |S|-square Schur complement
    S = D_s - W^T X is inverted by Cholesky, and M_y^-1 = [[D_t^-1 + X S^-1 X^T, -X S^-1], [., S^-1]].
    These are the operations of a Cholesky factorisation of M_y with the a-variables first, without
    the work on the zeros of D_t. ``x``, ``sc``, ``sinv`` are work arrays. False if S is not positive
    definite to round-off or anything is non-finite (the caller then inverts M_y another way).
    """
    n_t, n_s = w.shape[0], w.shape[1]
    p = pin[y]
    for t in range(n_t):
        d = dummy_a[t, y] + ridge
        for s in range(n_s):
            d += w[t, s, y]
        inv = 1.0 / d
        for s in range(n_s):
            x[t, s] = w[t, s, y] * inv if s != p else 0.0
        out[t, t] = inv  # D_t^-1 on the diagonal, completed below
    for s1 in range(n_s):
        d = dummy_b[s1, y] + ridge
        for t in range(n_t):
            d += w[t, s1, y]
        sc[s1, s1] = d
        for s2 in range(s1, n_s):
            acc = 0.0
            for t in range(n_t):
                acc += w[t, s1, y] * x[t, s2]
            if s2 == s1:
                sc[s1, s1] -= acc
            else:
                sc[s1, s2] = -acc
                sc[s2, s1] = -acc
    sc[p, :] = 0.0
    sc[:, p] = 0.0
    sc[p, p] = 1.0
    good = _inv_one(sc, sinv)
    sinv[p, :] = 0.0
    sinv[:, p] = 0.0
    for s1 in range(n_s):
        for s2 in range(n_s):
            out[n_t + s1, n_t + s2] = sinv[s1, s2]
    for t in range(n_t):  # -X S^-1, in both off-diagonal blocks
        for s2 in range(n_s):
            acc = 0.0
            for s1 in range(n_s):
                acc += x[t, s1] * sinv[s1, s2]
            out[t, n_t + s2] = -acc
            out[n_t + s2, t] = -acc
    for t1 in range(n_t):  # D_t^-1 + X S^-1 X^T = D_t^-1 - (-X S^-1) X^T
        for t2 in range(t1, n_t):
            acc = 0.0
            for s in range(n_s):
                acc -= out[t1, n_t + s] * x[t2, s]
            if t2 == t1:
                out[t1, t1] += acc
            else:
                out[t1, t2] = acc
                out[t2, t1] = acc
    if not good:
        return False
    for i in range(n_t + n_s):
        for j in range(n_t + n_s):
            if not np.isfinite(out[i, j]):
                return False
    return True


@nb.njit(cache=True, nogil=True)
def _blocks_serial(w, dummy_a, dummy_b, ridge, pin, out, ok):
    n_b, n_y = out.shape[0], out.shape[1]
    n_t, n_s = w.shape[1], w.shape[2]
    x, sc, sinv = np.empty((n_t, n_s)), np.empty((n_s, n_s)), np.empty((n_s, n_s))
    for item in range(n_b * n_y):
        b, y = item // n_y, item % n_y
        ok[b, y] = _label_block(w[b], dummy_a[b], dummy_b[b], ridge[b], pin[b], y, x, sc, sinv, out[b, y])


@nb.njit(cache=True, nogil=True, parallel=True)
def _blocks_parallel(w, dummy_a, dummy_b, ridge, pin, out, ok):
    n_b, n_y = out.shape[0], out.shape[1]
    n_t, n_s = w.shape[1], w.shape[2]
    for item in nb.prange(n_b * n_y):
        b, y = item // n_y, item % n_y
        x, sc, sinv = np.empty((n_t, n_s)), np.empty((n_s, n_s)), np.empty((n_s, n_s))
        ok[b, y] = _label_block(w[b], dummy_a[b], dummy_b[b], ridge[b], pin[b], y, x, sc, sinv, out[b, y])


@nb.njit(cache=True, nogil=True)
def _cap_labels(rr, minv, n_t, index, part, parts, c):
    """Add the sum over the labels of one problem to rows ``part::parts`` of the upper triangle of c.

    Cells are placed in c by ``index``. Entry (i, j) gains rho_i rho_j (M[t_i, t_j] + M[t_i, s_j] +
    M[s_i, t_j] + M[s_i, s_j]) with M = M_y^-1 symmetric, i.e. rho_i rho_j (row_i[t_j] + row_i[s_j])
    with row_i = M[t_i] + M[s_i]. Every entry sums its labels in order, whichever rows a call takes,
    so any split of the rows gives the same bits.
    """
    n_s, n_y = rr.shape[1], rr.shape[2]
    k = n_t * n_s
    n = minv.shape[1]
    at = np.empty(k, dtype=np.int64)  # per reached cell: its a-variable, b-variable and place in c
    bs = np.empty(k, dtype=np.int64)
    place = np.empty(k, dtype=np.int64)
    vals = np.empty(k)
    row = np.empty(n)
    for y in range(n_y):
        mi = minv[y]
        nc = 0
        for t in range(n_t):
            for s in range(n_s):
                v = rr[t, s, y]
                if v != 0.0:
                    at[nc], bs[nc], place[nc], vals[nc] = t, n_t + s, index[t * n_s + s], v
                    nc += 1
        if nc == k and place[k - 1] == k - 1:  # every cell, in place order: contiguous loops that vectorise
            for i in range(part, nc, parts):
                t1, s1 = i // n_s, i % n_s
                for x in range(n):
                    row[x] = mi[t1, x] + mi[n_t + s1, x]
                ci, vi = c[i], vals[i]
                for t2 in range(t1, n_t):  # j >= i in row-major (t, s) order, as below
                    rt, base = row[t2], t2 * n_s
                    for s2 in range(s1 if t2 == t1 else 0, n_s):
                        ci[base + s2] += vi * vals[base + s2] * (rt + row[n_t + s2])
            continue
        for i in range(nc):
            if place[i] % parts != part:
                continue
            for x in range(n):
                row[x] = mi[at[i], x] + mi[bs[i], x]
            ci, vi = c[place[i]], vals[i]
            for j in range(i, nc):
                ci[place[j]] += vi * vals[j] * (row[at[j]] + row[bs[j]])


@nb.njit(cache=True, nogil=True)
def _cap_serial(rr, minv, n_t, index, parts, out):
    for item in range(rr.shape[0] * parts):
        b = item // parts
        _cap_labels(rr[b], minv[b], n_t, index, item % parts, parts, out[b])


@nb.njit(cache=True, nogil=True, parallel=True)
def _cap_parallel(rr, minv, n_t, index, parts, out):
    for item in nb.prange(rr.shape[0] * parts):
        b = item // parts
        _cap_labels(rr[b], minv[b], n_t, index, item % parts, parts, out[b])


@nb.njit(cache=True, nogil=True)
def _operand(rr, mt, n_t, v, out):
    """out[i, y] = rho_i(y) (M_y[t_i, v] + M_y[s_i, v]) for every cell i = (t, s) of one problem (row-major).

    ``mt[row, v, y]`` is M_y^-1 with the labels last, so that the innermost loop runs over contiguous y.
    """
    n_s, n_y = rr.shape[1], rr.shape[2]
    for t in range(n_t):
        for s in range(n_s):
            row = out[t * n_s + s]
            for y in range(n_y):
                row[y] = rr[t, s, y] * (mt[t, v, y] + mt[n_t + s, v, y])


@nb.njit(cache=True, nogil=True)
def _operands_serial(rr, mt, n_t, out):
    n_b, n = out.shape[0], out.shape[1]
    for item in range(n_b * n):
        _operand(rr[item // n], mt[item // n], n_t, item % n, out[item // n, item % n])


@nb.njit(cache=True, nogil=True, parallel=True)
def _operands_parallel(rr, mt, n_t, out):
    n_b, n = out.shape[0], out.shape[1]
    for item in nb.prange(n_b * n):
        _operand(rr[item // n], mt[item // n], n_t, item % n, out[item // n, item % n])


#: The matrix-product capacitance is taken when the labels reach, on average, at least this fraction of
#: all cell pairs (sum_y reach_y^2 >= GEMM_PAIRS |Y| k^2; chosen by measurement, see _capacitance_gemm).
GEMM_PAIRS = 0.25
#: Largest operand array (bytes) of the matrix-product capacitance; larger batches are formed in groups.
GEMM_BYTES = 2**26


def _capacitance_gemm(rr: np.ndarray, minv: np.ndarray) -> np.ndarray:
    """The capacitance matrices of problems whose labels reach every cell, as matrix products.

    With G_v[i, y] = rho_i(y) (M_y[t_i, v] + M_y[s_i, v]) (the operands, |T|+|S| of them per problem),
    entry (i, j = (t, s)) is sum_y (G_t[i, y] + G_s[i, y]) rho_j(y): for every t one product of
    (cells x labels) by (labels x |S|), and for every s one by (labels x |T|). That is twice the flops
    of the triangle the loop kernel forms, at the speed of BLAS. Both triangles are returned; they
    agree up to round-off (the products sum in different orders).
    """
    n_b, n_t, n_s, n_y = rr.shape
    n, k = n_t + n_s, n_t * n_s
    mt = np.ascontiguousarray(minv.transpose(0, 2, 3, 1))  # [B, row, v, y]
    out = np.empty((n_b, k, k))
    group = max(1, GEMM_BYTES // (n * k * n_y * 8))
    for lo in range(0, n_b, group):
        sl = slice(lo, min(n_b, lo + group))
        ops = np.empty((sl.stop - lo, n, k, n_y))
        (_operands_parallel if _parallel() and ops.shape[0] * n > 1 else _operands_serial)(rr[sl], mt[sl], n_t, ops)
        # C is symmetric: its rows j = (t, s) come out of the products in row-major order
        by_t = np.matmul(rr[sl], ops[:, :n_t].transpose(0, 1, 3, 2))  # [B, t, s, i]
        by_s = np.matmul(rr[sl].transpose(0, 2, 1, 3), ops[:, n_t:].transpose(0, 1, 3, 2))  # [B, s, t, i]
        cap = by_t.reshape(-1, k, k) + by_s.transpose(0, 2, 1, 3).reshape(-1, k, k)
        if sl.stop - lo == n_b:
            return cap
        out[sl] = cap
    return out


@nb.njit(cache=True, nogil=True)
def _forward_one(minv, rho, g, mg, utmg):
    """mg = M^-1 g per label and utmg = U^T mg of one problem (g, mg are [n, y]; rho [t, s, y])."""
    n_t, n_s, n_y = rho.shape
    n = n_t + n_s
    for y in range(n_y):
        my = minv[y]
        for i in range(n):
            acc = 0.0
            for j in range(n):
                acc += my[i, j] * g[j, y]
            mg[i, y] = acc
    for t in range(n_t):
        for s in range(n_s):
            acc = 0.0
            for y in range(n_y):
                acc += rho[t, s, y] * (mg[t, y] + mg[n_t + s, y])
            utmg[t, s] = acc


@nb.njit(cache=True, nogil=True)
def _backward_one(minv, rho, z, mg, d):
    """d = mg - M^-1 U z of one problem (U z: the rank-one terms' sum, per label; [n, y] arrays)."""
    n_t, n_s, n_y = rho.shape
    n = n_t + n_s
    uz = np.zeros((n, n_y))
    for t in range(n_t):
        for s in range(n_s):
            zts = z[t, s]
            for y in range(n_y):
                v = rho[t, s, y] * zts
                uz[t, y] += v
                uz[n_t + s, y] += v
    for y in range(n_y):
        my = minv[y]
        for i in range(n):
            acc = 0.0
            for j in range(n):
                acc += my[i, j] * uz[j, y]
            d[i, y] = mg[i, y] - acc


@nb.njit(cache=True, nogil=True)
def _forward_serial(minv, rho, g, mg, utmg):
    for b in range(g.shape[0]):
        _forward_one(minv[b], rho[b], g[b], mg[b], utmg[b])


@nb.njit(cache=True, nogil=True, parallel=True)
def _forward_parallel(minv, rho, g, mg, utmg):
    for b in nb.prange(g.shape[0]):
        _forward_one(minv[b], rho[b], g[b], mg[b], utmg[b])


@nb.njit(cache=True, nogil=True)
def _backward_serial(minv, rho, z, mg, d):
    for b in range(z.shape[0]):
        _backward_one(minv[b], rho[b], z[b], mg[b], d[b])


@nb.njit(cache=True, nogil=True, parallel=True)
def _backward_parallel(minv, rho, z, mg, d):
    for b in nb.prange(z.shape[0]):
        _backward_one(minv[b], rho[b], z[b], mg[b], d[b])


def forward(minv: np.ndarray, rho: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(M^-1 g [B, n, y], U^T M^-1 g [B, t, s]): the first half of a Woodbury solve, for every problem.

    ``minv[b, y]`` is M_y^-1, ``rho[b, t, s, y]`` the rank-one terms' entries, ``g[b, :, y]`` the
    right-hand side over (a(y, .), b(y, .)).
    """
    mg, utmg = np.empty_like(g), np.empty(rho.shape[:3])
    args = (minv, np.ascontiguousarray(rho), np.ascontiguousarray(g), mg, utmg)
    (_forward_parallel if _parallel() and g.shape[0] > 1 else _forward_serial)(*args)
    return mg, utmg


def backward(minv: np.ndarray, rho: np.ndarray, z: np.ndarray, mg: np.ndarray) -> np.ndarray:
    """M^-1 g - M^-1 U z [B, n, y]: the second half of a Woodbury solve, given the capacitance solution z."""
    d = np.empty_like(mg)
    args = (minv, np.ascontiguousarray(rho), np.ascontiguousarray(z), mg, d)
    (_backward_parallel if _parallel() and z.shape[0] > 1 else _backward_serial)(*args)
    return d


#: Row groups of a single problem's capacitance (numba's threads take them in parallel).
CAP_PARTS = 4


def _parallel() -> bool:
    return nb.get_num_threads() > 1 and threading.current_thread() is threading.main_thread()


def label_inverses(
    w: np.ndarray, dummy_a: np.ndarray, dummy_b: np.ndarray, ridge: np.ndarray, pin: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Inverses of the per-label blocks M_y of a batch, and which ones succeeded.

    ``w[b, t, s, y]`` = m_ts r_ts(y); ``dummy_a[b, t, y]``, ``dummy_b[b, s, y]`` are 1 on variables
    that touch no cell; ``ridge[b]`` is added to every diagonal; ``pin[b, y]`` is the pinned s.
    Returns ``minv[b, y]`` of shape (|T|+|S|, |T|+|S|) with the pinned row and column 0. A block
    whose Cholesky factorisation fails (not positive definite to round-off, or non-finite) is
    flagged False and its entry left undefined; the caller inverts it another way.
    """
    n_b, n_t, n_s, n_y = w.shape
    out = np.empty((n_b, n_y, n_t + n_s, n_t + n_s))
    ok = np.empty((n_b, n_y), dtype=np.bool_)
    args = (np.ascontiguousarray(w), dummy_a, dummy_b, ridge, pin.astype(np.int64), out, ok)
    (_blocks_parallel if _parallel() and n_b * n_y > 1 else _blocks_serial)(*args)
    return out, ok


def capacitance(rr: np.ndarray, minv: np.ndarray, used: np.ndarray, upper_only: bool = False) -> np.ndarray:
    """sum_y (rho_y rho_y^T) * (P^T M_y^-1 P) for every problem, P mapping cell (t, s) to a(t) + b(s).

    ``rr[b, t, s, y]`` is rho; ``minv[b, y]`` is M_y^-1 over (a(y, .), b(y, .)); ``used[t, s]`` marks
    the cells any label of any problem reaches (rho is 0 elsewhere). Returns the symmetric matrix
    over the used cells in row-major (t, s) order, without the identity: ``cap[b, u, v]``; with
    ``upper_only`` only its upper triangle is guaranteed (the loop kernel leaves the rest 0, the matrix-product
    form fills it too), enough for an upper Cholesky factor.
    """
    n_b, n_t, n_s, n_y = rr.shape
    flat = used.ravel()
    k = int(flat.sum())
    rr, minv = np.ascontiguousarray(rr), np.ascontiguousarray(minv)
    if k == n_t * n_s:
        # labels that reach most cells: the matrix-product form (four times the flops of the loop kernel's
        # triangle, at BLAS speed); labels that reach few cells (sampled pmfs): the loop kernel, which
        # visits only the pairs of cells a label reaches
        reach = np.count_nonzero(rr, axis=(1, 2))  # [B, y]
        if float((reach.astype(float) ** 2).sum()) >= GEMM_PAIRS * n_b * n_y * k * k:
            return _capacitance_gemm(rr, minv)
    index = np.where(flat, np.cumsum(flat) - 1, -1).astype(np.int64)
    # One problem alone is split by rows (interleaved, so that the parts of the triangle are alike) for
    # several threads to work on it; every entry sums its labels in the same order in any split.
    parts = CAP_PARTS if n_b == 1 else 1
    cap = np.zeros((n_b, k, k))
    (_cap_parallel if _parallel() and n_b * parts > 1 else _cap_serial)(rr, minv, n_t, index, parts, cap)
    if upper_only:
        return cap
    upper = np.triu(cap)
    return upper + np.triu(cap, 1).transpose(0, 2, 1)
