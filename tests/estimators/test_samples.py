import warnings

import numpy as np
import pytest

import pidkd
from pidkd.estimators.samples import ATOMS, SampleSizeWarning, pid_from_samples


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
    assert max(r.estimate.values()) < 2e-3 and all(lo == 0.0 for lo, _ in r.ci.values())  # jackknife interval
    assert pid_from_samples(y, t, s, n_bootstrap=0, n_permutations=0, bias_correction="none").ci == {}


def test_small_sample_bias_is_visible_in_the_null():
    rng = np.random.default_rng(4)
    y, t, s = rng.integers(0, 5, 200), rng.integers(0, 10, 200), rng.integers(0, 10, 200)
    with pytest.warns(SampleSizeWarning):
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


def test_no_correction_reproduces_the_plug_in_and_intervals_of_pidkd_0_1_0():
    """Golden values computed with the previous release's pid_from_samples on the same input.

    One interval end differs: pidkd 0.1.0's Uni_t upper end 1.0066 lay above the upper end of the
    interval of I(Y;T) = Red + Uni_t (1.0021), which bounds it now (issue 29).
    """
    rng = np.random.default_rng(11)
    y = rng.integers(0, 3, 400)
    t, s = (y + rng.integers(0, 2, 400)) % 4, rng.integers(0, 3, 400)
    r = pid_from_samples(y, t, s, n_bootstrap=30, n_permutations=4, rng=3, bias_correction="none")
    golden_ci = {
        "red": (0.0, 0.015674540248858514),
        "uni_t": (0.934855997938362, 1.0020839241660935),
        "uni_s": (0.0, 0.0),
        "syn": (0.0, 0.01432810016471382),
    }
    golden_null = {"red": 0.002383038559548155, "uni_t": 0.0068939196485777, "syn": 0.031786233470811984}
    for a, (lo, hi) in golden_ci.items():
        assert r.ci[a] == pytest.approx((lo, hi), abs=1e-12)
    for a, v in golden_null.items():
        assert r.null_mean[a] == pytest.approx(v, abs=1e-12)
    assert r.estimate == {a: getattr(r.pid, a) for a in ATOMS} and r.bias_correction == "none"
    # the default draws its jackknife groups last: bootstrap and null resamples are the same
    d = pid_from_samples(y, t, s, n_bootstrap=30, n_permutations=4, rng=3)
    assert d.null_mean == r.null_mean and d.bias_correction == "jackknife" and d.pid.red == r.pid.red


def test_pid_from_samples_is_the_composition_the_bias_study_measures():
    from pidkd.estimators.samples import _decompose_counts, _estimate, _jackknife_counts

    rng = np.random.default_rng(12)
    y = rng.integers(0, 3, 3000)
    t, s = (y + rng.integers(0, 2, 3000)) % 3, (y * rng.integers(0, 2, 3000)) % 3
    for method in ("jackknife", "bootstrap"):
        r = pid_from_samples(y, t, s, n_bootstrap=40, n_permutations=0, rng=9, bias_correction=method)
        gen = np.random.default_rng(9)
        counts = np.zeros((3, 3, 3), dtype=np.int64)
        flat = (y * 3 + t) * 3 + s
        np.add.at(counts.ravel(), flat, 1)
        boots = [np.bincount(flat[gen.integers(0, 3000, 3000)], minlength=27) for _ in range(40)]
        boot = _decompose_counts(np.stack(boots).reshape(40, 3, 3, 3))
        jack = _decompose_counts(_jackknife_counts(flat, counts, 20, gen)) if method == "jackknife" else None
        plug = _decompose_counts(counts[None])[0]
        est, ci, bounded, _ = _estimate(plug, boot, jack, method, 0.9, counts.shape, 2.0)
        assert bounded == r.bounded
        np.testing.assert_allclose([r.estimate[a] for a in ATOMS], est, atol=1e-12)
        np.testing.assert_allclose([r.ci[a] for a in ATOMS], ci.T, atol=1e-12)


def _draw(p, n, rng):
    flat = rng.choice(p.size, n, p=p.ravel())
    return np.unravel_index(flat, p.shape)


def test_jackknife_removes_most_of_the_bias_of_a_known_pmf_and_its_intervals_cover():
    """Random 4x4x4 pmf, 5 samples per cell, 40 seeded draws: known truth from the pmf itself."""
    p = np.random.default_rng(5).dirichlet(np.ones(64)).reshape(4, 4, 4)
    truth = np.array([getattr(pidkd.pid(p), a) for a in ATOMS])
    rng = np.random.default_rng(13)
    plug, corr, covered = [], [], np.zeros(4)
    for i in range(40):
        y, t, s = _draw(p, 320, rng)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SampleSizeWarning)
            r = pid_from_samples(y, t, s, n_bootstrap=50, n_permutations=0, rng=i)
        plug.append([getattr(r.pid, a) for a in ATOMS])
        corr.append([r.estimate[a] for a in ATOMS])
        covered += [r.ci[a][0] <= v <= r.ci[a][1] for a, v in zip(ATOMS, truth)]
    bias_plug, bias_corr = np.mean(plug, axis=0) - truth, np.mean(corr, axis=0) - truth
    assert abs(bias_corr[3]) < abs(bias_plug[3]) / 3  # Syn, the atom with most bias
    assert np.all(np.abs(bias_corr) <= np.maximum(np.std(corr, axis=0), 0.02))
    # 90% nominal; 40 draws: a binomial(40, 0.9) falls below 31 with probability < 1%
    assert np.all(covered >= 31), covered


def test_sample_size_warning_and_reliable_flag():
    rng = np.random.default_rng(4)
    y, t, s = rng.integers(0, 5, 200), rng.integers(0, 10, 200), rng.integers(0, 10, 200)
    with pytest.warns(SampleSizeWarning, match=r"1.2 samples per occupied cell \(200 samples, 160 of 500"):
        r = pid_from_samples(y, t, s, n_bootstrap=0, n_permutations=0)
    assert not r.reliable and r.as_dict()["reliable"] is False
    with warnings.catch_warnings():
        warnings.simplefilter("error", SampleSizeWarning)
        big = pid_from_samples(rng.integers(0, 2, 400), rng.integers(0, 2, 400), rng.integers(0, 2, 400))
    assert big.reliable


def test_row_has_estimates_plug_in_columns_and_the_correction():
    rng = np.random.default_rng(0)
    t, s = rng.integers(0, 2, 3000), rng.integers(0, 2, 3000)
    row = pid_from_samples(t ^ s, t, s, n_bootstrap=20, n_permutations=2).as_dict()
    assert row["bias_correction"] == "jackknife" and row["syn_plugin"] == pytest.approx(1.0, abs=0.01)
    assert row["syn"] != row["syn_plugin"] and row["syn_lo"] <= row["syn"] <= row["syn_hi"]
    assert {"mi_ts", "status", "gap", "samples_per_cell", "reliable", "red_null"} <= set(row)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (
            {"bias_correction": "jack"},
            ValueError,
            r"'bias_correction' parameter of pid_from_samples\(\) must be one of",
        ),
        ({"bias_correction": None}, ValueError, r"must be one of 'jackknife', 'bootstrap', 'none'. Got None"),
        ({"bias_correction": "bootstrap", "n_bootstrap": 0}, ValueError, r"bias_correction='bootstrap' with n_boot"),
    ],
)
def test_bad_bias_correction(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        pid_from_samples([0, 1], [0, 1], [0, 1], **kwargs)


BAR = "pid_from_samples resamples"  # the progress bar's description


def xor_samples(n=2000):
    rng = np.random.default_rng(0)
    t, s = rng.integers(0, 2, n), rng.integers(0, 2, n)
    return t ^ s, t, s


def outcome(r):
    """Everything of a SamplePID but the solve time."""
    return {k: v for k, v in r.as_dict().items() if k != "solve_time"}


@pytest.mark.parametrize("sparse", [False, True])
def test_progress_bar_counts_the_resample_solves_and_changes_no_result(capsys, monkeypatch, sparse):
    from pidkd.estimators import samples

    if sparse:  # counted sparsely (_decompose_joints): the resamples are solved 16 at a time
        monkeypatch.setattr(samples, "SPARSE_CELLS_PER_SAMPLE", 0)
    kw = dict(n_bootstrap=10, n_permutations=2)
    default = pid_from_samples(*xor_samples(), **kw)
    assert capsys.readouterr().err == ""  # a 2x2x2 table: no bar by default
    shown = pid_from_samples(*xor_samples(), progress=True, **kw)
    err = capsys.readouterr().err
    assert BAR in err and "32/32" in err  # 10 bootstrap + 2 permutation + 20 jackknife solves
    off = pid_from_samples(*xor_samples(), progress=False, **kw)
    assert capsys.readouterr().err == ""
    assert outcome(shown) == outcome(default) == outcome(off)


def test_progress_by_default_from_progress_cells_on_and_never_without_resamples(capsys, monkeypatch):
    from pidkd.estimators import samples

    monkeypatch.setattr(samples, "PROGRESS_CELLS", 8)  # the 2x2x2 table counts as large
    pid_from_samples(*xor_samples(), n_bootstrap=4, n_permutations=0, bias_correction="bootstrap")
    assert "4/4" in capsys.readouterr().err
    pid_from_samples(*xor_samples(), n_bootstrap=0, n_permutations=0, bias_correction="none", progress=True)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("value", ["yes", 1, 0.0])
def test_bad_progress(value):
    with pytest.raises(TypeError, match=r"'progress' parameter of pid_from_samples\(\) must be a bool \(True or "):
        pid_from_samples([0, 1], [0, 1], [0, 1], progress=value)


def test_sparse_resamples_are_batched_within_the_dense_cell_budget(monkeypatch):
    """Densified sparse tables are solved as one dense batch: _decompose_joints bounds it as _decompose_counts does."""
    from pidkd.estimators import samples

    monkeypatch.setattr(samples, "SPARSE_CELLS_PER_SAMPLE", 0)  # count sparsely
    kw = dict(n_bootstrap=10, n_permutations=2)
    reference = pid_from_samples(*xor_samples(), **kw)
    batches = []
    real = samples.pid_batch

    def recording(joints, **kwargs):
        batches.append(len(joints))
        return real(joints, **kwargs)

    monkeypatch.setattr(samples, "pid_batch", recording)
    monkeypatch.setattr(samples, "_BATCH_CELLS", 24)  # three 2x2x2 tables per batch
    bounded = pid_from_samples(*xor_samples(), **kw)
    assert batches and max(batches) == 3 and sum(batches) == 32  # 10 bootstrap + 2 permutation + 20 jackknife
    assert outcome(bounded) == outcome(reference)
    batches.clear()
    monkeypatch.setattr(samples, "_BATCH_CELLS", 1)  # smaller than one table: one at a time
    pid_from_samples(*xor_samples(), **kw)
    assert set(batches) == {1}


@pytest.mark.parametrize("sparse", [False, True])
def test_resamples_in_processes_give_the_same_estimate(capsys, monkeypatch, sparse):
    from pidkd.estimators import samples

    if sparse:  # counted sparsely (_decompose_joints)
        monkeypatch.setattr(samples, "SPARSE_CELLS_PER_SAMPLE", 0)
    kw = dict(n_bootstrap=6, n_permutations=2)
    here = pid_from_samples(*xor_samples(), **kw)
    there = pid_from_samples(*xor_samples(), n_jobs=2, progress=True, **kw)
    assert "28/28" in capsys.readouterr().err  # 6 bootstrap + 2 permutation + 20 jackknife solves
    assert outcome(there) == outcome(here)


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        (dict(n_jobs=0), ValueError, "non-zero int"),
        (dict(n_jobs=1.5), TypeError, "'n_jobs' parameter of pid_from_samples"),
        (dict(n_jobs=2, device="cpu"), ValueError, "device='cpu' and n_jobs=2"),
    ],
)
def test_bad_n_jobs(kw, error, match):
    with pytest.raises(error, match=match):
        pid_from_samples([0, 1], [0, 1], [0, 1], **kw)
