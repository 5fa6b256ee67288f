"""pidkd.distill.lightning: DistillModule trains, checkpoints and resumes in Lightning; PIDProbeCallback logs."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

pytest.importorskip("lightning")
import lightning  # noqa: E402

from pidkd.distill import RID, DistillConfig, PIDProbe  # noqa: E402
from pidkd.distill.lightning import DistillModule, PIDProbeCallback  # noqa: E402


def mlp(hidden: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, hidden), nn.ReLU(), nn.Linear(hidden, 3))


@pytest.fixture(scope="module")
def data():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(240, 6, generator=gen)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return x, y


def loader(data, batch_size=60):
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*data), batch_size=batch_size)


def trainer(epochs, tmp_path=None, **kwargs):
    opts = dict(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
    )
    return lightning.Trainer(**(opts | kwargs))


def module(method=None, epochs=4):
    method = method or RID(cycle_epochs=2, phase1_fraction=0.5, lambda_distill=0.1)
    return DistillModule(
        mlp(16, 0),
        mlp(8, 1),
        method,
        teacher_layers=["1"],
        student_layers=["1"],
        config=DistillConfig(epochs=epochs, filter_lr=0.02),
    )


def test_distill_module_logs_fit_history_names_and_runs_the_phases(data):
    m = module()
    t = trainer(4)
    phases = []

    class Phases(lightning.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            phases.append(pl_module.distiller.phase.name)

    t.callbacks.append(Phases())
    t.fit(m, train_dataloaders=loader(data), val_dataloaders=loader(data))
    assert phases == ["warmup", "phase2", "phase1", "phase2"]
    assert {"loss", "loss_task", "loss_rid", "train_acc", "val_acc", "lr"} <= set(t.callback_metrics)
    assert len(m.optimizers()) == 2  # RID's filters have their own optimizer
    assert t.global_step > 0 and 0.0 <= float(t.callback_metrics["val_acc"]) <= 1.0


def test_checkpoint_and_resume_through_lightning_give_the_uninterrupted_run(data, tmp_path):
    straight = module()
    trainer(4).fit(straight, loader(data))

    first = module()
    ckpt = lightning.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)
    trainer(2, enable_checkpointing=True, callbacks=[ckpt]).fit(first, loader(data))
    resumed = module()  # a new process would build the same, untrained
    trainer(4).fit(resumed, loader(data), ckpt_path=str(tmp_path / "last.ckpt"))

    a, b = straight.distiller.state_dict(), resumed.distiller.state_dict()
    assert a.keys() == b.keys() and any(k.startswith("method_modules.ft0") for k in a)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert resumed.distiller.scheduler.last_epoch == straight.distiller.scheduler.last_epoch


def test_validation_from_a_checkpoint_builds_the_method_modules(data, tmp_path):
    ckpt = lightning.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)
    trained = module(epochs=1)
    trainer(1, enable_checkpointing=True, callbacks=[ckpt]).fit(trained, loader(data))
    fresh = module(epochs=1)
    out = trainer(1).validate(fresh, loader(data), ckpt_path=str(tmp_path / "last.ckpt"), verbose=False)
    assert fresh.distiller.built and 0.0 <= out[0]["val_acc"] <= 1.0
    for key, value in trained.distiller.student.state_dict().items():
        assert torch.equal(value, fresh.distiller.student.state_dict()[key])


def test_pid_probe_callback_logs_the_probe_columns_of_the_same_weights(data):
    probe_data = (data[0][:200], data[1][:200])
    options = dict(every=2, n_bootstrap=4, n_permutations=1)
    callback = PIDProbeCallback(probe_data, teacher_layer="1", student_layer="1", **options)
    m = module(epochs=2)
    t = trainer(2, callbacks=[callback])
    t.fit(m, loader(data))
    logged = {k: float(v) for k, v in t.callback_metrics.items() if k.startswith("probe/")}
    name = callback.name
    assert name == "probe_1_1"
    for column in ("red", "uni_t", "uni_s", "syn", "red_lo", "red_hi", "red_null", "filters_red", "filters_uni_t"):
        assert f"probe/{name}/{column}" in logged, column
    d = m.distiller
    fresh = PIDProbe(probe_data, "1", "1", **options)
    again = fresh(d.teacher, d.student, modules=d.method_modules, pair=fresh.pair_of(d.teacher_layers), epoch=2)
    assert logged == pytest.approx({f"probe/{name}/{k[len(name) + 1 :]}": v for k, v in again.items()}, abs=1e-6)


def test_a_missing_lightning_gives_the_install_hint():
    code = (
        "import sys; sys.modules['lightning'] = None; sys.modules['lightning.pytorch'] = None\n"
        "try:\n    import pidkd.distill.lightning\nexcept ImportError as err:\n    print(err)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert "pip install 'pidkd[lightning]'" in out
