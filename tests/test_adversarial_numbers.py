"""Numbers from hostile but plausible input (issue 29, "weak"): low-precision or complex pmfs,
activations at extreme scales, missing labels of time types, tolerances below float64's reach,
and a shape whose transpose was 100x faster. Each test failed before its fix.
"""

import warnings

import numpy as np
import pytest

import pidkd
from pidkd.estimators import distributions
from pidkd.estimators.broja import MIN_TOL
from pidkd.estimators.broja._dual_newton import _swap_sides
from pidkd.estimators.quantize import Quantizer
from pidkd.estimators.samples import pid_from_samples


def _pmf(seed=0, shape=(4, 5, 6)):
    c = np.random.default_rng(seed).integers(1, 50, size=shape)
    return c / c.sum()


def test_a_float16_pmf_summing_to_1_01_is_refused_and_a_normalised_one_accepted():
    p = _pmf()
    with pytest.raises(ValueError, match=r"sums to 1; got sum=1\.0(09|10)"):
        pidkd.pid((p * 1.01).astype(np.float16))
    x = (p * 1000).astype(np.float16)
    assert pidkd.pid(x / x.sum()).red == pytest.approx(pidkd.pid(p).red, abs=2e-3)


def test_a_bfloat16_pmf_summing_to_1_10_is_refused_and_a_normalised_one_accepted():
    torch = pytest.importorskip("torch")
    p = _pmf()
    with pytest.raises(ValueError, match=r"sums to 1; got sum=1\.(09|10)"):
        pidkd.pid((torch.tensor(p) * 1.10).to(torch.bfloat16))
    with pytest.raises(ValueError, match=r"sums to 1; got sum=1\.0(09|10)"):
        pidkd.pid((torch.tensor(p) * 1.01).to(torch.float16))
    x = torch.tensor(p * 1000, dtype=torch.bfloat16)
    assert pidkd.pid(x / x.sum()).red == pytest.approx(pidkd.pid(p).red, abs=1e-2)


def test_complex_input_is_refused_not_cast():
    p = _pmf().astype(complex)
    with pytest.raises(TypeError, match=r"real probabilities or counts; got complex values \(complex128\)"):
        pidkd.pid(p)
    with pytest.raises(TypeError, match="complex values"):
        pidkd.pid_batch(np.stack([p, p]), counts=True)
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"complex values \(torch.complex64\)"):
        pidkd.pid(torch.tensor(_pmf(), dtype=torch.complex64))


@pytest.mark.parametrize("scale", [1e-200, 1e200, 1e-300, 1e300])
@pytest.mark.parametrize("strategy, normalize", [("kmeans", True), ("kmeans", False), ("quantile", False)])
def test_activations_at_extreme_scales_get_the_codes_of_unit_scale(scale, strategy, normalize):
    x = np.random.default_rng(0).normal(size=(300, 6))
    ref = Quantizer(strategy, 8, normalize=normalize).fit_transform(x)
    q = Quantizer(strategy, 8, normalize=normalize).fit(x * scale)
    np.testing.assert_array_equal(q.transform(x * scale), ref)  # was one code for all samples


def test_pid_from_samples_of_activations_at_1e200_is_that_of_unit_scale():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 400)
    t = np.c_[y, rng.normal(size=400)] + rng.normal(size=(400, 2))
    s = rng.normal(size=(400, 3))
    kw = {"n_bootstrap": 10, "n_permutations": 2, "n_bins": 4}
    ref = pid_from_samples(y, t, s, **kw)
    big = pid_from_samples(y, t * 1e200, s * 1e-200, **kw)
    assert big.estimate == ref.estimate and big.n_t == ref.n_t == 4


@pytest.mark.parametrize(
    "labels",
    [
        np.array(["2020-01-01", "NaT", "2020-01-02", "2020-01-01"], dtype="datetime64[D]"),
        np.array([1, "NaT", 2, 1], dtype="timedelta64[s]"),
        np.array([np.datetime64("2020-01-01"), np.datetime64("NaT"), np.datetime64("2021-01-01")], dtype=object),
    ],
)
def test_nat_labels_are_missing_not_a_class(labels):
    with pytest.raises(ValueError, match=r"1 missing \(NaN, NaT, infinite or None\) label\(s\), the first at sample 1"):
        pid_from_samples(labels, [0, 1, 0, 1], [0, 0, 1, 1], n_bootstrap=0, n_permutations=0)


def test_pandas_nat_and_na_labels_are_missing():
    pd = pytest.importorskip("pandas")
    for labels in (
        pd.Series([pd.Timestamp("2020"), pd.NaT, pd.Timestamp("2021"), pd.Timestamp("2020")]).to_numpy(dtype=object),
        np.array([1, pd.NA, 2, 1], dtype=object),
    ):
        with pytest.raises(ValueError, match="1 missing"):
            pid_from_samples(labels, [0, 1, 0, 1], [0, 0, 1, 1], n_bootstrap=0, n_permutations=0)


def test_a_tolerance_below_float64_round_off_is_raised_to_the_achievable_one():
    p = np.random.default_rng(0).dirichlet(np.ones(27)).reshape(3, 3, 3)
    with pytest.warns(
        UserWarning,
        match=r"tol=1e-300 bits, below what a float64 duality certificate resolves.*"
        r"certified to tol=1e-11 bits instead",
    ) as rec:
        r = pidkd.pid(p, tol=1e-300)
    assert rec[0].filename == __file__  # points at the caller, not at pidkd
    assert r.diagnostics.converged and r.diagnostics.gap <= MIN_TOL
    with pytest.warns(UserWarning, match="tol=1e-13"):
        pidkd.pid_batch([distributions.and_(), p], tol=1e-13)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pidkd.pid(p, tol=MIN_TOL)  # the floor itself is fine


def test_a_large_student_alphabet_is_solved_as_cheaply_as_its_transpose():
    """2x2x3000 took 17.5 s and its transpose 2x3000x2 0.19 s: the Schur step factors the s side."""
    assert _swap_sides((2, 2, 3000), "auto") and _swap_sides((2, 2, 3000), "schur")
    assert not _swap_sides((2, 3000, 2), "auto") and not _swap_sides((10, 64, 64), "auto")
    assert not _swap_sides((2, 2, 3000), "woodbury")
    p = np.random.default_rng(1).dirichlet(np.ones(2 * 2 * 400)).reshape(2, 2, 400)
    r, rt = pidkd.pid(p), pidkd.pid(p.transpose(0, 2, 1))
    assert r.diagnostics.q.shape == (2, 2, 400) and r.diagnostics.n_iter == rt.diagnostics.n_iter
    np.testing.assert_allclose(r.diagnostics.q, rt.diagnostics.q.transpose(0, 2, 1), atol=1e-15)
    assert (r.red, r.uni_t, r.uni_s, r.syn) == pytest.approx((rt.red, rt.uni_s, rt.uni_t, rt.syn), abs=1e-12)
