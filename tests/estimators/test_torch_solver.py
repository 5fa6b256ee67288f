"""pid_batch(device=...): pidkd's Newton solver in PyTorch, against the default numpy/Numba path."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import pidkd  # noqa: E402
from pidkd.estimators.broja import _torch_newton  # noqa: E402


def atoms(rs):
    return np.array([[r.red, r.uni_t, r.uni_s, r.syn] for r in rs])


def random_pmfs(n, shape, seed, zero_frac=0.0, power=1.0):
    rng = np.random.default_rng(seed)
    ps = rng.random((n, *shape)) ** power * (rng.random((n, *shape)) >= zero_frac)
    return ps / ps.sum(axis=(1, 2, 3), keepdims=True)


@pytest.mark.parametrize(
    "shape, zero_frac, power",
    [((2, 3, 4), 0.0, 1.0), ((5, 4, 6), 0.5, 1.0), ((30, 3, 3), 0.0, 3.0), ((4, 8, 8), 0.7, 2.0)],
)
def test_torch_path_gives_the_default_paths_certified_atoms(shape, zero_frac, power):
    ps = random_pmfs(12, shape, seed=shape[0], zero_frac=zero_frac, power=power)
    ps[3, 1] = 0.0  # a label that never occurs
    ps[3] /= ps[3].sum()
    want = pidkd.pid_batch(ps)
    got = pidkd.pid_batch(ps, device="cpu")
    np.testing.assert_allclose(atoms(got), atoms(want), atol=2e-9)
    solved = [r for r in got if r.diagnostics.solver != "closed_form"]
    assert solved and all(r.diagnostics.solver == "NEWTON-torch" and r.diagnostics.converged for r in solved)
    assert max(r.diagnostics.gap for r in solved) <= 1e-9


@pytest.mark.parametrize(
    "shape, zero_frac", [((2, 3, 4), 0.0), ((30, 3, 3), 0.3), ((12, 5, 4), 0.6), ((100, 4, 4), 0.5)]
)
def test_schur_and_woodbury_steps_take_the_same_path(shape, zero_frac):
    """The two dense Newton steps solve the same system: the same iterations, the same Q to round-off."""
    ps = random_pmfs(4, shape, seed=shape[0], zero_frac=zero_frac)
    ps[1, 0] = 0.0  # a label that never occurs
    ps[1] /= ps[1].sum()
    kw = {"device": "cpu", "gap_tol": 1e-9, "residual_tol": 1e-8}
    schur = _torch_newton.solve(ps, step="schur", **kw)
    woodbury = _torch_newton.solve(ps, step="woodbury", **kw)
    assert schur[3].all() and woodbury[3].all()
    np.testing.assert_array_equal(schur[4], woodbury[4])
    np.testing.assert_allclose(schur[0], woodbury[0], atol=1e-12)


def test_many_labels_take_the_woodbury_step():
    """CIFAR-100-sized resamples (100 labels, 10 codes a side, sparse): the Woodbury step, the default atoms."""
    assert _torch_newton._step(100, 10, 10) == "woodbury" and _torch_newton._step(4, 4, 4) == "schur"
    ps = random_pmfs(3, (100, 10, 10), seed=5, zero_frac=0.8)
    got, want = pidkd.pid_batch(ps, device="cpu"), pidkd.pid_batch(ps)
    np.testing.assert_allclose(atoms(got), atoms(want), atol=2e-9)
    assert all(r.diagnostics.solver == "NEWTON-torch" and r.diagnostics.gap <= 1e-9 for r in got)


def test_problems_in_a_batch_do_not_affect_each_other():
    """Masked batch iterations: each problem follows its own stages, as when solved alone."""
    ps = np.concatenate([random_pmfs(3, (3, 5, 5), 0), random_pmfs(3, (3, 5, 5), 1, power=8.0)])
    batch = _torch_newton.solve(ps, device="cpu", gap_tol=1e-9, residual_tol=1e-10)
    for i in (0, 4):
        alone = _torch_newton.solve(ps[i : i + 1], device="cpu", gap_tol=1e-9, residual_tol=1e-10)
        assert alone[4][0] == batch[4][i]  # the same Newton iterations
        np.testing.assert_allclose(alone[0][0], batch[0][i], atol=1e-14)


def test_large_batches_are_solved_in_memory_bounded_chunks(monkeypatch):
    ps = random_pmfs(7, (20, 4, 4), 2)
    kw = {"device": "cpu", "gap_tol": 1e-9, "residual_tol": 1e-8}
    whole = _torch_newton.solve(ps, **kw)
    calls, solve = [], _torch_newton._solve

    def counted(torch, pr, p, *args):
        calls.append(len(p))
        return solve(torch, pr, p, *args)

    monkeypatch.setattr(_torch_newton, "_solve", counted)
    monkeypatch.setattr(
        _torch_newton, "MAX_BATCH_BYTES", 3 * _torch_newton._working_bytes(20, 4, 4, _torch_newton._step(20, 4, 4))
    )
    chunked = _torch_newton.solve(ps, **kw)
    assert calls == [3, 3, 1]
    for got, want in zip(chunked, whole):
        np.testing.assert_allclose(got, want, atol=1e-14)


def test_near_deterministic_inputs_are_certified():
    """Cells of mass 1e-6 to 1e-12 next to large ones (the stiff case): certified, the default path's atoms."""
    rng = np.random.default_rng(3)
    ps = []
    for tiny in (1e-6, 1e-9, 1e-12):
        p = np.full((3, 4, 4), tiny) + rng.random((3, 4, 4)) * (rng.random((3, 4, 4)) < 0.3)
        ps.append(p / p.sum())
    got, want = pidkd.pid_batch(ps, device="cpu"), pidkd.pid_batch(ps)  # strict: an uncertified solve raises
    assert all(r.diagnostics.solver == "NEWTON-torch" and r.diagnostics.gap <= 1e-9 for r in got)
    np.testing.assert_allclose(atoms(got), atoms(want), atol=2e-9)


def test_tensor_input_and_bad_arguments():
    ps = random_pmfs(4, (3, 4, 4), 7)
    got = pidkd.pid_batch(torch.tensor(ps), device=torch.device("cpu"))
    np.testing.assert_allclose(atoms(got), atoms(pidkd.pid_batch(ps)), atol=2e-9)
    with pytest.raises(ValueError, match="torch device"):
        pidkd.pid_batch(ps, device="gpu")
    with pytest.raises(ValueError, match="NEWTON solver in PyTorch"):
        pidkd.pid_batch(ps, device="cpu", solver="clarabel")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            pidkd.pid_batch(ps, device="cuda")
    big = random_pmfs(1, (50, 50, 50), 0)  # |Y||S| = |T||S| = 2500 rows
    with pytest.raises(ValueError, match="device=None"):
        pidkd.pid_batch(big, device="cpu")
    with pytest.raises(ValueError, match="device=None"):  # the Schur step would have 2100 rows
        _torch_newton.solve(random_pmfs(1, (70, 2, 30), 0), device="cpu", gap_tol=1e-9, residual_tol=1e-8, step="schur")
    with pytest.raises(ValueError, match="'step'"):
        _torch_newton.solve(ps, device="cpu", gap_tol=1e-9, residual_tol=1e-8, step="pcg")


def test_pid_from_samples_solves_its_resamples_on_the_device():
    rng = np.random.default_rng(0)
    t, s = rng.integers(0, 4, 3000), rng.integers(0, 4, 3000)
    y = (t + s + (rng.random(3000) < 0.2)) % 3
    kw = {"n_bootstrap": 20, "n_permutations": 5}
    want = pidkd.pid_from_samples(y, t, s, **kw)
    got = pidkd.pid_from_samples(y, t, s, device="cpu", **kw)
    for field in ("estimate", "null_mean", "null_high"):
        np.testing.assert_allclose(list(getattr(got, field).values()), list(getattr(want, field).values()), atol=1e-8)
    np.testing.assert_allclose(np.array(list(got.ci.values())), np.array(list(want.ci.values())), atol=1e-8)


@pytest.mark.gpu
def test_cuda_gives_the_cpu_atoms():
    ps = random_pmfs(200, (4, 5, 5), 11, zero_frac=0.3)
    got = pidkd.pid_batch(ps, device="cuda")
    np.testing.assert_allclose(atoms(got), atoms(pidkd.pid_batch(ps)), atol=2e-9)
    on_gpu = pidkd.pid_batch(torch.tensor(ps, device="cuda"))  # a GPU tensor stays on its device
    assert all(r.diagnostics.solver in ("NEWTON-torch", "closed_form") for r in on_gpu)


def test_the_stage_predictor_is_the_same_on_tensors():
    """_dual_newton._stage_shift on torch tensors (the PyTorch path's predictor) equals it on numpy arrays,
    codes without mass and empty cells (L = -inf) included."""
    from pidkd.estimators.broja._dual_newton import _stage_shift

    rng = np.random.default_rng(0)
    m, ln = rng.random((3, 5, 6)), rng.normal(size=(3, 5, 6))
    m[0, 2], ln[0, 2] = 0.0, -np.inf
    with np.errstate(invalid="ignore"):
        want = _stage_shift(m, ln)
    got = _stage_shift(torch.tensor(m), torch.tensor(ln), xp=torch)
    for w, g in zip(want, got):
        np.testing.assert_allclose(g.numpy(), w, rtol=1e-13, atol=1e-15)
