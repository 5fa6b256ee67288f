"""PID measures as objects: what ``measure=`` means in every entry point.

A measure defines the redundancy Red(Y:T,S) of a joint pmf p[y, t, s]; pidkd fills in the other
atoms from the identities every bivariate PID shares,

    Uni(Y:T\\S) = I(Y;T) - Red,   Uni(Y:S\\T) = I(Y;S) - Red,   Syn = I(Y;T,S) - Red - Uni_t - Uni_s.

A measure of your own is one small class, and then works in :func:`pidkd.pid`,
:func:`pidkd.pid_batch`, :func:`pidkd.pid_from_samples`, :func:`pidkd.sweep`,
:class:`pidkd.distill.PIDProbe` and ``pidkd measure --measure module:Class``::

    class MMI(pidkd.Measure):
        '''Minimum mutual information: Red = min(I(Y;T), I(Y;S)).'''
        name = "mmi"

        def redundancy(self, p):
            pyt, pys = p.sum(axis=2), p.sum(axis=1)
            return min(mutual_information_nats(pyt), mutual_information_nats(pys))

pidkd ships three (:data:`pidkd.estimators.api.MEASURES` names them): BROJA's
(:class:`pidkd.estimators.broja.measure.BROJA`), the RID paper's intersection redundancy and the map
redundancy. A measure that is faster over many pmfs at once overrides :meth:`Measure.decompose`.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from pidkd._validation import user_stacklevel
from pidkd.estimators._result import PIDResult, SolverDiagnostics

__all__ = ["Measure", "identity_atoms"]

_ROUNDOFF = 1e-14  # nats: differences of informations this small are round-off, shown as 0


class Measure:
    """Base class of PID measures: subclass it and implement :meth:`redundancy`.

    Attributes
    ----------
    name : str
        Short name, shown in results (``PIDResult.method``) and tables (column ``measure``).
    nonnegative_synergy : bool
        Whether Syn >= 0 holds for this measure (BROJA's: yes); estimates from samples are held to
        it only if so. Default False: a redundancy below BROJA's can make Syn negative.

    Examples
    --------
    >>> import numpy as np, pidkd
    >>> from pidkd.estimators import distributions
    >>> class Zero(pidkd.Measure):
    ...     name = "zero"
    ...     def redundancy(self, p):
    ...         return 0.0
    >>> r = pidkd.pid(distributions.rdn(), measure=Zero())
    >>> r.method, r.red, r.uni_t, r.syn
    ('zero', 0.0, 1.0, -1.0)
    """

    name: str = "measure"
    nonnegative_synergy: bool = False

    def redundancy(self, p: NDArray[np.float64]) -> float:
        """Red(Y:T,S) in nats of one validated pmf ``p[y, t, s]`` (finite, non-negative, sums to 1)."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement redundancy(self, p) -> float (nats), or decompose(self, ps, base)."
        )

    def decompose(self, ps: Sequence[NDArray[np.float64]], *, base: float = 2.0) -> list[PIDResult]:
        """PIDs of validated pmfs, one per input: Red from :meth:`redundancy`, the rest from the identities."""
        out = []
        for i, p in enumerate(ps):
            start = time.perf_counter()
            red = self.redundancy(p)
            try:
                red = float(red)
            except (TypeError, ValueError):
                red = float("nan")
            if not np.isfinite(red):
                raise ValueError(
                    f"{type(self).__name__}.redundancy() must return a finite number of nats; got {red!r} for pmf {i}."
                )
            diag = SolverDiagnostics(
                solver=self.name,
                status="optimal",
                converged=True,
                n_iter=None,
                solve_time=time.perf_counter() - start,
                residual=0.0,
                gap=float("nan"),
            )
            out.append(identity_atoms(p, red, name=self.name, base=base, diagnostics=diag))
        return out

    def for_resamples(self) -> Measure:
        """The measure :func:`pidkd.pid_from_samples` applies to its resamples (bootstrap, permutations,
        jackknife): this one; a measure may return a cheaper variant whose atoms are the same."""
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def identity_atoms(
    p: NDArray[np.float64],
    red: float,
    *,
    name: str,
    base: float,
    diagnostics: SolverDiagnostics | None = None,
    details: object = None,
) -> PIDResult:
    """The PID of ``p`` with redundancy ``red`` (nats) and the other atoms from the identities.

    Negative atoms (a redundancy above I(Y;T) or I(Y;S), or, for a redundancy below BROJA's, a
    negative synergy) are returned unclipped, with a ``UserWarning`` for the uniques.
    """
    from pidkd.estimators.information import _mi

    mi_t, mi_s, mi_ts = _mi(p.sum(axis=2)), _mi(p.sum(axis=1)), _mi(p.reshape(p.shape[0], -1))
    atoms = [red, mi_t - red, mi_s - red, mi_ts - mi_t - mi_s + red]
    atoms = [0.0 if abs(x) < _ROUNDOFF else x for x in atoms]
    if min(atoms[1], atoms[2]) < -1e-12:
        warnings.warn(
            f"measure {name!r}: Red = {red / np.log(base):.6g} exceeds I(Y;T) or I(Y;S), so a unique information is "
            "negative; the values are returned unclipped.",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
    return PIDResult.from_nats(
        red=atoms[0],
        uni_t=atoms[1],
        uni_s=atoms[2],
        syn=atoms[3],
        mi_t=mi_t,
        mi_s=mi_s,
        mi_ts=mi_ts,
        method=name,
        base=base,
        diagnostics=diagnostics,
        details=details,
    )
