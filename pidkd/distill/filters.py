"""RID's teacher and student filters, the teacher-filter heads, and VID's regressor.

Filters act on a layer's output: a feature map (N, C, H, W) through 1x1 convolutions, a sequence
(N, C, L) through width-1 1-d convolutions, or a vector (N, C) through linear maps (the same thing
per position). ``spatial`` says which: True (maps, the default), False (vectors), or the number of
trailing spatial axes (0 to 3). Following the RID paper (arXiv 2411.07483, Section 4): filter =
two 1x1 convolutions with BatchNorm + ReLU between.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Head", "StudentFilter", "TeacherFilter", "VIDRegressor"]


_KIND = ("(N, C) vectors", "(N, C, L) sequences", "(N, C, H, W) feature maps", "(N, C, D, H, W) volumes")


def _dims(spatial: bool | int) -> int:
    """Number of spatial axes: True -> 2, False -> 0, or an int in [0, 3]."""
    dims = 2 if spatial is True else 0 if spatial is False else spatial
    if not isinstance(dims, int) or not 0 <= dims <= 3:
        raise ValueError(f"The 'spatial' parameter must be a bool or an int in [0, 3]. Got {spatial!r} instead.")
    return dims


def to_module_dtype(x: torch.Tensor, module: nn.Module) -> torch.Tensor:
    """``x`` in the dtype of ``module``'s parameters: teacher activations fed to the method's filters, which
    are built in the student's dtype (under autocast, bf16 activations return to the filters' float32)."""
    return x.to(next(module.parameters()).dtype)


class _MatmulOnCPU:
    """A bias-free 1x1 convolution computed on the CPU as a batched matrix product.

    oneDNN's fixed cost per call dominates the filters' small pointwise convolutions: on the digits
    example's shapes (batch 64, 8x8 maps, 8-32 channels) a filter's forward and backward pass takes
    1.2-1.3 ms through the convolutions and 0.6-0.7 ms through ``bmm`` (benchmarks/bench_distill.py).
    Same parameters, initialisation and state-dict keys as the convolution; on other devices (cuDNN)
    the convolution runs unchanged.
    """

    weight: torch.Tensor
    out_channels: int

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu":
            return super().forward(x)  # type: ignore[misc]
        n, c = x.shape[:2]
        w = self.weight.view(self.out_channels, c).expand(n, -1, -1)  # bmm: no copies, contiguous output
        return torch.bmm(w, x.reshape(n, c, -1)).view(n, self.out_channels, *x.shape[2:])


class _Pointwise1d(_MatmulOnCPU, nn.Conv1d):
    pass


class _Pointwise2d(_MatmulOnCPU, nn.Conv2d):
    pass


class _Pointwise3d(_MatmulOnCPU, nn.Conv3d):
    pass


def _pointwise(c_in: int, c_out: int, dims: int) -> nn.Module:
    if dims == 0:
        return nn.Linear(c_in, c_out, bias=False)
    return (_Pointwise1d, _Pointwise2d, _Pointwise3d)[dims - 1](c_in, c_out, 1, bias=False)


def _norm(c: int, dims: int) -> nn.Module:
    return (nn.BatchNorm1d, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)[dims](c)


class _Pointwise(nn.Module):
    """Base of the filters: checks that inputs have the shape the module was built for."""

    dims: int

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 2 + self.dims:
            raise ValueError(
                f"{type(self).__name__} was built for {_KIND[self.dims]}; got a tensor of shape {tuple(x.shape)}. "
                "Build it with spatial=True for feature maps, False for vectors, or the number of spatial axes."
            )


class _TwoLayer(_Pointwise):
    def __init__(self, c_in: int, c_hidden: int, c_out: int, spatial: bool | int):
        super().__init__()
        self.dims = _dims(spatial)
        self.net = nn.Sequential(
            _pointwise(c_in, c_hidden, self.dims),
            _norm(c_hidden, self.dims),
            nn.ReLU(),
            _pointwise(c_hidden, c_out, self.dims),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return self.net(x)


class TeacherFilter(_TwoLayer):
    """f_t: teacher layer (C_t channels) -> C_out channels; two pointwise layers, BN + ReLU between."""

    def __init__(self, c_teacher: int, c_out: int, *, spatial: bool | int = True):
        super().__init__(c_teacher, c_out, c_out, spatial)


class StudentFilter(_TwoLayer):
    """f_s: student layer (C_s channels) -> C_out channels; hidden width 2 C_s (as the authors' code)."""

    def __init__(self, c_student: int, c_out: int, *, spatial: bool | int = True):
        super().__init__(c_student, 2 * c_student, c_out, spatial)


class Head(nn.Module):
    """g_t: ReLU, flatten, linear classifier on a teacher filter's output (lazy input size)."""

    def __init__(self, n_classes: int):
        super().__init__()
        self.fc = nn.LazyLinear(n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.relu(x), 1))


class VIDRegressor(_Pointwise):
    """VID's mu(S): three pointwise layers with BN + ReLU between, and per-channel variances.

    Ahn et al., "Variational information distillation for knowledge transfer", CVPR 2019.
    ``variance`` = softplus(b) + 1e-3 per teacher channel.
    """

    def __init__(self, c_student: int, c_teacher: int, *, spatial: bool | int = True):
        super().__init__()
        mid, self.dims = c_teacher, _dims(spatial)
        self.mu = nn.Sequential(
            _pointwise(c_student, mid, self.dims),
            _norm(mid, self.dims),
            nn.ReLU(),
            _pointwise(mid, mid, self.dims),
            _norm(mid, self.dims),
            nn.ReLU(),
            _pointwise(mid, c_teacher, self.dims),
        )
        self.b = nn.Parameter(torch.full((c_teacher,), 5.0))

    @property
    def variance(self) -> torch.Tensor:
        return F.softplus(self.b) + 1e-3

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        self._check(s)
        return self.mu(s)
