"""PID from samples: bias-corrected estimates, intervals and a permutation null.

The plug-in estimate counts the code triples and decomposes their empirical pmf. It is **biased
upward for small samples and large alphabets**: with few samples per occupied cell the empirical
pmf shows dependence that is not there, and every atom that measures dependence (Red, the Uniques,
and Syn above all) picks it up. :func:`pid_from_samples` therefore reports

- a bias-corrected estimate per atom (default: the delete-a-group jackknife, which removes the
  1/N term of the bias; chosen by the study in ``benchmarks/bias_study.py``, see the docs page
  "Bias of sample estimates"), with the plug-in kept in ``SamplePID.pid``;
- an interval per atom around that estimate;
- a permutation null: the atoms after shuffling Y, which destroys every dependence on the label,
  so their values are bias alone. An atom not clearly above its null level is not evidence of
  information;
- a warning when there are fewer than :data:`MIN_SAMPLES_PER_CELL` samples per occupied cell,
  where no correction removes most of the bias (the study measures how much remains).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from pidkd._optional import import_optional
from pidkd._validation import check_base, check_bool, check_int
from pidkd.estimators._result import PIDResult
from pidkd.estimators.api import pid, pid_batch, resolve_measure
from pidkd.estimators.histogram import SPARSE_CELLS_PER_SAMPLE, _codes, joint_histogram, sparse_cells
from pidkd.estimators.intersection import _xlogx
from pidkd.estimators.quantize import Quantizer, fresh_quantizer
from pidkd.estimators.sparse import SparseJoint

__all__ = [
    "ATOMS",
    "BIAS_CORRECTIONS",
    "BOUNDS",
    "MIN_SAMPLES_PER_CELL",
    "PROGRESS_CELLS",
    "SamplePID",
    "SampleSizeWarning",
    "pid_from_samples",
]

ATOMS = ("red", "uni_t", "uni_s", "syn")
#: Values of ``pid_from_samples(bias_correction=...)``; the first is the default.
BIAS_CORRECTIONS = ("jackknife", "bootstrap", "none")
#: Below this many samples per occupied cell a :class:`SampleSizeWarning` is issued.
MIN_SAMPLES_PER_CELL = 5.0
JACKKNIFE_GROUPS = 20  # delete-a-group jackknife: 20 solves, each on 95% of the samples
_BATCH_CELLS = 20_000_000  # bootstrap pmfs are decomposed in batches of at most this many cells
#: ``pid_from_samples(progress=None)`` shows a progress bar when the count table has at least this many
#: cells |Y|·|T|·|S| (counted densely or sparsely): from about there the 240 default resample solves take
#: a minute (measured on 2 shared cores: a 10x40x40 table of 20,000 samples, 3.6 resample solves a second).
PROGRESS_CELLS = 10_000


class SampleSizeWarning(UserWarning):
    """Too few samples per occupied cell for the estimate to be trusted (see ``SamplePID.reliable``)."""


@dataclass(frozen=True)
class SamplePID:
    """A PID estimated from samples: corrected estimate, interval, null level (units of ``pid.base``).

    Attributes
    ----------
    pid : PIDResult
        The plug-in decomposition of all samples, with its solver certificate.
    estimate : dict
        Atom -> point estimate after ``bias_correction`` (equal to the plug-in atoms with
        ``"none"``), inside the information-theoretic bounds (see ``bounded``).
    ci : dict
        Atom -> (low, high) interval around ``estimate`` at level ``confidence``, its ends clipped
        to the atom's range under the same bounds.
    bias_correction : str
        The correction applied: "jackknife", "bootstrap" or "none".
    null_mean, null_high : dict
        Atom -> mean and upper ``confidence`` quantile of the plug-in atoms over label
        permutations (the plug-in bias where there is no information).
    n_samples, n_y, n_t, n_s, occupied_cells : int
    samples_per_cell : float
        n_samples / occupied_cells.
    confidence : float
    bounded : tuple of str
        The bounds (of :data:`BOUNDS`) that the corrected estimate broke, so that it was projected
        (Euclidean) onto the set where every atom is >= 0, Red + Uni_t <= I(Y;T), Red + Uni_s <=
        I(Y;S) and the sum <= H = min(H(Y), H(T, S)), each information corrected as the atoms are
        (an entropy at most the log of its alphabet's size). Empty: the estimate is the corrected
        vector itself.
    beyond_bounds : bool
        The projection moved an atom by more than its interval's width: the corrected estimate
        lay beyond the bounds by more than its own uncertainty, so the data contradict the
        correction, and the estimate is not ``reliable``. (A truth on a bound, an atom that is 0 or a
        label that the codes determine, puts an estimate slightly beyond it half of the time: that
        projection is reported in ``bounded`` and is not counted here.)
    """

    pid: PIDResult
    estimate: dict[str, float]
    ci: dict[str, tuple[float, float]]
    bias_correction: str
    null_mean: dict[str, float]
    null_high: dict[str, float]
    n_samples: int
    n_y: int
    n_t: int
    n_s: int
    occupied_cells: int
    samples_per_cell: float
    confidence: float
    bounded: tuple[str, ...] = ()
    beyond_bounds: bool = False

    @property
    def reliable(self) -> bool:
        """At least :data:`MIN_SAMPLES_PER_CELL` samples per occupied cell, and not ``beyond_bounds``."""
        return self.samples_per_cell >= MIN_SAMPLES_PER_CELL and not self.beyond_bounds

    def as_dict(self) -> dict[str, Any]:
        """One flat row: estimates, intervals, plug-in atoms, null levels, informations, counts, status.

        ``red``, ``uni_t``, ``uni_s`` and ``syn`` are the estimates (after ``bias_correction``);
        ``*_plugin`` are the plug-in atoms; ``mi_*`` are plug-in informations; ``measure`` the
        PID measure; ``bounded`` and ``beyond_bounds`` as the attributes.
        """
        plug = self.pid.as_dict()
        row: dict[str, Any] = {a: self.estimate[a] for a in ATOMS}
        for a in ATOMS:
            row[f"{a}_lo"], row[f"{a}_hi"] = self.ci.get(a, (np.nan, np.nan))
            row[f"{a}_plugin"] = plug[a]
            row[f"{a}_null"] = self.null_mean.get(a, np.nan)
            row[f"{a}_null_hi"] = self.null_high.get(a, np.nan)
        row.update({k: v for k, v in plug.items() if k not in (*ATOMS, "method")})
        row["measure"] = self.pid.method
        row.update(
            bias_correction=self.bias_correction,
            n_samples=self.n_samples,
            n_y=self.n_y,
            n_t=self.n_t,
            n_s=self.n_s,
            occupied_cells=self.occupied_cells,
            samples_per_cell=self.samples_per_cell,
            bounded="; ".join(self.bounded),
            beyond_bounds=self.beyond_bounds,
            reliable=self.reliable,
        )
        return row


def _as_codes(x: Any, name: str, quantizer: Quantizer | None, n_bins: int | None) -> np.ndarray:
    """Codes 0..k-1 of the values that occur (integer codes are compacted), or quantized codes."""
    arr = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    if arr.ndim == 1 and arr.dtype.kind in "iub":
        # Sparse, large codes (say 4 codes spread up to 90,000) would otherwise size the count
        # table; symbols that never occur change no PID.
        return np.unique(_codes(arr, name, "pid_from_samples()"), return_inverse=True)[1].reshape(-1)
    q = fresh_quantizer(quantizer, 10 if n_bins is None else n_bins)
    return q.fit_transform(arr)


def _missing(v: Any) -> bool:
    """A missing label among Python objects: None, NaN or infinite, NaT, pandas' NA."""
    if v is None:
        return True
    if isinstance(v, (float, np.floating)):
        return not np.isfinite(v)
    if isinstance(v, (np.datetime64, np.timedelta64)):
        return bool(np.isnat(v))
    return type(v).__name__ in ("NaTType", "NAType")  # pandas' missing values, without importing pandas


def _label_codes(y: Any, caller: str) -> np.ndarray:
    """Labels (any sortable values) -> codes 0..k-1; missing labels (NaN, NaT, None) are rejected."""
    y_arr = np.asarray(y.detach().cpu().numpy() if hasattr(y, "detach") else y)
    if y_arr.ndim != 1:
        raise ValueError(f"{caller} expects `y` to be 1-d labels, one per sample; got shape {y_arr.shape}.")
    if y_arr.dtype.kind in "fc":
        missing = ~np.isfinite(y_arr)
    elif y_arr.dtype.kind in "mM":
        missing = np.isnat(y_arr)
    elif y_arr.dtype.kind == "O":
        missing = np.array([_missing(v) for v in y_arr], dtype=bool)
    else:
        missing = np.zeros(y_arr.shape, dtype=bool)
    if missing.any():
        raise ValueError(
            f"{caller} expects `y` to hold a label for every sample; got {int(missing.sum())} missing "
            f"(NaN, NaT, infinite or None) label(s), the first at sample {int(np.argmax(missing))}. Drop those samples "
            "(from y, t and s alike) or impute their labels: they are not a class of their own."
        )
    try:
        return np.unique(y_arr, return_inverse=True)[1].reshape(-1)
    except TypeError as exc:
        raise TypeError(f"{caller} expects `y` to hold labels of one comparable type; {exc}.") from None


def _entropies(counts: np.ndarray, base: float = 2.0) -> np.ndarray:
    """[k, 2]: plug-in H(Y) and H(T, S) of a stack of count arrays [k, y, t, s], in units of ``base``."""

    def h(c: np.ndarray) -> np.ndarray:
        n = c.sum(axis=1, keepdims=True)
        return -_xlogx(np.divide(c, n, out=np.zeros(c.shape), where=n > 0), 1)

    k = len(counts)
    hy = h(counts.sum(axis=(2, 3)).reshape(k, -1).astype(np.float64))
    hts = h(counts.sum(axis=1).reshape(k, -1).astype(np.float64))
    return np.stack([hy, hts], axis=1) / np.log(base)


def _atoms(tables: Any, kw: dict[str, Any]) -> list[list[float]]:
    """The atoms of one batch of count tables (a joblib task when ``n_jobs != 1``)."""
    return [[getattr(r, a) for a in ATOMS] for r in pid_batch(tables, counts=True, **kw)]


def _solve_batches(tables: Any, per: int, bar: Any, jobs: int, kw: dict[str, Any]) -> list[list[float]]:
    """The atoms of every table, solved ``per`` at a time, here (``jobs == 1``) or in ``jobs`` joblib
    processes (then in batches small enough to give every process work); ``bar`` advances as each batch
    finishes, in order."""
    if jobs != 1:
        joblib = import_optional("joblib", purpose="pid_from_samples(n_jobs != 1)")
        per = max(1, min(per, -(-len(tables) // joblib.effective_n_jobs(jobs))))
    batches = [tables[i : i + per] for i in range(0, len(tables), per)]
    if jobs == 1:
        solved = (_atoms(b, kw) for b in batches)
    else:
        solved = joblib.Parallel(n_jobs=jobs, return_as="generator")(joblib.delayed(_atoms)(b, kw) for b in batches)
    out = []
    for batch, rows in zip(batches, solved):
        out += rows
        _advance(bar, len(batch))
    return out


def _decompose_counts(counts: np.ndarray, *, bar: Any = None, jobs: int = 1, **kw: Any) -> np.ndarray:
    """[k, 6]: the atoms (:data:`ATOMS`), H(Y) and H(T, S) of a stack of count arrays.

    The atoms are decomposed in memory-bounded batches (:func:`_solve_batches`; a progress ``bar``, if
    given, advances by each batch's size as it finishes); the entropies (plug-in) carry the
    information-theoretic bounds that a corrected estimate must respect (see :func:`_estimate`).
    """
    out = _solve_batches(counts, max(1, _BATCH_CELLS // counts[0].size), bar, jobs, kw)
    return np.concatenate([np.array(out).reshape(-1, len(ATOMS)), _entropies(counts, kw.get("base", 2.0))], axis=1)


def _joint_entropies(joints: list[SparseJoint], base: float) -> np.ndarray:
    """[k, 2]: plug-in H(Y) and H(T, S) of sparse count tables, in units of ``base``."""
    out = np.empty((len(joints), 2))
    for i, j in enumerate(joints):
        w = j.p / j.p.sum()
        ts = np.unique(j.t * j.shape[2] + j.s, return_inverse=True)[1].reshape(-1)
        for col, mass in enumerate((np.bincount(j.y, w), np.bincount(ts, w))):
            out[i, col] = -_xlogx(mass[None], 1)[0]
    return out / np.log(base)


def _decompose_joints(joints: list[SparseJoint], *, bar: Any = None, jobs: int = 1, **kw: Any) -> np.ndarray:
    """:func:`_decompose_counts` of sparse count tables, a batch at a time.

    A table whose support is wide is densified and solved in one dense batch with the rest of its batch
    (:func:`pidkd.estimators.broja._sparse_solve.route`; a label permutation's often is), so a batch holds
    at most 16 tables and :data:`_BATCH_CELLS` dense cells, as in :func:`_decompose_counts` (16 permuted
    1000x64x64 tables would be a 0.5 GB stack and about 10 GB of solver memory).
    """
    out = _solve_batches(joints, max(1, min(16, _BATCH_CELLS // max(1, joints[0].size))), bar, jobs, kw)
    return np.concatenate([np.array(out).reshape(-1, len(ATOMS)), _joint_entropies(joints, kw.get("base", 2.0))], 1)


def _progress_bar(progress: bool | None, size: int, total: int) -> Any:
    """A tqdm bar over ``total`` resample solves when ``progress`` asks for one (None: when the table has at
    least :data:`PROGRESS_CELLS` cells), else a context that gives None."""
    if not total or not (progress or (progress is None and size >= PROGRESS_CELLS)):
        return contextlib.nullcontext()
    tqdm = import_optional("tqdm", purpose="pid_from_samples(progress=True)").tqdm
    return tqdm(total=total, desc="pid_from_samples resamples", unit="solve")


def _advance(bar: Any, solves: int) -> None:
    if bar is not None:
        bar.update(solves)


class _SparseSamples:
    """The sparse count tables of one sample and its resamples, over one support structure.

    The occupied cells of the full sample and the cell of every sample are found once
    (:func:`pidkd.estimators.histogram.sparse_cells`); a bootstrap or jackknife resample only reweights
    those cells (its support is a subset: one ``np.bincount`` each). A label permutation moves samples
    to (y, t, s) cells the full sample may not have, so each permutation gets its own cells (one sort of
    the permuted keys): its support is not a subset of the sample's.
    """

    def __init__(self, cy: np.ndarray, ct: np.ndarray, cs: np.ndarray, shape: tuple[int, int, int]):
        self.shape, self.ct, self.cs = shape, ct, cs
        self.coords, self.counts, self.cell = sparse_cells(cy, ct, cs, shape)

    def joint(self, counts: np.ndarray, coords: Any = None) -> SparseJoint:
        return SparseJoint.from_cells(self.shape, *(self.coords if coords is None else coords), counts)

    def bootstrap(self, idx: np.ndarray) -> SparseJoint:
        return self.joint(np.bincount(self.cell[idx], minlength=self.counts.size))

    def permuted(self, y: np.ndarray) -> SparseJoint:
        coords, counts, _ = sparse_cells(y, self.ct, self.cs, self.shape)
        return self.joint(counts, coords)

    def jackknife(self, groups: int, gen: np.random.Generator) -> list[SparseJoint]:
        k = self.counts.size
        group = gen.permutation(self.cell.size) % groups
        per_group = np.bincount(group * k + self.cell, minlength=groups * k).reshape(groups, k)
        return [self.joint(c) for c in self.counts[None] - per_group]


def check_bias_correction(value: Any, n_bootstrap: int, caller: str) -> str:
    """``value`` if it names a bias correction that can run with ``n_bootstrap`` resamples."""
    if not isinstance(value, str) or value not in BIAS_CORRECTIONS:
        raise ValueError(
            f"The 'bias_correction' parameter of {caller} must be one of {', '.join(map(repr, BIAS_CORRECTIONS))}. "
            f"Got {value!r} instead."
        )
    if value == "bootstrap" and n_bootstrap == 0:
        raise ValueError(
            f"{caller} got bias_correction='bootstrap' with n_bootstrap=0: the bootstrap correction needs "
            "resamples. Give n_bootstrap > 0 or another correction."
        )
    return value


def _jackknife_counts(flat: np.ndarray, counts: np.ndarray, groups: int, gen: np.random.Generator) -> np.ndarray:
    """Counts with one of ``groups`` random, equally sized groups of samples deleted, stacked."""
    group = gen.permutation(flat.size) % groups
    per_group = np.bincount(group * counts.size + flat, minlength=groups * counts.size)
    return counts[None] - per_group.reshape(groups, *counts.shape)


def _corrected(
    est: np.ndarray, boot: np.ndarray | None, jack: np.ndarray | None, method: str, confidence: float
) -> tuple[np.ndarray, np.ndarray | None]:
    """Estimate and interval [2, columns] (or None without resamples) of one bias correction, per column.

    "none": the plug-in, with the basic bootstrap interval [2 est - q(1-a/2), 2 est - q(a/2)].
    "bootstrap": 2 est - mean of the bootstrap values, with the same basic interval (the bootstrap
    estimate of the bias is what that interval reflects around). "jackknife": with g groups,
    g est - (g-1) mean(jack), and estimate +- t(g-1) * max(jackknife SE, bootstrap SD).
    Each correction is linear in the resamples, so the corrected atoms keep the identities
    (corrected Red + Uni_t is the corrected I(Y;T)); the bounds are applied by :func:`_estimate`.
    """
    alpha = (1 - confidence) / 2
    basic = None
    if boot is not None:
        q_lo, q_hi = np.quantile(boot, [alpha, 1 - alpha], axis=0)
        basic = np.stack([2 * est - q_hi, 2 * est - q_lo])
    if method == "none" or (method == "jackknife" and (jack is None or len(jack) < 2)):
        return est, basic
    if method == "bootstrap":
        return 2 * est - boot.mean(axis=0), basic
    g = len(jack)
    out = g * est - (g - 1) * jack.mean(axis=0)
    spread = np.sqrt((g - 1) / g * ((jack - jack.mean(axis=0)) ** 2).sum(axis=0))
    if boot is not None and len(boot) > 1:
        spread = np.maximum(spread, boot.std(axis=0, ddof=1))
    half = stats.t.ppf(1 - alpha, g - 1) * spread
    return out, np.stack([out - half, out + half])


# The bounds on (Red, Uni_t, Uni_s, Syn) as rows of A x <= b, named as in ``SamplePID.bounded``.
BOUNDS = ("red>=0", "uni_t>=0", "uni_s>=0", "syn>=0", "red+uni_t<=I(Y;T)", "red+uni_s<=I(Y;S)", "sum<=H")
_A = np.array(
    [[-1, 0, 0, 0], [0, -1, 0, 0], [0, 0, -1, 0], [0, 0, 0, -1], [1, 1, 0, 0], [1, 0, 1, 0], [1, 1, 1, 1]], dtype=float
)
# Every set of at most 4 constraints (the dimension): the projection lies on the affine hull of one.
_FACES = [list(f) for k in range(1, 5) for f in itertools.combinations(range(len(BOUNDS)), k)]
_BOUND_TOL = 1e-9  # a bound counts as broken beyond this (units of base; the solver's gap tolerance)


def _project(x: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The Euclidean projection of ``x`` (4 atoms) onto the polytope {z : _A z <= b}.

    The projection is the point nearest to ``x`` among the feasible projections of ``x`` onto the
    affine hulls of the faces (every set of at most 4 constraints held with equality): the true
    projection is one of them, and every other candidate is feasible, hence no nearer. 99 tiny
    least-squares solves, exact up to round-off; taken only when ``x`` breaks a bound.
    """
    if np.all(_A @ x <= b):
        return x
    best, best_d = np.zeros_like(x), np.inf  # 0 is feasible: every bound is >= 0
    slack = 1e-12 * max(1.0, float(np.abs(b[np.isfinite(b)]).max()))  # b[3] is inf without Syn >= 0
    for face in _FACES:
        a = _A[face]
        lam = np.linalg.lstsq(a @ a.T, a @ x - b[face], rcond=None)[0]
        z = x - a.T @ lam
        d = float(np.sum((z - x) ** 2))
        if d < best_d and np.all(_A @ z <= b + slack):
            best, best_d = z, d
    return _snap(best, b)


def _snap(z: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``z`` (feasible up to round-off) made exactly feasible: the largest atom of a sum that ends a
    few ulps above its bound is lowered by the excess (and an ulp, until the float sum is inside).
    The lower bounds are -b[:4]: 0, or -inf for a Syn that may be negative."""
    lower = -b[: len(ATOMS)]
    z = np.maximum(z, lower)
    for _ in range(64):
        over = _A[len(ATOMS) :] @ z - b[len(ATOMS) :]
        j = int(np.argmax(over))
        if over[j] <= 0:
            break
        members = np.flatnonzero(_A[len(ATOMS) + j])
        k = members[np.argmax(z[members])]
        z[k] = max(np.nextafter(z[k] - over[j], -np.inf), lower[k])
    return z


def _estimate(
    plug: np.ndarray,
    boot: np.ndarray | None,
    jack: np.ndarray | None,
    method: str,
    confidence: float,
    shape: tuple[int, ...],
    base: float,
    syn_floor: float = 0.0,
) -> tuple[np.ndarray, np.ndarray | None, tuple[str, ...], bool]:
    """Corrected atoms and interval [2, 4] inside the bounds, the bounds broken, and whether beyond noise.

    ``plug``, ``boot`` and ``jack`` are rows of :func:`_decompose_counts` (atoms, H(Y), H(T, S)).
    Every quantity, I(Y;T) = Red + Uni_t and I(Y;S) = Red + Uni_s included, is corrected alike
    (:func:`_corrected`); then the estimate is projected (Euclidean) onto the bounds

        atoms >= 0,  Red + Uni_t <= I(Y;T),  Red + Uni_s <= I(Y;S),  sum <= H = min(H(Y), H(T, S)),

    with the corrected informations (I kept in [0, H]; an entropy at most the log of its alphabet's
    size, the one bound that holds whatever the sample). An interval end is clipped to the range of
    its atom under the same bounds taken at the upper interval ends of the informations (so that an
    interval still covers a truth that lies on a bound), and widened to hold a projected estimate.
    Returns the estimate, the interval, the names (:data:`BOUNDS`) of the bounds the corrected
    estimate broke by more than 1e-9, and whether the projection moved an atom by more than its
    interval's width (or at all, without an interval): the data then contradict the correction. (A
    truth on a bound puts an atom beyond its half-width in about 5% of samples, per atom and side:
    measured 9-17% of draws with zero atoms in the bias study; beyond the width, about 0.04%.)
    ``syn_floor=-inf`` drops Syn >= 0, which does not hold for measures other than BROJA's (a
    smaller Red makes Syn = I(Y;T,S) - I(Y;T) - I(Y;S) + Red negative).
    """

    def columns(a: np.ndarray | None) -> np.ndarray | None:  # + I(Y;T), I(Y;S)
        return None if a is None else np.concatenate([a, a[..., :1] + a[..., 1:2], a[..., :1] + a[..., 2:3]], axis=-1)

    est, ci = _corrected(columns(plug), columns(boot), columns(jack), method, confidence)
    k = len(ATOMS)
    x = est[:k]
    caps = np.log([shape[0], shape[1] * shape[2]]) / np.log(base)
    h = max(0.0, float(np.minimum(est[k : k + 2], caps).min()))
    i_t = min(max(float(x[0] + x[1]), 0.0), h)
    i_s = min(max(float(x[0] + x[2]), 0.0), h)
    b = np.array([0.0, 0.0, 0.0, -syn_floor, i_t, i_s, h])
    broken = tuple(name for name, over in zip(BOUNDS, _A @ x - b) if over > _BOUND_TOL)
    out = _project(x, b)
    half = np.zeros(k)
    if ci is not None:
        half = np.maximum(ci[1, :k] - ci[0, :k], 0.0) / 2
        u_h = max(h, float(np.minimum(ci[1, k : k + 2], caps).min()))
        u_t, u_s = min(max(float(ci[1, k + 2]), i_t), u_h), min(max(float(ci[1, k + 3]), i_s), u_h)
        ci = np.clip(ci[:, :k], np.array([0.0, 0.0, 0.0, syn_floor]), np.array([min(u_t, u_s), u_t, u_s, u_h]))
        if np.any(out != x):  # a projected estimate may leave its clipped interval: widen it to hold it
            ci = np.stack([np.minimum(ci[0], out), np.maximum(ci[1], out)])
    beyond = bool(np.any(np.abs(out - x) > 2 * half + _BOUND_TOL))
    return out, ci, broken, beyond


def pid_from_samples(
    y: ArrayLike,
    t: Any,
    s: Any,
    *,
    quantizer: Quantizer | None = None,
    n_bins: int | None = None,
    n_bootstrap: int = 200,
    confidence: float = 0.9,
    n_permutations: int = 20,
    rng: int | np.random.Generator | None = 0,
    base: float = 2.0,
    solver: str | None = None,
    bias_correction: str = "jackknife",
    device: Any = None,
    measure: Any = "broja",
    progress: bool | None = None,
    n_jobs: int = 1,
) -> SamplePID:
    """BROJA PID of I(Y; T, S) estimated from samples: bias-corrected atoms, intervals, a null level.

    Parameters
    ----------
    y : array_like, shape (N,)
        Labels (any hashable values; mapped to codes).
    t, s : array_like
        Teacher and student: 1-d integer codes, or representations (N, ...) that are quantized
        (T and S separately) with a clone of ``quantizer`` (default: k-means to ``n_bins`` = 10
        clusters after L2 normalisation and PCA, as in the RID paper).
    n_bootstrap : int, default 200
        Bootstrap resamples for the intervals (0: none; the jackknife interval then uses the
        jackknife spread alone).
    confidence : float, default 0.9
        Level of the intervals and of the upper null quantile.
    n_permutations : int, default 20
        Label permutations for the null level (0: none).
    rng : int or numpy.random.Generator, default 0
        Seed: results are deterministic.
    base, solver
        As in :func:`pidkd.pid`.
    bias_correction : {"jackknife", "bootstrap", "none"}, default "jackknife"
        How ``estimate`` corrects the plug-in bias. "jackknife": delete-a-group jackknife over 20
        random groups (20 more solves; removes the 1/N term of the bias); interval: estimate +-
        t quantile x the larger of the jackknife standard error and the bootstrap standard
        deviation. "bootstrap": twice the plug-in minus the bootstrap mean, basic bootstrap
        interval (needs ``n_bootstrap > 0``). "none": the plug-in and the basic bootstrap
        interval, as pidkd 0.1.0. Estimates and interval ends are then held inside the
        information-theoretic bounds (``SamplePID.bounded``). The study behind the default is on
        the docs page "Bias of sample estimates".
    device : str, torch.device or None
        Solve the resamples (bootstrap, permutations, jackknife) with ``pid_batch(device=...)``:
        pidkd's solver in PyTorch on that device, e.g. ``"cuda"`` (see :func:`pidkd.pid_batch`).
        None: the default CPU solver. The plug-in PID always runs on the default path.
    measure : {"broja", "intersection", "maps"} or Measure, default "broja"
        The PID measure, as in :func:`pidkd.pid`. With ``"maps"`` the maximisation over maps
        inflates the plug-in co-information: compare the estimate with its null level (the
        permutation null is computed the same way), and Syn may be negative.
    progress : bool or None, default None
        Show a progress bar (tqdm, on stderr) of the resample solves (bootstrap, permutations,
        jackknife), advanced as each batch of solves finishes. None: only when the count table has
        at least :data:`PROGRESS_CELLS` (10,000) cells |Y|·|T|·|S|, where the 240 default resample
        solves take tens of seconds or more; True: whenever there are resamples; False: never
        (:func:`pidkd.sweep` and the probes pass False and keep their own progress). The results
        do not depend on it.
    n_jobs : int, default 1
        Solve the resamples in this many joblib processes (-1: one per core). Worth it on large
        tables, whose solves take seconds each (a 1000x64x64 sample table: 10-70 s per solve on one
        core); small tables are solved faster in one process, whose Newton solver already batches
        them. The results are the same up to rounding (on a 1000x64x64 table the atoms differed by
        1e-13 bits: a worker process factors with fewer BLAS threads). Not with ``device``.

    Returns
    -------
    SamplePID
        A :class:`SampleSizeWarning` is issued when there are fewer than
        :data:`MIN_SAMPLES_PER_CELL` samples per occupied cell.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> t = rng.integers(0, 2, 2000); s = rng.integers(0, 2, 2000); y = t ^ s
    >>> r = pid_from_samples(y, t, s, n_bootstrap=50, n_permutations=5)
    >>> round(r.estimate["syn"], 2), r.ci["syn"][0] > 0.9, r.null_mean["syn"] < 0.01, r.bias_correction
    (1.0, True, True, 'jackknife')
    """
    caller = "pid_from_samples()"
    if quantizer is not None and n_bins is not None:
        raise ValueError(
            f"{caller} got both `quantizer` and `n_bins`; the number of codes is the quantizer's own "
            f"(n_bins={quantizer.n_bins}). Pass one of them."
        )
    if quantizer is not None and not isinstance(quantizer, Quantizer):
        raise TypeError(
            f"{caller} expects `quantizer` to be a pidkd Quantizer or None; got {type(quantizer).__name__}."
        )
    n_bins = check_int(n_bins, name="n_bins", caller=caller, minimum=2, optional=True)
    base = check_base(base, caller=caller)
    if not 0 < confidence < 1:
        raise ValueError(f"The 'confidence' parameter of {caller} must be in (0, 1). Got {confidence!r} instead.")
    n_bootstrap = check_int(n_bootstrap, name="n_bootstrap", caller=caller, minimum=0)
    n_permutations = check_int(n_permutations, name="n_permutations", caller=caller, minimum=0)
    check_bias_correction(bias_correction, n_bootstrap, caller)
    progress = check_bool(progress, name="progress", caller=caller, optional=True)
    if check_int(n_jobs, name="n_jobs", caller=caller, minimum=-(os.cpu_count() or 1)) == 0:
        raise ValueError(f"The 'n_jobs' parameter of {caller} must be a non-zero int (-1: all cores). Got 0 instead.")
    if n_jobs != 1 and device is not None:
        raise ValueError(
            f"{caller} got device={device!r} and n_jobs={n_jobs}: the resamples run either on the device (one "
            "batch) or in n_jobs CPU processes. Give one of them."
        )
    measure = resolve_measure(measure, solver=solver, caller=caller)
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    cy = _label_codes(y, caller)
    if cy.size == 0:
        raise ValueError(f"{caller} got no samples (empty `y`); give one label and representation per sample.")
    ct = _as_codes(t, "t", quantizer, n_bins)
    cs = _as_codes(s, "s", quantizer, n_bins)
    n = int(cy.size)
    shape = (int(cy.max()) + 1, int(ct.max()) + 1, int(cs.max()) + 1)
    size = int(np.prod(shape, dtype=np.int64))
    # A table far larger than the sample is counted and solved sparsely (the same resamples, drawn alike).
    sparse = _SparseSamples(cy, ct, cs, shape) if size > SPARSE_CELLS_PER_SAMPLE * n else None
    counts = joint_histogram(cy, ct, cs) if sparse is None else None
    kw = {"base": base, "measure": measure}
    result_joint = None if sparse is None else sparse.joint(sparse.counts)
    result = pid(counts if sparse is None else result_joint, counts=True, **kw)
    kw["measure"] = measure.for_resamples()  # the plug-in above ran with the measure itself
    if device is not None:
        kw["device"] = device
    flat = (cy * shape[1] + ct) * shape[2] + cs
    jackknife = bias_correction == "jackknife" and n > 1
    groups = min(JACKKNIFE_GROUPS, n)
    boot = None
    null_mean: dict[str, float] = {}
    null_high: dict[str, float] = {}
    jack = None
    with _progress_bar(progress, size, n_bootstrap + n_permutations + groups * jackknife) as bar:
        if n_bootstrap:
            if sparse is None:
                boots = np.stack(
                    [
                        np.bincount(flat[gen.integers(0, n, n)], minlength=size).reshape(shape)
                        for _ in range(n_bootstrap)
                    ]
                )
                boot = _decompose_counts(boots, bar=bar, jobs=n_jobs, **kw)
            else:
                boot = _decompose_joints(
                    [sparse.bootstrap(gen.integers(0, n, n)) for _ in range(n_bootstrap)], bar=bar, jobs=n_jobs, **kw
                )
        if n_permutations:
            if sparse is None:
                perms = np.stack(
                    [
                        joint_histogram(gen.permutation(cy), ct, cs, n_y=shape[0], n_t=shape[1], n_s=shape[2])
                        for _ in range(n_permutations)
                    ]
                )
                atoms = _decompose_counts(perms, bar=bar, jobs=n_jobs, **kw)
            else:
                atoms = _decompose_joints(
                    [sparse.permuted(gen.permutation(cy)) for _ in range(n_permutations)], bar=bar, jobs=n_jobs, **kw
                )
            null_mean = {a: float(atoms[:, i].mean()) for i, a in enumerate(ATOMS)}
            null_high = {a: float(np.quantile(atoms[:, i], confidence)) for i, a in enumerate(ATOMS)}
        if jackknife:  # drawn last: the other resamples are those of "none"
            if sparse is None:
                jack = _decompose_counts(_jackknife_counts(flat, counts, groups, gen), bar=bar, jobs=n_jobs, **kw)
            else:
                jack = _decompose_joints(sparse.jackknife(groups, gen), bar=bar, jobs=n_jobs, **kw)
    h_plug = _entropies(counts[None], base)[0] if sparse is None else _joint_entropies([result_joint], base)[0]
    plug = np.concatenate([[getattr(result, a) for a in ATOMS], h_plug])
    est, ci, bounded, beyond = _estimate(
        plug,
        boot,
        jack,
        bias_correction,
        confidence,
        shape,
        base,
        syn_floor=0.0 if measure.nonnegative_synergy else -np.inf,
    )
    occupied = int(np.count_nonzero(counts)) if sparse is None else int(sparse.counts.size)
    if n / occupied < MIN_SAMPLES_PER_CELL:
        warnings.warn(
            SampleSizeWarning(
                f"pid_from_samples: {n / occupied:.2g} samples per occupied cell ({n} samples, {occupied} of "
                f"{size} cells occupied), fewer than {MIN_SAMPLES_PER_CELL:g}: even the {bias_correction} "
                "estimate keeps much of the plug-in bias here (Syn above all). Use more samples or fewer codes "
                "(smaller n_bins), and compare each atom with its null level."
            ),
            stacklevel=2,
        )
    if beyond:
        warnings.warn(
            SampleSizeWarning(
                f"pid_from_samples: the {bias_correction} estimate broke {', '.join(bounded)} by more than its "
                "own interval's width; it was projected onto the bounds (SamplePID.bounded) and is not "
                "reliable: the correction is far from its asymptotic regime here. Use more samples or fewer codes "
                "(smaller n_bins), and compare each atom with its plug-in and null level."
            ),
            stacklevel=2,
        )
    return SamplePID(
        pid=result,
        estimate={a: float(est[i]) for i, a in enumerate(ATOMS)},
        ci={} if ci is None else {a: (float(ci[0, i]), float(ci[1, i])) for i, a in enumerate(ATOMS)},
        bias_correction=bias_correction,
        null_mean=null_mean,
        null_high=null_high,
        n_samples=n,
        n_y=shape[0],
        n_t=shape[1],
        n_s=shape[2],
        occupied_cells=occupied,
        samples_per_cell=n / occupied,
        confidence=confidence,
        bounded=bounded,
        beyond_bounds=beyond,
    )
