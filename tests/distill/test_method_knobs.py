"""Methods own their knobs: KD(alpha=...), RID.preset(...); the old DistillConfig spelling warns, same numbers."""

import warnings

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from pidkd.distill import KD, RID, TED, VID, DistillConfig, DistillMethod, Student, fit  # noqa: E402
from tests.distill.test_distill import mlp  # noqa: E402

LAYERS = {"teacher_layers": ["2"], "student_layers": ["0"]}


@pytest.fixture(scope="module")
def setup():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y)
    teacher = mlp([64, 64, 32, 10], 0)
    opt = torch.optim.Adam(teacher.parameters(), 1e-2)
    for _ in range(60):
        opt.zero_grad()
        F.cross_entropy(teacher(x[:1200]), y[:1200]).backward()
        opt.step()
    return teacher, (x[:600], y[:600]), (x[1200:1500], y[1200:1500])


def run(setup, method, config, **kw):
    teacher, train, val = setup
    layers = LAYERS if getattr(method, "needs_layers", method in ("vid", "ted", "rid")) else {}
    return fit(teacher, mlp([64, 16, 10], 1), train, val_data=val, method=method, config=config, **layers, **kw)


def same_history(a, b):
    cols = [c for c in a.history.columns if "time" not in c]
    assert list(a.history.columns) == list(b.history.columns)
    assert a.history[cols].equals(b.history[cols])


# Recorded with pidkd before the knobs moved (4ce5a41), the old spelling: last epoch's (loss_task, val_acc).
GOLDEN = {
    "student": (Student(), {}, 1, (1.7560314178466796, 0.75)),
    "kd": (KD(), {}, 1, (0.41190309524536134, 0.8166666666666667)),
    "vid": (VID(), {}, 1, (1.7565279006958008, 0.6766666666666666)),
    "ted": (TED(), {}, 1, (1.7606910705566405, 0.7366666666666667)),
    "rid": (RID(), {}, 1, (1.7579967498779296, 0.7433333333333333)),
    "kd_knobs": (KD(alpha=0.7, temperature=2.0), {}, 4, (0.3305490016937256, 0.78)),
    "rid_knobs": (
        RID(
            lambda_task=0.5,
            lambda_distill=0.3,
            reduction="sum",
            sigma_penalty="sumsq",
            filter_channels=8,
            cycle_epochs=2,
            phase1_fraction=0.5,
            coupling_from_cycle=0,
            warmup_epochs=1,
        ),
        {"filter_lr": 0.01, "epochs": 4},
        4,
        (0.9586788177490234, 0.5666666666666667),
    ),  # fmt: skip
}


@pytest.mark.parametrize("case", list(GOLDEN))
def test_every_method_gives_the_histories_it_gave_before_the_knobs_moved(case, setup):
    method, loop, seed, (loss, acc) = GOLDEN[case]
    h = run(setup, method, DistillConfig(**({"epochs": 3, "progress": False, "seed": seed} | loop))).history
    assert h["loss_task"].iloc[-1] == pytest.approx(loss, rel=1e-5) and h["val_acc"].iloc[-1] == pytest.approx(acc)


@pytest.mark.parametrize(
    ("name", "method", "golden"),
    [("rid", RID, (2.377116012573242, 0.13666666666666666)), ("vid", VID, (0.40899105072021485, 0.7833333333333333))],
)
def test_a_methods_preset_with_the_loop_preset_is_the_old_config_preset(name, method, golden, setup):
    config = DistillConfig.preset("paper", epochs=4, progress=False, seed=3)
    new = run(setup, method.preset("paper"), config)
    assert new.history["loss_task"].iloc[-1] == pytest.approx(golden[0], rel=1e-5)
    assert new.history["val_acc"].iloc[-1] == pytest.approx(golden[1])
    with pytest.warns(DeprecationWarning, match=rf"use method={method.__name__}.preset\('paper'\)") as rec:
        old = run(setup, name, config)  # the knobs of the config's preset, for one release
    assert rec[0].filename == __file__
    same_history(new, old)
    assert new.method == old.method == method.preset("paper")


def test_old_knob_fields_warn_naming_the_new_spelling_and_give_the_same_run(setup):
    loop = DistillConfig(epochs=2, progress=False, seed=4)
    with pytest.warns(DeprecationWarning, match=r"DistillConfig\(kd_alpha=0.7\).* use method=KD\(alpha=0.7\)"):
        old = run(setup, "kd", DistillConfig(epochs=2, kd_alpha=0.7, progress=False, seed=4))
    same_history(old, run(setup, KD(alpha=0.7), loop))
    assert old.history.attrs["method"] == {"name": "kd", "alpha": 0.7, "temperature": 4.0}
    with pytest.warns(DeprecationWarning, match=r"use method=RID.preset\('authors', lambda_distill=0.5\)"):
        old = run(setup, "rid", DistillConfig.preset("authors", epochs=2, lambda_distill=0.5, progress=False))
    same_history(
        old,
        run(
            setup, RID.preset("authors", lambda_distill=0.5), DistillConfig.preset("authors", epochs=2, progress=False)
        ),
    )
    with pytest.warns(DeprecationWarning, match=r"DistillConfig\(vid_lambda=...\) has no effect on method='kd'"):
        run(setup, "kd", DistillConfig(epochs=1, vid_lambda=2.0, progress=False))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new spelling, with the loop preset, warns about nothing
        run(setup, RID.preset("paper", warmup_epochs=0), DistillConfig.preset("paper", epochs=2, progress=False))
        run(setup, "student", DistillConfig.preset("paper", epochs=1, progress=False))


def test_a_knob_set_both_on_the_config_and_by_a_method_object_is_refused(setup):
    with pytest.raises(ValueError, match=r"DistillConfig\(kd_alpha=0.7\) sets a knob of the method object KD.*"
                                         r"\(alpha=0.5\).*method=KD\(alpha=0.7\)"):  # fmt: skip
        run(setup, KD(), DistillConfig(epochs=1, kd_alpha=0.7, progress=False))
    with pytest.raises(ValueError, match=r"DistillConfig\(ted_lambda=2.0\) sets a knob .*=TED\(lambda_distill=2.0\)"):
        run(setup, TED(), DistillConfig(epochs=1, ted_lambda=2.0, progress=False))


class Hint(DistillMethod):
    """FitNets' hint with a constructor knob, defined here: pidkd unedited."""

    name = "hint"
    needs_layers = True
    knobs = {"hint": "weight"}

    def __init__(self, weight=1.0):
        self.weight = weight

    def build(self, teacher, student, n_classes, cfg):
        return nn.ModuleDict(
            {f"h{k}": nn.Linear(s.shape[1], t.shape[1]) for k, (t, s) in enumerate(zip(teacher, student))}
        )

    def terms(self, phase, cfg, modules, step):
        pairs = enumerate(zip(step.teacher, step.student))
        hint = sum(F.mse_loss(modules[f"h{k}"](s), t) for k, (t, s) in pairs)
        return {"task": F.cross_entropy(step.logits, step.y), "hint": self.weight * hint}


def test_a_user_method_with_its_own_knob_trains_and_resumes(setup, tmp_path):
    config = DistillConfig(epochs=3, progress=False, checkpoint_every=1, checkpoint_dir=str(tmp_path))
    full = run(setup, Hint(weight=0.1), config)
    assert full.history.attrs["method"] == {"name": "hint", "weight": 0.1}
    assert (
        run(setup, Hint(weight=1.0), DistillConfig(epochs=1, progress=False)).history["loss_hint"].iloc[0]
        > (full.history["loss_hint"].iloc[0])
    )
    path = tmp_path / "hint_epoch0001.pt"
    assert torch.load(path, weights_only=True)["method_settings"] == {"weight": 0.1}
    resumed = run(setup, Hint(weight=0.1), DistillConfig(epochs=3, progress=False), resume_from=path)
    same_history(full, resumed)
    with pytest.raises(ValueError, match=r"written with the method Hint weight=0.1 \(this run: 0.5\)"):
        run(setup, Hint(weight=0.5), DistillConfig(epochs=3, progress=False), resume_from=path)


def test_a_checkpoint_written_before_the_knobs_moved_still_resumes(setup, tmp_path):
    config = DistillConfig(epochs=3, progress=False, checkpoint_every=1, checkpoint_dir=str(tmp_path))
    full = run(setup, KD(alpha=0.7), config)
    path = tmp_path / "kd_epoch0001.pt"
    state = torch.load(path, weights_only=True)
    # as pidkd 0.1 wrote it: every knob among the DistillConfig settings (those of other methods too)
    del state["method_settings"]
    state["settings"] |= {"kd_alpha": 0.7, "kd_temperature": 4.0, "lambda_distill": 1.0, "vid_lambda": 1.0}
    old = tmp_path / "old.pt"
    torch.save(state, old)
    same_history(full, run(setup, KD(alpha=0.7), DistillConfig(epochs=3, progress=False), resume_from=old))
    with pytest.warns(DeprecationWarning):
        again = run(setup, "kd", DistillConfig(epochs=3, kd_alpha=0.7, progress=False), resume_from=old)
    same_history(full, again)
    with pytest.raises(ValueError, match=r"written with the method KD alpha=0.7 \(this run: 0.5\)"):
        run(setup, "kd", DistillConfig(epochs=3, progress=False), resume_from=old)
