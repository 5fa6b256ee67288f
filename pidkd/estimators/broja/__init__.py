"""BROJA partial information decomposition: pidkd's Newton solver and the cvxpy path, certified.

Bertschinger, Rauh, Olbrich, Jost and Ay (2014) define, for a joint distribution P of (Y, T, S),

.. math::

    \\Delta_P = \\{Q : Q(y,t) = P(y,t),\\ Q(y,s) = P(y,s)\\}, \\qquad
    \\mathrm{Uni}(Y{:}T \\setminus S) = \\min_{Q \\in \\Delta_P} I_Q(Y;T \\mid S).

Because H_Q(Y|S) is constant on Delta_P, this is the concave maximisation
max_{Q in Delta_P} H_Q(Y|T,S). Only the *support cells* (y, t, s) with P(y,t) > 0 and
P(y,s) > 0 can carry mass.

Solvers
-------
``"NEWTON"`` (default): pidkd's own solver (:mod:`pidkd.estimators.broja._dual_newton`), Newton's
method on a smooth dual with |Y|(|T|+|S|) variables; batched; stops on a certified gap.
``"CLARABEL"``, ``"SCS"``, ``"ECOS"``: the same programme as an exponential-cone programme in
cvxpy, one variable per support cell, sparse constraint matrices.

Certificate
-----------
The Lagrange dual of the programme is

.. math::

    \\min_{a, b}\\ \\sum_{y,t} a(y,t) P(y,t) + \\sum_{y,s} b(y,s) P(y,s)
    \\quad\\text{s.t.}\\quad \\log \\sum_{y} e^{-a(y,t) - b(y,s)} \\le 0
    \\ \\text{for every } (t, s),

the sum running over the y of the support cells of (t, s). Any (a, b) can be made feasible by
adding a constant per t to a; the dual objective then bounds max H_Q(Y|T,S) from above, so
``gap = bound - H_q(Y|T,S)`` bounds the error of ``uni_t`` for a feasible ``q``. pidkd computes this
bound itself (:mod:`pidkd.estimators.broja._certificate`) from the solver's multipliers, whichever
solver ran; it does not take a solver's word for optimality.

Modules of this package: ``decompose`` (closed forms, solver dispatch, certification, the atoms),
``cone`` (the cvxpy programme), ``measure`` (BROJA as a :class:`pidkd.Measure`), ``_schedule`` (the
Newton solver's constants and stage predictor, shared by all its paths), ``_dual_newton`` (the
Newton solver, its Schur and Woodbury steps), ``_pcg`` (its preconditioned-CG step for large
alphabets), ``_kernels`` (the compiled small-problem solver) and ``_cell_kernel``,
``_woodbury_kernel`` (compiled loops of the large-problem steps), ``_torch_newton`` (the same solver
in PyTorch, for batches on a GPU: ``pid_batch(device=...)``), ``_certificate`` (the one certificate).
"""

from pidkd.estimators.broja.cone import CVXPY_SOLVERS
from pidkd.estimators.broja.decompose import (
    DEFAULT_TOL,
    MIN_TOL,
    RESIDUAL_TOL,
    SOLVERS,
    broja_decomposition,
    broja_decompositions,
)

__all__ = [
    "CVXPY_SOLVERS",
    "DEFAULT_TOL",
    "MIN_TOL",
    "RESIDUAL_TOL",
    "SOLVERS",
    "broja_decomposition",
    "broja_decompositions",
]
