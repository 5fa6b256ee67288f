"""PID from samples: plug-in estimate, bootstrap intervals and a permutation null.

The plug-in estimate counts the code triples and decomposes their empirical pmf. It is **biased
upward for small samples and large alphabets**: with few samples per occupied cell the empirical
pmf shows dependence that is not there, and every atom that measures dependence (Red, the Uniques,
and Syn above all) picks it up. Two numbers come with every estimate to make this visible:

- bootstrap intervals (resampling the samples with replacement; the *basic* interval
  [2 est - q(1 - a/2), 2 est - q(a/2)], clipped at 0, which undoes the shift that the plug-in bias
  puts into the bootstrap distribution; measured coverage of a 90% interval: 35 of 40 seeded
  repetitions in the test suite);
- a permutation null: the atoms after shuffling Y, which destroys every dependence on the label,
  so their values are bias alone. An atom not clearly above its null level is not evidence of
  information. As a rule of thumb, keep several samples per occupied cell (``samples_per_cell``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from pidkd._validation import check_base, check_int
from pidkd.estimators._result import PIDResult
from pidkd.estimators.api import pid, pid_batch
from pidkd.estimators.histogram import _codes, joint_histogram
from pidkd.estimators.quantize import Quantizer, fresh_quantizer

__all__ = ["ATOMS", "SamplePID", "pid_from_samples"]

ATOMS = ("red", "uni_t", "uni_s", "syn")
_BATCH_CELLS = 20_000_000  # bootstrap pmfs are decomposed in batches of at most this many cells


@dataclass(frozen=True)
class SamplePID:
    """A plug-in PID with its uncertainty and bias diagnostics (units of ``pid.base``).

    Attributes
    ----------
    pid : PIDResult
        The plug-in decomposition of all samples.
    ci : dict
        Atom -> (low, high) basic bootstrap interval at level ``confidence``.
    null_mean, null_high : dict
        Atom -> mean and upper ``confidence`` quantile over label permutations (bias alone).
    n_samples, n_y, n_t, n_s, occupied_cells : int
    samples_per_cell : float
        n_samples / occupied_cells.
    confidence : float
    """

    pid: PIDResult
    ci: dict[str, tuple[float, float]]
    null_mean: dict[str, float]
    null_high: dict[str, float]
    n_samples: int
    n_y: int
    n_t: int
    n_s: int
    occupied_cells: int
    samples_per_cell: float
    confidence: float

    def as_dict(self) -> dict[str, Any]:
        """One flat row: atoms, informations, intervals, null levels, counts, solver status."""
        row: dict[str, Any] = {k: v for k, v in self.pid.as_dict().items() if k not in ("method",)}
        for a in ATOMS:
            row[f"{a}_lo"], row[f"{a}_hi"] = self.ci.get(a, (np.nan, np.nan))
            row[f"{a}_null"] = self.null_mean.get(a, np.nan)
            row[f"{a}_null_hi"] = self.null_high.get(a, np.nan)
        row.update(
            n_samples=self.n_samples,
            n_y=self.n_y,
            n_t=self.n_t,
            n_s=self.n_s,
            occupied_cells=self.occupied_cells,
            samples_per_cell=self.samples_per_cell,
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
) -> SamplePID:
    """BROJA PID of I(Y; T, S) estimated from samples, with bootstrap intervals and a null level.

    Parameters
    ----------
    y : array_like, shape (N,)
        Labels (any hashable values; mapped to codes).
    t, s : array_like
        Teacher and student: 1-d integer codes, or representations (N, ...) that are quantized
        (T and S separately) with a clone of ``quantizer`` (default: k-means to ``n_bins`` = 10
        clusters after L2 normalisation and PCA, as in the RID paper).
    n_bootstrap : int, default 200
        Bootstrap resamples for the intervals (0: none).
    confidence : float, default 0.9
        Level of the intervals and of the upper null quantile.
    n_permutations : int, default 20
        Label permutations for the null level (0: none).
    rng : int or numpy.random.Generator, default 0
        Seed: results are deterministic.
    base, solver
        As in :func:`pidkd.pid`.

    Returns
    -------
    SamplePID

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> t = rng.integers(0, 2, 2000); s = rng.integers(0, 2, 2000); y = t ^ s
    >>> r = pid_from_samples(y, t, s, n_bootstrap=50, n_permutations=5)
    >>> round(r.pid.syn, 2), r.ci["syn"][0] > 0.9, r.null_mean["syn"] < 0.01
    (1.0, True, True)
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
    shape = counts.shape
    flat = (cy * shape[1] + ct) * shape[2] + cs
    alpha = (1 - confidence) / 2
    ci: dict[str, tuple[float, float]] = {}
    if n_bootstrap:
        boots = np.stack(
            [np.bincount(flat[gen.integers(0, n, n)], minlength=counts.size).reshape(shape) for _ in range(n_bootstrap)]
        )
        atoms = _decompose_counts(boots, **kw)
        q_lo, q_hi = np.quantile(atoms, [alpha, 1 - alpha], axis=0)
        est = np.array([getattr(result, a) for a in ATOMS])
        # Basic (reverse-percentile) interval: the plug-in bias shifts the bootstrap distribution
        # up by about the estimator's own bias, and reflecting around the estimate undoes it.
        lo, hi = np.maximum(2 * est - q_hi, 0.0), np.maximum(2 * est - q_lo, 0.0)
        ci = {a: (float(lo[i]), float(hi[i])) for i, a in enumerate(ATOMS)}
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
    occupied = int(np.count_nonzero(counts))
    return SamplePID(
        pid=result,
        ci=ci,
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
