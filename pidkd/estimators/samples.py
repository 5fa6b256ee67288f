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

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from pidkd._validation import check_base, check_int
from pidkd.estimators._result import PIDResult
from pidkd.estimators.api import pid, pid_batch
from pidkd.estimators.histogram import _codes, joint_histogram
from pidkd.estimators.quantize import Quantizer, fresh_quantizer

__all__ = ["ATOMS", "BIAS_CORRECTIONS", "MIN_SAMPLES_PER_CELL", "SamplePID", "SampleSizeWarning", "pid_from_samples"]

ATOMS = ("red", "uni_t", "uni_s", "syn")
#: Values of ``pid_from_samples(bias_correction=...)``; the first is the default.
BIAS_CORRECTIONS = ("jackknife", "bootstrap", "none")
#: Below this many samples per occupied cell a :class:`SampleSizeWarning` is issued.
MIN_SAMPLES_PER_CELL = 5.0
JACKKNIFE_GROUPS = 20  # delete-a-group jackknife: 20 solves, each on 95% of the samples
_BATCH_CELLS = 20_000_000  # bootstrap pmfs are decomposed in batches of at most this many cells


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
        Atom -> point estimate after ``bias_correction`` (clipped at 0; equal to the plug-in
        atoms with ``"none"``).
    ci : dict
        Atom -> (low, high) interval around ``estimate`` at level ``confidence`` (clipped at 0).
    bias_correction : str
        The correction applied: "jackknife", "bootstrap" or "none".
    null_mean, null_high : dict
        Atom -> mean and upper ``confidence`` quantile of the plug-in atoms over label
        permutations (the plug-in bias where there is no information).
    n_samples, n_y, n_t, n_s, occupied_cells : int
    samples_per_cell : float
        n_samples / occupied_cells.
    confidence : float
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

    @property
    def reliable(self) -> bool:
        """At least :data:`MIN_SAMPLES_PER_CELL` samples per occupied cell."""
        return self.samples_per_cell >= MIN_SAMPLES_PER_CELL

    def as_dict(self) -> dict[str, Any]:
        """One flat row: estimates, intervals, plug-in atoms, null levels, informations, counts, status.

        ``red``, ``uni_t``, ``uni_s`` and ``syn`` are the estimates (after ``bias_correction``);
        ``*_plugin`` are the plug-in atoms; ``mi_*`` are plug-in informations.
        """
        plug = self.pid.as_dict()
        row: dict[str, Any] = {a: self.estimate[a] for a in ATOMS}
        for a in ATOMS:
            row[f"{a}_lo"], row[f"{a}_hi"] = self.ci.get(a, (np.nan, np.nan))
            row[f"{a}_plugin"] = plug[a]
            row[f"{a}_null"] = self.null_mean.get(a, np.nan)
            row[f"{a}_null_hi"] = self.null_high.get(a, np.nan)
        row.update({k: v for k, v in plug.items() if k not in (*ATOMS, "method")})
        row.update(
            bias_correction=self.bias_correction,
            n_samples=self.n_samples,
            n_y=self.n_y,
            n_t=self.n_t,
            n_s=self.n_s,
            occupied_cells=self.occupied_cells,
            samples_per_cell=self.samples_per_cell,
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


def _label_codes(y: Any, caller: str) -> np.ndarray:
    """Labels (any sortable values) -> codes 0..k-1; missing labels (NaN, None) are rejected."""
    y_arr = np.asarray(y.detach().cpu().numpy() if hasattr(y, "detach") else y)
    if y_arr.ndim != 1:
        raise ValueError(f"{caller} expects `y` to be 1-d labels, one per sample; got shape {y_arr.shape}.")
    if y_arr.dtype.kind == "f":
        missing = ~np.isfinite(y_arr)
    elif y_arr.dtype.kind == "O":
        missing = np.array([v is None or (isinstance(v, float) and not np.isfinite(v)) for v in y_arr], dtype=bool)
    else:
        missing = np.zeros(y_arr.shape, dtype=bool)
    if missing.any():
        raise ValueError(
            f"{caller} expects `y` to hold a label for every sample; got {int(missing.sum())} missing "
            f"(NaN, infinite or None) label(s), the first at sample {int(np.argmax(missing))}. Drop those samples "
            "(from y, t and s alike) or impute their labels: they are not a class of their own."
        )
    try:
        return np.unique(y_arr, return_inverse=True)[1].reshape(-1)
    except TypeError as exc:
        raise TypeError(f"{caller} expects `y` to hold labels of one comparable type; {exc}.") from None


def _decompose_counts(counts: np.ndarray, **kw: Any) -> np.ndarray:
    """Atoms of a stack of count arrays, decomposed in memory-bounded batches."""
    per = max(1, _BATCH_CELLS // counts[0].size)
    out = []
    for i in range(0, len(counts), per):
        out += [[getattr(r, a) for a in ATOMS] for r in pid_batch(counts[i : i + per], counts=True, **kw)]
    return np.array(out)


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
    """Estimate and interval [2, atoms] (or None without resamples) of one bias correction.

    "none": the plug-in, with the basic bootstrap interval [2 est - q(1-a/2), 2 est - q(a/2)].
    "bootstrap": 2 est - mean of the bootstrap atoms, with the same basic interval (the bootstrap
    estimate of the bias is what that interval reflects around). "jackknife": with g groups,
    g est - (g-1) mean(jack), and estimate +- t(g-1) * max(jackknife SE, bootstrap SD).
    Atoms are non-negative, so estimates and intervals are clipped at 0.
    """
    alpha = (1 - confidence) / 2
    basic = None
    if boot is not None:
        q_lo, q_hi = np.quantile(boot, [alpha, 1 - alpha], axis=0)
        basic = np.stack([2 * est - q_hi, 2 * est - q_lo])
    if method == "none" or (method == "jackknife" and (jack is None or len(jack) < 2)):
        out, ci = est, basic
    elif method == "bootstrap":
        out, ci = 2 * est - boot.mean(axis=0), basic
    else:
        g = len(jack)
        out = g * est - (g - 1) * jack.mean(axis=0)
        spread = np.sqrt((g - 1) / g * ((jack - jack.mean(axis=0)) ** 2).sum(axis=0))
        if boot is not None and len(boot) > 1:
            spread = np.maximum(spread, boot.std(axis=0, ddof=1))
        half = stats.t.ppf(1 - alpha, g - 1) * spread
        ci = np.stack([out - half, out + half])
    return np.maximum(out, 0.0), None if ci is None else np.maximum(ci, 0.0)


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
        interval, exactly as pidkd 0.1.0. The study behind the default is on the docs page "Bias
        of sample estimates".
    device : str, torch.device or None
        Solve the resamples (bootstrap, permutations, jackknife) with ``pid_batch(device=...)``:
        pidkd's solver in PyTorch on that device, e.g. ``"cuda"`` (see :func:`pidkd.pid_batch`).
        None: the default CPU solver. The plug-in PID always runs on the default path.

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
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    cy = _label_codes(y, caller)
    if cy.size == 0:
        raise ValueError(f"{caller} got no samples (empty `y`); give one label and representation per sample.")
    ct = _as_codes(t, "t", quantizer, n_bins)
    cs = _as_codes(s, "s", quantizer, n_bins)
    counts = joint_histogram(cy, ct, cs)
    n = int(cy.size)
    kw = {"base": base, "solver": solver}
    result = pid(counts, counts=True, **kw)
    if device is not None:
        kw["device"] = device
    shape = counts.shape
    flat = (cy * shape[1] + ct) * shape[2] + cs
    boot = None
    if n_bootstrap:
        boots = np.stack(
            [np.bincount(flat[gen.integers(0, n, n)], minlength=counts.size).reshape(shape) for _ in range(n_bootstrap)]
        )
        boot = _decompose_counts(boots, **kw)
    null_mean: dict[str, float] = {}
    null_high: dict[str, float] = {}
    if n_permutations:
        perms = np.stack(
            [
                joint_histogram(gen.permutation(cy), ct, cs, n_y=shape[0], n_t=shape[1], n_s=shape[2])
                for _ in range(n_permutations)
            ]
        )
        atoms = _decompose_counts(perms, **kw)
        null_mean = {a: float(atoms[:, i].mean()) for i, a in enumerate(ATOMS)}
        null_high = {a: float(np.quantile(atoms[:, i], confidence)) for i, a in enumerate(ATOMS)}
    jack = None
    if bias_correction == "jackknife" and n > 1:  # drawn last: the other resamples are those of "none"
        jack = _decompose_counts(_jackknife_counts(flat, counts, min(JACKKNIFE_GROUPS, n), gen), **kw)
    est, ci = _corrected(np.array([getattr(result, a) for a in ATOMS]), boot, jack, bias_correction, confidence)
    occupied = int(np.count_nonzero(counts))
    if n / occupied < MIN_SAMPLES_PER_CELL:
        warnings.warn(
            SampleSizeWarning(
                f"pid_from_samples: {n / occupied:.2g} samples per occupied cell ({n} samples, {occupied} of "
                f"{counts.size} cells occupied), fewer than {MIN_SAMPLES_PER_CELL:g}: even the {bias_correction} "
                "estimate keeps much of the plug-in bias here (Syn above all). Use more samples or fewer codes "
                "(smaller n_bins), and compare each atom with its null level."
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
    )
