import numpy as np
import pytest

import pidkd
from pidkd.estimators import distributions, mutual_information
from pidkd.estimators.broja import SOLVERS
from tests.conftest import ATOL_SOLVER

REFS = sorted(distributions.REFERENCE)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("name", REFS)
def test_reference_atoms(name, solver):
    ref = distributions.REFERENCE[name]
    r = pidkd.pid(ref.make(), solver=solver)
    got = [r.red, r.uni_t, r.uni_s, r.syn]
    np.testing.assert_allclose(got, [ref.red, ref.uni_t, ref.uni_s, ref.syn], atol=ATOL_SOLVER)
    assert r.diagnostics.converged and r.diagnostics.status == "optimal"


@pytest.mark.parametrize("name", REFS)
def test_reference_table_is_consistent_with_its_distribution(name):
    """The tabulated atoms obey the identities with the informations of the pmf itself."""
    ref = distributions.REFERENCE[name]
    p = ref.make()
    assert p.sum() == pytest.approx(1.0, abs=1e-15)
    assert ref.red + ref.uni_t == pytest.approx(mutual_information(p.sum(axis=2)), abs=1e-6)
    assert ref.red + ref.uni_s == pytest.approx(mutual_information(p.sum(axis=1)), abs=1e-6)
    total = mutual_information(p.reshape(p.shape[0], -1))
    assert ref.red + ref.uni_t + ref.uni_s + ref.syn == pytest.approx(total, abs=1e-6)
    assert ref.source


def test_nats_are_bits_times_ln2():
    p = distributions.and_()
    bits, nats = pidkd.pid(p), pidkd.pid(p, base=np.e)
    assert nats.red == pytest.approx(bits.red * np.log(2), abs=1e-9)
    assert nats.base == pytest.approx(np.e)
    assert "nats" in repr(nats) and "bits" in repr(bits)


def test_get_unknown_name_lists_the_names():
    with pytest.raises(ValueError, match=r"Unknown reference distribution 'nope'; expected one of \['and'"):
        distributions.get("nope")
    assert distributions.get("Reduced-OR").shape == (2, 2, 2)
