"""Nuisance teachers for experiments: an untrained copy, and features corrupted with noise.

The RID paper's nuisance teacher is the teacher architecture with random weights (eval mode).
The authors' code also has a corruption that replaces or adds N(0, std^2) noise to the bottom
fraction of rows of every teacher feature map (never used in a reported result).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["noisy_copy", "untrained_copy"]


def untrained_copy(model: nn.Module, *, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with every resettable layer re-initialised (seeded), in eval mode.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Linear(3, 2)
    >>> bool(torch.equal(untrained_copy(net).weight, net.weight))
    False
    """
    out = copy.deepcopy(model)
    gen_state = torch.get_rng_state()
    torch.manual_seed(seed)
    try:
        for m in out.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
    finally:
        torch.set_rng_state(gen_state)
    return out.eval()


def noisy_copy(
    model: nn.Module,
    layers: Sequence[str],
    *,
    fraction: float = 0.5,
    std: float = 1.0,
    mode: str = "replace",
    seed: int = 0,
) -> nn.Module:
    """A copy of ``model`` whose named layers output features with noise in their bottom rows.

    For a feature map (N, C, H, W) the last ``round(fraction * H)`` rows are replaced by (``mode=
    "replace"``) or added to (``"add"``) N(0, std^2) noise; for a sequence (N, C, L) the last
    ``round(fraction * L)`` positions; for a vector (N, D) the last ``round(fraction * D)`` entries.
    The noise is drawn from a generator seeded with ``seed``.
    """
    if not 0 <= fraction <= 1:
        raise ValueError(f"The 'fraction' parameter of noisy_copy() must be in [0, 1]. Got {fraction!r} instead.")
    if mode not in ("replace", "add"):
        raise ValueError(
            f"The 'mode' parameter of noisy_copy() must be one of ['add', 'replace']. Got {mode!r} instead."
        )
    out = copy.deepcopy(model)
    modules = dict(out.named_modules())
    missing = [name for name in layers if name not in modules]
    if missing:
        raise ValueError(f"noisy_copy(): no module named {missing}. Available names: {[n for n in modules if n]}.")
    gens: dict[torch.device, torch.Generator] = {}

    def hook(_mod, _inp, output):
        dev = output.device
        if dev not in gens:
            gens[dev] = torch.Generator(device=dev).manual_seed(seed)
        axis = 2 if output.dim() >= 3 else 1  # rows of an image, positions of a sequence
        k = round(fraction * output.shape[axis])
        if k == 0:
            return output
        out_ = output.clone()
        tail = out_.narrow(axis, output.shape[axis] - k, k)
        noise = torch.randn(tail.shape, generator=gens[dev], device=dev, dtype=output.dtype) * std
        tail.copy_(noise if mode == "replace" else tail + noise)
        return out_

    for name in layers:
        modules[name].register_forward_hook(hook)
    return out.eval()
