"""Sample estimates and their interval ends stay inside the information-theoretic bounds (issue 29, item 1).

Before the fix, the jackknife clipped at 0 only: IDTxl's 4-sample XOR gave Syn = 2 bits with H(Y) = 1.
"""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pidkd.estimators.information import entropy, mutual_information
from pidkd.estimators.samples import (
    _A,
    ATOMS,
    BIAS_CORRECTIONS,
    SampleSizeWarning,
    _estimate,
    _jackknife_counts,
    _project,
    pid_from_samples,
)

TOL = 1e-12


def _quiet(*args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SampleSizeWarning)
        return pid_from_samples(*args, **kw)


def _inside(r, n_y: int, n_ts: int) -> None:
    """Every estimate and interval end of ``r`` lies in [0, log2 of the alphabet]; the sum too."""
    e = r.estimate
    cap = min(np.log2(n_y), np.log2(n_ts))
    assert all(e[a] >= 0 for a in ATOMS), e
    assert sum(e.values()) <= cap + TOL, (e, cap)
    for a, (lo, hi) in r.ci.items():
        assert 0 <= lo <= hi <= cap + TOL, (a, lo, hi, cap)


def test_idtxl_four_sample_xor_keeps_syn_within_h_y():
    t, s = np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])
    with pytest.warns(SampleSizeWarning, match=r"broke .*sum<=H.* by more than its own interval's width"):
        r = pid_from_samples(t ^ s, t, s)
    assert r.pid.syn == pytest.approx(1.0, abs=1e-9)  # the plug-in is exact here
    assert r.estimate["syn"] <= 1.0 and r.estimate["syn"] == pytest.approx(1.0, abs=1e-9)
    assert r.ci["syn"][1] <= 1.0
    _inside(r, 2, 4)
    assert "sum<=H" in r.bounded and r.beyond_bounds and not r.reliable
    row = r.as_dict()
    assert "sum<=H" in row["bounded"] and row["beyond_bounds"] and not row["reliable"]


def test_beyond_bounds_means_moved_by_more_than_the_interval_width():
    """The rule itself, on corrected values given directly: (atoms, H(Y), H(T,S)) with H(Y) = 1 bit."""
    plug = np.array([0.0, 0.0, 0.0, 1.3, 1.0, 2.0])  # Syn 0.3 bits above H(Y)
    est, ci, bounded, beyond = _estimate(plug, None, None, "none", 0.9, (2, 2, 2), 2.0)
    assert bounded == ("sum<=H",) and beyond and ci is None and 1 - 1e-12 <= est[3] <= 1  # no interval: any move counts
    spread = np.array([[0, 0, 0, d, 0, 0] for d in (-0.1, 0.1)])  # bootstrap values around the plug-in
    for width, expected in ((0.1, True), (0.4, False)):  # moved 0.3: beyond an interval of width 0.1, not 0.4
        boot = plug + spread * width / 0.2
        est, ci, bounded, beyond = _estimate(plug, boot, None, "none", 0.9, (2, 2, 2), 2.0)
        assert bounded == ("sum<=H",) and beyond is expected and 1 - 1e-12 <= est[3] <= 1 and ci[1, 3] <= 1


def test_four_sample_and_sums_to_at_most_one_bit():
    t, s = np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])
    r = _quiet(t & s, t, s)
    assert sum(r.estimate.values()) <= 1.0  # was 2.18
    _inside(r, 2, 4)
    for a in ATOMS:  # a projected estimate stays inside its own interval
        assert r.ci[a][0] <= r.estimate[a] <= r.ci[a][1]


def test_sixty_samples_of_a_sum_mod_four_keep_syn_within_two_bits():
    rng = np.random.default_rng(0)
    t, s = rng.integers(0, 4, 60), rng.integers(0, 4, 60)
    r = _quiet((t + s) % 4, t, s)
    assert r.estimate["syn"] <= 2.0  # was 2.13
    _inside(r, 4, 16)


def test_a_truth_on_a_bound_is_projected_but_stays_reliable():
    """T = Y, balanced labels: Red + Uni_t = H(Y) = log2 3, where the corrected estimate lands on either side."""
    flagged = 0
    for seed in range(8):
        rng = np.random.default_rng(seed)
        y = rng.integers(0, 3, 600)
        s = np.where(rng.random(600) < 0.1, (y + 1) % 3, y)
        r = pid_from_samples(y, y, s, rng=seed)
        assert r.estimate["red"] + r.estimate["uni_t"] <= np.log2(3) + TOL
        assert not r.beyond_bounds and r.reliable
        flagged += bool(r.bounded)
    assert 0 < flagged < 8  # noise around a truth on the bound: some projected, not all


def test_red_of_a_noisy_copy_is_bounded_by_the_interval_of_i_y_s_and_still_covers():
    """Red = I(Y;S) exactly: the upper end of Red is clipped at the interval of I(Y;S), not its estimate."""
    truth = 1 - (-(0.2 * np.log2(0.2) + 0.8 * np.log2(0.8)))
    covered = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        y = rng.integers(0, 2, 2000)
        s = np.where(rng.random(2000) < 0.2, 1 - y, y)
        r = pid_from_samples(y, y, s, n_bootstrap=100, n_permutations=0, rng=seed)
        covered += r.ci["red"][0] <= truth <= r.ci["red"][1]
    assert covered >= 16


def test_the_projection_is_the_nearest_point_of_the_bounds():
    cp = pytest.importorskip("cvxpy")
    rng = np.random.default_rng(4)
    for _ in range(30):
        h = rng.uniform(0.1, 2)
        b = np.array([0, 0, 0, 0, rng.uniform(0, h), rng.uniform(0, h), h])
        x = rng.normal(0.3, 1.0, 4)
        z = cp.Variable(4)
        cp.Problem(cp.Minimize(cp.sum_squares(z - x)), [_A @ z <= b]).solve()
        got = _project(x, b)
        assert np.all(_A @ got <= b)  # exactly, not up to round-off
        np.testing.assert_allclose(got, z.value, atol=1e-6)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(2, 200),
    k=st.tuples(st.integers(2, 6), st.integers(2, 6), st.integers(2, 6)),
    dep=st.sampled_from(["xor", "copy", "random"]),
    seed=st.integers(0, 2**16),
    method=st.sampled_from(BIAS_CORRECTIONS),
)
def test_estimates_and_interval_ends_stay_inside_the_bounds(n, k, dep, seed, method):
    rng = np.random.default_rng(seed)
    t, s = rng.integers(0, k[1], n), rng.integers(0, k[2], n)
    y = {"xor": (t + s) % k[0], "copy": t % k[0], "random": rng.integers(0, k[0], n)}[dep]
    boot = 30 if method == "bootstrap" else 0
    r = _quiet(y, t, s, n_bootstrap=boot, n_permutations=0, rng=seed, bias_correction=method)
    _inside(r, r.n_y, r.n_t * r.n_s)
    if method != "jackknife" or n < 2:
        return
    # The bounds with the corrected informations, recomputed here from the same jackknife groups.
    counts = np.zeros((r.n_y, r.n_t, r.n_s))
    cy, ct, cs = (np.unique(v, return_inverse=True)[1] for v in (y, t, s))
    flat = (cy * r.n_t + ct) * r.n_s + cs
    np.add.at(counts.ravel(), flat, 1)
    g = min(20, n)
    jack = _jackknife_counts(flat, counts.astype(np.int64), g, np.random.default_rng(seed))

    def corrected(f):
        return g * f(counts) - (g - 1) * np.mean([f(c) for c in jack])

    h = min(
        corrected(lambda c: entropy(c.sum(axis=(1, 2)) / c.sum())),
        np.log2(r.n_y),
        max(corrected(lambda c: entropy(c.sum(axis=0) / c.sum())), 0),
    )
    i_t = corrected(lambda c: mutual_information(c.sum(axis=2) / c.sum()))
    i_s = corrected(lambda c: mutual_information(c.sum(axis=1) / c.sum()))
    e = r.estimate
    assert e["red"] + e["uni_t"] <= max(min(i_t, h), 0) + 1e-9
    assert e["red"] + e["uni_s"] <= max(min(i_s, h), 0) + 1e-9
    assert sum(e.values()) <= max(h, 0) + 1e-9


def test_without_syn_ge_0_a_negative_synergy_survives_the_projection():
    """Measures other than BROJA (syn_floor=-inf): the projection enforces the other bounds and keeps Syn < 0."""
    plug = np.array([0.2, 0.9, 0.1, -0.3, 1.0, 2.0])  # Red + Uni_t = 1.1 > H(Y) = 1
    est, _, bounded, _ = _estimate(plug, None, None, "none", 0.9, (2, 2, 2), 2.0, syn_floor=-np.inf)
    assert "sum<=H" not in bounded and est[3] == -0.3  # the sum (0.9) is inside; Syn untouched
    assert est[0] + est[1] <= 1.0 and min(est[:3]) >= 0
