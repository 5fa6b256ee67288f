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
