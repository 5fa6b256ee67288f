import numpy as np
import pytest

from pidkd.estimators.activations import Activations, load_activations, save_activations
from pidkd.estimators.quantize import Quantizer
from pidkd.estimators.sweeps import sweep


def make_acts(seed=0, n=300):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    return Activations(
        labels=y,
        teacher={
            "l1": (np.eye(3)[y] * 2 + rng.normal(size=(n, 3)) * 0.1).astype(np.float32),
            "l2": rng.normal(size=(n, 2, 2, 2)).astype(np.float32),
        },
        student={"s1": (np.eye(3)[y] + rng.normal(size=(n, 3)) * 0.5).astype(np.float32)},
        name="ck",
    )


def assert_same(a, b):
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.teacher.keys() == b.teacher.keys() and a.student.keys() == b.student.keys()
    for k in a.teacher:
        np.testing.assert_array_equal(a.teacher[k], b.teacher[k])
    for k in a.student:
        np.testing.assert_array_equal(a.student[k], b.student[k])


def test_npz_round_trip(tmp_path):
    acts = make_acts()
    assert_same(load_activations(save_activations(tmp_path / "a.npz", acts)), acts)


def test_safetensors_round_trip(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    acts = make_acts()
    flat = {"labels": acts.labels.astype(np.int64)}
    flat.update({f"teacher/{k}": v for k, v in acts.teacher.items()})
    flat.update({f"student/{k}": v for k, v in acts.student.items()})
    st.save_file(flat, str(tmp_path / "a.safetensors"))
    assert_same(load_activations(tmp_path / "a.safetensors"), acts)


def test_pt_round_trip_flat_and_nested(tmp_path):
    torch = pytest.importorskip("torch")
    acts = make_acts()
    nested = {
        "labels": torch.from_numpy(acts.labels),
        "teacher": {k: torch.from_numpy(v) for k, v in acts.teacher.items()},
        "student": {k: torch.from_numpy(v) for k, v in acts.student.items()},
    }
    torch.save(nested, tmp_path / "n.pt")
    assert_same(load_activations(tmp_path / "n.pt"), acts)
    flat = (
        {"y": torch.from_numpy(acts.labels)}
        | {f"T.{k}": torch.from_numpy(v) for k, v in acts.teacher.items()}
        | {f"S.{k}": torch.from_numpy(v) for k, v in acts.student.items()}
    )
    torch.save(flat, tmp_path / "f.pt")
    assert_same(load_activations(tmp_path / "f.pt", labels_key="y", teacher_prefix="T.", student_prefix="S."), acts)


def test_bad_files_and_missing_keys(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_activations(tmp_path / "nope.npz")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ValueError, match=r"directories of .npy files and Zarr groups; got 'x.txt'"):
        load_activations(tmp_path / "x.txt")
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="could not read"):
        load_activations(tmp_path / "broken.npz")
    np.savez(tmp_path / "nolabels.npz", **{"teacher/a": np.zeros((2, 2)), "student/b": np.zeros((2, 2))})
    with pytest.raises(ValueError, match=r"no labels key 'labels'. Available keys: \['student/b', 'teacher/a'\]"):
        load_activations(tmp_path / "nolabels.npz")
    np.savez(tmp_path / "nostudent.npz", labels=np.zeros(2), **{"teacher/a": np.zeros((2, 2))})
    with pytest.raises(ValueError, match=r"no student activations \(keys starting with 'student/'\). Available keys"):
        load_activations(tmp_path / "nostudent.npz")
    np.savez(
        tmp_path / "rows.npz", labels=np.zeros(3), **{"teacher/a": np.zeros((2, 2)), "student/b": np.zeros((3, 2))}
    )
    with pytest.raises(ValueError, match=r"3 labels but arrays with other row counts: \{'teacher/a': 2\}"):
        load_activations(tmp_path / "rows.npz")


def test_sweep_table(tmp_path):
    files = [save_activations(tmp_path / f"ck{i}.npz", make_acts(i)) for i in range(2)]
    df = sweep(files, quantizer=Quantizer("kmeans", 3), n_bootstrap=20, n_permutations=3, progress=False)
    assert len(df) == 2 * 2 * 1
    assert list(df["checkpoint"].unique()) == ["ck0", "ck1"]
    assert {"red", "uni_t", "red_lo", "red_hi", "red_null", "n_samples", "n_t", "status"} <= set(df.columns)
    row = df[(df["teacher_layer"] == "l1") & (df["checkpoint"] == "ck0")].iloc[0]
    assert row["mi_t"] == pytest.approx(np.log2(3), abs=0.02) and row["status"] == "optimal"
    df2 = sweep(
        files,
        teacher_layers=["l1"],
        quantizer=Quantizer("kmeans", 3),
        n_bootstrap=20,
        n_permutations=3,
        progress=False,
        n_jobs=2,
    )
    np.testing.assert_allclose(df2["red"], df[df["teacher_layer"] == "l1"]["red"])
    with pytest.raises(
        ValueError, match=r"teacher layer\(s\) \['zz'\] not in checkpoint 'ck0'; available: \['l1', 'l2'\]"
    ):
        sweep(files, teacher_layers=["zz"], progress=False)
    with pytest.raises(ValueError, match="at least one checkpoint"):
        sweep([], progress=False)


def test_sweep_reports_the_correction_the_plug_in_and_one_warning_for_thin_tables():
    import warnings

    from pidkd.estimators.samples import SampleSizeWarning

    acts = make_acts(3, n=120)
    kw = {"quantizer": Quantizer("kmeans", 6), "n_bootstrap": 10, "n_permutations": 0, "progress": False}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = sweep(acts, **kw)
    thin = [w for w in caught if issubclass(w.category, SampleSizeWarning)]
    assert len(thin) == 1 and "of 2 rows have fewer than 5 samples per occupied cell" in str(thin[0].message)
    assert (df["bias_correction"] == "jackknife").all() and not df["reliable"].all()
    plain = sweep(acts, bias_correction="none", **kw)
    np.testing.assert_allclose(plain["red"], plain["red_plugin"])
    np.testing.assert_allclose(plain["red_plugin"], df["red_plugin"])  # same plug-in either way
    assert (df["syn"] < df["syn_plugin"]).any()  # the correction lowers the spurious synergy
    with pytest.raises(ValueError, match=r"'bias_correction' parameter of sweep\(\) must be one of"):
        sweep(acts, bias_correction="jk", progress=False)
