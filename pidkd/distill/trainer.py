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
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pidkd._optional import import_optional
from pidkd._validation import check_choice
from pidkd.distill.filters import Head, StudentFilter, TeacherFilter, VIDRegressor
from pidkd.distill.hooks import capture
from pidkd.distill.losses import kd_loss, rid_phase1_loss, rid_phase2_loss, vid_loss

__all__ = ["METHODS", "DistillConfig", "FitResult", "fit"]

METHODS = ("student", "kd", "vid", "rid")


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
    amp: bool = True  # bf16 autocast on CUDA
    seed: int = 0
    progress: bool = True


@dataclass
class FitResult:
    """The trained student, the trained filters/regressors, and the per-epoch history."""

    student: nn.Module
    modules: nn.ModuleDict
    history: Any  # pandas.DataFrame
    config: DistillConfig = field(repr=False)


def _loader(data: Any, batch_size: int, shuffle: bool, seed: int) -> Iterable[Any]:
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(d, torch.Tensor) for d in data):
        gen = torch.Generator().manual_seed(seed)
        ds = torch.utils.data.TensorDataset(*data)
        return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=gen)
    if isinstance(data, Iterable):
        return data
    raise TypeError(
        f"fit() expects data as a (inputs, labels) tuple of tensors or an iterable of (inputs, labels) batches "
        f"(e.g. a DataLoader); got {type(data).__name__}."
    )


def _phase(method: str, epoch: int, cfg: DistillConfig) -> str:
    if method != "rid":
        return "train"
    if epoch < cfg.warmup_epochs:
        return "warmup"
    pos = (epoch - cfg.warmup_epochs) % cfg.cycle_epochs
    return "phase1" if pos < round(cfg.phase1_fraction * cfg.cycle_epochs) else "phase2"


def _build_modules(method, t_feats, s_feats, n_classes, cfg) -> nn.ModuleDict:
    mods = nn.ModuleDict()
    for k, (t, s) in enumerate(zip(t_feats, s_feats)):
        spatial = t.dim() == 4
        if (t.dim() == 4) != (s.dim() == 4) or (spatial and t.shape[2:] != s.shape[2:]):
            raise ValueError(
                f"fit(): layer pair {k} has teacher output {tuple(t.shape[1:])} and student output "
                f"{tuple(s.shape[1:])}; RID/VID filters are 1x1 maps, so both must be vectors or feature maps "
                "of the same spatial size. Pick layer pairs with matching spatial size."
            )
        if method == "vid":
            mods[f"vid{k}"] = VIDRegressor(s.shape[1], t.shape[1], spatial=spatial)
        elif method == "rid":
            c_out = cfg.filter_channels or s.shape[1]
            mods[f"ft{k}"] = TeacherFilter(t.shape[1], c_out, spatial=spatial)
            mods[f"head{k}"] = Head(n_classes)
            mods[f"fs{k}"] = StudentFilter(s.shape[1], c_out, spatial=spatial)
            mods[f"sigma{k}"] = _Sigma(c_out)
    return mods


class _Sigma(nn.Module):
    """sigma = softplus(a) + 1e-3 per channel, a = 5 at start (as the authors' code)."""

    def __init__(self, c: int):
        super().__init__()
        self.a = nn.Parameter(torch.full((c,), 5.0))

    def forward(self) -> torch.Tensor:
        return F.softplus(self.a) + 1e-3


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
) -> FitResult:
    """Train ``student`` with ``method`` in {"student", "kd", "vid", "rid"}; the teacher stays frozen.

    Parameters
    ----------
    teacher, student : nn.Module
        Classifiers returning logits. The teacher is put in eval mode and never updated.
    train_data, val_data
        A (inputs, labels) tuple of tensors (batched with ``config.batch_size``) or an iterable of
        (inputs, labels) batches.
    method : str
        ``"student"`` (task loss only), ``"kd"`` (Hinton), ``"vid"``, ``"rid"``.
    teacher_layers, student_layers : sequence of str
        Paired layer names (``model.named_modules()``) for VID and RID.
    epochs : int, optional
        Overrides ``config.epochs``.
    device : str or torch.device, optional
        Default: CUDA when available, else CPU.
    config : DistillConfig, optional

    Returns
    -------
    FitResult
    """
    pd = import_optional("pandas", purpose="fit()")
    cfg = config or DistillConfig()
    if epochs is not None:
        cfg.epochs = int(epochs)
    method = check_choice(method, METHODS, name="method", caller="fit()")
    if method in ("vid", "rid"):
        if not teacher_layers or len(teacher_layers) != len(student_layers):
            raise ValueError(
                f"fit(method={method!r}) needs paired layers: teacher_layers and student_layers of equal, non-zero "
                f"length; got {list(teacher_layers)} and {list(student_layers)}."
            )
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(cfg.seed)
    teacher = teacher.to(dev).eval()
    for p_ in teacher.parameters():
        p_.requires_grad_(False)
    student = student.to(dev)
    train = _loader(train_data, cfg.batch_size, True, cfg.seed)
    val = _loader(val_data, cfg.batch_size, False, cfg.seed) if val_data is not None else None
    use_amp = cfg.amp and dev.type == "cuda"

    # One batch to size the filters (and to fail early on wrong layer names or shapes).
    x0, y0 = next(iter(train))
    x0 = x0.to(dev)
    with torch.no_grad(), capture(teacher, list(teacher_layers)) as ta, capture(student, list(student_layers)) as sa:
        t_logits0 = teacher(x0)
        was = student.training
        student.eval()
        student(x0)
        student.train(was)
    n_classes = t_logits0.shape[1]
    mods = _build_modules(method, [ta[n] for n in teacher_layers], [sa[n] for n in student_layers], n_classes, cfg)
    mods = mods.to(dev)
    if method == "rid":
        with torch.no_grad():  # materialise the lazy heads
            for k, name in enumerate(teacher_layers):
                mods[f"head{k}"](mods[f"ft{k}"](ta[name]))

    def sgd(params, lr):
        return torch.optim.SGD(
            params, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay
        )

    s_params = list(student.parameters()) + [
        p_ for name, m in mods.items() if not name.startswith(("ft", "head")) for p_ in m.parameters()
    ]
    opt_s = sgd(s_params, cfg.lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt_s, list(cfg.lr_milestones), cfg.lr_gamma)
    t_params = [p_ for name, m in mods.items() if name.startswith(("ft", "head")) for p_ in m.parameters()]
    opt_t = sgd(t_params, cfg.filter_lr or cfg.lr) if t_params else None

    tqdm = import_optional("tqdm", purpose="fit(progress=True)").tqdm if cfg.progress else None
    rows = []
    start = time.perf_counter()
    for epoch in range(cfg.epochs):
        phase = _phase(method, epoch, cfg)
        train_student = phase in ("train", "phase2")
        student.train(train_student)
        for name, m in mods.items():  # only the modules trained in this phase update their BN statistics
            m.train(name.startswith(("ft", "head")) != train_student or method == "vid")
        sums: dict[str, torch.Tensor] = {}
        correct = torch.zeros((), device=dev)
        count = torch.zeros((), device=dev)
        bad_step = torch.full((), -1, device=dev, dtype=torch.long)
        it = tqdm(train, desc=f"epoch {epoch + 1}/{cfg.epochs} [{phase}]", leave=False) if tqdm else train
        for step, (x, y) in enumerate(it):
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
                with torch.no_grad(), capture(teacher, list(teacher_layers)) as ta:
                    t_logits = teacher(x)
                with torch.set_grad_enabled(train_student), capture(student, list(student_layers)) as sa:
                    logits = student(x)
                terms = _terms(method, phase, cfg, mods, teacher_layers, student_layers, ta, sa, logits, t_logits, y)
            loss = sum(terms.values())
            opt = opt_t if phase in ("warmup", "phase1") else opt_s
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_([p_ for g in opt.param_groups for p_ in g["params"]], cfg.grad_clip)
            opt.step()
            for name, v in terms.items():
                sums[name] = sums.get(name, torch.zeros((), device=dev)) + v.detach().float()
            bad_step = torch.where(
                (bad_step < 0) & ~torch.isfinite(loss.detach()), torch.tensor(step, device=dev), bad_step
            )
            correct += (logits.detach().argmax(1) == y).sum()
            count += y.numel()
        if train_student:
            sched.step()
        # One synchronisation per epoch.
        n_steps = step + 1
        if int(bad_step) >= 0:
            bad_terms = [k for k, v in sums.items() if not math.isfinite(float(v))]
            raise FloatingPointError(
                f"fit(method={method!r}): non-finite loss at epoch {epoch + 1}, step {int(bad_step) + 1} "
                f"(phase {phase}; non-finite terms: {bad_terms}). Lower the learning rate, enable grad_clip, or "
                "check the inputs for NaN."
            )
        row = {"epoch": epoch + 1, "phase": phase}
        row.update({f"loss_{k}": float(v) / n_steps for k, v in sums.items()})
        row["train_acc"] = float(correct / count)
        row["val_acc"] = _accuracy(student, val, dev) if val is not None else math.nan
        row["lr"] = opt_s.param_groups[0]["lr"]
        row["wall_time"] = time.perf_counter() - start
        rows.append(row)
        if tqdm:
            tqdm.write(
                f"epoch {epoch + 1} [{phase}] "
                + " ".join(f"{k}={v:.4g}" for k, v in row.items() if k.startswith(("loss", "train", "val")))
            )
    history = pd.DataFrame(rows)
    history.attrs["config"] = asdict(cfg) | {"method": method}
    return FitResult(student=student, modules=mods, history=history, config=cfg)


def _terms(method, phase, cfg, mods, t_layers, s_layers, ta, sa, logits, t_logits, y) -> dict[str, torch.Tensor]:
    """The loss terms of one step; which ones exist is the whole difference between methods."""
    terms: dict[str, torch.Tensor] = {}
    if method == "student":
        terms["task"] = F.cross_entropy(logits, y)
    elif method == "kd":
        terms["task"] = (1 - cfg.kd_alpha) * F.cross_entropy(logits, y)
        terms["kd"] = cfg.kd_alpha * kd_loss(logits, t_logits, temperature=cfg.kd_temperature)
    elif method == "vid":
        terms["task"] = F.cross_entropy(logits, y)
        terms["vid"] = cfg.vid_lambda * sum(
            vid_loss(ta[a].float(), mods[f"vid{k}"](sa[b]), mods[f"vid{k}"].variance)
            for k, (a, b) in enumerate(zip(t_layers, s_layers))
        )
    elif phase in ("warmup", "phase1"):
        total = 0.0
        for k, (a, b) in enumerate(zip(t_layers, s_layers)):
            ft = mods[f"ft{k}"](ta[a].float())
            fs = mods[f"fs{k}"](sa[b].detach())
            total = total + rid_phase1_loss(
                mods[f"head{k}"](ft), y, ft, fs, mods[f"sigma{k}"](), coupling=phase == "phase1"
            )
        terms["filters"] = total
    else:
        terms["task"] = cfg.lambda_task * F.cross_entropy(logits, y)
        total = 0.0
        for k, (a, b) in enumerate(zip(t_layers, s_layers)):
            with torch.no_grad():
                ft = mods[f"ft{k}"](ta[a].float())
            total = total + rid_phase2_loss(ft, mods[f"fs{k}"](sa[b]), mods[f"sigma{k}"]())
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
