import numpy as np
import pytest

from pidkd.estimators.quantize import Quantizer, quantize


def blobs(n=300, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(3, 6)) * 5
    labels = rng.integers(0, 3, n)
    return centers[labels] + rng.normal(size=(n, 6)) * 0.1, labels


@pytest.mark.parametrize("strategy", ["kmeans", "uniform", "quantile"])
def test_deterministic_and_reusable(strategy):
    x, _ = blobs()
    q1, q2 = Quantizer(strategy, 3).fit(x), Quantizer(strategy, 3).fit(x)
    np.testing.assert_array_equal(q1.transform(x), q2.transform(x))
    codes = q1.transform(x[:10])
    assert codes.dtype == np.int64 and codes.min() >= 0 and codes.max() < q1.n_codes_
    np.testing.assert_array_equal(q1.transform(x[:10]), q1.fit_transform(x)[:10])


def test_kmeans_recovers_blobs_and_feature_maps_are_flattened():
    x, labels = blobs()
    codes = Quantizer("kmeans", 3, n_components=2).fit_transform(x.reshape(300, 1, 2, 3))
    # a perfect clustering is a relabelling: codes determine labels exactly
    assert all(len(set(labels[codes == c])) == 1 for c in np.unique(codes))


def test_quantile_bins_have_equal_mass_and_torch_input():
    codes = quantize(np.arange(100.0), n_bins=4, strategy="quantile")
    assert np.bincount(codes).tolist() == [25, 25, 25, 25]
    torch = pytest.importorskip("torch")
    np.testing.assert_array_equal(quantize(torch.arange(100.0), n_bins=4, strategy="quantile"), codes)


def test_errors():
    with pytest.raises(
        ValueError, match=r"'n_bins' parameter of Quantizer\(\) must be an int in the range \[2, 65535\]. Got 1"
    ):
        Quantizer("kmeans", 1)
    with pytest.raises(ValueError, match=r"'strategy' parameter of Quantizer\(\) must be one of"):
        Quantizer("dbscan")
    with pytest.raises(RuntimeError, match="before fit"):
        Quantizer().transform(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="at least n_bins=10 samples; got 5"):
        Quantizer().fit(np.random.default_rng(0).normal(size=(5, 3)))
    with pytest.raises(ValueError, match="finite"):
        Quantizer().fit(np.full((20, 2), np.nan))
    q = Quantizer("kmeans", 2).fit(np.random.default_rng(0).normal(size=(20, 3)))
    with pytest.raises(ValueError, match="dimension 4; it was fitted on 3"):
        q.transform(np.zeros((2, 4)))


def test_kmeans_codes_few_distinct_representations_losslessly_and_quietly():
    import warnings

    rng = np.random.default_rng(0)
    points = rng.normal(size=(3, 6))
    x = points[rng.integers(0, 3, 200)]  # 3 distinct rows, 10 codes asked for
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no k-means "distinct clusters" or PCA divide warnings
        q = Quantizer("kmeans", 10).fit(x)
        dead = Quantizer("kmeans", 10).fit_transform(np.zeros((50, 4)))  # a dead ReLU layer
    codes = q.transform(x)
    assert q.n_codes_ == 3 and len(np.unique(codes)) == 3
    # one code per distinct row: the codes carry all the information of the rows
    assert all(len(np.unique(codes[(x == p).all(axis=1)])) == 1 for p in points)
    assert dead.tolist() == [0] * 50
