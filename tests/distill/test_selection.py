"""Model selection on validation data, test data only reported, and the loss-scale warning."""

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pidkd.distill import KD, RID, TED, VID, DistillConfig, fit  # noqa: E402
from tests.distill.test_distill import mlp  # noqa: E402


@pytest.fixture(scope="module")
def splits():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y)
    return (x[:900], y[:900]), (x[900:1300], y[900:1300]), (x[1300:], y[1300:])


def _accuracy(model, data):
    with torch.no_grad():
        return float((model(data[0]).argmax(1) == data[1]).float().mean())


def test_best_validation_epoch_is_selected_and_test_is_only_reported(splits):
    train, val, test = splits
    cfg = DistillConfig(epochs=5, lr=0.2, progress=False, seed=3)
    res = fit(
        mlp([64, 24, 10], 2), mlp([64, 12, 10], 4), train, method="student", val_data=val, test_data=test, config=cfg
    )
    h = res.history
    assert res.best_epoch == int(h.loc[h["val_acc"].idxmax(), "epoch"])  # earliest of ties
    assert res.best_val_acc == h["val_acc"].max()
    assert res.best_test_acc == h.loc[h["epoch"] == res.best_epoch, "test_acc"].iloc[0]
    assert (res.last_val_acc, res.last_test_acc) == (h["val_acc"].iloc[-1], h["test_acc"].iloc[-1])
    best = res.best_student()
    assert _accuracy(best, val) == pytest.approx(res.best_val_acc, abs=1e-6)
    assert _accuracy(res.student, val) == pytest.approx(res.last_val_acc, abs=1e-6)
    # test data never changes what is trained or selected
    plain = fit(mlp([64, 24, 10], 2), mlp([64, 12, 10], 4), train, method="student", val_data=val, config=cfg)
    cols = [c for c in plain.history.columns if c != "wall_time"]
    assert plain.history[cols].equals(h[cols]) and plain.best_epoch == res.best_epoch
    assert np.isnan(plain.best_test_acc)


def test_without_validation_there_is_no_selection(splits):
    train, _, _ = splits
    res = fit(
        mlp([64, 10], 0), mlp([64, 10], 1), train, method="student", epochs=1, config=DistillConfig(progress=False)
    )
    assert res.best_epoch is None and np.isnan(res.best_val_acc) and np.isnan(res.last_val_acc)
    with pytest.raises(ValueError, match=r"best_student\(\) needs the best-validation weights.*Pass val_data"):
        res.best_student()


def test_a_distillation_term_that_swamps_the_task_is_warned_about_once(splits):
    train, _, _ = splits
    teacher = mlp([64, 24, 10], 2)
    with torch.no_grad():
        teacher[-1].weight.mul_(60.0)  # logits in the hundreds: the KL term at T = 8 is huge
    cfg = DistillConfig(epochs=3, lr=1e-3, progress=False)
    kd = KD(alpha=0.99, temperature=8.0)
    with pytest.warns(UserWarning, match=r"'kd' loss term averaged .* over epoch 1, \d+x the task loss") as rec:
        fit(teacher, mlp([64, 12, 10], 1), train, method=kd, config=cfg)
    scale = [w for w in rec if "loss term averaged" in str(w.message)]
    assert len(scale) == 1 and "Lower KD's alpha" in str(scale[0].message)
    assert scale[0].filename == __file__  # points at the fit() call
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit(
            mlp([64, 24, 10], 2),
            mlp([64, 12, 10], 1),
            train,
            method="kd",
            epochs=1,
            config=DistillConfig(progress=False),
        )


def test_a_student_that_learned_nothing_is_warned_about(splits):
    """A student with dead ReLUs ends at the accuracy of a constant prediction: fit() says so (once, at
    the fit() call); a student that learns, and a run too short to judge, are not warned about."""
    train, val, _ = splits
    dead = mlp([64, 12, 10], 1)
    with torch.no_grad():
        dead[0].bias.fill_(-100.0)  # every hidden ReLU is off for inputs in [0, 1]: no gradient reaches them
    cfg = DistillConfig(epochs=3, progress=False)
    with pytest.warns(UserWarning, match="knows nothing") as rec:
        fit(mlp([64, 24, 10], 2), dead, train, val_data=val, method="student", config=cfg)
    (w,) = [w for w in rec if "knows nothing" in str(w.message)]
    assert w.filename == __file__
    majority = np.bincount(train[1].numpy()).max() / len(train[1])
    assert f"({majority:.3f})" in str(w.message) and "validation accuracy" in str(w.message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit(mlp([64, 24, 10], 2), mlp([64, 12, 10], 1), train, val_data=val, method="student", config=cfg)
        fit(mlp([64, 24, 10], 2), dead, train, method="student", epochs=2, config=cfg)
    # a student that learned and then lost it is told where the best one is
    from pidkd.distill.callbacks import warn_learned_nothing
    from pidkd.distill.methods import RID

    rows = [{"epoch": e + 1, "val_acc": a, "train_acc": a} for e, a in enumerate((0.6, 0.9, 0.1))]
    with pytest.warns(UserWarning, match=r"best validation accuracy 0\.900; FitResult\.best_student\(\)") as rec:
        warn_learned_nothing(RID(), rows, torch.arange(10))
    assert "lower RID's lambda_distill" in str(rec[0].message)


def test_paper_preset_is_pidkd_0_1_0s_defaults_and_the_defaults_are_per_element():
    """Golden values: DistillConfig() of pidkd 0.1.0, field by field, is preset("paper"): the loop part in
    DistillConfig.preset("paper"), the knobs in the methods' presets."""
    loop = dict(
        epochs=10, batch_size=64, lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4, lr_milestones=(),
        lr_gamma=0.2, filter_lr=None, grad_clip=None,
    )  # fmt: skip
    rid = dict(
        warmup_epochs=2, cycle_epochs=4, phase1_fraction=0.25, lambda_task=1.0, lambda_distill=1.0,
        filter_channels=None, reduction="sum", sigma_penalty="sumsq", coupling_from_cycle=0,
        train_student_in_phase1=False,
    )  # fmt: skip
    paper = DistillConfig.preset("paper")
    assert {k: getattr(paper, k) for k in loop} == loop and paper.optimizer == "sgd"
    assert RID.preset("paper").settings() == rid
    assert (VID.preset("paper").lambda_distill, KD.preset("paper").alpha, KD.preset("paper").temperature) == (
        100.0,
        0.9,
        4.0,
    )
    assert TED.preset("paper").settings() == dict(
        lambda_distill=1.0, warmup_epochs=2, train_student_in_phase1=False, filter_channels=None
    )
    authors, rid_authors = DistillConfig.preset("authors"), RID.preset("authors")
    assert (authors.optimizer, authors.lr, authors.filter_lr, authors.grad_clip) == ("sgd", 0.0025, 0.05, 100.0)
    assert rid_authors.settings() == rid | dict(
        warmup_epochs=0, coupling_from_cycle=1, reduction="mean", sigma_penalty="meansq", lambda_distill=10.0
    )
    assert TED.preset("authors").warmup_epochs == 0 and VID.preset("authors").lambda_distill == 100.0
    default = DistillConfig()
    assert [getattr(default, k) for k in ("optimizer", "lr", "grad_clip")] == ["sgd", 0.05, 5.0]
    assert (RID().reduction, RID().sigma_penalty, VID().lambda_distill, KD().alpha) == ("mean", "meansq", 1.0, 0.5)
    assert DistillConfig(optimizer="AdamW").optimizer == "adamw"

    def schedule(method, epochs):
        s = method.for_run(DistillConfig(epochs=epochs))
        return s.warmup_epochs, s.cycle_epochs, s.phase1_fraction, s.coupling_from_cycle

    assert schedule(RID(), 3) == (0, 3, 1 / 3, 1)  # cycle 1's phase 1 is the warm-up
    assert schedule(RID(), 30) == (0, 10, 0.25, 1)
    assert TED().for_run(DistillConfig(epochs=30)).warmup_epochs == 5
    assert TED().for_run(DistillConfig(epochs=3)).warmup_epochs == 1
    assert schedule(RID.preset("paper"), 3) == (2, 4, 0.25, 0)  # a preset's own schedule
    assert RID().warmup_epochs is None  # for_run() sets a copy


def test_optimizer_by_name_or_factory(splits):
    train, val, _ = splits
    made = []

    def factory(params, lr):
        made.append(lr)
        return torch.optim.RMSprop(params, lr=lr)

    cfg = DistillConfig(epochs=1, optimizer=factory, lr=3e-3, progress=False)
    res = fit(mlp([64, 10], 0), mlp([64, 10], 1), train, method="student", val_data=val, config=cfg)
    assert made == [3e-3] and res.last_val_acc > 0.5
    assert DistillConfig(optimizer="SGD").optimizer == "sgd"
    with pytest.raises(ValueError, match=r"'optimizer' parameter of DistillConfig\(\) must be one of"):
        DistillConfig(optimizer="lbfgs")
    with pytest.raises(TypeError, match=r"'optimizer' parameter .* or a callable factory"):
        DistillConfig(optimizer=3)
    bad = DistillConfig(epochs=1, optimizer=lambda params, lr: None, progress=False)
    with pytest.raises(TypeError, match="must return a torch.optim.Optimizer"):
        fit(mlp([64, 10], 0), mlp([64, 10], 1), train, method="student", config=bad)


def _fitnets():
    """FitNets' hint loss (Romero et al. 2015) as a user-defined method: defined here, pidkd unedited."""
    import torch.nn.functional as F
    from torch import nn

    from pidkd.distill.methods import DistillMethod

    class Hint(DistillMethod):
        name = "fitnets"
        needs_layers = True
        knobs = {"hint": "the hint weight"}

        def build(self, teacher, student, n_classes, cfg):
            pairs = enumerate(zip(teacher, student))
            return nn.ModuleDict({f"hint{k}": nn.Linear(s.shape[1], t.shape[1]) for k, (t, s) in pairs})

        def terms(self, phase, cfg, modules, step):
            pairs = enumerate(zip(step.teacher, step.student))
            hint = sum(F.mse_loss(modules[f"hint{k}"](s), t.float()) for k, (t, s) in pairs)
            return {"task": F.cross_entropy(step.logits, step.y), "hint": hint}

    return Hint()


def test_a_user_defined_method_trains_without_editing_pidkd(splits, tmp_path):
    train, val, _ = splits
    teacher = mlp([64, 24, 10], 2)
    before = [p.detach().clone() for p in teacher.parameters()]
    cfg = DistillConfig(epochs=10, progress=False, checkpoint_every=5, checkpoint_dir=str(tmp_path))
    res = fit(
        teacher, mlp([64, 12, 10], 1), train, method=_fitnets(), teacher_layers=["1"], student_layers=["1"],
        val_data=val, config=cfg,
    )  # fmt: skip
    h = res.history
    assert list(res.modules) == ["hint0"] and h["loss_hint"].iloc[-1] < h["loss_hint"].iloc[0]
    assert res.last_val_acc > 0.5 and all(torch.equal(a, b) for a, b in zip(before, teacher.parameters()))
    assert (tmp_path / "fitnets_epoch0010.pt").exists()
    with pytest.raises(ValueError, match=r"'method' parameter of fit\(\) must be one of .* or a DistillMethod"):
        fit(teacher, mlp([64, 12, 10], 1), train, method="fitnets", config=cfg)
    with pytest.raises(TypeError, match="takes a DistillMethod instance; got the class"):
        fit(teacher, mlp([64, 12, 10], 1), train, method=type(_fitnets()), config=cfg)
