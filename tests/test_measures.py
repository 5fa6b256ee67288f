"""A PID measure written outside pidkd runs through every entry point (issue 28, item 1).

MMI (minimum mutual information, Barrett 2015): Red = min(I(Y;T), I(Y;S)). Defined here, in the
test file, as a user would define it; nothing in pidkd knows it.
"""

import inspect
import json

import numpy as np
import pytest

import pidkd
from pidkd.cli import main
from pidkd.estimators import distributions
from pidkd.estimators.activations import Activations, save_activations


def _mi_nats(pxy: np.ndarray) -> float:
    px, py = pxy.sum(axis=1, keepdims=True), pxy.sum(axis=0, keepdims=True)
    nz = pxy > 0
    return float((pxy[nz] * np.log(pxy[nz] / (px @ py)[nz])).sum())


class MMI(pidkd.Measure):
    """Minimum mutual information: Red = min(I(Y;T), I(Y;S))."""

    name = "mmi"

    def redundancy(self, p):
        return min(_mi_nats(p.sum(axis=2)), _mi_nats(p.sum(axis=1)))


def _expected(p: np.ndarray) -> dict[str, float]:
    i_t, i_s = _mi_nats(p.sum(axis=2)) / np.log(2), _mi_nats(p.sum(axis=1)) / np.log(2)
    i_ts = _mi_nats(p.reshape(p.shape[0], -1)) / np.log(2)
    red = min(i_t, i_s)
    return {"red": red, "uni_t": i_t - red, "uni_s": i_s - red, "syn": i_ts - i_t - i_s + red}


def _acts(n=400, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    t = np.c_[np.eye(3)[y], rng.normal(size=(n, 2))] + 0.3 * rng.normal(size=(n, 5))
    s = np.c_[np.eye(3)[(y + (rng.random(n) < 0.3)) % 3], rng.normal(size=(n, 2))]
    return Activations(y, {"t": t.astype(np.float32)}, {"s": s.astype(np.float32)}, name="ck")


def test_a_users_measure_through_pid_and_pid_batch():
    for name in ("and", "xor", "rdn", "copy"):
        p = distributions.REFERENCE[name].make()
        r = pidkd.pid(p, measure=MMI())
        assert r.method == "mmi" and r.diagnostics.solver == "mmi"
        assert {a: getattr(r, a) for a in ("red", "uni_t", "uni_s", "syn")} == pytest.approx(_expected(p), abs=1e-12)
    ps = [distributions.and_(), distributions.xor()]
    assert [r.red for r in pidkd.pid_batch(ps, measure=MMI())] == pytest.approx([_expected(p)["red"] for p in ps])
    with pytest.raises(ValueError, match="`solver` apply to BROJA's solver"):
        pidkd.pid(distributions.and_(), measure=MMI(), solver="ECOS")
    with pytest.raises(TypeError, match=r"got the class. Pass MMI\(\)"):
        pidkd.pid(distributions.and_(), measure=MMI)


def test_a_users_measure_through_pid_from_samples_and_sweep():
    a = _acts()
    r = pidkd.pid_from_samples(a.labels, a.teacher["t"], a.student["s"], measure=MMI(), n_bootstrap=20)
    assert r.pid.method == "mmi" and r.as_dict()["measure"] == "mmi"
    assert r.estimate["red"] >= 0 and r.ci["red"][0] <= r.estimate["red"] <= r.ci["red"][1]
    df = pidkd.sweep(a, measure=MMI(), n_bootstrap=20, n_permutations=2, progress=False)
    assert df["measure"].tolist() == ["mmi"] and df["red_plugin"].iloc[0] == pytest.approx(r.pid.red)


def test_a_users_measure_through_the_cli(tmp_path, capsys, monkeypatch):
    path = tmp_path / "ck.npz"
    save_activations(path, _acts())
    monkeypatch.chdir(tmp_path)  # the module is named from the current directory, as python -m would
    (tmp_path / "my_measures.py").write_text(
        "import numpy as np\n\n"
        + inspect.getsource(_mi_nats)
        + """
import pidkd


class MMI(pidkd.Measure):
    name = "mmi"

    def redundancy(self, p):
        return min(_mi_nats(p.sum(axis=2)), _mi_nats(p.sum(axis=1)))
"""
    )
    code = main(["measure", str(path), "--measure", "my_measures:MMI", "--json", "--bootstrap", "10", "--no-progress"])
    rows = json.loads(capsys.readouterr().out)
    assert code == 0 and rows[0]["measure"] == "mmi"
    assert main(["measure", str(path), "--measure", "my_measures:Nope"]) == 2
    assert "names no importable class" in capsys.readouterr().err


def test_a_users_measure_through_a_probe():
    torch = pytest.importorskip("torch")
    from pidkd.distill import DistillConfig, PIDProbe, fit
    from tests.distill.test_distill import mlp

    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 6, generator=g)
    y = (x[:, 0] > 0).long()
    probe = PIDProbe(
        (x, y),
        teacher_layer="1",
        student_layer="1",
        measure=MMI(),
        background=False,
        quantizer=pidkd.Quantizer(n_bins=3),
        n_bootstrap=2,
        n_permutations=1,
    )
    assert probe.name == "probe_1_1_mmi"
    h = fit(
        mlp([6, 8, 2], 0),
        mlp([6, 4, 2], 1),
        (x, y),
        method="student",
        probes=[probe],
        config=DistillConfig(epochs=1, batch_size=16, progress=False),
    ).history
    assert (h["probe_1_1_mmi_red"] >= 0).all() and h["probe_1_1_mmi_red"].notna().all()


def test_method_is_the_deprecated_spelling_with_identical_results():
    p = distributions.and_()
    with pytest.warns(DeprecationWarning, match=r"`method=` is deprecated.*use measure='intersection'"):
        old = pidkd.pid(p, method="intersection")
    new = pidkd.pid(p, measure="intersection")
    assert (old.red, old.uni_t, old.uni_s, old.syn, old.method) == (new.red, new.uni_t, new.uni_s, new.syn, new.method)
    with pytest.warns(DeprecationWarning):
        assert pidkd.pid_batch([p], method="broja")[0].red == pidkd.pid(p).red
