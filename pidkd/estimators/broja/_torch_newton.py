"""pidkd's Newton solver in PyTorch: a batch of BROJA programmes solved together on any torch device.

The same algorithm as :mod:`pidkd.estimators.broja._dual_newton` (exponential multiplier stages,
damped Newton steps on the smooth dual, the Schur-complement or the Woodbury Newton step, Armijo line search,
iterative-scaling polish, the certified duality gap as the only stopping rule), written as masked
operations on the whole batch: every iteration computes on every problem and keeps the results of
the problems that are still running, so a GPU runs one kernel per operation for thousands of
problems instead of one launch per problem. The host reads a handful of flags per iteration (whether
any problem is still running, still searching its step or ending a stage), never per problem. At a
stage's end the problems that end it are copied to the host and checked by the numpy path's own
polish and certificate (``_dual_newton._certify``), so there is one certificate, in one place.

Built for many small problems (bootstrap resamples, probes, sweeps). Each Newton system is solved
densely: the s-side Schur complement (|S||Y| rows) or, when that costs more (many labels, few cells),
the Woodbury capacitance system over the |T||S| cells (:func:`_step`). Either way its size is
bounded by :data:`MAX_ROWS`; larger alphabets belong on the numpy path (``device=None``).
Everything runs in float64. The caller certifies the returned (q, a, b) again with
:func:`pidkd.estimators.broja._certificate.certify`, as it does for every solver.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from pidkd.estimators.broja import _dual_newton
from pidkd.estimators.broja._schedule import _MAX_STAGES, RIDGE, RIDGE_FLOOR, _stage_shift, torch_rules

__all__ = ["MAX_BATCH_BYTES", "MAX_ROWS", "solve"]

#: Largest dense Newton system (|S||Y| rows for the Schur step, |T||S| for the Woodbury step) the torch path
#: takes; larger problems belong on the numpy path.
MAX_ROWS = 2048
#: Problems are solved in chunks of at most this much working memory on the device (:func:`_working_bytes`).
MAX_BATCH_BYTES = 2 * 2**30


def _step(n_y: int, n_t: int, n_s: int) -> str:
    """The Newton step with fewer flops in this module's batched form.

    "schur": forming the s-side Schur complement, 2 |T||Y| (|S||Y|)^2, and factoring it, (|S||Y|)^3 / 3.
    "woodbury": the per-label blocks, |Y| (|T|+|S|)^3, the capacitance matrix as one product,
    2 |Y| (|T|+|S|) (|T||S|)^2, and its factorisation, (|T||S|)^3 / 3 (:meth:`_Batch.woodbury_step`).
    """
    n, cells, rows = n_t + n_s, n_t * n_s, n_s * n_y
    schur = 2 * (n_t * n_y) * rows**2 + rows**3 / 3
    woodbury = n_y * n**3 + 2 * n_y * n * cells**2 + cells**3 / 3
    return "woodbury" if woodbury < schur else "schur"


class _Batch:
    """Constants of a batch of same-shaped problems in (batch, t, s, y) layout, on one device."""

    def __init__(self, torch: Any, p: Any):
        self.torch = torch
        self.p = p
        self.n_b, self.n_y, self.n_t, self.n_s = p.shape
        self.pyt = p.sum(dim=3).transpose(1, 2).contiguous()  # [B, t, y]
        self.pys = p.sum(dim=2).transpose(1, 2).contiguous()  # [B, s, y]
        self.cell = (self.pyt[:, :, None, :] > 0) & (self.pys[:, None, :, :] > 0)  # [B, t, s, y]
        self.nonempty = self.cell.any(dim=3)
        self.dummy_a = (self.pyt <= 0).to(p.dtype)
        self.dummy_b = (self.pys <= 0).to(p.dtype)
        self.pin = self.pys.argmax(dim=1)  # [B, y]: the pinned b(y, s) of the gauge
        self.step = "schur"

    def newton_step(self, r, m, ga, gb, eps):
        """Solve H d = -g for every problem, with :attr:`step` ("schur" or "woodbury")."""
        if self.step == "woodbury":
            return self.woodbury_step(r, m, ga, gb, eps)
        return self.schur_step(r, m, ga, gb, eps)

    def evaluate(self, a, b, eps, mu):
        """F [B], L [B,t,s], softmax r [B,t,s,y], masses m [B,t,s], as ``_Problems.evaluate``."""
        torch = self.torch
        z = torch.where(self.cell, -(a[:, :, None, :] + b[:, None, :, :]), -torch.inf)
        zmax = z.amax(dim=3)
        has = torch.isfinite(zmax)
        zmax = torch.where(has, zmax, 0.0)
        e = torch.exp(z - zmax[..., None])
        ssum = torch.where(has, e.sum(dim=3), 1.0)
        ln = torch.where(has, zmax + torch.log(ssum), -torch.inf)
        r = e / ssum[..., None]
        m = torch.where(has, mu * torch.exp(ln / eps[:, None, None]), 0.0)
        f = (self.pyt * a).sum(dim=(1, 2)) + (self.pys * b).sum(dim=(1, 2)) + eps * m.sum(dim=(1, 2))
        return f, ln, r, m

    def gradient(self, r, m):
        w = m[..., None] * r
        ga, gb = self.pyt - w.sum(dim=2), self.pys - w.sum(dim=1)
        res = ga.abs().amax(dim=(1, 2)).maximum(gb.abs().amax(dim=(1, 2)))
        return ga, gb, res

    def schur_step(self, r, m, ga, gb, eps):
        """Solve H d = -g for every problem (Schur complement on the s side), as ``_dual_newton.SchurStep``."""
        torch = self.torch
        nb, n_y, n_t, n_s = self.n_b, self.n_y, self.n_t, self.n_s
        w = m[..., None] * r  # [B, t, s, y]
        k = (1.0 / eps - 1.0)[:, None, None, None, None] * (w[..., :, None] * r[..., None, :])
        iy = torch.arange(n_y, device=r.device)
        k[..., iy, iy] += w
        da_blk = k.sum(dim=2)  # [B, t, y, y]
        db_blk = k.sum(dim=1)  # [B, s, y, y]
        ridge = RIDGE * k.abs().amax(dim=(1, 2, 3, 4)) + RIDGE_FLOOR
        da_blk[..., iy, iy] += self.dummy_a + ridge[:, None, None]
        db_blk[..., iy, iy] += self.dummy_b + ridge[:, None, None]
        da_inv = _inv_spd(torch, da_blk)
        c = k.permute(0, 1, 3, 2, 4).reshape(nb, n_t * n_y, n_s * n_y)
        dinv_c = torch.matmul(da_inv[:, :, None], k).permute(0, 1, 3, 2, 4).reshape(nb, n_t * n_y, n_s * n_y)
        schur = -torch.matmul(c.transpose(1, 2), dinv_c)
        blocks = schur.view(nb, n_s, n_y, n_s, n_y)
        i_s = torch.arange(n_s, device=r.device)
        blocks[:, i_s, :, i_s, :] += db_blk.transpose(0, 1)
        ra, rb = -ga.reshape(nb, -1), -gb.reshape(nb, -1)
        rhs = rb - torch.einsum("bij,bi->bj", dinv_c, ra)
        pin = self.pin * n_y + iy  # [B, y]
        ib = torch.arange(nb, device=r.device)[:, None]
        schur[ib, pin, :] = 0.0
        schur[ib, :, pin] = 0.0
        schur[ib, pin, pin] = 1.0
        rhs[ib, pin] = 0.0
        db = _solve_spd(torch, schur, rhs)
        da = torch.einsum("btyz,btz->bty", da_inv, (ra - torch.einsum("bij,bj->bi", c, db)).reshape(nb, n_t, n_y))
        return da, db.reshape(nb, n_s, n_y)

    def woodbury_step(self, r, m, ga, gb, eps):
        """Solve H d = -g through H's structure, as ``_dual_newton.WoodburyStep``: per-label blocks M_y plus
        one rank-one term per cell, H^-1 = M^-1 - M^-1 U C^-1 U^T M^-1 with C = I + U^T M^-1 U over the
        |T||S| cells.

        Batched form: per label, A_y = P D_y (|T|+|S| by |T||S|: rho_ts(y) at a(y, t) and at b(y, s)) and
        X_y = M_y^-1 A_y; then C - I = sum_y A_y^T X_y is one matrix product per problem over the stacked
        labels, and no per-label |T||S|-square matrix is ever formed.
        """
        torch = self.torch
        nb, n_y, n_t, n_s = self.n_b, self.n_y, self.n_t, self.n_s
        n, cells, dev, f64 = n_t + n_s, n_t * n_s, r.device, r.dtype
        w = m[..., None] * r  # [B, t, s, y]
        inv_eps = 1.0 / eps
        ridge = RIDGE * (w.abs().amax(dim=(1, 2, 3)) * inv_eps.clamp(min=1.0)) + RIDGE_FLOOR
        it, is_ = torch.arange(n_t, device=dev), n_t + torch.arange(n_s, device=dev)
        blk = torch.zeros(nb, n_y, n, n, dtype=f64, device=dev)
        blk[:, :, it, it] = (w.sum(dim=2) + self.dummy_a).transpose(1, 2) + ridge[:, None, None]
        blk[:, :, is_, is_] = (w.sum(dim=1) + self.dummy_b).transpose(1, 2) + ridge[:, None, None]
        blk[:, :, :n_t, n_t:] = w.permute(0, 3, 1, 2)  # d2F / da(y,t) db(y,s) = w_ts(y)
        blk[:, :, n_t:, :n_t] = w.permute(0, 3, 2, 1)
        ib, iy = torch.arange(nb, device=dev)[:, None], torch.arange(n_y, device=dev)[None, :]
        pin = n_t + self.pin  # [B, y]: the pinned b(y, .) in each block
        blk[ib, iy, pin, :] = 0.0
        blk[ib, iy, :, pin] = 0.0
        blk[ib, iy, pin, pin] = 1.0
        minv = _inv_spd(torch, blk)
        minv[ib, iy, pin, :] = 0.0  # the pinned variable is not a variable
        minv[ib, iy, :, pin] = 0.0
        c = (m * (inv_eps - 1.0)[:, None, None]).clamp(min=0.0)
        rho = (c.sqrt()[..., None] * r).permute(0, 3, 1, 2).reshape(nb, n_y, cells)  # [B, y, cells]
        cell = torch.arange(cells, device=dev)
        a_mat = torch.zeros(nb, n_y, n, cells, dtype=f64, device=dev)
        a_mat[:, :, cell // n_s, cell] = rho
        a_mat[:, :, n_t + cell % n_s, cell] = rho
        x_mat = torch.matmul(minv, a_mat)  # [B, y, n, cells]
        cap = torch.matmul(a_mat.permute(0, 3, 1, 2).reshape(nb, cells, n_y * n), x_mat.reshape(nb, n_y * n, cells))
        cap = 0.5 * (cap + cap.transpose(1, 2))
        cap[:, cell, cell] += 1.0
        g = -torch.cat([ga, gb], dim=1).transpose(1, 2).contiguous()  # [B, y, n]: -gradient
        g[ib, iy, pin] = 0.0
        mg = torch.matmul(minv, g[..., None])[..., 0]
        utmg = torch.einsum("byic,byi->bc", a_mat, mg)  # U^T M^-1 g
        z = _solve_spd(torch, cap, utmg)
        d = mg - torch.matmul(minv, torch.einsum("byic,bc->byi", a_mat, z)[..., None])[..., 0]
        return d[..., :n_t].transpose(1, 2), d[..., n_t:].transpose(1, 2)


def _inv_spd(torch, mat):
    """Inverses of a stack of symmetric positive semidefinite matrices; pseudo-inverses where singular,
    NaN where not finite (as ``_dual_newton._inv_spd``)."""
    inv, info = torch.linalg.inv_ex(mat)
    finite = torch.isfinite(mat).flatten(-2).all(dim=-1)
    bad = (info != 0) & finite
    if bool(bad.any()):  # rare: the pseudo-inverses only then
        pinv = torch.linalg.pinv(torch.where(finite[..., None, None], mat, 0.0), hermitian=True)
        inv = torch.where(bad[..., None, None], pinv, inv)
    return torch.where(finite[..., None, None], inv, torch.nan)


def _solve_spd(torch, mat, rhs):
    """Solve a stack of symmetric positive (semi)definite systems (least squares where singular)."""
    sol, info = torch.linalg.solve_ex(mat, rhs[..., None])
    sol = sol[..., 0]
    finite = torch.isfinite(mat).flatten(-2).all(dim=-1) & torch.isfinite(rhs).all(dim=-1)
    bad = (info != 0) & finite
    if bool(bad.any()):  # rare: least squares (pseudo-inverse) only then
        safe = torch.where(finite[..., None, None], mat, 0.0)
        lstsq = torch.linalg.pinv(safe, hermitian=True) @ torch.where(finite[..., None], rhs, 0.0)[..., None]
        sol = torch.where(bad[..., None], lstsq[..., 0], sol)
    return torch.where(finite[..., None], sol, torch.nan)


def _stage_ends(torch, pr, p, ends, m, r, a, b, gap_tol):
    """Residual and gap of the problems ``ends`` (a boolean mask) at their current points, +inf for the
    others: :func:`pidkd.estimators.broja._dual_newton._certify` (polish near the tolerance, then the
    one certificate) on host copies of those problems only."""
    idx = ends.nonzero()[:, 0]
    host = [x[idx].cpu().numpy() for x in (m, r, a, b)]
    cert = _dual_newton._certify(p[idx.cpu().numpy()], *host, gap_tol)[0]
    full = torch.full((pr.n_b,), torch.inf, dtype=m.dtype, device=m.device)
    residual = full.index_copy(0, idx, torch.as_tensor(cert.residual, device=m.device))
    return residual, full.index_copy(0, idx, torch.as_tensor(cert.gap, device=m.device))


def _pick(mask, new, old):
    """``new`` where ``mask`` (over the batch axis), else ``old``."""
    return new.where(mask.view(-1, *([1] * (new.dim() - 1))), old)


def solve(
    p: NDArray[np.float64],
    *,
    device: Any,
    gap_tol: float,
    residual_tol: float,
    max_iter: int = 500,
    shrink: float = 0.2,
    eps_min: float = 1e-8,
    step: str = "auto",
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_], NDArray[np.int64]]:
    """Solve a batch ``p[B, y, t, s]`` (validated pmfs) on the torch ``device``.

    ``step``: "auto" (the cheaper of the two by :func:`_step`), "schur" or "woodbury"; both give the same
    Newton step up to round-off. Returns q [B, y, t, s] (polished onto the marginals), a [B, y, t],
    b [B, y, s], whether each problem reached ``gap <= gap_tol`` and ``residual <= residual_tol`` (nats)
    at a stage's end, and its Newton iterations, all as numpy arrays on the host.
    """
    import torch

    n_y, n_t, n_s = p.shape[1:]
    if step not in ("auto", "schur", "woodbury"):
        raise ValueError(f"The 'step' parameter must be 'auto', 'schur' or 'woodbury'. Got {step!r}.")
    step = _step(n_y, n_t, n_s) if step == "auto" else step
    rows = n_t * n_s if step == "woodbury" else n_s * n_y
    if rows > MAX_ROWS:
        raise ValueError(
            f"pid_batch(device=...) solves each problem's Newton system densely, here with {rows} rows (|Y||S| = "
            f"{n_s * n_y}, |T||S| = {n_t * n_s}; most {MAX_ROWS}); for alphabets this large use device=None "
            "(pidkd's structured steps)."
        )
    dev = torch.device(device)
    per = max(1, MAX_BATCH_BYTES // _working_bytes(n_y, n_t, n_s, step))
    parts = []
    for lo in range(0, len(p), per):  # problems do not affect each other: chunks only bound the memory
        chunk = p[lo : lo + per]
        pr = _Batch(torch, torch.as_tensor(chunk, dtype=torch.float64, device=dev))
        pr.step = step
        # as the numpy path: the host checks may meet overflowed trial points, which fail their certificate
        with torch.no_grad(), np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
            parts.append(_solve(torch, pr, chunk, gap_tol, residual_tol, max_iter, shrink, eps_min))
    return tuple(np.concatenate(x) for x in zip(*parts))


def _working_bytes(n_y: int, n_t: int, n_s: int, step: str) -> int:
    """Device memory one problem takes while it is solved, about: the step's dense arrays and the float64
    [t, s, y] arrays of the iteration (softmax, masses, trial points)."""
    n, cells = n_t + n_s, n_t * n_s
    if step == "woodbury":
        dense = 2 * n_y * n * cells + 2 * n_y * n * n + 2 * cells * cells
    else:
        dense = 4 * cells * n_y * n_y + 2 * (n_s * n_y) ** 2
    return 8 * (dense + 12 * cells * n_y)


def _solve(torch, pr, p, gap_tol, residual_tol, max_iter, shrink, eps_min):
    rules = torch_rules(torch)
    nb = pr.n_b
    dev, f64 = pr.p.device, torch.float64
    py = pr.p.sum(dim=(2, 3))
    a = torch.where(pr.dummy_a > 0, 0.0, -torch.log(pr.pyt))
    b = torch.where(pr.dummy_b > 0, 0.0, -torch.log(pr.pys) + torch.log(torch.where(py > 0, py, 1.0))[:, None, :] - 1.0)
    eps = torch.ones(nb, dtype=f64, device=dev)
    mu = pr.nonempty.to(f64) * np.exp(-1.0)
    f, ln, r, m = pr.evaluate(a, b, eps, mu)
    ga, gb, res = pr.gradient(r, m)
    n_iter = torch.zeros(nb, dtype=torch.int64, device=dev)
    n_stages = torch.zeros(nb, dtype=torch.int64, device=dev)
    running = torch.ones(nb, dtype=torch.bool, device=dev)
    converged = torch.zeros(nb, dtype=torch.bool, device=dev)
    stage_end = torch.ones(nb, dtype=torch.bool, device=dev)
    while bool(running.any()):
        ends = stage_end & running
        if bool(ends.any()):
            residual, gap = _stage_ends(torch, pr, p, ends, m, r, a, b, gap_tol)
            done = rules.certified(gap, residual, gap_tol, residual_tol)
            converged = torch.where(ends, done, converged)
            running = torch.where(ends, ~done & rules.more_stages(n_iter, max_iter, n_stages, _MAX_STAGES), running)
            stage_end = stage_end & ~ends
            nxt = ends & running
            # the exponential multiplier update and the predictor of _dual_newton._solve
            mu = _pick(nxt, rules.next_mu(m, pr.nonempty), mu)
            alpha, beta = _stage_shift(m, ln, xp=torch)
            a = _pick(nxt, a + alpha[..., None], a)
            b = _pick(nxt, b + beta[..., None], b)
            guard = rules.guard_terms(ln - alpha[..., None] - beta[:, None, :], mu, pr.nonempty).amax(dim=(1, 2))
            eps = _pick(nxt, rules.next_eps(eps, shrink, eps_min, guard), eps)
            n_stages = n_stages + nxt.long()
            f2, ln2, r2, m2 = pr.evaluate(a, b, eps, mu)
            f, ln, r, m = (_pick(nxt, new, old) for new, old in ((f2, f), (ln2, ln), (r2, r), (m2, m)))
            ga2, gb2, res2 = pr.gradient(r, m)
            ga, gb, res = (_pick(nxt, new, old) for new, old in ((ga2, ga), (gb2, gb), (res2, res)))
        inner_tol = rules.inner_tolerance(eps, eps_min, residual_tol)
        stage_end = stage_end | (running & ((res <= inner_tol) | (n_iter >= max_iter)))
        act = running & ~stage_end
        if bool(act.any()):
            a, b, f, ln, r, m, ga, gb, res, n_iter, stage_end = _newton_iteration(
                torch, pr, act, a, b, eps, mu, f, ln, r, m, ga, gb, res, n_iter, stage_end
            )
    q = (m[..., None] * r).permute(0, 3, 1, 2).cpu().numpy()
    host = (a.transpose(1, 2), b.transpose(1, 2), converged, n_iter)
    return (_dual_newton._polish(q, p), *(x.cpu().numpy() for x in host))


def _newton_iteration(torch, pr, act, a, b, eps, mu, f, ln, r, m, ga, gb, res, n_iter, stage_end):
    """One damped Newton step for the problems ``act`` (the others keep their values)."""
    rules = torch_rules(torch)
    da, db = pr.newton_step(r, m, ga, gb, eps)
    slope = (ga * da).sum(dim=(1, 2)) + (gb * db).sum(dim=(1, 2))
    ok_dir = act & (slope < 0)  # otherwise round-off level (or NaN): no descent direction left
    stage_end = stage_end | (act & ~ok_dir)
    n_iter = n_iter + ok_dir.long()
    step = ok_dir.to(a.dtype)
    pending = ok_dir.clone()
    quad = ok_dir & rules.quadratic(slope)  # F changes below its round-off: judge the step by the residual
    f_acc, ln_acc, r_acc, m_acc = f, ln, r, m
    while bool(pending.any()):
        f_new, ln_new, r_new, m_new = pr.evaluate(a + step[:, None, None] * da, b + step[:, None, None] * db, eps, mu)
        ok = rules.armijo(f_new, f, step, slope)
        ok = torch.where(quad, torch.isfinite(f_new) & (pr.gradient(r_new, m_new)[2] < res), ok)
        take = pending & ok
        f_acc, ln_acc, r_acc, m_acc = (
            _pick(take, new, old) for new, old in ((f_new, f_acc), (ln_new, ln_acc), (r_new, r_acc), (m_new, m_acc))
        )
        fail = pending & ~ok & rules.give_up(step, quad)
        stage_end = stage_end | fail
        step = torch.where(fail, 0.0, step)
        pending = pending & ~ok & ~fail
        step = torch.where(pending, step * 0.5, step)
    moved = step > 0
    a = _pick(moved, a + step[:, None, None] * da, a)
    b = _pick(moved, b + step[:, None, None] * db, b)
    f, ln, r, m = f_acc, ln_acc, r_acc, m_acc  # the accepted evaluations (unchanged where not moved)
    ga2, gb2, res2 = pr.gradient(r, m)
    ga, gb, res = (_pick(moved, new, old) for new, old in ((ga2, ga), (gb2, gb), (res2, res)))
    return a, b, f, ln, r, m, ga, gb, res, n_iter, stage_end
