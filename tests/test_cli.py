import json

import numpy as np
import pytest

from pidkd.cli import main


def test_pid_xor_prints_one_bit_of_synergy(capsys):
    assert main(["pid", "xor"]) == 0
    out = capsys.readouterr().out
    assert "BROJA PID" in out and "bits" in out
    row = out.strip().splitlines()[-1].split()
    assert row[0] == "xor" and float(row[4]) == pytest.approx(1.0)


def test_default_reports_every_reference_distribution(capsys):
    assert main(["pid"]) == 0
    out = capsys.readouterr().out
    for name in ("rdn", "unq", "and", "rdn_unq_xor", "diff"):
        assert f" {name} " in f" {out} " or name in out
    errs = [float(line.split()[5]) for line in out.splitlines()[3:]]
    assert len(errs) == 12 and max(errs) < 1e-6


def test_counts_file_and_json(tmp_path, capsys):
    counts = np.zeros((2, 2, 2), dtype=np.int64)
    for t in (0, 1):
        for s in (0, 1):
            counts[t & s, t, s] = 5
    path = tmp_path / "counts.npy"
    np.save(path, counts)
    assert main(["pid", str(path), "--counts", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["red"] == pytest.approx(0.311278, abs=1e-6) and data["status"] == "optimal"
    assert main(["pid", str(path), "--counts", "--json", "--nats"]) == 0
    assert json.loads(capsys.readouterr().out)["syn"] == pytest.approx(0.5 * np.log(2), abs=1e-6)


def test_counts_file_without_flag_is_a_clear_error(tmp_path, capsys):
    path = tmp_path / "c.npy"
    np.save(path, np.ones((2, 2, 2)))
    assert main(["pid", str(path)]) == 2
    assert "pass counts=True" in capsys.readouterr().err


@pytest.mark.parametrize(
    "target, match", [("nope", "Unknown reference distribution 'nope'"), ("missing.npy", "does not exist")]
)
def test_bad_targets(target, match, capsys):
    assert main(["pid", target]) == 2
    assert match in capsys.readouterr().err


def test_measure_default_example_writes_table_and_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out, png = tmp_path / "r.csv", tmp_path / "r.png"
    args = [
        "measure",
        "--teacher-layer",
        "hidden2",
        "--student-layer",
        "hidden1",
        "--bootstrap",
        "10",
        "--permutations",
        "2",
        "--no-progress",
        "--out",
        str(out),
        "--plot",
        str(png),
    ]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "epoch_001" in text and "epoch_040" in text
    import pandas as pd

    df = pd.read_csv(out)
    assert len(df) == 4 and png.stat().st_size > 10_000
    # the student learns: transferred knowledge rises and knowledge left to distil falls
    assert df["red"].iloc[-1] > df["red"].iloc[0] + 1.0
    assert df["uni_t"].iloc[-1] < df["uni_t"].iloc[0] - 1.0


def test_measure_bad_layer_is_a_clear_error(capsys):
    assert main(["measure", "--teacher-layer", "nope", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "teacher layer(s) ['nope'] not in checkpoint 'epoch_001'; available: ['hidden1', 'hidden2']" in err


def test_measure_bias_correction_option(capsys):
    base = ["measure", "--teacher-layer", "hidden2", "--student-layer", "hidden1", "--permutations", "0"]
    assert main([*base, "--bootstrap", "5", "--no-progress", "--json", "--bias-correction", "none"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert all(r["bias_correction"] == "none" and r["red"] == r["red_plugin"] for r in rows)
    assert main([*base, "--bootstrap", "0", "--bias-correction", "bootstrap"]) == 2
    assert "--bias-correction bootstrap needs bootstrap resamples" in capsys.readouterr().err


def _two_checkpoints(tmp_path):
    from pidkd.estimators.activations import Activations, save_activations

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    good = rng.normal(size=(300, 4)) + y[:, None]
    bad = good.copy()
    bad[3, 1] = np.nan
    for name, t in (("a", good), ("b", bad)):
        save_activations(tmp_path / f"{name}.npz", Activations(y, {"t": t}, {"s": good[:, :2]}))
    return [str(tmp_path / "a.npz"), str(tmp_path / "b.npz")]


def test_measure_reports_a_failed_pair_keeps_the_others_and_resumes_from_its_journal(tmp_path, capsys):
    files = _two_checkpoints(tmp_path)
    journal = tmp_path / "pid.jsonl"
    args = ["measure", *files, "--clusters", "3", "--bootstrap", "5", "--permutations", "1", "--no-progress"]
    assert main([*args, "--journal", str(journal), "--json"]) == 1
    out = capsys.readouterr()
    assert "pidkd measure: error: b, t x s: ValueError" in out.err
    assert [r["checkpoint"] for r in json.loads(out.out)] == ["a"]
    assert len(journal.read_text().splitlines()) == 2  # header + the finished row
    assert main([*args, "--journal", str(journal), "--json", "--bootstrap", "6"]) == 2
    assert "other parameters" in capsys.readouterr().err
    assert main([*args, "--scheduler", "tcp://127.0.0.1:1", "--n-jobs", "2"]) == 2
    assert "not both" in capsys.readouterr().err


def test_measure_fit_samples_and_all_pairs_failing(tmp_path, capsys):
    files = _two_checkpoints(tmp_path)
    args = ["measure", "--clusters", "3", "--bootstrap", "5", "--permutations", "1", "--no-progress", "--json"]
    assert main([*args, files[0], "--fit-samples", "100"]) == 0  # the quantizers fitted on 100 of 300 rows
    fitted_on_100 = json.loads(capsys.readouterr().out)
    assert main([*args, files[0]]) == 0
    assert fitted_on_100 != json.loads(capsys.readouterr().out)
    assert main([*args, files[1]]) == 1
    err = capsys.readouterr().err
    assert "b, t x s: ValueError" in err and "all 1 pairs failed; nothing to report" in err


def test_measure_on_a_running_scheduler_passes_the_handshake_check(tmp_path, capsys):
    distributed = pytest.importorskip("distributed")
    files = _two_checkpoints(tmp_path)[:1]
    args = ["measure", *files, "--clusters", "3", "--bootstrap", "0", "--permutations", "0", "--no-progress", "--json"]
    with distributed.LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        assert main([*args, "--scheduler", cluster.scheduler_address]) == 0
    assert [r["checkpoint"] for r in json.loads(capsys.readouterr().out)] == ["a"]
