"""Intersection-information redundancy Red∩ and the Gács–Körner lower bound.

The RID paper (arXiv:2411.07483, Definition 4.1) lower-bounds the BROJA redundancy by an
intersection information in the style of Griffith and Ho (Entropy 2015). Its printed form, which
its proof uses, is deterministic:

.. math::

    \\mathrm{Red}_\\cap(Y{:}T,S) = \\max_{f_t, f_s} I(Y; f_t(T))
    \\quad\\text{s.t.}\\quad I(Y; f_t(T) \\mid f_s(S)) = 0,

over all maps f_t of the teacher's and f_s of the student's alphabet. Theorem 4.1 of the paper:
Red∩ <= Red (BROJA). A cheaper lower bound is the Gács–Körner common part T∧S, the connected
component of (T, S) in the bipartite graph of the support of P(t, s): f_t = f_s = component
label is always feasible, so I(Y; T∧S) <= Red∩.

Maps are enumerated up to relabelling, i.e. as set partitions of the alphabets (Bell(n) of
them for n symbols); zero-probability symbols are dropped first. The search is exact: maps of T
are visited in decreasing order of I(Y; f_t(T)), and the first one for which some map of S makes
the constraint hold is the maximiser. It refuses alphabets with Bell(|T|)·Bell(|S|) above
:data:`MAX_PAIRS` (|T| = |S| = 7 is allowed, 8 x 8 is not).

The channel form of Griffith and Ho (max I(Y;Q) over all joint distributions of (Y, T, S, Q)
with P(y, t, s) fixed and Y - T - Q, Y - S - Q Markov) is not offered: the two Markov
constraints are conditional independences, which make the feasible set of channels non-convex,
so the maximum of the convex function I(Y;Q) is not attained at vertices of a polytope that can
be enumerated, and no exact algorithm is known beyond tiny alphabets.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pidkd._validation import as_joint_pmf, check_base, check_choice, check_positive
from pidkd.estimators._result import PIDResult, SolverDiagnostics
from pidkd.estimators.measure import Measure

__all__ = [
    "MAX_PAIRS",
    "Intersection",
    "IntersectionResult",
    "gacs_korner_redundancy",
    "intersection_decomposition",
    "intersection_redundancy",
    "set_partitions",
]

#: Largest Bell(|T|)·Bell(|S|) searched exactly.
MAX_PAIRS = 1_000_000
#: A conditional mutual information at or below this (nats) counts as 0.
DEFAULT_ATOL = 1e-12


@dataclass(frozen=True)
class IntersectionResult:
    """A redundancy with the maps that attain it.

    Attributes
    ----------
    red : float
        The redundancy, in units of ``base``.
    f_t, f_s : numpy.ndarray of int
        Labels of the maximising maps: ``f_t[t]`` is the value of f_t on teacher symbol t
        (length n_t of the input, -1 on zero-probability symbols); the same for ``f_s``.
    form : str
        ``"deterministic"`` (Red∩) or ``"gacs_korner"`` (I(Y; T∧S)).
    base : float
    n_candidates : int
        Pairs of maps examined.
    solve_time : float
        Seconds.
    """

    red: float
    f_t: NDArray[np.int64]
    f_s: NDArray[np.int64]
    form: str
    base: float
    n_candidates: int
    solve_time: float


@lru_cache(maxsize=16)
def _partitions(n: int) -> NDArray[np.int64]:
    """All set partitions of range(n) as restricted growth strings, shape (Bell(n), n)."""
    out: list[list[int]] = []

    def grow(prefix: list[int], top: int) -> None:
        if len(prefix) == n:
            out.append(prefix.copy())
            return
        for label in range(top + 2):
            prefix.append(label)
            grow(prefix, max(top, label))
            prefix.pop()

    if n == 0:
        return np.zeros((1, 0), dtype=np.int64)
    grow([0], 0)
    return np.array(out, dtype=np.int64)


def set_partitions(n: int) -> NDArray[np.int64]:
    """All partitions of n symbols into labelled blocks (restricted growth strings).

    Examples
    --------
    >>> set_partitions(3).tolist()
    [[0, 0, 0], [0, 0, 1], [0, 1, 0], [0, 1, 1], [0, 1, 2]]
    """
    return _partitions(int(n)).copy()


def _bell(n: int) -> int:
    row = [1]
    for _ in range(n):
        nxt = [row[-1]]
        for v in row:
            nxt.append(nxt[-1] + v)
        row = nxt
    return row[0]


def _xlogx(x: NDArray[np.float64], axis) -> NDArray[np.float64]:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > 0, x * np.log(np.where(x > 0, x, 1.0)), 0.0).sum(axis=axis)


def _mi_rows(pyz: NDArray[np.float64]) -> NDArray[np.float64]:
    """I(Y;Z) in nats for a stack pyz[k, y, z]."""
    return _xlogx(pyz, (1, 2)) - _xlogx(pyz.sum(axis=2), 1) - _xlogx(pyz.sum(axis=1), 1)


def _cmi_rows(q: NDArray[np.float64]) -> NDArray[np.float64]:
    """I(Y;Z|W) in nats for a stack q[k, y, z, w]."""
    return (
        _xlogx(q, (1, 2, 3))
        + _xlogx(q.sum(axis=(1, 2)), 1)
        - _xlogx(q.sum(axis=2), (1, 2))
        - _xlogx(q.sum(axis=1), (1, 2))
    )


def _one_hot(parts: NDArray[np.int64], n_labels: int) -> NDArray[np.float64]:
    """(k, n) labels -> (k, n, n_labels) one-hot maps."""
    return (parts[:, :, None] == np.arange(n_labels)[None, None, :]).astype(float)


def _compact(p: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.intp], NDArray[np.intp]]:
    """Drop zero-probability T and S symbols; return the smaller pmf and the kept indices."""
    keep_t = np.flatnonzero(p.sum(axis=(0, 2)) > 0)
    keep_s = np.flatnonzero(p.sum(axis=(0, 1)) > 0)
    return p[:, keep_t][:, :, keep_s], keep_t, keep_s


def _expand(labels: NDArray[np.int64], keep: NDArray[np.intp], n: int) -> NDArray[np.int64]:
    out = np.full(n, -1, dtype=np.int64)
    out[keep] = labels
    return out


def gacs_korner_redundancy(p: ArrayLike, *, base: float = 2.0) -> IntersectionResult:
    """I(Y; T∧S) with T∧S the Gács–Körner common part of the teacher and the student.

    T∧S is the connected component of (t, s) in the bipartite graph whose edges are the pairs
    with P(t, s) > 0: the largest variable that is a function of T and, almost surely, also a
    function of S. A lower bound on Red∩ and on the BROJA redundancy.

    Examples
    --------
    >>> from pidkd.estimators import distributions
    >>> gacs_korner_redundancy(distributions.rdn()).red
    1.0
    >>> gacs_korner_redundancy(distributions.and_()).red
    0.0
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    caller = "gacs_korner_redundancy()"
    b = check_base(base, caller=caller)
    arr = as_joint_pmf(p, caller=caller)
    start = time.perf_counter()
    sub, keep_t, keep_s = _compact(arr)
    n_t, n_s = sub.shape[1], sub.shape[2]
    t_idx, s_idx = np.nonzero(sub.sum(axis=0) > 0)
    graph = coo_matrix((np.ones(t_idx.size), (t_idx, n_t + s_idx)), shape=(n_t + n_s, n_t + n_s))
    _, comp = connected_components(graph, directed=False)
    _, labels = np.unique(comp, return_inverse=True)
    f_t, f_s = labels[:n_t], labels[n_t:]
    pyz = np.einsum("yt,tz->yz", sub.sum(axis=2), _one_hot(f_t[None], labels.max() + 1)[0])
    value = float(max(float(_mi_rows(pyz[None])[0]), 0.0) / np.log(b))
    return IntersectionResult(
        red=value,
        f_t=_expand(f_t, keep_t, arr.shape[1]),
        f_s=_expand(f_s, keep_s, arr.shape[2]),
        form="gacs_korner",
        base=b,
        n_candidates=1,
        solve_time=time.perf_counter() - start,
    )


def intersection_redundancy(
    p: ArrayLike, *, form: str = "deterministic", base: float = 2.0, atol: float = DEFAULT_ATOL
) -> IntersectionResult:
    """Red∩(Y:T,S): the RID paper's intersection redundancy, by exact search over maps.

    .. math::

        \\mathrm{Red}_\\cap = \\max_{f_t, f_s} I(Y; f_t(T))
        \\ \\text{s.t.}\\ I(Y; f_t(T) \\mid f_s(S)) = 0

    Parameters
    ----------
    p : array_like, shape (n_y, n_t, n_s)
        Joint pmf p[y, t, s].
    form : {"deterministic"}
        The paper's printed (deterministic) form; see the module notes on the channel form.
    base : float, default 2
    atol : float, default 1e-12
        I(Y; f_t(T) | f_s(S)) at or below this many nats counts as 0.

    Returns
    -------
    IntersectionResult
        The value and the maximising maps f_t, f_s.

    Raises
    ------
    ValueError
        If Bell(|T|)·Bell(|S|) (after dropping zero-probability symbols) exceeds
        :data:`MAX_PAIRS`.

    Examples
    --------
    >>> from pidkd.estimators import distributions
    >>> r = intersection_redundancy(distributions.rdn_xor())
    >>> round(r.red, 6)
    1.0
    """
    caller = "intersection_redundancy()"
    check_choice(form, ["deterministic"], name="form", caller=caller)
    b = check_base(base, caller=caller)
    atol = check_positive(atol, name="atol", caller=caller)
    arr = as_joint_pmf(p, caller=caller)
    sub, keep_t, keep_s = _compact(arr)
    n_y, n_t, n_s = sub.shape
    pairs = _bell(n_t) * _bell(n_s)
    if pairs > MAX_PAIRS:
        raise ValueError(
            f"{caller} searches all pairs of maps exactly and is limited to Bell(|T|)·Bell(|S|) <= "
            f"{MAX_PAIRS:,} (e.g. 7 x 7 symbols); got |T| = {n_t}, |S| = {n_s} non-zero symbols, "
            f"{pairs:,} pairs. Quantize to fewer symbols, use gacs_korner_redundancy() (a lower "
            "bound, any size), or pid(p).red (BROJA, an upper bound)."
        )
    start = time.perf_counter()
    parts_t, parts_s = _partitions(n_t), _partitions(n_s)
    one_t = _one_hot(parts_t, n_t)  # [k_t, t, z]
    one_s = _one_hot(parts_s, n_s)  # [k_s, s, w]
    pyt = sub.sum(axis=2)
    value_t = _mi_rows(np.einsum("yt,ktz->kyz", pyt, one_t))
    order = np.argsort(-value_t, kind="stable")
    checked = 0
    for k in order:
        pz = np.einsum("yts,tz->yzs", sub, one_t[k])  # [y, z, s]
        q = np.einsum("yzs,jsw->jyzw", pz, one_s)  # every map of S at once
        cmi = _cmi_rows(q)
        checked += len(parts_s)
        ok = np.flatnonzero(cmi <= atol)
        if ok.size:
            j = ok[0]
            return IntersectionResult(
                red=float(max(float(value_t[k]), 0.0) / np.log(b)),
                f_t=_expand(parts_t[k], keep_t, arr.shape[1]),
                f_s=_expand(parts_s[j], keep_s, arr.shape[2]),
                form="deterministic",
                base=b,
                n_candidates=checked,
                solve_time=time.perf_counter() - start,
            )
    raise AssertionError("unreachable: a constant f_t always satisfies the constraint")  # pragma: no cover


def intersection_decomposition(p: NDArray[np.float64], *, base: float = 2.0) -> PIDResult:
    """PID with Red = Red∩ and the other atoms from the same identities as BROJA's.

    Uni(Y:T\\S) = I(Y;T) - Red∩, Uni(Y:S\\T) = I(Y;S) - Red∩ and Syn = I(Y;T,S) - the rest.
    Because Red∩ <= Red (BROJA), the uniques are at least BROJA's and the synergy at most
    BROJA's, and the synergy can be negative: that is reported with a ``UserWarning``, never
    clipped.
    """
    import dataclasses
    import warnings

    from pidkd.estimators.information import _mi

    res = intersection_redundancy(p, base=np.e)
    pyt, pys = p.sum(axis=2), p.sum(axis=1)
    mi_t, mi_s, mi_ts = _mi(pyt), _mi(pys), _mi(p.reshape(p.shape[0], -1))
    red = res.red
    uni_t, uni_s = mi_t - red, mi_s - red
    syn = mi_ts - red - uni_t - uni_s
    atoms = {"red": red, "uni_t": uni_t, "uni_s": uni_s, "syn": syn}
    negative = {k: v / np.log(base) for k, v in atoms.items() if v < -1e-12}
    if negative:
        warnings.warn(
            f"pid(method='intersection') gives negative atoms {negative}: with Red∩ in place of "
            "BROJA's redundancy the identities do not yield a non-negative decomposition here. "
            "The values are returned unclipped.",
            UserWarning,
            stacklevel=3,
        )
    diag = SolverDiagnostics(
        solver="exhaustive",
        status="optimal",
        converged=True,
        n_iter=res.n_candidates,
        solve_time=res.solve_time,
        residual=0.0,
        gap=0.0,
        q=None,
    )
    return PIDResult.from_nats(
        red=red,
        uni_t=uni_t,
        uni_s=uni_s,
        syn=syn,
        mi_t=mi_t,
        mi_s=mi_s,
        mi_ts=mi_ts,
        method="intersection",
        base=base,
        diagnostics=diag,
        details=dataclasses.replace(res, red=res.red / np.log(base), base=base),
    )


class Intersection(Measure):
    """Red∩ of the RID paper as a :class:`~pidkd.estimators.measure.Measure` (``measure="intersection"``):
    exact search over maps, up to 7 x 7 codes; see :func:`intersection_redundancy`."""

    name = "intersection"

    def redundancy(self, p: NDArray[np.float64]) -> float:
        return intersection_redundancy(p, base=np.e).red

    def decompose(self, ps, *, base: float = 2.0) -> list[PIDResult]:
        return [intersection_decomposition(p, base=base) for p in ps]
