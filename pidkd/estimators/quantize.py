"""Turn continuous representations into discrete codes for the PID.

Representations are (N, D) arrays or (N, C, H, W) feature maps (numpy or torch); every sample is
flattened to one vector. Strategies:

- ``"kmeans"`` (default, the RID paper's pipeline): L2-normalise each sample, PCA to
  ``n_components``, k-means to ``n_bins`` clusters;
- ``"uniform"`` / ``"quantile"``: equal-width / equal-mass bins of a 1-d projection (the first
  principal component of the normalised samples, or the values themselves for 1-d input).

A :class:`Quantizer` is fitted once (e.g. on a reference set or the first checkpoint) and reused
on new data with :meth:`Quantizer.transform`. PCA and k-means come from scikit-learn.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from pidkd._optional import import_optional, loaded_module
from pidkd._validation import check_choice

__all__ = ["FIT_SAMPLES", "STRATEGIES", "Quantizer", "fresh_quantizer", "quantize", "quantize_in_chunks"]

STRATEGIES = ("kmeans", "uniform", "quantile")
#: Rows a quantizer is fitted on by :func:`quantize_in_chunks` (a random subset when there are more).
FIT_SAMPLES = 20_000
_FIT_VALUES = 2**23  # at most this many values (64 MB in float64) in the fitting copy, for wide layers
_MIN_FIT_ROWS = 1_000
_CHUNK_VALUES = 2**22  # values per transformed chunk (32 MB in float64)
# Magnitudes beyond 2**+-_SAFE_EXP are brought near 1 by a power of two (exact) before quantizing:
# squares (norms, PCA, k-means distances) of values near 1e+-200 overflow or underflow.
_SAFE_EXP = 100


def as_samples(x: Any, *, name: str = "x", caller: str = "Quantizer") -> NDArray[np.float64]:
    """(N, ...) numpy or torch input -> (N, D) float64, validated."""
    torch = loaded_module("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", dtype=torch.float64).numpy()  # exact for every float and int dtype
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 0 or arr.shape[0] == 0:
        raise ValueError(f"{caller} expects `{name}` to hold at least one sample (axis 0); got shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{caller} expects `{name}` to be finite; got NaN or infinite activations.")
    return arr.reshape(arr.shape[0], -1)


def _scale_exp(arr: NDArray[np.float64]) -> int:
    """The power of two that brings ``arr``'s largest magnitude near 1, or 0 inside 2**+-_SAFE_EXP."""
    top = float(np.abs(arr).max())
    exp = int(np.frexp(top)[1]) if top > 0 else 0
    return exp if abs(exp) > _SAFE_EXP else 0


class Quantizer:
    """A reusable quantizer of representations into ``n_bins`` codes.

    Parameters
    ----------
    strategy : {"kmeans", "uniform", "quantile"}, default "kmeans"
    n_bins : int, default 10
        Number of codes (clusters or bins).
    n_components : int, default 10
        PCA components before k-means (capped at the data's dimension and sample count).
    normalize : bool, default True
        L2-normalise each sample first (the RID paper does).
    random_state : int, default 0
        Seed of PCA and k-means: the codes are deterministic.
    n_init : int, default 4
        k-means restarts.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(200, 8))
    >>> q = Quantizer("kmeans", n_bins=4).fit(x)
    >>> q.transform(x).max() < 4, q.n_codes_
    (np.True_, 4)
    """

    def __init__(
        self,
        strategy: str = "kmeans",
        n_bins: int = 10,
        *,
        n_components: int = 10,
        normalize: bool = True,
        random_state: int = 0,
        n_init: int = 4,
    ):
        self.strategy = check_choice(strategy, STRATEGIES, name="strategy", caller="Quantizer()")
        if not isinstance(n_bins, (int, np.integer)) or not 2 <= n_bins <= 65535:
            raise ValueError(
                f"The 'n_bins' parameter of Quantizer() must be an int in the range [2, 65535]. Got {n_bins!r} instead."
            )
        if not isinstance(n_components, (int, np.integer)) or n_components < 1:
            raise ValueError(
                f"The 'n_components' parameter of Quantizer() must be a positive int. Got {n_components!r} instead."
            )
        self.n_bins, self.n_components, self.normalize = int(n_bins), int(n_components), bool(normalize)
        self.random_state, self.n_init = random_state, int(n_init)
        self.fitted_ = False
        self._exp = 0  # the power of two that scales the fitted samples near 1 (see _prepare)

    def __repr__(self) -> str:
        return (
            f"Quantizer({self.strategy!r}, n_bins={self.n_bins}, n_components={self.n_components}, "
            f"normalize={self.normalize})"
        )

    def clone(self) -> Quantizer:
        """An unfitted copy with the same parameters."""
        return Quantizer(
            self.strategy,
            self.n_bins,
            n_components=self.n_components,
            normalize=self.normalize,
            random_state=self.random_state,
            n_init=self.n_init,
        )

    def _prepare(self, x: Any, caller: str, fit: bool = False) -> NDArray[np.float64]:
        """(N, D) float64 samples of ``x``, L2-normalised if asked; never changes the caller's array.

        Samples whose largest magnitude lies beyond 2**+-100 are first scaled by a power of two
        (exact: the codes are those of the scaled data), the one found in :meth:`fit`, or, when
        each sample is L2-normalised anyway, the one of ``x`` itself.
        """
        arr = as_samples(x, caller=caller)
        rows = self.normalize and arr.shape[1] > 1
        exp = _scale_exp(arr) if fit or rows else self._exp
        if fit:
            self._exp = exp
        if exp:
            arr = np.ldexp(arr, -exp)
        if rows:
            norm = np.linalg.norm(arr, axis=1, keepdims=True)
            arr = arr / np.where(norm > 0, norm, 1.0)  # a new array: the caller's data is never changed
        return arr

    def fit(self, x: Any) -> Quantizer:
        """Fit on reference representations (N, ...)."""
        decomposition = import_optional("sklearn.decomposition", purpose="Quantizer")
        arr = self._prepare(x, "Quantizer.fit()", fit=True)
        n, d = arr.shape
        if n < self.n_bins:
            raise ValueError(f"Quantizer.fit() needs at least n_bins={self.n_bins} samples; got {n}.")
        if self.strategy == "kmeans" and (distinct := np.unique(arr, axis=0).shape[0]) < self.n_bins:
            # Fewer distinct representations than codes (a dead layer, say): one code per distinct
            # value, which loses nothing, instead of k-means on duplicates.
            cluster = import_optional("sklearn.cluster", purpose="Quantizer")
            self.pca_ = None
            self.kmeans_ = cluster.KMeans(distinct, n_init=1, random_state=self.random_state).fit(arr)
            self.n_codes_ = distinct
        elif self.strategy == "kmeans":
            cluster = import_optional("sklearn.cluster", purpose="Quantizer")
            k = min(self.n_components, d, n)
            self.pca_ = decomposition.PCA(n_components=k, random_state=self.random_state).fit(arr) if d > k else None
            z = self.pca_.transform(arr) if self.pca_ is not None else arr
            self.kmeans_ = cluster.KMeans(self.n_bins, n_init=self.n_init, random_state=self.random_state).fit(z)
            self.n_codes_ = self.n_bins
        else:
            self.pca_ = decomposition.PCA(n_components=1, random_state=self.random_state).fit(arr) if d > 1 else None
            z = (self.pca_.transform(arr) if self.pca_ is not None else arr)[:, 0]
            if self.strategy == "uniform":
                lo, hi = float(z.min()), float(z.max())
                self.edges_ = np.linspace(lo, hi, self.n_bins + 1)[1:-1]
            else:
                self.edges_ = np.unique(np.quantile(z, np.linspace(0, 1, self.n_bins + 1)[1:-1]))
            self.n_codes_ = self.edges_.size + 1
        self.dim_ = d
        self.fitted_ = True
        return self

    def transform(self, x: Any) -> NDArray[np.int64]:
        """Codes in [0, n_codes_) of new representations with the fitted quantizer."""
        if not self.fitted_:
            raise RuntimeError("Quantizer.transform() called before fit(); call fit(x) or fit_transform(x) first.")
        arr = self._prepare(x, "Quantizer.transform()")
        if arr.shape[1] != self.dim_:
            raise ValueError(
                f"Quantizer.transform() got samples of dimension {arr.shape[1]}; it was fitted on {self.dim_}."
            )
        if self.strategy == "kmeans":
            z = self.pca_.transform(arr) if self.pca_ is not None else arr
            return self.kmeans_.predict(z).astype(np.int64)
        z = (self.pca_.transform(arr) if self.pca_ is not None else arr)[:, 0]
        return np.searchsorted(self.edges_, z, side="right").astype(np.int64)

    def fit_transform(self, x: Any) -> NDArray[np.int64]:
        return self.fit(x).transform(x)


def fresh_quantizer(template: Quantizer | None, n_bins: int = 10) -> Quantizer:
    """An unfitted copy of ``template``, or the RID paper's default (k-means to ``n_bins`` codes)."""
    return template.clone() if template is not None else Quantizer("kmeans", n_bins)


def quantize(x: Any, *, n_bins: int = 10, strategy: str = "kmeans", **kwargs: Any) -> NDArray[np.int64]:
    """Quantize representations (N, ...) into ``n_bins`` codes in one call (fit + transform).

    Examples
    --------
    >>> import numpy as np
    >>> quantize(np.arange(10.0), n_bins=2, strategy="quantile").tolist()
    [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
    """
    return Quantizer(strategy, n_bins, **kwargs).fit_transform(x)


def _rows(x: Any, sel: slice | NDArray[np.int64]) -> Any:
    """Rows ``sel`` of an array, a torch tensor, an NpyArray or a Zarr array (orthogonal selection)."""
    if not isinstance(sel, slice) and hasattr(x, "oindex"):  # zarr: x[list] means something else
        return x.oindex[sel]
    return x[sel]


def fit_rows(n: int, row_size: int, fit_samples: int = FIT_SAMPLES, seed: int = 0) -> slice | NDArray[np.int64]:
    """The rows :func:`quantize_in_chunks` fits on: all ``n`` when few enough, else a seeded random sorted subset.

    Parameters
    ----------
    n : int
        Rows of the array.
    row_size : int
        Values per row (features).
    fit_samples : int, default 20,000
        At most this many rows; for wide rows also at most ``2**23 / row_size`` (so that the
        fitting copy stays near 64 MB: 6,553 rows of 1,280 features), but never fewer than 1,000.
    seed : int, default 0
        Seed of the subset.

    Returns
    -------
    slice or ndarray
        ``slice(0, n)`` when every row is used, else the sorted row indices.
    """
    m = min(n, fit_samples, max(_MIN_FIT_ROWS, _FIT_VALUES // max(row_size, 1)))
    if m >= n:
        return slice(0, n)
    return np.sort(np.random.default_rng(seed).choice(n, size=m, replace=False))


def quantize_in_chunks(
    x: Any, quantizer: Quantizer | None = None, *, fit_samples: int = FIT_SAMPLES
) -> NDArray[np.int64]:
    """Codes of every row of ``x``: a clone of ``quantizer`` fitted on at most ``fit_samples`` rows, then applied
    chunk by chunk.

    The fit uses the rows of :func:`fit_rows`: all of them when there are at most ``fit_samples``
    rows and at most 2**23 values, as :meth:`Quantizer.fit_transform` does; else a random subset
    seeded by the quantizer's ``random_state`` (fewer rows for wide layers). The rows are then
    coded about 4 million values at a time, so memory stays near that of the fitting copy
    whatever N is.

    Parameters
    ----------
    x : array-like of shape (N, ...)
        May be larger than memory: a numpy array, a torch tensor, a memory map, an
        :class:`~pidkd.estimators.activations.NpyArray` or a Zarr array.
    quantizer : Quantizer, optional
        Template (cloned, never fitted itself); default: k-means to 10 codes.
    fit_samples : int, default 20,000
        See :func:`fit_rows`.

    Returns
    -------
    ndarray of int64, shape (N,)
        The codes.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(500, 3))
    >>> q = Quantizer("quantile", 4)
    >>> bool((quantize_in_chunks(x, q) == q.clone().fit_transform(x)).all())
    True
    """
    q = fresh_quantizer(quantizer)
    shape = tuple(x.shape)
    if len(shape) == 0 or shape[0] == 0:
        raise ValueError(f"quantize_in_chunks() expects at least one sample (axis 0); got shape {shape}.")
    n, row_size = shape[0], int(np.prod(shape[1:], dtype=np.int64))
    q.fit(_rows(x, fit_rows(n, row_size, fit_samples, q.random_state)))
    step = max(1, _CHUNK_VALUES // max(row_size, 1))
    return np.concatenate([q.transform(_rows(x, slice(i, min(i + step, n)))) for i in range(0, n, step)])
