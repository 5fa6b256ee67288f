"""Callbacks: what :func:`~pidkd.distill.fit` does around the training loop, and what a user adds to it.

:class:`Callback` has one no-op method per hook point of :mod:`pidkd.distill.loop`; a subclass
overrides the ones it needs. ``fit`` runs its own callbacks first, then the user's
(``fit(callbacks=[...])``), then the ones that must see the finished row or run:

- :class:`LossScaleWarning`: a distillation term far larger than the task loss;
- :class:`BestModel`: the epoch of best validation accuracy and the student's weights then;
- :class:`Probes`: live PID measurements (:class:`~pidkd.distill.PIDProbe`) added to the rows;
- the user's callbacks;
- :class:`Checkpoints`: the run's state every ``checkpoint_every`` epochs;
- :class:`LearnedNothingWarning`: a student no better than the majority label at the end.
"""

from __future__ import annotations

import math
import sys
import warnings
from pathlib import Path
from typing import Any

import torch

from pidkd.distill.checkpoints import save_checkpoint
from pidkd.distill.loop import BestEpoch, FitState
from pidkd.distill.methods import DistillMethod
from pidkd.distill.probes import ProbeRunner

__all__ = [
    "CHANCE_MARGIN",
    "LEARNED_NOTHING_EPOCHS",
    "LOSS_SCALE_LIMIT",
    "BestModel",
    "Callback",
    "Checkpoints",
    "LearnedNothingWarning",
    "LossScaleWarning",
    "Probes",
    "warn_learned_nothing",
]

#: LossScaleWarning: a distillation term's epoch mean above this multiple of the task loss's.
LOSS_SCALE_LIMIT = 100.0
#: The student "learned nothing" when, after a run of at least LEARNED_NOTHING_EPOCHS epochs, its last
#: epoch's validation accuracy (training accuracy without val_data) is at most CHANCE_MARGIN above the
#: frequency of the most frequent training label (what a constant prediction scores).
CHANCE_MARGIN = 0.02
LEARNED_NOTHING_EPOCHS = 3


class Callback:
    """Code run at the hook points of :func:`~pidkd.distill.fit`'s loop; every hook does nothing here.

    Subclass it and override the hooks you need; pass instances as ``fit(callbacks=[...])``. Each
    hook receives the run's :class:`~pidkd.distill.loop.FitState` (the method, the configuration,
    the models, the optimizers, ``rows`` so far, the running ``epoch`` (1-based) and ``phase``,
    ``best``). ``on_epoch_end`` receives the epoch's history row, a dict: the columns a callback
    adds to it are columns of ``FitResult.history``. Under torchrun every rank runs the callbacks;
    ``state.ddp.main`` is True on rank 0 alone, whose rows every rank returns.

    Examples
    --------
    A callback that records the train loss of every epoch and adds a column to the history:

    >>> import torch
    >>> from torch import nn
    >>> from pidkd.distill import DistillConfig, fit
    >>> class Record(Callback):
    ...     def __init__(self):
    ...         self.seen = []
    ...
    ...     def on_epoch_end(self, state, row):
    ...         self.seen.append((row["epoch"], round(row["loss_task"], 2) > 0))
    ...         row["lr_times_10"] = 10 * row["lr"]
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    >>> record = Record()
    >>> result = fit(nn.Linear(4, 2), nn.Linear(4, 2), (x, y), method="student",
    ...              config=DistillConfig(epochs=2, progress=False), callbacks=[record], device="cpu")
    >>> record.seen
    [(1, True), (2, True)]
    >>> result.history["lr_times_10"].tolist()
    [0.5, 0.5]
    """

    def on_fit_start(self, state: FitState) -> None:
        """Before the first epoch (a resumed run: after its state is restored; ``state.epoch`` epochs done)."""

    def on_epoch_start(self, state: FitState) -> None:
        """At the start of epoch ``state.epoch`` (1-based), of phase ``state.phase``."""

    def on_step_end(self, state: FitState, step: int, terms: dict[str, torch.Tensor]) -> None:
        """After the optimizer step ``step`` (from 0 in each epoch); ``terms``: its loss terms, on the device."""

    def on_epoch_end(self, state: FitState, row: dict[str, Any]) -> None:
        """After epoch ``row["epoch"]``: ``row`` is its history row (already in ``state.rows``); add columns to it."""

    def on_fit_end(self, state: FitState) -> None:
        """After the last epoch (not when training raises)."""


def _warn(message: str) -> None:
    """Warn at the caller of :func:`~pidkd.distill.fit`: the first frame outside the pidkd.distill package."""
    here = str(Path(__file__).parent)
    frame, level = sys._getframe(0), 1
    while frame is not None and str(Path(frame.f_code.co_filename).parent) == here:
        frame, level = frame.f_back, level + 1
    warnings.warn(message, stacklevel=level)


class LossScaleWarning(Callback):
    """Warn once per term when a distillation term's mean over the first epoch of a phase (in this run)
    exceeds :data:`LOSS_SCALE_LIMIT` times the task loss's (on rank 0)."""

    def __init__(self) -> None:
        self.seen_phases: set[str] = set()
        self.warned: set[str] = set()

    def on_epoch_end(self, state: FitState, row: dict[str, Any]) -> None:
        if row["phase"] in self.seen_phases:
            return
        self.seen_phases.add(row["phase"])  # the first epoch of this phase in this run
        task = row.get("loss_task")
        if not state.ddp.main or task is None or not task > 0:
            return
        method = state.method
        for key, value in row.items():
            term = key[5:]
            if not key.startswith("loss_") or term == "task" or term in self.warned:
                continue
            if not value > LOSS_SCALE_LIMIT * task:
                continue
            self.warned.add(term)
            knob = method.knobs.get(term, f"weight of the {term!r} term in {type(method).__name__}.terms()")
            _warn(
                f"fit(method={method.name!r}): the {term!r} loss term averaged {value:.4g} over epoch "
                f"{row['epoch']}, {value / task:.0f}x the task loss ({task:.4g}); a distillation term that large "
                f"swamps the task and often collapses the student. Lower {type(method).__name__}'s {knob}."
            )


class BestModel(Callback):
    """Keep ``state.best``: the epoch of best validation accuracy (the earliest of ties) and the student's
    weights then, on the CPU (with ``val_data`` only; ``test_data`` never selects)."""

    def on_epoch_end(self, state: FitState, row: dict[str, Any]) -> None:
        if state.val is not None and row["val_acc"] > state.best.val_acc:
            weights = {k: v.detach().to("cpu", copy=True) for k, v in state.student.state_dict().items()}
            state.best = BestEpoch(epoch=row["epoch"], val_acc=row["val_acc"], state=weights)


class Probes(Callback):
    """Run :class:`~pidkd.distill.PIDProbe` measurements into the rows (rank 0 only).

    The training thread captures the probe set's activations at the end of an epoch; the PID
    analysis runs in a worker while training goes on, and its columns are complete before a
    checkpoint is written and when the run ends. :meth:`close` stops the worker (``fit`` calls it
    also when training raises).
    """

    def __init__(self, probes: list[Any], teacher_layers: list[str], student_layers: list[str]) -> None:
        self.runner = ProbeRunner(probes, teacher_layers, student_layers)

    def on_epoch_end(self, state: FitState, row: dict[str, Any]) -> None:
        self.runner.run(row["epoch"], row, state.teacher, state.student, state.modules, state.device)
        self.runner.collect(wait=False)
        every = state.config.checkpoint_every
        if every and row["epoch"] % every == 0:
            self.runner.collect(wait=True)  # a checkpoint holds complete rows

    def on_fit_end(self, state: FitState) -> None:
        self.runner.collect(wait=True)

    def close(self) -> None:
        """Stop the analysis worker."""
        self.runner.close()


class Checkpoints(Callback):
    """Write the run's state every ``config.checkpoint_every`` epochs (rank 0; the other ranks wait for the
    file), as :func:`~pidkd.distill.checkpoints.save_checkpoint`."""

    def on_epoch_end(self, state: FitState, row: dict[str, Any]) -> None:
        every = state.config.checkpoint_every
        if not every or row["epoch"] % every:
            return
        if state.ddp.main:
            save_checkpoint(state, row["epoch"], state.rows)
        if state.ddp.active:
            state.ddp.barrier()  # the other ranks go on once the file is there


class LearnedNothingWarning(Callback):
    """Warn (on rank 0) when the student ends a run no better than predicting the most frequent label (the
    defaults benchmark met a student whose ReLUs died: docs/distill.md). ``state.labels``: all training
    labels, or the first batch's for a DataLoader (an estimate of the label frequencies)."""

    def on_fit_end(self, state: FitState) -> None:
        if state.ddp.main:
            warn_learned_nothing(state.method, state.rows, state.labels)


def warn_learned_nothing(method: DistillMethod, rows: list[dict[str, Any]], labels: torch.Tensor) -> None:
    """The check of :class:`LearnedNothingWarning` on the history ``rows`` of a run and its training ``labels``."""
    if len(rows) < LEARNED_NOTHING_EPOCHS or labels.numel() == 0:
        return
    majority = float(torch.bincount(labels.detach().flatten().long().cpu()).max()) / labels.numel()
    which = "validation" if math.isfinite(rows[-1]["val_acc"]) else "training"
    acc = rows[-1]["val_acc" if which == "validation" else "train_acc"]
    if not acc <= majority + CHANCE_MARGIN:
        return
    best = max((r["val_acc"] for r in rows if math.isfinite(r["val_acc"])), default=math.nan)
    lost = (
        f" It had learned before (best validation accuracy {best:.3f}; FitResult.best_student() returns that student)."
        if best > majority + CHANCE_MARGIN
        else ""
    )
    knob = next(iter(method.knobs.values()), None)
    advice = (
        f"Compare method='student' on the same seed: if it learns, lower {type(method).__name__}'s {knob} or "
        "try another seed."
        if knob
        else "Try another seed or a lower learning rate, and check that the labels belong to the inputs."
    )
    _warn(
        f"fit(method={method.name!r}): after {rows[-1]['epoch']} epochs the student's {which} accuracy is "
        f"{acc:.3f}, no better than always predicting the most frequent label ({majority:.3f}): it knows "
        f"nothing.{lost} A student that starts on a plateau can lose its last active ReLUs before the task "
        f"moves it, to a distillation term or to a large step. {advice}"
    )
