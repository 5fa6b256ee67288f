import numpy as np
import pytest

from pidkd.estimators.histogram import JointHistogram, joint_histogram


def reference(y, t, s, shape):
    out = np.zeros(shape, dtype=np.int64)
    np.add.at(out, (y, t, s), 1)
    return out


@pytest.mark.parametrize("n", [0, 1, 7, 250_001])
def test_kernel_equals_numpy_reference(n):
    rng = np.random.default_rng(n)
    y, t, s = rng.integers(0, 3, n), rng.integers(0, 17, n), rng.integers(0, 5, n)
    got = joint_histogram(y, t, s, n_y=3, n_t=17, n_s=5)
    np.testing.assert_array_equal(got, reference(y, t, s, (3, 17, 5)))
    assert got.dtype == np.int64 and got.sum() == n


def test_default_sizes_and_normalize():
    c = joint_histogram([0, 2], [1, 1], [0, 3])
    assert c.shape == (3, 2, 4)
    np.testing.assert_allclose(joint_histogram([0, 2], [1, 1], [0, 3], normalize=True).sum(), 1.0)


def test_streaming_equals_one_shot_and_merge():
    rng = np.random.default_rng(1)
    y, t, s = rng.integers(0, 4, 10_000), rng.integers(0, 9, 10_000), rng.integers(0, 9, 10_000)
    h = JointHistogram(4, 9, 9)
    for lo in range(0, 10_000, 999):
        h.update(y[lo : lo + 999], t[lo : lo + 999], s[lo : lo + 999])
    np.testing.assert_array_equal(h.compute(), joint_histogram(y, t, s, n_y=4, n_t=9, n_s=9))
    a, b = (
        JointHistogram(4, 9, 9).update(y[:5000], t[:5000], s[:5000]),
        JointHistogram(4, 9, 9).update(y[5000:], t[5000:], s[5000:]),
    )
    np.testing.assert_array_equal(a.merge(b).compute(), h.compute())
    assert h.n_samples == 10_000 and h.compute(normalize=True).sum() == pytest.approx(1.0)
    assert h.reset().n_samples == 0


@pytest.mark.parametrize(
    "args, kwargs, exc, match",
    [
        (([0, -1], [0, 0], [0, 0]), {}, ValueError, r"`y` to hold non-negative codes; got -1 at sample 1"),
        (([0, 1], [0], [0, 0]), {}, ValueError, r"one code per sample each; got lengths \[2, 1, 2\]"),
        (([0.5], [0], [0]), {}, ValueError, r"`y` to hold integer codes; got non-integer values \(e.g. 0.5\)"),
        (([[0, 1]], [0], [0]), {}, ValueError, r"1-d array of integer codes"),
        ((["a"], [0], [0]), {}, TypeError, r"integer array; got dtype <U1"),
        (([0, 5], [0, 0], [0, 0]), {"n_y": 3}, ValueError, r"code 5 that is out of range for n_y=3"),
        (([], [], []), {"normalize": True}, ValueError, r"no samples"),
    ],
)
def test_bad_codes(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        joint_histogram(*args, **kwargs)


def test_streaming_errors():
    h = JointHistogram(2, 2, 2)
    with pytest.raises(ValueError, match="out of range for n_t=2"):
        h.update([0], [2], [0])
    with pytest.raises(ValueError, match=r"expects a JointHistogram of shape \(2, 2, 2\); got \(3, 2, 2\)"):
        h.merge(JointHistogram(3, 2, 2))
    with pytest.raises(ValueError, match="no samples were counted"):
        h.compute(normalize=True)


@pytest.mark.parametrize("n", [50, 250_001])  # numpy path for small inputs, parallel kernel for large ones
def test_out_of_range_code_is_caught_on_both_paths(n):
    y, t, s = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    s[-1] = 4
    with pytest.raises(ValueError, match="code 4 that is out of range for n_s=4"):
        joint_histogram(y, t, s, n_y=1, n_t=1, n_s=4)
    h = JointHistogram(1, 1, 4)
    with pytest.raises(ValueError, match="out of range"):
        h.update(y, t, s)
    assert h.n_samples == 0 and h.compute().sum() == 0  # nothing counted


def test_large_input_without_sizes_takes_each_alphabet_from_its_own_codes():
    rng = np.random.default_rng(2)
    n = 250_003  # parallel kernels, and a last block shorter than the others
    y, t, s = rng.integers(0, 3, n), rng.integers(0, 17, n), rng.integers(0, 5, n)
    y[0], t[-1], s[n // 2] = 6, 20, 9  # the maxima sit in different chunks of each array
    got = joint_histogram(y, t, s)
    assert got.shape == (7, 21, 10)
    np.testing.assert_array_equal(got, reference(y, t, s, (7, 21, 10)))


@pytest.mark.parametrize("name", ["y", "t", "s"])
def test_negative_code_is_caught_in_the_fused_range_pass(name):
    codes = {k: np.zeros(250_001, dtype=np.int64) for k in "yts"}
    codes[name][123_457] = -3
    with pytest.raises(ValueError, match=rf"`{name}` to hold non-negative codes; got -3 at sample 123457"):
        joint_histogram(codes["y"], codes["t"], codes["s"])
    with pytest.raises(ValueError, match="out of range|non-negative"):
        joint_histogram(codes["y"], codes["t"], codes["s"], n_y=1, n_t=1, n_s=1)
