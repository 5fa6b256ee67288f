"""BROJA's PID as a :class:`~pidkd.estimators.measure.Measure` (the default of every ``measure=``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pidkd.estimators._result import PIDResult
from pidkd.estimators.broja import broja_decomposition, broja_decompositions
from pidkd.estimators.measure import Measure

__all__ = ["BROJA"]


@dataclass(frozen=True, repr=False)
class BROJA(Measure):
    """BROJA's PID (Bertschinger et al. 2014): Uni(Y:T\\S) = min over Q in Delta_P of I_Q(Y;T|S), certified.

    Parameters
    ----------
    solver, tol, max_iter, strict
        As in :func:`pidkd.pid` (its arguments of these names override them).
    device : str or torch.device, optional
        As in :func:`pidkd.pid_batch`.

    Examples
    --------
    >>> import pidkd
    >>> from pidkd.estimators import distributions
    >>> pidkd.pid(distributions.and_(), measure=BROJA(solver="CLARABEL")).diagnostics.solver
    'CLARABEL'
    """

    solver: str | None = None
    tol: float | None = None
    max_iter: int | None = None
    strict: bool = True
    device: Any = None
    name = "broja"
    nonnegative_synergy = True

    def redundancy(self, p: NDArray[np.float64]) -> float:
        return broja_decomposition(
            p, base=np.e, solver=self.solver, tol=self.tol, strict=self.strict, max_iter=self.max_iter
        ).red

    def decompose(self, ps: Sequence[NDArray[np.float64]], *, base: float = 2.0) -> list[PIDResult]:
        return broja_decompositions(
            ps,
            base=base,
            solver=self.solver,
            tol=self.tol,
            strict=self.strict,
            max_iter=self.max_iter,
            device=self.device,
        )

    def __repr__(self) -> str:
        options = {k: getattr(self, k) for k in ("solver", "tol", "max_iter", "strict", "device")}
        shown = ", ".join(f"{k}={v!r}" for k, v in options.items() if v != BROJA.__dataclass_fields__[k].default)
        return f"BROJA({shown})"
