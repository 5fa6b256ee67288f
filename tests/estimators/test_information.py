import numpy as np
import pytest

from pidkd.estimators import (
    conditional_entropy,
    conditional_mutual_information,
    entropy,
    mutual_information,
)
from tests.conftest import ATOL_EXACT


def test_entropy_closed_forms_and_zero_cells():
    assert entropy([0.25] * 4) == pytest.approx(2.0, abs=ATOL_EXACT)
    assert entropy([1.0, 0.0, 0.0]) == 0.0
    assert entropy([0.5, 0.5, 0.0, 0.0]) == pytest.approx(1.0, abs=ATOL_EXACT)
    assert entropy([0.5, 0.5], base=np.e) == pytest.approx(np.log(2), abs=ATOL_EXACT)
    assert entropy([0.25] * 4, base=4) == pytest.approx(1.0, abs=ATOL_EXACT)


def test_entropy_of_multi_axis_array_is_joint_entropy():
    p = np.full((2, 4), 1 / 8)
    assert entropy(p) == pytest.approx(3.0, abs=ATOL_EXACT)


def test_conditional_entropy_chain_rule():
    rng = np.random.default_rng(0)
    p = rng.random((3, 4, 2))
    p /= p.sum()
    h_xz = conditional_entropy(p, given=(2,))
    assert h_xz == pytest.approx(entropy(p) - entropy(p.sum(axis=(0, 1))), abs=ATOL_EXACT)
    assert conditional_entropy(p, given=-1) == pytest.approx(h_xz, abs=ATOL_EXACT)


def test_mutual_information_of_copy_and_independent():
    assert mutual_information(np.eye(4) / 4) == pytest.approx(2.0, abs=ATOL_EXACT)
    assert mutual_information(np.full((3, 5), 1 / 15)) == pytest.approx(0.0, abs=ATOL_EXACT)


def test_conditional_mutual_information_xor_and_chain_rule():
    p = np.zeros((2, 2, 2))
    for t in (0, 1):
        for s in (0, 1):
            p[t ^ s, t, s] = 0.25
    assert conditional_mutual_information(p) == pytest.approx(1.0, abs=ATOL_EXACT)
    rng = np.random.default_rng(1)
    q = rng.random((3, 3, 4))
    q /= q.sum()
    # I(X; Y, Z) = I(X; Z) + I(X; Y | Z)
    lhs = mutual_information(q.reshape(3, -1))
    rhs = mutual_information(q.sum(axis=1)) + conditional_mutual_information(q)
    assert lhs == pytest.approx(rhs, abs=ATOL_EXACT)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: entropy([0.5, 0.6]), r"entropy\(\) expects `p` to be a joint pmf .*sum=1.1"),
        (lambda: entropy([0.5, -0.5, 1.0]), r"entropy\(\) expects `p` to be non-negative"),
        (lambda: entropy([np.nan, 1.0]), r"finite numbers; got 1 NaN"),
        (lambda: entropy(0.5), r"got a scalar"),
        (lambda: entropy([1.0], base=1), r"'base' parameter of entropy\(\) must be a logarithm base"),
        (lambda: entropy([1.0], base=-2), r"'base' parameter of entropy\(\) must be a positive"),
        (lambda: mutual_information(np.ones((2, 2, 2)) / 8), r"2-d joint pmf p\[x, y\]; got shape \(2, 2, 2\)"),
        (lambda: conditional_mutual_information(np.ones((2, 2)) / 4), r"3-d joint pmf"),
        (lambda: conditional_entropy(np.ones((2, 2)) / 4, given=5), r"'given' parameter"),
    ],
)
def test_bad_input_messages(call, match):
    with pytest.raises(ValueError, match=match):
        call()
