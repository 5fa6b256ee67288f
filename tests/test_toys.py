import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pidkd
from pidkd import toys
from pidkd.estimators import conditional_mutual_information, mutual_information
from tests.strategies import joint_pmfs

H02 = float(-(0.2 * np.log2(0.2) + 0.8 * np.log2(0.8)))


def test_example1_every_deterministic_student_has_no_red_or_uni():
    toy = toys.example1()
    res = toys.search_students(toy.p_yt)
    assert np.abs(res.red).max() <= 1e-9 and np.abs(res.uni_t).max() <= 1e-9
    assert res.labels[res.best_mi].tolist() == toy.students["U2 (= T)"].tolist()


def test_example2_values_and_argmaxes():
    toy = toys.example2()
    u1 = pidkd.pid(toys.joint_with_student(toy.p_yt, toy.students["U1"]))
    u2 = pidkd.pid(toys.joint_with_student(toy.p_yt, toy.students["U2"]))
    assert u1.red == pytest.approx(H02, abs=1e-6) and H02 == pytest.approx(0.7219, abs=1e-4)
    assert u2.red == pytest.approx(0.0, abs=1e-9) and u2.uni_t == pytest.approx(H02, abs=1e-6)
    res = toys.search_students(toy.p_yt, max_symbols=2)
    assert res.labels[res.best_mi].tolist() == toy.students["U2"].tolist()
    assert res.labels[res.best_red].tolist() == toy.students["U1"].tolist()
    # U2 and U1 xor U2 tie at 1 bit; both transfer nothing, U1 is not among them
    winners = res.maximisers(res.mi_ts)
    assert [res.labels[i].tolist() for i in winners] == [[0, 1, 0, 1], [0, 1, 1, 0]]
    assert np.abs(res.red[winners]).max() <= 1e-9


def test_example3_synergy():
    p = toys.example3()
    assert conditional_mutual_information(p) == pytest.approx(1.0, abs=1e-12)
    r = pidkd.pid(p)
    np.testing.assert_allclose([r.uni_t, r.red, r.syn], [0, 0, 1], atol=1e-9)


@pytest.mark.parametrize("h_z", [0.3, 0.6, 1.0])
@pytest.mark.parametrize("h_g", [0.3, 0.6, 1.0])
def test_theorem_3_1_on_a_grid_including_the_boundary(h_z, h_g):
    toy = toys.theorem31_family(h_z, h_g)
    pt = toy.p_yt
    assert mutual_information(pt) == pytest.approx(h_z, abs=1e-9)  # Y = Z
    res = toys.search_students(pt, max_entropy=max(h_z, h_g))
    mi_winners = [res.labels[i].tolist() for i in res.maximisers(res.mi_ts)]
    z, g = toy.students["Z"].tolist(), toy.students["G"].tolist()
    if h_z > h_g:
        assert z in mi_winners and g not in mi_winners
    elif h_z < h_g:
        assert g in mi_winners and z not in mi_winners
    else:
        assert z in mi_winners and g in mi_winners
    red_winners = [res.labels[i].tolist() for i in res.maximisers(res.red)]
    assert z in red_winners
    assert res.red.max() == pytest.approx(h_z, abs=1e-6)  # Red of S = Z is I(Y;T) = H(Z)


@given(p=joint_pmfs(max_card=4, min_card=2))
@settings(max_examples=30)
def test_theorem_3_2_ii_uni_bounds_the_mi_difference(p):
    """Uni(Y:T\\S) >= I(Y;T) - I(Y;S), so Uni = 0 forces I(Y;S) = max(I(Y;T), I(Y;S))."""
    r = pidkd.pid(p)
    assert r.uni_t >= r.mi_t - r.mi_s - 1e-9
    if r.uni_t <= 1e-9:
        assert max(r.mi_t, r.mi_s) == pytest.approx(r.mi_s, abs=1e-8)


@given(p=joint_pmfs(max_card=4, min_card=2), data=st.data())
@settings(max_examples=30)
def test_theorem_3_2_iii_coarsening_the_teacher_shrinks_its_unique_information(p, data):
    n_t = p.shape[1]
    h = np.array(data.draw(st.lists(st.integers(0, n_t - 1), min_size=n_t, max_size=n_t)))
    coarse = np.zeros((p.shape[0], n_t, p.shape[2]))
    np.add.at(coarse, (slice(None), h, slice(None)), p)
    assert pidkd.pid(coarse).uni_t <= pidkd.pid(p).uni_t + 1e-7


@given(p=joint_pmfs(max_card=3, min_card=2), data=st.data())
@settings(max_examples=25)
def test_lemma_adding_a_source_shrinks_unique_information(p, data):
    """Uni(Y:T\\(S,S')) <= Uni(Y:T\\S) for a second student S' drawn jointly."""
    k = data.draw(st.integers(2, 3))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    chan = rng.random((*p.shape, k))
    chan /= chan.sum(axis=3, keepdims=True)
    p4 = p[..., None] * chan  # p[y, t, s, s']
    joint = p4.reshape(p.shape[0], p.shape[1], -1)
    assert pidkd.pid(joint).uni_t <= pidkd.pid(p).uni_t + 1e-7


def test_check_all_reports_every_claim_as_holding():
    rows = toys.check_all(h_grid=(0.4, 0.8), n_random=5)
    assert {r["item"].split(",")[0] for r in rows} >= {
        "Example 1",
        "Example 2",
        "Example 3",
        "Theorem 3.1",
        "Theorem 4.1",
    }
    failing = [r for r in rows if not r["holds"]]
    assert failing == []


def test_helpers_validate_input():
    with pytest.raises(ValueError, match="one non-negative label per teacher symbol"):
        toys.joint_with_student(np.full((2, 2), 0.25), [0])
    with pytest.raises(ValueError, match=r"expects h in \[0, 1\] bits"):
        toys.binary_entropy_inverse(1.5)
    with pytest.raises(ValueError, match=r"limited to \|T\| <= 10"):
        toys.search_students(np.full((1, 11), 1 / 11))
    assert toys.binary_entropy_inverse(0.0) == 0.0
