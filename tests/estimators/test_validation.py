import numpy as np
import pytest

import pidkd
from pidkd._validation import as_joint_pmf


def test_counts_are_normalised_only_when_declared():
    c = np.array([[[2, 0], [0, 6]]])
    np.testing.assert_array_equal(as_joint_pmf(c, counts=True), c / 8)
    with pytest.raises(ValueError, match=r"sum=8 .*pass counts=True"):
        as_joint_pmf(c)


def test_pmf_within_tolerance_is_renormalised_exactly():
    p = np.full((2, 2, 2), 1 / 8) * (1 + 1e-12)
    assert as_joint_pmf(p).sum() == pytest.approx(1.0, abs=1e-15)


@pytest.mark.parametrize(
    "p, exc, match",
    [
        (np.full((2, 2, 2), -1 / 8), ValueError, r"pid\(\) expects `p` to be non-negative; got 8 negative"),
        (np.array([[[np.nan, 1.0]]]), ValueError, r"`p` to hold finite numbers; got 1 NaN or infinite entry"),
        (np.array([[[np.inf, 1.0]]]), ValueError, r"finite numbers"),
        (np.full((2, 2, 2), 0.1), ValueError, r"sums to 1; got sum=0.8"),
        (np.full((2, 4), 1 / 8), ValueError, r"3-d array p\[y, t, s\] .*got ndim=2 with shape \(2, 4\)"),
        (np.zeros((2, 0, 2)), ValueError, r"at least one symbol; got shape \(2, 0, 2\)"),
        (np.zeros((2, 2, 2)), ValueError, r"positive total mass; got an all-zero array"),
        ("xor", TypeError, r"array-like joint pmf .* got str"),
        (None, TypeError, r"got NoneType"),
        ([[["a", "b"]]], TypeError, r"numeric array"),
    ],
)
def test_bad_input_raises_with_clear_message(p, exc, match):
    with pytest.raises(exc, match=match):
        pidkd.pid(p)


def test_all_zero_counts_rejected():
    with pytest.raises(ValueError, match="all-zero"):
        pidkd.pid(np.zeros((2, 2, 2)), counts=True)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            {"measure": "williams-beer"},
            r"'measure' parameter of pid\(\) must be one of \['broja', 'intersection', 'maps'\]",
        ),
        ({"base": 1.0}, r"'base' parameter of pid\(\)"),
        ({"base": "two"}, r"'base' parameter of pid\(\) must be a positive finite number"),
        ({"solver": "MOSEK"}, r"'solver' parameter of pid\(\) must be one of"),
        ({"tol": -1}, r"'tol' parameter of pid\(\) must be a positive finite number"),
    ],
)
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        pidkd.pid(pidkd.distributions.and_(), **kwargs)


def test_torch_tensor_input_gives_same_result():
    torch = pytest.importorskip("torch")
    p = pidkd.distributions.and_()
    r = pidkd.pid(torch.tensor(p, dtype=torch.float32))
    assert r.red == pytest.approx(pidkd.pid(p).red, abs=1e-6)


def test_dit_distribution_input():
    dit = pytest.importorskip("dit")
    # dit's PID order: sources first, target last: outcomes (t, s, y) of Y = T and S
    d = dit.Distribution(["000", "010", "100", "111"], [0.25] * 4)
    r = pidkd.pid(d)
    assert r.red == pytest.approx(pidkd.distributions.REFERENCE["and"].red, abs=1e-6)
    # explicit variable order: y is variable 2, t is 1, s is 0 (symmetric here)
    assert pidkd.pid(d, variables=(2, 1, 0)).syn == pytest.approx(0.5, abs=1e-6)
    with pytest.raises(ValueError, match=r"'variables' parameter of pid\(\) must be three distinct"):
        pidkd.pid(d, variables=(0, 0, 1))
    d4 = dit.Distribution(["0000", "1111"], [0.5, 0.5])
    with pytest.raises(ValueError, match="with 4 variables; without `variables`"):
        pidkd.pid(d4)
    assert pidkd.pid(d4, variables=(3, 0, 1)).red == pytest.approx(1.0, abs=1e-6)
