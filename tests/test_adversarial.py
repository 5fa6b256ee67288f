"""Adversarial inputs to the estimators, the file readers and the command line (issue 14).

Every test here failed before its fix: untrusted files must never run code, outputs must never
replace inputs or existing files unasked, and a number must never be silently wrong.
"""

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

import pidkd
from pidkd.cli import main
from pidkd.estimators import distributions
from pidkd.estimators.activations import Activations, load_activations, save_activations
from pidkd.estimators.histogram import joint_histogram
from pidkd.estimators.information import entropy
from pidkd.estimators.sweeps import sweep
from pidkd.exceptions import SolverError


class _Payload:
    """Unpickling this object creates ``marker``: proof that a loader executed code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _acts(n=60, seed=0, rows=None, same_names=False):
    rng = np.random.default_rng(seed)
    layer = "layer1" if same_names else "s1"
    return Activations(
        labels=rng.integers(0, 3, n),
        teacher={"layer1": rng.normal(size=(n, 4)).astype(np.float32)},
        student={layer: rng.normal(size=(rows or n, 4)).astype(np.float32)},
    )


# ---------------------------------------------------------------- files: nothing we load runs code


def test_pickled_object_array_in_npz_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.npz"
    np.savez(path, labels=np.array([_Payload(marker)], dtype=object))
    with pytest.raises(ValueError, match="never loads pickles"):
        load_activations(path)
    assert not marker.exists()


def test_malicious_pt_file_is_refused_and_never_run(tmp_path):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"labels": _Payload(marker)}, path)
    with pytest.raises(ValueError, match="could not read .*evil.pt"):
        load_activations(path)
    assert not marker.exists()


def test_random_bytes_do_not_suggest_unsafe_pickle_loading(tmp_path):
    path = tmp_path / "noise.npz"
    path.write_bytes(np.random.default_rng(0).bytes(500))
    with pytest.raises(ValueError, match="not a numpy .npz archive") as err:
        load_activations(path)
    assert "allow_pickle=True" not in str(err.value)


def test_truncated_npz_is_a_clear_error(tmp_path):
    good = save_activations(tmp_path / "good.npz", _acts())
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"could not read .*cut.npz.*corrupt, truncated"):
        load_activations(cut)


@pytest.mark.parametrize(
    "content, match",
    [
        ("tensor", "holds a Tensor, not a dict"),
        ("deep", "nests dicts more than one level deep"),
    ],
)
def test_pt_files_of_the_wrong_structure(tmp_path, content, match):
    torch = pytest.importorskip("torch")
    obj = torch.zeros(3) if content == "tensor" else {"labels": torch.zeros(3), "teacher": {"a": {"b": torch.zeros(3)}}}
    torch.save(obj, tmp_path / "x.pt")
    with pytest.raises(ValueError, match=match):
        load_activations(tmp_path / "x.pt")


def test_npy_file_with_npz_suffix_and_directory(tmp_path):
    np.save(tmp_path / "single.npy", np.zeros(3))
    (tmp_path / "single.npy").rename(tmp_path / "single.npz")
    with pytest.raises(ValueError, match=r"single array \(.npy format\)"):
        load_activations(tmp_path / "single.npz")
    (tmp_path / "dir.npz").mkdir()
    with pytest.raises(ValueError, match="is a directory"):
        load_activations(tmp_path / "dir.npz")


def test_row_count_checked_on_each_side_when_layer_names_coincide(tmp_path):
    path = save_activations(tmp_path / "a.npz", _acts(rows=59, same_names=True))
    with pytest.raises(ValueError, match=r"60 labels but arrays with other row counts: \{'student/layer1': 59\}"):
        load_activations(path)


# ---------------------------------------------------------------- files: nothing we write replaces a file unasked


def test_save_activations_appends_suffix_and_never_overwrites(tmp_path):
    path = save_activations(tmp_path / "noext", _acts())
    assert path == tmp_path / "noext.npz" and path.exists()
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_activations(tmp_path / "noext", _acts(seed=1))
    assert path.read_bytes() == before
    save_activations(path, _acts(seed=1), overwrite=True)
    assert path.read_bytes() != before


def _measure(*extra):
    return ["measure", "--teacher-layer", "hidden2", "--student-layer", "hidden1", "--bootstrap", "0",
            "--permutations", "0", "--no-progress", *extra]  # fmt: skip


@pytest.fixture
def one_checkpoint(tmp_path):
    """A copy of one of the example checkpoints that ship with pidkd."""
    return Path(shutil.copy(Path(pidkd.__file__).parent / "data" / "digits" / "epoch_040.npz", tmp_path / "acts.npz"))


def test_measure_refuses_to_overwrite_its_input(one_checkpoint, capsys):
    before = one_checkpoint.read_bytes()
    assert main(_measure(str(one_checkpoint), "--out", str(one_checkpoint), "--force")) == 2
    assert "is one of the input files" in capsys.readouterr().err
    assert one_checkpoint.read_bytes() == before


def test_measure_checks_outputs_before_computing(one_checkpoint, tmp_path, capsys, monkeypatch):
    import pidkd.estimators.sweeps as sweeps

    def no_sweep(*args, **kwargs):
        raise AssertionError("sweep() ran before the outputs were checked")

    monkeypatch.setattr(sweeps, "sweep", no_sweep)
    existing = tmp_path / "old.csv"
    existing.write_text("keep me")
    cases = [
        (["--out", str(existing)], "exists; pass --force"),
        (["--out", str(tmp_path / "r.txt")], "one of .csv, .parquet, .json"),
        (["--out", str(tmp_path / "missing" / "r.csv")], "does not exist"),
        (["--plot", str(tmp_path / "p.jpeg")], "one of .png, .pdf, .svg"),
        (["--out", str(tmp_path)], "one of .csv"),
    ]
    for extra, match in cases:
        assert main(_measure(str(one_checkpoint), *extra)) == 2
        err = capsys.readouterr().err
        assert match in err and err.count("\n") == 1, (extra, err)
    assert existing.read_text() == "keep me"


def test_measure_writes_json_and_replaces_only_with_force(one_checkpoint, tmp_path, capsys):
    out = tmp_path / "r.json"
    out.write_text("old")
    assert main(_measure(str(one_checkpoint), "--out", str(out), "--force")) == 0
    rows = json.loads(out.read_text())
    assert len(rows) == 1 and rows[0]["teacher_layer"] == "hidden2"


# ---------------------------------------------------------------- numbers that were silently wrong


@pytest.mark.parametrize("base", [0.5, 1.0, 0.0, -2.0])
def test_logarithm_base_must_exceed_one(base, capsys):
    with pytest.raises(ValueError, match="logarithm base > 1|positive finite"):
        pidkd.pid(distributions.xor(), base=base)
    with pytest.raises(ValueError, match="logarithm base > 1|positive finite"):
        pidkd.pid_from_samples([0, 1, 1, 0], [0, 1, 0, 1], [0, 0, 1, 1], base=base)
    with pytest.raises(ValueError, match="logarithm base > 1|positive finite"):
        entropy([0.5, 0.5], base=base)
    assert main(["pid", "xor", "--base", str(base)]) == 2
    assert "'base' parameter" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [np.nan, None])
def test_missing_labels_are_rejected_not_a_class(bad):
    rng = np.random.default_rng(0)
    t, s = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    y = (t ^ s).astype(object if bad is None else float)
    y[7] = bad
    with pytest.raises(ValueError, match=r"1 missing .* label\(s\), the first at sample 7"):
        pidkd.pid_from_samples(y, t, s, n_bootstrap=0, n_permutations=0)


@pytest.mark.parametrize("scale", [1e308, 1e-320])
def test_extreme_counts_are_normalised_exactly(scale):
    r = pidkd.pid(distributions.xor() * 4 * scale, counts=True)
    assert r.syn == pytest.approx(1.0, abs=1e-9) and r.red == pytest.approx(0.0, abs=1e-9)


def test_sparse_large_codes_are_compacted():
    rng = np.random.default_rng(0)
    t, s = rng.integers(0, 4, 1000), rng.integers(0, 4, 1000)
    y = (t + s) % 3
    dense = pidkd.pid_from_samples(y, t, s, n_bootstrap=5, n_permutations=2)
    sparse = pidkd.pid_from_samples(y, t * 30_000, s * 10**10, n_bootstrap=5, n_permutations=2)
    assert (sparse.n_t, sparse.n_s) == (4, 4)
    assert sparse.pid.red == pytest.approx(dense.pid.red, abs=1e-12)
    assert sparse.ci == dense.ci and sparse.null_mean == pytest.approx(dense.null_mean, abs=1e-12)


def test_huge_declared_table_is_refused_before_allocation():
    with pytest.raises(MemoryError, match=r"count table of shape \(1, 1000000000001, 1\).*np.unique"):
        joint_histogram([0], [10**12], [0])


def test_float32_pmfs_normalised_by_the_user_are_accepted():
    c = np.random.default_rng(0).integers(1, 50, size=(10, 10, 10)).astype(np.float32)
    p32 = c / c.sum()
    assert abs(float(p32.astype(np.float64).sum()) - 1) > 1e-9  # outside the float64 tolerance
    ref = pidkd.pid(c.astype(np.float64), counts=True)
    assert pidkd.pid(p32).red == pytest.approx(ref.red, abs=1e-5)
    torch = pytest.importorskip("torch")
    assert pidkd.pid(torch.from_numpy(p32)).red == pytest.approx(ref.red, abs=1e-5)
    with pytest.raises(ValueError, match="sums to 1"):  # still no silent renormalisation
        pidkd.pid((p32 * 1.001).astype(np.float32))


# ---------------------------------------------------------------- arguments silently ignored or unvalidated


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"max_iter": 0}, ValueError, "'max_iter' parameter of pid\\(\\) must be a positive int or None"),
        ({"max_iter": -3}, ValueError, "'max_iter'"),
        ({"max_iter": "10"}, TypeError, "'max_iter'"),
        ({"max_iter": 2.5}, TypeError, "'max_iter'"),
        ({"strict": "no"}, TypeError, "'strict' parameter of pid\\(\\) must be a bool \\(True or False\\)"),
        ({"counts": "yes"}, TypeError, "'counts'"),
        ({"variables": (0, 1, 2)}, ValueError, "'variables' parameter of pid\\(\\) selects .* dit.Distribution"),
    ],
)
def test_pid_rejects_ignored_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        pidkd.pid(distributions.and_(), **kwargs)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"n_bins": 0}, ValueError, "'n_bins' parameter of pid_from_samples\\(\\) must be an int >= 2"),
        ({"n_bins": 4, "quantizer": pidkd.Quantizer("kmeans", 3)}, ValueError, "both `quantizer` and `n_bins`"),
        ({"quantizer": "kmeans"}, TypeError, "a pidkd Quantizer"),
        ({"n_bootstrap": True}, TypeError, "'n_bootstrap'"),
    ],
)
def test_pid_from_samples_rejects_ignored_arguments(kwargs, exc, match):
    x = np.random.default_rng(0).normal(size=(50, 3))
    with pytest.raises(exc, match=match):
        pidkd.pid_from_samples(np.arange(50) % 2, x, x, **kwargs)


def test_empty_histogram_without_sizes_is_refused():
    with pytest.raises(ValueError, match="no samples and no alphabet sizes"):
        joint_histogram([], [], [])
    assert joint_histogram([], [], [], n_y=2, n_t=1, n_s=1).shape == (2, 1, 1)


def test_pid_batch_names_the_item():
    with pytest.raises(TypeError, match="one 3-d array of shape \\(2, 2, 2\\)"):
        pidkd.pid_batch(distributions.xor())
    rng = np.random.default_rng(1)
    ps = [distributions.xor(), rng.random((4, 4, 4))]
    with pytest.raises(SolverError, match=r"^ps\[1\]: BROJA optimisation"):
        pidkd.pid_batch(ps, counts=True, max_iter=1)


def test_sweep_takes_one_layer_name_and_keeps_checkpoints_apart(tmp_path):
    (tmp_path / "run1").mkdir()
    (tmp_path / "run2").mkdir()
    a = save_activations(tmp_path / "run1" / "epoch_010.npz", _acts(seed=1))
    b = save_activations(tmp_path / "run2" / "epoch_010.npz", _acts(seed=2))
    kw = {"n_bootstrap": 0, "n_permutations": 0, "progress": False}
    df = sweep([a, b], teacher_layers="layer1", student_layers="s1", quantizer=pidkd.Quantizer("kmeans", 3), **kw)
    assert list(df["teacher_layer"]) == ["layer1", "layer1"]
    assert df["checkpoint"].nunique() == 2
    with pytest.raises(ValueError, match="would share a name"):
        sweep([a, a], **kw)
    with pytest.raises(TypeError, match="'progress' parameter of sweep\\(\\) must be a bool"):
        sweep([a], progress="no")


# ---------------------------------------------------------------- the command line: one line, never a traceback


def test_cli_solver_is_case_insensitive(capsys):
    assert main(["pid", "and", "--solver", "clarabel", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["solver"] == "CLARABEL"


def test_cli_user_errors_are_one_line_with_status_2(tmp_path, capsys):
    noise = tmp_path / "noise.npy"
    noise.write_bytes(np.random.default_rng(0).bytes(300))
    pickled = tmp_path / "obj.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    corrupt = tmp_path / "bad.npz"
    corrupt.write_bytes(b"PK\x03\x04 truncated")
    np.save(tmp_path / "c.npy", np.ones((2, 2, 2)))
    cases = [
        ["pid", str(noise)],
        ["pid", str(pickled)],
        ["pid", str(tmp_path)],
        ["pid", "xor", "--tol", "-1"],
        ["pid", str(tmp_path / "c.npy"), "--counts", "--base", "1"],
        ["measure", str(tmp_path / "absent.npz"), "--no-progress"],
        ["measure", str(corrupt), "--no-progress"],
        ["measure", "--clusters", "0", "--no-progress"],
        ["measure", "--bootstrap", "-1", "--no-progress"],
        ["toys", "--plot", str(tmp_path / "f.gif")],
    ]
    for argv in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) <= 2 and err[-1].startswith(f"pidkd {argv[0]}: error: "), (argv, err)
        assert "Traceback" not in "\n".join(err) and "allow_pickle=True" not in err[-1]


def test_cli_help_has_no_raw_markup(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "``" not in capsys.readouterr().out


def test_pickle_module_is_not_what_loads_pmfs(tmp_path, capsys):
    """A .npy that holds a pickle is refused by `pidkd pid` without unpickling it."""
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.npy"
    with open(path, "wb") as f:
        pickle.dump(_Payload(marker), f)
    assert main(["pid", str(path)]) == 2
    assert not marker.exists()


# ---------------------------------------------------------------- issue 29: Ctrl-C, Dask addresses, files


def _interrupt_in_numba():
    """The SystemError Numba raises when a Ctrl-C lands in compiled code (its context chain ends in it)."""
    err = SystemError("CPUDispatcher(solve_batch) returned a result with an exception set")
    err.__context__ = KeyboardInterrupt()
    return err


def test_ctrl_c_in_the_compiled_batch_solve_stops_it_promptly():
    import os
    import signal
    import threading
    import time

    rng = np.random.default_rng(0)
    ps = rng.random((400, 10, 10, 10))  # about 5 s of compiled solving on one core
    pidkd.pid_batch(ps[:2], counts=True)  # compiled before the clock starts
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    start = time.perf_counter()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):  # not a SystemError, and not after the whole batch
            pidkd.pid_batch(ps, counts=True)
    finally:
        timer.cancel()
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize("step", ["woodbury", "pcg"])
def test_ctrl_c_in_a_structured_step_kernel_is_a_keyboard_interrupt(step, monkeypatch):
    """The numpy path's Newton steps call compiled kernels (per-cell and Woodbury blocks, PCG products): a
    Ctrl-C that lands in one surfaces from numba as a SystemError, and must reach the caller as Ctrl-C."""
    from pidkd.estimators.broja import _dual_newton

    class Interrupted:  # a step whose kernel is hit by Ctrl-C on the third Newton step
        name = step

        def __init__(self):
            self.inner, self.calls = _dual_newton.make_step(step, (40, 6, 6)), 0

        def __call__(self, *args):
            self.calls += 1
            if self.calls == 3:
                raise _interrupt_in_numba()
            return self.inner(*args)

    p = np.random.default_rng(1).dirichlet(np.ones(40 * 36)).reshape(1, 40, 6, 6)
    with pytest.raises(KeyboardInterrupt):
        _dual_newton.solve(p, gap_tol=1e-9, residual_tol=1e-10, kernel="numpy", step=Interrupted())
    other = SystemError("a compiled kernel failed")  # a SystemError of another cause stays one
    with pytest.raises(SystemError, match="kernel failed"):
        bad = Interrupted()
        bad.inner = lambda *a: (_ for _ in ()).throw(other)
        _dual_newton.solve(p, gap_tol=1e-9, residual_tol=1e-10, kernel="numpy", step=bad)


def test_ctrl_c_stops_a_sweep_instead_of_failing_a_pair(monkeypatch):
    import pidkd.estimators.sweeps as sweeps

    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        raise _interrupt_in_numba()

    monkeypatch.setattr(sweeps, "pid_from_samples", interrupted)
    acts = Activations(np.arange(60) % 3, {"a": np.ones((60, 2)), "b": np.ones((60, 2))}, {"s": np.ones((60, 2))})
    with pytest.raises(KeyboardInterrupt):
        sweep(acts, quantizer=pidkd.Quantizer("uniform", 2), n_bootstrap=0, n_permutations=0, progress=False)
    assert calls == [1]  # the other pair never ran


def test_measure_ctrl_c_exits_130_with_the_journal_intact(one_checkpoint, tmp_path, monkeypatch, capsys):
    import pidkd.estimators.sweeps as sweeps

    real = sweeps.pid_from_samples
    calls = []

    def second_interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise _interrupt_in_numba()
        return real(*args, **kwargs)

    monkeypatch.setattr(sweeps, "pid_from_samples", second_interrupted)
    journal = tmp_path / "pid.jsonl"
    argv = _measure(str(one_checkpoint), "--student-layer", "logits", "--journal", str(journal))
    assert main(argv) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "interrupted" in err[0] and "failed" not in err[0], err
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert len(lines) == 2 and lines[1]["row"]["student_layer"] == "hidden1"  # the header and the finished row


@pytest.mark.parametrize("answer", [None, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"])
def test_measure_scheduler_that_is_no_dask_scheduler_fails_in_time(one_checkpoint, monkeypatch, capsys, answer):
    """A port that accepts connections but never answers, or answers HTTP (a dashboard), hung for good."""
    import socket
    import threading
    import time

    import pidkd.cli as cli

    pytest.importorskip("distributed")
    monkeypatch.setattr(cli, "SCHEDULER_TIMEOUT", 1.0)
    server = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:  # closed at the end of the test
                return
            accepted.append(conn)
            if answer is not None:
                conn.recv(4096)
                conn.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
    status = []
    run = threading.Thread(target=lambda: status.append(main(_measure(str(one_checkpoint), "--scheduler", address))))
    start = time.perf_counter()
    run.daemon = True
    run.start()
    run.join(timeout=15)
    server.close()
    for conn in accepted:
        conn.close()
    assert not run.is_alive(), "pidkd measure --scheduler still waiting after 15 s"
    assert status == [2] and time.perf_counter() - start < 10
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pidkd measure: error: --scheduler") and "8786" in err[0], err


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_bfloat16_and_float16_activations_are_upcast_to_float32(tmp_path, suffix):
    """What CUDA autocast (fit's own AMP included) produces: once a bare TypeError, or 'corrupt, truncated'."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    y = torch.from_numpy(rng.integers(0, 3, 300))
    t = torch.from_numpy(rng.normal(size=(300, 4))).to(torch.bfloat16)
    s = torch.from_numpy(rng.normal(size=(300, 4))).to(torch.float16)
    path = tmp_path / f"acts{suffix}"
    if suffix == ".pt":
        torch.save({"labels": y, "teacher": {"t": t}, "student": {"s": s}}, path)
    else:
        pytest.importorskip("safetensors.torch").save_file({"labels": y, "teacher/t": t, "student/s": s}, str(path))
    acts = load_activations(path)
    assert acts.teacher["t"].dtype == np.float32 and acts.student["s"].dtype == np.float32
    assert np.array_equal(acts.teacher["t"], t.float().numpy()) and np.array_equal(acts.student["s"], s.float().numpy())
    kw = {"quantizer": pidkd.Quantizer("kmeans", 3), "n_bootstrap": 0, "n_permutations": 0, "progress": False}
    from_file = sweep(path, **kw)
    in_memory = sweep(Activations(y.numpy(), {"t": t.float().numpy()}, {"s": s.float().numpy()}, name="acts"), **kw)
    assert from_file.drop(columns="solve_time").equals(in_memory.drop(columns="solve_time"))


def test_refused_pt_never_suggests_weights_only_false(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "evil.pt"
    torch.save({"labels": _Payload(tmp_path / "pwned")}, path)
    with pytest.raises(ValueError, match=r"evil.pt.*not tensors \(the global [\w.]*open\)") as err:
        load_activations(path)
    assert "weights_only=False" not in str(err.value) and "likely succeed" not in str(err.value)
    assert "\n" not in str(err.value)


def test_measure_sees_an_output_that_is_a_hard_link_to_an_input(one_checkpoint, tmp_path, capsys):
    import os

    before = one_checkpoint.read_bytes()
    link = tmp_path / "table.csv"
    os.link(one_checkpoint, link)
    assert main(_measure(str(one_checkpoint), "--out", str(link), "--force")) == 2
    assert "is one of the input files" in capsys.readouterr().err
    os.link(one_checkpoint, tmp_path / "pid.jsonl")
    assert main(_measure(str(one_checkpoint), "--journal", str(tmp_path / "pid.jsonl"))) == 2
    assert "is one of the input files" in capsys.readouterr().err
    assert one_checkpoint.read_bytes() == before


def test_plots_name_the_missing_columns_instead_of_a_key_error():
    pd = pytest.importorskip("pandas")
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from pidkd.plotting import plot_sweep, plot_training

    table = pd.DataFrame({"checkpoint": ["a"], "teacher_layer": ["t"], "student_layer": ["s"], "red": [0.1]})
    with pytest.raises(ValueError, match=r"plot_sweep\(\) needs the columns \['uni_t', 'uni_s', 'syn'\]"):
        plot_sweep(table, "unused.png")
    history = pd.DataFrame({"epoch": [1, 2], "train_acc": [0.5, 0.7]})
    with pytest.raises(ValueError, match=r"histories\['rid'\] has no column\(s\) \['val_acc'\]"):
        plot_training({"rid": history})
    with pytest.raises(ValueError, match=r"probe='p'.*probes found: none"):
        plot_training({"rid": history.assign(val_acc=[0.4, 0.6])}, probe="p")


def _save_uncompressed(path, acts):
    arrays = {"labels": acts.labels} | {f"teacher/{k}": v for k, v in acts.teacher.items()}
    np.savez(path, **arrays, **{f"student/{k}": v for k, v in acts.student.items()})
    return path


_FAST = {"quantizer": pidkd.Quantizer("kmeans", 2), "n_bootstrap": 0, "n_permutations": 0, "progress": False}


@pytest.mark.filterwarnings("ignore::pidkd.estimators.samples.SampleSizeWarning")
def test_journal_content_fingerprint_sees_a_rewrite_that_kept_size_and_mtime(tmp_path):
    import os
    import warnings

    path = _save_uncompressed(tmp_path / "ck.npz", _acts(n=200, seed=1))
    journal = tmp_path / "pid.jsonl"
    first = sweep(path, journal=journal, fingerprint="content", **_FAST)
    stat = path.stat()
    _save_uncompressed(path, _acts(n=200, seed=2))  # other numbers, the same size...
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # ...and the same modification time
    assert path.stat().st_size == stat.st_size
    with pytest.warns(RuntimeWarning, match="computed from other data"):
        again = sweep(path, journal=journal, fingerprint="content", **_FAST)
    assert again["red_plugin"].iloc[0] != first["red_plugin"].iloc[0]
    with pytest.raises(ValueError, match=r"other parameters \(now: \{'fingerprint': '\(default\)'\}\)"):
        sweep(path, journal=journal, **_FAST)  # a journal keeps its fingerprint
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert sweep(path, journal=journal, fingerprint="content", **_FAST).equals(again)  # now reused


@pytest.mark.filterwarnings("ignore::pidkd.estimators.samples.SampleSizeWarning")
def test_journal_that_is_no_regular_file_or_has_a_cut_header(tmp_path):
    import os

    acts = _acts(n=200)
    if os.path.exists("/dev/null"):
        with pytest.raises(ValueError, match=r"journal='/dev/null' is not a regular file"):
            sweep(acts, journal="/dev/null", **_FAST)
    journal = tmp_path / "pid.jsonl"
    journal.write_bytes(b'{"format": "pidkd-sweep-jour')  # a crash while the header was written
    with pytest.warns(RuntimeWarning, match="header line cut off"):
        df = sweep(acts, journal=journal, **_FAST)
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert lines[0]["format"] == "pidkd-sweep-journal" and len(lines) == 2 and len(df) == 1
    other = tmp_path / "notes.txt"
    other.write_bytes(b"my notes, no newline")
    with pytest.raises(ValueError, match="not a pidkd sweep journal"):  # someone's file is never rewritten
        sweep(acts, journal=other, **_FAST)
    assert other.read_bytes() == b"my notes, no newline"


def test_zarr_missing_chunks_warn_and_a_bad_group_is_a_clear_error(tmp_path):
    zarr = pytest.importorskip("zarr", minversion="3")
    rng = np.random.default_rng(0)
    group = zarr.open_group(str(tmp_path / "acts.zarr"), mode="w")
    group.create_array("labels", data=rng.integers(0, 3, 100), chunks=(10,))
    group.create_array("teacher/t", data=rng.normal(size=(100, 4)).astype(np.float32), chunks=(10, 4))
    group.create_array("student/s", data=rng.normal(size=(100, 4)).astype(np.float32), chunks=(10, 4))
    chunk = tmp_path / "acts.zarr" / "teacher" / "t" / "c" / "3" / "0"
    assert chunk.is_file()
    chunk.unlink()  # a partial copy: the chunk now reads as zeros
    with pytest.warns(RuntimeWarning, match=r"acts.zarr' lacks chunks \(teacher/t: 1 of 10\)"):
        load_activations(tmp_path / "acts.zarr")
    zarr.save_array(str(tmp_path / "one.zarr"), np.arange(10))
    with pytest.raises(ValueError, match="is one Zarr array, not a Zarr group"):
        load_activations(tmp_path / "one.zarr")
    (tmp_path / "bad.zarr").mkdir()
    (tmp_path / "bad.zarr" / "zarr.json").write_text('{"zarr_format": 3, "node_t')
    with pytest.raises(ValueError, match=r"could not read .*bad.zarr' as a Zarr group .*corrupt or truncated"):
        load_activations(tmp_path / "bad.zarr")
