"""TED (Liang et al. 2023) and RID (Dissanayake et al., arXiv 2411.07483): methods with task-aware filters.

RID, per distilled layer pair k: a teacher filter f_t^k with a head g_t^k, a student filter f_s^k
and per-channel sigma^k > 0. After ``warmup_epochs`` epochs of the heads' cross-entropy, training
runs in cycles of ``cycle_epochs`` epochs: the first ``round(phase1_fraction * cycle_epochs)``
train f_t and g_t (phase 1), the rest train the student, f_s and sigma (phase 2). TED: stage 1
(``warmup_epochs``) trains both filters with heads on the task (and, by default, the student on
its task loss: ``train_student_in_phase1``), stage 2 the student with CE + MSE(f_s(S), f_t(T)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pidkd._validation import check_bool, check_choice, check_int, check_number
from pidkd.distill.filters import Head, StudentFilter, TeacherFilter, to_module_dtype
from pidkd.distill.losses import rid_phase1_loss, rid_phase2_loss
from pidkd.distill.methods.base import DistillMethod, Step, check_pairs

__all__ = ["RID", "TED"]


class _Sigma(nn.Module):
    """sigma = softplus(a) + 1e-3 per channel, a = 5 at start (as the authors' code)."""

    def __init__(self, c: int):
        super().__init__()
        self.a = nn.Parameter(torch.full((c,), 5.0))

    def forward(self) -> torch.Tensor:
        return F.softplus(self.a) + 1e-3


def _filters(teacher, student, n_classes, filter_channels: int | None, extra: str) -> nn.ModuleDict:
    """Per pair f_t, g_t, f_s and ``extra`` (TED's student head "shead" or RID's "sigma"), built on the
    layers' device, with the lazy heads materialised on the batch, in the student layers' floating dtype
    (float32 for float32 models, float64 for float64 ones)."""
    mods = nn.ModuleDict()
    for k, (t, s, dims) in enumerate(zip(teacher, student, check_pairs(teacher, student))):
        c_out = filter_channels or s.shape[1]
        mods[f"ft{k}"] = TeacherFilter(t.shape[1], c_out, spatial=dims).to(t.device)
        mods[f"head{k}"] = Head(n_classes).to(t.device)
        mods[f"fs{k}"] = StudentFilter(s.shape[1], c_out, spatial=dims).to(s.device)
        mods[f"{extra}{k}"] = (Head(n_classes) if extra == "shead" else _Sigma(c_out)).to(s.device)
        with torch.no_grad():  # materialise the lazy heads
            mods[f"head{k}"](mods[f"ft{k}"](t.float()))
            if extra == "shead":
                mods[f"shead{k}"](mods[f"fs{k}"](s.float()))
    return mods.to(_dtype(student))


def _dtype(student: list[torch.Tensor]) -> torch.dtype:
    """The dtype the method's modules are built in: the captured student layers' (float32 if not floating)."""
    return student[0].dtype if student and student[0].is_floating_point() else torch.float32


def _teacher_filter(modules: nn.ModuleDict, k: int, t: torch.Tensor) -> torch.Tensor:
    """f_t of pair ``k`` on the teacher layer ``t``, cast to the filter's dtype (bf16 activations under
    autocast, a teacher of another dtype)."""
    return modules[f"ft{k}"](to_module_dtype(t, modules[f"ft{k}"]))


def _check_filter_knobs(method: Any, caller: str) -> None:
    """Check (and normalise) the knobs TED and RID share."""
    method.filter_channels = check_int(method.filter_channels, name="filter_channels", caller=caller, optional=True)
    method.train_student_in_phase1 = check_bool(
        method.train_student_in_phase1, name="train_student_in_phase1", caller=caller
    )
    method.warmup_epochs = check_int(
        method.warmup_epochs, name="warmup_epochs", caller=caller, minimum=0, optional=True
    )
    method.lambda_distill = check_number(
        method.lambda_distill, name="lambda_distill", caller=caller, kind="non-negative"
    )


@dataclass
class TED(DistillMethod):
    """Task-aware filters with heads on both sides (stage 1), then MSE between the filters (stage 2).

    Parameters
    ----------
    lambda_distill : float, default 1.0
        Weight (>= 0) of the stage-2 MSE term.
    warmup_epochs : int, optional
        Epochs of the filter stage (stage 1); None: epochs // 6 of the run, at least 1.
    train_student_in_phase1 : bool, default True
        The student keeps learning the task during stage 1 (False: frozen, as TED; the presets).
    filter_channels : int, optional
        Output channels of the filters (default: the student layer's).

    Examples
    --------
    >>> TED(lambda_distill=2.0).lambda_distill
    2.0
    >>> TED.preset("paper")
    TED(lambda_distill=1.0, warmup_epochs=2, train_student_in_phase1=False, filter_channels=None)
    """

    lambda_distill: float = 1.0
    warmup_epochs: int | None = None
    train_student_in_phase1: bool = True
    filter_channels: int | None = None

    name = "ted"
    needs_layers = True
    student_modules = ("fs",)
    filter_modules = ("ft", "head", "fs", "shead")
    knobs = {"ted": "lambda_distill"}
    schedule_knobs = ("warmup_epochs",)
    presets = {
        "paper": {"warmup_epochs": 2, "train_student_in_phase1": False},
        "authors": {"warmup_epochs": 0, "train_student_in_phase1": False},
    }
    _config_fields = {
        "ted_lambda": "lambda_distill",
        "warmup_epochs": "warmup_epochs",
        "train_student_in_phase1": "train_student_in_phase1",
        "filter_channels": "filter_channels",
    }

    def __post_init__(self) -> None:
        _check_filter_knobs(self, "TED()")

    def schedule(self, cfg: Any) -> dict[str, Any]:
        """Unset: the filter stage (``warmup_epochs``) is epochs // 6 epochs, at least 1."""
        return {"warmup_epochs": max(1, cfg.epochs // 6)} if self.warmup_epochs is None else {}

    def build(self, teacher, student, n_classes, cfg) -> nn.ModuleDict:
        return _filters(teacher, student, n_classes, self.filter_channels, extra="shead")

    def phase(self, epoch: int, cfg: Any) -> str:
        return "warmup" if epoch < self.warmup_epochs else "train"

    def trains(self, phase: str, cfg: Any) -> tuple[tuple[str, ...], bool]:
        """Stage 1 trains both filters and heads (and, with ``train_student_in_phase1``, the student on
        the task loss); stage 2 the student and its filter."""
        if phase == "warmup":
            return ("ft", "head", "fs", "shead"), bool(self.train_student_in_phase1)
        return ("fs",), True

    def terms(self, phase: str, cfg: Any, modules: nn.ModuleDict, step: Step) -> dict[str, torch.Tensor]:
        pairs = list(enumerate(zip(step.teacher, step.student)))
        if phase == "warmup":
            out = {
                "filters": sum(
                    F.cross_entropy(modules[f"head{k}"](_teacher_filter(modules, k, t)), step.y)
                    + F.cross_entropy(modules[f"shead{k}"](modules[f"fs{k}"](s.detach())), step.y)
                    for k, (t, s) in pairs
                )
            }
            if self.train_student_in_phase1:  # the student learns the task meanwhile (its filter on the head only)
                out["task"] = F.cross_entropy(step.logits, step.y)
            return out
        total = 0.0
        for k, (t, s) in pairs:
            with torch.no_grad():
                ft = _teacher_filter(modules, k, t)
            total = total + F.mse_loss(modules[f"fs{k}"](s), ft)
        return {"task": F.cross_entropy(step.logits, step.y), "ted": self.lambda_distill * total}


@dataclass
class RID(DistillMethod):
    """Redundant Information Distillation (arXiv 2411.07483, Algorithm 1).

    The defaults are per-element means (the authors' code), so that the terms' scale does not grow
    with channels x positions, and a student that keeps learning the task while the filters train;
    ``RID.preset("paper")`` is Algorithm 1 with the paper's CIFAR-10 settings, ``RID.preset("authors")``
    what the authors' code runs (docs/distill.md).

    Parameters
    ----------
    lambda_task, lambda_distill : float, default 1.0
        lambda_1 and lambda_2 (>= 0): the weights of the student's task loss and of the RID term.
    reduction : {"mean", "sum"}, default "mean"
        The mismatch V^2 / sigma as a per-element mean (authors' code) or summed over (c, h, w) (paper).
    sigma_penalty : {"meansq", "sumsq"}, default "meansq"
        The phase-2 penalty mean_c sigma_c^2 (authors' code) or ||sigma||^2 (paper).
    warmup_epochs : int, optional
        n_w, epochs of the heads' cross-entropy before the first cycle (None: 0).
    cycle_epochs : int, optional
        q, epochs per cycle (None: epochs // 3 of the run, at least 3).
    phase1_fraction : float, optional
        r in (0, 1): the first round(r * q) epochs of a cycle are phase 1 (None: 1/4, 1/3 of a 3-epoch cycle).
    coupling_from_cycle : int, optional
        The phase-1 coupling term from this cycle on (None: 1 without warm-up epochs, as the authors'
        code, whose first phase 1 is the warm-up; else 0).
    train_student_in_phase1 : bool, default True
        The student keeps learning the task (lambda_1 CE) in the warm-up and phase 1 (False: frozen,
        as Algorithm 1; the presets).
    filter_channels : int, optional
        Output channels of the filters (default: the student layer's).

    Examples
    --------
    >>> RID(lambda_distill=0.1).lambda_distill
    0.1
    >>> paper = RID.preset("paper")
    >>> paper.reduction, paper.sigma_penalty, paper.cycle_epochs, paper.train_student_in_phase1
    ('sum', 'sumsq', 4, False)
    >>> RID.preset("authors").lambda_distill
    10.0
    """

    lambda_task: float = 1.0
    lambda_distill: float = 1.0
    reduction: str = "mean"
    sigma_penalty: str = "meansq"
    warmup_epochs: int | None = None
    cycle_epochs: int | None = None
    phase1_fraction: float | None = None
    coupling_from_cycle: int | None = None
    train_student_in_phase1: bool = True
    filter_channels: int | None = None

    name = "rid"
    needs_layers = True
    student_modules = ("fs", "sigma")
    filter_modules = ("ft", "head")
    knobs = {"rid": "lambda_distill (or reduction='mean')"}
    schedule_knobs = ("warmup_epochs", "cycle_epochs", "phase1_fraction", "coupling_from_cycle")
    presets = {
        "paper": {
            "lambda_task": 1.0,
            "lambda_distill": 1.0,
            "reduction": "sum",
            "sigma_penalty": "sumsq",
            "warmup_epochs": 2,
            "cycle_epochs": 4,
            "phase1_fraction": 0.25,
            "coupling_from_cycle": 0,
            "train_student_in_phase1": False,
        },
        "authors": {
            "lambda_task": 1.0,
            "lambda_distill": 10.0,
            "reduction": "mean",
            "sigma_penalty": "meansq",
            "warmup_epochs": 0,
            "cycle_epochs": 4,
            "phase1_fraction": 0.25,
            "coupling_from_cycle": 1,
            "train_student_in_phase1": False,
        },
    }
    _config_fields = {
        "lambda_task": "lambda_task",
        "lambda_distill": "lambda_distill",
        "reduction": "reduction",
        "sigma_penalty": "sigma_penalty",
        "warmup_epochs": "warmup_epochs",
        "cycle_epochs": "cycle_epochs",
        "phase1_fraction": "phase1_fraction",
        "coupling_from_cycle": "coupling_from_cycle",
        "train_student_in_phase1": "train_student_in_phase1",
        "filter_channels": "filter_channels",
    }

    def __post_init__(self) -> None:
        c = "RID()"
        _check_filter_knobs(self, c)
        self.lambda_task = check_number(self.lambda_task, name="lambda_task", caller=c, kind="non-negative")
        self.reduction = check_choice(self.reduction, ["sum", "mean"], name="reduction", caller=c)
        self.sigma_penalty = check_choice(self.sigma_penalty, ["sumsq", "meansq"], name="sigma_penalty", caller=c)
        self.cycle_epochs = check_int(self.cycle_epochs, name="cycle_epochs", caller=c, minimum=1, optional=True)
        self.coupling_from_cycle = check_int(
            self.coupling_from_cycle, name="coupling_from_cycle", caller=c, minimum=0, optional=True
        )
        self.phase1_fraction = check_number(
            self.phase1_fraction, name="phase1_fraction", caller=c, kind="fraction", optional=True
        )

    def check(self, cfg: Any) -> None:
        """Every cycle must hold a phase-1 and a phase-2 epoch."""
        n1 = round(self.phase1_fraction * self.cycle_epochs)
        if 0 < n1 < self.cycle_epochs:
            return
        never = "phase 1 (the teacher filters and heads)" if n1 == 0 else "phase 2 (the student)"
        raise ValueError(
            f"fit(method='rid'): round(phase1_fraction * cycle_epochs) = round({self.phase1_fraction} * "
            f"{self.cycle_epochs}) = {n1} phase-1 epochs in every cycle of {self.cycle_epochs}, so {never} would "
            "never run. Choose RID(cycle_epochs=..., phase1_fraction=...) with 1 <= round(phase1_fraction * "
            "cycle_epochs) < cycle_epochs, e.g. cycle_epochs=4 and phase1_fraction=0.25 (cycle_epochs >= 2)."
        )

    def schedule(self, cfg: Any) -> dict[str, Any]:
        """The unset schedule knobs for a run of ``cfg.epochs`` epochs: no separate warm-up, the first
        cycle's phase-1 epochs being the heads' cross-entropy warm-up (coupling from the second cycle, as
        the authors' code), so that a short run still trains the student in most of its epochs; cycles of
        epochs // 3 epochs (at least 3) with a quarter in phase 1 (a third of a 3-epoch cycle)."""
        warmup = self.warmup_epochs if self.warmup_epochs is not None else 0
        cycle = self.cycle_epochs if self.cycle_epochs is not None else max(3, cfg.epochs // 3)
        fraction = self.phase1_fraction if self.phase1_fraction is not None else (1 / 3 if cycle == 3 else 0.25)
        coupling = self.coupling_from_cycle if self.coupling_from_cycle is not None else (1 if warmup == 0 else 0)
        out = {"warmup_epochs": warmup, "cycle_epochs": cycle, "phase1_fraction": fraction}
        return {k: v for k, v in (out | {"coupling_from_cycle": coupling}).items() if getattr(self, k) is None}

    def build(self, teacher, student, n_classes, cfg) -> nn.ModuleDict:
        return _filters(teacher, student, n_classes, self.filter_channels, extra="sigma")

    def phase(self, epoch: int, cfg: Any) -> str:
        """ "warmup", "phase1" or "phase2"; phase-1 epochs before ``coupling_from_cycle`` are "warmup"."""
        if epoch < self.warmup_epochs:
            return "warmup"
        cycle, pos = divmod(epoch - self.warmup_epochs, self.cycle_epochs)
        if pos < round(self.phase1_fraction * self.cycle_epochs):
            return "phase1" if cycle >= self.coupling_from_cycle else "warmup"
        return "phase2"

    def trains(self, phase: str, cfg: Any) -> tuple[tuple[str, ...], bool]:
        """Warm-up and phase 1 train the teacher's filter and head (and, with ``train_student_in_phase1``,
        the student on the task loss); phase 2 the student and its filter."""
        if phase in ("warmup", "phase1"):
            return ("ft", "head"), bool(self.train_student_in_phase1)
        return ("fs", "sigma"), True

    def terms(self, phase: str, cfg: Any, modules: nn.ModuleDict, step: Step) -> dict[str, torch.Tensor]:
        pairs = list(enumerate(zip(step.teacher, step.student)))
        if phase in ("warmup", "phase1"):
            total = 0.0
            for k, (t, s) in pairs:
                ft = _teacher_filter(modules, k, t)
                with torch.no_grad():  # phase 1 trains the teacher's filter and head only
                    fs = modules[f"fs{k}"](s.detach())
                    sigma = modules[f"sigma{k}"]()
                total = total + rid_phase1_loss(
                    modules[f"head{k}"](ft),
                    step.y,
                    ft,
                    fs,
                    sigma,
                    coupling=phase == "phase1",
                    reduction=self.reduction,
                )
            out = {"filters": total}
            if self.train_student_in_phase1:  # the student learns the task meanwhile (its filter stays fixed)
                out["task"] = self.lambda_task * F.cross_entropy(step.logits, step.y)
            return out
        total = 0.0
        for k, (t, s) in pairs:
            with torch.no_grad():
                ft = _teacher_filter(modules, k, t)
            total = total + rid_phase2_loss(
                ft,
                modules[f"fs{k}"](s),
                modules[f"sigma{k}"](),
                reduction=self.reduction,
                sigma_penalty=self.sigma_penalty,
            )
        return {"task": self.lambda_task * F.cross_entropy(step.logits, step.y), "rid": self.lambda_distill * total}
