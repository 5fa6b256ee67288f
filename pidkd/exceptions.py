"""Exceptions and warnings raised by pidkd."""

from __future__ import annotations

from typing import Any

__all__ = ["ConvergenceWarning", "SolverError", "SweepError"]


class SolverError(RuntimeError):
    """An optimisation did not reach a result that pidkd can certify.

    The message names the problem size, the solver, the status and the measured residual or
    duality gap, and says what to try next. Pass ``strict=False`` to get the result anyway, with
    ``result.diagnostics.converged`` set to ``False``.
    """


class ConvergenceWarning(UserWarning):
    """Issued instead of :class:`SolverError` when ``strict=False``."""


class SweepError(RuntimeError):
    """Some pairs of a :func:`~pidkd.estimators.sweep` failed; all the others finished.

    Attributes
    ----------
    failures : list of dict
        Each failed pair: checkpoint, teacher_layer, student_layer and error (its type and message).
    results : pandas.DataFrame
        The finished rows (also in the sweep's journal, when it has one, so a rerun computes only
        the failed pairs).
    """

    def __init__(self, message: str, *, failures: list[dict[str, str]], results: Any):
        super().__init__(message)
        self.failures = failures
        self.results = results
