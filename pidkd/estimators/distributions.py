"""Named reference distributions of the PID literature, with their known BROJA values.

Every constructor returns a pmf ``p[y, t, s]`` (Y the target, T and S the two sources). The table
:data:`REFERENCE` gives each distribution's BROJA atoms in bits and where the value comes from, so
users can sanity-check any PID tool (and pidkd's tests check pidkd against it to 1e-6 bits).

Sources
-------
- [BROJA] Bertschinger, Rauh, Olbrich, Jost, Ay, "Quantifying unique information",
  Entropy 16 (2014), arXiv:1311.2852.
- [GK] Griffith, Koch, "Quantifying synergistic mutual information", in Guided
  Self-Organization: Inception (2014), arXiv:1205.4265.
- [HJ] Harder, Salge, Polani, "Bivariate measure of redundant information", Phys. Rev. E 87
  (2013), arXiv:1207.2080.
- [dit] James, Ellison, Crutchfield, "dit: a Python package for discrete information theory",
  JOSS 3 (2018); values in its test suite ``tests/pid/test_ibroja.py``.
- [closed form] Values derived in the docstring of the constructor from the BROJA
  properties: Red <= min(I(Y;T), I(Y;S)); if S is a garbling of T (Y - T - S) then
  Uni(Y:S\\T) = 0; if T and S are independent and Y = (T, S) then Red = 0.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "REFERENCE",
    "Reference",
    "and_",
    "copy",
    "diff",
    "get",
    "imperfect_rdn",
    "rdn",
    "rdn_unq_xor",
    "rdn_xor",
    "reduced_or",
    "sum_",
    "unq",
    "xor",
    "xor_and",
]


def _from_outcomes(outcomes: Iterable[tuple[int, int, int, float]]) -> NDArray[np.float64]:
    """Dense pmf from (y, t, s, probability) tuples with integer symbols."""
    rows = list(outcomes)
    shape = tuple(1 + max(r[k] for r in rows) for k in range(3))
    p = np.zeros(shape)
    for y, t, s, prob in rows:
        p[y, t, s] += prob
    return p


def _bits(n: int) -> Iterable[tuple[int, ...]]:
    return itertools.product((0, 1), repeat=n)


def rdn() -> NDArray[np.float64]:
    """RDN: Y = T = S, one fair bit. Red = 1 bit."""
    return _from_outcomes((b, b, b, 0.5) for b in (0, 1))


def unq() -> NDArray[np.float64]:
    """UNQ: Y = T, with T and S independent fair bits. Uni(Y:T\\S) = 1 bit."""
    return _from_outcomes((t, t, s, 0.25) for t, s in _bits(2))


def xor() -> NDArray[np.float64]:
    """XOR: Y = T xor S, T and S independent fair bits. Syn = 1 bit."""
    return _from_outcomes((t ^ s, t, s, 0.25) for t, s in _bits(2))


def and_() -> NDArray[np.float64]:
    """AND: Y = T and S. Red = h(1/4) - 1/2 = 0.311278 bit, Syn = 1/2 bit."""
    return _from_outcomes((t & s, t, s, 0.25) for t, s in _bits(2))


def copy() -> NDArray[np.float64]:
    """COPY: Y = (T, S), T and S independent fair bits. Uni = 1 bit each, Red = 0 (BROJA)."""
    return _from_outcomes((2 * t + s, t, s, 0.25) for t, s in _bits(2))


def sum_() -> NDArray[np.float64]:
    """SUM: Y = T + S of two independent fair bits. Red = 1/2 bit, Syn = 1 bit."""
    return _from_outcomes((t + s, t, s, 0.25) for t, s in _bits(2))


def xor_and() -> NDArray[np.float64]:
    """XorAnd: Y = (T xor S, T and S) of two fair bits; a relabelling of SUM. Red = 1/2, Syn = 1."""
    return _from_outcomes((2 * (t ^ s) + (t & s), t, s, 0.25) for t, s in _bits(2))


def reduced_or() -> NDArray[np.float64]:
    """Reduced OR: (T, S) in {(0,0): 1/2, (0,1): 1/4, (1,0): 1/4}, Y = T or S.

    Red = h(1/4) - 1/2 = 0.311278 bit, Syn = 1.5 - h(1/4) = 0.688722 bit.
    """
    return _from_outcomes([(0, 0, 0, 0.5), (1, 0, 1, 0.25), (1, 1, 0, 0.25)])


def rdn_xor() -> NDArray[np.float64]:
    """RdnXor: T = (r, a), S = (r, b), Y = (r, a xor b), r, a, b fair bits. Red = Syn = 1 bit."""
    return _from_outcomes((2 * r + (a ^ b), 2 * r + a, 2 * r + b, 0.125) for r, a, b in _bits(3))


def rdn_unq_xor() -> NDArray[np.float64]:
    """RdnUnqXor: T = (r, a, c), S = (r, b, d), Y = (r, a, b, c xor d), five fair bits.

    Each atom is 1 bit.
    """
    return _from_outcomes(
        (8 * r + 4 * a + 2 * b + (c ^ d), 4 * r + 2 * a + c, 4 * r + 2 * b + d, 1 / 32) for r, a, b, c, d in _bits(5)
    )


def imperfect_rdn() -> NDArray[np.float64]:
    """ImperfectRdn: Y = T, a fair bit; S = T except that (T, S) = (0, 1) with probability 0.001.

    Outcomes (y, t, s): (0, 0, 0) 0.499, (0, 0, 1) 0.001, (1, 1, 1) 0.5. S is a garbling of T = Y,
    so Uni(Y:S\\T) = 0, Red = I(Y;S) = 0.989588 bit and Uni(Y:T\\S) = 1 - I(Y;S) = 0.010412 bit.
    """
    return _from_outcomes([(0, 0, 0, 0.499), (0, 0, 1, 0.001), (1, 1, 1, 0.5)])


def diff() -> NDArray[np.float64]:
    """Diff (dit's ``diff``): uniform over (t, s, y) in {000, 001, 010, 101}.

    Red = h(1/4) - 3/4 h(1/3) = 0.122556, Uni = 1 - h(1/4) = 0.188722 each, Syn = 0 (BROJA
    values from dit's test suite, to 6 decimals; the closed forms match them).
    """
    return _from_outcomes((y, t, s, 0.25) for t, s, y in [(0, 0, 0), (0, 0, 1), (0, 1, 0), (1, 0, 1)])


def _h2(x: float) -> float:
    return float(-x * np.log2(x) - (1 - x) * np.log2(1 - x))


@dataclass(frozen=True)
class Reference:
    """A named distribution with its BROJA atoms in bits and the source of the values."""

    name: str
    make: Callable[[], NDArray[np.float64]]
    red: float
    uni_t: float
    uni_s: float
    syn: float
    source: str


_I_S_IMPERFECT = 1.0 - (0.501 * _h2(0.5 / 0.501))  # I(Y;S) = H(Y) - H(Y|S), H(Y|S=0) = 0

#: The reference table, keyed by lower-case name.
REFERENCE: dict[str, Reference] = {
    r.name: r
    for r in [
        Reference("rdn", rdn, 1.0, 0.0, 0.0, 0.0, "[BROJA] Example RDN; [GK]"),
        Reference("unq", unq, 0.0, 1.0, 0.0, 0.0, "[BROJA] Example UNQ; [GK]"),
        Reference("xor", xor, 0.0, 0.0, 0.0, 1.0, "[BROJA] Example XOR; [GK]"),
        Reference("and", and_, _h2(0.25) - 0.5, 0.0, 0.0, 0.5, "[BROJA] Example AND; [dit]"),
        Reference("copy", copy, 0.0, 1.0, 1.0, 0.0, "[BROJA] Example COPY; [dit] 'cat'"),
        Reference("sum", sum_, 0.5, 0.0, 0.0, 1.0, "[dit] 'sum'"),
        Reference("xor_and", xor_and, 0.5, 0.0, 0.0, 1.0, "[GK] XorAnd; relabelled SUM"),
        Reference(
            "reduced_or",
            reduced_or,
            _h2(0.25) - 0.5,
            0.0,
            0.0,
            1.5 - _h2(0.25),
            "[dit] 'reduced or' (PID_BROJA equals PID_Proj there)",
        ),
        Reference("rdn_xor", rdn_xor, 1.0, 0.0, 0.0, 1.0, "[GK] RdnXor; [dit] 'rdn xor'"),
        Reference("rdn_unq_xor", rdn_unq_xor, 1.0, 1.0, 1.0, 1.0, "[GK] RdnUnqXor"),
        Reference(
            "imperfect_rdn",
            imperfect_rdn,
            _I_S_IMPERFECT,
            1.0 - _I_S_IMPERFECT,
            0.0,
            0.0,
            "[GK] ImperfectRdn; [closed form] S is a garbling of T = Y",
        ),
        Reference(
            "diff",
            diff,
            _h2(0.25) - 0.75 * _h2(1 / 3),
            1.0 - _h2(0.25),
            1.0 - _h2(0.25),
            0.0,
            "[dit] 'diff' (0.122556, 0.188722 to 6 decimals; closed forms here)",
        ),
    ]
}


def get(name: str) -> NDArray[np.float64]:
    """Return the pmf of a reference distribution by name (see :data:`REFERENCE`).

    Examples
    --------
    >>> get("xor").shape
    (2, 2, 2)
    """
    key = str(name).lower().replace("-", "_").replace(" ", "_")
    if key not in REFERENCE:
        raise ValueError(f"Unknown reference distribution {name!r}; expected one of {sorted(REFERENCE)}.")
    return REFERENCE[key].make()
