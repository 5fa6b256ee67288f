"""The map redundancy: a certified lower bound on BROJA's Red that is positive on noisy representations.

For any maps f of the teacher's codes and g of the student's, with F = f(T) and G = g(S),

.. math::

    I(Y;F) - I(Y;F \\mid G) \\;\\le\\; \\mathrm{Red}(Y{:}F,G) \\;\\le\\; \\mathrm{Red}(Y{:}T,S)

(the first because BROJA's Uni(Y:F\\G) is a minimum of I_Q(Y;F|G) over a set that contains P, the
second because BROJA's redundancy is monotone under processing either source, Lemmas B.1-B.2 of
the RID paper). The **map redundancy** is the best such bound,

.. math::

    \\mathrm{Red}_{\\mathrm{map}}(Y{:}T,S) = \\max_{f, g}\\; I(Y;F) - I(Y;F \\mid G)
    = \\max_{f, g}\\; I(Y;F) + I(Y;G) - I(Y;F,G),

a co-information of Y, F and G. It is symmetric in T and S, 0 for constant maps (so never
negative), equal to the intersection redundancy Red∩ when its maximiser has I(Y;F|G) = 0, and
I_wedge <= Red∩ <= Red_map <= Red_BROJA. Unlike Red∩, which is 0 whenever P(t, s) has full
support (no non-constant map makes I(Y;F|G) exactly 0), it is positive on noisy data: a noisy
code shared by T and S is found and credited.

**What is guaranteed.** Every value pidkd reports is attained by the maps it returns (``f_t``,
``f_s``), so it is a proven lower bound on Red_BROJA, which is computed (certified) alongside as
``upper``; a value above ``upper`` would be a bug and raises. The maximum itself is proven
(``exact=True``) when all pairs of set partitions are searched: Bell(|T|)·Bell(|S|) <=
:data:`EXACT_PAIRS` (6 x 6 codes). Beyond, a local search (:func:`_search`) finds a local
maximum; ``upper - red`` bounds how far it can be from the true maximum.

The search: the objective splits over the blocks of f when g is fixed,
J = I(Y;G) - sum_a P(F=a) I(Y;G | F=a), so moving one code between blocks or merging two blocks
changes it by a few block terms. From each start it alternates between improving f for the
current g and g for the current f, each by single-code moves and block merges, until no move
gains more than 1e-13 nats (compiled: :mod:`pidkd.estimators._maps_kernel`). Starts: the identity
maps (agglomerative merging then discovers shared structure), and for k = 2, 3, 4 the best pair
of maps of k clusters of the codes' label distributions P(y|t), P(y|s) (weighted k-means, then an
exhaustive search over the partitions of the clusters).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pidkd._validation import as_joint_pmf, check_base
from pidkd.estimators._result import PIDResult, SolverDiagnostics
from pidkd.estimators.intersection import _bell, _compact, _expand, _partitions, _xlogx
from pidkd.estimators.measure import _ROUNDOFF, Measure, identity_atoms

__all__ = ["EXACT_PAIRS", "MapResult", "Maps", "co_information", "map_decompositions", "map_redundancy"]

#: Largest Bell(|T|)·Bell(|S|) searched exhaustively (|T| = |S| = 6: 41,209 pairs).
EXACT_PAIRS = 50_000
RESTARTS = 0  # random starts of the local search, besides the identity and the coarse searches (measured: 2
# more reached the exhaustive maximum on 1 more of 30 random 6 x 6 pmfs, at 40% more time)
COARSE = (2, 3, 4)  # clusters of codes whose partitions are all searched for a start
_GAIN = 1e-13  # a pair of maps must beat the best so far by more than this (nats) to replace it
_SLACK = 1e-9  # nats by which a value may exceed BROJA's Red (its certified tolerance) before it is a bug


@dataclass(frozen=True)
class MapResult:
    """The map redundancy with the maps that attain it.

    Attributes
    ----------
    red : float
        Red_map(Y:T,S) in units of ``base``: I(Y;F) - I(Y;F|G) at the maps below.
    f_t, f_s : numpy.ndarray of int
        The maps: ``f_t[t]`` is the block of teacher code t (-1 on zero-probability codes); the
        same for ``f_s``.
    exact : bool
        The maximum is proven (every pair of set partitions was searched); else a local maximum
        of the search, still a proven lower bound on Red_BROJA.
    upper : float
        Red_BROJA(Y:T,S), certified, in units of ``base``: ``red <= upper`` always.
    base : float
    n_candidates : int
        Pairs of maps evaluated (exhaustive) or moves evaluated (search).
    solve_time : float
        Seconds, the BROJA bound excluded.
    """

    red: float
    f_t: NDArray[np.int64]
    f_s: NDArray[np.int64]
    exact: bool
    upper: float
    base: float
    n_candidates: int
    solve_time: float


def _entropy_terms(q: NDArray[np.float64]) -> NDArray[np.float64]:
    """Co-information I(Y;F) + I(Y;G) - I(Y;F,G) in nats of a stack q[k, y, f, g].

    = H(Y) + H(F) + H(G) - H(Y,F) - H(Y,G) - H(F,G) + H(Y,F,G), with H = -sum x log x.
    """
    return (
        -_xlogx(q.sum(axis=(2, 3)), 1)
        - _xlogx(q.sum(axis=(1, 3)), 1)
        - _xlogx(q.sum(axis=(1, 2)), 1)
        + _xlogx(q.sum(axis=3), (1, 2))
        + _xlogx(q.sum(axis=2), (1, 2))
        + _xlogx(q.sum(axis=1), (1, 2))
        - _xlogx(q, (1, 2, 3))
    )


def co_information(p: ArrayLike, f_t: ArrayLike, f_s: ArrayLike, *, base: float = 2.0) -> float:
    """I(Y;F) - I(Y;F|G) for F = f_t(T), G = f_s(S): the value of a pair of maps, a lower bound on Red.

    Parameters
    ----------
    p : array_like, shape (n_y, n_t, n_s)
        Joint pmf p[y, t, s].
    f_t, f_s : array_like of int, shapes (n_t,), (n_s,)
        Block labels of the codes (any non-negative ints; -1 only on zero-probability codes).
    base : float, default 2

    Examples
    --------
    >>> from pidkd.estimators import distributions
    >>> round(co_information(distributions.rdn(), [0, 1], [0, 1]), 12)  # T = S = Y, one bit
    1.0
    >>> round(co_information(distributions.xor(), [0, 1], [0, 1]), 12)  # negative for synergy
    -1.0
    """
    caller = "co_information()"
    b = check_base(base, caller=caller)
    arr = as_joint_pmf(p, caller=caller)
    maps = []
    for name, f, n, axis in (("f_t", f_t, arr.shape[1], (0, 2)), ("f_s", f_s, arr.shape[2], (0, 1))):
        f = np.asarray(f)
        if f.shape != (n,) or f.dtype.kind not in "iu":
            raise ValueError(f"{caller} expects `{name}` to be {n} integer block labels; got {f.dtype} {f.shape}.")
        if np.any((f < 0) & (arr.sum(axis=axis) > 0)):
            raise ValueError(f"{caller} got a negative label in `{name}` on a code of positive probability.")
        maps.append(np.where(f < 0, 0, f))
    q = _table(arr, maps[0], maps[1])
    return float(_entropy_terms(q[None])[0] / np.log(b))


def _table(p: NDArray[np.float64], f: NDArray[np.int64], g: NDArray[np.int64]) -> NDArray[np.float64]:
    """q[y, a, b] = P(Y=y, F=a, G=b)."""
    q = np.zeros((p.shape[0], int(f.max()) + 1, int(g.max()) + 1))
    np.add.at(q, (slice(None), f[:, None], g[None, :]), p)
    return q


def _exhaustive(sub: NDArray[np.float64]) -> tuple[float, NDArray[np.int64], NDArray[np.int64], int]:
    """The maximum over every pair of set partitions (compiled); ties go to the first pair in the order of
    the partitions of T, then of S."""
    from pidkd.estimators._maps_kernel import exhaustive

    parts_t, parts_s = _partitions(sub.shape[1]), _partitions(sub.shape[2])
    best, i, j = exhaustive(np.ascontiguousarray(sub), parts_t, parts_s)
    return best, parts_t[i], parts_s[j], len(parts_t) * len(parts_s)


def _alternate(sub: NDArray[np.float64], f: NDArray[np.int64], g: NDArray[np.int64]) -> tuple[float, ...]:
    """Coordinate ascent from (f, g): f for the current g, g for the current f, until neither moves (compiled)."""
    from pidkd.estimators._maps_kernel import alternate

    return alternate(np.ascontiguousarray(sub), f.astype(np.int64), g.astype(np.int64))


def _label_clusters(pz: NDArray[np.float64], k: int) -> NDArray[np.int64]:
    """Weighted k-means (Lloyd, deterministic farthest-point start) of the label distributions P(y | z)
    of the codes z, weights P(z), as block labels."""
    w = pz.sum(axis=0)
    cond = pz.T / np.where(w > 0, w, 1.0)[:, None]
    centers = [int(np.argmax(w))]
    for _ in range(1, min(k, len(w))):
        d = ((cond[:, None, :] - cond[centers][None]) ** 2).sum(axis=2).min(axis=1) * w
        if d.max() <= 0:
            break
        centers.append(int(np.argmax(d)))
    c = cond[centers]
    labels = np.zeros(len(w), dtype=np.int64)
    for _ in range(50):
        new = ((cond[:, None, :] - c[None]) ** 2).sum(axis=2).argmin(axis=1)
        if _ and np.array_equal(new, labels):
            break
        labels = new
        for j in range(len(c)):
            mass = w[labels == j].sum()
            if mass > 0:
                c[j] = (w[labels == j, None] * cond[labels == j]).sum(axis=0) / mass
    return np.unique(labels, return_inverse=True)[1].reshape(-1)


def _search(
    sub: NDArray[np.float64], seed: int = 0, restarts: int = RESTARTS
) -> tuple[float, NDArray[np.int64], NDArray[np.int64], int]:
    """The best local maximum over the starts (see the module notes)."""
    n_t, n_s = sub.shape[1], sub.shape[2]
    rng = np.random.default_rng(seed)
    starts = [(np.arange(n_t), np.arange(n_s))]
    for k in COARSE:  # codes clustered by P(y | code), then every pair of partitions of the clusters
        ft, gs = _label_clusters(sub.sum(axis=2), k), _label_clusters(sub.sum(axis=1), k)
        _, fa, ga, _ = _exhaustive(_table(sub, ft, gs))  # at most Bell(4)^2 = 225 pairs
        starts.append((fa[ft], ga[gs]))
    starts += [(rng.integers(0, 3, n_t), rng.integers(0, 3, n_s)) for _ in range(restarts)]
    best = (0.0, np.zeros(n_t, dtype=np.int64), np.zeros(n_s, dtype=np.int64))  # constant maps: 0
    evaluated = 0
    for f, g in starts:
        value, f, g, e = _alternate(sub, f, g)
        evaluated += e
        if value > best[0] + _GAIN:
            best = (value, f, g)
    return (*best, evaluated)


def _solve(arr: NDArray[np.float64], exact: bool | None, caller: str) -> tuple[float, ...]:
    """(value in nats, f_t, f_s, proven, candidates, seconds) of a validated pmf."""
    sub, keep_t, keep_s = _compact(arr)
    pairs = _bell(sub.shape[1]) * _bell(sub.shape[2])
    if exact and pairs > 1_000_000:
        raise ValueError(
            f"{caller} with exact=True searches all {pairs:,} pairs of set partitions of |T| = {sub.shape[1]} and "
            f"|S| = {sub.shape[2]} codes; at most 1,000,000 (7 x 7) are searched. Use exact=None (a local search "
            "beyond 6 x 6 codes)."
        )
    start = time.perf_counter()
    proven = bool(exact) or (exact is None and pairs <= EXACT_PAIRS)
    value, f, g, n = _exhaustive(sub) if proven else _search(sub)
    elapsed = time.perf_counter() - start
    value = value if value > _ROUNDOFF else 0.0  # round-off of a co-information that is 0 (constant maps) shows as 0
    return value, _expand(f, keep_t, arr.shape[1]), _expand(g, keep_s, arr.shape[2]), proven, n, elapsed


def _checked(value: float, upper: float, caller: str) -> None:
    if value > upper + _SLACK:  # pragma: no cover - a theorem; reaching this is a bug in pidkd
        raise AssertionError(
            f"{caller}: the maps found give {value:.12g} nats, above BROJA's Red {upper:.12g}: please report this."
        )


def map_redundancy(p: ArrayLike, *, base: float = 2.0, exact: bool | None = None) -> MapResult:
    """Red_map(Y:T,S) = max over maps f, g of I(Y;f(T)) - I(Y;f(T)|g(S)), with the maps and BROJA's Red.

    Parameters
    ----------
    p : array_like, shape (n_y, n_t, n_s)
        Joint pmf p[y, t, s].
    base : float, default 2
    exact : bool, optional
        True: search every pair of set partitions (refused above 1,000,000 pairs, 7 x 7 codes);
        False: the local search; None (default): exhaustive up to :data:`EXACT_PAIRS` pairs.

    Returns
    -------
    MapResult
        ``red`` (attained by ``f_t``, ``f_s``: a proven lower bound on Red_BROJA), ``exact``,
        ``upper`` = Red_BROJA (certified).

    Examples
    --------
    >>> from pidkd.estimators import distributions
    >>> r = map_redundancy(distributions.rdn_xor())
    >>> round(r.red, 6), r.exact, round(r.upper, 6)
    (1.0, True, 1.0)
    """
    from pidkd.estimators.broja import broja_decomposition

    caller = "map_redundancy()"
    b = check_base(base, caller=caller)
    if exact not in (None, True, False):
        raise ValueError(f"The 'exact' parameter of {caller} must be True, False or None. Got {exact!r} instead.")
    arr = as_joint_pmf(p, caller=caller)
    value, f, g, proven, n, elapsed = _solve(arr, exact, caller)
    upper = broja_decomposition(arr, base=np.e).red
    _checked(value, upper, caller)
    ln_b = float(np.log(b))
    return MapResult(value / ln_b, f, g, proven, upper / ln_b, b, int(n), elapsed)


def map_decompositions(ps: list[NDArray[np.float64]], *, base: float = 2.0, bound: bool = True) -> list[PIDResult]:
    """PIDs with Red = Red_map and the other atoms from BROJA's identities (``pid(p, measure="maps")``).

    Uni(Y:T\\S) = I(Y;T) - Red_map, Uni(Y:S\\T) = I(Y;S) - Red_map, Syn = I(Y;T,S) - the rest.
    As Red_map <= Red_BROJA the uniques are at least BROJA's and the synergy at most BROJA's; the
    synergy can be negative, and is returned unclipped. ``details`` is the :class:`MapResult`
    (the maps, ``exact``, ``upper``); ``diagnostics.gap`` is Red_BROJA - Red_map in bits, which
    bounds how far the value can be below the true maximum (0 when ``status == "optimal"``: an
    exhaustive search); ``status`` is ``"local_optimum"`` for the local search. BROJA's Red of
    all ``ps`` is computed in one batch; with ``bound=False`` it is not (``upper`` and ``gap`` are
    NaN, the check against it is skipped): for resamples, whose values only enter an estimate.
    """
    from pidkd.estimators.broja import broja_decompositions

    caller = "pid(measure='maps')"
    out = []
    uppers = [r.red for r in broja_decompositions(ps, base=np.e)] if bound else [np.nan] * len(ps)
    for p, upper in zip(ps, uppers):
        value, f, g, proven, n, elapsed = _solve(p, None, caller)
        _checked(value, upper, caller)
        diag = SolverDiagnostics(
            solver="exhaustive" if proven else "search",
            status="optimal" if proven else "local_optimum",
            converged=True,
            n_iter=int(n),
            solve_time=elapsed,
            residual=0.0,
            gap=0.0 if proven else max(upper - value, 0.0) / np.log(2.0),
            q=None,
        )
        ln_b = float(np.log(base))
        details = MapResult(value / ln_b, f, g, proven, upper / ln_b, float(base), int(n), elapsed)
        out.append(identity_atoms(p, value, name="maps", base=base, diagnostics=diag, details=details))
    return out


@dataclass(frozen=True, repr=False)
class Maps(Measure):
    """The map redundancy as a :class:`~pidkd.estimators.measure.Measure` (``measure="maps"``); see
    :func:`map_redundancy`.

    ``bound=False`` skips BROJA's Red (the upper bound and its check): :func:`pidkd.pid_from_samples`
    decomposes its resamples so (:meth:`for_resamples`), since only their values enter the estimate;
    the plug-in is always checked. Measured on the digits probe: the maps probe 2.4x -> 1.2x the
    BROJA probe's cost.
    """

    bound: bool = True
    name = "maps"

    def for_resamples(self) -> Maps:
        return Maps(bound=False)

    def __repr__(self) -> str:
        return "Maps()" if self.bound else "Maps(bound=False)"

    def redundancy(self, p: NDArray[np.float64]) -> float:
        return map_redundancy(p, base=np.e).red

    def decompose(self, ps, *, base: float = 2.0) -> list[PIDResult]:
        return map_decompositions(list(ps), base=base, bound=self.bound)
