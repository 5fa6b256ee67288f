"""Hypothesis property tests of the BROJA decomposition (derandomised in the CI profile)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import pidkd
from pidkd.estimators import conditional_mutual_information, mutual_information
from tests.conftest import ATOL_SOLVER
from tests.strategies import garbled_pmfs, joint_pmfs

IDENTITY_TOL = 1e-7


def atoms(r):
    return np.array([r.red, r.uni_t, r.uni_s, r.syn])


@pytest.mark.parametrize("solver", ["NEWTON", "CLARABEL"])
@given(p=joint_pmfs())
def test_consistency_identities_and_nonnegativity(solver, p):
    r = pidkd.pid(p, solver=solver)
    mi_t = mutual_information(p.sum(axis=2))
    mi_s = mutual_information(p.sum(axis=1))
    mi_ts = mutual_information(p.reshape(p.shape[0], -1))
    assert r.red + r.uni_t == pytest.approx(mi_t, abs=IDENTITY_TOL)
    assert r.red + r.uni_s == pytest.approx(mi_s, abs=IDENTITY_TOL)
    assert atoms(r).sum() == pytest.approx(mi_ts, abs=IDENTITY_TOL)
    assert atoms(r).min() >= -1e-9
    assert r.red <= min(mi_t, mi_s) + 1e-9


@pytest.mark.parametrize("solver", ["NEWTON", "CLARABEL"])
@given(p=joint_pmfs())
def test_optimal_q_is_in_the_polytope(solver, p):
    q = pidkd.pid(p, solver=solver).diagnostics.q
    assert q.shape == p.shape and q.min() >= 0
    np.testing.assert_allclose(q.sum(axis=2), p.sum(axis=2), atol=1e-8)
    np.testing.assert_allclose(q.sum(axis=1), p.sum(axis=1), atol=1e-8)


@given(p=joint_pmfs())
def test_uni_t_equals_cmi_of_returned_q_and_gap_is_small(p):
    r = pidkd.pid(p)
    q = r.diagnostics.q
    assert conditional_mutual_information(q / q.sum()) == pytest.approx(r.uni_t, abs=ATOL_SOLVER)
    assert -1e-9 <= r.diagnostics.gap <= pidkd.estimators.broja.DEFAULT_TOL["NEWTON"]


@given(p=joint_pmfs(max_card=4))
def test_swapping_sources_swaps_uniques(p):
    r, rs = pidkd.pid(p), pidkd.pid(p.transpose(0, 2, 1))
    np.testing.assert_allclose(atoms(rs), [r.red, r.uni_s, r.uni_t, r.syn], atol=ATOL_SOLVER)


@given(p=joint_pmfs(max_card=4), seed=st.integers(0, 2**32 - 1))
def test_relabelling_symbols_changes_nothing(p, seed):
    rng = np.random.default_rng(seed)
    perm = p[rng.permutation(p.shape[0])][:, rng.permutation(p.shape[1])][:, :, rng.permutation(p.shape[2])]
    np.testing.assert_allclose(atoms(pidkd.pid(perm)), atoms(pidkd.pid(p)), atol=ATOL_SOLVER)


@given(p=joint_pmfs(max_card=4), pad=hnp.array_shapes(min_dims=3, max_dims=3, min_side=0, max_side=2))
def test_padding_with_zero_probability_symbols_changes_nothing(p, pad):
    padded = np.pad(p, [(0, k) for k in pad])
    np.testing.assert_allclose(atoms(pidkd.pid(padded)), atoms(pidkd.pid(p)), atol=ATOL_SOLVER)


@given(p=garbled_pmfs())
def test_garbled_student_has_no_unique_information(p):
    """If S is a garbling of T (Y - T - S Markov), BROJA gives Uni(Y:S\\T) = 0."""
    r = pidkd.pid(p)
    assert r.uni_s == pytest.approx(0.0, abs=ATOL_SOLVER)
    assert r.red == pytest.approx(mutual_information(p.sum(axis=1)), abs=ATOL_SOLVER)


@given(
    py=hnp.arrays(np.float64, st.integers(1, 5), elements=st.floats(0.01, 1)),
    pts=hnp.arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(1, 5)), elements=st.floats(0, 1)),
)
def test_label_independent_of_sources_gives_all_zero(py, pts):
    pts = pts + (pts.sum() == 0)
    p = (py / py.sum())[:, None, None] * (pts / pts.sum())[None]
    r = pidkd.pid(p)
    np.testing.assert_allclose(atoms(r), 0.0, atol=1e-12)


@given(p=joint_pmfs(max_card=4))
def test_duplicated_source_has_only_redundancy(p):
    """T == S: everything is redundant (BROJA)."""
    pyt = p.sum(axis=2)
    dup = np.zeros(pyt.shape + (pyt.shape[1],))
    idx = np.arange(pyt.shape[1])
    dup[:, idx, idx] = pyt
    r = pidkd.pid(dup)
    np.testing.assert_allclose([r.uni_t, r.uni_s, r.syn], 0.0, atol=ATOL_SOLVER)
    assert r.red == pytest.approx(mutual_information(pyt), abs=ATOL_SOLVER)
