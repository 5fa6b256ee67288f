"""The schedule of pidkd's Newton solver, written once: its constants, the stage predictor and BLAS threads.

Every path of the solver imports these: the numpy batch driver (:mod:`pidkd.estimators.broja._dual_newton`),
the compiled small-problem kernel (:mod:`pidkd.estimators.broja._kernels`, where numba folds the constants
in at compile time), the PCG step (:mod:`pidkd.estimators.broja._pcg`), the PyTorch path
(:mod:`pidkd.estimators.broja._torch_newton`) and the support solver of sparse pmfs
(:mod:`pidkd.estimators.broja._sparse_newton`). A change here changes all of them alike.

The schedule (see :mod:`pidkd.estimators.broja._dual_newton` for the method): eps shrinks by
``SHRINK`` (``PCG_SHRINK`` for large PCG problems) after every stage, down to ``eps_min``; a stage
ends when the marginal residual is below ``INNER * eps * residual_tol / eps_min``; between stages
the multipliers become the masses (at least ``_MU_FLOOR``) and the dual variables are shifted by
:func:`_stage_shift`; eps is kept small enough that no mass exceeds ``exp(EXP_LIMIT)``; a Newton
step is accepted by an Armijo test (``_ARMIJO``) with backtracking down to ``_MIN_STEP``; at most
``_MAX_STAGES`` stages. Those decisions are :class:`Rules`, each written once as an elementwise expression
and instantiated for numpy arrays (:data:`NUMPY`), compiled scalars (:func:`scalar_rules`) and torch tensors
(:func:`torch_rules`); a path only loops. The numpy driver alone skips the full certificate at stage ends
whose estimated gap is above ``_FAR`` tolerances (the compiled kernel's certificate costs less than the
estimate; the torch path certifies on the host, which it visits at every stage end anyway).
"""

from __future__ import annotations

import contextlib
import functools
import threading
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "NUMPY",
    "Rules",
    "scalar_rules",
    "torch_rules",
    "EXP_LIMIT",
    "INNER",
    "INNER_FLOOR",
    "PCG_SHRINK",
    "PCG_SHRINK_CELLS",
    "POLISH_NEAR",
    "QUADRATIC_SLOPE",
    "RIDGE",
    "RIDGE_FLOOR",
    "SHRINK",
]

_ARMIJO = 1e-4
_MU_FLOOR = 1e-200  # a block dropped early can still come back
_MIN_STEP = 2.0**-40
#: A stage end gets the full certificate once the gap it would find (estimated) is below this many tolerances.
_FAR = 100.0
_MAX_STAGES = 200  # a stage that makes no Newton progress still counts here
#: A new stage's eps keeps log(mu) + L_ts / eps below this, so that the masses mu exp(L_ts / eps) stay
#: finite when a stage ended with constraints still violated (L_ts > 0).
EXP_LIMIT = 30.0
#: eps <- eps * shrink after every stage: SHRINK, or PCG_SHRINK for PCG steps on problems with at least
#: PCG_SHRINK_CELLS cells (t, s). Each stage's first Newton steps take the masses that the shrink
#: amplified back down, a factor of about e per step; on large alphabets that costs more than the extra
#: stages of a slower schedule. Chosen by measurement (3 random pmfs each, 0.4 against 0.2): 10x32x32
#: 101 -> 84 ms, 10x64x64 0.40 -> 0.35 s, 10x128x128 2.16 -> 1.65 s, 100x64x64 3.7 -> 2.8 s, 10x256x256
#: 12.2 -> 8.2 s (0.5 was no better); with 100 cells and many labels it was slower (200x10x10 57 -> 73 ms,
#: 1000x10x10 155 -> 160 ms), so those keep 0.2, as do the exact steps.
SHRINK = 0.2
PCG_SHRINK = 0.4
PCG_SHRINK_CELLS = 1024
#: A stage ends at a marginal residual of INNER * eps * residual_tol / eps_min (at least INNER_FLOOR).
INNER = 1e-2
INNER_FLOOR = 1e-15
#: A stage end whose certified gap is within POLISH_NEAR tolerances gets its q polished (a Sinkhorn
#: projection onto the marginals) and certified again.
POLISH_NEAR = 10.0
#: Newton systems get a ridge of RIDGE times their largest entry plus RIDGE_FLOOR, which keeps blocks
#: whose masses all underflowed invertible (the line search then controls the long step).
RIDGE = 1e-13
RIDGE_FLOOR = 1e-300
#: A Newton step whose slope -g.d is below this is in the quadratic region, where F changes below its
#: round-off and Armijo cannot judge the step: it is taken if it lowers the marginal residual.
QUADRATIC_SLOPE = 1e-12


class Rules(NamedTuple):
    """The schedule's decisions, written once over three kinds of values (:data:`NUMPY`, :func:`scalar_rules`, torch).

    Each rule is one expression in ``where``, ``maximum``, ``isfinite`` and ``log``, elementwise, so the
    numpy batch driver applies it to a batch, the compiled kernel to one problem's scalars (numba inlines
    it) and the PyTorch path to tensors on any device, with the same numbers.

    - ``inner_tolerance(eps, eps_min, residual_tol)``: a stage ends at this marginal residual;
    - ``next_mu(m, nonempty)``: the exponential multiplier update, mu <- m (at least ``_MU_FLOOR``);
    - ``guard_terms(after, mu, nonempty)``: per cell, the smallest eps that keeps mu exp(L / eps) below
      exp(EXP_LIMIT) where a stage ended with L = ``after`` > 0; the eps guard is their maximum;
    - ``next_eps(eps, shrink, eps_min, guard)``: the next stage's eps;
    - ``armijo(f_new, f, step, slope)``: a trial step is accepted (sufficient decrease, finite);
    - ``quadratic(slope)``: the step is judged by the residual instead (:data:`QUADRATIC_SLOPE`);
    - ``give_up(step, quad)``: a rejected step ends the stage instead of halving again;
    - ``certified(gap, residual, gap_tol, residual_tol)``: a stage end stops the solve;
    - ``polish(gap, gap_tol)``: a stage end gets its q polished and certified again;
    - ``more_stages(n_iter, max_iter, n_stages, max_stages)``: an uncertified stage end starts another.

    Examples
    --------
    >>> import numpy as np
    >>> NUMPY.next_eps(np.array([1.0, 1e-8]), 0.2, 1e-8, np.array([0.0, 0.5]))  # shrink, floor, guard
    array([0.2, 0.5])
    >>> bool(scalar_rules().armijo(0.9, 1.0, 1.0, -1.0)), bool(NUMPY.armijo(np.inf, 1.0, 1.0, -1.0))
    (True, False)
    """

    inner_tolerance: Any
    next_mu: Any
    guard_terms: Any
    next_eps: Any
    armijo: Any
    quadratic: Any
    give_up: Any
    certified: Any
    polish: Any
    more_stages: Any


def _rules(where: Any, maximum: Any, isfinite: Any, log: Any, wrap: Any = None) -> Rules:
    def inner_tolerance(eps, eps_min, residual_tol):
        return where(eps > eps_min, maximum(INNER_FLOOR, INNER * eps * residual_tol / eps_min), INNER_FLOOR)

    def next_mu(m, nonempty):
        return where(nonempty, maximum(m, _MU_FLOOR), 0.0)

    def guard_terms(after, mu, nonempty):
        over = nonempty & (after > 0)
        return where(over, after / (EXP_LIMIT - log(where(over, mu, 1.0))), 0.0)

    def next_eps(eps, shrink, eps_min, guard):
        return maximum(maximum(eps * shrink, eps_min), guard)

    def armijo(f_new, f, step, slope):
        return isfinite(f_new) & (f_new <= f + _ARMIJO * step * slope)

    def quadratic(slope):
        return -slope < QUADRATIC_SLOPE

    def give_up(step, quad):
        return (step < _MIN_STEP) | quad

    def certified(gap, residual, gap_tol, residual_tol):
        return (gap <= gap_tol) & (residual <= residual_tol)

    def polish(gap, gap_tol):
        return gap <= POLISH_NEAR * gap_tol

    def more_stages(n_iter, max_iter, n_stages, max_stages):
        return (n_iter < max_iter) & (n_stages < max_stages)

    fns = (inner_tolerance, next_mu, guard_terms, next_eps, armijo, quadratic, give_up, certified, polish, more_stages)
    return Rules(*(wrap(fn) if wrap else fn for fn in fns))


#: The rules on numpy arrays (the batch driver).
NUMPY = _rules(np.where, np.maximum, np.isfinite, np.log)


@functools.cache
def scalar_rules() -> Rules:
    """The rules on scalars, for the compiled kernel: numba inlines them (they stay callable from Python).

    Made on first use, so that importing pidkd does not import numba.
    """
    from numba.extending import register_jitable

    @register_jitable
    def where(cond, a, b):
        return a if cond else b

    @register_jitable
    def maximum(a, b):
        return max(a, b)

    return _rules(where, maximum, np.isfinite, np.log, wrap=register_jitable)


@functools.cache
def torch_rules(torch: Any) -> Rules:
    """The rules on torch tensors (any device), for the PyTorch path."""

    def maximum(a, b):
        if not torch.is_tensor(a):
            a, b = b, a
        return torch.maximum(a, b) if torch.is_tensor(b) else a.clamp(min=b)

    return _rules(torch.where, maximum, torch.isfinite, torch.log)


def _stage_shift(m, ln, sweeps: int = 2, xp: Any = np) -> tuple[Any, Any]:
    """The additive fit alpha(t) + beta(s) of L_ts with weights m_ts (least squares, by alternating sweeps).

    A new stage keeps the multipliers mu = m and divides L by a smaller eps, so a cell's mass becomes
    m exp((L_ts - alpha_t - beta_s) / eps) after a(., t) += alpha_t and b(., s) += beta_s: the
    better the fit where the mass is, the fewer Newton steps the stage needs to take the amplified
    masses back down. Starts from the mean over s (the one-sided shift of pidkd 0.1.0); every sweep
    lowers the weighted squared residual, and one sweep is exact when m_ts = u_t v_s. ``m``, ``ln``:
    [B, t, s] arrays of ``xp`` (numpy, or torch for the PyTorch path); returns alpha [B, t], beta [B, s]
    (0 where a code has no mass).
    """
    wl = xp.where(m > 0, m * ln, 0.0)
    mt, ms = m.sum(2), m.sum(1)
    mt, ms = xp.where(mt > 0, mt, 1.0), xp.where(ms > 0, ms, 1.0)
    lt, ls = wl.sum(2), wl.sum(1)
    alpha, beta = lt / mt, xp.zeros_like(ms)
    for _ in range(sweeps):
        beta = (ls - xp.einsum("bts,bt->bs", m, alpha)) / ms
        alpha = (lt - xp.einsum("bts,bs->bt", m, beta)) / mt
    return alpha, beta


@functools.cache
def _blas_controller():
    """threadpoolctl's view of the loaded BLAS libraries, made once (it scans the process)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _blas_threads(n: int = 1) -> contextlib.AbstractContextManager:
    """numpy's and scipy's BLAS on ``n`` threads while the main thread solves (other threads: unchanged).

    The solve runs in one BLAS thread: the compiled kernels run on numba's threads between small BLAS
    calls, and OpenBLAS's own threads keep spinning for a while after each call and take the cores from
    numba's (measured on 2 cores: 1000x10x10 0.20 -> 0.13 s and 10x64x64 0.54 -> 0.32 s with one BLAS
    thread; 10x256x256, whose 4,096-square factorisations do use two, 10.9 -> 11.4 s, so the PCG step
    factors its large capacitance matrices on every core). Only on the main thread: the limit is
    process-wide, and solves in other threads (the probes' worker) run numba's serial kernels anyway.
    """
    if threading.current_thread() is not threading.main_thread():
        return contextlib.nullcontext()
    return _blas_controller().limit(limits=n, user_api="blas")
