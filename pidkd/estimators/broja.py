"""BROJA partial information decomposition, solved as an exponential-cone programme.

Bertschinger, Rauh, Olbrich, Jost and Ay (2014) define, for a joint distribution P of (Y, T, S),

.. math::

    \\Delta_P = \\{Q : Q(y,t) = P(y,t),\\ Q(y,s) = P(y,s)\\}, \\qquad
    \\mathrm{Uni}(Y{:}T \\setminus S) = \\min_{Q \\in \\Delta_P} I_Q(Y;T \\mid S).

Because H_Q(Y|S) is constant on Delta_P, this is the concave maximisation
max_{Q in Delta_P} H_Q(Y|T,S). Only the *support cells* (y, t, s) with P(y,t) > 0 and
P(y,s) > 0 can carry mass, so the programme has one variable per support cell.

Certificate. The Lagrange dual of the programme is

.. math::

    \\min_{a, b}\\ \\sum_{y,t} a(y,t) P(y,t) + \\sum_{y,s} b(y,s) P(y,s)
    \\quad\\text{s.t.}\\quad \\log \\sum_{y} e^{-a(y,t) - b(y,s)} \\le 0
    \\ \\text{for every } (t, s),

the sum running over the y of the support cells of (t, s). Any (a, b) can be made feasible by
adding a constant per t to a; the dual objective then bounds max H_Q(Y|T,S) from above, so
``gap = bound - H_q(Y|T,S)`` bounds the error of ``uni_t`` for a feasible ``q``. pidkd computes this
bound itself from the solver's multipliers; it does not take the solver's word for optimality.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pidkd._optional import import_optional
from pidkd._validation import check_choice, check_positive
from pidkd.estimators._result import PIDResult, SolverDiagnostics
from pidkd.estimators.information import _h, _mi
from pidkd.exceptions import ConvergenceWarning, SolverError

__all__ = ["CVXPY_SOLVERS", "DEFAULT_TOL", "RESIDUAL_TOL", "broja_decomposition"]

#: Solvers of the exponential-cone path, by cvxpy name.
CVXPY_SOLVERS = ("CLARABEL", "SCS", "ECOS")
#: Default largest accepted duality gap, in bits.
DEFAULT_TOL = 1e-7
#: Largest accepted violation of the marginal constraints by the optimal q.
RESIDUAL_TOL = 1e-8
#: Mutual informations (nats) at or below this are treated as exactly zero (closed-form PID).
_ZERO_MI = 1e-14
#: Atoms (nats) smaller in magnitude than this are floating-point round-off and reported as 0.
_ROUNDOFF = 1e-14

_CVXPY_STATUS = {
    "optimal": "optimal",
    "optimal_inaccurate": "optimal_inaccurate",
    "user_limit": "max_iter",
    "infeasible": "infeasible",
    "infeasible_inaccurate": "infeasible",
    "unbounded": "infeasible",
    "unbounded_inaccurate": "infeasible",
    "infeasible_or_unbounded": "infeasible",
    "solver_error": "error",
}


def _solver_options(solver: str, tol_nats: float, max_iter: int | None) -> dict[str, Any]:
    eps = min(1e-9, tol_nats / 10)
    if solver == "CLARABEL":
        opts: dict[str, Any] = {"tol_gap_abs": eps, "tol_gap_rel": eps, "tol_feas": eps, "tol_ktratio": 1e-7}
        if max_iter is not None:
            opts["max_iter"] = max_iter
    elif solver == "SCS":
        opts = {"eps_abs": eps, "eps_rel": eps, "max_iters": max_iter or 100_000}
    else:  # ECOS
        opts = {"abstol": eps, "reltol": eps, "feastol": eps, "max_iters": max_iter or 500}
    return opts


@dataclass(frozen=True)
class Support:
    """Support cells of Delta_P and the index maps between cells and marginals.

    Cells are ordered by (t, s, y), so the cells of one (t, s) pair are contiguous.
    """

    shape: tuple[int, int, int]
    y: NDArray[np.intp]
    t: NDArray[np.intp]
    s: NDArray[np.intp]
    yt: NDArray[np.intp]  # compact index of (y, t) per cell
    ys: NDArray[np.intp]  # compact index of (y, s) per cell
    ts_start: NDArray[np.intp]  # first cell of every (t, s) group
    ts_of_cell: NDArray[np.intp]
    ts_t: NDArray[np.intp]  # t of every (t, s) group
    ts_s: NDArray[np.intp]
    p_yt: NDArray[np.float64]  # P(y, t) per compact (y, t) index
    p_ys: NDArray[np.float64]

    @classmethod
    def of(cls, p: NDArray[np.float64]) -> Support:
        n_y, n_t, n_s = p.shape
        pyt, pys = p.sum(axis=2), p.sum(axis=1)
        mask = (pyt.T[:, None, :] > 0) & (pys.T[None, :, :] > 0)  # [t, s, y]
        t, s, y = np.nonzero(mask)
        yt_id = np.full((n_y, n_t), -1, dtype=np.intp)
        yt_nz = pyt > 0
        yt_id[yt_nz] = np.arange(np.count_nonzero(yt_nz))
        ys_id = np.full((n_y, n_s), -1, dtype=np.intp)
        ys_nz = pys > 0
        ys_id[ys_nz] = np.arange(np.count_nonzero(ys_nz))
        ts_flat = t * n_s + s
        new_group = np.ones(t.size, dtype=bool)
        new_group[1:] = ts_flat[1:] != ts_flat[:-1]
        ts_start = np.flatnonzero(new_group)
        ts_of_cell = np.cumsum(new_group) - 1
        return cls(
            shape=(n_y, n_t, n_s),
            y=y,
            t=t,
            s=s,
            yt=yt_id[y, t],
            ys=ys_id[y, s],
            ts_start=ts_start,
            ts_of_cell=ts_of_cell,
            ts_t=t[ts_start],
            ts_s=s[ts_start],
            p_yt=pyt[yt_nz],
            p_ys=pys[ys_nz],
        )

    @property
    def n_cells(self) -> int:
        return int(self.y.size)

    @cached_property
    def yt_t(self) -> NDArray[np.intp]:
        idx = np.empty(self.p_yt.size, dtype=np.intp)
        idx[self.yt] = self.t
        return idx

    @cached_property
    def ys_s(self) -> NDArray[np.intp]:
        idx = np.empty(self.p_ys.size, dtype=np.intp)
        idx[self.ys] = self.s
        return idx

    def residual(self, q: NDArray[np.float64]) -> float:
        """Largest violation of the two marginal constraints by cell masses ``q``."""
        r_t = np.bincount(self.yt, weights=q, minlength=self.p_yt.size) - self.p_yt
        r_s = np.bincount(self.ys, weights=q, minlength=self.p_ys.size) - self.p_ys
        return float(max(np.abs(r_t).max(initial=0.0), np.abs(r_s).max(initial=0.0)))

    def cond_entropy(self, q: NDArray[np.float64]) -> float:
        """H_q(Y | T, S) in nats of cell masses ``q`` (0 log 0 = 0)."""
        q_ts = np.add.reduceat(q, self.ts_start) if q.size else q
        return _h(q) - _h(q_ts)

    def dense(self, q: NDArray[np.float64]) -> NDArray[np.float64]:
        out = np.zeros(self.shape)
        out[self.y, self.t, self.s] = q
        return out

    def dual_bound(self, a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
        """Upper bound (nats) on max H_Q(Y|T,S) from any multipliers ``a`` (per y,t), ``b`` (per y,s).

        The multipliers are first made dual feasible by the cheaper of two repairs: a constant
        per t added to ``a``, or a constant per s added to ``b``.
        """
        c = -(a[self.yt] + b[self.ys])
        m = np.maximum.reduceat(c, self.ts_start)
        lse = m + np.log(np.add.reduceat(np.exp(c - m[self.ts_of_cell]), self.ts_start))
        viol = np.maximum(lse, 0.0)
        n_t, n_s = self.shape[1], self.shape[2]
        shift_t = np.zeros(n_t)
        np.maximum.at(shift_t, self.ts_t, viol)
        shift_s = np.zeros(n_s)
        np.maximum.at(shift_s, self.ts_s, viol)
        p_t = np.bincount(self.yt_t, weights=self.p_yt, minlength=n_t)
        p_s = np.bincount(self.ys_s, weights=self.p_ys, minlength=n_s)
        repair = min(float(shift_t @ p_t), float(shift_s @ p_s))
        return float(a @ self.p_yt + b @ self.p_ys) + repair


@dataclass
class _Solve:
    q: NDArray[np.float64]  # cell masses
    bound: float  # dual upper bound on max H(Y|T,S), nats (nan if none)
    status: str
    n_iter: int | None
    solve_time: float
    solver: str


def _solve_cvxpy(sup: Support, solver: str, tol_nats: float, max_iter: int | None) -> _Solve:
    import cvxpy as cp
    import scipy.sparse as sp

    if solver not in cp.installed_solvers():
        import_optional(solver.lower(), purpose=f"pid(..., solver={solver!r})")
    n = sup.n_cells
    cols = np.arange(n)
    a_yt = sp.csr_matrix((np.ones(n), (sup.yt, cols)), shape=(sup.p_yt.size, n))
    a_ys = sp.csr_matrix((np.ones(n), (sup.ys, cols)), shape=(sup.p_ys.size, n))
    # For each y the (y, t) and (y, s) rows both sum to P(y): drop one (y, s) row per y so the
    # equality constraints are linearly independent (the support of each y is a complete
    # bipartite graph between its t and s symbols, so exactly one row per y is redundant).
    ys_y = np.empty(sup.p_ys.size, dtype=np.intp)
    ys_y[sup.ys] = sup.y
    keep = np.ones(sup.p_ys.size, dtype=bool)
    _, first = np.unique(ys_y, return_index=True)
    keep[first] = False
    group = sp.csr_matrix((np.ones(n), (sup.ts_of_cell, cols)), shape=(sup.ts_start.size, n))
    q = cp.Variable(n, nonneg=True)
    q_ts = group.T @ (group @ q)
    cons = [a_yt @ q == sup.p_yt, a_ys[keep] @ q == sup.p_ys[keep]]
    prob = cp.Problem(cp.Maximize(cp.sum(-cp.rel_entr(q, q_ts))), cons)
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():  # pidkd reports accuracy itself, from its own certificate
            warnings.filterwarnings("ignore", message="Solution may be inaccurate")
            prob.solve(solver=solver, **_solver_options(solver, tol_nats, max_iter))
        status = _CVXPY_STATUS.get(prob.status, "error")
    except cp.error.SolverError:
        status = "error"
    elapsed = time.perf_counter() - start
    if q.value is None:
        return _Solve(np.zeros(n), float("nan"), "error" if status == "optimal" else status, None, elapsed, solver)
    q_val = np.clip(np.asarray(q.value, dtype=float), 0.0, None)
    bound = float("nan")
    if cons[0].dual_value is not None and cons[1].dual_value is not None:
        a = np.asarray(cons[0].dual_value, dtype=float).reshape(-1)
        b = np.zeros(sup.p_ys.size)
        b[keep] = np.asarray(cons[1].dual_value, dtype=float).reshape(-1)
        # Any multipliers give a valid bound once repaired, so the sign convention of the
        # modelling layer does not matter: keep the tighter of the two.
        bound = min(sup.dual_bound(a, b), sup.dual_bound(-a, -b))
    stats = prob.solver_stats
    n_iter = None if stats is None or stats.num_iters is None else int(stats.num_iters)
    return _Solve(q_val, bound, status, n_iter, elapsed, solver)


def _closed_form(p: NDArray[np.float64], sup: Support, *, t_independent: bool) -> _Solve:
    """Exact optimum when I(Y;T) = 0 or I(Y;S) = 0: a product distribution that is optimal."""
    pyt, pys = p.sum(axis=2), p.sum(axis=1)
    if t_independent:  # Q = P(y, s) P(t) makes T independent of (Y, S): I_Q(Y;T|S) = 0
        dense = pys[:, None, :] * pyt.sum(axis=0)[None, :, None]
    else:  # Q = P(y, t) P(s): I_Q(Y;T|S) = I(Y;T), the largest possible value of Red is 0
        dense = pyt[:, :, None] * pys.sum(axis=0)[None, None, :]
    q = dense[sup.y, sup.t, sup.s]
    return _Solve(q, sup.cond_entropy(q), "optimal", 0, 0.0, "closed_form")


def broja_decomposition(
    p: NDArray[np.float64],
    *,
    base: float = 2.0,
    solver: str | None = None,
    tol: float = DEFAULT_TOL,
    strict: bool = True,
    max_iter: int | None = None,
) -> PIDResult:
    """BROJA PID of an already validated joint pmf ``p[y, t, s]``.

    Use :func:`pidkd.pid` for the validated public entry point; this function assumes ``p`` is
    a finite, non-negative float64 array summing to 1.

    Parameters
    ----------
    p : numpy.ndarray, shape (n_y, n_t, n_s)
    base : float
        Logarithm base of the returned numbers.
    solver : {"CLARABEL", "SCS", "ECOS"} or None
        cvxpy solver of the exponential-cone programme. ``None`` picks ``"CLARABEL"``.
    tol : float
        Largest accepted duality gap, in bits; also the round-off within which slightly
        negative atoms are clipped to 0.
    strict : bool
        Raise :class:`~pidkd.exceptions.SolverError` on a result that is not certified (default);
        with ``False``, warn with :class:`~pidkd.exceptions.ConvergenceWarning` instead.
    max_iter : int, optional
        Iteration limit passed to the solver.

    Returns
    -------
    PIDResult

    Examples
    --------
    >>> import numpy as np
    >>> p = np.zeros((2, 2, 2)); p[0, 0, 0] = p[1, 1, 1] = 0.5      # Y = T = S
    >>> r = broja_decomposition(p)
    >>> round(r.red, 6), round(r.syn, 6)
    (1.0, 0.0)
    """
    caller = "pid()"
    solver_name = "CLARABEL" if solver is None else check_choice(
        solver, [s.lower() for s in CVXPY_SOLVERS], name="solver", caller=caller
    ).upper()
    tol = check_positive(tol, name="tol", caller=caller)
    ln_base = float(np.log(base))
    tol_nats = tol * np.log(2.0)

    pyt, pys = p.sum(axis=2), p.sum(axis=1)
    mi_t, mi_s = _mi(pyt), _mi(pys)
    mi_ts = _mi(p.reshape(p.shape[0], -1))
    h_y_given_s = _h(pys) - _h(pys.sum(axis=0))
    sup = Support.of(p)

    if mi_t <= _ZERO_MI or mi_s <= _ZERO_MI:
        sol = _closed_form(p, sup, t_independent=mi_t <= _ZERO_MI)
    else:
        sol = _solve_cvxpy(sup, solver_name, tol_nats, max_iter)

    h_opt = sup.cond_entropy(sol.q)
    residual = sup.residual(sol.q)
    gap_nats = sol.bound - h_opt
    gap_bits = gap_nats / np.log(2.0)
    converged = bool(sol.status == "optimal" and residual <= RESIDUAL_TOL and gap_bits <= tol)

    # One free number decides every atom: uni_t. Its admissible interval keeps all four atoms
    # non-negative; anything outside by more than the tolerance is a solver failure.
    lo, hi = max(0.0, mi_t - mi_s), min(mi_t, mi_ts - mi_s)
    uni_t_raw = h_y_given_s - h_opt
    excess = max(lo - uni_t_raw, uni_t_raw - hi, 0.0) / np.log(2.0)
    if excess > tol + 1e-12:
        converged = False
    uni_t = float(np.clip(uni_t_raw, lo, max(lo, hi)))

    if not converged:
        msg = (
            f"BROJA optimisation of a {p.shape} distribution ({sup.n_cells} support cells) stopped "
            f"with status {sol.status!r} (solver={sol.solver!r}, marginal residual {residual:.2g}, "
            f"duality gap {gap_bits:.2g} bits, atom bound violation {excess:.2g} bits; "
            f"tolerances {RESIDUAL_TOL:g} and tol={tol:g}). Try another solver (solver='CLARABEL', "
            "'SCS' or 'ECOS'), a looser tol, fewer quantization bins, or strict=False to get the "
            "result with result.diagnostics.converged == False."
        )
        if strict:
            raise SolverError(msg)
        warnings.warn(msg, ConvergenceWarning, stacklevel=3)

    red = mi_t - uni_t
    uni_s = mi_s - red
    syn = mi_ts - red - uni_t - uni_s
    # Floating-point round-off of the differences above (|x| ~ 1e-16) is shown as an exact 0.
    red, uni_t, uni_s, syn = (0.0 if abs(x) < _ROUNDOFF else x for x in (red, uni_t, uni_s, syn))
    diag = SolverDiagnostics(
        solver=sol.solver,
        status=sol.status,
        converged=converged,
        n_iter=sol.n_iter,
        solve_time=sol.solve_time,
        residual=residual,
        gap=float(gap_bits),
        q=sup.dense(sol.q),
    )
    return PIDResult(
        red=red / ln_base,
        uni_t=uni_t / ln_base,
        uni_s=uni_s / ln_base,
        syn=syn / ln_base,
        mi_t=mi_t / ln_base,
        mi_s=mi_s / ln_base,
        mi_ts=mi_ts / ln_base,
        method="broja",
        base=float(base),
        diagnostics=diag,
    )
