"""The public ``pid`` entry points: validate input once and hand it to a PID measure."""

from __future__ import annotations

import dataclasses
import importlib
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from pidkd._validation import as_joint_pmf, check_base, check_bool, check_int, user_stacklevel
from pidkd.estimators._result import PIDResult
from pidkd.estimators.broja.measure import BROJA
from pidkd.estimators.intersection import Intersection
from pidkd.estimators.maps import Maps
from pidkd.estimators.measure import Measure
from pidkd.estimators.sparse import SparseJoint

__all__ = ["MEASURES", "METHODS", "pid", "pid_batch", "resolve_measure"]

#: The measures shipped with pidkd, by the names ``measure=`` takes (any :class:`Measure` instance
#: is taken too); nothing registers itself on import.
SHIPPED: dict[str, type[Measure]] = {"broja": BROJA, "intersection": Intersection, "maps": Maps}
MEASURES = tuple(SHIPPED)
#: The former name of :data:`MEASURES` (``method=`` is ``measure=``'s former name).
METHODS = MEASURES


def pid(
    p: Any,
    *,
    measure: str | Measure | None = None,
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
    p : array_like, sparse array, mapping, dit.Distribution or torch.Tensor
        Joint pmf ``p[y, t, s]`` (axis 0 the label Y, axis 1 the teacher T, axis 2 the student
        S) summing to 1, or counts with ``counts=True``. Sparse input (a 3-d
        ``scipy.sparse.coo_array``, a pydata ``sparse.COO``, a ``{(y, t, s): p}`` mapping, a
        :class:`~pidkd.estimators.sparse.SparseJoint`) and a ``dit.Distribution`` are never made
        dense: BROJA solves them on their support (the cells with P(y,t) > 0 and P(y,s) > 0), in
        time and memory that follow the support; ``diagnostics.solver`` is then
        ``"NEWTON-sparse"`` and ``diagnostics.q`` a ``coo_array`` (the dense path is taken where
        it is faster, see ``docs/solvers.md``).
    measure : {"broja", "intersection", "maps"} or Measure, default "broja"
        The PID definition, by name or as a :class:`pidkd.Measure` instance (a measure of your
        own: subclass ``pidkd.Measure`` and implement ``redundancy(p)``, in nats; see
        :mod:`pidkd.estimators.measure`): ``"broja"`` (Bertschinger et al.); ``"intersection"``: Red∩ of the
        RID paper (exact search over maps, small alphabets), see
        :func:`pidkd.estimators.intersection.intersection_redundancy`; ``"maps"``: the map
        redundancy, the best co-information I(Y;f(T)) - I(Y;f(T)|g(S)) over maps f, g, a certified
        lower bound on BROJA's Red at any alphabet size, see
        :func:`pidkd.estimators.maps.map_redundancy`. The other atoms follow from the identities
        Red + Uni_t = I(Y;T), Red + Uni_s = I(Y;S), the sum = I(Y;T,S).
    method : str, optional
        The former name of ``measure``, deprecated (a ``DeprecationWarning``; removed in the
        next release).
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
    base = check_base(base, caller=caller)
    strict, counts = _check_flags(strict, counts, caller)
    max_iter = check_int(max_iter, name="max_iter", caller=caller, minimum=1, optional=True)
    m = resolve_measure(measure, method=method, solver=solver, tol=tol, max_iter=max_iter, strict=strict, caller=caller)
    arr = as_joint_pmf(p, counts=counts, variables=variables, caller=caller, sparse=True)
    return _decomposed(m, [arr], base)[0]


def pid_batch(
    ps: Iterable[Any],
    *,
    measure: str | Measure | None = None,
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
    on_gpu = where is not None and getattr(where, "type", "cpu") != "cpu"
    m = resolve_measure(
        measure, method=method, solver=solver, tol=tol, max_iter=max_iter, strict=strict, device=device, caller=caller
    )
    if device is None and on_gpu and isinstance(m, BROJA):
        m = dataclasses.replace(m, device=where)
    arrs = [as_joint_pmf(p, counts=counts, arg=f"ps[{i}]", caller=caller, sparse=True) for i, p in enumerate(items)]
    return _decomposed(m, arrs, base)


def resolve_measure(
    measure: Any,
    *,
    caller: str,
    method: Any = None,
    solver: Any = None,
    tol: Any = None,
    max_iter: Any = None,
    strict: bool = True,
    device: Any = None,
) -> Measure:
    """The :class:`Measure` that ``measure=`` names: a shipped one by name, an instance as it is, or
    ``"module:Class"`` (a measure of your own, imported and made with no arguments).

    ``method=`` is the deprecated former name. BROJA's options (solver, tol, max_iter, strict,
    device) replace those of a BROJA instance and are refused for other measures.
    """
    if method is not None:
        if measure is not None:
            raise ValueError(f"{caller} got both `measure` and `method` (its former name); pass `measure` only.")
        warnings.warn(
            f"{caller}: `method=` is deprecated and will be removed in the next release; use measure={method!r}.",
            DeprecationWarning,
            stacklevel=user_stacklevel(),
        )
        measure = method
    if measure is None:
        measure = "broja"
    if isinstance(measure, type) and issubclass(measure, Measure):
        raise TypeError(
            f"{caller} expects `measure` to be a Measure instance; got the class. Pass {measure.__name__}()."
        )
    if isinstance(measure, str) and ":" in measure:
        measure = _import_measure(measure, caller)
    if not isinstance(measure, Measure):
        name = measure.lower() if isinstance(measure, str) else None
        if name not in SHIPPED:
            raise ValueError(
                f"The 'measure' parameter of {caller} must be one of {list(MEASURES)}, a pidkd.Measure instance or "
                f"'module:Class'. Got {measure!r} instead."
            )
        measure = SHIPPED[name]()
    options = {"solver": solver, "tol": tol, "max_iter": max_iter, "device": device}
    given = {k: v for k, v in options.items() if v is not None} | ({} if strict else {"strict": False})
    if isinstance(measure, BROJA):
        return dataclasses.replace(measure, **given) if given else measure
    given.pop("strict", None)  # only BROJA certifies a solve
    if given:
        raise ValueError(
            f"{caller[:-1]}measure={measure.name!r}): {', '.join(f'`{k}`' for k in given)} apply to BROJA's solver "
            "(measure='broja') only. Remove them."
        )
    return measure


def _import_measure(path: str, caller: str) -> Measure:
    """``"module:Class"`` -> an instance of that Measure subclass (the user's own code, named explicitly)."""
    module, _, attr = path.partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(
            f"{caller}: measure={path!r} names no importable class ({type(err).__name__}: {err})."
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, Measure)):
        raise TypeError(f"{caller}: measure={path!r} is not a subclass of pidkd.Measure.")
    return cls()


def _decomposed(m: Measure, arrs: list[Any], base: float) -> list[PIDResult]:
    """``m.decompose(arrs)``, checked: a measure of the user's must return one PIDResult per pmf.

    Sparse pmfs (:class:`~pidkd.estimators.sparse.SparseJoint`) go to BROJA as they are (it solves them on
    their support); every other measure gets the dense array.
    """
    if not isinstance(m, BROJA):
        arrs = [a.todense() if isinstance(a, SparseJoint) else a for a in arrs]
    out = m.decompose(arrs, base=base)
    if not isinstance(out, list) or len(out) != len(arrs) or not all(isinstance(r, PIDResult) for r in out):
        raise TypeError(
            f"{type(m).__name__}.decompose() must return a list of {len(arrs)} PIDResult, one per pmf; got "
            f"{type(out).__name__}{f' of length {len(out)}' if hasattr(out, '__len__') else ''}."
        )
    return out


def _check_flags(strict: Any, counts: Any, caller: str) -> tuple[bool, bool]:
    return check_bool(strict, name="strict", caller=caller), check_bool(counts, name="counts", caller=caller)
