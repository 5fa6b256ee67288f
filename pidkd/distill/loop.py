"""The epochs and steps of :func:`~pidkd.distill.fit`, with named hook points for callbacks.

:func:`run` is the whole story: for each epoch, the method names the phase and what it trains
(:func:`start_epoch`), the steps run (:func:`train_epoch`), the ranks' sums are reduced and checked
(:func:`_epoch_totals`), the student is evaluated (:func:`evaluate`), and the callbacks see the
epoch's history row. Everything else (best-model selection, probes, checkpoints, warnings) is a
:class:`~pidkd.distill.callbacks.Callback` on these hook points:

``on_fit_start(state)``
    before the first epoch (after a resumed run's state is restored);
``on_epoch_start(state)``
    ``state.epoch`` (1-based) and ``state.phase`` set, the modules in train/eval mode;
``on_step_end(state, step, terms)``
    after each optimizer step (``step`` counts from 0 in each epoch), with the step's loss terms
    (tensors on the device: reading one with ``float()`` synchronises it, so read them sparingly);
``on_epoch_end(state, row)``
    the epoch's history row complete (losses, accuracies, lr, wall time) and appended to
    ``state.rows``: a callback may add columns to it;
``on_fit_end(state)``
    after the last epoch.

Metrics accumulate on the device and are read once per epoch (no host synchronisation inside the
step loop). Under torchrun the same loop runs in every process, synchronised by the few
collectives of :mod:`pidkd.distill._distributed`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from pidkd.distill import _distributed
from pidkd.distill.config import DistillConfig
from pidkd.distill.methods import DistillMethod

if TYPE_CHECKING:
    from pidkd.distill.callbacks import Callback
    from pidkd.distill.distiller import Distiller

__all__ = ["BestEpoch", "FitState", "run"]


@dataclass
class BestEpoch:
    """The epoch of best validation accuracy so far (the earliest of ties) and the student's weights then."""

    epoch: int | None = None
    val_acc: float = -math.inf
    state: dict[str, torch.Tensor] | None = None  # the student's weights, on the CPU


@dataclass
class FitState:
    """Everything one run of :func:`~pidkd.distill.fit` trains with, built once; callbacks receive it.

    The first group is what a callback usually reads: the method and the loop settings, the models,
    the optimizers, the history rows so far, the epoch running (1-based; 0 before the first) and
    its phase, and the best epoch so far. The second group is how the loop feeds the steps.
    """

    method: DistillMethod
    config: DistillConfig
    teacher: nn.Module
    student: nn.Module
    modules: nn.ModuleDict
    device: torch.device
    optimizer: torch.optim.Optimizer  # the student's (and the method's student_modules')
    filter_optimizer: torch.optim.Optimizer | None  # the method's filter_modules', if any
    scheduler: torch.optim.lr_scheduler.MultiStepLR
    generator: torch.Generator  # the training data's shuffles
    teacher_layers: list[str]
    student_layers: list[str]
    labels: torch.Tensor  # all training labels (a DataLoader: its first batch's)
    distiller: Distiller  # the step: capture, method modules, phases, optimizer steps (the same objects as above)
    ddp: _distributed.Dist = field(default_factory=_distributed.Dist)
    rows: list[dict[str, Any]] = field(default_factory=list)
    epoch: int = 0
    phase: str = ""
    best: BestEpoch = field(default_factory=BestEpoch)
    # how the loop feeds the steps
    train: Iterable[Any] = ()
    val: Iterable[Any] | None = None
    test: Iterable[Any] | None = None
    val_ddp: _distributed.Dist | None = None  # set: each rank evaluates its shard and the counts are summed
    test_ddp: _distributed.Dist | None = None
    sampler: Any = None  # the DistributedSampler of the training data (several processes)
    cached: bool = False  # the training batches carry the teacher's cached outputs (logits, layers)
    progress: Any = None  # tqdm, when the run shows progress
    start_time: float = 0.0  # time.perf_counter() at the start (of the first run, when resumed)


def run(state: FitState, callbacks: Sequence[Callback]) -> list[dict[str, Any]]:
    """Train ``state`` from ``state.epoch`` (epochs done) to ``config.epochs``; returns the history rows."""
    for cb in callbacks:
        cb.on_fit_start(state)
    for epoch in range(state.epoch, state.config.epochs):
        opts, train_student = start_epoch(state, epoch)
        for cb in callbacks:
            cb.on_epoch_start(state)
        lr = opts[0].param_groups[0]["lr"]  # the rate this epoch runs at (the history's lr column)
        row = train_epoch(state, opts, train_student, callbacks)
        row["lr"] = lr
        row["wall_time"] = time.perf_counter() - state.start_time
        state.rows.append(row)
        for cb in callbacks:
            cb.on_epoch_end(state, row)
        if state.progress:
            state.progress.write(
                f"epoch {epoch + 1} [{state.phase}] "
                + " ".join(f"{k}={v:.4g}" for k, v in row.items() if k.startswith(("loss", "train", "val")))
            )
    for cb in callbacks:
        cb.on_fit_end(state)
    if state.ddp.active:  # rank 0's rows (its wall times and probe columns) on every rank
        state.rows = state.ddp.broadcast_object(state.rows, state.device)
    return state.rows


def start_epoch(state: FitState, epoch: int) -> tuple[list[torch.optim.Optimizer], bool]:
    """Set ``state.epoch`` and ``state.phase`` (the Distiller's :meth:`~pidkd.distill.Distiller.start_epoch`:
    the modules in train or eval mode), and return the optimizers the phase steps and whether it trains
    the student."""
    if state.sampler is not None:
        state.sampler.set_epoch(epoch)  # each epoch its own shuffle, the same on every rank and on resume
    phase = state.distiller.start_epoch(epoch)
    state.epoch, state.phase = epoch + 1, phase.name
    return state.distiller.phase_optimizers, phase.student


def train_epoch(
    state: FitState, opts: list[torch.optim.Optimizer], train_student: bool, callbacks: Sequence[Callback]
) -> dict[str, Any]:
    """The steps of one epoch; returns its history row so far (epoch, phase, losses, accuracies)."""
    distiller, cfg, dev, ddp, phase = state.distiller, state.config, state.device, state.ddp, state.phase
    # A parameter both optimizers hold (TED's student filter) is clipped, averaged and stepped once,
    # by the filters' optimizer, when a phase steps both.
    params, _ = distiller._phase_split()
    synced = [p_ for ps in params for p_ in ps] if ddp.active else []
    sums: dict[str, torch.Tensor] = {}
    correct = torch.zeros((), device=dev)
    count = torch.zeros((), device=dev)
    bad_step = torch.full((), -1, device=dev, dtype=torch.long)
    step = -1
    batches = (
        state.progress(state.train, desc=f"epoch {state.epoch}/{cfg.epochs} [{phase}]", leave=False)
        if state.progress
        else state.train
    )
    for step, batch in enumerate(batches):
        cached = None
        if state.cached:
            x, y, *cached = batch
        else:
            x, y = batch
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True).long()  # int32 labels too
        terms = distiller(x, y, teacher_outputs=cached)
        loss = terms.pop("loss")
        for o in opts:
            o.zero_grad(set_to_none=True)
        loss.backward()
        if ddp.active:  # one all-reduce: the mean gradient over the ranks, as DDP
            _distributed.average_gradients_(synced, ddp.world)
        distiller.optimizer_step()
        for name, v in terms.items():
            sums[name] = sums.get(name, torch.zeros((), device=dev)) + v.detach().float()
        bad_step = torch.where((bad_step < 0) & ~torch.isfinite(loss.detach()), step, bad_step)
        correct += (distiller.last_step.logits.detach().argmax(1) == y).sum()
        count += y.numel()
        for cb in callbacks:
            cb.on_step_end(state, step, terms)
    if step < 0:
        raise ValueError(f"fit(): train_data gave no batches in epoch {state.epoch}.")
    distiller.end_epoch()  # the learning-rate schedule, in the epochs that train the student
    row = _epoch_row(state, sums, correct, count, bad_step, step + 1)
    if ddp.active:  # BatchNorm statistics: rank 0's on every rank, as DDP's broadcast_buffers
        buffers = [*state.student.buffers(), *state.modules.buffers()]
        if buffers:
            _distributed.broadcast_(buffers)
    evaluate(state, row)
    return row


def _epoch_row(
    state: FitState,
    sums: dict[str, torch.Tensor],
    correct: torch.Tensor,
    count: torch.Tensor,
    bad_step: torch.Tensor,
    n_steps: int,
) -> dict[str, Any]:
    """The epoch's row (epoch, phase, mean loss terms, train_acc) from the device sums, summed over the ranks;
    ``FloatingPointError`` at a non-finite step."""
    if state.ddp.active:  # one collective: every rank's history row holds the sums over all ranks
        sums, correct, count, bad_step, n_steps = _reduce_epoch(state.ddp, sums, correct, count, bad_step, n_steps)
    # One host synchronisation per epoch: the first bad step, the accuracy and the loss sums at once.
    bad, acc, *totals = torch.stack(
        [bad_step.double(), (correct / count).double(), *(v.double() for v in sums.values())]
    ).tolist()
    totals = dict(zip(sums, totals))
    if bad >= 0:
        bad_terms = [k for k, v in totals.items() if not math.isfinite(v)]
        raise FloatingPointError(
            f"fit(method={state.method.name!r}): non-finite loss at epoch {state.epoch}, step {int(bad) + 1} "
            f"(phase {state.phase}; non-finite terms: {bad_terms}). Lower the learning rate, enable grad_clip, or "
            "check the inputs for NaN."
        )
    row: dict[str, Any] = {"epoch": state.epoch, "phase": state.phase}
    row.update({f"loss_{k}": v / n_steps for k, v in totals.items()})
    row["train_acc"] = acc
    return row


def _reduce_epoch(
    ddp: _distributed.Dist,
    sums: dict[str, torch.Tensor],
    correct: torch.Tensor,
    count: torch.Tensor,
    bad_step: torch.Tensor,
    n_steps: int,
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """The epoch's metrics summed over the ranks with one collective (the first non-finite step of any rank)."""
    mine = torch.stack(
        [*(v.double() for v in sums.values()), correct.double(), count.double(), bad_step.double()]
        + [torch.tensor(float(n_steps), device=correct.device, dtype=torch.float64)]
    )
    every = ddp.all_gather(mine)
    total = every.sum(0)
    bad = every[:, -2]
    first_bad = bad[bad >= 0].min() if bool((bad >= 0).any()) else bad.new_tensor(-1.0)
    reduced = dict(zip(sums, total[: len(sums)]))
    return reduced, total[-4], total[-3], first_bad.long(), int(total[-1])


def evaluate(state: FitState, row: dict[str, Any]) -> None:
    """Add the student's validation accuracy (NaN without ``val_data``) and test accuracy to ``row``."""
    row["val_acc"] = math.nan
    if state.val is not None:
        row["val_acc"] = accuracy(state.student, state.val, state.device, state.val_ddp)
    if state.test is not None:  # reported, never used to select
        row["test_acc"] = accuracy(state.student, state.test, state.device, state.test_ddp)


@torch.no_grad()
def accuracy(model: nn.Module, data: Iterable[Any], dev: torch.device, ddp: _distributed.Dist | None = None) -> float:
    """Accuracy of ``model`` on ``data``; with ``ddp``, ``data`` is this rank's shard and the counts are summed."""
    was = model.training
    model.eval()
    correct = torch.zeros((), device=dev)
    count = 0
    for x, y in data:
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        correct += (model(x).argmax(1) == y).sum()
        count += y.numel()
    model.train(was)
    if ddp is not None:
        both = ddp.all_sum(torch.stack([correct.double(), torch.tensor(float(count), device=dev, dtype=torch.float64)]))
        return float(both[0]) / max(float(both[1]), 1.0)
    return float(correct) / max(count, 1)
