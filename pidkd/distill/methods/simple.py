"""The plain student (the paper's BAS) and Hinton's knowledge distillation."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pidkd.distill.losses import kd_loss
from pidkd.distill.methods.base import DistillMethod, Step

__all__ = ["KD", "Student"]


class Student(DistillMethod):
    """The task loss only: cross-entropy of the student's logits."""

    name = "student"
    uses_teacher = False

    def terms(self, phase: str, cfg: Any, modules: nn.ModuleDict, step: Step) -> dict[str, torch.Tensor]:
        return {"task": F.cross_entropy(step.logits, step.y)}


class KD(DistillMethod):
    """Hinton et al. (2015): (1 - alpha) CE + alpha T^2 KL(teacher / T || student / T)."""

    name = "kd"
    same_logits = True
    knobs = {"kd": "kd_alpha (or kd_temperature)"}

    def terms(self, phase: str, cfg: Any, modules: nn.ModuleDict, step: Step) -> dict[str, torch.Tensor]:
        return {
            "task": (1 - cfg.kd_alpha) * F.cross_entropy(step.logits, step.y),
            "kd": cfg.kd_alpha * kd_loss(step.logits, step.teacher_logits, temperature=cfg.kd_temperature),
        }
