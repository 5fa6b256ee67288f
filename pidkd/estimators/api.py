"""The public ``pid`` entry point: validates input once and dispatches to a PID method."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pidkd._validation import as_joint_pmf, check_base, check_choice
from pidkd.estimators._result import PIDResult
from pidkd.estimators.broja import DEFAULT_TOL, broja_decomposition

__all__ = ["METHODS", "pid"]

#: PID methods by name. A plain dict: nothing registers itself on import.
METHODS: dict[str, Callable[..., PIDResult]] = {"broja": broja_decomposition}


def pid(
    p: Any,
    *,
    method: str = "broja",
    base: float = 2.0,
    solver: str | None = None,
    tol: float = DEFAULT_TOL,
    strict: bool = True,
    counts: bool = False,
    variables: Sequence[int] | None = None,
    max_iter: int | None = None,
) -> PIDResult:
    """Bivariate partial information decomposition of I(Y; T, S).

    .. math::

        I(Y;T,S) = \\mathrm{Red}(Y{:}T,S) + \\mathrm{Uni}(Y{:}T\\setminus S)
                 + \\mathrm{Uni}(Y{:}S\\setminus T) + \\mathrm{Syn}(Y{:}T,S)

    With ``method="broja"`` (Bertschinger et al. 2014), Uni(Y:T\\S) is the minimum of
    I_Q(Y;T|S) over all Q with the same (Y,T) and (Y,S) marginals as P.

    Parameters
    ----------
    p : array_like, dit.Distribution or torch.Tensor
        Joint pmf ``p[y, t, s]`` (axis 0 the label Y, axis 1 the teacher T, axis 2 the student
        S) summing to 1, or counts with ``counts=True``.
    method : {"broja"}
        The PID definition.
    base : float, default 2
        Logarithm base of the returned numbers: 2 for bits, ``np.e`` for nats (the RID paper).
    solver : {"CLARABEL", "SCS", "ECOS"} or None
        Optimiser of the BROJA programme (``None``: Clarabel).
    tol : float, default 1e-7
        Largest accepted duality gap of the optimisation, in bits. Negative atoms from
        round-off are clipped to 0 only within this tolerance.
    strict : bool, default True
        Raise :class:`~pidkd.exceptions.SolverError` when the result cannot be certified; with
        ``False`` warn (:class:`~pidkd.exceptions.ConvergenceWarning`) and return it with
        ``diagnostics.converged == False``.
    counts : bool, default False
        ``p`` holds counts (or non-negative weights); they are divided by their total.
    variables : sequence of int, optional
        For a ``dit.Distribution``: the indices of (Y, T, S). Default (2, 0, 1).
    max_iter : int, optional
        Iteration limit of the solver.

    Returns
    -------
    PIDResult
        The atoms ``red, uni_t, uni_s, syn``, the informations ``mi_t, mi_s, mi_ts`` and the
        solver ``diagnostics`` (status, residual, duality gap, optimal q).

    References
    ----------
    Bertschinger, Rauh, Olbrich, Jost, Ay. Quantifying unique information. arXiv:1311.2852.
    Dissanayake et al. Quantifying knowledge distillation using partial information
    decomposition. arXiv:2411.07483.

    Examples
    --------
    >>> from pidkd.estimators import distributions
    >>> r = pid(distributions.xor())
    >>> round(r.syn, 6), round(r.red, 6)
    (1.0, 0.0)
    >>> r.diagnostics.status
    'optimal'
    """
    caller = "pid()"
    method = check_choice(method, list(METHODS), name="method", caller=caller)
    base = check_base(base, caller=caller)
    arr = as_joint_pmf(p, counts=counts, variables=variables, caller=caller)
    return METHODS[method](arr, base=base, solver=solver, tol=tol, strict=strict, max_iter=max_iter)
