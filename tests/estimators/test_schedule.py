"""The solver schedule's rules give the same decisions on numpy arrays, compiled scalars and torch tensors."""

import numba as nb
import numpy as np
import pytest

from pidkd.estimators.broja._schedule import NUMPY, scalar_rules, torch_rules

rng = np.random.default_rng(0)
N = 400
# values around each rule's thresholds, with infinities and NaN mixed in
X = np.concatenate([rng.normal(size=N // 2), 10.0 ** rng.uniform(-14, 1, N // 2) * rng.choice([-1, 1], N // 2)])
X[::37] = np.inf
X[::41] = -np.inf
X[::43] = np.nan
POS = np.abs(X) + 1e-300
B = rng.random(N) < 0.5
ARGS = {
    "inner_tolerance": (10.0 ** rng.uniform(-9, 0, N), 1e-8, 1e-10),
    "next_mu": (np.abs(X) * 10.0 ** rng.uniform(-250, 0, N), B),
    "guard_terms": (X, POS, B),
    "next_eps": (10.0 ** rng.uniform(-9, 0, N), 0.2, 1e-8, np.abs(rng.normal(size=N))),
    "armijo": (X, rng.normal(size=N), 2.0 ** -rng.integers(0, 45, N), -np.abs(rng.normal(size=N))),
    "quadratic": (-(10.0 ** rng.uniform(-14, -10, N)),),
    "give_up": (2.0 ** -rng.integers(30, 45, N).astype(float), B),
    "certified": (10.0 ** rng.uniform(-12, -6, N), 10.0 ** rng.uniform(-12, -8, N), 1e-9, 1e-10),
    "polish": (10.0 ** rng.uniform(-10, -6, N), 1e-9),
    "more_stages": (rng.integers(0, 10, N), 5, rng.integers(0, 10, N), 5),
}


def _scalar(name, args):
    """Each element through the compiled scalar rule (inside an njit function, as the kernel calls it)."""
    rule = getattr(scalar_rules(), name)
    fn = nb.njit(lambda *a: rule(*a))
    return np.array([fn(*(x[i] if np.ndim(x) else x for x in args)) for i in range(N)])


@pytest.mark.parametrize("name", sorted(ARGS))
def test_rules_agree_on_every_kind(name):
    args = ARGS[name]
    with np.errstate(all="ignore"):
        ref = np.asarray(getattr(NUMPY, name)(*args))
    assert ref.shape == (N,) and (ref.dtype == bool or np.isfinite(ref).any())
    np.testing.assert_array_equal(_scalar(name, args), ref)
    torch = pytest.importorskip("torch")
    targs = [torch.as_tensor(x) if np.ndim(x) else x for x in args]
    np.testing.assert_array_equal(getattr(torch_rules(torch), name)(*targs).numpy(), ref)
