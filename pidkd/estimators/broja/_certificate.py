"""The optimality certificate of a BROJA solve, shared by every solver.

For a candidate optimum q of max_{Q in Delta_P} H_Q(Y|T,S) and any multipliers (a, b) of the two
marginal constraints, it reports the largest marginal violation of q, H_q(Y|T,S) and an upper
bound on the optimum obtained from (a, b) by weak duality (see :mod:`pidkd.estimators.broja`).
All arrays carry a leading batch axis; nothing here trusts the solver that produced the inputs.
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


def _xlogx_sum(x: NDArray[np.float64], axes: tuple[int, ...]) -> NDArray[np.float64]:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > 0, x * np.log(np.where(x > 0, x, 1.0)), 0.0).sum(axis=axes)


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
    pyt, pys = p.sum(axis=3), p.sum(axis=2)
    residual = np.maximum(np.abs(q.sum(axis=3) - pyt).max(axis=(1, 2)), np.abs(q.sum(axis=2) - pys).max(axis=(1, 2)))
    h = _xlogx_sum(q.sum(axis=1), (1, 2)) - _xlogx_sum(q, (1, 2, 3))
    if a is None or b is None:
        return Certificate(residual, h, np.full(p.shape[0], np.nan))
    cell = (pyt[:, :, :, None] > 0) & (pys[:, :, None, :] > 0)  # [B, y, t, s]
    a = np.where(pyt > 0, a, 0.0)
    b = np.where(pys > 0, b, 0.0)
    z = np.where(cell, -(a[:, :, :, None] + b[:, :, None, :]), -np.inf)
    zmax = z.max(axis=1)
    has = np.isfinite(zmax)
    zmax = np.where(has, zmax, 0.0)
    with np.errstate(divide="ignore"):
        lse = zmax + np.log(np.exp(z - zmax[:, None]).sum(axis=1))  # [B, t, s]; -inf if empty
    viol = np.where(has, np.maximum(lse, 0.0), 0.0)
    repair_t = (viol.max(axis=2) * pyt.sum(axis=1)).sum(axis=1)
    repair_s = (viol.max(axis=1) * pys.sum(axis=1)).sum(axis=1)
    bound = (a * pyt).sum(axis=(1, 2)) + (b * pys).sum(axis=(1, 2)) + np.minimum(repair_t, repair_s)
    return Certificate(residual, h, bound)
