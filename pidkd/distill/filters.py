"""RID's teacher and student filters, the teacher-filter heads, and VID's regressor.

Filters act on a layer's output: a feature map (N, C, H, W) through 1x1 convolutions, or a
vector (N, C) through linear maps (the same thing per position). Following the RID paper (arXiv
2411.07483, Section 4): filter = two 1x1 convolutions with BatchNorm + ReLU between.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Head", "StudentFilter", "TeacherFilter", "VIDRegressor"]


def _pointwise(c_in: int, c_out: int, spatial: bool) -> nn.Module:
    return nn.Conv2d(c_in, c_out, 1, bias=False) if spatial else nn.Linear(c_in, c_out, bias=False)


def _norm(c: int, spatial: bool) -> nn.Module:
    return nn.BatchNorm2d(c) if spatial else nn.BatchNorm1d(c)


class _TwoLayer(nn.Module):
    def __init__(self, c_in: int, c_hidden: int, c_out: int, spatial: bool):
        super().__init__()
        self.spatial = spatial
        self.net = nn.Sequential(
            _pointwise(c_in, c_hidden, spatial),
            _norm(c_hidden, spatial),
            nn.ReLU(),
            _pointwise(c_hidden, c_out, spatial),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        want = 4 if self.spatial else 2
        if x.dim() != want:
            kind = "(N, C, H, W) feature maps" if self.spatial else "(N, C) vectors"
            raise ValueError(
                f"{type(self).__name__} was built for {kind}; got a tensor of shape {tuple(x.shape)}. "
                "Build it with spatial=True for feature maps and spatial=False for vectors."
            )
        return self.net(x)


class TeacherFilter(_TwoLayer):
    """f_t: teacher layer (C_t channels) -> C_out channels; two pointwise layers, BN + ReLU between."""

    def __init__(self, c_teacher: int, c_out: int, *, spatial: bool = True):
        super().__init__(c_teacher, c_out, c_out, spatial)


class StudentFilter(_TwoLayer):
    """f_s: student layer (C_s channels) -> C_out channels; hidden width 2 C_s (as the authors' code)."""

    def __init__(self, c_student: int, c_out: int, *, spatial: bool = True):
        super().__init__(c_student, 2 * c_student, c_out, spatial)


class Head(nn.Module):
    """g_t: ReLU, flatten, linear classifier on a teacher filter's output (lazy input size)."""

    def __init__(self, n_classes: int):
        super().__init__()
        self.fc = nn.LazyLinear(n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.relu(x), 1))


class VIDRegressor(nn.Module):
    """VID's mu(S): three pointwise layers with BN + ReLU between, and per-channel variances.

    Ahn et al., "Variational information distillation for knowledge transfer", CVPR 2019.
    ``variance`` = softplus(b) + 1e-3 per teacher channel.
    """

    def __init__(self, c_student: int, c_teacher: int, *, spatial: bool = True):
        super().__init__()
        mid = c_teacher
        self.mu = nn.Sequential(
            _pointwise(c_student, mid, spatial),
            _norm(mid, spatial),
            nn.ReLU(),
            _pointwise(mid, mid, spatial),
            _norm(mid, spatial),
            nn.ReLU(),
            _pointwise(mid, c_teacher, spatial),
        )
        self.b = nn.Parameter(torch.full((c_teacher,), 5.0))

    @property
    def variance(self) -> torch.Tensor:
        return F.softplus(self.b) + 1e-3

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.mu(s)
