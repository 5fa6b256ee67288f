"""BROJA decompositions of validated pmfs: closed forms, the solvers, the certificate, the atoms.

:func:`broja_decompositions` solves a batch (pidkd's Newton solver, in numpy and Numba or in
PyTorch, or the cvxpy cone programme of :mod:`pidkd.estimators.broja.cone`), certifies every
candidate optimum with :mod:`pidkd.estimators.broja._certificate`, and turns it into the four atoms;
a solve that cannot be certified raises or warns (``strict``).
"""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pidkd._optional import import_optional
from pidkd._validation import check_choice, check_positive, user_stacklevel
from pidkd.estimators._result import PIDResult, SolverDiagnostics
from pidkd.estimators.broja import _dual_newton, _sparse_solve
from pidkd.estimators.broja._certificate import Candidate, certify
from pidkd.estimators.broja.cone import CVXPY_SOLVERS, solve_cone
from pidkd.estimators.information import _h, _mi
from pidkd.estimators.measure import _ROUNDOFF
from pidkd.estimators.sparse import SparseJoint
from pidkd.exceptions import ConvergenceWarning, SolverError

__all__ = ["DEFAULT_TOL", "MIN_TOL", "RESIDUAL_TOL", "SOLVERS", "broja_decomposition", "broja_decompositions"]

#: Every solver of ``pid(..., measure="broja")``; the first is the default.
SOLVERS = ("NEWTON", *CVXPY_SOLVERS)
#: Default largest accepted duality gap in bits, per solver. Interior-point solvers stall at
#: gaps around 1e-8 on this programme (its optimum sits on a face of the polytope).
DEFAULT_TOL = {"NEWTON": 1e-9, "CLARABEL": 1e-7, "SCS": 1e-7, "ECOS": 1e-7}
#: Smallest duality gap (bits) a certificate can vouch for: the float64 round-off of the gap itself
#: reaches 1e-12 bits (measured: gaps of -1.0e-12 on 4x4x4 Dirichlet(0.5) pmfs at tol=1e-14); a
#: smaller ``tol`` is raised to this, with a warning, rather than "certified" by a negative gap.
MIN_TOL = 1e-11
#: Largest accepted violation of the marginal constraints by the optimal q.
RESIDUAL_TOL = 1e-8
#: Mutual informations (nats) at or below this are treated as exactly zero (closed-form PID).
_ZERO_MI = 1e-14
_NEWTON_MAX_ITER = 1000


def _closed_form(p: NDArray[np.float64], *, t_independent: bool) -> Candidate:
    """Exact optimum when I(Y;T) = 0 or I(Y;S) = 0: a product distribution that is optimal."""
    pyt, pys = p.sum(axis=2), p.sum(axis=1)
    if t_independent:  # Q = P(y, s) P(t) makes T independent of (Y, S): I_Q(Y;T|S) = 0
        q = pys[:, None, :] * pyt.sum(axis=0)[None, :, None]
    else:  # Q = P(y, t) P(s): I_Q(Y;T|S) = I(Y;T), the largest possible value of Red is 0
        q = pyt[:, :, None] * pys.sum(axis=0)[None, None, :]
    return Candidate(q, None, None, "optimal", 0, 0.0, "closed_form")


def _solve_newton(ps: NDArray[np.float64], tol_nats: float, max_iter: int | None) -> list[Candidate]:
    res = _dual_newton.solve(ps, gap_tol=tol_nats, residual_tol=RESIDUAL_TOL, max_iter=max_iter or _NEWTON_MAX_ITER)
    share = res.solve_time / len(ps)
    c = res.cert
    return [
        Candidate(
            res.q[i],
            res.a[i],
            res.b[i],
            "optimal" if res.converged[i] else "max_iter",
            int(res.n_iter[i]),
            share,
            "NEWTON",
            (float(c.residual[i]), float(c.h[i]), float(c.gap[i])),
        )
        for i in range(len(ps))
    ]


def _solve_torch(ps: NDArray[np.float64], tol_nats: float, max_iter: int | None, *, device: Any) -> list[Candidate]:
    """The Newton solver in PyTorch on ``device``; certified again on the host by :func:`_result`."""
    torch = import_optional("torch", purpose="pid_batch(device=...)")
    from pidkd.estimators.broja import _torch_newton

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"The 'device' parameter of pid_batch() must be a torch device such as 'cuda', 'cuda:1' or 'cpu', or "
            f"None. Got {device!r} instead."
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"pid_batch(device={device!r}): PyTorch sees no CUDA device here. Use device=None (pidkd's CPU solver)."
        )
    start = time.perf_counter()
    q, a, b, converged, n_iter = _torch_newton.solve(
        ps, device=dev, gap_tol=tol_nats, residual_tol=RESIDUAL_TOL, max_iter=max_iter or _NEWTON_MAX_ITER
    )
    share = (time.perf_counter() - start) / len(ps)
    c = certify(ps, q, a, b)  # on the host, by the code that certifies every other solver
    return [
        Candidate(
            q[i],
            a[i],
            b[i],
            "optimal" if converged[i] else "max_iter",
            int(n_iter[i]),
            share,
            "NEWTON-torch",
            (float(c.residual[i]), float(c.h[i]), float(c.gap[i])),
        )
        for i in range(len(ps))
    ]


def _informations(p: NDArray[np.float64]) -> tuple[float, float, float, float]:
    """I(Y;T), I(Y;S), I(Y;T,S) and H(Y|S) in nats."""
    pyt, pys = p.sum(axis=2), p.sum(axis=1)
    return _mi(pyt), _mi(pys), _mi(p.reshape(p.shape[0], -1)), _h(pys) - _h(pys.sum(axis=0))


def _is_closed_form(mi_t: float, mi_s: float) -> bool:
    return mi_t <= _ZERO_MI or mi_s <= _ZERO_MI


def _residual_slack(residual: float) -> float:
    """Bits by which H_q can move when q misses its marginals by ``residual`` (plus round-off).

    Moving mass r between cells changes an entropy by at most about r (1 + ln(1/r)) nats.
    """
    r = min(max(residual, 1e-300), 1e-2)
    return (r * (1.0 + np.log(1.0 / r))) / np.log(2.0) + 1e-12


def _result(
    p: NDArray[np.float64],
    sol: Candidate,
    info: tuple[float, float, float, float],
    *,
    base: float,
    tol: float,
    strict: bool,
    where: str = "",
) -> PIDResult:
    """Certify a solve and turn it into the four atoms; raise or warn if it is not certified.

    ``where`` names the problem in a batch (e.g. ``"ps[3]: "``) in the error message.
    """
    mi_t, mi_s, mi_ts, h_y_given_s = info
    if sol.cert is None:
        a = None if sol.a is None else sol.a[None]
        b = None if sol.b is None else sol.b[None]
        cert = certify(p[None], sol.q[None], a, b)
        sol.cert = (float(cert.residual[0]), float(cert.h[0]), float(cert.gap[0]))
    residual, h_opt, gap_nats = sol.cert
    gap_bits = 0.0 if sol.solver == "closed_form" else gap_nats / np.log(2.0)
    converged = bool(sol.status == "optimal" and residual <= RESIDUAL_TOL and gap_bits <= tol)

    # One free number decides every atom: uni_t. Its admissible interval keeps all four atoms
    # non-negative; anything outside by more than the tolerance is a solver failure.
    lo, hi = max(0.0, mi_t - mi_s), min(mi_t, mi_ts - mi_s)
    uni_t_raw = h_y_given_s - h_opt
    excess = max(lo - uni_t_raw, uni_t_raw - hi, 0.0) / np.log(2.0)
    if excess > tol + _residual_slack(residual):
        converged = False
    uni_t = float(np.clip(uni_t_raw, lo, max(lo, hi)))

    if not converged:
        msg = (
            f"{where}BROJA optimisation of a {p.shape} distribution stopped with status {sol.status!r} "
            f"(solver={sol.solver!r}, marginal residual {residual:.2g}, duality gap {gap_bits:.2g} "
            f"bits, atom bound violation {excess:.2g} bits; tolerances {RESIDUAL_TOL:g} and "
            f"tol={tol:g}). Try another solver (solver='NEWTON', 'CLARABEL' or 'ECOS'), a looser "
            "tol, fewer quantization bins, or strict=False to get the result with "
            "result.diagnostics.converged == False."
        )
        if strict:
            raise SolverError(msg)
        warnings.warn(msg, ConvergenceWarning, stacklevel=4)

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
        gap=gap_bits,
        q=sol.q,
    )
    return PIDResult.from_nats(
        red=red,
        uni_t=uni_t,
        uni_s=uni_s,
        syn=syn,
        mi_t=mi_t,
        mi_s=mi_s,
        mi_ts=mi_ts,
        method="broja",
        base=base,
        diagnostics=diag,
    )


def _check_solver(solver: str | None, tol: float | None, caller: str) -> tuple[str, float]:
    name = (
        "NEWTON"
        if solver is None
        else check_choice(solver, [s.lower() for s in SOLVERS], name="solver", caller=caller).upper()
    )
    tol_ = DEFAULT_TOL[name] if tol is None else check_positive(tol, name="tol", caller=caller)
    if tol_ < MIN_TOL:
        warnings.warn(
            f"{caller} got tol={tol_:g} bits, below what a float64 duality certificate resolves (its own "
            f"round-off reaches 1e-12 bits); the result is certified to tol={MIN_TOL:g} bits instead.",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
        tol_ = MIN_TOL
    return name, tol_


def broja_decompositions(
    ps: Sequence[NDArray[np.float64]],
    *,
    base: float = 2.0,
    solver: str | None = None,
    tol: float | None = None,
    strict: bool = True,
    max_iter: int | None = None,
    device: Any = None,
) -> list[PIDResult]:
    """BROJA PIDs of many validated pmfs at once (the Newton solver runs them as one batch).

    Pmfs of different shapes are padded with zero-probability symbols to a common shape, which
    changes no PID; closed-form cases (I(Y;T) = 0 or I(Y;S) = 0) skip the solver. ``device`` (a torch
    device) runs the Newton solver in PyTorch there (:mod:`pidkd.estimators.broja._torch_newton`).
    """
    caller = "pid()" if len(ps) == 1 else "pid_batch()"
    name, tol = _check_solver(solver, tol, caller)
    if device is not None and name != "NEWTON":
        raise ValueError(
            f"{caller}: device={device!r} runs pidkd's NEWTON solver in PyTorch; solver={name!r} runs on the CPU. "
            "Leave solver unset, or device=None."
        )
    # Sparse input runs on its support, dense input on the dense path, unless the measured rule of
    # _sparse_solve.route says the other is cheaper (the cvxpy solvers and PyTorch take dense arrays).
    if name == "NEWTON" and device is None:
        ps = [_sparse_solve.route(p) for p in ps]
    else:
        ps = [p.todense() if isinstance(p, SparseJoint) else p for p in ps]
    sparse = [isinstance(p, SparseJoint) for p in ps]
    infos = [_sparse_solve.informations(p) if sp else _informations(p) for p, sp in zip(ps, sparse)]
    sols: list[Candidate | None] = [None] * len(ps)
    for i, (p, info) in enumerate(zip(ps, infos)):
        if _is_closed_form(info[0], info[1]):
            independent = info[0] <= _ZERO_MI
            sols[i] = (
                _sparse_solve.closed_form(p, info, t_independent=independent)
                if sparse[i]
                else _closed_form(p, t_independent=independent)
            )
    for i in [i for i, s in enumerate(sols) if s is None and sparse[i]]:
        sols[i] = _sparse_solve.solve_sparse(ps[i], tol * np.log(2.0), RESIDUAL_TOL, max_iter or _NEWTON_MAX_ITER)
    todo = [i for i, s in enumerate(sols) if s is None]
    if todo and name == "NEWTON":
        shape = tuple(max(ps[i].shape[k] for i in todo) for k in range(3))
        stack = np.zeros((len(todo), *shape))
        for j, i in enumerate(todo):
            stack[j, : ps[i].shape[0], : ps[i].shape[1], : ps[i].shape[2]] = ps[i]
        solve = _solve_newton if device is None else functools.partial(_solve_torch, device=device)
        for j, sol in zip(todo, solve(stack, tol * np.log(2.0), max_iter)):
            n_y, n_t, n_s = ps[j].shape
            sol.q = sol.q[:n_y, :n_t, :n_s]
            sol.a = None if sol.a is None else sol.a[:n_y, :n_t]
            sol.b = None if sol.b is None else sol.b[:n_y, :n_s]
            sols[j] = sol
    else:
        for i in todo:
            sols[i] = solve_cone(ps[i], name, tol * np.log(2.0), max_iter)
    # In a batch, a problem that cannot be certified is named by its index.
    where = [f"ps[{i}]: " if len(ps) > 1 else "" for i in range(len(ps))]
    return [
        _result(p, s, info, base=base, tol=tol, strict=strict, where=w)  # type: ignore[arg-type]
        for p, s, info, w in zip(ps, sols, infos, where)
    ]


def broja_decomposition(
    p: NDArray[np.float64],
    *,
    base: float = 2.0,
    solver: str | None = None,
    tol: float | None = None,
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
    solver : {"NEWTON", "CLARABEL", "SCS", "ECOS"} or None
        ``None`` picks ``"NEWTON"``, pidkd's own solver.
    tol : float, optional
        Largest accepted duality gap, in bits (default :data:`DEFAULT_TOL` of the solver); also
        the round-off within which slightly negative atoms are clipped to 0.
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
    return broja_decompositions([p], base=base, solver=solver, tol=tol, strict=strict, max_iter=max_iter)[0]
