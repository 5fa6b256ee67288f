"""The BROJA programme as an exponential-cone programme in cvxpy (``solver="CLARABEL"``, ``"SCS"``, ``"ECOS"``).

One variable per support cell (P(y,t) > 0 and P(y,s) > 0), sparse marginal constraints, the
objective H_Q(Y|T,S) as relative entropies. Its result is certified like every other solver's
(:mod:`pidkd.estimators.broja._certificate`), from the multipliers cvxpy returns: pidkd does not
take the solver's word for optimality.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pidkd._optional import import_optional
from pidkd.estimators.broja._certificate import Candidate, certify

__all__ = ["CVXPY_SOLVERS", "solve_cone"]

#: Solvers of the exponential-cone path, by cvxpy name.
CVXPY_SOLVERS = ("CLARABEL", "SCS", "ECOS")

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


def solve_cone(p: NDArray[np.float64], solver: str, tol_nats: float, max_iter: int | None) -> Candidate:
    """The programme over the support cells, as an exponential-cone programme in cvxpy."""
    import cvxpy as cp
    import scipy.sparse as sp

    if solver not in cp.installed_solvers():
        import_optional(solver.lower(), purpose=f"pid(..., solver={solver!r})")
    n_y, n_t, n_s = p.shape
    pyt, pys = p.sum(axis=2), p.sum(axis=1)
    y, t, s = np.nonzero((pyt[:, :, None] > 0) & (pys[:, None, :] > 0))
    n = y.size
    cols = np.arange(n)
    yt_keys, yt = np.unique(y * n_t + t, return_inverse=True)
    ys_keys, ys = np.unique(y * n_s + s, return_inverse=True)
    ts_keys, ts = np.unique(t * n_s + s, return_inverse=True)
    a_yt = sp.csr_matrix((np.ones(n), (yt, cols)), shape=(yt_keys.size, n))
    a_ys = sp.csr_matrix((np.ones(n), (ys, cols)), shape=(ys_keys.size, n))
    # For each y the (y, t) and (y, s) rows both sum to P(y): drop one (y, s) row per y so the
    # equality constraints are linearly independent (the support of each y is a complete
    # bipartite graph between its t and s symbols, so exactly one row per y is redundant).
    keep = np.ones(ys_keys.size, dtype=bool)
    keep[np.unique(ys_keys // n_s, return_index=True)[1]] = False
    group = sp.csr_matrix((np.ones(n), (ts, cols)), shape=(ts_keys.size, n))
    q = cp.Variable(n, nonneg=True)
    cons = [
        a_yt @ q == pyt.ravel()[yt_keys],
        a_ys[keep] @ q == pys.ravel()[ys_keys[keep]],
    ]
    prob = cp.Problem(cp.Maximize(cp.sum(-cp.rel_entr(q, group.T @ (group @ q)))), cons)
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():  # pidkd reports accuracy itself, from its own certificate
            warnings.filterwarnings("ignore", message="Solution may be inaccurate")
            prob.solve(solver=solver, **_solver_options(solver, tol_nats, max_iter))
        status = _CVXPY_STATUS.get(prob.status, "error")
    except cp.error.SolverError:
        status = "error"
    elapsed = time.perf_counter() - start
    q_dense = np.zeros(p.shape)
    if q.value is None:
        return Candidate(q_dense, None, None, "error" if status == "optimal" else status, None, elapsed, solver)
    q_dense[y, t, s] = np.clip(np.asarray(q.value, dtype=float), 0.0, None)
    a = b = None
    if cons[0].dual_value is not None and cons[1].dual_value is not None:
        a = np.zeros(n_y * n_t)
        a[yt_keys] = np.asarray(cons[0].dual_value, dtype=float).reshape(-1)
        b = np.zeros(n_y * n_s)
        b[ys_keys[keep]] = np.asarray(cons[1].dual_value, dtype=float).reshape(-1)
        a, b = a.reshape(n_y, n_t), b.reshape(n_y, n_s)
        # Any multipliers give a valid bound once repaired, so the sign convention of the
        # modelling layer does not matter: keep the tighter of the two.
        pair = np.stack([q_dense, q_dense])
        c = certify(pair, pair, np.stack([a, -a]), np.stack([b, -b]))
        if c.bound[1] < c.bound[0]:
            a, b = -a, -b
    stats = prob.solver_stats
    n_iter = None if stats is None or stats.num_iters is None else int(stats.num_iters)
    return Candidate(q_dense, a, b, status, n_iter, elapsed, solver)
