"""Shannon information of pmf arrays: entropy, conditional entropy, (conditional) mutual information.

All functions take probability arrays (validated: finite, non-negative, summing to 1) and use the
convention ``0 log 0 = 0`` exactly: zero cells are skipped, never fed to ``log``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pidkd._validation import as_pmf, check_base

__all__ = [
    "conditional_entropy",
    "conditional_mutual_information",
    "entropy",
    "mutual_information",
]


def _h(p: NDArray[np.float64]) -> float:
    """Entropy in nats of the flattened, already validated array ``p`` (0 log 0 = 0)."""
    nz = p[p > 0]
    return float(-np.dot(nz, np.log(nz)))


def _marginal(p: NDArray[np.float64], keep: Iterable[int]) -> NDArray[np.float64]:
    keep = set(keep)
    drop = tuple(ax for ax in range(p.ndim) if ax not in keep)
    return p.sum(axis=drop) if drop else p


def _axes(axes: int | Iterable[int], ndim: int, name: str, caller: str) -> tuple[int, ...]:
    out = (axes,) if isinstance(axes, (int, np.integer)) else tuple(axes)
    if not all(isinstance(a, (int, np.integer)) and -ndim <= a < ndim for a in out):
        raise ValueError(
            f"The {name!r} parameter of {caller} must be axis indices of a {ndim}-d array. Got {axes!r} instead."
        )
    return tuple(int(a) % ndim for a in out)


def entropy(p: ArrayLike, *, base: float = 2.0) -> float:
    """Joint entropy of all axes of a pmf array.

    .. math:: H(X) = -\\sum_x p(x) \\log p(x)

    Parameters
    ----------
    p : array_like
        Probabilities (any shape), summing to 1.
    base : float, default 2
        Logarithm base: 2 for bits, ``np.e`` for nats.

    Returns
    -------
    float

    Examples
    --------
    >>> entropy([0.5, 0.5, 0.0])
    1.0
    """
    b = check_base(base, caller="entropy()")
    return float(_h(as_pmf(p, caller="entropy()")) / np.log(b))


def conditional_entropy(p: ArrayLike, *, given: int | Iterable[int], base: float = 2.0) -> float:
    """Entropy of the axes not in ``given`` conditioned on the axes in ``given``.

    .. math:: H(X \\mid Z) = H(X, Z) - H(Z)

    Parameters
    ----------
    p : array_like
        Joint pmf, one axis per variable.
    given : int or iterable of int
        Axes of the conditioning variables.
    base : float, default 2

    Examples
    --------
    >>> p = [[0.25, 0.25], [0.5, 0.0]]   # p[x, z]
    >>> round(conditional_entropy(p, given=1), 6)
    0.688722
    """
    caller = "conditional_entropy()"
    b = check_base(base, caller=caller)
    arr = as_pmf(p, caller=caller)
    z = _axes(given, arr.ndim, "given", caller)
    return float((_h(arr) - _h(_marginal(arr, z))) / np.log(b))


def mutual_information(p: ArrayLike, *, base: float = 2.0) -> float:
    """Mutual information I(X; Y) of a 2-d joint pmf ``p[x, y]``.

    .. math:: I(X;Y) = H(X) + H(Y) - H(X, Y)

    Examples
    --------
    >>> mutual_information([[0.5, 0.0], [0.0, 0.5]])
    1.0
    """
    caller = "mutual_information()"
    b = check_base(base, caller=caller)
    arr = as_pmf(p, caller=caller)
    if arr.ndim != 2:
        raise ValueError(
            f"{caller} expects `p` to be a 2-d joint pmf p[x, y]; got shape {arr.shape}. "
            "Sum out the other axes first, e.g. p.sum(axis=2)."
        )
    return float(max(_mi(arr), 0.0) / np.log(b))


def conditional_mutual_information(p: ArrayLike, *, base: float = 2.0) -> float:
    """Conditional mutual information I(X; Y | Z) of a 3-d joint pmf ``p[x, y, z]``.

    .. math:: I(X;Y \\mid Z) = H(X,Z) + H(Y,Z) - H(X,Y,Z) - H(Z)

    Examples
    --------
    >>> import numpy as np
    >>> p = np.zeros((2, 2, 2))
    >>> for t in (0, 1):
    ...     for s in (0, 1):
    ...         p[t ^ s, t, s] = 0.25           # X = Y xor Z
    >>> conditional_mutual_information(p)
    1.0
    """
    caller = "conditional_mutual_information()"
    b = check_base(base, caller=caller)
    arr = as_pmf(p, caller=caller)
    if arr.ndim != 3:
        raise ValueError(f"{caller} expects `p` to be a 3-d joint pmf p[x, y, z]; got shape {arr.shape}.")
    return float(max(_cmi(arr), 0.0) / np.log(b))


def _mi(p: NDArray[np.float64]) -> float:
    """I(axis 0; axis 1) in nats of a validated 2-d pmf."""
    return _h(p.sum(axis=1)) + _h(p.sum(axis=0)) - _h(p)


def _cmi(p: NDArray[np.float64]) -> float:
    """I(axis 0; axis 1 | axis 2) in nats of a validated 3-d pmf."""
    return _h(p.sum(axis=1)) + _h(p.sum(axis=0)) - _h(p) - _h(p.sum(axis=(0, 1)))
