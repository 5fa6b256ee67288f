"""Compiled local search of the map redundancy (see :mod:`pidkd.estimators.maps`).

With the other side's map fixed, the co-information splits over the blocks a of a map:
J = const + sum_a term(m_a), term(m) = -P(a) I(Y;G | F=a) = sum_y xlogx(m_y.) + sum_b xlogx(m_.b)
- sum_yb xlogx(m_yb) - xlogx(m_..) for the block's table m[y, b] = P(Y=y, F=a, G=b). A move of one
code or a merge of two blocks changes two or three terms. numpy spent most of the search in the
overhead of these tiny sums; compiled, a 10 x 10 code search takes about a millisecond.
"""

from __future__ import annotations

import numpy as np
from numba import njit

GAIN = 1e-13  # a move must gain more than this (nats); a merge may lose up to this (ties: fewer blocks)
#: Two values within TIE (nats) are a tie, decided for the maps with fewer blocks: the round-off of a
#: co-information summed over a 4 x 32 x 32 table reaches about 3e-13 nats.
TIE = 1e-10
MAX_ROUNDS = 200  # rounds of merges and moves (each gains, so this only bounds a run of tiny gains)


@njit(cache=True)
def _xl(x: float) -> float:
    return x * np.log(x) if x > 0.0 else 0.0


@njit(cache=True)
def term(m: np.ndarray) -> float:
    """-P(F=a) I(Y;G | F=a) of a block table m[y, b] (nats)."""
    n_y, n_b = m.shape
    total, out = 0.0, 0.0
    for y in range(n_y):
        row = 0.0
        for b in range(n_b):
            row += m[y, b]
            out -= _xl(m[y, b])
        out += _xl(row)
        total += row
    for b in range(n_b):
        col = 0.0
        for y in range(n_y):
            col += m[y, b]
        out += _xl(col)
    return out - _xl(total)


@njit(cache=True)
def _compact(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 0..k-1 in order of first appearance."""
    seen = np.full(labels.size + int(labels.max()) + 1, -1, dtype=np.int64)
    out = np.empty_like(labels)
    k = 0
    for i in range(labels.size):
        if seen[labels[i]] < 0:
            seen[labels[i]] = k
            k += 1
        out[i] = seen[labels[i]]
    return out


@njit(cache=True)
def improve(rows: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, int]:
    """A local maximum of sum_a term(m_a) from ``labels`` (rows[code, y, b]): merges, then single-code moves.

    Returns compact labels and the number of moves evaluated.
    """
    n, n_y, n_b = rows.shape
    labels = _compact(labels.copy())
    blocks = np.zeros((n + 1, n_y, n_b))
    own = np.zeros(n + 1)
    tmp = np.empty((n_y, n_b))
    evaluated = 0
    for _ in range(MAX_ROUNDS):
        changed = False
        while True:  # merges, best first, while one does not lose
            k = int(labels.max()) + 1
            blocks[:] = 0.0
            for t in range(n):
                blocks[labels[t]] += rows[t]
            for a in range(k):
                own[a] = term(blocks[a])
            best, bi, bj = -np.inf, -1, -1
            for i in range(k):
                for j in range(i + 1, k):
                    tmp[:] = blocks[i] + blocks[j]
                    gain = term(tmp) - own[i] - own[j]
                    evaluated += 1
                    if gain > best:
                        best, bi, bj = gain, i, j
            if k < 2 or best <= -GAIN:
                break
            for t in range(n):
                if labels[t] == bj:
                    labels[t] = bi
            labels = _compact(labels)
            changed = True
        k = int(labels.max()) + 1
        blocks[:] = 0.0
        for t in range(n):
            blocks[labels[t]] += rows[t]
        for a in range(k + 1):
            own[a] = term(blocks[a])
        for t in range(n):  # single-code moves, to another block or a new one (block k)
            a = labels[t]
            tmp[:] = blocks[a] - rows[t]
            out = term(tmp) - own[a]
            best, bb = -np.inf, -1
            for b in range(k + 1):
                if b == a:
                    continue
                tmp[:] = blocks[b] + rows[t]
                gain = out + term(tmp) - own[b]
                evaluated += 1
                if gain > best:
                    best, bb = gain, b
            if best > GAIN:
                blocks[a] -= rows[t]
                blocks[bb] += rows[t]
                own[a], own[bb] = term(blocks[a]), term(blocks[bb])
                labels[t] = bb
                changed = True
                if bb == k and k < n:  # a new block was opened: the next free one is empty
                    k += 1
                    blocks[k] = 0.0
                    own[k] = 0.0
        labels = _compact(labels)
        if not changed:
            break
    return labels, evaluated


@njit(cache=True)
def table(sub: np.ndarray, f: np.ndarray, g: np.ndarray) -> np.ndarray:
    """q[y, a, b] = P(Y=y, F=a, G=b) of the pmf ``sub[y, t, s]`` under the maps f (of t) and g (of s)."""
    n_y, n_t, n_s = sub.shape
    q = np.zeros((n_y, int(f.max()) + 1, int(g.max()) + 1))
    for y in range(n_y):
        for t in range(n_t):
            for s in range(n_s):
                q[y, f[t], g[s]] += sub[y, t, s]
    return q


@njit(cache=True)
def coinfo(q: np.ndarray) -> float:
    """I(Y;F) + I(Y;G) - I(Y;F,G) in nats of q[y, a, b]: H(Y) + H(F) + H(G) - H(YF) - H(YG) - H(FG) + H(YFG)."""
    n_y, n_a, n_b = q.shape
    py, pa, pb = np.zeros(n_y), np.zeros(n_a), np.zeros(n_b)
    pya, pyb, pab = np.zeros((n_y, n_a)), np.zeros((n_y, n_b)), np.zeros((n_a, n_b))
    out = 0.0
    for y in range(n_y):
        for a in range(n_a):
            for b in range(n_b):
                v = q[y, a, b]
                py[y] += v
                pa[a] += v
                pb[b] += v
                pya[y, a] += v
                pyb[y, b] += v
                pab[a, b] += v
                out -= _xl(v)
    for y in range(n_y):
        out -= _xl(py[y])
        for a in range(n_a):
            out += _xl(pya[y, a])
        for b in range(n_b):
            out += _xl(pyb[y, b])
    for a in range(n_a):
        out -= _xl(pa[a])
        for b in range(n_b):
            out += _xl(pab[a, b])
    for b in range(n_b):
        out -= _xl(pb[b])
    return out


@njit(cache=True)
def exhaustive(sub: np.ndarray, parts_t: np.ndarray, parts_s: np.ndarray) -> tuple[float, int, int]:
    """The best pair of set partitions (rows of ``parts_t``, ``parts_s``): (value, i, j); ties go to the first
    pair in the order of the partitions of T, then of S (a pair must beat the best by more than GAIN)."""
    best, bi, bj = -np.inf, 0, 0
    for i in range(parts_t.shape[0]):
        for j in range(parts_s.shape[0]):
            v = coinfo(table(sub, parts_t[i], parts_s[j]))
            if v > best + GAIN:
                best, bi, bj = v, i, j
    return best, bi, bj


@njit(cache=True)
def alternate(sub: np.ndarray, f: np.ndarray, g: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, int]:
    """Coordinate ascent from (f, g): f for the current g, then g for the current f, until a round gains no
    more than GAIN. Returns the value (attained by the maps returned), f, g and the moves evaluated."""
    n_y, n_t, n_s = sub.shape
    f, g = _compact(f.copy()), _compact(g.copy())
    value, evaluated = coinfo(table(sub, f, g)), 0
    for _ in range(MAX_ROUNDS):
        rows_t = np.zeros((n_t, n_y, int(g.max()) + 1))  # [t, y, block of g]
        for t in range(n_t):
            for y in range(n_y):
                for s in range(n_s):
                    rows_t[t, y, g[s]] += sub[y, t, s]
        f2, e1 = improve(rows_t, f)
        rows_s = np.zeros((n_s, n_y, int(f2.max()) + 1))
        for s in range(n_s):
            for y in range(n_y):
                for t in range(n_t):
                    rows_s[s, y, f2[t]] += sub[y, t, s]
        g2, e2 = improve(rows_s, g)
        evaluated += e1 + e2
        new = coinfo(table(sub, f2, g2))
        if new <= value + GAIN:  # converged; a tie goes to the newer maps (merged: fewer blocks)
            if new >= value - TIE:
                return new, f2, g2, evaluated
            return value, f, g, evaluated
        value, f, g = new, f2, g2
    return value, f, g, evaluated
