"""The optimality certificate of a BROJA solve, shared by every solver.

For a candidate optimum q of max_{Q in Delta_P} H_Q(Y|T,S) and any multipliers (a, b) of the two
marginal constraints, it reports the largest marginal violation of q, H_q(Y|T,S) and an upper
bound on the optimum obtained from (a, b) by weak duality (see :mod:`pidkd.estimators.broja`).
All arrays carry a leading batch axis; nothing here trusts the solver that produced the inputs.
The arithmetic runs in one compiled pass per problem
(:func:`pidkd.estimators.broja._cell_kernel.certificate`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["Certificate", "certify"]


@dataclass(frozen=True)
class Certificate:
    residual: NDArray[np.float64]  # (B,) max |q marginal - P marginal|
    h: NDArray[np.float64]  # (B,) H_q(Y|T,S) in nats
    bound: NDArray[np.float64]  # (B,) upper bound on max H_Q(Y|T,S) in nats (nan: no multipliers)

    @property
    def gap(self) -> NDArray[np.float64]:
        """Duality gap in nats."""
        return self.bound - self.h


def certify(
    p: NDArray[np.float64],
    q: NDArray[np.float64],
    a: NDArray[np.float64] | None,
    b: NDArray[np.float64] | None,
) -> Certificate:
    """Certificate of candidate optima ``q[B, y, t, s]`` of the pmfs ``p[B, y, t, s]``.

    ``a[B, y, t]`` and ``b[B, y, s]`` are multipliers of Q(y,t) = P(y,t) and Q(y,s) = P(y,s)
    (entries where the marginal is 0 are ignored). They are made dual feasible by the cheaper of
    two repairs, a constant per t added to ``a`` or a constant per s added to ``b``, so that the
    returned bound is valid for any input.
    """
    from pidkd.estimators.broja._cell_kernel import certificate  # compiled: imported on first use

    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    return Certificate(*certificate(p, q, a, b))


@dataclass
class Candidate:
    """A candidate optimum with the multipliers that certify it (dense layouts)."""

    q: NDArray[np.float64]  # [y, t, s]
    a: NDArray[np.float64] | None  # [y, t]
    b: NDArray[np.float64] | None  # [y, s]
    status: str
    n_iter: int | None
    solve_time: float
    solver: str
    cert: tuple[float, float, float] | None = None  # (residual, h, gap nats) when already certified
