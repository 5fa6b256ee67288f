"""Exceptions and warnings raised by pidkd."""

from __future__ import annotations

__all__ = ["ConvergenceWarning", "SolverError"]


class SolverError(RuntimeError):
    """An optimisation did not reach a result that pidkd can certify.

    The message names the problem size, the solver, the status and the measured residual or
    duality gap, and says what to try next. Pass ``strict=False`` to get the result anyway, with
    ``result.diagnostics.converged`` set to ``False``.
    """


class ConvergenceWarning(UserWarning):
    """Issued instead of :class:`SolverError` when ``strict=False``."""
