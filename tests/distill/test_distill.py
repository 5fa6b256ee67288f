import copy
import dataclasses
import functools
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from pidkd.distill import (  # noqa: E402
    RID,
    DistillConfig,
    StudentFilter,
    TeacherFilter,
    VIDRegressor,
    capture,
    fit,
    kd_loss,
    rid_phase1_loss,
    rid_phase2_loss,
    vid_loss,
)
from pidkd.distill._checks import host_syncs  # noqa: E402
from pidkd.distill.losses import weighted_mismatch  # noqa: E402


def mlp(widths, seed):
    torch.manual_seed(seed)
    layers = []
    for i in range(len(widths) - 1):
        layers += [nn.Linear(widths[i], widths[i + 1])]
        if i < len(widths) - 2:
            layers += [nn.ReLU()]
    return nn.Sequential(*layers)


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    y = torch.tensor(y)
    return (x[:1200], y[:1200]), (x[1200:], y[1200:])


@pytest.fixture(scope="module")
def teacher(digits):
    (x, y), _ = digits
    net = mlp([64, 64, 32, 10], 0)
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return net


def test_capture_records_and_removes_hooks():
    net = mlp([3, 4, 2], 0)
    with capture(net, ["0", "2"]) as acts:
        net(torch.zeros(5, 3))
    assert tuple(acts["0"].shape) == (5, 4) and tuple(acts["2"].shape) == (5, 2)
    assert all(not m._forward_hooks for m in net.modules())
    with pytest.raises(
        ValueError, match=r"no module named \['nope'\] in Sequential. Available names: \['0', '1', '2'\]"
    ):
        with capture(net, ["nope"]):
            pass


def test_losses_reference_values():
    v = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
    sigma = torch.tensor([1.0, 4.0])
    # sum over channels of v^2 / sigma, batch mean: ((1 + 1) + (9 + 0)) / 2
    assert weighted_mismatch(v, sigma).item() == pytest.approx(5.5)
    assert weighted_mismatch(v, sigma, reduction="mean").item() == pytest.approx(11 / 4)
    ft, fs = torch.tensor([[1.0, 2.0], [3.0, 0.0]]), torch.zeros(2, 2)
    assert rid_phase2_loss(ft, fs, sigma).item() == pytest.approx(17 + 5.5)
    assert rid_phase2_loss(ft, fs, sigma, sigma_penalty="meansq").item() == pytest.approx(8.5 + 5.5)
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    ce = nn.functional.cross_entropy(logits, torch.tensor([0, 1])).item()
    assert rid_phase1_loss(logits, torch.tensor([0, 1]), ft, fs, sigma).item() == pytest.approx(ce + 5.5)
    assert rid_phase1_loss(logits, torch.tensor([0, 1]), ft, fs, sigma, coupling=False).item() == pytest.approx(ce)
    assert kd_loss(logits, logits).item() == pytest.approx(0.0, abs=1e-5)  # float32 round-off
    t = torch.tensor([[1.0], [3.0]])
    assert vid_loss(t, torch.zeros(2, 1), torch.tensor([2.0])).item() == pytest.approx(0.5 * (math.log(2) + 5 / 2))
    with pytest.raises(ValueError, match="V has 2 channels but sigma has 3"):
        weighted_mismatch(v, torch.ones(3))


def test_filters_shapes_and_errors():
    assert tuple(TeacherFilter(8, 4)(torch.zeros(2, 8, 3, 3)).shape) == (2, 4, 3, 3)
    assert tuple(StudentFilter(5, 4, spatial=False)(torch.zeros(2, 5)).shape) == (2, 4)
    with pytest.raises(ValueError, match=r"built for \(N, C, H, W\) feature maps; got a tensor of shape \(2, 8\)"):
        TeacherFilter(8, 4)(torch.zeros(2, 8))
    # sequences (N, C, L): width-1 convolutions, the same map at every position
    f = TeacherFilter(8, 4, spatial=1).eval()
    x = torch.randn(3, 8, 5)
    out = f(x)
    assert tuple(out.shape) == (3, 4, 5)
    torch.testing.assert_close(out[:, :, 2], f.net(x[:, :, 2:3])[:, :, 0])
    assert tuple(VIDRegressor(3, 6, spatial=1)(torch.zeros(2, 3, 7)).shape) == (2, 6, 7)
    with pytest.raises(ValueError, match=r"'spatial' parameter must be a bool or an int in \[0, 3\]"):
        StudentFilter(5, 4, spatial=4)


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_pointwise_layers_compute_the_convolution_on_cpu(dims):
    """The filters' CPU matmul path gives the 1x1 convolution's output and gradients, with its parameters,
    initialisation and state-dict keys (checkpoints load either way)."""
    torch.manual_seed(0)
    f = StudentFilter(3, 5, spatial=dims)
    conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[dims - 1]
    torch.manual_seed(0)
    ref = nn.Sequential(conv(3, 6, 1, bias=False), f.net[1].__class__(6), nn.ReLU(), conv(6, 5, 1, bias=False))
    assert {k: v.shape for k, v in f.net.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    for a, b in zip(f.net.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # the same initialisation, draw for draw
    x = torch.randn(4, 3, *[5, 4, 3][:dims], requires_grad=True)
    out, out_ref = f(x), ref(x)
    torch.testing.assert_close(out, out_ref)
    assert out.is_contiguous()
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, [x, *f.net.parameters()], g)
    grads_ref = torch.autograd.grad(out_ref, [x, *ref.parameters()], g)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("method", ["student", "kd", "vid", "ted", "rid"])
def test_fit_every_method_runs_and_learns(method, digits, teacher):
    train, val = digits
    # the authors clip gradient norms at 100: the V^2 / sigma term is steep once sigma is small
    cfg = DistillConfig(
        epochs=6,
        batch_size=64,
        lr=0.05,
        warmup_epochs=1,
        cycle_epochs=2,
        phase1_fraction=0.5,
        grad_clip=100.0,
        progress=False,
    )
    layers = {"teacher_layers": ["2"], "student_layers": ["0"]} if method in ("vid", "ted", "rid") else {}
    res = fit(teacher, mlp([64, 16, 10], 1), train, method=method, val_data=val, config=cfg, **layers)
    h = res.history
    assert list(h["epoch"]) == list(range(1, 7)) and {"train_acc", "val_acc", "lr", "wall_time"} <= set(h.columns)
    assert np.isfinite(
        h.filter(like="loss_").to_numpy(dtype=float)[~np.isnan(h.filter(like="loss_").to_numpy(dtype=float))]
    ).all()
    if method == "rid":
        assert list(h["phase"]) == ["warmup", "phase1", "phase2", "phase1", "phase2", "phase1"]
    if method == "ted":
        assert list(h["phase"]) == ["warmup"] + ["train"] * 5
    assert h["val_acc"].iloc[-1] > 0.5


def test_rid_trains_the_right_modules_in_each_phase(digits, teacher):
    train, _ = digits
    student = mlp([64, 16, 10], 1)
    strict = dict(train_student_in_phase1=False)  # Algorithm 1: the student frozen in phase 1 (the presets)
    cfg = DistillConfig(epochs=2, warmup_epochs=0, cycle_epochs=2, phase1_fraction=0.5, progress=False, **strict)
    s0 = [p.detach().clone() for p in student.parameters()]
    res = fit(teacher, student, train, method="rid", teacher_layers=["2"], student_layers=["0"], config=cfg, epochs=1)
    assert all(torch.equal(a, b) for a, b in zip(s0, res.student.parameters()))  # phase 1: student frozen
    # phase 1 trains f_t (its BatchNorm statistics moved) and leaves f_s alone (still at init)
    assert res.modules["ft0"].net[1].running_mean.abs().sum() > 0
    assert res.modules["fs0"].net[1].running_mean.abs().sum() == 0
    assert set(res.history.filter(like="loss_").columns) == {"loss_filters"}
    # The default: the student learns the task in phase 1 too; f_s still stays at init
    cfg1 = DistillConfig(epochs=2, warmup_epochs=0, cycle_epochs=2, phase1_fraction=0.5, progress=False)
    fresh = mlp([64, 16, 10], 1)
    f0 = [p.detach().clone() for p in fresh.parameters()]
    res1 = fit(teacher, fresh, train, method="rid", teacher_layers=["2"], student_layers=["0"], config=cfg1, epochs=1)
    assert not all(torch.equal(a, b) for a, b in zip(f0, res1.student.parameters()))
    assert res1.modules["ft0"].net[1].running_mean.abs().sum() > 0
    assert res1.modules["fs0"].net[1].running_mean.abs().sum() == 0
    assert torch.equal(res1.modules["sigma0"].a, torch.full_like(res1.modules["sigma0"].a, 5.0))
    assert set(res1.history.filter(like="loss_").columns) == {"loss_filters", "loss_task"}
    cfg2 = DistillConfig(epochs=2, warmup_epochs=0, cycle_epochs=2, phase1_fraction=0.5, progress=False)
    res2 = fit(teacher, student, train, method="rid", teacher_layers=["2"], student_layers=["0"], config=cfg2)
    assert not all(torch.equal(a, b) for a, b in zip(s0, res2.student.parameters()))  # phase 2 moved it
    assert res2.modules["fs0"].net[1].running_mean.abs().sum() > 0


def test_ted_filter_stage_trains_the_student_and_steps_its_filter_once(digits, teacher):
    """TED's stage 1 with the default: the student learns the task too, and its filter f_s, held by both
    optimizers, is stepped once per step by the filters' optimizer (one full batch: f_s ends where it
    ends with the student frozen, as Liang et al.'s stage 1 and the presets have it)."""
    train, _ = digits
    kw = dict(epochs=1, warmup_epochs=1, batch_size=len(train[0]), lr=0.1, filter_lr=0.01, progress=False, seed=1)
    runs = {}
    for flag in (True, False):
        student = mlp([64, 16, 10], 1)
        s0 = [p.detach().clone() for p in student.parameters()]
        cfg = DistillConfig(train_student_in_phase1=flag, **kw)
        res = fit(teacher, student, train, method="ted", teacher_layers=["2"], student_layers=["0"], config=cfg)
        moved = not all(torch.equal(a, b) for a, b in zip(s0, res.student.parameters()))
        runs[flag] = (res, moved)
    (on, on_moved), (off, off_moved) = runs[True], runs[False]
    assert on_moved and not off_moved
    assert set(on.history.filter(like="loss_").columns) == {"loss_filters", "loss_task"}
    assert set(off.history.filter(like="loss_").columns) == {"loss_filters"}
    for name in ("fs0", "ft0", "shead0"):
        for a, b in zip(on.modules[name].parameters(), off.modules[name].parameters()):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_default_lr_milestones_scale_with_epochs_and_a_resume_with_other_epochs_warns(digits, teacher, tmp_path):
    """The default schedule decays at half and three quarters of a run of 10 epochs or more; a checkpoint
    of a shorter run resumed into a longer one says that the milestones differ and goes on with the
    longer run's."""
    train, _ = digits
    kw = dict(batch_size=512, progress=False)
    res = fit(teacher, mlp([64, 16, 10], 1), train, method="student", config=DistillConfig(epochs=10, **kw))
    np.testing.assert_allclose(res.history["lr"], [0.05] * 5 + [0.01] * 3 + [0.002] * 2)
    assert res.config.lr_milestones == (5, 8)
    short_run = fit(teacher, mlp([64, 16, 10], 1), train, method="student", config=DistillConfig(epochs=3, **kw))
    np.testing.assert_allclose(short_run.history["lr"], [0.05] * 3)  # a short run keeps the full rate
    assert DistillConfig.preset("paper").lr_milestones == ()  # the presets keep a constant rate
    short = DistillConfig(epochs=2, checkpoint_every=2, checkpoint_dir=str(tmp_path), **kw)
    fit(teacher, mlp([64, 16, 10], 1), train, method="student", config=short)
    with pytest.warns(UserWarning, match=r"milestones \[\], this run has \[6, 9\]"):
        longer = fit(
            teacher,
            mlp([64, 16, 10], 1),
            train,
            method="student",
            config=DistillConfig(epochs=12, **kw),
            resume_from=str(tmp_path / "student_epoch0002.pt"),
        )
    np.testing.assert_allclose(longer.history["lr"], [0.05] * 6 + [0.01] * 3 + [0.002] * 3)


def test_the_plain_student_never_runs_the_teacher_in_its_steps(digits, teacher):
    train, _ = digits
    calls = []
    hook = teacher.register_forward_hook(lambda *_: calls.append(1))
    try:
        cfg = DistillConfig(epochs=2, batch_size=256, progress=False)
        fit(teacher, mlp([64, 16, 10], 1), train, method="student", config=cfg)
        assert len(calls) == 1  # the first batch's checks only
        calls.clear()
        fit(teacher, mlp([64, 16, 10], 1), train, method="kd", config=dataclasses.replace(cfg, cache_teacher=False))
        assert len(calls) == 1 + 2 * math.ceil(len(train[1]) / 256)
    finally:
        hook.remove()


@pytest.mark.parametrize("method", ["kd", "rid"])
def test_cached_teacher_outputs_replay_the_teacher_exactly(method, digits, teacher, monkeypatch):
    train, val = digits
    n_batches = math.ceil(len(train[1]) / 128)
    calls = []
    hook = teacher.register_forward_hook(lambda *_: calls.append(1))
    layers = {"teacher_layers": ["2"], "student_layers": ["0"]}
    hist = {}
    try:
        for cache in (False, True, "auto"):
            calls.clear()
            cfg = DistillConfig(
                epochs=3, batch_size=128, warmup_epochs=1, cycle_epochs=2, phase1_fraction=0.5, progress=False
            )
            cfg = dataclasses.replace(cfg, cache_teacher=cache)
            hist[cache] = fit(teacher, mlp([64, 16, 10], 1), train, method=method, val_data=val, config=cfg, **layers)
            # the first batch's checks, then every step (no cache) or one pass over the data (cache)
            assert len(calls) == 1 + (3 * n_batches if cache is False else n_batches)
        cols = [c for c in hist[False].history if c != "wall_time"]
        for cache in (True, "auto"):  # the same batches, random draws and losses, to the bit
            assert hist[cache].history[cols].equals(hist[False].history[cols])
        # "auto" leaves outputs larger than its budget, and DataLoaders (which may augment), uncached
        monkeypatch.setattr("pidkd.distill.trainer.CACHE_TEACHER_FRACTION", {"cpu": 0.0, "cuda": 0.0})
        calls.clear()
        fit(teacher, mlp([64, 16, 10], 1), train, method=method, config=cfg, epochs=1, **layers)
        assert len(calls) == 1 + 1 + n_batches  # the cache's first batch, found too large, then every step
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*train), batch_size=128)
        calls.clear()
        fit(teacher, mlp([64, 16, 10], 1), loader, method=method, config=cfg, epochs=1, **layers)
        assert len(calls) == 1 + n_batches
    finally:
        hook.remove()
    with pytest.raises(ValueError, match="DataLoader may augment"):
        cfg = dataclasses.replace(cfg, cache_teacher=True)
        fit(teacher, mlp([64, 16, 10], 1), loader, method=method, config=cfg, **layers)
    with pytest.raises(ValueError, match="cache_teacher"):
        DistillConfig(cache_teacher="always")


def test_compiled_forward_passes_train_as_the_eager_ones(digits, teacher):
    train, val = digits
    # the teacher compiled before, by a run without capture hooks, must not be replayed without them
    cfg = DistillConfig(epochs=1, progress=False, compile=True)
    fit(teacher, mlp([64, 16, 10], 1), (train[0][:64], train[1][:64]), method="kd", config=cfg)
    hist = {}
    for mode in (False, True):
        cfg = DistillConfig(
            epochs=3, warmup_epochs=1, cycle_epochs=2, phase1_fraction=0.5, progress=False, compile=mode
        )
        layers = {"teacher_layers": ["2"], "student_layers": ["0"]}
        hist[mode] = fit(teacher, mlp([64, 16, 10], 1), train, method="rid", val_data=val, config=cfg, **layers).history
    assert list(hist[True]["phase"]) == ["warmup", "phase1", "phase2"]
    cols = [c for c in hist[False] if c.startswith(("loss_", "train_acc", "val_acc"))]
    np.testing.assert_allclose(hist[True][cols].to_numpy(), hist[False][cols].to_numpy(), rtol=1e-4)
    assert hist[True].attrs["config"]["compile"] is True
    with pytest.raises(ValueError, match="compile"):
        DistillConfig(compile="fastest")


def test_deterministic_on_cpu(digits, teacher):
    train, _ = digits
    cfg = lambda: DistillConfig(  # noqa: E731
        epochs=3, warmup_epochs=1, cycle_epochs=2, phase1_fraction=0.5, progress=False, seed=3
    )
    a = fit(
        teacher, mlp([64, 16, 10], 1), train, method="rid", teacher_layers=["2"], student_layers=["0"], config=cfg()
    )
    b = fit(
        teacher, mlp([64, 16, 10], 1), train, method="rid", teacher_layers=["2"], student_layers=["0"], config=cfg()
    )
    cols = [c for c in a.history.columns if c != "wall_time"]
    assert a.history[cols].equals(b.history[cols])


def test_clear_errors(digits, teacher):
    train, _ = digits
    cfg = DistillConfig(epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"no module named \['9'\]"):
        fit(teacher, mlp([64, 16, 10], 1), train, method="rid", teacher_layers=["9"], student_layers=["0"], config=cfg)
    with pytest.raises(ValueError, match="needs paired layers"):
        fit(teacher, mlp([64, 16, 10], 1), train, method="vid", teacher_layers=["2"], config=cfg)
    with pytest.raises(ValueError, match=r"'method' parameter of fit\(\) must be one of"):
        fit(teacher, mlp([64, 16, 10], 1), train, method="fitnet", config=cfg)
    with pytest.raises(FloatingPointError, match=r"non-finite loss at epoch 1, step 1 .*non-finite terms: \['task'\]"):
        fit(teacher, mlp([64, 16, 10], 1), (train[0] * float("nan"), train[1]), method="student", config=cfg)
    with pytest.raises(TypeError, match="expects train_data as an"):
        fit(teacher, mlp([64, 16, 10], 1), 5, method="student", config=cfg)


@pytest.mark.gpu
def test_cuda_path_runs_with_amp(digits, teacher):
    train, val = digits
    cfg = DistillConfig(epochs=3, warmup_epochs=1, cycle_epochs=2, phase1_fraction=0.5, progress=False)
    res = fit(
        teacher,
        mlp([64, 16, 10], 1),
        train,
        method="rid",
        teacher_layers=["2"],
        student_layers=["0"],
        val_data=val,
        device="cuda",
        config=cfg,
    )
    assert next(res.student.parameters()).is_cuda
    assert list(res.history["phase"]) == ["warmup", "phase1", "phase2"]
    assert np.isfinite(res.history["loss_task"]).all() and res.history["val_acc"].iloc[-1] > 0.5


@pytest.mark.gpu
@pytest.mark.parametrize("method", ["kd", "rid"])
def test_cuda_graphs_through_compile_reduce_overhead(digits, teacher, method):
    # CUDA graphs replay the teacher's and the student's forward passes; the teacher's outputs must
    # survive the student's graph, and every phase must train as it does eagerly.
    train, val = digits
    layers = {"teacher_layers": ["2"], "student_layers": ["0"]} if method == "rid" else {}
    hist = {}
    for mode in (False, "reduce-overhead"):
        cfg = DistillConfig(
            epochs=3, warmup_epochs=1, cycle_epochs=2, phase1_fraction=0.5, amp=False, progress=False, compile=mode
        )
        t = copy.deepcopy(teacher)
        hist[mode] = fit(
            t, mlp([64, 16, 10], 1), train, method=method, val_data=val, device="cuda", config=cfg, **layers
        ).history
    losses = [c for c in hist[False] if c.startswith("loss_")]
    np.testing.assert_allclose(hist["reduce-overhead"][losses].to_numpy(), hist[False][losses].to_numpy(), rtol=1e-2)
    np.testing.assert_allclose(hist["reduce-overhead"]["val_acc"], hist[False]["val_acc"], atol=0.02)


@pytest.mark.gpu
@pytest.mark.parametrize("method", ["student", "kd", "vid", "ted", "rid"])
@pytest.mark.parametrize("on_gpu", [True, False])
def test_cuda_step_loop_makes_no_host_syncs(digits, teacher, method, on_gpu):
    # Host synchronisations may happen per epoch, never per step: twice the steps, the same count.
    train, _ = digits
    cfg = DistillConfig(
        epochs=4, warmup_epochs=1, cycle_epochs=2, phase1_fraction=0.5, grad_clip=5.0, batch_size=16, progress=False
    )
    layers = {"teacher_layers": ["2"], "student_layers": ["0"]} if method in ("vid", "ted", "rid") else {}
    counts = []
    for n in (160, 160, 320):  # the first run warms up (CUDA's lazy initialisation synchronises once)
        data = (train[0][:n], train[1][:n])
        if on_gpu:
            data = (data[0].cuda(), data[1].cuda())
        run = functools.partial(
            fit, copy.deepcopy(teacher), mlp([64, 16, 10], 1), data, method=method, device="cuda", config=cfg, **layers
        )
        counts.append(host_syncs(run)[1])
    assert sum(counts[1].values()) == sum(counts[2].values()), counts[1:]


def test_teacher_never_changes_and_phase2_leaves_ft_untouched(digits, teacher, tmp_path):
    train, _ = digits
    t0 = {k: v.clone() for k, v in teacher.state_dict().items()}
    cfg = DistillConfig(
        epochs=2,
        warmup_epochs=0,
        cycle_epochs=2,
        phase1_fraction=0.5,
        grad_clip=100.0,
        progress=False,
        checkpoint_every=1,
        checkpoint_dir=str(tmp_path),
    )
    res = fit(
        teacher, mlp([64, 16, 10], 1), train, method="rid", teacher_layers=["2"], student_layers=["0"], config=cfg
    )
    assert all(torch.equal(t0[k], v) for k, v in teacher.state_dict().items())
    after_phase1 = torch.load(tmp_path / "rid_epoch0001.pt", weights_only=True)["modules"]
    ft_keys = [k for k in after_phase1 if k.startswith("ft0.")]
    final = res.modules.state_dict()
    assert ft_keys and all(torch.equal(after_phase1[k], final[k]) for k in ft_keys)  # phase 2: ft untouched
    assert not all(torch.equal(after_phase1[k], final[k]) for k in final if k.startswith("fs0."))


@pytest.mark.parametrize("method", ["rid", "vid"])
def test_resume_equals_an_uninterrupted_run(method, digits, teacher, tmp_path):
    train, val = digits

    def cfg(**kw):  # milestones fixed: the default ones scale with epochs, and the first part runs 2 of 4
        return DistillConfig(
            epochs=4,
            warmup_epochs=1,
            cycle_epochs=2,
            phase1_fraction=0.5,
            grad_clip=100.0,
            progress=False,
            seed=7,
            lr_milestones=(2, 3),
            **kw,
        )

    layers = {"teacher_layers": ["2"], "student_layers": ["0"]}
    full = fit(teacher, mlp([64, 16, 10], 1), train, method=method, val_data=val, config=cfg(), **layers)
    fit(
        teacher,
        mlp([64, 16, 10], 1),
        train,
        method=method,
        val_data=val,
        epochs=2,
        config=cfg(checkpoint_every=2, checkpoint_dir=str(tmp_path)),
        **layers,
    )
    resumed = fit(
        teacher,
        mlp([64, 16, 10], 1),
        train,
        method=method,
        val_data=val,
        config=cfg(),
        resume_from=str(tmp_path / f"{method}_epoch0002.pt"),
        **layers,
    )
    cols = [c for c in full.history.columns if c != "wall_time"]
    assert resumed.history[cols].equals(full.history[cols])
    for a, b in zip(full.student.parameters(), resumed.student.parameters()):
        assert torch.equal(a, b)
    assert resumed.best_epoch == full.best_epoch is not None  # the best-validation weights survive a resume
    assert all(torch.equal(full.best_state[k], resumed.best_state[k]) for k in full.best_state)


def test_authors_preset_schedule_and_terms(digits, teacher):
    train, _ = digits
    cfg = DistillConfig.preset("authors", epochs=6, progress=False)
    rid = RID.preset("authors", cycle_epochs=3, phase1_fraction=1 / 3)
    assert (rid.reduction, rid.sigma_penalty, cfg.grad_clip, rid.lambda_distill) == ("mean", "meansq", 100.0, 10.0)
    res = fit(teacher, mlp([64, 16, 10], 1), train, method=rid, teacher_layers=["2"], student_layers=["0"], config=cfg)
    # first cycle's phase 1 is cross-entropy only (reported as warm-up), the coupling starts in cycle 2
    assert list(res.history["phase"]) == ["warmup", "phase2", "phase2", "phase1", "phase2", "phase2"]
    with pytest.raises(ValueError, match=r"'variant' parameter of DistillConfig.preset\(\) must be one of"):
        DistillConfig.preset("mine")


def test_more_bad_inputs(digits, teacher):
    train, _ = digits
    cfg = DistillConfig(epochs=1, progress=False)
    with pytest.raises(ValueError, match="0 inputs and 0 labels"):
        fit(teacher, mlp([64, 16, 10], 1), (train[0][:0], train[1][:0]), method="student", config=cfg)
    with pytest.raises(ValueError, match="train_data is empty"):
        fit(teacher, mlp([64, 16, 10], 1), [], method="student", config=cfg)
    with pytest.raises(ValueError, match=r"the teacher is on \['meta'\] and the student on \['cpu'\]"):
        fit(mlp([64, 16, 10], 0).to("meta"), mlp([64, 16, 10], 1), train, method="student", config=cfg)
    conv_student = nn.Sequential(nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(144, 10))
    with pytest.raises(ValueError, match=r"layer pair 0 has teacher output \(32,\) and student output \(4, 6, 6\)"):
        fit(teacher, conv_student, train, method="rid", teacher_layers=["2"], student_layers=["1"], config=cfg)


def test_nuisance_teachers():
    from pidkd.distill import noisy_copy, untrained_copy

    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    x = torch.randn(5, 1, 4, 4)
    fresh = untrained_copy(net, seed=1)
    assert not torch.equal(fresh[0].weight, net[0].weight) and not fresh.training
    assert torch.equal(untrained_copy(net, seed=1)[0].weight, fresh[0].weight)  # seeded
    noisy = noisy_copy(net, ["0"], fraction=0.5, std=1.0)
    with capture(net, ["0"]) as clean, capture(noisy, ["0"]) as dirty:
        net(x)
        noisy(x)
    assert torch.equal(clean["0"][:, :, :2], dirty["0"][:, :, :2])  # top rows untouched
    assert not torch.equal(clean["0"][:, :, 2:], dirty["0"][:, :, 2:])  # bottom half replaced
    seq = nn.Sequential(nn.Conv1d(1, 3, 3, padding=1))  # (N, C, L): the last positions of every channel
    noisy_seq = noisy_copy(seq, ["0"], fraction=0.25)
    xs = torch.randn(2, 1, 8)
    with torch.no_grad():
        diff = (seq(xs) != noisy_seq(xs)).all(dim=(0, 1))
    assert diff.tolist() == [False] * 6 + [True] * 2
    with pytest.raises(ValueError, match=r"'fraction' parameter of noisy_copy\(\) must be in \[0, 1\]"):
        noisy_copy(net, ["0"], fraction=2)
    with pytest.raises(ValueError, match=r"no module named \['x'\]"):
        noisy_copy(net, ["x"])


def test_probes_record_pid_of_layers_and_filters(digits, teacher):
    from pidkd.distill import PIDProbe

    train, val = digits
    probe = PIDProbe(val, teacher_layer="2", student_layer="0", every=2, n_bootstrap=10, n_permutations=2, name="probe")
    cfg = DistillConfig(
        epochs=4,
        warmup_epochs=1,
        cycle_epochs=2,
        phase1_fraction=0.5,
        grad_clip=100.0,
        lambda_distill=0.01,
        progress=False,
    )
    h = fit(
        teacher,
        mlp([64, 16, 10], 1),
        train,
        method="rid",
        teacher_layers=["2"],
        student_layers=["0"],
        config=cfg,
        probes=[probe],
    ).history
    measured = h.dropna(subset=["probe_red"])
    assert list(measured["epoch"]) == [2, 4]
    for col in ("probe_red", "probe_uni_t", "probe_red_lo", "probe_red_null", "probe_filters_red", "probe_mi_t"):
        assert col in h.columns
    # the identities tie the probed atoms to the mutual informations of the codes
    plug = measured["probe_red_plugin"] + measured["probe_uni_t_plugin"]  # the identity holds for the plug-in
    np.testing.assert_allclose(plug, measured["probe_mi_t"], atol=1e-9)
    assert (measured["probe_samples_per_cell"] > 1).all()
    assert (measured["probe_red"] != measured["probe_red_plugin"]).any()  # the jackknife estimate
    assert (measured["probe_red"] >= 0).all() and (measured["probe_mi_t"] > 1.0).all()
    with pytest.raises(ValueError, match="'every' parameter of PIDProbe"):
        PIDProbe(val, teacher_layer="2", student_layer="0", every=0)


def test_probe_equals_offline_pid_from_samples_and_changes_nothing(digits, teacher):
    from pidkd.distill import PIDProbe
    from pidkd.estimators import Quantizer, pid_from_samples

    train, val = digits
    cfg = DistillConfig(epochs=1, grad_clip=100.0, progress=False, seed=5)
    probe = PIDProbe(val, teacher_layer="2", student_layer="0", n_bootstrap=20, n_permutations=2)
    with_probe = fit(teacher, mlp([64, 16, 10], 1), train, method="kd", config=cfg, probes=[probe])
    without = fit(teacher, mlp([64, 16, 10], 1), train, method="kd", config=cfg)
    # probes leave modes and random streams alone: identical weights with and without them
    for a, b in zip(with_probe.student.parameters(), without.student.parameters()):
        assert torch.equal(a, b)
    assert with_probe.student.training == without.student.training
    # the probe's numbers are an offline pid_from_samples of the same activations
    student = with_probe.student.eval()
    with torch.no_grad(), capture(teacher, ["2"]) as ta, capture(student, ["0"]) as sa:
        teacher(val[0])
        student(val[0])
    codes_t = Quantizer().fit_transform(ta["2"].numpy())
    codes_s = Quantizer().fit_transform(sa["0"].numpy())
    offline = pid_from_samples(val[1].numpy(), codes_t, codes_s, n_bootstrap=20, n_permutations=2, rng=1)
    row = with_probe.history.iloc[0]
    for atom in ("red", "uni_t", "uni_s", "syn"):
        assert row[f"probe_2_0_{atom}"] == pytest.approx(offline.estimate[atom], abs=1e-12)
        assert row[f"probe_2_0_{atom}_plugin"] == pytest.approx(getattr(offline.pid, atom), abs=1e-12)
        assert row[f"probe_2_0_{atom}_lo"] == pytest.approx(offline.ci[atom][0], abs=1e-12)
        assert row[f"probe_2_0_{atom}_null"] == pytest.approx(offline.null_mean[atom], abs=1e-12)


def test_background_probes_equal_inline_probes_and_report_their_cost(digits, teacher, tmp_path):
    from pidkd.distill import PIDProbe

    train, val = digits
    cfg = DistillConfig(
        epochs=3,
        warmup_epochs=1,
        cycle_epochs=2,
        phase1_fraction=0.5,
        grad_clip=100.0,
        lambda_distill=0.01,
        progress=False,
        checkpoint_every=2,
        checkpoint_dir=str(tmp_path),
    )
    layers = {"teacher_layers": ["2"], "student_layers": ["0"]}
    histories = []
    for background in (True, False):
        probe = PIDProbe(
            val, teacher_layer="2", student_layer="0", n_bootstrap=5, n_permutations=1, background=background
        )
        run_cfg = dataclasses.replace(cfg, checkpoint_dir=str(tmp_path / str(background)))
        histories.append(
            fit(teacher, mlp([64, 16, 10], 1), train, method="rid", config=run_cfg, probes=[probe], **layers).history
        )
    timing = ["wall_time", "probe_seconds", "probe_analysis_seconds"]
    assert (histories[0]["probe_analysis_seconds"] > 0).all() and (histories[0]["probe_seconds"] > 0).all()
    assert sorted(histories[0].columns) == sorted(histories[1].columns)
    a, b = (h.drop(columns=timing) for h in histories)
    pytest.importorskip("pandas").testing.assert_frame_equal(a, b[a.columns], check_exact=True)
    assert a["probe_2_0_filters_red"].notna().all()
    # a checkpoint waits for the worker: its rows are complete
    saved = torch.load(tmp_path / "True" / "rid_epoch0002.pt", weights_only=True)["history"]
    assert [row["probe_2_0_red"] for row in saved] == list(a["probe_2_0_red"][:2])


def test_a_failing_background_probe_stops_fit_with_its_epoch(digits, teacher, monkeypatch):
    import pidkd.distill.probes as probes_module
    from pidkd.distill import PIDProbe

    train, val = digits

    def failing(*args, **kwargs):
        raise ValueError("solver exploded")

    monkeypatch.setattr(probes_module, "pid_from_samples", failing)  # the worker's analysis fails
    probe = PIDProbe(val, teacher_layer="2", student_layer="0")
    cfg = DistillConfig(epochs=2, progress=False)
    with pytest.raises(RuntimeError, match="PID probe of epoch 1 failed: solver exploded"):
        fit(teacher, mlp([64, 16, 10], 1), train, method="student", config=cfg, probes=[probe])
    with pytest.raises(TypeError, match="expects PIDProbe objects"):
        fit(teacher, mlp([64, 16, 10], 1), train, method="student", config=cfg, probes=["red"])
