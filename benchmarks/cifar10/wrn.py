"""Wide residual networks (Zagoruyko and Komodakis 2016) for the CIFAR-10 recipe.

``wrn(depth, width)``: depth = 6n + 4; three groups of n pre-activation basic blocks with 16w, 32w
and 64w channels (strides 1, 2, 2). The group outputs are the modules ``group1``, ``group2`` and
``group3``, the layers the RID paper distils (32x32, 16x16 and 8x8 feature maps).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(c_in), nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(c_out), nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.shortcut = None if c_in == c_out and stride == 1 else nn.Conv2d(c_in, c_out, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = F.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(o)
        return skip + self.conv2(F.relu(self.bn2(self.conv1(o))))


class WRN(nn.Module):
    def __init__(self, depth: int, width: int, n_classes: int = 10):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n + 4; got {depth}.")
        n = (depth - 4) // 6
        widths = [16, 16 * width, 32 * width, 64 * width]
        self.conv = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        groups = []
        for g in range(3):
            blocks = [
                Block(widths[g] if i == 0 else widths[g + 1], widths[g + 1], (1, 2, 2)[g] if i == 0 else 1)
                for i in range(n)
            ]
            groups.append(nn.Sequential(*blocks))
        self.group1, self.group2, self.group3 = groups
        self.bn = nn.BatchNorm2d(widths[3])
        self.fc = nn.Linear(widths[3], n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.group3(self.group2(self.group1(self.conv(x))))
        return self.fc(F.adaptive_avg_pool2d(F.relu(self.bn(x)), 1).flatten(1))


def wrn(depth: int, width: int, n_classes: int = 10) -> WRN:
    return WRN(depth, width, n_classes)
