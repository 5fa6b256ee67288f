import importlib
import subprocess
import sys

import pytest

import pidkd


@pytest.mark.parametrize("module", ["pidkd", "pidkd.estimators", "pidkd.estimators.distributions", "pidkd.exceptions"])
def test_all_resolves(module):
    mod = importlib.import_module(module)
    missing = [name for name in mod.__all__ if not hasattr(mod, name)]
    assert missing == []


def test_import_does_not_load_torch_or_distill():
    code = (
        "import sys, pidkd, pidkd.estimators, pidkd.cli; "
        "heavy = ('torch', 'pidkd.distill', 'dit', 'cvxpy', 'numba', 'sklearn', 'pandas', 'matplotlib'); "
        "bad = [m for m in heavy if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_version_is_a_string():
    assert isinstance(pidkd.__version__, str) and pidkd.__version__.count(".") == 2
