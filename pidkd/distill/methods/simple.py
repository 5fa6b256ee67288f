"""The plain student (the paper's BAS) and Hinton's knowledge distillation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pidkd._validation import check_number
from pidkd.distill.losses import kd_loss
from pidkd.distill.methods.base import DistillMethod, Step

__all__ = ["KD", "Student"]


@dataclass
class Student(DistillMethod):
    """The task loss only: cross-entropy of the student's logits (no knobs; the teacher is not run).

    Examples
    --------
    >>> Student(), Student().settings()
    (Student(), {})
    """

    name = "student"
    uses_teacher = False

    def terms(self, phase: str, cfg: Any, modules: nn.ModuleDict, step: Step) -> dict[str, torch.Tensor]:
        return {"task": F.cross_entropy(step.logits, step.y)}


@dataclass
class KD(DistillMethod):
    """Hinton et al. (2015): (1 - alpha) CE + alpha T^2 KL(teacher / T || student / T).

    Parameters
    ----------
    alpha : float, default 0.5
        Weight of the soft-target term, in [0, 1] (the task loss has 1 - alpha).
    temperature : float, default 4.0
        Softening temperature T > 0 of both distributions.

    Examples
    --------
    >>> KD(alpha=0.7)
    KD(alpha=0.7, temperature=4.0)
    >>> KD.preset("paper").alpha
    0.9
    """

    alpha: float = 0.5
    temperature: float = 4.0

    name = "kd"
    same_logits = True
    knobs = {"kd": "alpha (or temperature)"}
    presets = {"paper": {"alpha": 0.9}, "authors": {"alpha": 0.9}}
    _config_fields = {"kd_alpha": "alpha", "kd_temperature": "temperature"}

    def __post_init__(self) -> None:
        self.alpha = check_number(self.alpha, name="alpha", caller="KD()", kind="probability")
        self.temperature = check_number(self.temperature, name="temperature", caller="KD()", kind="positive")

    def terms(self, phase: str, cfg: Any, modules: nn.ModuleDict, step: Step) -> dict[str, torch.Tensor]:
        return {
            "task": (1 - self.alpha) * F.cross_entropy(step.logits, step.y),
            "kd": self.alpha * kd_loss(step.logits, step.teacher_logits, temperature=self.temperature),
        }
