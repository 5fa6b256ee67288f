import numpy as np
import pytest
from hypothesis import given, settings

import pidkd
from pidkd.estimators import conditional_mutual_information, distributions, mutual_information
from pidkd.estimators.intersection import (
    MAX_PAIRS,
    gacs_korner_redundancy,
    intersection_redundancy,
    set_partitions,
)
from tests.strategies import joint_pmfs


def test_partitions_are_counted_by_bell_numbers():
    assert [len(set_partitions(n)) for n in range(1, 8)] == [1, 2, 5, 15, 52, 203, 877]
    parts = set_partitions(4)
    assert len({tuple(p) for p in parts}) == 15 and parts[:, 0].max() == 0


@pytest.mark.parametrize(
    "name, gk, red_cap",
    [("rdn", 1.0, 1.0), ("xor", 0.0, 0.0), ("copy", 0.0, 0.0), ("rdn_xor", 1.0, 1.0), ("unq", 0.0, 0.0)],
)
def test_reference_values(name, gk, red_cap):
    p = distributions.get(name)
    assert gacs_korner_redundancy(p).red == pytest.approx(gk, abs=1e-12)
    assert intersection_redundancy(p).red == pytest.approx(red_cap, abs=1e-12)


def test_and_gate_red_cap_is_zero_below_broja():
    p = distributions.and_()
    assert intersection_redundancy(p).red == pytest.approx(0.0, abs=1e-12)
    assert pidkd.pid(p).red > 0.3


def test_maximiser_satisfies_the_constraint_and_attains_the_value():
    rng = np.random.default_rng(3)
    p = rng.random((3, 4, 4)) * (rng.random((3, 4, 4)) < 0.5)
    p /= p.sum()
    r = intersection_redundancy(p)
    z = np.zeros((3, r.f_t.max() + 1, r.f_s.max() + 1))
    for t in range(4):
        for s in range(4):
            if r.f_t[t] >= 0 and r.f_s[s] >= 0:
                z[:, r.f_t[t], r.f_s[s]] += p[:, t, s]
    assert conditional_mutual_information(z) == pytest.approx(0.0, abs=1e-9)
    assert mutual_information(z.sum(axis=2)) == pytest.approx(r.red, abs=1e-12)


@given(p=joint_pmfs(max_card=4, min_card=2))
@settings(max_examples=40)
def test_theorem_4_1_chain_of_bounds(p):
    """I(Y;T∧S) <= Red∩ (deterministic) <= Red (BROJA): both proven, so no violation is allowed."""
    gk = gacs_korner_redundancy(p).red
    rc = intersection_redundancy(p).red
    red = pidkd.pid(p).red
    assert gk <= rc + 1e-9
    assert rc <= red + 1e-7


@given(p=joint_pmfs(max_card=4, min_card=2))
@settings(max_examples=20)
def test_equality_when_teacher_equals_student(p):
    pyt = p.sum(axis=2)
    n_t = pyt.shape[1]
    dup = np.zeros((pyt.shape[0], n_t, n_t))
    dup[:, np.arange(n_t), np.arange(n_t)] = pyt
    mi = mutual_information(pyt)
    assert gacs_korner_redundancy(dup).red == pytest.approx(mi, abs=1e-9)
    assert intersection_redundancy(dup).red == pytest.approx(mi, abs=1e-9)
    assert pidkd.pid(dup).red == pytest.approx(mi, abs=1e-6)


def test_pid_method_intersection_uses_the_identities_and_flags_negative_synergy():
    r = pidkd.pid(distributions.rdn_xor(), measure="intersection")
    assert (r.method, r.diagnostics.solver) == ("intersection", "exhaustive")
    np.testing.assert_allclose([r.red, r.uni_t, r.uni_s, r.syn], [1, 0, 0, 1], atol=1e-12)
    # ImperfectRdn: Red∩ = 0 (S is a noisy copy, no map of it screens off Y) while BROJA's
    # Red = I(Y;S) = 0.9896, so the identities give Syn = -I(Y;S): flagged, not clipped
    with pytest.warns(UserWarning, match="negative atoms .*syn"):
        r = pidkd.pid(distributions.imperfect_rdn(), measure="intersection")
    assert r.syn == pytest.approx(-r.mi_s, abs=1e-12) and r.red + r.uni_t == pytest.approx(r.mi_t)


def test_bad_input():
    big = np.full((2, 8, 8), 1 / 128)
    with pytest.raises(
        ValueError, match=rf"limited to Bell\(\|T\|\)·Bell\(\|S\|\) <= {MAX_PAIRS:,}.*\|T\| = 8, \|S\| = 8"
    ):
        intersection_redundancy(big)
    # zero-probability symbols are dropped before the bound is applied
    padded = np.zeros((2, 9, 3))
    padded[:, :2, :2] = distributions.rdn()
    assert intersection_redundancy(padded).red == pytest.approx(1.0)
    assert intersection_redundancy(padded).f_t.tolist()[2:] == [-1] * 7
    with pytest.raises(
        ValueError, match=r"'form' parameter of intersection_redundancy\(\) must be one of \['deterministic'\]"
    ):
        intersection_redundancy(distributions.rdn(), form="channel")
    with pytest.raises(ValueError, match=r"`solver` apply to BROJA's solver \(measure='broja'\) only"):
        pidkd.pid(distributions.rdn(), measure="intersection", solver="CLARABEL")
    with pytest.raises(ValueError, match="sums to 1"):
        gacs_korner_redundancy(np.ones((2, 2, 2)))
