"""Sweeps at scale: lazily read formats, chunked quantization, the journal, failed pairs, Dask."""

import importlib
import json
import os

import numpy as np
import pytest

import pidkd.estimators.sweeps as sweeps
from pidkd.estimators import Quantizer, sweep
from pidkd.estimators.activations import Activations, NpyArray, load_activations, save_activations
from pidkd.estimators.journal import Journal
from pidkd.estimators.quantize import fit_rows, quantize_in_chunks
from pidkd.estimators.sweeps import TIMING_COLUMNS
from pidkd.exceptions import SweepError

quantize_mod = importlib.import_module("pidkd.estimators.quantize")  # the package exports a function of that name
KW = dict(quantizer=Quantizer("kmeans", 3, n_init=1), n_bootstrap=8, n_permutations=2, progress=False)


def make_acts(seed=0, n=240, name="ck"):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    teacher = {"t1": (y[:, None] + rng.normal(size=(n, 4))).astype(np.float32), "t2": rng.normal(size=(n, 2, 3))}
    student = {"s1": (y[:, None] + 2 * rng.normal(size=(n, 3))).astype(np.float32)}
    return Activations(y, teacher, student, name=name)


def write_npy_dir(path, acts):
    (path / "teacher").mkdir(parents=True)
    (path / "student").mkdir()
    np.save(path / "labels.npy", acts.labels)
    for side in ("teacher", "student"):
        for k, v in getattr(acts, side).items():
            np.save(path / side / f"{k}.npy", v)
    return path


def same(a, b):
    cols = [c for c in a.columns if c not in TIMING_COLUMNS]
    assert list(a.columns) == list(b.columns)
    assert a[cols].equals(b[cols])


def test_npy_directory_is_read_lazily_and_sweeps_like_the_npz(tmp_path):
    acts = make_acts()
    npz = save_activations(tmp_path / "ck.npz", acts)
    d = write_npy_dir(tmp_path / "lazy" / "ck", acts)
    lazy = load_activations(d)
    assert isinstance(lazy.teacher["t2"], NpyArray) and lazy.teacher["t2"].shape == (240, 2, 3)
    np.testing.assert_array_equal(lazy.teacher["t2"][5:9], acts.teacher["t2"][5:9])
    np.testing.assert_array_equal(np.asarray(lazy.student["s1"]), acts.student["s1"])
    same(sweep(npz, **KW), sweep(d, **KW))


def test_zarr_group_sweeps_like_the_npz(tmp_path):
    zarr = pytest.importorskip("zarr")
    acts = make_acts(1)
    npz = save_activations(tmp_path / "ck.npz", acts)
    g = zarr.open_group(str(tmp_path / "ck.zarr"), mode="w")
    g.create_array("labels", data=acts.labels)
    for side in ("teacher", "student"):
        sub = g.require_group(side)
        for k, v in getattr(acts, side).items():
            sub.create_array(k, data=v, chunks=(50, *v.shape[1:]))
    same(sweep(npz, **KW), sweep(tmp_path / "ck.zarr", **KW))


def test_object_npy_in_a_directory_is_refused(tmp_path):
    d = write_npy_dir(tmp_path / "ck", make_acts())
    np.save(d / "student" / "evil.npy", np.array([{"a": 1}] * 240, dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="pickles, which pidkd never loads"):
        load_activations(d)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="neither a Zarr group nor a directory of .npy files"):
        load_activations(tmp_path / "empty")


def test_chunked_quantization_equals_in_memory_and_fits_on_the_documented_subset(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3000, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    q = Quantizer("kmeans", 4, n_init=1)
    whole = q.clone().fit_transform(x)
    monkeypatch.setattr(quantize_mod, "_CHUNK_VALUES", 600)  # 100 rows a chunk: 30 chunks
    np.testing.assert_array_equal(quantize_in_chunks(NpyArray(tmp_path / "x.npy"), q), whole)
    np.testing.assert_array_equal(quantize_in_chunks(x, q), whole)
    # More rows than fit_samples: the fit sees the seeded subset of fit_rows, the codes cover all rows.
    sub = fit_rows(3000, 6, fit_samples=1200, seed=0)
    assert sub.shape == (1200,) and np.all(np.diff(sub) > 0)
    expected = q.clone().fit(x[sub]).transform(x)
    np.testing.assert_array_equal(quantize_in_chunks(NpyArray(tmp_path / "x.npy"), q, fit_samples=1200), expected)
    assert fit_rows(10**6, 2**16, fit_samples=20_000).shape == (1000,)  # wide rows: a smaller fitting copy


def test_journal_resumes_an_interrupted_sweep_with_every_row_once(tmp_path, monkeypatch):
    sources = [make_acts(0, name="a"), make_acts(1, name="b")]  # 2 checkpoints x 2 x 1 pairs
    full = sweep(sources, **KW)
    journal = tmp_path / "sweep.jsonl"
    calls = []
    real = sweeps._pid_task

    def interrupted(*args):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(args[0].key)
        return real(*args)

    monkeypatch.setattr(sweeps, "_pid_task", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sweep(sources, journal=journal, **KW)
    with open(journal, "a") as f:
        f.write('{"checkpoint": "b", "teacher_la')  # a line cut off by a kill
    monkeypatch.setattr(sweeps, "_pid_task", real)
    resumed = sweep(sources, journal=journal, **KW)
    same(full, resumed)
    lines = journal.read_text().splitlines()
    rows = [json.loads(line)["row"] for line in lines[1:]]
    keys = [(r["checkpoint"], r["teacher_layer"], r["student_layer"]) for r in rows]
    assert sorted(keys) == sorted(map(tuple, full[["checkpoint", "teacher_layer", "student_layer"]].values))
    assert keys[:2] == calls  # the two finished rows were kept, not computed again
    again = sweep(sources, journal=journal, **KW)  # everything done: read back exactly
    same(full, again)
    assert journal.read_text().splitlines() == lines


def test_journal_never_appends_to_a_foreign_file_or_mixes_parameters(tmp_path):
    acts = make_acts()
    other = tmp_path / "notes.txt"
    other.write_text("my notes\n")
    with pytest.raises(ValueError, match="not a pidkd sweep journal"):
        sweep(acts, journal=other, **KW)
    assert other.read_text() == "my notes\n"
    journal = tmp_path / "j.jsonl"
    sweep(acts, journal=journal, **KW)
    with pytest.raises(ValueError, match=r"other parameters \(now: \{'n_bootstrap': 9\}\)"):
        sweep(acts, journal=journal, **(KW | {"n_bootstrap": 9}))


def test_journal_reuses_rows_only_for_the_same_data_and_survives_damage(tmp_path):
    journal = tmp_path / "j.jsonl"
    journal.write_bytes(b"")  # a crash before the header: an empty journal is a new one
    first = sweep(make_acts(0, name="ck"), journal=journal, **KW)
    with pytest.warns(RuntimeWarning, match="computed from other data under the same checkpoint names"):
        other = sweep(make_acts(1, name="ck"), journal=journal, **KW)  # same name, other activations
    same(other, sweep(make_acts(1, name="ck"), **KW))
    assert not other[["red", "uni_t"]].equals(first[["red", "uni_t"]])
    with open(journal, "a") as f:
        f.write("this line is no row\n")
    with pytest.warns(RuntimeWarning, match="line 6 of journal=.* is not a row pidkd wrote"):
        again = sweep(make_acts(1, name="ck"), journal=journal, **KW)
    same(other, again)
    binary = tmp_path / "model.pt"
    binary.write_bytes(bytes(range(256)))
    with pytest.raises(ValueError, match="not a pidkd sweep journal"):
        sweep(make_acts(), journal=binary, **KW)


def test_journal_is_locked_while_a_sweep_writes_it(tmp_path):
    pytest.importorskip("fcntl")
    journal = tmp_path / "j.jsonl"
    log = Journal(journal, {"a": 1})
    try:
        with pytest.raises(ValueError, match="being written by another sweep"):
            Journal(journal, {"a": 1})
    finally:
        log.close()
    Journal(journal, {"a": 1}).close()  # free again


def broken_sources():
    bad = make_acts(2, name="bad")
    t1 = bad.teacher["t1"].copy()
    t1[7, 0] = np.nan
    return [make_acts(0, name="good"), Activations(bad.labels, {"t1": t1, "t2": bad.teacher["t2"]}, bad.student, "bad")]


def test_a_failing_pair_is_reported_with_its_checkpoint_and_layers_and_the_others_finish():
    with pytest.raises(SweepError, match=r"1 of 4 pairs failed.*bad, t1 x s1: ValueError: .*finite") as info:
        sweep(broken_sources(), **KW)
    err = info.value
    assert err.failures == [
        {"checkpoint": "bad", "teacher_layer": "t1", "student_layer": "s1", "error": err.failures[0]["error"]}
    ]
    assert err.results[["checkpoint", "teacher_layer"]].values.tolist() == [
        ["good", "t1"],
        ["good", "t2"],
        ["bad", "t2"],
    ]
    with pytest.warns(RuntimeWarning, match="1 of 4 pairs failed"):
        df = sweep(broken_sources(), on_error="warn", **KW)
    same(df, err.results)
    assert df.attrs["failures"] == err.failures
    with pytest.warns(RuntimeWarning, match="1 of 4 pairs failed"):
        in_processes = sweep(broken_sources(), on_error="warn", n_jobs=2, **KW)  # joblib: the same table
    same(df, in_processes)
    assert in_processes.attrs["failures"] == err.failures


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def test_dask_sweep_gives_the_serial_table_and_reports_failures(tmp_path, dask_client):
    sources = [write_npy_dir(tmp_path / f"ck{i}", make_acts(i, name=f"ck{i}")) for i in range(2)]
    sources.append(save_activations(tmp_path / "ck2.npz", make_acts(2)))
    serial = sweep(sources, **KW)
    assert len(serial) == 6
    same(serial, sweep(sources, client=dask_client, **KW))
    with pytest.raises(SweepError, match=r"bad, t1 x s1: ValueError") as info:
        sweep(broken_sources(), client=dask_client, **KW)
    assert len(info.value.results) == 3
    journal = tmp_path / "j.jsonl"
    sweep(sources[:1], client=dask_client, journal=journal, **KW)  # a first, partial run
    same(serial, sweep(sources, client=dask_client, journal=journal, **KW))
    assert len(journal.read_text().splitlines()) == 1 + 6


def test_sweep_shows_its_own_bar_and_none_of_each_pair(monkeypatch, capsys):
    from pidkd.estimators import samples

    monkeypatch.setattr(samples, "PROGRESS_CELLS", 0)  # every table counts as large
    sweep(make_acts(), **(KW | {"progress": True}))
    err = capsys.readouterr().err
    assert "PID sweep" in err and "pid_from_samples" not in err


def test_sweep_argument_checks():
    acts = make_acts()
    with pytest.raises(ValueError, match="either client= .* or n_jobs="):
        sweep(acts, client=object(), n_jobs=2, **KW)
    with pytest.raises(TypeError, match="expects a dask.distributed.Client"):
        sweep(acts, client=object(), **KW)
    with pytest.raises(ValueError, match="'on_error' parameter of sweep"):
        sweep(acts, on_error="ignore", **KW)


class DieOnce(dict):
    """Layers whose first read kills the process reading it: a worker that dies mid-task."""

    def __init__(self, data, marker):
        super().__init__(data)
        self.marker = marker

    def __getitem__(self, key):
        if not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(1)
        return super().__getitem__(key)

    def __reduce__(self):
        return DieOnce, (dict(self), self.marker)


def test_dask_reruns_the_task_of_a_worker_that_died(tmp_path, dask_client):
    acts = make_acts(4, name="ck")
    dying = Activations(acts.labels, DieOnce(acts.teacher, str(tmp_path / "died")), acts.student, name="ck")
    same(sweep(acts, **KW), sweep(dying, client=dask_client, **KW))
    assert (tmp_path / "died").exists()  # a worker did die, and its task ran again


def test_quantizer_never_changes_the_callers_data():
    a = np.random.default_rng(0).normal(size=(60, 4))
    before = a.copy()
    Quantizer("kmeans", 3, n_init=1).fit(memoryview(a))
    Quantizer("kmeans", 3, n_init=1).fit_transform(a)
    quantize_in_chunks(a, Quantizer("kmeans", 3, n_init=1))
    np.testing.assert_array_equal(a, before)


def test_npy_array_reads_like_numpy(tmp_path):
    x = np.random.default_rng(1).normal(size=(40, 3, 2))
    cases = {"c.npy": x, "f.npy": np.asfortranarray(x), "be.npy": x.astype(">f4")}
    for name, arr in cases.items():
        np.save(tmp_path / name, arr)
        lazy = NpyArray(tmp_path / name)
        keys = [slice(None), slice(5, 9), slice(30, 99), slice(9, 2), slice(0, 40, 7), np.array([4, 4, -1, 0]), 7]
        keys += [np.arange(40) % 3 == 0, (1, 2), ([1, 2], 0), np.array([], dtype=int), ...]
        for key in keys:
            got, want = lazy[key], arr[key]
            assert got.shape == want.shape and np.array_equal(got, want), (name, key)
    np.save(tmp_path / "scalar.npy", np.float64(2.5))
    assert np.asarray(NpyArray(tmp_path / "scalar.npy")) == 2.5
    (tmp_path / "cut.npy").write_bytes((tmp_path / "c.npy").read_bytes()[:200])
    with pytest.raises(ValueError, match="could not be read as a .npy array"):
        NpyArray(tmp_path / "cut.npy")


def test_engines_agree_on_many_labels(tmp_path, dask_client):
    """20 labels x 10 x 10 codes take the structured (Woodbury) Newton step, which splits one problem's
    labels between threads: its sums must not depend on the thread count or the calling thread."""
    rng = np.random.default_rng(5)
    y = rng.integers(0, 20, 4000)
    acts = Activations(y, {"t": y[:, None] + rng.normal(size=(4000, 3))}, {"s": rng.normal(size=(4000, 3))}, "ck")
    kw = dict(quantizer=Quantizer("kmeans", 10, n_init=1), n_bootstrap=2, n_permutations=1, progress=False)
    kw["bias_correction"] = "none"
    serial = sweep(acts, **kw)
    same(serial, sweep(acts, client=dask_client, **kw))
    same(serial, sweep(acts, n_jobs=2, **kw))
