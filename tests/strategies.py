"""Hypothesis strategies for joint distributions p[y, t, s]."""

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

_WEIGHTS = st.one_of(st.just(0.0), st.floats(0.01, 1.0))


@st.composite
def joint_pmfs(draw, max_card: int = 5, min_card: int = 1):
    """Random pmfs up to max_card^3 with zero cells and, often, zero-probability symbols."""
    shape = tuple(draw(st.integers(min_card, max_card)) for _ in range(3))
    w = draw(hnp.arrays(np.float64, shape, elements=_WEIGHTS))
    assume(w.sum() > 0.05)
    return w / w.sum()


@st.composite
def stochastic_matrices(draw, n_rows: int, n_cols: int):
    """Row-stochastic matrix (a channel), rows drawn with zero entries allowed."""
    w = draw(hnp.arrays(np.float64, (n_rows, n_cols), elements=_WEIGHTS))
    w[:, 0] += w.sum(axis=1) == 0  # no empty rows
    return w / w.sum(axis=1, keepdims=True)


@st.composite
def garbled_pmfs(draw, max_card: int = 4):
    """p(y, t, s) = p(y, t) K(s | t): S is a garbling of T, so Y - T - S is a Markov chain."""
    n_y, n_t, n_s = (draw(st.integers(2, max_card)) for _ in range(3))
    pyt = draw(hnp.arrays(np.float64, (n_y, n_t), elements=_WEIGHTS))
    assume(pyt.sum() > 0.05)
    pyt = pyt / pyt.sum()
    k = draw(stochastic_matrices(n_t, n_s))
    return pyt[:, :, None] * k[None, :, :]
