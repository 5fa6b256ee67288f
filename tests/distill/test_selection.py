"""Model selection on validation data, test data only reported, and the loss-scale warning."""

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pidkd.distill import DistillConfig, fit  # noqa: E402
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
    cfg = DistillConfig(epochs=3, kd_alpha=0.99, kd_temperature=8.0, lr=1e-3, progress=False)
    with pytest.warns(UserWarning, match=r"'kd' loss term averaged .* over epoch 1, \d+x the task loss") as rec:
        fit(teacher, mlp([64, 12, 10], 1), train, method="kd", config=cfg)
    scale = [w for w in rec if "loss term averaged" in str(w.message)]
    assert len(scale) == 1 and "DistillConfig.kd_alpha" in str(scale[0].message)
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
