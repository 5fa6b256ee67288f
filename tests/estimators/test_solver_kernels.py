"""The compiled per-cell kernels of the batched solver against the numpy expressions they replace."""

import numpy as np
import pytest

from pidkd.estimators.broja import _cell_kernel, _woodbury_kernel


def _problems(shape, seed, zero_frac=0.0):
    """Marginals of sparse pmfs (a label that never occurs in problem 0), duals and multipliers."""
    rng = np.random.default_rng(seed)
    p = rng.random(shape) * (rng.random(shape) >= zero_frac)
    p[0, -1] = 0.0
    p /= p.sum(axis=(1, 2, 3), keepdims=True)
    pyt, pys = p.sum(axis=3).transpose(0, 2, 1).copy(), p.sum(axis=2).transpose(0, 2, 1).copy()
    a = rng.normal(size=pyt.shape) + 3.0
    b = rng.normal(size=pys.shape)
    mu = rng.random((shape[0], shape[2], shape[3]))
    eps = rng.uniform(0.01, 1.0, shape[0])
    return pyt, pys, a, b, mu, eps


def _evaluate_numpy(a, b, eps, mu, pyt, pys):
    """The numpy expression the kernel replaced (pidkd 0.2's _Problems.evaluate)."""
    cell = (pyt[:, :, None, :] > 0) & (pys[:, None, :, :] > 0)
    z = np.where(cell, -(a[:, :, None, :] + b[:, None, :, :]), -np.inf)
    zmax = z.max(axis=3)
    has = np.isfinite(zmax)
    zmax = np.where(has, zmax, 0.0)
    e = np.exp(z - zmax[..., None])
    ssum = np.where(has, e.sum(axis=3), 1.0)
    ln = np.where(has, zmax + np.log(ssum), -np.inf)
    with np.errstate(over="ignore"):
        m = np.where(has, mu * np.exp(ln / eps[:, None, None]), 0.0)
    f = (pyt * a).sum(axis=(1, 2)) + (pys * b).sum(axis=(1, 2)) + eps * m.sum(axis=(1, 2))
    return f, ln, e / ssum[..., None], m


@pytest.mark.parametrize("shape, zero_frac", [((3, 7, 4, 5), 0.0), ((4, 20, 6, 3), 0.7), ((1, 100, 10, 10), 0.9)])
def test_evaluate_and_gradient_equal_the_numpy_expressions(shape, zero_frac):
    pyt, pys, a, b, mu, eps = _problems(shape, 0, zero_frac)
    got, want = _cell_kernel.evaluate(a, b, eps, mu, pyt, pys), _evaluate_numpy(a, b, eps, mu, pyt, pys)
    for x, y in zip(got, want):
        np.testing.assert_allclose(x, y, rtol=1e-13, atol=0.0)
    r, m = want[2], want[3]
    ga, gb, res = _cell_kernel.gradient(pyt, pys, r, m)
    w = m[..., None] * r
    np.testing.assert_allclose(ga, pyt - w.sum(axis=2), rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose(gb, pys - w.sum(axis=1), rtol=1e-13, atol=1e-16)
    np.testing.assert_array_equal(res, np.maximum(np.abs(ga).max(axis=(1, 2)), np.abs(gb).max(axis=(1, 2))))


def test_a_non_finite_trial_point_gives_a_non_finite_value():
    """An overflowed line-search point must be rejected: F is NaN, and so are its cells and residual."""
    pyt, pys, a, b, mu, eps = _problems((2, 5, 3, 4), 1)
    a[1, 0, 0] = np.inf
    b[0, 2, 1] = np.nan
    f, ln, r, m = _cell_kernel.evaluate(a, b, eps, mu, pyt, pys)
    assert not np.isfinite(f).any()
    assert np.isnan(m[0, :, 2]).any() and np.isnan(r[1, 0]).any()
    assert np.isnan(_cell_kernel.gradient(pyt, pys, r, m)[2]).all()


def test_polish_meets_the_marginals_and_equals_iterative_scaling():
    pyt, pys, a, b, mu, eps = _problems((3, 6, 4, 5), 2, 0.4)
    _, _, r, m = _evaluate_numpy(a, b, eps, mu, pyt, pys)
    q = m[..., None] * r
    q *= pyt.sum(axis=(1, 2))[:, None, None, None] / q.sum(axis=(1, 2, 3))[:, None, None, None]
    got = _cell_kernel.polish(q, pyt, pys, sweeps=3)
    want = q.copy()
    for _ in range(3):  # the sweeps written with numpy
        rt = want.sum(axis=2)
        want *= np.divide(pyt, rt, out=np.ones_like(rt), where=rt > 0)[:, :, None, :]
        rs = want.sum(axis=1)
        want *= np.divide(pys, rs, out=np.ones_like(rs), where=rs > 0)[:, None, :, :]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-300)
    done = _cell_kernel.polish(q, pyt, pys)
    assert np.abs(done.sum(axis=2) - pyt).max() <= 1e-15 and np.abs(done.sum(axis=1) - pys).max() <= 1e-14


@pytest.mark.parametrize("shape", [(2, 100, 10, 10), (3, 7, 3, 5), (1, 4, 6, 2)])
def test_matrix_product_capacitance_equals_the_loop_kernel(shape, monkeypatch):
    """Labels that reach every cell take the matrix-product form; it gives the loop kernel's matrix."""
    n_b, n_y, n_t, n_s = shape
    rng = np.random.default_rng(3)
    x = rng.normal(size=(n_b, n_y, n_t + n_s, n_t + n_s))
    minv = x @ x.transpose(0, 1, 3, 2)
    rho = rng.random((n_b, n_t, n_s, n_y))
    used = np.ones((n_t, n_s), dtype=bool)
    gemm = _woodbury_kernel.capacitance(rho, minv, used)
    monkeypatch.setattr(_woodbury_kernel, "GEMM_PAIRS", np.inf)  # the loop kernel only
    loop = _woodbury_kernel.capacitance(rho, minv, used)
    np.testing.assert_allclose(gemm, loop, rtol=1e-12, atol=1e-12 * np.abs(loop).max())
    np.testing.assert_allclose(gemm, gemm.transpose(0, 2, 1), rtol=1e-13, atol=1e-13 * np.abs(loop).max())
    monkeypatch.setattr(_woodbury_kernel, "GEMM_BYTES", 1)  # one problem per group
    np.testing.assert_allclose(_woodbury_kernel._capacitance_gemm(rho, minv), gemm, rtol=1e-14, atol=0.0)


@pytest.mark.parametrize("zero_frac", [0.0, 0.7])
def test_capacitance_of_one_problem_is_the_same_on_numba_threads(zero_frac):
    """One problem's loop-kernel capacitance over some of its cells: the row groups give the same bits on
    numba's threads and on the calling thread, and the numpy sum over labels up to round-off."""
    n_y, n_t, n_s = 9, 6, 7
    rng = np.random.default_rng(4)
    x = rng.normal(size=(1, n_y, n_t + n_s, n_t + n_s))
    minv = x @ x.transpose(0, 1, 3, 2)
    used = rng.random((n_t, n_s)) < 0.6
    rho = rng.random((1, n_t, n_s, n_y)) * (rng.random((1, n_t, n_s, n_y)) >= zero_frac) * used[..., None]
    flat = used.ravel()
    index = np.where(flat, np.cumsum(flat) - 1, -1).astype(np.int64)
    k = int(flat.sum())
    out = {}
    for name, kernel in (("serial", _woodbury_kernel._cap_serial), ("parallel", _woodbury_kernel._cap_parallel)):
        out[name] = np.zeros((1, k, k))
        kernel(rho, minv, n_t, index, _woodbury_kernel.CAP_PARTS, out[name])
    np.testing.assert_array_equal(out["serial"], out["parallel"])
    ct, cs = np.nonzero(used)
    u = np.zeros((n_y, n_t + n_s, k))  # u_(t,s) has rho_ts(y) at a(y, t) and at b(y, s)
    u[:, ct, np.arange(k)] = rho[0, ct, cs].T
    u[:, n_t + cs, np.arange(k)] += rho[0, ct, cs].T
    ref = np.einsum("yiu,yij,yjv->uv", u, minv[0], u)
    np.testing.assert_allclose(np.triu(out["serial"][0]), np.triu(ref), rtol=1e-12, atol=1e-12 * np.abs(ref).max())
    assert (np.tril(out["serial"][0], -1) == 0.0).all()
    full = _woodbury_kernel.capacitance(rho, minv, used)[0]
    np.testing.assert_allclose(full, ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())


def _certify_numpy(p, q, a, b):
    """The numpy certificate the kernel replaced (pidkd 0.2's _certificate.certify)."""

    def xlogx_sum(x, axes):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(x > 0, x * np.log(np.where(x > 0, x, 1.0)), 0.0).sum(axis=axes)

    pyt, pys = p.sum(axis=3), p.sum(axis=2)
    residual = np.maximum(np.abs(q.sum(axis=3) - pyt).max(axis=(1, 2)), np.abs(q.sum(axis=2) - pys).max(axis=(1, 2)))
    h = xlogx_sum(q.sum(axis=1), (1, 2)) - xlogx_sum(q, (1, 2, 3))
    cell = (pyt[:, :, :, None] > 0) & (pys[:, :, None, :] > 0)
    a, b = np.where(pyt > 0, a, 0.0), np.where(pys > 0, b, 0.0)
    z = np.where(cell, -(a[:, :, :, None] + b[:, :, None, :]), -np.inf)
    zmax = z.max(axis=1)
    has = np.isfinite(zmax)
    zmax = np.where(has, zmax, 0.0)
    with np.errstate(divide="ignore"):
        lse = zmax + np.log(np.exp(z - zmax[:, None]).sum(axis=1))
    viol = np.where(has, np.maximum(lse, 0.0), 0.0)
    repair_t = (viol.max(axis=2) * pyt.sum(axis=1)).sum(axis=1)
    repair_s = (viol.max(axis=1) * pys.sum(axis=1)).sum(axis=1)
    bound = (a * pyt).sum(axis=(1, 2)) + (b * pys).sum(axis=(1, 2)) + np.minimum(repair_t, repair_s)
    return residual, h, bound


@pytest.mark.parametrize("shape, zero_frac", [((4, 6, 5, 3), 0.0), ((3, 30, 4, 4), 0.6), ((2, 3, 12, 2), 0.3)])
def test_certificate_equals_the_numpy_expression(shape, zero_frac):
    """Same residual, entropy and bound on feasible-ish points and violated multipliers, in any layout."""
    from pidkd.estimators.broja._certificate import certify

    rng = np.random.default_rng(4)
    p = rng.random(shape) * (rng.random(shape) >= zero_frac)
    p[0, 1] = 0.0  # a label that never occurs
    p /= p.sum(axis=(1, 2, 3), keepdims=True)
    q = p * rng.uniform(0.9, 1.1, shape)
    a, b = rng.normal(size=shape[:3]), rng.normal(size=(shape[0], shape[1], shape[3]))
    want = _certify_numpy(p, q, a, b)
    for qq in (q, np.ascontiguousarray(q.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)):
        cert = certify(p, qq, a, b)
        for x, y in zip((cert.residual, cert.h, cert.bound), want):
            np.testing.assert_allclose(x, y, rtol=1e-13, atol=1e-16)
    assert np.isnan(certify(p, q, None, None).bound).all()
    a[1, 0, 0] = np.nan
    assert np.isnan(certify(p, q, a, b).gap[1]) and np.isfinite(certify(p, q, a, b).gap[0])


def test_pcg_kernels_run_alike_on_numba_threads_and_on_the_calling_thread():
    """H v and M^-1 v of the PCG step: the parallel and serial drivers give the same bits, and H v equals
    the Hessian's definition (per-label Laplacian part plus the cells' rank-one terms) in numpy."""
    from pidkd.estimators.broja import _pcg

    rng = np.random.default_rng(5)
    n_y, n_t, n_s = 6, 9, 7
    n = n_t + n_s
    kt, ks = np.nonzero(rng.random((n_t, n_s)) < 0.8)
    wk, rk, ck = rng.random((kt.size, n_y)), rng.random((kt.size, n_y)), rng.random(kt.size)
    diag, v = rng.random((n, n_y)), rng.normal(size=(n, n_y))
    out = {}
    for name, hess in (("serial", _pcg._hess_vec_serial), ("parallel", _pcg._hess_vec_parallel)):
        out[name] = np.empty_like(v)
        hess(kt, ks, wk, rk, ck, n_t, diag, np.empty((_pcg.HESS_PARTS, n, n_y)), v, out[name])
    np.testing.assert_array_equal(out["serial"], out["parallel"])
    single = np.empty_like(v)
    _pcg._hess_vec(kt, ks, wk, rk, ck, n_t, diag, v, single)  # small problems: the cells in one run
    ref = diag * v
    for k, (t, s) in enumerate(zip(kt, n_t + ks)):
        u = v[t] + v[s]  # the cell's variables a(., t) + b(., s)
        h = wk[k] * u + ck[k] * (rk[k] @ u) * rk[k]
        ref[t] += h
        ref[s] += h
    np.testing.assert_allclose(out["serial"], ref, rtol=1e-13)
    np.testing.assert_allclose(single, ref, rtol=1e-13)
    # M^-1 v and U^T M^-1 v, then M^-1 v - M^-1 U z, over 5 of the cells
    minv, rho, z = rng.random((n_y, n, n)), rng.random((5, n_y)), rng.normal(size=5)
    ct, cs = kt[:5].copy(), ks[:5].copy()
    u = np.zeros((n, n_y, 5))  # U: column k is rho_k on a(., t_k) and on b(., s_k)
    u[ct, :, np.arange(5)] += rho
    u[n_t + cs, :, np.arange(5)] += rho
    mv = np.einsum("yij,jy->iy", minv, v)
    results = {}
    for name, forward, backward in (
        ("serial", _pcg._forward_serial, _pcg._backward_serial),
        ("parallel", _pcg._forward_parallel, _pcg._backward_parallel),
    ):
        x, out_b = np.empty_like(v), np.empty_like(v)
        ut = forward(minv, n_t, ct, cs, rho, v, x)
        backward(minv, n_t, ct, cs, rho, z, x, out_b)
        results[name] = (x, ut, out_b)
    for got, want in zip(results["serial"], results["parallel"]):
        np.testing.assert_array_equal(got, want)
    x, ut, out_b = results["serial"]
    np.testing.assert_allclose(x, mv, rtol=1e-13)
    np.testing.assert_allclose(ut, np.einsum("iyk,iy->k", u, mv), rtol=1e-13)
    np.testing.assert_allclose(out_b, mv - np.einsum("yij,jy->iy", minv, u @ z), rtol=1e-13)
