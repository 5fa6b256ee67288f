"""``fit``: one training loop for the plain student, KD, VID and RID (methods are configuration).

RID (Dissanayake et al., arXiv 2411.07483, Algorithm 1), per distilled layer pair k: a teacher
filter f_t^k with a head g_t^k, a student filter f_s^k and per-channel sigma^k > 0. After
``warmup_epochs`` epochs of the heads' cross-entropy, training runs in cycles of ``cycle_epochs``
epochs: the first ``round(phase1_fraction * cycle_epochs)`` train f_t and g_t (phase 1), the rest
train the student, f_s and sigma (phase 2). The device is chosen once; metrics accumulate on the
device and are read once per epoch (no host synchronisation inside the step loop).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pidkd._optional import import_optional
from pidkd._validation import check_choice
from pidkd.distill.filters import Head, StudentFilter, TeacherFilter, VIDRegressor
from pidkd.distill.hooks import capture
from pidkd.distill.losses import kd_loss, rid_phase1_loss, rid_phase2_loss, vid_loss
from pidkd.distill.probes import ProbeRunner

__all__ = ["METHODS", "DistillConfig", "FitResult", "fit"]

METHODS = ("student", "kd", "vid", "ted", "rid")


@dataclass
class DistillConfig:
    """Every knob of :func:`fit`, with the RID paper's CIFAR-10 defaults where they apply."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    lr_milestones: Sequence[int] = ()
    lr_gamma: float = 0.2
    warmup_epochs: int = 2  # n_w
    cycle_epochs: int = 4  # q
    phase1_fraction: float = 0.25  # r
    lambda_task: float = 1.0  # lambda_1
    lambda_distill: float = 1.0  # lambda_2 (RID)
    vid_lambda: float = 100.0
    kd_alpha: float = 0.9
    kd_temperature: float = 4.0
    filter_channels: int | None = None  # C_out of the filters (default: the student layer's channels)
    filter_lr: float | None = None  # learning rate of f_t and g_t (default: lr)
    grad_clip: float | None = None
    reduction: str = "sum"  # RID mismatch: sum over (c, h, w) as the paper; "mean" as the authors' code
    sigma_penalty: str = "sumsq"  # phase-2 penalty ||sigma||^2 (paper) or "meansq" (authors)
    coupling_from_cycle: int = 0  # phase-1 coupling term from this cycle on (authors: 1)
    ted_lambda: float = 1.0  # TED stage-2 MSE weight
    checkpoint_every: int = 0  # epochs between checkpoints (0: none)
    checkpoint_dir: str | None = None
    amp: bool = True  # bf16 autocast on CUDA
    seed: int = 0
    progress: bool = True

    @classmethod
    def preset(cls, variant: str = "paper", **overrides: Any) -> DistillConfig:
        """``"paper"``: the paper's Algorithm 1. ``"authors"``: what the authors' code runs.

        The authors' code differs from the paper in: no separate warm-up (the first cycle's phase-1
        epochs are cross-entropy only); per-element means instead of sums over (c, h, w); the
        phase-2 penalty mean_c sigma_c^2 instead of ||sigma||^2; gradient-norm clipping at 100;
        lambda = (1, 10); a constant student learning rate of 0.0025 (a scheduler bug in their code)
        and a teacher-filter learning rate of 0.05.
        """
        variant = check_choice(variant, ["paper", "authors"], name="variant", caller="DistillConfig.preset()")
        base: dict[str, Any] = {}
        if variant == "authors":
            base = dict(
                warmup_epochs=0,
                coupling_from_cycle=1,
                reduction="mean",
                sigma_penalty="meansq",
                grad_clip=100.0,
                lambda_task=1.0,
                lambda_distill=10.0,
                lr=0.0025,
                lr_milestones=(),
                filter_lr=0.05,
            )
        return cls(**(base | overrides))


@dataclass
class FitResult:
    """The trained student, the trained filters/regressors, and the per-epoch history."""

    student: nn.Module
    modules: nn.ModuleDict
    history: Any  # pandas.DataFrame
    config: DistillConfig = field(repr=False)


def _loader(data: Any, batch_size: int, shuffle: bool, gen: torch.Generator | None) -> Iterable[Any]:
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(d, torch.Tensor) for d in data):
        if len(data[0]) != len(data[1]) or len(data[0]) == 0:
            raise ValueError(
                f"fit() got {len(data[0])} inputs and {len(data[1])} labels; give the same, non-zero number of each."
            )
        ds = torch.utils.data.TensorDataset(*data)
        return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=gen)
    if isinstance(data, Iterable):
        return data
    raise TypeError(
        f"fit() expects data as a (inputs, labels) tuple of tensors or an iterable of (inputs, labels) batches "
        f"(e.g. a DataLoader); got {type(data).__name__}."
    )


def _phase(method: str, epoch: int, cfg: DistillConfig) -> str:
    """ "train" (one-stage methods), TED's "warmup" / "train", or RID's "warmup" / "phase1" / "phase2".

    RID phase-1 epochs before ``coupling_from_cycle`` are reported as "warmup" (no coupling term).
    """
    if method not in ("rid", "ted"):
        return "train"
    if epoch < cfg.warmup_epochs:
        return "warmup"
    if method == "ted":
        return "train"
    cycle, pos = divmod(epoch - cfg.warmup_epochs, cfg.cycle_epochs)
    if pos < round(cfg.phase1_fraction * cfg.cycle_epochs):
        return "phase1" if cycle >= cfg.coupling_from_cycle else "warmup"
    return "phase2"


# Module-name prefixes trained in each (method, phase), and whether the student is trained.
def _trained(method: str, phase: str) -> tuple[tuple[str, ...], bool]:
    if method == "rid":
        return (("ft", "head"), False) if phase in ("warmup", "phase1") else (("fs", "sigma"), True)
    if method == "ted":
        return (("ft", "head", "fs", "shead"), False) if phase == "warmup" else (("fs",), True)
    return (("vid",), True)


def _build_modules(method, t_feats, s_feats, n_classes, cfg) -> nn.ModuleDict:
    mods = nn.ModuleDict()
    for k, (t, s) in enumerate(zip(t_feats, s_feats)):
        spatial = t.dim() - 2  # vectors 0, sequences 1, feature maps 2, volumes 3
        if t.dim() != s.dim() or t.shape[2:] != s.shape[2:] or not 0 <= spatial <= 3:
            raise ValueError(
                f"fit(): layer pair {k} has teacher output {tuple(t.shape[1:])} and student output "
                f"{tuple(s.shape[1:])}; RID/VID filters are pointwise maps over channels (axis 1), so both must "
                "be vectors, sequences or feature maps of the same spatial size. Pick layer pairs with matching "
                "spatial size."
            )
        if method == "vid":
            mods[f"vid{k}"] = VIDRegressor(s.shape[1], t.shape[1], spatial=spatial)
        elif method in ("rid", "ted"):
            c_out = cfg.filter_channels or s.shape[1]
            mods[f"ft{k}"] = TeacherFilter(t.shape[1], c_out, spatial=spatial)
            mods[f"head{k}"] = Head(n_classes)
            mods[f"fs{k}"] = StudentFilter(s.shape[1], c_out, spatial=spatial)
            if method == "rid":
                mods[f"sigma{k}"] = _Sigma(c_out)
            else:
                mods[f"shead{k}"] = Head(n_classes)
    return mods


class _Sigma(nn.Module):
    """sigma = softplus(a) + 1e-3 per channel, a = 5 at start (as the authors' code)."""

    def __init__(self, c: int):
        super().__init__()
        self.a = nn.Parameter(torch.full((c,), 5.0))

    def forward(self) -> torch.Tensor:
        return F.softplus(self.a) + 1e-3


def _device(teacher: nn.Module, student: nn.Module, device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    found = {p.device for m in (teacher, student) for p in m.parameters()}
    t_dev = {p.device for p in teacher.parameters()}
    s_dev = {p.device for p in student.parameters()}
    if t_dev and s_dev and t_dev != s_dev:
        raise ValueError(
            f"fit(): the teacher is on {sorted(map(str, t_dev))} and the student on {sorted(map(str, s_dev))}. "
            "Move both to one device, or pass device=... and fit() moves them."
        )
    if found and next(iter(found)).type != "cpu":
        return next(iter(found))
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def fit(
    teacher: nn.Module,
    student: nn.Module,
    train_data: Any,
    *,
    method: str = "rid",
    teacher_layers: Sequence[str] = (),
    student_layers: Sequence[str] = (),
    epochs: int | None = None,
    val_data: Any = None,
    device: str | torch.device | None = None,
    config: DistillConfig | None = None,
    resume_from: str | None = None,
    probes: Sequence[Any] = (),
) -> FitResult:
    """Train ``student`` with ``method``; the teacher stays frozen (eval mode, no gradients).

    Parameters
    ----------
    teacher, student : nn.Module
        Classifiers returning logits.
    train_data, val_data
        A (inputs, labels) tuple of tensors (batched with ``config.batch_size``, shuffled with a
        generator seeded by ``config.seed``) or an iterable of (inputs, labels) batches.
    method : {"student", "kd", "vid", "ted", "rid"}
        ``"student"``: task loss only (the paper's BAS); ``"kd"``: Hinton soft targets;
        ``"vid"``: variational information distillation; ``"ted"``: task-aware filters with heads on
        both sides (stage 1 = ``warmup_epochs``), then plain MSE between the filters; ``"rid"``:
        redundant information distillation.
    teacher_layers, student_layers : sequence of str
        Paired layer names (``model.named_modules()``) for VID, TED and RID.
    epochs : int, optional
        Overrides ``config.epochs``.
    device : str or torch.device, optional
        Default: the models' device if it is an accelerator, else CUDA when available, else CPU.
    config : DistillConfig, optional
        ``DistillConfig.preset("authors")`` reproduces the RID authors' code.
    resume_from : str, optional
        A checkpoint written with ``config.checkpoint_every``; training continues where it stopped
        with the same history and random streams (exactly, for tensor-tuple data).
    probes : sequence of PIDProbe
        Live PID measurements added to the history (see :class:`pidkd.distill.PIDProbe`). The
        training thread only runs the probe set through the networks; the PID analysis runs in a
        worker thread and its columns are complete when ``fit`` returns.

    Returns
    -------
    FitResult
    """
    pd = import_optional("pandas", purpose="fit()")
    cfg = config or DistillConfig()
    if epochs is not None:
        cfg.epochs = int(epochs)
    method = check_choice(method, METHODS, name="method", caller="fit()")
    if method in ("vid", "ted", "rid") and (not teacher_layers or len(teacher_layers) != len(student_layers)):
        raise ValueError(
            f"fit(method={method!r}) needs paired layers: teacher_layers and student_layers of equal, non-zero "
            f"length; got {list(teacher_layers)} and {list(student_layers)}."
        )
    dev = _device(teacher, student, device)
    torch.manual_seed(cfg.seed)
    teacher = teacher.to(dev).eval()
    for p_ in teacher.parameters():
        p_.requires_grad_(False)
    student = student.to(dev)
    gen = torch.Generator().manual_seed(cfg.seed)
    train = _loader(train_data, cfg.batch_size, True, gen)
    val = _loader(val_data, cfg.batch_size, False, None) if val_data is not None else None
    use_amp = cfg.amp and dev.type == "cuda"
    t_layers, s_layers = list(teacher_layers), list(student_layers)

    # One batch sizes the filters and fails early on wrong layer names, shapes or empty data.
    try:
        x0, _ = next(iter(train))
    except StopIteration:
        raise ValueError("fit(): train_data is empty; give at least one batch.") from None
    x0 = x0.to(dev)
    with torch.no_grad(), capture(teacher, t_layers) as ta, capture(student, s_layers) as sa:
        n_classes = teacher(x0).shape[1]
        was = student.training
        student.eval()
        student(x0)
        student.train(was)
    mods = _build_modules(method, [ta[n] for n in t_layers], [sa[n] for n in s_layers], n_classes, cfg).to(dev)
    with torch.no_grad():  # materialise the lazy heads
        for k in range(len(t_layers)):
            if f"head{k}" in mods:
                mods[f"head{k}"](mods[f"ft{k}"](ta[t_layers[k]].float()))
            if f"shead{k}" in mods:
                mods[f"shead{k}"](mods[f"fs{k}"](sa[s_layers[k]].float()))

    def sgd(params, lr):
        return torch.optim.SGD(
            params, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay
        )

    def params_of(prefixes):
        return [p_ for name, m in mods.items() if name.startswith(prefixes) for p_ in m.parameters()]

    student_side = _trained(method, "phase2" if method == "rid" else "train")[0]
    opt_s = sgd(list(student.parameters()) + params_of(student_side), cfg.lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt_s, list(cfg.lr_milestones), cfg.lr_gamma)
    filter_side = _trained(method, "warmup")[0] if method in ("rid", "ted") else ()
    opt_t = sgd(params_of(filter_side), cfg.filter_lr or cfg.lr) if filter_side else None

    rows: list[dict[str, Any]] = []
    start_epoch = 0
    if resume_from is not None:
        state = torch.load(resume_from, map_location=dev, weights_only=False)
        if state["method"] != method:
            raise ValueError(
                f"fit(): checkpoint {resume_from!r} was written by method={state['method']!r}, not {method!r}."
            )
        student.load_state_dict(state["student"])
        mods.load_state_dict(state["modules"])
        opt_s.load_state_dict(state["opt_s"])
        sched.load_state_dict(state["sched"])
        if opt_t is not None:
            opt_t.load_state_dict(state["opt_t"])
        rows, start_epoch = state["history"], state["epoch"]
        torch.set_rng_state(state["rng"])
        gen.set_state(state["data_rng"])
        if dev.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], dev)

    tqdm = import_optional("tqdm", purpose="fit(progress=True)").tqdm if cfg.progress else None
    start = time.perf_counter() - (rows[-1]["wall_time"] if rows else 0.0)
    # Hooks are registered once for the whole run (not per step) and removed at the end.
    with capture(teacher, t_layers) as ta, capture(student, s_layers) as sa:
        run = _Run(
            method=method,
            cfg=cfg,
            teacher=teacher,
            student=student,
            mods=mods,
            train=train,
            val=val,
            dev=dev,
            use_amp=use_amp,
            t_layers=t_layers,
            s_layers=s_layers,
            ta=ta,
            sa=sa,
            opt_s=opt_s,
            opt_t=opt_t,
            sched=sched,
            gen=gen,
            tqdm=tqdm,
            probes=ProbeRunner(list(probes), t_layers) if probes else None,
        )
        try:
            rows = _epochs(run, rows, start_epoch, start)
        finally:
            if run.probes is not None:
                run.probes.close()
    history = pd.DataFrame(rows)
    history.attrs["config"] = asdict(cfg) | {"method": method}
    return FitResult(student=student, modules=mods, history=history, config=cfg)


@dataclass
class _Run:
    """Everything the epoch loop needs, built once by :func:`fit`."""

    method: Any
    cfg: Any
    teacher: Any
    student: Any
    mods: Any
    train: Any
    val: Any
    dev: Any
    use_amp: Any
    t_layers: Any
    s_layers: Any
    ta: Any
    sa: Any
    opt_s: Any
    opt_t: Any
    sched: Any
    gen: Any
    tqdm: Any
    probes: Any


def _epochs(run: _Run, rows: list[dict[str, Any]], start_epoch: int, start: float) -> list[dict[str, Any]]:
    """The epoch loop of :func:`fit` (captured activations arrive in ``run.ta`` and ``run.sa``)."""
    (
        method,
        cfg,
        teacher,
        student,
        mods,
        train,
        val,
        dev,
        use_amp,
        t_layers,
        s_layers,
        ta,
        sa,
        opt_s,
        opt_t,
        sched,
        gen,
        tqdm,
        probes,
    ) = (
        run.method,
        run.cfg,
        run.teacher,
        run.student,
        run.mods,
        run.train,
        run.val,
        run.dev,
        run.use_amp,
        run.t_layers,
        run.s_layers,
        run.ta,
        run.sa,
        run.opt_s,
        run.opt_t,
        run.sched,
        run.gen,
        run.tqdm,
        run.probes,
    )
    for epoch in range(start_epoch, cfg.epochs):
        phase = _phase(method, epoch, cfg)
        prefixes, train_student = _trained(method, phase)
        student.train(train_student)
        for name, m in mods.items():  # only the modules trained in this phase update BN statistics
            m.train(name.startswith(prefixes))
        opt = opt_s if train_student else opt_t
        sums: dict[str, torch.Tensor] = {}
        correct = torch.zeros((), device=dev)
        count = torch.zeros((), device=dev)
        bad_step = torch.full((), -1, device=dev, dtype=torch.long)
        step = -1
        it = tqdm(train, desc=f"epoch {epoch + 1}/{cfg.epochs} [{phase}]", leave=False) if tqdm else train
        for step, (x, y) in enumerate(it):
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
                with torch.no_grad():
                    t_logits = teacher(x)
                with torch.set_grad_enabled(train_student):
                    logits = student(x)
                terms = _terms(method, phase, cfg, mods, t_layers, s_layers, ta, sa, logits, t_logits, y)
            loss = sum(terms.values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_([p_ for g in opt.param_groups for p_ in g["params"]], cfg.grad_clip)
            opt.step()
            for name, v in terms.items():
                sums[name] = sums.get(name, torch.zeros((), device=dev)) + v.detach().float()
            bad_step = torch.where((bad_step < 0) & ~torch.isfinite(loss.detach()), step, bad_step)
            correct += (logits.detach().argmax(1) == y).sum()
            count += y.numel()
        if step < 0:
            raise ValueError(f"fit(): train_data gave no batches in epoch {epoch + 1}.")
        if train_student:
            sched.step()
        # One host synchronisation per epoch.
        if int(bad_step) >= 0:
            bad_terms = [k for k, v in sums.items() if not math.isfinite(float(v))]
            raise FloatingPointError(
                f"fit(method={method!r}): non-finite loss at epoch {epoch + 1}, step {int(bad_step) + 1} "
                f"(phase {phase}; non-finite terms: {bad_terms}). Lower the learning rate, enable grad_clip, or "
                "check the inputs for NaN."
            )
        row: dict[str, Any] = {"epoch": epoch + 1, "phase": phase}
        row.update({f"loss_{k}": float(v) / (step + 1) for k, v in sums.items()})
        row["train_acc"] = float(correct / count)
        row["val_acc"] = _accuracy(student, val, dev) if val is not None else math.nan
        row["lr"] = opt.param_groups[0]["lr"]
        row["wall_time"] = time.perf_counter() - start
        if probes is not None:  # captures now; the PID analysis runs in a worker while training goes on
            probes.run(epoch + 1, row, teacher, student, mods, dev)
            probes.collect(wait=False)
        rows.append(row)
        if tqdm:
            tqdm.write(
                f"epoch {epoch + 1} [{phase}] "
                + " ".join(f"{k}={v:.4g}" for k, v in row.items() if k.startswith(("loss", "train", "val")))
            )
        if cfg.checkpoint_every and (epoch + 1) % cfg.checkpoint_every == 0:
            if probes is not None:
                probes.collect(wait=True)  # a checkpoint holds complete rows
            _save_checkpoint(cfg, method, epoch + 1, student, mods, opt_s, opt_t, sched, rows, gen, dev)
    if probes is not None:
        probes.collect(wait=True)
    return rows


def _save_checkpoint(cfg, method, epoch, student, mods, opt_s, opt_t, sched, rows, gen, dev) -> Path:
    if not cfg.checkpoint_dir:
        raise ValueError("fit(): checkpoint_every is set but checkpoint_dir is not; give a directory.")
    path = Path(cfg.checkpoint_dir) / f"{method}_epoch{epoch:04d}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "method": method,
            "epoch": epoch,
            "student": student.state_dict(),
            "modules": mods.state_dict(),
            "opt_s": opt_s.state_dict(),
            "opt_t": None if opt_t is None else opt_t.state_dict(),
            "sched": sched.state_dict(),
            "history": list(rows),
            "rng": torch.get_rng_state(),
            "data_rng": gen.get_state(),
            "cuda_rng": torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None,
        },
        path,
    )
    return path


def _terms(method, phase, cfg, mods, t_layers, s_layers, ta, sa, logits, t_logits, y) -> dict[str, torch.Tensor]:
    """The loss terms of one step; which ones exist is the whole difference between methods."""
    terms: dict[str, torch.Tensor] = {}
    pairs = list(enumerate(zip(t_layers, s_layers)))
    if method == "student":
        terms["task"] = F.cross_entropy(logits, y)
    elif method == "kd":
        terms["task"] = (1 - cfg.kd_alpha) * F.cross_entropy(logits, y)
        terms["kd"] = cfg.kd_alpha * kd_loss(logits, t_logits, temperature=cfg.kd_temperature)
    elif method == "vid":
        terms["task"] = F.cross_entropy(logits, y)
        terms["vid"] = cfg.vid_lambda * sum(
            vid_loss(ta[a].float(), mods[f"vid{k}"](sa[b]), mods[f"vid{k}"].variance) for k, (a, b) in pairs
        )
    elif method == "ted" and phase == "warmup":
        terms["filters"] = sum(
            F.cross_entropy(mods[f"head{k}"](mods[f"ft{k}"](ta[a].float())), y)
            + F.cross_entropy(mods[f"shead{k}"](mods[f"fs{k}"](sa[b].detach())), y)
            for k, (a, b) in pairs
        )
    elif method == "ted":
        terms["task"] = F.cross_entropy(logits, y)
        total = 0.0
        for k, (a, b) in pairs:
            with torch.no_grad():
                ft = mods[f"ft{k}"](ta[a].float())
            total = total + F.mse_loss(mods[f"fs{k}"](sa[b]), ft)
        terms["ted"] = cfg.ted_lambda * total
    elif phase in ("warmup", "phase1"):
        total = 0.0
        for k, (a, b) in pairs:
            ft = mods[f"ft{k}"](ta[a].float())
            fs = mods[f"fs{k}"](sa[b].detach())
            total = total + rid_phase1_loss(
                mods[f"head{k}"](ft),
                y,
                ft,
                fs,
                mods[f"sigma{k}"](),
                coupling=phase == "phase1",
                reduction=cfg.reduction,
            )
        terms["filters"] = total
    else:
        terms["task"] = cfg.lambda_task * F.cross_entropy(logits, y)
        total = 0.0
        for k, (a, b) in pairs:
            with torch.no_grad():
                ft = mods[f"ft{k}"](ta[a].float())
            total = total + rid_phase2_loss(
                ft, mods[f"fs{k}"](sa[b]), mods[f"sigma{k}"](), reduction=cfg.reduction, sigma_penalty=cfg.sigma_penalty
            )
        terms["rid"] = cfg.lambda_distill * total
    return terms


@torch.no_grad()
def _accuracy(model: nn.Module, data: Iterable[Any], dev: torch.device) -> float:
    was = model.training
    model.eval()
    correct = torch.zeros((), device=dev)
    count = 0
    for x, y in data:
        x, y = x.to(dev), y.to(dev)
        correct += (model(x).argmax(1) == y).sum()
        count += y.numel()
    model.train(was)
    return float(correct) / max(count, 1)
