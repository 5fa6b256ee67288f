"""fit(callbacks=[...]): user callbacks on the loop's hook points, beside fit's own."""

import warnings

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from pidkd.distill import Callback, DistillConfig, fit  # noqa: E402
from pidkd.distill.loop import FitState  # noqa: E402


def data(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    return x, (x[:, 0] > 0).long()


def models():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2)), nn.Sequential(nn.Linear(6, 2))


def run(callbacks=(), epochs=3, **kw):
    teacher, student = models()
    cfg = DistillConfig(epochs=epochs, batch_size=32, progress=False, **kw.pop("config", {}))
    return fit(teacher, student, data(), val_data=data(48, 1), method="kd", config=cfg, device="cpu",
               callbacks=callbacks, **kw)  # fmt: skip


class Record(Callback):
    """Records what it sees at every hook point, and adds a column to the history."""

    def __init__(self):
        self.calls = []
        self.losses = []
        self.steps = 0

    def on_fit_start(self, state):
        assert isinstance(state, FitState)
        self.calls.append(("fit_start", state.epoch))

    def on_epoch_start(self, state):
        self.calls.append(("epoch_start", state.epoch, state.phase))

    def on_step_end(self, state, step, terms):
        self.steps += 1
        assert set(terms) == {"task", "kd"}

    def on_epoch_end(self, state, row):
        assert state.rows[-1] is row
        self.calls.append(("epoch_end", row["epoch"]))
        self.losses.append(row["loss_task"])
        row["seen_by_callback"] = 10 * row["epoch"]

    def on_fit_end(self, state):
        self.calls.append(("fit_end", len(state.rows)))


def test_a_user_callback_sees_every_epoch_and_train_loss_and_adds_a_column():
    record = Record()
    result = run([record])
    h = result.history
    assert record.calls[0] == ("fit_start", 0) and record.calls[-1] == ("fit_end", 3)
    assert [c[1] for c in record.calls if c[0] == "epoch_start"] == [1, 2, 3]
    assert [c[1] for c in record.calls if c[0] == "epoch_end"] == [1, 2, 3]
    assert record.losses == h["loss_task"].tolist()
    assert record.steps == 3 * 3  # 96 samples in batches of 32, 3 epochs
    assert h["seen_by_callback"].tolist() == [10, 20, 30]


def test_a_callback_changes_no_number_of_the_run():
    plain, watched = run().history, run([Callback(), Record()]).history
    cols = [c for c in plain.columns if c != "wall_time"]
    assert plain[cols].equals(watched[cols])


def test_a_user_column_is_in_the_checkpoint_and_the_resumed_history(tmp_path):
    config = {"checkpoint_every": 1, "checkpoint_dir": str(tmp_path)}
    full = run([Record()], config=config).history
    resumed = run([Record()], config=config | {"checkpoint_dir": str(tmp_path / "r")},
                  resume_from=tmp_path / "kd_epoch0001.pt").history  # fmt: skip
    assert resumed["seen_by_callback"].tolist() == [10, 20, 30]
    cols = [c for c in full.columns if c != "wall_time"]
    assert full[cols].equals(resumed[cols])


def test_resumed_run_starts_callbacks_at_the_epochs_done(tmp_path):
    run(config={"checkpoint_every": 2, "checkpoint_dir": str(tmp_path)}, epochs=2)
    record = Record()
    run([record], resume_from=tmp_path / "kd_epoch0002.pt", epochs=3)
    assert record.calls[0] == ("fit_start", 2)
    assert [c[1] for c in record.calls if c[0] == "epoch_end"] == [3]


@pytest.mark.parametrize(
    ("callbacks", "match"),
    [(Callback(), "must be a sequence of pidkd.distill.Callback"), ([object()], "takes pidkd.distill.Callback")],
)
def test_callbacks_that_are_not_callbacks_are_refused(callbacks, match):
    with pytest.raises(TypeError, match=match):
        run(callbacks)


def test_fits_warnings_point_at_the_caller_of_fit():
    teacher, student = models()
    x, _ = data()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(teacher, student, (x, torch.zeros(len(x), dtype=torch.long)), method="student", device="cpu",
            config=DistillConfig(epochs=3, progress=False))  # fmt: skip
    learned = [w for w in caught if "knows nothing" in str(w.message)]
    assert learned and learned[0].filename == __file__
