"""TED (Liang et al. 2023) and RID (Dissanayake et al., arXiv 2411.07483): methods with task-aware filters.

RID, per distilled layer pair k: a teacher filter f_t^k with a head g_t^k, a student filter f_s^k
and per-channel sigma^k > 0. After ``warmup_epochs`` epochs of the heads' cross-entropy, training
runs in cycles of ``cycle_epochs`` epochs: the first ``round(phase1_fraction * cycle_epochs)``
train f_t and g_t (phase 1), the rest train the student, f_s and sigma (phase 2). TED: stage 1
(``warmup_epochs``) trains both filters with heads on the task (and, by default, the student on
its task loss: ``train_student_in_phase1``), stage 2 the student with CE + MSE(f_s(S), f_t(T)).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

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


def _filters(teacher, student, n_classes, cfg, extra: str) -> nn.ModuleDict:
    """Per pair f_t, g_t, f_s and ``extra`` (TED's student head "shead" or RID's "sigma"), built on the
    layers' device, with the lazy heads materialised on the batch, in the student layers' floating dtype
    (float32 for float32 models, float64 for float64 ones)."""
    mods = nn.ModuleDict()
    for k, (t, s, dims) in enumerate(zip(teacher, student, check_pairs(teacher, student))):
        c_out = cfg.filter_channels or s.shape[1]
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


class TED(DistillMethod):
    """Task-aware filters with heads on both sides (stage 1), then MSE between the filters (stage 2)."""

    name = "ted"
    needs_layers = True
    student_modules = ("fs",)
    filter_modules = ("ft", "head", "fs", "shead")
    knobs = {"ted": "ted_lambda"}

    def schedule(self, cfg: Any) -> dict[str, Any]:
        """Unset: the filter stage (``warmup_epochs``) is epochs // 6 epochs, at least 1."""
        out = super().schedule(cfg)
        if cfg.warmup_epochs is None:
            out["warmup_epochs"] = max(1, cfg.epochs // 6)
        return out

    def build(self, teacher, student, n_classes, cfg) -> nn.ModuleDict:
        return _filters(teacher, student, n_classes, cfg, extra="shead")

    def phase(self, epoch: int, cfg: Any) -> str:
        return "warmup" if epoch < cfg.warmup_epochs else "train"

    def trains(self, phase: str, cfg: Any) -> tuple[tuple[str, ...], bool]:
        """Stage 1 trains both filters and heads (and, with ``cfg.train_student_in_phase1``, the student on
        the task loss); stage 2 the student and its filter."""
        if phase == "warmup":
            return ("ft", "head", "fs", "shead"), bool(cfg.train_student_in_phase1)
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
            if cfg.train_student_in_phase1:  # the student learns the task meanwhile (its filter on the head only)
                out["task"] = F.cross_entropy(step.logits, step.y)
            return out
        total = 0.0
        for k, (t, s) in pairs:
            with torch.no_grad():
                ft = _teacher_filter(modules, k, t)
            total = total + F.mse_loss(modules[f"fs{k}"](s), ft)
        return {"task": F.cross_entropy(step.logits, step.y), "ted": cfg.ted_lambda * total}


class RID(DistillMethod):
    """Redundant Information Distillation (arXiv 2411.07483, Algorithm 1)."""

    name = "rid"
    needs_layers = True
    student_modules = ("fs", "sigma")
    filter_modules = ("ft", "head")
    knobs = {"rid": "lambda_distill (or reduction='mean')"}

    def check(self, cfg: Any) -> None:
        """Every cycle must hold a phase-1 and a phase-2 epoch."""
        n1 = round(cfg.phase1_fraction * cfg.cycle_epochs)
        if 0 < n1 < cfg.cycle_epochs:
            return
        never = "phase 1 (the teacher filters and heads)" if n1 == 0 else "phase 2 (the student)"
        raise ValueError(
            f"fit(method='rid'): round(phase1_fraction * cycle_epochs) = round({cfg.phase1_fraction} * "
            f"{cfg.cycle_epochs}) = {n1} phase-1 epochs in every cycle of {cfg.cycle_epochs}, so {never} would never "
            "run. Choose DistillConfig(cycle_epochs=..., phase1_fraction=...) with 1 <= round(phase1_fraction * "
            "cycle_epochs) < cycle_epochs, e.g. cycle_epochs=4 and phase1_fraction=0.25 (cycle_epochs >= 2)."
        )

    def schedule(self, cfg: Any) -> dict[str, Any]:
        """Unset: no separate warm-up, the first cycle's phase-1 epochs being the heads' cross-entropy
        warm-up (coupling from the second cycle, as the authors' code), so that a short run still
        trains the student in most of its epochs."""
        out = super().schedule(cfg)
        if cfg.coupling_from_cycle is None:
            out["coupling_from_cycle"] = 1 if out["warmup_epochs"] == 0 else 0
        return out

    def build(self, teacher, student, n_classes, cfg) -> nn.ModuleDict:
        return _filters(teacher, student, n_classes, cfg, extra="sigma")

    def phase(self, epoch: int, cfg: Any) -> str:
        """ "warmup", "phase1" or "phase2"; phase-1 epochs before ``coupling_from_cycle`` are "warmup"."""
        if epoch < cfg.warmup_epochs:
            return "warmup"
        cycle, pos = divmod(epoch - cfg.warmup_epochs, cfg.cycle_epochs)
        if pos < round(cfg.phase1_fraction * cfg.cycle_epochs):
            return "phase1" if cycle >= cfg.coupling_from_cycle else "warmup"
        return "phase2"

    def trains(self, phase: str, cfg: Any) -> tuple[tuple[str, ...], bool]:
        """Warm-up and phase 1 train the teacher's filter and head (and, with
        ``cfg.train_student_in_phase1``, the student on the task loss); phase 2 the student and its filter."""
        if phase in ("warmup", "phase1"):
            return ("ft", "head"), bool(cfg.train_student_in_phase1)
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
                    reduction=cfg.reduction,
                )
            out = {"filters": total}
            if cfg.train_student_in_phase1:  # the student learns the task meanwhile (its filter stays fixed)
                out["task"] = cfg.lambda_task * F.cross_entropy(step.logits, step.y)
            return out
        total = 0.0
        for k, (t, s) in pairs:
            with torch.no_grad():
                ft = _teacher_filter(modules, k, t)
            total = total + rid_phase2_loss(
                ft,
                modules[f"fs{k}"](s),
                modules[f"sigma{k}"](),
                reduction=cfg.reduction,
                sigma_penalty=cfg.sigma_penalty,
            )
        return {"task": cfg.lambda_task * F.cross_entropy(step.logits, step.y), "rid": cfg.lambda_distill * total}
