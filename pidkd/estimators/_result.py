"""Result objects: the four PID atoms with the solver diagnostics that certify them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["STATUSES", "PIDResult", "SolverDiagnostics"]

#: The status vocabulary shared by every solver ("local_optimum": the map redundancy's local search,
#: a certified lower bound whose distance to the maximum is at most ``gap``).
STATUSES = ("optimal", "optimal_inaccurate", "max_iter", "infeasible", "error", "local_optimum")


@dataclass(frozen=True, slots=True)
class SolverDiagnostics:
    """How a PID was computed, and how far from exact it can be.

    Attributes
    ----------
    solver : str
        ``"NEWTON"`` (pidkd's own solver, the default), ``"CLARABEL"``, ``"SCS"`` or ``"ECOS"``
        (through cvxpy), ``"closed_form"`` (I(Y;T) = 0 or I(Y;S) = 0: no optimisation needed) or
        ``"exhaustive"`` (``measure="intersection"`` or ``"maps"``: an exact search over maps) or
        ``"search"`` (``measure="maps"`` beyond 6 x 6 codes: a local search).
    status : str
        One of :data:`STATUSES`.
    converged : bool
        ``status == "optimal"`` and both ``residual`` and ``gap`` within their tolerances.
    n_iter : int or None
        Solver iterations (``None`` when the solver does not report them).
    solve_time : float
        Wall time of the optimisation, in seconds.
    residual : float
        Largest violation of the marginal constraints Q(y,t) = P(y,t), Q(y,s) = P(y,s) by ``q``.
    gap : float
        Duality gap in bits: an upper bound on the optimum from a dual-feasible point minus the
        objective at ``q``. For a feasible ``q`` it bounds how far ``uni_t`` can be above the
        exact value. ``nan`` when no dual point is available.
    q : numpy.ndarray, scipy.sparse.coo_array or None
        The optimal joint distribution q[y, t, s] over the polytope Delta_P: a 3-d ``coo_array``
        when the pmf was solved on its support (sparse input); None where none was formed (a sparse
        input's closed form).
    """

    solver: str
    status: str
    converged: bool
    n_iter: int | None
    solve_time: float
    residual: float
    gap: float
    q: Any = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class PIDResult:
    """Bivariate partial information decomposition of I(Y; T, S), in units of ``base``.

    The atoms satisfy, exactly as stored: ``red + uni_t == mi_t``, ``red + uni_s == mi_s`` and
    ``red + uni_t + uni_s + syn == mi_ts`` (up to floating-point round-off).

    Attributes
    ----------
    red : float
        Redundant (shared) information Red(Y:T,S).
    uni_t, uni_s : float
        Unique information Uni(Y:T\\S) of the teacher and Uni(Y:S\\T) of the student.
    syn : float
        Synergistic information Syn(Y:T,S).
    mi_t, mi_s, mi_ts : float
        I(Y;T), I(Y;S) and I(Y;T,S).
    method : str
        The PID definition, e.g. ``"broja"``.
    base : float
        Logarithm base of all numbers (2: bits).
    diagnostics : SolverDiagnostics or None
    details : object or None
        What the measure found besides the atoms: for ``"maps"`` a
        :class:`~pidkd.estimators.maps.MapResult` (the maximising maps, ``exact``, BROJA's Red as
        ``upper``), for ``"intersection"`` an
        :class:`~pidkd.estimators.intersection.IntersectionResult`; None for BROJA (whose optimum
        is ``diagnostics.q``).
    """

    red: float
    uni_t: float
    uni_s: float
    syn: float
    mi_t: float
    mi_s: float
    mi_ts: float
    method: str
    base: float = 2.0
    diagnostics: SolverDiagnostics | None = None
    details: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def from_nats(
        cls,
        *,
        red: float,
        uni_t: float,
        uni_s: float,
        syn: float,
        mi_t: float,
        mi_s: float,
        mi_ts: float,
        method: str,
        base: float,
        diagnostics: SolverDiagnostics | None,
        details: Any = None,
    ) -> PIDResult:
        """Build a result from values in nats, converting them to units of ``base``."""
        ln_b = float(np.log(base))
        return cls(
            red=red / ln_b,
            uni_t=uni_t / ln_b,
            uni_s=uni_s / ln_b,
            syn=syn / ln_b,
            mi_t=mi_t / ln_b,
            mi_s=mi_s / ln_b,
            mi_ts=mi_ts / ln_b,
            method=method,
            base=float(base),
            diagnostics=diagnostics,
            details=details,
        )

    def as_dict(self) -> dict[str, float | str | bool | None]:
        """Atoms, informations and the scalar diagnostics as a flat dict (for tables, JSON)."""
        out: dict[str, float | str | bool | None] = {
            "red": self.red,
            "uni_t": self.uni_t,
            "uni_s": self.uni_s,
            "syn": self.syn,
            "mi_t": self.mi_t,
            "mi_s": self.mi_s,
            "mi_ts": self.mi_ts,
            "method": self.method,
            "base": self.base,
        }
        d = self.diagnostics
        if d is not None:
            out.update(
                solver=d.solver,
                status=d.status,
                converged=d.converged,
                n_iter=d.n_iter,
                solve_time=d.solve_time,
                residual=d.residual,
                gap=d.gap,
            )
        return out

    def check(self, atol: float = 1e-6) -> None:
        """Raise ``AssertionError`` if an identity or non-negativity fails by more than ``atol``."""
        checks = {
            "red + uni_t == mi_t": self.red + self.uni_t - self.mi_t,
            "red + uni_s == mi_s": self.red + self.uni_s - self.mi_s,
            "atoms sum to mi_ts": self.red + self.uni_t + self.uni_s + self.syn - self.mi_ts,
        }
        bad = {k: v for k, v in checks.items() if abs(v) > atol}
        neg = {k: v for k, v in self.as_dict().items() if k in ("red", "uni_t", "uni_s", "syn") and v < -atol}  # type: ignore[operator]
        if bad or neg:
            raise AssertionError(f"PIDResult fails its identities: {bad} negative atoms: {neg}")

    def __repr__(self) -> str:
        unit = {2.0: "bits", float(np.e): "nats"}.get(float(self.base), f"log base {self.base:g}")
        status = "" if self.diagnostics is None else f", status={self.diagnostics.status!r}"
        return (
            f"PIDResult(red={self.red:.6g}, uni_t={self.uni_t:.6g}, uni_s={self.uni_s:.6g}, "
            f"syn={self.syn:.6g} [{unit}], method={self.method!r}{status})"
        )
