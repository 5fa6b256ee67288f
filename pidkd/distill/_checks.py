"""Argument and data checks of :mod:`pidkd.distill`, run before any training.

Every message names the function, the argument, what was expected and what was received, and says
what to do next: "The 'x' parameter of DistillConfig() must be ... Got ... instead."
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn


def _message(caller: str, name: str, expected: str, value: Any) -> str:
    return f"The {name!r} parameter of {caller} must be {expected}. Got {value!r} instead."


def check_module(value: Any, *, name: str, caller: str) -> nn.Module:
    """``value`` if it is an ``nn.Module``, else ``TypeError``."""
    if not isinstance(value, nn.Module):
        raise TypeError(_message(caller, name, "a torch.nn.Module", type(value).__name__))
    return value


def as_tensor_pair(data: Any, *, name: str, caller: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(inputs, labels) tensors if ``data`` is a tuple or list of two tensors or numpy arrays, else ``None``.

    Numpy arrays become tensors of the same dtype (``torch.as_tensor``). Inputs and labels must
    hold the same, non-zero number of samples (axis 0).
    """
    if not (
        isinstance(data, (tuple, list))
        and len(data) == 2
        and all(isinstance(d, (torch.Tensor, np.ndarray)) for d in data)
    ):
        return None
    x, y = (torch.as_tensor(d) for d in data)
    n_x, n_y = (len(t) if t.dim() else 0 for t in (x, y))
    if n_x != n_y or n_x == 0:
        raise ValueError(
            f"{caller} got {n_x} inputs and {n_y} labels in {name!r}; give the same, non-zero number of each."
        )
    return x, y


def describe(value: Any) -> str:
    """A short description of ``value`` for messages: its type, and its items' types for a pair."""
    if isinstance(value, (tuple, list)) and len(value) <= 4:
        return f"a {type(value).__name__} of ({', '.join(type(v).__name__ for v in value)})"
    return f"a {type(value).__name__}"


def check_batch(batch: Any, *, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The first batch of ``name`` as (inputs, labels) tensors, else ``TypeError``."""
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2 and all(isinstance(b, torch.Tensor) for b in batch)):
        raise TypeError(
            f"fit() expects {name} batches of (inputs, labels) tensors (as a DataLoader over a TensorDataset "
            f"gives); got {describe(batch)}. Wrap the data set so that each item is an (input, label) pair."
        )
    return batch[0], batch[1]


def check_labels(y: torch.Tensor, n_classes: int, *, who: str, name: str = "train_data") -> None:
    """Integer class labels in ``[0, n_classes)``, one per sample, else ``TypeError`` / ``ValueError``."""
    if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        raise TypeError(
            f"fit() expects integer class labels in {name}; got {y.dtype} labels. Give class indices as an integer "
            "tensor (labels.long()); soft or one-hot labels are not supported."
        )
    if y.dim() != 1:
        raise ValueError(
            f"fit() expects {name} labels of shape (batch,), one class index per sample; got shape {tuple(y.shape)}."
        )
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= n_classes:
        raise ValueError(
            f"fit() expects {name} labels in [0, {n_classes}) ({n_classes} = the number of logits of the {who}); "
            f"got labels from {lo} to {hi}. Give class indices 0..{n_classes - 1}, or a {who} with one logit per class."
        )


def check_logits(out: Any, *, who: str, n_samples: int) -> int:
    """The number of classes of a model's output on one batch; the output must be (batch, classes) logits."""
    if not isinstance(out, torch.Tensor):
        kind = "tuple" if isinstance(out, tuple) else "dict" if isinstance(out, Mapping) else type(out).__name__
        raise TypeError(
            f"fit(): the {who} returned a {kind}, not a tensor of logits; fit() needs models whose forward returns "
            "logits of shape (batch, classes): wrap the model so that it returns the logits only (a small nn.Module "
            "whose forward returns e.g. model(x)[0] or model(x)['logits']). Intermediate layers are captured by "
            "name with teacher_layers / student_layers."
        )
    if out.dim() != 2 or out.shape[0] != n_samples:
        raise ValueError(
            f"fit(): the {who} returned a tensor of shape {tuple(out.shape)} for a batch of {n_samples} samples; "
            "fit() needs logits of shape (batch, classes). Flatten or wrap the model's output."
        )
    return int(out.shape[1])


def check_dtypes(x: torch.Tensor, models: Mapping[str, nn.Module], *, name: str = "train_data") -> None:
    """Floating inputs and every floating parameter of the models share one dtype, else ``ValueError``.

    ``name`` says whose inputs ``x`` are (``"train_data"``, ``"val_data"``, ``"PIDProbe 'p'"``...).
    """
    if not x.is_floating_point():
        return
    for who, model in models.items():
        dtypes = sorted({p.dtype for p in model.parameters() if p.is_floating_point()} - {x.dtype}, key=str)
        if dtypes:
            raise ValueError(
                f"fit(): the {name} inputs are {x.dtype} but the {who}'s parameters are {dtypes[0]}; give the "
                f"models and the inputs one floating dtype (e.g. {who}.to({x.dtype}), or inputs.to({dtypes[0]}); "
                "numpy arrays are float64 unless made otherwise: x.astype(numpy.float32))."
            )


def check_distinct(teacher: nn.Module, student: nn.Module) -> None:
    """The teacher and the student share no parameter (the teacher is frozen, the student trained), else
    ``ValueError``."""
    shared = {id(p) for p in teacher.parameters()} & {id(p) for p in student.parameters()}
    if teacher is student or shared:
        what = "the same module" if teacher is student else f"modules that share {len(shared)} parameter tensor(s)"
        raise ValueError(
            f"fit(): the teacher and the student are {what}; fit() freezes the teacher and trains the student, so "
            "they must be separate networks. Pass a copy as the student (copy.deepcopy(teacher)) or a new model."
        )


def check_terms(terms: Any, *, method: Any, phase: str) -> None:
    """A method's loss terms of one step: a non-empty dict of str -> scalar floating tensors, one of which
    carries a gradient; else ``TypeError`` / ``ValueError`` naming the method, the phase and the term."""
    who = f"{type(method).__name__}.terms() (method {method.name!r}, phase {phase!r})"
    if not isinstance(terms, Mapping) or not terms:
        raise (ValueError if isinstance(terms, Mapping) else TypeError)(
            f"fit(): {who} must return a non-empty dict of loss terms, name -> scalar tensor (e.g. "
            f"{{'task': F.cross_entropy(step.logits, step.y)}}); it returned {describe(terms)}"
            + (" that is empty." if isinstance(terms, Mapping) else ".")
        )
    for key, value in terms.items():
        if not isinstance(key, str):
            raise TypeError(f"fit(): {who} returned a term named {key!r}; name every term with a str.")
        if not isinstance(value, torch.Tensor) or not (value.is_floating_point() and value.dim() == 0):
            got = (
                f"a {value.dtype} tensor of shape {tuple(value.shape)}"
                if isinstance(value, torch.Tensor)
                else f"a {type(value).__name__}"
            )
            raise (ValueError if isinstance(value, torch.Tensor) and value.is_floating_point() else TypeError)(
                f"fit(): {who} returned the term {key!r} as {got}; every term must be a scalar floating tensor "
                "(shape ()) computed from the step's tensors, e.g. loss.mean() or loss.sum()."
            )
    if not any(v.requires_grad for v in terms.values()):
        raise ValueError(
            f"fit(): no loss term of {who} ({list(terms)}) carries a gradient, so the step would train nothing; "
            "compute the terms from the step's student outputs or from the method's modules, not under no_grad "
            "or from detached tensors."
        )


def host_syncs(run: Callable[[], Any]) -> tuple[Any, dict[str, int]]:
    """``run()``'s result and the synchronising CUDA calls it made, counted by ``"file:line"``.

    Uses ``torch.cuda.set_sync_debug_mode("warn")`` (restored afterwards); without CUDA the count is
    empty. The GPU tests and ``benchmarks/cuda/run.py`` use it to show that :func:`fit`'s step loop
    does not wait for the device.

    Examples
    --------
    >>> host_syncs(lambda: 1 + 1)[0]
    2
    """
    if not torch.cuda.is_available():
        return run(), {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            out = run()
        finally:
            torch.cuda.set_sync_debug_mode(0)
    where: dict[str, int] = {}
    for w in caught:
        if "synchroniz" in str(w.message):
            key = f"{Path(w.filename).name}:{w.lineno}"
            where[key] = where.get(key, 0) + 1
    return out, where
