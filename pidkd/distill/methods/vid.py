"""Variational information distillation (Ahn et al., CVPR 2019)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pidkd.distill.filters import VIDRegressor
from pidkd.distill.losses import vid_loss
from pidkd.distill.methods.base import DistillMethod, Step, check_pairs

__all__ = ["VID"]


class VID(DistillMethod):
    """CE + vid_lambda sum_k 0.5 mean(log v + (T - mu(S))^2 / v), a regressor mu and variances v per pair."""

    name = "vid"
    needs_layers = True
    knobs = {"vid": "vid_lambda"}

    def build(
        self, teacher: list[torch.Tensor], student: list[torch.Tensor], n_classes: int, cfg: Any
    ) -> nn.ModuleDict:
        dims = check_pairs(teacher, student)
        return nn.ModuleDict(
            {
                f"vid{k}": VIDRegressor(s.shape[1], t.shape[1], spatial=d)
                for k, (t, s, d) in enumerate(zip(teacher, student, dims))
            }
        )

    def terms(self, phase: str, cfg: Any, modules: nn.ModuleDict, step: Step) -> dict[str, torch.Tensor]:
        pairs = enumerate(zip(step.teacher, step.student))
        total = sum(vid_loss(t.float(), modules[f"vid{k}"](s), modules[f"vid{k}"].variance) for k, (t, s) in pairs)
        return {"task": F.cross_entropy(step.logits, step.y), "vid": cfg.vid_lambda * total}
