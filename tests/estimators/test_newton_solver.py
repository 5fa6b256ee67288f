"""pidkd's own solver against the cvxpy path, in batches, and on adversarial inputs."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings

import pidkd
from pidkd.estimators import distributions
from pidkd.exceptions import ConvergenceWarning
from tests.strategies import joint_pmfs


def atoms(r):
    return np.array([r.red, r.uni_t, r.uni_s, r.syn])


def random_pmf(shape, seed, zero_frac=0.0, power=1.0):
    rng = np.random.default_rng(seed)
    p = rng.random(shape) ** power * (rng.random(shape) >= zero_frac)
    return p / p.sum()


@pytest.mark.parametrize(
    "shape, zero_frac, seed",
    [((4, 4, 4), 0.0, 0), ((3, 6, 5), 0.5, 1), ((5, 8, 8), 0.8, 2), ((10, 10, 10), 0.0, 3), ((2, 12, 3), 0.3, 4)],
)
def test_newton_agrees_with_the_cone_programme(shape, zero_frac, seed):
    p = random_pmf(shape, seed, zero_frac)
    newton, ecos = pidkd.pid(p), pidkd.pid(p, solver="ECOS")
    np.testing.assert_allclose(atoms(newton), atoms(ecos), atol=1e-6)
    assert newton.diagnostics.solver == "NEWTON" and newton.diagnostics.gap <= 1e-9
    # both are certified: each value lies within the other's certified interval
    assert newton.uni_t <= ecos.uni_t + 1e-9
    assert newton.uni_t >= ecos.uni_t - ecos.diagnostics.gap - 1e-9


@given(p=joint_pmfs(max_card=4))
@settings(max_examples=30)
def test_newton_matches_clarabel_on_random_sparse_pmfs(p):
    np.testing.assert_allclose(atoms(pidkd.pid(p)), atoms(pidkd.pid(p, solver="CLARABEL")), atol=1e-6)


def test_newton_is_tighter_than_interior_point_where_they_differ():
    """Clarabel stalls near the optimum of larger problems; the Newton value is certified lower."""
    p = random_pmf((10, 24, 24), 5)
    newton = pidkd.pid(p)
    clarabel = pidkd.pid(p, solver="CLARABEL", strict=False)
    assert newton.diagnostics.gap <= 1e-9
    assert newton.uni_t <= clarabel.uni_t + 1e-12
    assert abs(newton.uni_t - clarabel.uni_t) <= max(clarabel.diagnostics.gap, 1e-9) + 1e-12


def test_batch_equals_one_by_one_and_keeps_order():
    ps = [random_pmf((3, 4, 5), s, zero_frac=0.3) for s in range(6)]
    ps += [distributions.xor(), distributions.rdn_unq_xor(), random_pmf((2, 2, 7), 9)]
    batch = pidkd.pid_batch(ps)
    assert len(batch) == len(ps)
    for p, r in zip(ps, batch):
        single = pidkd.pid(p)
        np.testing.assert_allclose(atoms(r), atoms(single), atol=1e-8)
        assert r.diagnostics.converged and r.diagnostics.q.shape == p.shape


def test_batch_of_a_4d_array_with_counts_and_base():
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 5, size=(20, 3, 3, 3))
    counts[:, 0, 0, 0] += 1
    rs = pidkd.pid_batch(counts, counts=True, base=np.e)
    for c, r in zip(counts, rs):
        assert r.base == pytest.approx(np.e)
        np.testing.assert_allclose(atoms(r), atoms(pidkd.pid(c, counts=True, base=np.e)), atol=1e-8)


def test_batch_with_cvxpy_solver_and_empty_input():
    ps = [random_pmf((2, 3, 3), s) for s in range(3)]
    rs = pidkd.pid_batch(ps, solver="CLARABEL")
    assert [r.diagnostics.solver for r in rs] == ["CLARABEL"] * 3
    assert pidkd.pid_batch([]) == []


@pytest.mark.parametrize(
    "ps, exc, match",
    [
        ("xor", TypeError, r"pid_batch\(\) expects `ps` to be a 4-d array"),
        (3.0, TypeError, r"got float"),
        ([np.full((2, 2, 2), 0.2)], ValueError, r"pid_batch\(\) expects `ps\[0\]` to be a joint pmf .*sum=1.6"),
        ([np.ones((2, 2, 2)) / 8, -np.ones((2, 2, 2))], ValueError, r"`ps\[1\]` to be non-negative"),
    ],
)
def test_batch_bad_input(ps, exc, match):
    with pytest.raises(exc, match=match):
        pidkd.pid_batch(ps)


@pytest.mark.parametrize("tiny", [1e-12, 1e-100, 1e-300])
def test_near_deterministic_inputs_converge_or_fail_honestly(tiny):
    """Entries around 1e-300 or 1e-12 next to O(1) ones: either a certified result, or a warning."""
    rng = np.random.default_rng(1)
    p = np.where(rng.random((3, 4, 4)) < 0.5, tiny, rng.random((3, 4, 4)))
    p = p / p.sum()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        r = pidkd.pid(p, strict=False)
    if r.diagnostics.converged:
        assert not caught
        assert r.diagnostics.gap <= 1e-9 and r.diagnostics.residual <= 1e-8
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            ref = pidkd.pid(p, solver="ECOS", strict=False)
        if ref.diagnostics.converged:
            np.testing.assert_allclose(atoms(r), atoms(ref), atol=1e-6)
    else:
        assert caught and "Try another solver" in str(caught[0].message)
    assert np.all(np.isfinite(atoms(r))) and atoms(r).min() >= -1e-9


def test_deterministic_relations_and_single_symbol_axes():
    # T determines Y, S is constant: Uni_T = I(Y;T), everything else 0 (closed form path)
    p = np.zeros((2, 2, 1))
    p[0, 0, 0] = p[1, 1, 0] = 0.5
    r = pidkd.pid(p)
    np.testing.assert_allclose(atoms(r), [0, 1, 0, 0], atol=1e-12)
    # one symbol of Y: nothing to decompose
    np.testing.assert_allclose(atoms(pidkd.pid(np.full((1, 3, 2), 1 / 6))), 0.0, atol=1e-12)
    # isolated support cells: block-diagonal (y, t, s)
    p = np.zeros((3, 3, 3))
    for k in range(3):
        p[k, k, k] = 1 / 3
    np.testing.assert_allclose(atoms(pidkd.pid(p)), [np.log2(3), 0, 0, 0], atol=1e-9)


@pytest.mark.parametrize("shape, zero_frac", [((4, 4, 4), 0.0), ((3, 5, 4), 0.4), ((6, 7, 7), 0.0)])
def test_numba_kernel_and_numpy_implementation_agree(shape, zero_frac):
    from pidkd.estimators.broja import _dual_newton

    ps = np.stack([random_pmf(shape, s, zero_frac) for s in range(4)])
    tol = 1e-9 * np.log(2)
    fast = _dual_newton.solve(ps, gap_tol=tol, residual_tol=1e-8, kernel="numba")
    slow = _dual_newton.solve(ps, gap_tol=tol, residual_tol=1e-8, kernel="numpy")
    assert fast.converged.all() and slow.converged.all()
    np.testing.assert_allclose(fast.cert.h, slow.cert.h, atol=2 * tol)
    assert np.all(fast.cert.gap <= tol) and np.all(slow.cert.gap <= tol)


@pytest.mark.parametrize(
    "shape, zero_frac, power",
    [((2, 5, 4), 0.0, 1.0), ((50, 6, 5), 0.0, 1.0), ((50, 4, 6), 0.6, 1.0), ((300, 3, 4), 0.3, 1.0),
     ((50, 5, 5), 0.0, 6.0), ((40, 3, 3), 0.85, 1.0)],
)  # fmt: skip
def test_woodbury_and_schur_newton_steps_solve_the_same_problem(shape, zero_frac, power):
    """The structured (per-label blocks + |T||S| rank-one terms) step against the dense Schur step."""
    from pidkd.estimators.broja import _dual_newton

    ps = np.stack([random_pmf(shape, s, zero_frac, power) for s in range(3)])
    ps[0, -1] = 0.0  # a label that never occurs
    ps[0] /= ps[0].sum()
    tol = 1e-9 * np.log(2)
    runs = {
        k: _dual_newton.solve(ps, gap_tol=tol, residual_tol=1e-8, kernel="numpy", step=k) for k in ("schur", "woodbury")
    }
    for r in runs.values():
        assert r.converged.all() and np.all(r.cert.gap <= tol) and np.all(r.cert.residual <= 1e-8)
    np.testing.assert_allclose(runs["woodbury"].cert.h, runs["schur"].cert.h, atol=2 * tol)
    # same algorithm, same iterates up to round-off: the iteration counts agree closely
    assert np.abs(runs["woodbury"].n_iter - runs["schur"].n_iter).max() <= 2


@pytest.mark.parametrize("shape, seed", [((40, 4, 5), 0), ((30, 3, 6), 1)])
def test_many_labels_agree_with_clarabel(shape, seed):
    """|Y| far above |T||S| takes the structured step; the atoms match the cone programme."""
    from pidkd.estimators.broja._dual_newton import _step_cost

    assert _step_cost(*shape)[0] == "woodbury"
    p = random_pmf(shape, seed, 0.3)
    ours, cone = pidkd.pid(p), pidkd.pid(p, solver="CLARABEL", tol=1e-6)  # Clarabel stalls near 1e-7 bits
    np.testing.assert_allclose(atoms(ours), atoms(cone), atol=1e-6)
    assert ours.diagnostics.gap <= 1e-9 and ours.diagnostics.converged


def test_block_inverse_never_raises():
    """A singular block gets its pseudo-inverse, a non-finite one NaN (no descent: the stage ends)."""
    from pidkd.estimators.broja._dual_newton import _inv_spd

    mats = np.stack([np.eye(2) * 2, np.zeros((2, 2)), np.array([[np.inf, 0.0], [0.0, 1.0]])])
    out = _inv_spd(mats)
    np.testing.assert_allclose(out[0], np.eye(2) / 2)
    np.testing.assert_allclose(out[1], 0.0)
    assert np.isnan(out[2]).all()


@pytest.mark.parametrize("shape, zero_frac", [((30, 4, 5), 0.0), ((60, 5, 3), 0.7)])
def test_compiled_woodbury_step_equals_the_dense_schur_step(shape, zero_frac, monkeypatch):
    """At every Newton step of a real solve, the step through the compiled kernels equals the dense
    Schur step; with a non-finite block one problem gets a NaN step and the others are unaffected."""
    from pidkd.estimators.broja import _dual_newton

    ps = np.stack([random_pmf(shape, s, zero_frac) for s in range(3)])
    ps[1, 2] = 0.0  # a label that never occurs
    ps[1] /= ps[1].sum()
    seen = []

    class Both(_dual_newton.WoodburyStep):
        """The Woodbury step, checked against the Schur step at every Newton step of the solve."""

        def __call__(self, pr, r, m, ga, gb, eps):
            dw, ds = super().__call__(pr, r, m, ga, gb, eps), _dual_newton.SchurStep()(pr, r, m, ga, gb, eps)
            for x, y in zip(dw, ds):
                np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-6 * np.abs(y).max())
            if pr.n_b > 1:
                m_bad = m.copy()
                m_bad[-1, 0, 0] = np.nan
                da, db = super().__call__(pr, r, m_bad, ga, gb, eps)
                assert np.isnan(da[-1]).any() and np.isfinite(da[:-1]).all() and np.isfinite(db[:-1]).all()
                np.testing.assert_array_equal(da[:-1], dw[0][:-1])
            seen.append(eps.min())
            return dw

    res = _dual_newton.solve(ps, gap_tol=1e-9, residual_tol=1e-10, kernel="numpy", step=Both())
    assert res.converged.all() and len(seen) >= 10 and min(seen) < 1e-3  # through the stiff stages


def test_solves_from_several_threads_at_once_agree_with_the_main_thread():
    """Worker threads take the serial kernels (numba's thread pool admits one launcher at a time)."""
    from concurrent.futures import ThreadPoolExecutor

    ps = [random_pmf((80, 4, 4), seed, 0.3) for seed in range(4)]
    main = [atoms(pidkd.pid(p)) for p in ps]
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(pidkd.pid, p) for p in ps]
        also_main = atoms(pidkd.pid(ps[0]))  # the main thread runs the parallel kernels meanwhile
        threaded = [atoms(f.result()) for f in futures]
    np.testing.assert_allclose(threaded, main, atol=1e-12)
    np.testing.assert_allclose(also_main, main[0], atol=1e-12)


#: Counts of a jackknife resample of a RID filter probe (digits, epoch 8) on which every Newton stage
#: after eps = 3.2e-4 started from overflowing masses (a stage had ended with L_ts = 0.065 > 0) and the
#: compiled kernel raised LinAlgError: the next eps must keep mu exp(L / eps) finite.
OVERFLOW_COUNTS = [
    (0, 0, 7, 51), (1, 1, 2, 11), (1, 1, 5, 1), (1, 1, 8, 27), (1, 1, 9, 1), (1, 3, 2, 7), (1, 3, 6, 2),
    (1, 5, 5, 1), (1, 7, 9, 2), (2, 1, 8, 3), (2, 5, 1, 1), (2, 5, 5, 45), (2, 5, 8, 2), (3, 1, 1, 1),
    (3, 1, 8, 3), (3, 3, 6, 3), (3, 5, 5, 1), (3, 6, 1, 1), (3, 6, 3, 1), (3, 7, 7, 1), (3, 8, 1, 40),
    (3, 8, 6, 1), (4, 0, 0, 1), (4, 1, 8, 1), (4, 4, 0, 1), (4, 4, 4, 46), (4, 9, 3, 1), (4, 9, 8, 2),
    (5, 3, 6, 4), (5, 3, 7, 4), (5, 7, 0, 4), (5, 7, 2, 3), (5, 7, 4, 1), (5, 7, 6, 1), (5, 7, 7, 9),
    (5, 7, 9, 27), (6, 1, 8, 1), (6, 2, 0, 52), (7, 1, 8, 2), (7, 6, 3, 45), (7, 6, 8, 1), (7, 7, 7, 1),
    (7, 7, 9, 1), (7, 9, 8, 2), (8, 1, 2, 2), (8, 1, 5, 1), (8, 1, 8, 18), (8, 3, 7, 1), (8, 6, 3, 1),
    (8, 7, 3, 1), (8, 7, 6, 1), (8, 7, 7, 1), (8, 9, 0, 1), (8, 9, 3, 3), (8, 9, 6, 10), (8, 9, 8, 9),
    (9, 3, 2, 4), (9, 3, 6, 35), (9, 7, 9, 1), (9, 9, 3, 3), (9, 9, 6, 5),
]  # fmt: skip


@pytest.mark.parametrize("kernel", ["numba", "numpy"])
def test_a_stage_ending_with_violated_constraints_does_not_overflow_the_next(kernel):
    from pidkd.estimators.broja import _dual_newton

    counts = np.zeros((10, 10, 10))
    for y, t, s, c in OVERFLOW_COUNTS:
        counts[y, t, s] = c
    p = counts / counts.sum()
    res = _dual_newton.solve(p[None], gap_tol=1e-9 * np.log(2), residual_tol=1e-8, max_iter=1000, kernel=kernel)
    assert res.converged[0] and res.cert.gap[0] <= 1e-9 * np.log(2)
    ours = pidkd.pid(counts, counts=True)
    ref = pidkd.pid(counts, counts=True, solver="CLARABEL", strict=False)
    for atom in ("red", "uni_t", "uni_s", "syn"):
        assert abs(getattr(ours, atom) - getattr(ref, atom)) < 1e-6


def test_a_compiled_kernel_failure_falls_back_to_the_numpy_path(monkeypatch):
    from pidkd.estimators.broja import _dual_newton, _kernels

    def broken(*args, **kwargs):
        raise np.linalg.LinAlgError("Array must not contain infs or NaNs.")

    monkeypatch.setattr(_kernels, "solve_small_batch", broken)
    p = random_pmf((4, 4, 4), 1, 0.0)
    res = _dual_newton.solve(p[None], gap_tol=1e-9 * np.log(2), residual_tol=1e-8)
    ref = _dual_newton.solve(p[None], gap_tol=1e-9 * np.log(2), residual_tol=1e-8, kernel="numpy")
    assert res.converged[0]
    np.testing.assert_allclose(res.cert.h, ref.cert.h, atol=1e-12)


@pytest.mark.parametrize(
    "shape, zero_frac, power",
    [((2, 12, 14), 0.0, 1.0), ((4, 15, 12), 0.5, 1.0), ((6, 10, 10), 0.0, 6.0), ((50, 6, 5), 0.0, 1.0),
     ((50, 8, 7), 0.6, 1.0), ((300, 3, 4), 0.3, 1.0)],
)  # fmt: skip
def test_pcg_newton_step_solves_the_same_problem_as_the_factorisations(shape, zero_frac, power):
    """The inexact (PCG) Newton step: same certified optimum as the dense Schur step, random and
    sparse support, near-deterministic pmfs, a label that never occurs and an empty teacher code."""
    from pidkd.estimators.broja import _dual_newton

    ps = np.stack([random_pmf(shape, s, zero_frac, power) for s in range(3)])
    ps[0, -1] = 0.0  # a label that never occurs
    ps[1, :, 1] = 0.0  # a teacher code that never occurs
    ps /= ps.sum(axis=(1, 2, 3), keepdims=True)
    tol = 1e-9 * np.log(2)
    runs = {k: _dual_newton.solve(ps, gap_tol=tol, residual_tol=1e-8, kernel="numpy", step=k) for k in ("schur", "pcg")}
    for r in runs.values():
        assert r.converged.all() and np.all(r.cert.gap <= tol) and np.all(r.cert.residual <= 1e-8)
    np.testing.assert_allclose(runs["pcg"].cert.h, runs["schur"].cert.h, atol=2 * tol)


@pytest.mark.parametrize("shape, zero_frac, seed", [((5, 9, 8), 0.0, 0), ((6, 12, 10), 0.7, 1), ((2, 14, 11), 0.3, 2)])
def test_pcg_path_agrees_with_clarabel(shape, zero_frac, seed, monkeypatch):
    """pidkd.pid through the PCG step (forced for a small shape) against the cone programme."""
    from pidkd.estimators.broja import _dual_newton

    monkeypatch.setattr(_dual_newton, "DENSE_MAX_VARS", 0)
    monkeypatch.setattr(_dual_newton, "PCG_MIN_FLOPS", 0.0)
    monkeypatch.setattr(_dual_newton, "PCG_MIN_LABELS", 0)
    assert _dual_newton._Problems(np.ones((1, *shape))).step.name == "pcg"
    p = random_pmf(shape, seed, zero_frac)
    ours, cone = pidkd.pid(p), pidkd.pid(p, solver="CLARABEL", tol=1e-6)  # Clarabel stalls near 1e-7 bits
    np.testing.assert_allclose(atoms(ours), atoms(cone), atol=1e-6)
    assert ours.diagnostics.gap <= 1e-9 and ours.diagnostics.converged


@pytest.mark.parametrize(
    "shape, step",
    [((10, 32, 32), "pcg"), ((4, 60, 60), "pcg"), ((200, 10, 10), "pcg"), ((2, 100, 100), "schur"),
     ((3, 60, 60), "schur"), ((100, 10, 10), "woodbury"), ((5, 40, 40), "pcg")],
)  # fmt: skip
def test_auto_step_choice(shape, step):
    """PCG where both factorisations are costly and there are 4 labels or more (measured choice)."""
    from pidkd.estimators.broja import _dual_newton

    assert _dual_newton._Problems(np.ones((1, *shape))).step.name == step


def test_pcg_step_of_a_non_finite_problem_is_nan_and_leaves_the_others():
    """An overflowed trial point gives that problem a NaN step (its stage ends); the batch goes on."""
    from pidkd.estimators.broja import _dual_newton, _pcg

    ps = np.stack([random_pmf((5, 9, 8), s) for s in range(3)])
    seen = []

    class Checked(_pcg.PcgStep):
        def __call__(self, pr, r, m, ga, gb, eps):
            da, db = super().__call__(pr, r, m, ga, gb, eps)
            if pr.n_b > 1:
                m_bad = m.copy()
                m_bad[-1, 0, 0] = np.inf
                bad = _pcg.PcgStep()(pr, r, m_bad, ga, gb, eps)
                assert np.isnan(bad[0][-1]).all() and np.isfinite(bad[0][:-1]).all() and np.isfinite(bad[1][:-1]).all()
                seen.append(True)
            return da, db

    res = _dual_newton.solve(ps, gap_tol=1e-9, residual_tol=1e-10, kernel="numpy", step=Checked())
    assert res.converged.all() and seen


def test_pcg_preconditioner_is_reused_and_its_cells_follow_the_support(monkeypatch):
    """A preconditioner serves several Newton steps, and at the end its cells are about the support
    of the optimal Q(t, s) (the stiff directions), far fewer than |T||S|."""
    from pidkd.estimators.broja import _dual_newton, _pcg

    made = []
    init = _pcg.PcgStep.__init__
    monkeypatch.setattr(_pcg.PcgStep, "__init__", lambda self: (init(self), made.append(self))[0])
    p = random_pmf((6, 24, 24), 3)
    res = _dual_newton.solve(p[None], gap_tol=1e-9, residual_tol=1e-10, kernel="numpy", step="pcg")
    stats = made[0].stats
    assert res.converged[0]
    assert sum(rebuilt for *_, rebuilt in stats) < len(stats) / 2
    support = int((res.q[0].sum(axis=0) > 1e-12).sum())
    assert 0 < stats[-1][1] <= 1.2 * support < 24 * 24 / 2


@pytest.mark.parametrize("step, cells, shrink", [("pcg", 144, 0.4), ("pcg", 145, 0.2), ("woodbury", 144, 0.2)])
def test_eps_schedule_is_the_one_measured_for_the_step(step, cells, shrink, monkeypatch):
    """shrink=None: eps falls by PCG_SHRINK per stage with PCG steps on problems with PCG_SHRINK_CELLS
    cells or more, by SHRINK otherwise; a given shrink is used as it is."""
    from pidkd.estimators.broja import _dual_newton

    assert (_dual_newton.PCG_SHRINK, _dual_newton.SHRINK) == (0.4, 0.2)
    monkeypatch.setattr(_dual_newton, "PCG_SHRINK_CELLS", cells)  # the problem below has 12 x 12 cells
    p = random_pmf((6, 12, 12), 4)[None]
    for chosen, expected in ((None, shrink), (0.3, 0.3)):
        trace = []
        res = _dual_newton.solve(p, gap_tol=1e-9, residual_tol=1e-10, shrink=chosen, trace=trace, step=step)
        eps = [e for e, *_ in trace]
        assert res.converged[0] and len(eps) >= 4
        np.testing.assert_allclose(np.array(eps[1:4]) / np.array(eps[:3]), expected, rtol=1e-12)


def test_stage_shift_is_the_weighted_additive_fit_of_l():
    """The predictor's alpha(t) + beta(s): exact for additive L under product weights after one sweep;
    with any weights every sweep lowers the m-weighted squared residual below the one-sided shift's,
    and codes without mass get no shift."""
    from pidkd.estimators.broja._dual_newton import _stage_shift

    rng = np.random.default_rng(3)
    u, v = rng.random((2, 7)), rng.random((2, 9))
    m = u[:, :, None] * v[:, None, :]
    ln = rng.normal(size=(2, 7, 1)) + rng.normal(size=(2, 1, 9))
    alpha, beta = _stage_shift(m, ln, sweeps=1)
    np.testing.assert_allclose(alpha[..., None] + beta[:, None, :], ln, atol=1e-12)

    m = rng.random((2, 7, 9)) ** 4
    m[:, 3, :] = 0.0  # a teacher code without mass
    ln = rng.normal(size=(2, 7, 9))

    def sse(sweeps):
        alpha, beta = _stage_shift(m, ln, sweeps=sweeps)
        return (m * (ln - alpha[..., None] - beta[:, None, :]) ** 2).sum(axis=(1, 2)), alpha

    errors = [sse(k)[0] for k in range(4)]
    assert all((later <= earlier + 1e-12).all() for earlier, later in zip(errors, errors[1:]))
    assert (errors[2] < 0.99 * errors[0]).all()
    assert (sse(2)[1][:, 3] == 0.0).all()


@pytest.mark.parametrize("shape, zero_frac", [((1, 6, 5, 4), 0.0), ((1, 30, 4, 4), 0.6), ((1, 10, 20, 20), 0.5)])
def test_the_stage_end_estimate_is_the_gap_the_certificate_finds(shape, zero_frac, monkeypatch):
    """_smoothed_gap (which decides whether a stage end gets the full certificate) is within a few percent of
    the gap certify finds on the polished Q, at every stage end of a solve (a label never occurs in one)."""
    from pidkd.estimators.broja import _dual_newton
    from pidkd.estimators.broja._certificate import certify

    p = random_pmf(shape, 7, zero_frac)
    p[0, -1] = 0.0
    p /= p.sum()
    pairs, pending = [], []
    estimate, certify_ = _dual_newton._smoothed_gap, _dual_newton._certify

    def record_estimate(pr, ln, m):
        pending.append(estimate(pr, ln, m)[0])
        return np.full(pr.n_b, -np.inf)  # the certificate at every stage end

    def record_certificate(p, m, r, a, b, gap_tol):
        fine_q = _dual_newton._polish((m[..., None] * r).transpose(0, 3, 1, 2), p)
        pairs.append((pending[-1], certify(p, fine_q, a.transpose(0, 2, 1), b.transpose(0, 2, 1)).gap[0]))
        return certify_(p, m, r, a, b, gap_tol)

    monkeypatch.setattr(_dual_newton, "_smoothed_gap", record_estimate)
    monkeypatch.setattr(_dual_newton, "_certify", record_certificate)
    res = _dual_newton.solve(p, gap_tol=1e-9, residual_tol=1e-10, kernel="numpy")
    assert res.converged[0] and len(pairs) >= 3
    est, gap = np.array(pairs).T
    np.testing.assert_allclose(est, gap, rtol=0.05, atol=1e-11)
