"""Input checks. Every message a user sees about bad input is built in this module.

Messages follow one template: which function, which argument, what was expected, what was
received, and what to do next.
"""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pidkd._optional import loaded_module

__all__ = [
    "PMF_SUM_TOL",
    "as_joint_pmf",
    "as_pmf",
    "is_sparse_input",
    "check_base",
    "check_bool",
    "check_choice",
    "check_int",
    "check_number",
    "check_positive",
    "user_stacklevel",
]

#: A float64 pmf passed with ``counts=False`` must sum to 1 within this absolute tolerance. Within
#: it, the array is divided by its sum (a round-off correction, never a silent renormalisation).
#: A pmf of lower precision (float32, float16, bfloat16) sums to 1 only within a few round-offs of
#: its dtype: it gets ``4 eps(dtype) + 2 size * smallest_subnormal(dtype)`` when that is larger.
PMF_SUM_TOL = 1e-9


def user_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning raised by the calling function point at user code.

    Counts the frames of pidkd's own modules above the caller, however deep the call came in.
    """
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("pidkd."):
        frame, level = frame.f_back, level + 1
    return level


def _param_error(caller: str, name: str, expected: str, value: Any) -> ValueError:
    return ValueError(f"The {name!r} parameter of {caller} must be {expected}. Got {value!r} instead.")


def check_choice(value: Any, options: Sequence[str], *, name: str, caller: str) -> str:
    """Return ``value`` lower-cased if it is one of ``options``, else raise ``ValueError``."""
    if not isinstance(value, str) or value.lower() not in options:
        raise _param_error(caller, name, f"one of {sorted(options)}", value)
    return value.lower()


def check_positive(value: Any, *, name: str, caller: str) -> float:
    """Return ``value`` as a float if it is finite and > 0, else raise ``ValueError``."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise _param_error(caller, name, "a positive finite number", value) from None
    if not (math.isfinite(out) and out > 0):
        raise _param_error(caller, name, "a positive finite number", value)
    return out


def check_base(base: Any, *, caller: str) -> float:
    """Return the logarithm base as a float: a finite number > 1 (e.g. 2 or ``np.e``).

    A base in (0, 1) has a negative logarithm and would turn every information into a negative
    number, so it is rejected with the base 1.
    """
    out = check_positive(base, name="base", caller=caller)
    if out <= 1.0:
        raise _param_error(caller, "base", "a logarithm base > 1, e.g. 2 (bits) or np.e (nats)", base)
    return out


def check_bool(value: Any, *, name: str, caller: str, optional: bool = False) -> bool | None:
    """``value`` if it is a real bool (``"false"`` or ``"no"`` are not; ``None`` too with ``optional``), else
    ``TypeError``."""
    if value is None and optional:
        return None
    if not isinstance(value, (bool, np.bool_)):
        expected = "a bool (True or False)" + (" or None" if optional else "")
        raise TypeError(_param_error(caller, name, expected, value).args[0])
    return bool(value)


def check_int(value: Any, *, name: str, caller: str, minimum: int = 1, optional: bool = False) -> int | None:
    """``value`` as an int >= ``minimum`` (``None`` too with ``optional``).

    Bools, floats and strings are refused (``TypeError``), never rounded or replaced by a default;
    an int below ``minimum`` is a ``ValueError``.
    """
    if value is None and optional:
        return None
    expected = {0: "a non-negative int", 1: "a positive int"}.get(minimum, f"an int >= {minimum}")
    expected += " or None" if optional else ""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(_param_error(caller, name, expected, value).args[0])
    if value < minimum:
        raise _param_error(caller, name, expected, value)
    return int(value)


#: kind of number -> (what the message says, the test), for :func:`check_number`
_NUMBERS = {
    "positive": ("a positive number", lambda v: v > 0),
    "non-negative": ("a non-negative number", lambda v: v >= 0),
    "fraction": ("a number in (0, 1)", lambda v: 0 < v < 1),
    "probability": ("a number in [0, 1]", lambda v: 0 <= v <= 1),
}


def check_number(value: Any, *, name: str, caller: str, kind: str = "positive", optional: bool = False) -> float | None:
    """``value`` as a finite float of ``kind`` (a key of ``_NUMBERS``; ``None`` too with ``optional``).

    Strings and bools are refused (``TypeError``); a number out of range is a ``ValueError``.
    """
    if value is None and optional:
        return None
    expected, ok = _NUMBERS[kind]
    expected += " or None" if optional else ""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(_param_error(caller, name, expected, value).args[0])
    if not (math.isfinite(value) and ok(value)):
        raise _param_error(caller, name, expected, value)
    return float(value)


def _dit_cells(d: Any, variables: Sequence[int] | None, arg: str, caller: str) -> tuple[Any, Any, Any]:
    """(shape, (y, t, s) coordinates, probabilities) of a ``dit.Distribution`` with axes ordered (Y, T, S)."""
    n_vars = d.outcome_length()
    if variables is None:
        if n_vars != 3:
            raise ValueError(
                f"{caller} got a dit.Distribution `{arg}` with {n_vars} variables; without `variables` "
                "it expects exactly 3 (dit's PID order: source T, source S, target Y). Pass "
                "variables=(y, t, s) with the indices of the target and the two sources."
            )
        variables = (2, 0, 1)
    variables = tuple(int(v) for v in variables)
    if len(variables) != 3 or len(set(variables)) != 3 or not all(0 <= v < n_vars for v in variables):
        raise ValueError(
            f"The 'variables' parameter of {caller} must be three distinct variable indices "
            f"(y, t, s) in [0, {n_vars}). Got {variables!r} instead."
        )
    d = d.copy(base="linear")
    alphabets = [sorted({o[v] for o in d.outcomes}, key=repr) for v in variables]
    index = [{sym: i for i, sym in enumerate(alpha)} for alpha in alphabets]
    coords = np.array(
        [[index[k][outcome[v]] for k, v in enumerate(variables)] for outcome in d.outcomes], dtype=np.int64
    ).reshape(-1, 3)
    shape = tuple(len(a) for a in alphabets)
    # outcomes that differ in other variables fall on the same (y, t, s) cell: their masses add up
    key, inverse = np.unique(np.ravel_multi_index(coords.T, shape), return_inverse=True)
    pmf = np.bincount(inverse.reshape(-1), weights=np.asarray(d.pmf, dtype=np.float64), minlength=key.size)
    return shape, np.unravel_index(key, shape), pmf


def _dit_to_array(d: Any, variables: Sequence[int] | None, arg: str, caller: str) -> NDArray[np.float64]:
    """Dense array of a ``dit.Distribution`` with axes ordered (Y, T, S)."""
    shape, coords, pmf = _dit_cells(d, variables, arg, caller)
    out = np.zeros(shape)
    out[coords] = pmf
    return out


def _sum_tol(eps: float, tiny: float, size: int) -> float:
    """Tolerance on the sum of a pmf stored at a precision of machine epsilon ``eps`` (0: float64).

    Rounding each entry to nearest moves it by at most eps/2 of itself, or by half the smallest
    subnormal ``tiny`` below the normal range, so the stored entries of a pmf that summed to 1
    sum to within eps/2 + size * tiny / 2 of 1. Four times that leaves room for a total that the
    user also computed at that precision (``x / x.sum()``), and no more: a bfloat16 pmf summing to
    1.10 or a float16 one summing to 1.01 is refused.
    """
    return max(PMF_SUM_TOL, 4.0 * eps + 2.0 * size * tiny)


def _to_numpy(p: Any, arg: str, caller: str, variables: Sequence[int] | None) -> tuple[NDArray[Any], float]:
    """The supported containers as a float64 array, and the tolerance on its sum as a pmf.

    Optional packages are never imported here. The tolerance (:func:`_sum_tol`; 0 for float64
    and integer input, meaning :data:`PMF_SUM_TOL`) is wider for lower precisions. Complex input
    is refused (a cast to float would drop the imaginary part).
    """
    dit = loaded_module("dit")
    if dit is not None and isinstance(p, dit.Distribution):
        return _dit_to_array(p, variables, arg, caller), 0.0
    if variables is not None:
        raise ValueError(
            f"The 'variables' parameter of {caller} selects (Y, T, S) in a dit.Distribution; `{arg}` is a "
            f"{type(p).__name__}. Remove `variables` and order the axes of the array as p[y, t, s] (np.moveaxis)."
        )
    torch = loaded_module("torch")
    if torch is not None and isinstance(p, torch.Tensor):
        if p.is_complex():
            raise _complex_error(arg, caller, str(p.dtype))
        low = p.is_floating_point() and p.element_size() < 8
        info = torch.finfo(p.dtype) if low else None
        tol = _sum_tol(float(info.eps), float(info.smallest_normal) * float(info.eps), p.numel()) if low else 0.0
        return p.detach().to("cpu", dtype=torch.float64).numpy(), tol
    if isinstance(p, (str, bytes)) or p is None:
        raise TypeError(
            f"{caller} expects `{arg}` to be an array-like joint pmf or count array p[y, t, s], a "
            f"dit.Distribution or a torch tensor; got {type(p).__name__}. Build an array with "
            "numpy, or count samples with np.histogramdd."
        )
    try:
        src = np.asarray(p)
        arr = None if src.dtype.kind == "c" else np.asarray(src, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{caller} expects `{arg}` to be a numeric array p[y, t, s]; could not convert a "
            f"{type(p).__name__} to float64 ({exc})."
        ) from None
    if arr is None:
        raise _complex_error(arg, caller, str(src.dtype))
    low = src.dtype.kind == "f" and src.dtype.itemsize < 8
    info = np.finfo(src.dtype) if low else None
    return arr, _sum_tol(float(info.eps), float(info.smallest_subnormal), arr.size) if low else 0.0


def _complex_error(arg: str, caller: str, dtype: str) -> TypeError:
    return TypeError(
        f"{caller} expects `{arg}` to hold real probabilities or counts; got complex values ({dtype}). "
        f"Pass the real part explicitly (np.real) if the imaginary part is zero by construction."
    )


def is_sparse_input(p: Any) -> bool:
    """Whether ``p`` is a sparse joint distribution: a :class:`~pidkd.estimators.sparse.SparseJoint`, a
    scipy sparse array or matrix, a pydata ``sparse`` array (if the user imported it) or a mapping
    ``{(y, t, s): p}``. Never imports an optional package."""
    mod = loaded_module("pidkd.estimators.sparse")
    if mod is not None and isinstance(p, mod.SparseJoint):
        return True
    scipy_sparse = loaded_module("scipy.sparse")
    if scipy_sparse is not None and scipy_sparse.issparse(p):
        return True
    pydata = loaded_module("sparse")
    if pydata is not None and isinstance(p, getattr(pydata, "SparseArray", ())):
        return True
    return isinstance(p, Mapping)


def _sparse_cells(p: Any, arg: str, caller: str) -> tuple[tuple[int, ...], list[Any], Any]:
    """(shape, coordinate arrays, values) of a sparse input, before any check of their content."""
    mod = loaded_module("pidkd.estimators.sparse")
    if mod is not None and isinstance(p, mod.SparseJoint):
        return p.shape, [p.y, p.t, p.s], p.p
    scipy_sparse = loaded_module("scipy.sparse")
    if scipy_sparse is not None and scipy_sparse.issparse(p):
        coo = p if p.format == "coo" else p.tocoo()
        coords = list(coo.coords) if hasattr(coo, "coords") else [coo.row, coo.col]
        return tuple(coo.shape), coords, coo.data
    if isinstance(p, Mapping):
        keys = list(p.keys())
        bad = next((k for k in keys if not (isinstance(k, tuple) and len(k) == 3)), None)
        if bad is not None:
            raise ValueError(
                f"{caller} expects the keys of the mapping `{arg}` to be (y, t, s) tuples of three integer codes; "
                f"got the key {bad!r}. Write the joint pmf as {{(y, t, s): p}}."
            )
        try:
            coords = np.array(keys, dtype=np.int64).reshape(-1, 3) if keys else np.zeros((0, 3), dtype=np.int64)
            if keys and not np.array_equal(coords, np.array(keys, dtype=object).astype(float)):
                raise TypeError
        except (TypeError, ValueError):
            raise TypeError(
                f"{caller} expects the keys of the mapping `{arg}` to be (y, t, s) tuples of integer codes; got "
                f"e.g. {keys[0]!r}. Map the symbols to codes 0..n-1 first."
            ) from None
        if keys and coords.min() < 0:
            raise ValueError(
                f"{caller} expects the codes in the keys of `{arg}` to be >= 0; got the key "
                f"{tuple(int(c) for c in coords[coords.min(1).argmin()])}."
            )
        shape = tuple(int(n) for n in coords.max(axis=0) + 1) if keys else (0, 0, 0)
        try:
            values = np.array(list(p.values()), dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{caller} expects the values of the mapping `{arg}` to be numbers.") from None
        return shape, list(coords.T), values
    # pydata sparse: COO has coordinates; its other formats (GCXS, DOK) convert to it
    coo = p if hasattr(p, "coords") else p.asformat("coo")
    return tuple(coo.shape), list(np.asarray(coo.coords)), np.asarray(coo.data)


def as_sparse_joint(
    p: Any, *, counts: bool = False, variables: Sequence[int] | None = None, arg: str = "p", caller: str = "pid()"
) -> Any:
    """Validate a sparse joint distribution (see :func:`is_sparse_input`, or a ``dit.Distribution``) and
    return it as a :class:`~pidkd.estimators.sparse.SparseJoint`, never building the dense array.

    Refused with one message each: a number of dimensions other than 3, coordinates outside the shape,
    duplicate coordinates, NaN or infinite values, negative values, no mass, and (without ``counts``)
    a sum other than 1.

    Examples
    --------
    >>> as_sparse_joint({(0, 0, 0): 2, (1, 1, 1): 2}, counts=True)
    SparseJoint(shape=(2, 2, 2), nnz=2)
    """
    from pidkd.estimators.sparse import SparseJoint

    dit = loaded_module("dit")
    if dit is not None and isinstance(p, dit.Distribution):
        shape, coords, values = _dit_cells(p, variables, arg, caller)
        coords = list(coords)
    else:
        if variables is not None:
            raise ValueError(
                f"The 'variables' parameter of {caller} selects (Y, T, S) in a dit.Distribution; `{arg}` is a "
                f"{type(p).__name__}. Remove `variables`."
            )
        shape, coords, values = _sparse_cells(p, arg, caller)
    if len(shape) != 3:
        raise ValueError(
            f"{caller} expects the sparse `{arg}` to be 3-d, p[y, t, s] (axis 0 the label Y, axis 1 the teacher T, "
            f"axis 2 the student S); got ndim={len(shape)} with shape {shape}. Give three coordinates per cell."
        )
    y, t, s = (np.asarray(c, dtype=np.int64).reshape(-1) for c in coords)
    values = np.asarray(values)
    if values.dtype.kind == "c":
        raise _complex_error(arg, caller, str(values.dtype))
    values = values.astype(np.float64).reshape(-1)
    if 0 in shape or values.size == 0:
        raise ValueError(
            f"{caller} expects the sparse `{arg}` to have at least one cell with positive mass; got none "
            f"(shape {shape}). There is nothing to decompose: check how it was built."
        )
    for name, c, n in (("y", y, shape[0]), ("t", t, shape[1]), ("s", s, shape[2])):
        out = (c < 0) | (c >= n)
        if out.any():
            k = int(np.argmax(out))
            raise ValueError(
                f"{caller} expects the coordinates of the sparse `{arg}` to lie inside its shape {shape}; got "
                f"{int(out.sum())} outside (e.g. {name}={int(c[k])} at cell {(int(y[k]), int(t[k]), int(s[k]))}). "
                "Enlarge the shape or fix the codes."
            )
    order = np.lexsort((s, t, y))
    y, t, s, values = y[order], t[order], s[order], values[order]
    dup = (np.diff(y) == 0) & (np.diff(t) == 0) & (np.diff(s) == 0)
    if dup.any():
        k = int(np.argmax(dup))
        raise ValueError(
            f"{caller} expects each cell of the sparse `{arg}` once; got {int(dup.sum())} duplicate coordinates "
            f"(e.g. {(int(y[k]), int(t[k]), int(s[k]))}). Sum duplicates first (coo_array.sum_duplicates())."
        )
    if not np.all(np.isfinite(values)):
        k = int(np.argmax(~np.isfinite(values)))
        raise ValueError(
            f"{caller} expects `{arg}` to hold finite numbers; got {int(np.count_nonzero(~np.isfinite(values)))} NaN "
            f"or infinite value(s) (first at cell {(int(y[k]), int(t[k]), int(s[k]))}). Remove or impute them."
        )
    if np.any(values < 0):
        k = int(np.argmax(values < 0))
        raise ValueError(
            f"{caller} expects `{arg}` to be non-negative; got {int(np.count_nonzero(values < 0))} negative values "
            f"(e.g. {values[k]:.3g} at cell {(int(y[k]), int(t[k]), int(s[k]))}). Probabilities and counts cannot be "
            "negative."
        )
    top = float(values.max())
    if top <= 0:
        raise ValueError(
            f"{caller} expects the sparse `{arg}` to have positive total mass; got only zeros. There is nothing to "
            "decompose: check how it was built."
        )
    if counts:
        values = values / top
        values = values / values.sum()
    else:
        total = float(values.sum())
        if not abs(total - 1.0) <= PMF_SUM_TOL:
            raise ValueError(
                f"{caller} expects `{arg}` to be a joint pmf over (y, t, s) that sums to 1; got sum={total:.10g} "
                f"(tolerance {PMF_SUM_TOL:g}). If `{arg}` holds counts, pass counts=True."
            )
        values = values / total
    keep = values > 0
    return SparseJoint(tuple(int(n) for n in shape), y[keep], t[keep], s[keep], values[keep])  # type: ignore[arg-type]


def as_joint_pmf(
    p: Any,
    *,
    counts: bool = False,
    variables: Sequence[int] | None = None,
    arg: str = "p",
    caller: str = "pid()",
    sparse: bool = False,
) -> Any:
    """Validate a joint distribution over (Y, T, S) and return it as a float64 pmf array.

    Sparse input (see :func:`is_sparse_input`) is validated by :func:`as_sparse_joint`; with ``sparse=True``
    it is returned as a :class:`~pidkd.estimators.sparse.SparseJoint` (a ``dit.Distribution`` too), else
    as the dense array.

    Parameters
    ----------
    p : array_like, dit.Distribution or torch.Tensor
        Joint pmf ``p[y, t, s]`` summing to 1, or counts (with ``counts=True``).
    counts : bool, default False
        Treat ``p`` as non-negative counts (or weights) and divide by their total.
    variables : sequence of int, optional
        For a ``dit.Distribution``: indices of (Y, T, S). Default: (2, 0, 1), dit's PID order
        (sources first, target last).
    arg, caller : str
        Argument and function names used in error messages.

    Returns
    -------
    numpy.ndarray of float64, shape (n_y, n_t, n_s)
        A validated pmf: finite, non-negative, summing to 1.

    Examples
    --------
    >>> as_joint_pmf([[[2, 0], [0, 2]]], counts=True).tolist()
    [[[0.5, 0.0], [0.0, 0.5]]]
    """
    dit = loaded_module("dit")
    if is_sparse_input(p) or (sparse and dit is not None and isinstance(p, dit.Distribution)):
        sp = as_sparse_joint(p, counts=counts, variables=variables, arg=arg, caller=caller)
        return sp if sparse else sp.todense()
    arr, tol = _to_numpy(p, arg, caller, variables)
    if arr.ndim != 3:
        raise ValueError(
            f"{caller} expects `{arg}` to be a 3-d array p[y, t, s] (axis 0 the label Y, axis 1 "
            f"the teacher T, axis 2 the student S); got ndim={arr.ndim} with shape {arr.shape}. "
            "Reshape it, e.g. flatten multi-dimensional representations into one code per sample."
        )
    return _check_mass(arr, counts=counts, arg=arg, caller=caller, tol=tol)


def as_pmf(p: Any, *, arg: str = "p", caller: str) -> NDArray[np.float64]:
    """Validate a pmf array of any number of axes (finite, non-negative, sums to 1).

    Examples
    --------
    >>> as_pmf([0.25, 0.75], caller="entropy()").tolist()
    [0.25, 0.75]
    """
    arr, tol = _to_numpy(p, arg, caller, None)
    if arr.ndim == 0:
        raise ValueError(f"{caller} expects `{arg}` to be an array of probabilities; got a scalar. Pass an array.")
    return _check_mass(arr, counts=False, arg=arg, caller=caller, tol=tol)


def _check_mass(
    arr: NDArray[np.float64], *, counts: bool, arg: str, caller: str, tol: float = 0.0
) -> NDArray[np.float64]:
    if 0 in arr.shape:
        raise ValueError(
            f"{caller} expects every axis of `{arg}` to have at least one symbol; got shape "
            f"{arr.shape}. Check that the label, teacher and student codes are not empty."
        )
    if not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        first = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise ValueError(
            f"{caller} expects `{arg}` to hold finite numbers; got {bad} NaN or infinite "
            f"entr{'y' if bad == 1 else 'ies'} (first at index {first}). "
            "Remove or impute them before computing the PID."
        )
    if np.any(arr < 0):
        idx = tuple(int(i) for i in np.argwhere(arr < 0)[0])
        raise ValueError(
            f"{caller} expects `{arg}` to be non-negative; got {int(np.count_nonzero(arr < 0))} "
            f"negative entries (e.g. {arr[idx]:.3g} at index {idx}). Probabilities and counts "
            "cannot be negative."
        )
    top = float(arr.max())
    if top <= 0:
        raise ValueError(
            f"{caller} expects `{arg}` to have positive total mass; got an all-zero array of shape "
            f"{arr.shape}. There is nothing to decompose: check how the array was built."
        )
    if counts:
        # Scale by the largest entry first: a sum of huge (or subnormal) weights could overflow
        # to inf (or lose precision) where the normalised pmf is perfectly representable.
        scaled = arr / top
        return scaled / scaled.sum()
    total = float(arr.sum())
    tol = max(tol, PMF_SUM_TOL)
    if not abs(total - 1.0) <= tol:
        raise ValueError(
            f"{caller} expects `{arg}` to be a joint pmf over (y, t, s) that sums to 1; got "
            f"sum={total:.10g} (tolerance {tol:g} for its precision). If `{arg}` holds counts, pass "
            "counts=True (or divide by the total yourself)."
        )
    return arr / total
