"""Adversarial inputs to pidkd.distill (issue 14): unsafe or foreign checkpoints, colliding probe names,
mutated arguments, and inputs that used to fail late or with a raw library error.

Tiny models on 48 random samples, CPU, one or two epochs: every test runs in well under a second or two.
"""

import dataclasses
import json
import math
import pickle
import re
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import torch.nn.functional as F  # noqa: E402

from pidkd.distill import KD, RID, TED, VID, DistillConfig, DistillMethod, PIDProbe, Student, fit  # noqa: E402
from pidkd.estimators import Quantizer  # noqa: E402
from tests.distill.test_distill import mlp  # noqa: E402

RID_LAYERS = {"teacher_layers": ["1"], "student_layers": ["1"]}


def teacher():
    return mlp([6, 8, 3], 0)


def student(n_classes=3):
    return mlp([6, 4, n_classes], 1)


def cfg(**kw):
    return DistillConfig(**({"epochs": 1, "batch_size": 16, "progress": False} | kw))


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(48, 6, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()  # 3 classes
    return x, y


def small_probe(data, **kw):
    kw = {"n_bootstrap": 2, "n_permutations": 1, "quantizer": Quantizer(n_bins=3), "background": False} | kw
    return PIDProbe(data, **kw)


def params(model):
    return [p.detach().clone() for p in model.parameters()]


def same(a, b):
    return all(torch.equal(u, v) for u, v in zip(a, b))


# -- 1. checkpoints are loaded with weights_only=True and checked --------------------------------------------


def write_checkpoint(tmp_path, data, method="student", probes=()):
    config = cfg(checkpoint_every=1, checkpoint_dir=str(tmp_path / "ckpt"))
    fit(teacher(), student(), data, method=method, config=config, probes=probes)
    return tmp_path / "ckpt" / f"{method}_epoch0001.pt"


def test_checkpoint_is_plain_data_that_weights_only_loads_and_resumes(tmp_path, data, monkeypatch):
    analyse = PIDProbe.analyse

    def numpy_columns(self, captured, epoch):  # history values as numpy scalars, which weights_only refuses
        return {k: np.float64(v) for k, v in analyse(self, captured, epoch).items()} | {"n": np.int64(3)}

    monkeypatch.setattr(PIDProbe, "analyse", numpy_columns)
    path = write_checkpoint(tmp_path, data, probes=[small_probe(data, teacher_layer="1", student_layer="1")])
    state = torch.load(path, weights_only=True)
    assert state["format"] == "pidkd-checkpoint" and state["version"] == 1
    row = state["history"][0]
    assert "probe_1_1_red_lo" in row and row["n"] == 3
    assert all(type(v) in (int, float, str, bool, type(None)) for v in row.values()), row
    resumed = fit(teacher(), student(), data, method="student", config=cfg(epochs=2), resume_from=str(path))
    assert list(resumed.history["epoch"]) == [1, 2]


def test_checkpoints_never_replace_files_unasked(tmp_path, data):
    path = write_checkpoint(tmp_path, data)
    before = path.read_bytes()
    config = cfg(checkpoint_every=1, checkpoint_dir=str(tmp_path / "ckpt"))
    trained = params(s := student())
    with pytest.raises(FileExistsError, match=r"would replace 1 existing checkpoint.*overwrite_checkpoints=True"):
        fit(teacher(), s, data, method="student", config=config)
    assert path.read_bytes() == before and same(params(s), trained)  # refused before any training
    # resuming writes only later epochs, so the checkpoint it starts from is not in the way
    fit(teacher(), student(), data, method="student", config=cfg(epochs=2, checkpoint_every=1,
        checkpoint_dir=str(tmp_path / "ckpt")), resume_from=str(path))  # fmt: skip
    assert (tmp_path / "ckpt" / "student_epoch0002.pt").exists() and path.read_bytes() == before
    fit(teacher(), student(), data, method="student", config=dataclasses.replace(config, overwrite_checkpoints=True))
    assert path.read_bytes() != before


def _foreign_file(kind, tmp_path, data):
    path = tmp_path / "foreign.pt"
    if kind == "tensor":
        torch.save(torch.zeros(3), path)
    elif kind == "dict lacking keys":
        torch.save({"format": "pidkd-checkpoint", "version": 1, "method": "student"}, path)
    elif kind == "random bytes":
        path.write_bytes(bytes(range(256)) * 8)
    elif kind == "truncated":
        path.write_bytes(write_checkpoint(tmp_path, data).read_bytes()[:300])
    elif kind == "directory":
        path = tmp_path
    else:  # an unmarked (older) checkpoint, or one of a future format version
        state = torch.load(write_checkpoint(tmp_path, data), weights_only=True)
        if kind == "no format marker":
            del state["format"], state["version"]
        else:
            state["version"] = 99
        torch.save(state, path)
    return path


@pytest.mark.parametrize(
    ("kind", "match"),
    [
        ("tensor", "is not a pidkd checkpoint"),
        ("dict lacking keys", r"is not a complete pidkd checkpoint: it lacks \[.*'student'"),
        ("random bytes", "could not be read safely"),
        ("truncated", "could not be read safely"),
        ("directory", "is a directory, not a pidkd checkpoint"),
        ("no format marker", "re-create it"),
        ("future version", "format version 99"),
    ],
)
def test_resume_rejects_files_that_are_not_pidkd_checkpoints(kind, match, tmp_path, data):
    path = _foreign_file(kind, tmp_path, data)
    with pytest.raises(ValueError, match=match) as info:
        fit(teacher(), student(), data, method="student", config=cfg(), resume_from=str(path))
    assert repr(str(path)) in str(info.value)


def test_resume_from_a_missing_path(tmp_path, data):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        fit(teacher(), student(), data, method="student", config=cfg(), resume_from=str(tmp_path / "nope.pt"))


class _Payload:
    """Unpickling this calls open(marker, "w"): a stand-in for arbitrary code in a crafted checkpoint."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_malicious_checkpoint_runs_no_code(tmp_path, data):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": "pidkd-checkpoint", "version": 1, "method": "student", "x": _Payload(str(marker))}, path)
    with pytest.raises(ValueError, match="could not be read safely"):
        fit(teacher(), student(), data, method="student", config=cfg(), resume_from=str(path))
    assert not marker.exists()
    raw = tmp_path / "evil.pkl"  # a bare pickle, without torch's zip container
    raw.write_bytes(pickle.dumps({"format": "pidkd-checkpoint", "x": _Payload(str(marker))}, protocol=2))
    with pytest.raises(ValueError, match="could not be read safely"):
        fit(teacher(), student(), data, method="student", config=cfg(), resume_from=str(raw))
    assert not marker.exists()


def test_resume_checks_method_and_architecture(tmp_path, data):
    path = write_checkpoint(tmp_path, data)
    with pytest.raises(ValueError, match="was written by method='student', not 'kd'"):
        fit(teacher(), student(), data, method="kd", config=cfg(), resume_from=str(path))
    with pytest.raises(ValueError, match="does not fit this run"):
        fit(teacher(), mlp([6, 5, 3], 1), data, method="student", config=cfg(), resume_from=str(path))


# -- 2. probe names ------------------------------------------------------------------------------------------


def test_default_probe_name_comes_from_the_layers(data):
    assert small_probe(data, teacher_layer="layer3.0", student_layer="1").name == "probe_layer3_0_1"
    assert small_probe(data, teacher_layer="1", student_layer="1", name="mine").name == "mine"


def test_two_default_probes_write_separate_columns(data):
    probes = [
        small_probe(data, teacher_layer="1", student_layer="1"),
        small_probe(data, teacher_layer="0", student_layer="2"),
    ]
    h = fit(teacher(), student(), data, method="kd", config=cfg(), probes=probes).history
    assert {"probe_1_1_red", "probe_0_2_red", "probe_1_1_mi_s", "probe_0_2_mi_s"} <= set(h.columns)
    assert "probe_red" not in h.columns
    assert h["probe_1_1_mi_s"].iloc[0] != h["probe_0_2_mi_s"].iloc[0]  # 4 ReLU units vs 3 logits


@pytest.mark.parametrize(
    ("names", "match"),
    [
        ((None, None), r"'probe_1_1'.*name="),
        (("a", "a"), r"'a'.*name="),
        (("a", "a_filters"), r"'a_filters'.*name="),
    ],
)
def test_duplicate_probe_names_are_rejected_before_training(names, match, data):
    probes = [small_probe(data, teacher_layer="1", student_layer="1", name=n, every=k + 1) for k, n in enumerate(names)]
    net = student()
    before = params(net)
    with pytest.raises(ValueError, match=match):
        fit(
            teacher(),
            net,
            data,
            method="rid",
            config=cfg(cycle_epochs=2, phase1_fraction=0.5),
            probes=probes,
            **RID_LAYERS,
        )
    assert same(before, net.parameters())


def test_probe_with_unknown_layer_fails_before_training(data):
    net = student()
    before = params(net)
    with pytest.raises(ValueError, match=r"no module named \['9'\]"):
        fit(
            teacher(),
            net,
            data,
            method="kd",
            config=cfg(),
            probes=[small_probe(data, teacher_layer="9", student_layer="1")],
        )
    assert same(before, net.parameters())


# -- 3. and 4. fit changes neither its config nor the teacher's flags --------------------------------------------


def test_fit_does_not_mutate_the_config(data):
    config = cfg(epochs=3)
    res = fit(teacher(), student(), data, method="kd", epochs=1, config=config)
    assert config.epochs == 3
    assert res.config.epochs == 1 and len(res.history) == 1 and res.history.attrs["config"]["epochs"] == 1


def _state(net):
    return [p.requires_grad for p in net.parameters()], [m.training for m in net.modules()]


@pytest.mark.parametrize("fails", [False, True])
def test_fit_restores_the_teachers_flags_and_modes(fails, data):
    t = teacher()
    t[0].weight.requires_grad_(False)  # mixed flags and modes, as a user may have them
    t[2].eval()
    before = _state(t)
    seen = []
    handle = t.register_forward_hook(lambda m, i, o: seen.append(_state(m)))
    x, y = data
    if fails:
        with pytest.raises(FloatingPointError):
            fit(t, student(), (x * math.nan, y), method="kd", config=cfg())
    else:
        fit(t, student(), data, method="kd", config=cfg())
    handle.remove()
    assert _state(t) == before
    # while training, the teacher was frozen and in eval mode
    assert seen and all(not any(g) and not any(m) for g, m in seen)


# -- should fix: arguments are checked up front ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        ({"epochs": 0}, ValueError, r"'epochs' parameter of DistillConfig\(\) must be a positive int. Got 0 instead"),
        ({"epochs": 2.5}, TypeError, r"'epochs' parameter of DistillConfig\(\) must be a positive int. Got 2.5"),
        ({"epochs": True}, TypeError, r"'epochs' parameter .* Got True"),
        # a deprecated method knob is checked by the method that owns it (KD(alpha=...), RID(reduction=...))
        ({"kd_alpha": 1.5}, ValueError, r"DistillConfig\(kd_alpha=1.5\) is deprecated .* 'alpha' parameter of KD"),
        ({"reduction": "avg"}, ValueError, r"DistillConfig\(reduction='avg'\) .* 'reduction' parameter of RID"),
        ({"batch_size": 0}, ValueError, "'batch_size' parameter"),
        ({"lr": 0.0}, ValueError, "'lr' parameter .* positive number. Got 0.0"),
        ({"lr": "0.1"}, TypeError, "'lr' parameter .* Got '0.1'"),
        ({"filter_lr": -1.0}, ValueError, "'filter_lr' parameter"),
        ({"momentum": -0.5}, ValueError, "'momentum' parameter"),
        ({"grad_clip": -1.0}, ValueError, "'grad_clip' parameter"),
        ({"lr_milestones": [2, "x"]}, TypeError, "'lr_milestones' parameter"),
        ({"checkpoint_every": 2}, ValueError, "'checkpoint_dir' parameter .* checkpoint_every=2"),
        (
            {"amp": "no"},
            TypeError,
            r"'amp' parameter of DistillConfig\(\) must be a bool \(True or False\)\. Got 'no' instead",
        ),
        ({"progress": "false"}, TypeError, r"'progress' parameter .* bool \(True or False\)\. Got 'false'"),
        ({"nesterov": "False"}, TypeError, r"'nesterov' parameter .* bool \(True or False\)\. Got 'False'"),
    ],
)
def test_bad_config_values_fail_at_construction(kw, error, match):
    with pytest.raises(error, match=match):
        DistillConfig(**kw)


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: RID(cycle_epochs=0), ValueError, r"'cycle_epochs' parameter of RID\(\) must be a positive int"),
        (lambda: RID(phase1_fraction=0.0), ValueError, r"'phase1_fraction' parameter of RID\(\) .* in \(0, 1\)"),
        (lambda: RID(phase1_fraction=1.0), ValueError, r"'phase1_fraction' parameter .* in \(0, 1\)"),
        (lambda: RID(reduction="avg"), ValueError, r"'reduction' parameter of RID\(\) must be one of"),
        (lambda: RID(sigma_penalty="l2"), ValueError, r"'sigma_penalty' parameter of RID\(\) must be one of"),
        (lambda: RID(warmup_epochs=-1), ValueError, r"'warmup_epochs' parameter of RID\(\) .* Got -1"),
        (lambda: RID(lambda_distill=-1.0), ValueError, r"'lambda_distill' parameter of RID\(\)"),
        (lambda: RID(train_student_in_phase1="no"), TypeError, r"'train_student_in_phase1' parameter of RID"),
        (lambda: TED(filter_channels=0), ValueError, r"'filter_channels' parameter of TED\(\)"),
        (lambda: TED(lambda_distill=math.nan), ValueError, r"'lambda_distill' parameter of TED\(\)"),
        (lambda: KD(alpha=1.5), ValueError, r"'alpha' parameter of KD\(\) must be a number in \[0, 1\]"),
        (lambda: KD(temperature=0), ValueError, r"'temperature' parameter of KD\(\)"),
        (lambda: VID(lambda_distill="100"), TypeError, r"'lambda_distill' parameter of VID\(\) .* Got '100'"),
        (lambda: RID.preset("mine"), ValueError, r"'variant' parameter of RID.preset\(\) must be one of"),
        (lambda: Student.preset("paper"), ValueError, r"'variant' parameter of Student.preset\(\) .* none"),
    ],
)
def test_bad_method_knobs_fail_in_the_method_constructor(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_a_config_changed_after_construction_is_checked_by_fit(data):
    config = cfg()
    config.epochs = 0
    with pytest.raises(ValueError, match="'epochs' parameter"):
        fit(teacher(), student(), data, method="kd", config=config)
    with pytest.raises(ValueError, match=r"'epochs' parameter of fit\(\) must be a positive int"):
        fit(teacher(), student(), data, method="kd", config=cfg(), epochs=0)
    with pytest.raises(TypeError, match=r"'config' parameter of fit\(\) must be a DistillConfig"):
        fit(teacher(), student(), data, method="kd", config={"epochs": 1})


def test_layer_names_must_be_a_sequence_of_names(data):
    with pytest.raises(TypeError, match=r"'teacher_layers' parameter of fit\(\) must be a sequence of module names"):
        fit(teacher(), student(), data, method="vid", teacher_layers="1", student_layers=["1"], config=cfg())


# cycles of 2 epochs: round(0.25 * 2) = 0 (phase 1 never runs), round(0.9 * 2) = 2 (phase 2 never runs)
@pytest.mark.parametrize("fraction", [0.25, 0.9])
def test_a_rid_schedule_that_skips_a_phase_is_rejected(fraction, data):
    config = cfg(cycle_epochs=2, phase1_fraction=fraction)
    with pytest.raises(ValueError, match=r"phase1_fraction \* cycle_epochs"):
        fit(teacher(), student(), data, method="rid", config=config, **RID_LAYERS)
    fit(teacher(), student(), data, method="kd", config=config)  # the RID schedule does not matter to KD


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (lambda d: {"data": (d[0][:2], d[1][:2])}, ValueError, r"2 samples.*n_bins=3"),
        (lambda d: {"quantizer": Quantizer(n_bins=60)}, ValueError, r"48 samples.*n_bins=60"),
        (lambda d: {"quantizer": None, "data": (d[0][:8], d[1][:8])}, ValueError, r"8 samples.*n_bins=10"),
        (lambda d: {"n_bootstrap": -1}, ValueError, r"'n_bootstrap' parameter of PIDProbe\(\)"),
        (lambda d: {"n_bootstrap": 2.5}, TypeError, "'n_bootstrap' parameter"),
        (lambda d: {"n_permutations": -1}, ValueError, "'n_permutations' parameter"),
        (lambda d: {"every": 0}, ValueError, "'every' parameter"),
        (lambda d: {"background": "yes"}, TypeError, "'background' parameter .* bool"),
        (lambda d: {"name": ""}, ValueError, "'name' parameter"),
        (lambda d: {"data": (d[0].tolist(), d[1])}, TypeError, "'data' parameter .* tensors"),
        (lambda d: {"data": (d[0], d[1][:-1])}, ValueError, "48 inputs and 47 labels"),
        (lambda d: {"data": d[0]}, TypeError, "'data' parameter"),
    ],
)
def test_bad_probe_arguments_fail_at_construction(change, error, match, data):
    kw = {"teacher_layer": "1", "student_layer": "1"} | change(data)
    with pytest.raises(error, match=match):
        small_probe(kw.pop("data", data), **kw)


def test_probe_accepts_numpy_arrays_and_lists(data):
    x, y = data
    assert isinstance(small_probe((x.numpy(), y.numpy()), teacher_layer="1", student_layer="1").data[0], torch.Tensor)
    assert isinstance(small_probe([x, y], teacher_layer="1", student_layer="1").data, tuple)


# -- should fix: raw library errors become pidkd errors ------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "error", "match"),
    [
        (lambda y: y + 5, ValueError, r"labels in \[0, 3\).*got labels from 5 to 7"),
        (lambda y: y - 1, ValueError, r"labels in \[0, 3\).*got labels from -1 to 1"),
        (lambda y: y.float(), TypeError, "integer class labels.*torch.float32"),
    ],
)
def test_bad_labels_fail_with_a_pidkd_error(labels, error, match, data):
    x, y = data
    with pytest.raises(error, match=match):
        fit(teacher(), student(), (x, labels(y)), method="kd", config=cfg())
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, labels(y)), batch_size=16)
    with pytest.raises(error, match=match):
        fit(teacher(), student(), loader, method="student", config=cfg())


def test_dtype_mismatch_fails_with_a_pidkd_error(data):
    with pytest.raises(ValueError, match=r"inputs are torch.float32 but the student's parameters are torch.float64"):
        fit(teacher(), student().double(), data, method="kd", config=cfg())


class _Wrapped(nn.Module):
    def __init__(self, net, kind):
        super().__init__()
        self.net, self.kind = net, kind

    def forward(self, x):
        out = self.net(x)
        return (out, x) if self.kind == "tuple" else {"logits": out}


@pytest.mark.parametrize("kind", ["tuple", "dict"])
@pytest.mark.parametrize("which", ["teacher", "student"])
def test_models_must_return_a_logits_tensor(kind, which, data):
    models = {"teacher": teacher(), "student": student()}
    models[which] = _Wrapped(models[which], kind)
    with pytest.raises(TypeError, match=rf"the {which} returned a {kind}.*wrap the model so that it returns"):
        fit(models["teacher"], models["student"], data, method="kd", config=cfg())


def test_kd_needs_as_many_teacher_as_student_classes(data):
    with pytest.raises(ValueError, match="teacher gives 3 logits and the student 5"):
        fit(teacher(), student(5), data, method="kd", config=cfg())


def test_list_and_numpy_pairs_are_accepted_like_a_tuple(data):
    x, y = data
    ref = fit(teacher(), student(), (x, y), method="kd", config=cfg()).history.drop(columns="wall_time")
    for given in ([x, y], (x.numpy(), y.numpy()), [x.numpy(), y.numpy()]):
        h = fit(teacher(), student(), given, method="kd", config=cfg()).history.drop(columns="wall_time")
        assert h.equals(ref)


def test_batches_must_be_input_label_pairs(data):
    x, y = data
    with pytest.raises(TypeError, match=r"batches of \(inputs, labels\).*got a dict"):
        fit(teacher(), student(), [{"x": x, "y": y}], method="kd", config=cfg())


def test_numpy_labels_of_a_float_array_fail_clearly(data):
    x, y = data
    with pytest.raises(TypeError, match="integer class labels"):
        fit(teacher(), student(), (x.numpy(), np.asarray(y.numpy(), dtype=float)), method="kd", config=cfg())


# -- issue 29: evaluation data checked as training data, checkpoints, reused probes, torchrun, methods ----------


def test_val_and_test_labels_are_checked_like_training_labels(data):
    """Labels of shape (N, 1) broadcast in argmax == y (val_acc 5.2); out-of-range ones scored 0 silently."""
    x, y = data
    net = student()
    before = params(net)
    with pytest.raises(ValueError, match=r"val_data labels of shape \(batch,\).*got shape \(48, 1\)"):
        fit(teacher(), net, data, method="kd", val_data=(x, y[:, None]), config=cfg())
    with pytest.raises(ValueError, match=r"test_data labels in \[0, 3\).*got labels from 5 to 7"):
        fit(teacher(), net, data, method="kd", test_data=(x, y + 5), config=cfg())
    with pytest.raises(TypeError, match="integer class labels in val_data"):
        fit(teacher(), net, data, method="kd", val_data=(x.numpy(), y.numpy() * 1.0), config=cfg())
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y[:, None]), batch_size=16)
    with pytest.raises(ValueError, match=r"val_data labels of shape \(batch,\).*got shape \(16, 1\)"):
        fit(teacher(), net, data, method="kd", val_data=loader, config=cfg())
    assert same(before, net.parameters())  # refused before any training
    res = fit(teacher(), net, data, method="kd", val_data=(x, y), test_data=(x.numpy(), y.numpy()), config=cfg())
    assert 0 <= res.best_val_acc <= 1 and 0 <= res.last_test_acc <= 1


@pytest.mark.parametrize("where", ["val_data", "test_data", "probe"])
def test_evaluation_inputs_of_another_dtype_or_shape_fail_before_training(where, data):
    """float64 numpy arrays or wrongly shaped inputs used to fail after epoch 1 ("mat1 and mat2 ...")."""
    x, y = data
    name, who = (where, "student") if where != "probe" else ("PIDProbe 'probe_1_1'", "teacher")
    cases = [
        ((x.double().numpy(), y.numpy()), rf"the {name} inputs are torch.float64 but the {who}'s parameters are "),
        (
            (x[:, :5], y),
            rf"the {who} cannot run on the {name} inputs, of shape \(5,\) per sample \(train_data's: \(6,\)",
        ),
    ]
    for bad, match in cases:
        net = student()
        before = params(net)
        kw = {"probes": [small_probe(bad, teacher_layer="1", student_layer="1")]} if where == "probe" else {where: bad}
        with pytest.raises(ValueError, match=match):
            fit(teacher(), net, data, method="kd", config=cfg(), **kw)
        assert same(before, net.parameters())


def test_a_checkpoint_dir_that_is_a_file_is_refused_before_training(tmp_path, data):
    file = tmp_path / "notes.txt"
    file.write_text("mine")
    for where, says in ((file, "which is an existing file"), (file / "ckpt", "lies under .*notes.txt', which is")):
        net = student()
        before = params(net)
        config = cfg(epochs=2, checkpoint_every=1, checkpoint_dir=str(where), overwrite_checkpoints=True)
        with pytest.raises(
            ValueError, match=rf"'checkpoint_dir' parameter of DistillConfig\(\) must be a directory.*{says}"
        ):
            fit(teacher(), net, data, method="student", config=config)
        assert same(before, net.parameters()) and file.read_text() == "mine"


def test_a_reused_probe_gives_the_numbers_of_a_fresh_one(data):
    """A probe kept the quantizers of its first run: a second run coded its student with the old k-means."""
    x, y = data
    reused = small_probe(data, teacher_layer="1", student_layer="1")
    fit(teacher(), mlp([6, 4, 3], 7), (x * 10, y), method="kd", config=cfg(), probes=[reused])  # another run first
    again = fit(teacher(), student(), data, method="kd", config=cfg(), probes=[reused]).history
    fresh_probe = small_probe(data, teacher_layer="1", student_layer="1")
    fresh = fit(teacher(), student(), data, method="kd", config=cfg(), probes=[fresh_probe]).history
    cols = [c for c in fresh if c.startswith("probe_1_1_")]
    assert len(cols) > 10 and again[cols].equals(fresh[cols])


UNEVEN = """
import json, os, sys
import torch
from pidkd.distill import DistillConfig, fit

rank = int(os.environ["RANK"])
g = torch.Generator().manual_seed(0)
x = torch.randn(64, 6, generator=g)
y = (x[:, 0] > 0).long()
n = 64 - 16 * rank  # rank 1 passes fewer samples than rank 0
torch.manual_seed(0)
teacher, student = torch.nn.Linear(6, 2), torch.nn.Linear(6, 2)
try:
    fit(teacher, student, (x[:n], y[:n]), method="kd", config=DistillConfig(epochs=1, batch_size=8, progress=False))
    message = None
except ValueError as err:
    message = str(err)
with open(os.path.join(sys.argv[1], f"rank{rank}.json"), "w") as f:
    json.dump(message, f)
"""


def test_torchrun_ranks_with_data_of_different_lengths_are_refused(tmp_path):
    """Uneven data made the ranks' gradient all-reduces mismatch: a hang until gloo's 30-minute timeout."""
    import os
    import subprocess
    import sys

    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("needs torch.distributed with the gloo backend")
    (tmp_path / "uneven.py").write_text(UNEVEN)
    env = os.environ | {"PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    proc = subprocess.run(
        [*cmd, str(tmp_path / "uneven.py"), str(tmp_path)], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in (0, 1):
        message = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert re.search(r"different numbers of train_data samples: 64 on rank 0, 48 on rank 1", message), message


@pytest.mark.parametrize(("method", "epochs"), [("rid", 1), ("ted", 1), ("rid", 3)])
def test_a_run_that_never_leaves_the_warm_up_is_warned_about(method, epochs, data):
    kind = {"rid": RID, "ted": TED}[method]
    config = cfg(epochs=epochs)
    warmup = kind(warmup_epochs=epochs if epochs > 1 else None)
    with pytest.warns(UserWarning, match=rf"all {epochs} epoch\(s\) of this run are warm-up epochs"):
        fit(teacher(), student(), data, method=warmup, config=config, **RID_LAYERS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a run that distils is not warned about
        fit(teacher(), student(), data, method=kind(warmup_epochs=1), config=cfg(epochs=2), **RID_LAYERS)


def test_resume_refuses_another_teacher_layers_config_or_fewer_epochs(tmp_path, data):
    config = cfg(epochs=2, cycle_epochs=2, phase1_fraction=0.5, warmup_epochs=0, coupling_from_cycle=0)
    fit(teacher(), student(), data, method="rid", config=dataclasses.replace(config, checkpoint_every=2,
        checkpoint_dir=str(tmp_path)), **RID_LAYERS)  # fmt: skip
    path = str(tmp_path / "rid_epoch0002.pt")
    cases = [
        ({"teacher": mlp([6, 8, 3], 5)}, "written with another teacher"),
        ({"teacher_layers": ["0"]}, r"teacher_layers=\['1'\], this run has teacher_layers=\['0'\]"),
        ({"config": dataclasses.replace(config, epochs=3, lr=0.1)}, r"DistillConfig lr=0.05 \(this run: 0.1\)"),
        ({"config": dataclasses.replace(config, epochs=3, cycle_epochs=3)}, r"ran the phases \['phase1', 'phase2'\]"),
        (
            {"config": dataclasses.replace(config, epochs=1)},
            "holds 2 epochs of training, more than this run's epochs=1",
        ),
    ]
    for change, match in cases:
        kw = {"teacher": teacher(), "config": dataclasses.replace(config, epochs=3)} | RID_LAYERS | change
        net = student()
        before = params(net)
        with pytest.raises(ValueError, match=match):
            fit(kw.pop("teacher"), net, data, method="rid", resume_from=path, **kw)
        assert same(before, net.parameters())
    res = fit(teacher(), student(), data, method="rid", config=dataclasses.replace(config, epochs=3), resume_from=path,
              **RID_LAYERS)  # fmt: skip
    assert list(res.history["epoch"]) == [1, 2, 3]


class _Terms(DistillMethod):
    name = "terms"

    def __init__(self, make):
        self.make = make

    def terms(self, phase, cfg, modules, step):
        return self.make(F.cross_entropy(step.logits, step.y))


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda loss: {}, ValueError, r"_Terms.terms\(\) \(method 'terms', phase 'train'\) must return a non-empty"),
        (lambda loss: [loss], TypeError, "must return a non-empty dict of loss terms.*returned a list"),
        (lambda loss: {"task": 0.5}, TypeError, "returned the term 'task' as a float; every term must be a scalar"),
        (lambda loss: {"task": [loss]}, TypeError, "returned the term 'task' as a list"),
        (lambda loss: {"task": loss.reshape(1)}, ValueError, r"'task' as a torch.float32 tensor of shape \(1,\)"),
        (lambda loss: {"task": loss.detach()}, ValueError, r"no loss term of _Terms.terms\(\).*carries a gradient"),
    ],
)
def test_a_users_method_terms_are_checked_on_the_first_step(make, error, match, data):
    with pytest.raises(error, match=match):
        fit(teacher(), student(), data, method=_Terms(make), config=cfg())


def test_the_same_module_as_teacher_and_student_is_refused(data):
    net = student()
    with pytest.raises(ValueError, match="the teacher and the student are the same module"):
        fit(net, net, data, method="kd", config=cfg())
    shared = nn.Sequential(net[0], nn.ReLU(), nn.Linear(4, 3))
    with pytest.raises(ValueError, match=r"modules that share 2 parameter tensor\(s\)"):
        fit(net, shared, data, method="kd", config=cfg())


@pytest.mark.parametrize("method", ["vid", "ted", "rid"])
def test_float64_models_train_with_every_method(method, data):
    """pidkd's own filters and regressors were float32 whatever the models: float64 models failed in them."""
    x, y = data
    config = cfg(epochs=3, warmup_epochs=1, cycle_epochs=2, phase1_fraction=0.5, coupling_from_cycle=0)
    res = fit(teacher().double(), student().double(), (x.double(), y), method=method, config=config, **RID_LAYERS)
    assert {p.dtype for p in res.modules.parameters()} == {torch.float64}
    assert np.isfinite(res.history[["loss_task", f"loss_{method}"]].iloc[-1]).all() and len(res.history) == 3
