"""The public ``pid`` entry point: validates input once and dispatches to a PID method."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from pidkd._validation import as_joint_pmf, check_base, check_bool, check_choice, check_int
from pidkd.estimators._result import PIDResult
from pidkd.estimators.broja import broja_decomposition, broja_decompositions
from pidkd.estimators.intersection import intersection_decomposition
from pidkd.estimators.maps import map_decompositions

__all__ = ["MEASURES", "METHODS", "pid", "pid_batch"]

#: The PID measures ``pid(measure=...)`` dispatches to (broja_decomposition,
#: intersection_decomposition, map_decompositions); nothing registers itself on import.
MEASURES = ("broja", "intersection", "maps")
#: The former name of :data:`MEASURES` (``method=`` is ``measure=``'s former name).
METHODS = MEASURES


def pid(
    p: Any,
    *,
    measure: str | None = None,
    method: str | None = None,
    base: float = 2.0,
    solver: str | None = None,
    tol: float | None = None,
    strict: bool = True,
    counts: bool = False,
    variables: Sequence[int] | None = None,
    max_iter: int | None = None,
) -> PIDResult:
    """Bivariate partial information decomposition of I(Y; T, S).

    .. math::

        I(Y;T,S) = \\mathrm{Red}(Y{:}T,S) + \\mathrm{Uni}(Y{:}T\\setminus S)
                 + \\mathrm{Uni}(Y{:}S\\setminus T) + \\mathrm{Syn}(Y{:}T,S)

    With ``measure="broja"`` (Bertschinger et al. 2014), Uni(Y:T\\S) is the minimum of
    I_Q(Y;T|S) over all Q with the same (Y,T) and (Y,S) marginals as P.

    Parameters
    ----------
    p : array_like, dit.Distribution or torch.Tensor
        Joint pmf ``p[y, t, s]`` (axis 0 the label Y, axis 1 the teacher T, axis 2 the student
        S) summing to 1, or counts with ``counts=True``.
    measure : {"broja", "intersection", "maps"}, default "broja"
        The PID definition: ``"broja"`` (Bertschinger et al.); ``"intersection"``: Red∩ of the
        RID paper (exact search over maps, small alphabets), see
        :func:`pidkd.estimators.intersection.intersection_redundancy`; ``"maps"``: the map
        redundancy, the best co-information I(Y;f(T)) - I(Y;f(T)|g(S)) over maps f, g, a certified
        lower bound on BROJA's Red at any alphabet size, see
        :func:`pidkd.estimators.maps.map_redundancy`. The other atoms follow from the identities
        Red + Uni_t = I(Y;T), Red + Uni_s = I(Y;S), the sum = I(Y;T,S).
    method : str, optional
        The former name of ``measure``.
    base : float, default 2
        Logarithm base of the returned numbers: 2 for bits, ``np.e`` for nats (the RID paper).
    solver : {"NEWTON", "CLARABEL", "SCS", "ECOS"} or None
        Optimiser of the BROJA programme. ``None`` (or ``"NEWTON"``): pidkd's own solver,
        Newton's method on a smooth dual, fast at large alphabets. The others solve the
        exponential-cone programme through cvxpy.
    tol : float, optional
        Largest accepted duality gap of the optimisation, in bits: 1e-9 for ``"NEWTON"``, 1e-7
        for the cvxpy solvers by default; at least 1e-11 (a smaller one is raised to it, with a
        warning: float64 round-off of the gap itself reaches 1e-12 bits). Negative atoms from
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
        Iteration limit of the solver (a positive int; default: the solver's own).

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
    measure = _check_measure(measure, method, solver, tol, max_iter, caller)
    base = check_base(base, caller=caller)
    strict, counts = _check_flags(strict, counts, caller)
    max_iter = check_int(max_iter, name="max_iter", caller=caller, minimum=1, optional=True)
    arr = as_joint_pmf(p, counts=counts, variables=variables, caller=caller)
    if measure == "intersection":
        return intersection_decomposition(arr, base=base)
    if measure == "maps":
        return map_decompositions([arr], base=base)[0]
    return broja_decomposition(arr, base=base, solver=solver, tol=tol, strict=strict, max_iter=max_iter)


def pid_batch(
    ps: Iterable[Any],
    *,
    measure: str | None = None,
    method: str | None = None,
    base: float = 2.0,
    solver: str | None = None,
    tol: float | None = None,
    strict: bool = True,
    counts: bool = False,
    max_iter: int | None = None,
    device: Any = None,
) -> list[PIDResult]:
    """PIDs of many joint distributions at once, e.g. for bootstrap intervals or probes.

    With the default solver the whole batch is solved together (vectorised Newton iterations),
    much faster than calling :func:`pid` in a loop for small alphabets. Every result carries its
    own certificate.

    ``device`` (``"cuda"``, ``"cpu"`` or a ``torch.device``; needs PyTorch) runs the same Newton
    solver in PyTorch on that device, the whole batch in each operation: built for thousands of
    small problems on a GPU (each problem's Newton system is solved densely, |Y||S| rows, at most
    2,048). A 4-d ``torch.Tensor`` on a GPU is solved on its own device unless ``device`` says
    otherwise. Either way the results are certified on the host by the same code as the default
    path (``diagnostics.solver`` is ``"NEWTON-torch"``). On a CPU the default path is faster.

    Parameters
    ----------
    ps : array_like of shape (B, n_y, n_t, n_s), or an iterable of arrays p[y, t, s]
        The distributions (pmfs, or counts with ``counts=True``). Shapes may differ.
    measure, method, base, solver, tol, strict, counts, max_iter
        As in :func:`pid` (``"maps"`` computes BROJA's Red, its upper bound, in one batch).
    device : str, torch.device or None
        Solve in PyTorch on this device (see above); None: pidkd's numpy and Numba solver.

    Returns
    -------
    list of PIDResult
        One result per input, in order.

    Examples
    --------
    >>> from pidkd.estimators import distributions
    >>> rs = pid_batch([distributions.xor(), distributions.and_(), distributions.rdn()])
    >>> [round(r.syn, 6) for r in rs]
    [1.0, 0.5, 0.0]
    """
    caller = "pid_batch()"
    measure = _check_measure(measure, method, solver, tol, max_iter, caller)
    if measure != "broja" and device is not None:
        raise ValueError(
            f"{caller}: device={device!r} runs BROJA's solver in PyTorch; measure={measure!r} runs on the CPU."
        )
    base = check_base(base, caller=caller)
    strict, counts = _check_flags(strict, counts, caller)
    max_iter = check_int(max_iter, name="max_iter", caller=caller, minimum=1, optional=True)
    if getattr(ps, "ndim", None) == 3:
        raise TypeError(
            f"{caller} got one 3-d array of shape {tuple(ps.shape)}: a single distribution p[y, t, s] "
            "(iterating it would split it along Y). Use pid(p), or pid_batch([p]) or a 4-d stack (batch, y, t, s)."
        )
    if isinstance(ps, np.ndarray) and ps.ndim == 4:
        items = list(ps)
    elif isinstance(ps, (str, bytes)) or not isinstance(ps, Iterable):
        raise TypeError(
            f"{caller} expects `ps` to be a 4-d array (batch, y, t, s) or an iterable of 3-d "
            f"arrays p[y, t, s]; got {type(ps).__name__}. For one distribution use pid()."
        )
    else:
        items = list(ps)
    if not items:
        return []
    where = getattr(ps, "device", None)  # a torch tensor on a GPU is solved there
    if device is None and where is not None and getattr(where, "type", "cpu") != "cpu":
        device = where
    arrs = [as_joint_pmf(p, counts=counts, arg=f"ps[{i}]", caller=caller) for i, p in enumerate(items)]
    if measure == "intersection":
        return [intersection_decomposition(a, base=base) for a in arrs]
    if measure == "maps":
        return map_decompositions(arrs, base=base)
    return broja_decompositions(
        arrs, base=base, solver=solver, tol=tol, strict=strict, max_iter=max_iter, device=device
    )


def _check_measure(measure: Any, method: Any, solver: Any, tol: Any, max_iter: Any, caller: str) -> str:
    """The measure's name from ``measure=`` or its former name ``method=``; BROJA-only options refused."""
    if measure is not None and method is not None:
        raise ValueError(f"{caller} got both `measure` and `method` (its former name); pass `measure` only.")
    name = check_choice(
        "broja" if measure is None and method is None else measure if measure is not None else method,
        MEASURES,
        name="measure" if method is None else "method",
        caller=caller,
    )
    if name != "broja" and (solver is not None or tol is not None or max_iter is not None):
        raise ValueError(
            f"{caller[:-1]}measure={name!r}) is a search over maps; `solver`, `tol` and `max_iter` apply to "
            "measure='broja' only. Remove them."
        )
    return name


def _check_flags(strict: Any, counts: Any, caller: str) -> tuple[bool, bool]:
    return check_bool(strict, name="strict", caller=caller), check_bool(counts, name="counts", caller=caller)
