"""The map redundancy (issue 31): exact on small alphabets, between I_wedge and BROJA's Red, and found on
planted structure at sizes where Red∩ refuses or is 0."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pidkd
from pidkd.estimators import distributions
from pidkd.estimators.intersection import gacs_korner_redundancy, intersection_redundancy, set_partitions
from pidkd.estimators.maps import EXACT_PAIRS, co_information, map_redundancy
from pidkd.estimators.samples import pid_from_samples


def planted(n_common: int, n_private: int, noise: float = 0.05) -> np.ndarray:
    """Y uniform on n_common labels; T = (C_t, U), S = (C_s, V): C_t, C_s noisy copies of Y, U, V private noise.

    Full support of P(t, s) (so Red∩ is 0); the planted maps t -> C_t, s -> C_s.
    """
    pc = np.full((n_common, n_common), noise / (n_common - 1))
    np.fill_diagonal(pc, 1 - noise)
    p = np.einsum("y,yt,ys->yts", np.full(n_common, 1 / n_common), pc, pc)
    return np.repeat(np.repeat(p, n_private, axis=1), n_private, axis=2) / n_private**2


def brute_force(p: np.ndarray) -> float:
    parts_t, parts_s = set_partitions(p.shape[1]), set_partitions(p.shape[2])
    return max(co_information(p, f, g) for f, g in itertools.product(parts_t, parts_s))


pmfs = st.tuples(st.integers(2, 3), st.integers(1, 4), st.integers(1, 4), st.integers(0, 2**16)).map(
    lambda a: np.random.default_rng(a[3]).dirichlet(np.full(a[0] * a[1] * a[2], 0.4)).reshape(a[:3])
)


@settings(max_examples=25, deadline=None)
@given(p=pmfs)
def test_equal_to_brute_force_over_all_partition_pairs(p):
    r = map_redundancy(p)
    assert r.exact
    assert r.red == pytest.approx(max(brute_force(p), 0.0), abs=1e-9)
    assert co_information(p, r.f_t, r.f_s) == pytest.approx(r.red, abs=1e-12)  # the maps attain it


@settings(max_examples=12, deadline=None)
@given(
    p=st.tuples(st.integers(2, 4), st.integers(2, 7), st.integers(2, 7), st.integers(0, 2**16)).map(
        lambda a: np.random.default_rng(a[3]).dirichlet(np.full(a[0] * a[1] * a[2], 0.3)).reshape(a[:3])
    )
)
def test_the_chain_i_wedge_red_cap_red_map_red_broja(p):
    r, cap = map_redundancy(p), intersection_redundancy(p).red
    assert gacs_korner_redundancy(p).red <= cap + 1e-9 and cap <= r.red + 1e-9
    assert r.red <= r.upper + 1e-9 and r.upper == pytest.approx(pidkd.pid(p).red, abs=1e-12)


def test_symmetric_in_t_and_s_and_invariant_under_relabelling():
    rng = np.random.default_rng(3)
    for shape in [(3, 4, 5), (3, 9, 8)]:
        p = rng.dirichlet(np.full(np.prod(shape), 0.3)).reshape(shape)
        r = map_redundancy(p)
        assert map_redundancy(p.transpose(0, 2, 1)).red == pytest.approx(r.red, abs=1e-9)
        perm = p[rng.permutation(shape[0])][:, rng.permutation(shape[1])][:, :, rng.permutation(shape[2])]
        assert map_redundancy(perm).red == pytest.approx(r.red, abs=1e-9)


@pytest.mark.parametrize("n_common, n_private", [(4, 8), (8, 8)])
def test_planted_noisy_common_code_is_found(n_common, n_private):
    p = planted(n_common, n_private)
    f = np.arange(n_common * n_private) // n_private
    value = co_information(p, f, f)
    assert pidkd.pid(distributions.rdn()).red == 1  # sanity of the package under test
    r = map_redundancy(p)
    assert not r.exact and r.red >= value - 1e-12 and r.red <= r.upper
    assert len(np.unique(r.f_t)) == n_common  # the common code, private symbols merged
    with pytest.raises(ValueError, match="limited to Bell"):
        intersection_redundancy(p)  # Red∩ refuses 32 x 32 (and would be 0: full support)


def test_paper_examples_and_the_measure_through_pid():
    assert map_redundancy(distributions.xor()).red == 0.0
    assert map_redundancy(distributions.rdn()).red == pytest.approx(1.0)
    r = pidkd.pid(distributions.and_(), measure="maps")
    assert r.method == "maps" and r.red == 0.0 and r.details.exact and r.diagnostics.status == "optimal"
    assert r.details.upper == pytest.approx(pidkd.pid(distributions.and_()).red)
    assert r.red + r.uni_t == pytest.approx(r.mi_t) and r.red + r.uni_t + r.uni_s + r.syn == pytest.approx(r.mi_ts)
    big = pidkd.pid(planted(4, 8), measure="maps", base=np.e)
    assert big.diagnostics.status == "local_optimum" and big.diagnostics.gap == pytest.approx(
        (big.details.upper - big.red) / np.log(2)
    )
    batch = pidkd.pid_batch([distributions.and_(), planted(4, 8)], measure="maps")
    assert [b.red for b in batch] == pytest.approx([0.0, big.red / np.log(2)], abs=1e-12)
    with pytest.warns(DeprecationWarning, match=r"`method=` is deprecated.*use measure='maps'"):
        assert pidkd.pid(distributions.rdn_xor(), method="maps").red == pytest.approx(1.0)  # the former name


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"pid\(measure='maps'\): `solver` apply to BROJA's solver"):
        pidkd.pid(distributions.and_(), measure="maps", solver="CLARABEL")
    with pytest.raises(ValueError, match="both `measure` and `method`"):
        pidkd.pid(distributions.and_(), measure="maps", method="broja")
    with pytest.raises(ValueError, match="'measure' parameter of pid"):
        pidkd.pid(distributions.and_(), measure="mmi")
    with pytest.raises(ValueError, match="exact=True searches all"):
        map_redundancy(planted(4, 2), exact=True)
    with pytest.raises(ValueError, match=r"`f_t` to be 2 integer block labels; got int64 \(3,\)"):
        co_information(distributions.and_(), [0, 1, 2], [0, 1])
    assert EXACT_PAIRS >= 52 * 52  # every 5 x 5 pmf is searched exhaustively


def test_from_samples_is_not_significantly_positive_on_independent_data():
    positive = 0
    for d in range(5):
        rng = np.random.default_rng(d)
        y, t, s = rng.integers(0, 10, 2000), rng.integers(0, 10, 2000), rng.integers(0, 10, 2000)
        r = pid_from_samples(y, t, s, measure="maps", rng=d, n_bootstrap=20, n_permutations=4)
        positive += r.ci["red"][0] > 0
        assert r.pid.method == "maps" and r.estimate["red"] >= 0
    assert positive == 0


def test_from_samples_recovers_a_shared_code():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 4000)
    t = np.where(rng.random(4000) < 0.9, y, rng.integers(0, 4, 4000)) * 3 + rng.integers(0, 3, 4000)
    s = np.where(rng.random(4000) < 0.9, y, rng.integers(0, 4, 4000)) * 3 + rng.integers(0, 3, 4000)
    r = pid_from_samples(y, t, s, measure="maps", n_bootstrap=20, n_permutations=4)
    assert (
        r.ci["red"][0] > r.null_high["red"]
        and r.estimate["red"] <= pidkd.pid_from_samples(y, t, s, n_bootstrap=20, n_permutations=0).ci["red"][1]
    )
