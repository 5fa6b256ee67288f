import numpy as np
import pytest

from pidkd.estimators.samples import pid_from_samples


def test_xor_from_samples_with_interval_and_null():
    rng = np.random.default_rng(0)
    t, s = rng.integers(0, 2, 5000), rng.integers(0, 2, 5000)
    r = pid_from_samples(t ^ s, t, s, n_bootstrap=100, n_permutations=10)
    assert r.pid.syn == pytest.approx(1.0, abs=0.01)
    lo, hi = r.ci["syn"]
    assert lo <= r.pid.syn <= hi and hi - lo < 0.05
    assert r.null_mean["syn"] < 0.005 and r.samples_per_cell == pytest.approx(1250, rel=0.1)
    row = r.as_dict()
    assert {"red", "syn_lo", "syn_hi", "syn_null", "n_samples", "status"} <= set(row)


def test_bootstrap_intervals_cover_the_true_value_at_roughly_the_nominal_rate():
    """Noisy copy: T = Y a fair bit, S = T flipped w.p. 0.2: Red = I(Y;S) = 1 - h(0.2) exactly."""
    truth = 1 - (-(0.2 * np.log2(0.2) + 0.8 * np.log2(0.8)))
    covered = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        y = rng.integers(0, 2, 2000)
        s = np.where(rng.random(2000) < 0.2, 1 - y, y)
        r = pid_from_samples(y, y, s, n_bootstrap=200, n_permutations=0, confidence=0.9, rng=seed)
        lo, hi = r.ci["red"]
        covered += lo <= truth <= hi
    assert covered >= 34  # >= 85% of 40 for nominal 90%


def test_permutation_null_of_independent_label_is_near_zero_for_large_n():
    rng = np.random.default_rng(3)
    n = 50_000
    y, t, s = rng.integers(0, 3, n), rng.integers(0, 4, n), rng.integers(0, 4, n)
    r = pid_from_samples(y, t, s, n_bootstrap=0, n_permutations=10)
    assert max(r.null_mean.values()) < 2e-3
    assert max(abs(r.pid.red), r.pid.uni_t, r.pid.uni_s, r.pid.syn) < 5e-3
    assert r.ci == {}


def test_small_sample_bias_is_visible_in_the_null():
    rng = np.random.default_rng(4)
    y, t, s = rng.integers(0, 5, 200), rng.integers(0, 10, 200), rng.integers(0, 10, 200)
    r = pid_from_samples(y, t, s, n_bootstrap=0, n_permutations=20)
    assert r.pid.syn > 0.5  # all spurious: Y is independent of (T, S)
    assert r.null_mean["syn"] == pytest.approx(r.pid.syn, rel=0.25)


def test_raw_representations_are_quantized_and_seeded():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 3, 600)
    t = np.eye(3)[y] * 3 + rng.normal(size=(600, 3)) * 0.1
    s = rng.normal(size=(600, 2, 2))
    a = pid_from_samples(y, t, s, n_bins=3, n_bootstrap=20, n_permutations=2)
    b = pid_from_samples(y, t, s, n_bins=3, n_bootstrap=20, n_permutations=2)
    assert a.as_dict() | {"solve_time": 0} == b.as_dict() | {"solve_time": 0}
    assert a.n_t == 3 and a.pid.mi_t == pytest.approx(np.log2(3), abs=1e-3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"confidence": 1.0}, r"'confidence' parameter of pid_from_samples\(\) must be in \(0, 1\)"),
        ({"n_bootstrap": -1}, r"'n_bootstrap' parameter of pid_from_samples\(\) must be a non-negative int"),
    ],
)
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        pid_from_samples([0, 1], [0, 1], [0, 1], **kwargs)


def test_bad_labels():
    with pytest.raises(ValueError, match="expects `y` to be 1-d labels"):
        pid_from_samples([[0, 1]], [0, 1], [0, 1])
