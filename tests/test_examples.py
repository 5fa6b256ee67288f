import runpy
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_logic_gates_example_runs(capsys):
    runpy.run_path(str(EXAMPLES / "pid_of_logic_gates.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "rdn_unq_xor" in out
    # a noiseless copy leaves nothing to distil; a fully noisy one leaves everything (1 bit)
    assert "flip probability 0.00: Red = 1.0000 bits, Uni(Y:T\\S) = 0.0000" in out
    assert "flip probability 0.50: Red = 0.0000 bits, Uni(Y:T\\S) = 1.0000" in out


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.py")), ids=lambda p: p.name)
def test_every_example_is_covered(path):
    covered = {"pid_of_logic_gates.py", "theory_checks.py", "make_digits_activations.py", "rid_digits.py"}
    covered |= {"rid_own_loop.py", "rid_lightning.py"}
    assert path.name in covered, f"add a test that runs {path.name}"


def test_theory_checks_example_and_cli(tmp_path, capsys):
    from pidkd.cli import main

    pytest.importorskip("matplotlib")
    mod = runpy.run_path(str(EXAMPLES / "theory_checks.py"))
    png = tmp_path / "t31.png"
    assert mod["main"](["--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "FAILS" not in out and "checks hold" in out and png.stat().st_size > 10_000
    assert main(["toys"]) == 0
    assert "Example 3" in capsys.readouterr().out


def test_shipped_example_activations_are_reproducible(tmp_path):
    """The script regenerates the activations that ship with pidkd (up to float16 rounding)."""
    import numpy as np

    from pidkd.estimators.activations import load_activations

    mod = runpy.run_path(str(EXAMPLES / "make_digits_activations.py"))
    mod["main"](["--out", str(tmp_path)])
    shipped = sorted((EXAMPLES.parent / "pidkd" / "data" / "digits").glob("*.npz"))
    assert [p.name for p in shipped] == sorted(p.name for p in tmp_path.glob("*.npz"))
    for path in shipped:
        a, b = load_activations(path), load_activations(tmp_path / path.name)
        np.testing.assert_array_equal(a.labels, b.labels)
        for k in a.teacher:
            np.testing.assert_allclose(a.teacher[k], b.teacher[k], atol=1e-2, rtol=1e-2)
        for k in a.student:
            np.testing.assert_allclose(a.student[k], b.student[k], atol=1e-2, rtol=1e-2)
    assert sum(p.stat().st_size for p in shipped) < 2_000_000


def test_rid_digits_example_quick():
    pytest.importorskip("torch")
    mod = runpy.run_path(str(EXAMPLES / "rid_digits.py"))
    rows = mod["main"](["--quick"])
    assert {(r["teacher"], r["method"]) for r in rows} == {
        (t, m) for t in ("trained", "untrained") for m in ("student", "kd", "vid", "ted", "rid")
    }
    assert all(0.0 <= r["test_acc"] <= 1.0 and r["red_bits"] >= -1e-9 for r in rows)


def test_rid_own_loop_example_quick_trains_as_fit():
    pytest.importorskip("torch")
    mod = runpy.run_path(str(EXAMPLES / "rid_own_loop.py"))
    rows = mod["main"](["--quick"])
    assert [r["method"] for r in rows] == ["student", "kd", "vid", "ted", "rid"]
    assert all(r["same_as_fit"] for r in rows)  # the hand-written loop gives fit's weights, bit for bit


def test_rid_lightning_example_quick(tmp_path):
    pytest.importorskip("lightning")
    mod = runpy.run_path(str(EXAMPLES / "rid_lightning.py"))
    metrics = mod["main"](["--quick", "--log-dir", str(tmp_path)])
    assert 0.0 <= metrics["test_acc"] <= 1.0 and metrics["probe/probe_3_3/red"] >= -1e-9
    assert {"loss_task", "loss_rid", "train_acc", "val_acc", "probe/probe_3_3/filters_red"} <= set(metrics)
    assert list(tmp_path.rglob("metrics.csv"))  # the Trainer's own logger got the metrics


def test_resilience_benchmark_quick_grid_writes_its_table(tmp_path):
    pytest.importorskip("torch")
    mod = runpy.run_path(str(EXAMPLES.parent / "benchmarks" / "resilience" / "run.py"))
    out = mod["main"](["--quick", "--out", str(tmp_path)])
    assert len(out["runs"]) == 3 * 13 and set(out["meta"]["teacher_acc"]) == {"trained", "untrained", "noisy"}
    text = (tmp_path / "results.md").read_text()
    assert "| rid (paper) |" in text and "| rid |" in text and "untrained teacher" in text


def test_cifar10_recipe_smoke_on_random_tensors():
    """The WRN-40-2 -> WRN-16-1 recipe runs end to end on CIFAR-shaped random data (no download)."""
    pytest.importorskip("torch")
    mod = runpy.run_path(str(EXAMPLES.parent / "benchmarks" / "cifar10" / "run.py"))
    res = mod["main"](["--smoke", "--methods", "student", "vid", "rid"])
    assert set(res) == {"student", "vid", "rid"}
    assert res["rid"]["phases"] == ["warmup", "phase1", "phase2"]
    assert all(r["images_per_second"] > 0 and 0 <= r["test_acc"] <= 1 for r in res.values())


def test_resilience_benchmark_runs_on_mnist1d_sequences(tmp_path):
    """MNIST-1D is generated offline; 1-d CNNs exercise the sequence filters and noisy_copy on (N, C, L)."""
    pytest.importorskip("torch")
    pytest.importorskip("mnist1d")
    mod = runpy.run_path(str(EXAMPLES.parent / "benchmarks" / "resilience" / "run.py"))
    out = mod["main"](["--dataset", "mnist1d", "--quick", "--out", str(tmp_path)])
    assert out["meta"]["n_train"] == 4800 and out["meta"]["n_test"] == 1200
    assert out["meta"]["teacher_acc"]["trained"] > 0.3  # two epochs of Adam; chance is 0.1
    text = (tmp_path / "results_mnist1d.md").read_text()
    assert text.startswith("# Resilience to nuisance teachers (MNIST-1D, CPU)") and "| rid (paper) |" in text
