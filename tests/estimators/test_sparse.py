"""Sparse input and the support-restricted BROJA solver: same atoms as the dense path, no dense array."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import scipy.sparse

import pidkd
from pidkd.estimators.broja import _sparse_solve
from pidkd.estimators.sparse import SparseJoint

ATOMS = ("red", "uni_t", "uni_s", "syn")


@pytest.fixture
def on_support(monkeypatch):
    """Every sparse input runs on the support solver, every dense one on the dense solver."""
    monkeypatch.setattr(_sparse_solve, "SPARSE_RATIO", 0.0)
    monkeypatch.setattr(_sparse_solve, "AUTO_SPARSE_SIZE", 10**18)


def _coo(p):
    y, t, s = np.nonzero(p)
    return scipy.sparse.coo_array((p[y, t, s], (y, t, s)), shape=p.shape)


def _random(shape, density, rng, alpha=0.5):
    p = rng.dirichlet(np.full(int(np.prod(shape)), alpha)).reshape(shape)
    p[rng.random(shape) > density] = 0.0
    return p / p.sum()


def _near_deterministic(rng):
    p = np.full((6, 6, 5), 1e-7)
    for t in range(6):
        p[t, t, rng.integers(5)] += 1.0
    return p / p.sum()


def _unused_symbols(rng):
    p = np.zeros((9, 12, 11))
    p[2:7, 1:8:2, 3:10:3] = rng.random((5, 4, 3))
    return p / p.sum()


def _single_cell():
    p = np.zeros((3, 4, 5))
    p[1, 2, 3] = 1.0
    return p


CASES = {
    "random": lambda rng: _random((4, 5, 6), 1.0, rng),
    "structurally sparse": lambda rng: _random((30, 20, 20), 0.05, rng),
    "near deterministic": _near_deterministic,
    "unused labels and codes": _unused_symbols,
    "single cell": lambda rng: _single_cell(),
}


@pytest.mark.parametrize("case", list(CASES))
def test_sparse_matches_dense(case, on_support):
    p = CASES[case](np.random.default_rng(7))
    dense = pidkd.pid(p, tol=1e-10)
    sparse = pidkd.pid(_coo(p), tol=1e-10)
    for atom in ATOMS:
        assert getattr(sparse, atom) == pytest.approx(getattr(dense, atom), abs=1e-9)
    d = sparse.diagnostics
    assert d.converged and d.status == "optimal" and d.residual <= 1e-8 and d.gap <= 1e-10
    if d.solver != "closed_form":
        assert d.solver == "NEWTON-sparse"
        assert isinstance(d.q, scipy.sparse.coo_array)
        assert np.allclose(d.q.todense(), dense.diagnostics.q, atol=1e-6)


@pytest.mark.parametrize(("n_t", "n_s"), [(3, 7), (10, 25), (40, 25)])
def test_copy_closed_form(n_t, n_s):
    t = np.repeat(np.arange(n_t), n_s)
    s = np.tile(np.arange(n_s), n_t)
    p = {(int(a * n_s + b), int(a), int(b)): 1.0 / (n_t * n_s) for a, b in zip(t, s)}
    r = pidkd.pid(p)
    assert r.uni_t == pytest.approx(np.log2(n_t), abs=1e-6)
    assert r.uni_s == pytest.approx(np.log2(n_s), abs=1e-6)
    assert abs(r.red) <= 1e-6 and abs(r.syn) <= 1e-6
    assert r.diagnostics.converged


def test_mapping_dit_and_sparsejoint_inputs():
    dit = pytest.importorskip("dit")
    from pidkd.estimators import distributions

    p = distributions.and_()
    y, t, s = np.nonzero(p)
    mapping = {(int(a), int(b), int(c)): float(p[a, b, c]) for a, b, c in zip(y, t, s)}
    joint = SparseJoint.from_cells(p.shape, y, t, s, p[y, t, s])
    d = dit.Distribution([f"{b}{c}{a}" for a, b, c in zip(y, t, s)], [float(p[a, b, c]) for a, b, c in zip(y, t, s)])
    expected = pidkd.pid(p)
    for given in (mapping, joint, d, _coo(p)):
        r = pidkd.pid(given)
        assert [getattr(r, a) for a in ATOMS] == pytest.approx([getattr(expected, a) for a in ATOMS], abs=1e-9)
    counts = {k: 4 * v for k, v in mapping.items()}
    assert pidkd.pid(counts, counts=True).red == pytest.approx(expected.red, abs=1e-9)
    batch = pidkd.pid_batch([mapping, p, _coo(p)])
    assert [r.red for r in batch] == pytest.approx([expected.red] * 3, abs=1e-9)


@pytest.mark.parametrize("fmt", ["COO", "GCXS", "DOK"])
def test_pydata_sparse_input_on_the_support(fmt, on_support):
    sparse = pytest.importorskip("sparse")
    p = _random((30, 20, 20), 0.05, np.random.default_rng(11))
    dense = pidkd.pid(p, tol=1e-10)
    r = pidkd.pid(getattr(sparse, fmt).from_numpy(p), tol=1e-10)
    assert r.diagnostics.solver == "NEWTON-sparse" and r.diagnostics.gap <= 1e-10
    assert [getattr(r, a) for a in ATOMS] == pytest.approx([getattr(dense, a) for a in ATOMS], abs=1e-9)


def test_sparse_in_pid_batch_on_support(on_support):
    rng = np.random.default_rng(3)
    ps = [_random((12, 9, 8), 0.2, rng) for _ in range(3)]
    dense = pidkd.pid_batch(ps, tol=1e-10)
    sparse = pidkd.pid_batch([_coo(p) for p in ps], tol=1e-10)
    for a, b in zip(dense, sparse):
        assert [getattr(b, x) for x in ATOMS] == pytest.approx([getattr(a, x) for x in ATOMS], abs=1e-9)


def test_large_sparse_input_never_densified():
    """|T| = 2000, |S| = 50 copy: the dense array would take 80 GB; run under a 3 GB address-space limit."""
    code = textwrap.dedent(
        """
        import resource
        import numpy as np, scipy.sparse, pidkd
        n_t, n_s = 2000, 50
        t = np.repeat(np.arange(n_t), n_s); s = np.tile(np.arange(n_s), n_t)
        p = scipy.sparse.coo_array((np.full(t.size, 1.0 / t.size), (t * n_s + s, t, s)), shape=(n_t * n_s, n_t, n_s))
        pidkd.pid({(0, 0, 0): 0.5, (1, 1, 1): 0.5})  # compile and import before the limit
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
        r = pidkd.pid(p)
        assert abs(r.uni_t - np.log2(n_t)) < 1e-6 and abs(r.uni_s - np.log2(n_s)) < 1e-6, r
        assert r.diagnostics.converged
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


def _coords(*cells):
    y, t, s = (np.array(c) for c in zip(*cells))
    return y, t, s


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: {(0, 0, 0): -0.5, (1, 1, 1): 1.5}, "non-negative"),
        (lambda: {(0, 0, 0): np.nan, (1, 1, 1): 1.0}, "finite"),
        (
            lambda: scipy.sparse.coo_array((np.array([0.5, 0.5]), _coords((0, 0, 0), (0, 0, 0))), shape=(2, 2, 2)),
            "duplicate",
        ),
        (
            lambda: SparseJoint((2, 2, 2), *(np.array([0, 1]),) * 2, np.array([0, 3]), np.array([0.5, 0.5])),
            "inside its shape",
        ),
        (lambda: scipy.sparse.coo_array(np.eye(2) / 2), "3-d"),
        (lambda: {(0, 0): 1.0}, r"\(y, t, s\) tuples"),
    ],
    ids=["negative", "nan", "duplicate", "out-of-shape", "2-d", "key-of-two"],
)
def test_bad_sparse_input(make, match):
    with pytest.raises(ValueError, match=match):
        pidkd.pid(make())


def test_sum_not_one():
    with pytest.raises(ValueError, match="sums to 1"):
        pidkd.pid({(0, 0, 0): 0.5, (1, 1, 1): 0.6})


def test_joint_histogram_sparse():
    rng = np.random.default_rng(5)
    y, t, s = rng.integers(0, 4, 500), rng.integers(0, 30, 500), rng.integers(0, 20, 500)
    dense = pidkd.estimators.joint_histogram(y, t, s)
    sparse = pidkd.estimators.joint_histogram(y, t, s, sparse=True)
    assert isinstance(sparse, scipy.sparse.coo_array) and sparse.nnz == np.count_nonzero(dense)
    np.testing.assert_array_equal(sparse.todense(), dense)
    # at most 4 x 30 x 20 = 2,400 cells: more than 64 per sample for 20 samples, not for 500
    auto = pidkd.estimators.joint_histogram(y[:20], t[:20], s[:20], sparse=None)
    assert isinstance(auto, scipy.sparse.coo_array)
    assert isinstance(pidkd.estimators.joint_histogram(y, t, s, sparse=None), np.ndarray)
    # a table of 1e15 cells is never allocated
    big = pidkd.estimators.joint_histogram(y, t, s, n_t=10**7, n_s=10**7, sparse=True)
    assert big.shape == (4, 10**7, 10**7) and big.nnz == sparse.nnz


def test_pid_from_samples_sparse_counts_match_dense(monkeypatch, on_support):
    import warnings

    from pidkd.estimators import samples

    rng = np.random.default_rng(0)
    n = 2000
    y = rng.integers(0, 6, n)
    t, s = (y + rng.integers(0, 3, n)) % 9, (2 * y + rng.integers(0, 2, n)) % 8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", samples.SampleSizeWarning)
        dense = samples.pid_from_samples(y, t, s, n_bootstrap=6, n_permutations=2)
        monkeypatch.setattr(samples, "SPARSE_CELLS_PER_SAMPLE", 0)
        sparse = samples.pid_from_samples(y, t, s, n_bootstrap=6, n_permutations=2)
    assert sparse.pid.diagnostics.solver == "NEWTON-sparse"
    assert sparse.occupied_cells == dense.occupied_cells
    for atom in ATOMS:
        assert sparse.estimate[atom] == pytest.approx(dense.estimate[atom], abs=1e-8)
        assert sparse.ci[atom] == pytest.approx(dense.ci[atom], abs=1e-8)
        assert sparse.null_mean[atom] == pytest.approx(dense.null_mean[atom], abs=1e-8)


@pytest.mark.slow
def test_large_copy_target():
    """BROJA_2PID's large copy at |T| = 990, |S| = 25: exact atoms (timing: benchmarks/sparse_support.py)."""
    n_t, n_s = 990, 25
    t = np.repeat(np.arange(n_t), n_s)
    s = np.tile(np.arange(n_s), n_t)
    p = scipy.sparse.coo_array((np.full(t.size, 1.0 / t.size), (t * n_s + s, t, s)), shape=(t.size, n_t, n_s))
    r = pidkd.pid(p)
    assert r.uni_t == pytest.approx(np.log2(n_t), abs=1e-6) and r.uni_s == pytest.approx(np.log2(n_s), abs=1e-6)
    assert abs(r.red) <= 1e-6 and abs(r.syn) <= 1e-6


def test_cli_reads_a_sparse_npz(tmp_path, capsys):
    import json

    from pidkd.cli import main

    n_t, n_s = 30, 4
    t = np.repeat(np.arange(n_t), n_s)
    s = np.tile(np.arange(n_s), n_t)
    path = tmp_path / "copy.npz"
    coo = scipy.sparse.coo_array((np.full(t.size, 3), (t * n_s + s, t, s)), shape=(t.size, n_t, n_s))
    scipy.sparse.save_npz(path, coo)
    assert main(["pid", str(path), "--counts", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["uni_t"] == pytest.approx(np.log2(n_t), abs=1e-6) and data["status"] == "optimal"
    np.savez(tmp_path / "plain.npz", a=np.ones(3))
    assert main(["pid", str(tmp_path / "plain.npz")]) == 2
    assert "not a sparse array" in capsys.readouterr().err
