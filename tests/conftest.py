"""Shared test settings: hypothesis profiles and tolerances."""

import os

import pytest
from hypothesis import HealthCheck, settings

#: Exact closed-form computations (no optimisation involved).
ATOL_EXACT = 1e-12
#: Values that come out of an optimisation certified to the default tolerance.
ATOL_SOLVER = 1e-6

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=40,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, max_examples=200)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_collection_modifyitems(config, items):
    import importlib.util

    has_cuda = False
    if importlib.util.find_spec("torch") is not None and "gpu" in {m for i in items for m in i.keywords}:
        import torch

        has_cuda = torch.cuda.is_available()
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    skip_slow = pytest.mark.skip(reason="slow; run with -m slow")
    selected_slow = "slow" in (config.getoption("-m") or "")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)
        if "slow" in item.keywords and not selected_slow:
            item.add_marker(skip_slow)
