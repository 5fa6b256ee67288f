"""The Distiller: a hand-written loop with it gives fit's history; phases train what fit trains; clear errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pidkd.distill import KD, RID, TED, VID, Callback, DistillConfig, Distiller, DistillMethod, Student, fit

LAYERS = {"teacher_layers": ["3"], "student_layers": ["3"]}


def cnn(c1: int, c2: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, c1, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(c1, c2, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(c2 * 16, 10),
    )


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = torch.tensor((x / 16.0).reshape(-1, 1, 8, 8).astype(np.float32))[:300]
    y = torch.tensor(y)[:300]
    teacher = cnn(8, 8, 0)
    opt = torch.optim.Adam(teacher.parameters(), 3e-3)
    for _ in range(2):
        for i in range(0, 300, 50):
            opt.zero_grad()
            F.cross_entropy(teacher(x[i : i + 50]), y[i : i + 50]).backward()
            opt.step()
    return x, y, teacher.eval()


METHODS = {
    "student": Student(),
    "kd": KD(alpha=0.7),
    "vid": VID(),
    "ted": TED(warmup_epochs=1),  # stage 1 steps both optimizers (the student filter in both)
    "rid": RID(cycle_epochs=2, phase1_fraction=0.5, lambda_distill=0.1),
    "rid_paper": RID.preset("paper", warmup_epochs=1, cycle_epochs=2, phase1_fraction=0.5, lambda_distill=0.01),
}


def own_loop(teacher, student, data, method, cfg) -> pd.DataFrame:
    """The loop of docs/own_loop.md, plus the bookkeeping of fit's history columns."""
    torch.manual_seed(cfg.seed)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(*data),
        batch_size=cfg.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    distiller = Distiller(teacher, student, method, config=cfg, **LAYERS)
    distiller.build(next(iter(loader))[0])
    optimizers, scheduler = distiller.configure_optimizers()
    rows = []
    for epoch in range(cfg.epochs):
        phase = distiller.start_epoch(epoch)
        lr = distiller.phase_optimizers[0].param_groups[0]["lr"]
        sums, correct, count, steps = {}, torch.zeros(()), torch.zeros(()), 0
        for x, y in loader:
            terms = distiller(x, y)
            distiller.zero_grad()
            terms["loss"].backward()
            distiller.optimizer_step()
            for k, v in terms.items():  # fit's history: float32 sums on the device, read once per epoch
                if k != "loss":
                    sums[k] = sums.get(k, torch.zeros(())) + v.detach().float()
            correct += (distiller.last_step.logits.argmax(1) == y).sum()
            count += y.numel()
            steps += 1
        distiller.end_epoch()
        row = {"epoch": epoch + 1, "phase": phase.name}
        row |= {f"loss_{k}": float(v.double()) / steps for k, v in sums.items()}
        rows.append(row | {"train_acc": float((correct / count).double()), "lr": lr})
    distiller.close()
    return pd.DataFrame(rows)


@pytest.mark.filterwarnings("ignore:.*knows nothing")  # a short run; the histories are what counts
@pytest.mark.parametrize("name", list(METHODS))
def test_own_loop_reproduces_fit_history_exactly(digits, name):
    x, y, teacher = digits
    cfg = DistillConfig(epochs=3, batch_size=64, seed=3, progress=False, filter_lr=0.02)
    mine = own_loop(teacher, cnn(4, 8, 1), (x, y), METHODS[name], cfg)
    res = fit(teacher, cnn(4, 8, 1), (x, y), method=METHODS[name], config=cfg, device="cpu", **LAYERS)
    pd.testing.assert_frame_equal(mine, res.history[list(mine.columns)], check_exact=True)
    assert len(set(mine["phase"])) == {"student": 1, "kd": 1, "vid": 1, "ted": 2, "rid": 3, "rid_paper": 3}[name]


class ChangedParameters(Callback):
    """The names of the Distiller's parameters that each epoch of fit changed."""

    def __init__(self) -> None:
        self.changed: dict[int, set[str]] = {}

    def on_epoch_start(self, state):
        self.before = {n: p.detach().clone() for n, p in state.distiller.named_parameters()}

    def on_epoch_end(self, state, row):
        after = dict(state.distiller.named_parameters())
        self.changed[row["epoch"] - 1] = {n for n, p in self.before.items() if not torch.equal(p, after[n])}


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        (
            RID(cycle_epochs=2, phase1_fraction=0.5),
            {"warmup": {"student", "ft", "head"}, "phase2": {"student", "fs", "sigma"}},
        ),
        (
            RID.preset("paper", warmup_epochs=0, cycle_epochs=2, phase1_fraction=0.5),
            {"phase1": {"ft", "head"}, "phase2": {"student", "fs", "sigma"}},
        ),
        (TED(warmup_epochs=1), {"warmup": {"student", "ft", "head", "fs", "shead"}, "train": {"student", "fs"}}),
        (TED.preset("paper", warmup_epochs=1), {"warmup": {"ft", "head", "fs", "shead"}, "train": {"student", "fs"}}),
    ],
    ids=["rid", "rid_paper", "ted", "ted_frozen_student"],
)
def test_each_phase_trains_exactly_the_parameters_fit_trains(digits, method, expected):
    x, y, teacher = digits
    cfg = DistillConfig(epochs=2, batch_size=100, progress=False)
    seen = ChangedParameters()
    fit(teacher, cnn(4, 8, 1), (x, y), method=method, config=cfg, device="cpu", callbacks=[seen], **LAYERS)
    distiller = Distiller(teacher, cnn(4, 8, 1), method, config=cfg, **LAYERS).build(x[:100])
    names = {id(p): n for n, p in distiller.named_parameters()}
    for epoch in range(cfg.epochs):
        phase = distiller.start_epoch(epoch)
        trained = {names[id(p)] for p in phase.parameters}
        assert trained == seen.changed[epoch], (epoch, phase.name)
        # the groups of the parameters: the student's, and the method's modules by name prefix
        groups = {n.split(".")[1].rstrip("0123456789") if n.startswith("method_") else "student" for n in trained}
        assert groups == expected[phase.name], (epoch, phase.name)
    distiller.close()


def test_phase_optimizers_match_fit(digits):
    x, _, teacher = digits
    d = Distiller(teacher, cnn(4, 8, 1), TED(warmup_epochs=1), config=DistillConfig(epochs=2), **LAYERS).build(x[:64])
    (opt_s, opt_t), _ = d.configure_optimizers()
    assert d.start_epoch(0).optimizers == (0, 1) and d.phase_optimizers == [opt_s, opt_t]
    assert d.start_epoch(1).optimizers == (0,) and d.phase_optimizers == [opt_s]
    groups = d.parameter_groups()
    assert [id(p) for p in groups["student"]] == [id(p) for g in opt_s.param_groups for p in g["params"]]
    assert [id(p) for p in groups["filters"]] == [id(p) for g in opt_t.param_groups for p in g["params"]]
    d.close()


def test_teacher_is_frozen_and_stays_in_eval_mode(digits):
    x, _, teacher = digits
    d = Distiller(teacher, cnn(4, 8, 1), "rid", config=DistillConfig(epochs=3), **LAYERS).build(x[:64])
    d.configure_optimizers()
    phase = d.start_epoch(0)
    d.train()
    assert not d.teacher.training and not any(p.requires_grad for p in d.teacher.parameters())
    assert d.student.training == phase.student
    assert {k: m.training for k, m in d.method_modules.items()} == {
        k: k.startswith(phase.modules) for k in d.method_modules
    }
    d.eval()
    assert not d.student.training and not any(m.training for m in d.method_modules.values())
    d.close()


def test_close_removes_the_layer_hooks(digits):
    x, _, teacher = digits
    student = cnn(4, 8, 1)
    with Distiller(teacher, student, "vid", **LAYERS) as d:
        assert len(student[3]._forward_hooks) == 1
    assert len(student[3]._forward_hooks) == 0 and len(teacher[3]._forward_hooks) == 0
    assert d.teacher_layers == ["3"]


def test_start_epoch_sets_the_run_length_and_its_schedule(digits):
    x, _, teacher = digits
    d = Distiller(teacher, cnn(4, 8, 1), "rid", config=DistillConfig(epochs=9), **LAYERS).build(x[:64])
    _, scheduler = d.configure_optimizers()
    assert d.method.cycle_epochs == 3 and sorted(scheduler.milestones) == []
    d.start_epoch(0, 12)
    assert d.config.epochs == 12 and d.method.cycle_epochs == 4 and sorted(scheduler.milestones) == [6, 9]
    d.close()


def test_no_such_layer_lists_the_available_names(digits):
    _, _, teacher = digits
    with pytest.raises(ValueError, match=r"student_layers names a module the student lacks: .*no module named \['9'\]"):
        Distiller(teacher, cnn(4, 8, 1), "rid", teacher_layers=["3"], student_layers=["9"])
    with pytest.raises(ValueError, match=r"teacher_layers names .*Available names: \['0', '1'"):
        Distiller(teacher, cnn(4, 8, 1), "rid", teacher_layers=["x"], student_layers=["3"])
    assert len(teacher[3]._forward_hooks) == 0  # a failed construction leaves no hook behind
    with pytest.raises(ValueError, match="needs paired layers"):
        Distiller(teacher, cnn(4, 8, 1), "vid")


def test_calling_before_start_epoch_or_build_says_what_to_call(digits):
    x, y, teacher = digits
    d = Distiller(teacher, cnn(4, 8, 1), "kd")
    with pytest.raises(RuntimeError, match=r"call distiller.build\(inputs\) first"):
        d.start_epoch(0)
    d.build(x[:64])
    with pytest.raises(RuntimeError, match=r"call distiller.start_epoch\(epoch, epochs\) at the start of every epoch"):
        d(x[:64], y[:64])
    with pytest.raises(RuntimeError, match=r"configure_optimizers\(\) first"):
        d.start_epoch(0)
        d.optimizer_step()
    d.close()


class FrozenEverything(DistillMethod):
    """A method whose only phase trains neither the student nor any module it built."""

    name = "frozen"

    def build(self, teacher, student, n_classes, cfg):
        return nn.ModuleDict({"extra": nn.Linear(2, 2)})

    def trains(self, phase, cfg):
        return ("nothing",), False

    def terms(self, phase, cfg, modules, step):
        return {"task": F.cross_entropy(step.logits, step.y)}


def test_a_phase_without_trainable_parameters_is_refused(digits):
    x, y, teacher = digits
    d = Distiller(teacher, cnn(4, 8, 1), FrozenEverything()).build(x[:64])
    with pytest.raises(ValueError, match=r"phase 'train' \(epoch 0\) trains neither the student nor any of the method"):
        d.start_epoch(0)
    with pytest.raises(ValueError, match="trains neither the student nor any"):
        fit(teacher, cnn(4, 8, 1), (x, y), method=FrozenEverything(), epochs=1, device="cpu")


def test_a_term_named_loss_is_refused(digits):
    x, y, teacher = digits

    class Named(FrozenEverything):
        def trains(self, phase, cfg):
            return ("",), True

        def terms(self, phase, cfg, modules, step):
            return {"loss": F.cross_entropy(step.logits, step.y)}

    d = Distiller(teacher, cnn(4, 8, 1), Named()).build(x[:64])
    d.start_epoch(0)
    with pytest.raises(ValueError, match="returned a term named 'loss'"):
        d(x[:64], y[:64])


def test_fit_takes_a_probe_among_its_callbacks(digits):
    from pidkd.distill import PIDProbe

    x, y, teacher = digits
    probe = PIDProbe((x[:200], y[:200]), "3", "3", n_bootstrap=0, n_permutations=0, background=False)
    res = fit(teacher, cnn(4, 8, 1), (x, y), method="kd", epochs=1, device="cpu", callbacks=[probe])
    assert np.isfinite(res.history["probe_3_3_red"]).all()


def test_importing_pidkd_distill_never_imports_lightning():
    code = "import sys, pidkd.distill; assert 'lightning' not in sys.modules and 'pytorch_lightning' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
