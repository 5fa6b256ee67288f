"""Variational information distillation (Ahn et al., CVPR 2019)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pidkd._validation import check_number
from pidkd.distill.filters import VIDRegressor, to_module_dtype
from pidkd.distill.losses import vid_loss
from pidkd.distill.methods.base import DistillMethod, Step, check_pairs

__all__ = ["VID"]


@dataclass
class VID(DistillMethod):
    """CE + lambda_distill sum_k 0.5 mean(log v + (T - mu(S))^2 / v), a regressor mu and variances v per pair.

    Parameters
    ----------
    lambda_distill : float, default 1.0
        Weight (>= 0) of the VID term; the paper (and both presets) use 100.

    Examples
    --------
    >>> VID(), VID.preset("paper")
    (VID(lambda_distill=1.0), VID(lambda_distill=100.0))
    """

    lambda_distill: float = 1.0

    name = "vid"
    needs_layers = True
    knobs = {"vid": "lambda_distill"}
    presets = {"paper": {"lambda_distill": 100.0}, "authors": {"lambda_distill": 100.0}}
    _config_fields = {"vid_lambda": "lambda_distill"}

    def __post_init__(self) -> None:
        self.lambda_distill = check_number(
            self.lambda_distill, name="lambda_distill", caller="VID()", kind="non-negative"
        )

    def build(
        self, teacher: list[torch.Tensor], student: list[torch.Tensor], n_classes: int, cfg: Any
    ) -> nn.ModuleDict:
        """A regressor per layer pair, in the student layers' floating dtype (float32 if not floating)."""
        dims = check_pairs(teacher, student)
        mods = nn.ModuleDict(
            {
                f"vid{k}": VIDRegressor(s.shape[1], t.shape[1], spatial=d)
                for k, (t, s, d) in enumerate(zip(teacher, student, dims))
            }
        )
        return mods.to(student[0].dtype) if student and student[0].is_floating_point() else mods

    def terms(self, phase: str, cfg: Any, modules: nn.ModuleDict, step: Step) -> dict[str, torch.Tensor]:
        total = 0.0
        for k, (t, s) in enumerate(zip(step.teacher, step.student)):
            vid = modules[f"vid{k}"]
            total = total + vid_loss(to_module_dtype(t, vid), vid(s), vid.variance)
        return {"task": F.cross_entropy(step.logits, step.y), "vid": self.lambda_distill * total}
