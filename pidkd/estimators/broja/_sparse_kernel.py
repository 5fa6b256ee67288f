"""Numba loops of the support-restricted BROJA solver (:mod:`pidkd.estimators.broja._sparse_newton`).

Everything here runs over index arrays, never over |Y||T||S|: the support cells k (every (y, t, s)
with P(y, t) > 0 and P(y, s) > 0), sorted by their block (t, s) (``ptr`` delimits the blocks), with
``ci[k]`` the index of the cell's (y, t) pair (dual variable a) and ``cj[k]`` that of its (y, s) pair
(dual variable b). A vector over the dual variables holds the a's first, then the b's.

Compiled on first use and cached on disk (``cache=True``).
"""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = [
    "apply_blocks",
    "block_factors",
    "build_cells",
    "build_sorted",
    "capacitance_triplets",
    "cells_dot",
    "cells_scatter",
    "certificate",
    "evaluate",
    "gradient",
    "hess_vec",
    "polish",
    "significance",
]


@nb.njit(cache=True, nogil=True)
def build_cells(yt_ptr, ys_ptr, yt_t, ys_s, n_s, n_cells):
    """The support cells label by label: (ci, cj, key = t * n_s + s) for every pair of a label's pairs."""
    ci = np.empty(n_cells, dtype=np.int64)
    cj = np.empty(n_cells, dtype=np.int64)
    key = np.empty(n_cells, dtype=np.int64)
    k = 0
    for y in range(yt_ptr.size - 1):
        for i in range(yt_ptr[y], yt_ptr[y + 1]):
            for j in range(ys_ptr[y], ys_ptr[y + 1]):
                ci[k], cj[k], key[k] = i, j, yt_t[i] * n_s + ys_s[j]
                k += 1
    return ci, cj, key


@nb.njit(cache=True, nogil=True)
def build_sorted(yt_ptr, ys_ptr, yt_t, ys_s, n_s, n_cells, table, gid):
    """The support cells already sorted by block, by a counting sort over the keys t * n_s + s.

    ``table`` and ``gid`` are zeroed work arrays of n_t * n_s entries. Returns (ci, cj, blk, ptr, bt, bs):
    the same cells, in the same order within each block (by label), as :func:`build_cells` followed by a
    stable sort by block, without the key array or the sort.
    """
    for y in range(yt_ptr.size - 1):
        for i in range(yt_ptr[y], yt_ptr[y + 1]):
            for j in range(ys_ptr[y], ys_ptr[y + 1]):
                table[yt_t[i] * n_s + ys_s[j]] += 1
    n_g = 0
    for k in range(table.size):
        if table[k] > 0:
            n_g += 1
    ptr = np.empty(n_g + 1, dtype=np.int64)
    bt = np.empty(n_g, dtype=np.int64)
    bs = np.empty(n_g, dtype=np.int64)
    g = 0
    start = 0
    for k in range(table.size):
        c = table[k]
        if c > 0:
            table[k] = start
            gid[k] = g
            ptr[g], bt[g], bs[g] = start, k // n_s, k % n_s
            start += c
            g += 1
    ptr[n_g] = start
    ci = np.empty(n_cells, dtype=np.int64)
    cj = np.empty(n_cells, dtype=np.int64)
    blk = np.empty(n_cells, dtype=np.int64)
    for y in range(yt_ptr.size - 1):
        for i in range(yt_ptr[y], yt_ptr[y + 1]):
            for j in range(ys_ptr[y], ys_ptr[y + 1]):
                k = yt_t[i] * n_s + ys_s[j]
                q = table[k]
                table[k] = q + 1
                ci[q], cj[q], blk[q] = i, j, gid[k]
    return ci, cj, blk, ptr, bt, bs


@nb.njit(cache=True, nogil=True)
def evaluate(a, b, eps, mu, ci, cj, ptr, ln, r, m):
    """ln (L per block), r (softmax per cell) and m (mass per block) in place; returns sum m (NaN if not finite)."""
    total = 0.0
    for g in range(ptr.size - 1):
        lo, hi = ptr[g], ptr[g + 1]
        zmax = -np.inf
        bad = False
        for k in range(lo, hi):
            z = -(a[ci[k]] + b[cj[k]])
            if not np.isfinite(z):
                bad = True
            elif z > zmax:
                zmax = z
        if bad:
            for k in range(lo, hi):
                r[k] = np.nan
            ln[g], m[g] = np.nan, np.nan
            total += np.nan
            continue
        ssum = 0.0
        for k in range(lo, hi):
            e = np.exp(-(a[ci[k]] + b[cj[k]]) - zmax)
            r[k] = e
            ssum += e
        inv = 1.0 / ssum
        for k in range(lo, hi):
            r[k] *= inv
        lse = zmax + np.log(ssum)
        ln[g] = lse
        m[g] = mu[g] * np.exp(lse / eps)
        total += m[g]
    return total


@nb.njit(cache=True, nogil=True)
def gradient(pyt, pys, ci, cj, ptr, r, m, ga, gb):
    """ga = pyt - sum of Q = m r over each (y, t) pair, gb alike; returns the largest |entry| (NaN wins)."""
    ga[:] = pyt
    gb[:] = pys
    for g in range(ptr.size - 1):
        mg = m[g]
        for k in range(ptr[g], ptr[g + 1]):
            w = mg * r[k]
            ga[ci[k]] -= w
            gb[cj[k]] -= w
    worst = 0.0
    for i in range(ga.size):
        v = abs(ga[i])
        if v > worst or v != v:
            worst = v
    for j in range(gb.size):
        v = abs(gb[j])
        if v > worst or v != v:
            worst = v
    return worst


@nb.njit(cache=True, nogil=True)
def hess_vec(ci, cj, ptr, r, m, c, diag, n_a, v, out):
    """out = H v: sum over blocks of m_g (diag(r) + (1/eps - 1) r r^T) in x = v_a + v_b, plus diag * v."""
    for i in range(v.size):
        out[i] = diag[i] * v[i]
    for g in range(ptr.size - 1):
        lo, hi = ptr[g], ptr[g + 1]
        dot = 0.0
        for k in range(lo, hi):
            dot += r[k] * (v[ci[k]] + v[n_a + cj[k]])
        dot *= c[g]
        mg = m[g]
        for k in range(lo, hi):
            h = mg * r[k] * (v[ci[k]] + v[n_a + cj[k]]) + dot * r[k]
            out[ci[k]] += h
            out[n_a + cj[k]] += h


@nb.njit(cache=True, nogil=True)
def _cholesky(s, n):
    """Lower Cholesky factor of s[:n, :n] in place; False if not positive definite (or not finite)."""
    for j in range(n):
        d = s[j, j]
        for k in range(j):
            d -= s[j, k] * s[j, k]
        if not d > 0.0:
            return False
        d = np.sqrt(d)
        s[j, j] = d
        for i in range(j + 1, n):
            v = s[i, j]
            for k in range(j):
                v -= s[i, k] * s[j, k]
            s[i, j] = v / d
    return True


@nb.njit(cache=True, nogil=True)
def _chol_solve(low, n, x, lower_only):
    """x <- L^-1 x (``lower_only``) or (L L^T)^-1 x, L = low[:n, :n]."""
    for i in range(n):
        v = x[i]
        for k in range(i):
            v -= low[i, k] * x[k]
        x[i] = v / low[i, i]
    if lower_only:
        return
    for i in range(n - 1, -1, -1):
        v = x[i]
        for k in range(i + 1, n):
            v -= low[k, i] * x[k]
        x[i] = v / low[i, i]


@nb.njit(cache=True, nogil=True)
def block_factors(lab_ptr, lab_cells, ce, ck, loc, n_kept, off, w, dg, ridge, factors):
    """The Cholesky factor of every label's Schur complement S_y = D_K - W^T D_E^-1 W, into ``factors``.

    M_y (the per-label block of H without the rank-one terms) is [[D_E, W], [W^T, D_K]] over the label's
    eliminated and kept variables, both diagonal (``dg``: the weighted degrees plus the ridge). Cells are
    listed label by label, grouped by eliminated variable (``lab_cells``); ``ce[k]``, ``ck[k]`` are the
    eliminated and kept variable of cell k (-1: the pinned variable), ``loc`` a kept variable's row in
    S_y. A block that is not positive definite to round-off gets its diagonal only (the step stays a
    descent direction). Returns the number of such blocks.
    """
    failed = 0
    for y in range(lab_ptr.size - 1):
        n = n_kept[y]
        if n == 0:
            continue
        s = factors[off[y] : off[y] + n * n].reshape((n, n))
        s[:, :] = 0.0
        lo, hi = lab_ptr[y], lab_ptr[y + 1]
        for q in range(lo, hi):
            k = lab_cells[q]
            if ck[k] >= 0:
                s[loc[ck[k]], loc[ck[k]]] += w[k]
        for i in range(n):
            s[i, i] += ridge
        q = lo
        while q < hi:  # runs of cells sharing their eliminated variable
            e = ce[lab_cells[q]]
            end = q
            while end < hi and ce[lab_cells[end]] == e:
                end += 1
            if e >= 0:
                inv = 1.0 / dg[e]
                for q1 in range(q, end):
                    k1 = lab_cells[q1]
                    if ck[k1] < 0:
                        continue
                    l1 = loc[ck[k1]]
                    for q2 in range(q, end):
                        k2 = lab_cells[q2]
                        if ck[k2] >= 0 and loc[ck[k2]] <= l1:
                            s[l1, loc[ck[k2]]] -= w[k1] * w[k2] * inv
            q = end
        if not _cholesky(s, n):
            failed += 1
            for i in range(n):
                d = 0.0
                for q1 in range(lo, hi):
                    k1 = lab_cells[q1]
                    if ck[k1] >= 0 and loc[ck[k1]] == i:
                        d += w[k1]
                for j in range(n):
                    s[i, j] = 0.0
                s[i, i] = np.sqrt(d + ridge) if d + ridge > 0.0 else 1.0
    return failed


@nb.njit(cache=True, nogil=True)
def apply_blocks(lab_ptr, lab_cells, ce, ck, loc, kept_ptr, kept_var, n_kept, off, w, dg, factors, pinned, v, out):
    """out = M^-1 v, label by label through the factors of :func:`block_factors` (pinned entries 0)."""
    for y in range(lab_ptr.size - 1):
        n = n_kept[y]
        lo, hi = lab_ptr[y], lab_ptr[y + 1]
        rhs = np.empty(n)
        for q in range(kept_ptr[y], kept_ptr[y + 1]):
            rhs[q - kept_ptr[y]] = v[kept_var[q]]
        for q in range(lo, hi):
            k = lab_cells[q]
            if ce[k] >= 0:
                out[ce[k]] = v[ce[k]] / dg[ce[k]]
            if ce[k] >= 0 and ck[k] >= 0:
                rhs[loc[ck[k]]] -= w[k] * v[ce[k]] / dg[ce[k]]
        if n:
            low = factors[off[y] : off[y] + n * n].reshape((n, n))
            _chol_solve(low, n, rhs, False)
        for q in range(kept_ptr[y], kept_ptr[y + 1]):
            out[kept_var[q]] = rhs[q - kept_ptr[y]]
        for q in range(lo, hi):
            k = lab_cells[q]
            if ce[k] >= 0 and ck[k] >= 0:
                out[ce[k]] -= w[k] * rhs[loc[ck[k]]] / dg[ce[k]]
        if pinned[y] >= 0:
            out[pinned[y]] = 0.0


@nb.njit(cache=True, nogil=True)
def _h_vector(q, hi, lab_cells, ce, ck, loc, w, dg, low, n, h):
    """h = L^-1 (e_kept - W^T D_E^-1 e_elim) of cell lab_cells[q] (its run of cells sharing ce ends at hi)."""
    h[:n] = 0.0
    k = lab_cells[q]
    if ck[k] >= 0:
        h[loc[ck[k]]] = 1.0
    e = ce[k]
    if e >= 0:
        # the run of cells with the same eliminated variable: scan back and forward from q
        start = q
        while start > 0 and ce[lab_cells[start - 1]] == e and start - 1 >= 0:
            start -= 1
        for q2 in range(start, hi):
            k2 = lab_cells[q2]
            if ce[k2] != e:
                break
            if ck[k2] >= 0:
                h[loc[ck[k2]]] -= w[k2] / dg[e]
    if n:
        _chol_solve(low, n, h, True)


@nb.njit(cache=True, nogil=True)
def significance(lab_ptr, lab_cells, ce, ck, loc, n_kept, off, w, r, c, blk, dg, factors, lam):
    """lam[g] = c_g u_g^T M^-1 u_g: the eigenvalue block g's rank-one term adds to M^-1 H."""
    lam[:] = 0.0
    nmax = 1
    for y in range(n_kept.size):
        nmax = max(nmax, n_kept[y])
    h = np.empty(nmax)
    for y in range(lab_ptr.size - 1):
        n = n_kept[y]
        low = factors[off[y] : off[y] + n * n].reshape((n, n))
        for q in range(lab_ptr[y], lab_ptr[y + 1]):
            k = lab_cells[q]
            _h_vector(q, lab_ptr[y + 1], lab_cells, ce, ck, loc, w, dg, low, n, h)
            acc = 1.0 / dg[ce[k]] if ce[k] >= 0 else 0.0
            for i in range(n):
                acc += h[i] * h[i]
            lam[blk[k]] += c[blk[k]] * r[k] * r[k] * acc
    return lam


@nb.njit(cache=True, nogil=True)
def capacitance_triplets(lab_ptr, lab_cells, ce, ck, loc, n_kept, off, w, rho, blk, sig, dg, factors, n_pairs):
    """(rows, cols, values) of U^T M^-1 U over the significant blocks (``sig[g]`` >= 0 their index)."""
    rows = np.empty(n_pairs, dtype=np.int64)
    cols = np.empty(n_pairs, dtype=np.int64)
    vals = np.empty(n_pairs)
    nmax = 1
    for y in range(n_kept.size):
        nmax = max(nmax, n_kept[y])
    p = 0
    for y in range(lab_ptr.size - 1):
        n = n_kept[y]
        low = factors[off[y] : off[y] + n * n].reshape((n, n))
        lo, hi = lab_ptr[y], lab_ptr[y + 1]
        count = 0
        for q in range(lo, hi):
            if sig[blk[lab_cells[q]]] >= 0:
                count += 1
        if count == 0:
            continue
        fs = np.empty((count, nmax))
        who = np.empty(count, dtype=np.int64)
        c_ = 0
        for q in range(lo, hi):
            k = lab_cells[q]
            if sig[blk[k]] >= 0:
                _h_vector(q, hi, lab_cells, ce, ck, loc, w, dg, low, n, fs[c_])
                who[c_] = k
                c_ += 1
        for u in range(count):
            ku = who[u]
            for v_ in range(count):
                kv = who[v_]
                acc = 0.0
                for i in range(n):
                    acc += fs[u, i] * fs[v_, i]
                if ce[ku] >= 0 and ce[ku] == ce[kv]:
                    acc += 1.0 / dg[ce[ku]]
                rows[p], cols[p], vals[p] = sig[blk[ku]], sig[blk[kv]], rho[ku] * rho[kv] * acc
                p += 1
    return rows, cols, vals


@nb.njit(cache=True, nogil=True)
def cells_dot(ci, cj, n_a, rho, blk, sig, x, n_sig):
    """U^T x over the significant blocks."""
    out = np.zeros(n_sig)
    for k in range(ci.size):
        gs = sig[blk[k]]
        if gs >= 0:
            out[gs] += rho[k] * (x[ci[k]] + x[n_a + cj[k]])
    return out


@nb.njit(cache=True, nogil=True)
def cells_scatter(ci, cj, n_a, rho, blk, sig, z, out):
    """out = U z (the significant blocks' rank-one directions weighted by z)."""
    out[:] = 0.0
    for k in range(ci.size):
        gs = sig[blk[k]]
        if gs >= 0:
            out[ci[k]] += rho[k] * z[gs]
            out[n_a + cj[k]] += rho[k] * z[gs]


@nb.njit(cache=True, nogil=True)
def polish(q, ci, cj, pyt, pys, sweeps):
    """Iterative scaling of the cell masses q to the pair marginals, in place; stops at 1e-15."""
    acc_a = np.empty(pyt.size)
    acc_b = np.empty(pys.size)
    for _ in range(sweeps):
        acc_a[:] = 0.0
        for k in range(q.size):
            acc_a[ci[k]] += q[k]
        for i in range(pyt.size):
            acc_a[i] = pyt[i] / acc_a[i] if acc_a[i] > 0.0 else 1.0
        for k in range(q.size):
            q[k] *= acc_a[ci[k]]
        acc_b[:] = 0.0
        for k in range(q.size):
            acc_b[cj[k]] += q[k]
        for j in range(pys.size):
            acc_b[j] = pys[j] / acc_b[j] if acc_b[j] > 0.0 else 1.0
        for k in range(q.size):
            q[k] *= acc_b[cj[k]]
        acc_a[:] = 0.0
        for k in range(q.size):
            acc_a[ci[k]] += q[k]
        worst = 0.0
        for i in range(pyt.size):
            worst = max(worst, abs(acc_a[i] - pyt[i]))
        if worst <= 1e-15:
            return


@nb.njit(cache=True, nogil=True)
def certificate(q, ci, cj, ptr, bt, bs, pyt, pys, pt, ps, a, b, dual):
    """(residual, H_q(Y|T,S), bound) of cell masses q: the dense certificate's arithmetic on the support.

    The bound is sum a P(y,t) + sum b P(y,s) plus the cheaper repair (a constant per t or per s of the
    largest violation L_ts > 0 in that row or column, weighted by P(t) or P(s)); NaN when a multiplier
    is not finite or ``dual`` is False.
    """
    qa = np.zeros(pyt.size)
    qb = np.zeros(pys.size)
    h = 0.0
    for g in range(ptr.size - 1):
        qg = 0.0
        for k in range(ptr[g], ptr[g + 1]):
            v = q[k]
            qa[ci[k]] += v
            qb[cj[k]] += v
            qg += v
            if v > 0.0:
                h -= v * np.log(v)
        if qg > 0.0:
            h += qg * np.log(qg)
    worst = 0.0
    for i in range(pyt.size):
        v = abs(qa[i] - pyt[i])
        if v > worst or v != v:
            worst = v
    for j in range(pys.size):
        v = abs(qb[j] - pys[j])
        if v > worst or v != v:
            worst = v
    if not dual:
        return worst, h, np.nan
    lin = 0.0
    for i in range(pyt.size):
        lin += a[i] * pyt[i]
    for j in range(pys.size):
        lin += b[j] * pys[j]
    viol_t = np.zeros(pt.size)
    viol_s = np.zeros(ps.size)
    for g in range(ptr.size - 1):
        zmax = -np.inf
        for k in range(ptr[g], ptr[g + 1]):
            z = -(a[ci[k]] + b[cj[k]])
            if not np.isfinite(z):
                return worst, h, np.nan
            zmax = max(zmax, z)
        ssum = 0.0
        for k in range(ptr[g], ptr[g + 1]):
            ssum += np.exp(-(a[ci[k]] + b[cj[k]]) - zmax)
        v = max(zmax + np.log(ssum), 0.0)
        viol_t[bt[g]] = max(viol_t[bt[g]], v)
        viol_s[bs[g]] = max(viol_s[bs[g]], v)
    repair_t = 0.0
    for t in range(pt.size):
        repair_t += viol_t[t] * pt[t]
    repair_s = 0.0
    for s in range(ps.size):
        repair_s += viol_s[s] * ps[s]
    return worst, h, lin + min(repair_t, repair_s)
