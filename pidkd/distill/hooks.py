"""Capture intermediate activations of any ``nn.Module`` by module path, with forward hooks."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["capture", "module_names"]


def module_names(model: nn.Module) -> list[str]:
    """Names of every sub-module, as accepted by :func:`capture` (``model.named_modules()``)."""
    return [name for name, _ in model.named_modules() if name]


@contextmanager
def capture(model: nn.Module, layers: Sequence[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Record the outputs of the named modules during forward passes inside the block.

    The yielded dict maps each layer name to its latest output. Hooks are removed on exit, also
    when the block raises. A wrong name fails at once, listing the available names.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    >>> with capture(net, ["1"]) as acts:
    ...     _ = net(torch.zeros(5, 3))
    >>> tuple(acts["1"].shape)
    (5, 4)
    """
    if isinstance(layers, str):
        layers = [layers]
    modules = dict(model.named_modules())
    missing = [name for name in layers if name not in modules or not name]
    if missing:
        raise ValueError(
            f"capture(): no module named {missing} in {type(model).__name__}. Available names: {module_names(model)}."
        )
    out: dict[str, torch.Tensor] = {}
    handles = []
    for name in layers:

        def hook(_mod, _inp, output, name=name):
            out[name] = output

        handles.append(modules[name].register_forward_hook(hook))
    try:
        yield out
    finally:
        for h in handles:
            h.remove()
