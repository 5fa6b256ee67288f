"""``fit``: one training loop for every distillation method; the method objects say what differs.

The loop (:func:`_epochs`) asks the :class:`~pidkd.distill.methods.DistillMethod` for each
epoch's phase, the modules that phase trains and the loss terms of each step; the shipped methods
(plain student, KD, VID, TED, RID) live in :mod:`pidkd.distill.methods`. The device is chosen
once; metrics accumulate on the device and are read once per epoch (no host synchronisation
inside the step loop). Under torchrun the same loop runs in every process, synchronised by the
few collectives of :mod:`pidkd.distill._distributed`.
"""

from __future__ import annotations

import copy
import math
import os
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from pidkd._optional import import_optional
from pidkd.distill import _distributed
from pidkd.distill._checks import (
    as_tensor_pair,
    check_batch,
    check_distinct,
    check_dtypes,
    check_labels,
    check_logits,
    check_module,
    check_terms,
    describe,
)
from pidkd.distill._data import TensorBatches
from pidkd.distill.checkpoints import (
    check_checkpoint_files,
    check_resume,
    load_checkpoint,
    restore_checkpoint,
    save_checkpoint,
)
from pidkd.distill.config import DistillConfig, effective_config, schedule_text
from pidkd.distill.hooks import capture
from pidkd.distill.methods import METHODS as _METHODS
from pidkd.distill.methods import DistillMethod, Step, Student, resolve
from pidkd.distill.probes import ProbeRunner, check_probes

__all__ = ["METHODS", "DistillConfig", "FitResult", "fit"]

METHODS = tuple(_METHODS)

#: ``DistillConfig(cache_teacher="auto")`` caches the teacher's outputs when they take at most this fraction of
#: the free memory of the device that holds the inputs (:func:`_cache_budget`): less on a GPU, whose free memory
#: is measured before training allocates its activations, gradients and optimizer state.
CACHE_TEACHER_FRACTION = {"cpu": 0.25, "cuda": 0.1}


@dataclass
class FitResult:
    """The trained student, the trained filters/regressors, the per-epoch history, and model selection.

    ``student`` is the student after the last epoch. With ``val_data``, the epoch of best validation
    accuracy (the earliest of ties) is ``best_epoch``, and :meth:`best_student` returns the student
    as it was then; ``test_data`` is only reported (``test_acc`` column), never used to select.
    ``method`` is the method as it ran, its knobs left unset (None) set for the run
    (``FitResult.method.cycle_epochs`` for RID).
    """

    student: nn.Module
    modules: nn.ModuleDict
    history: Any  # pandas.DataFrame
    config: DistillConfig = field(repr=False)
    best_epoch: int | None = None
    best_state: dict[str, torch.Tensor] | None = field(default=None, repr=False)
    method: DistillMethod | None = None  # the method as it ran (knobs unset in it set for the run)

    def _at(self, column: str, epoch: int | None) -> float:
        if epoch is None or column not in self.history:
            return math.nan
        return float(self.history.loc[self.history["epoch"] == epoch, column].iloc[0])

    @property
    def best_val_acc(self) -> float:
        """Validation accuracy at ``best_epoch`` (NaN without ``val_data``)."""
        return self._at("val_acc", self.best_epoch)

    @property
    def best_test_acc(self) -> float:
        """Test accuracy at ``best_epoch``, the epoch chosen on validation (NaN without both data sets)."""
        return self._at("test_acc", self.best_epoch)

    @property
    def last_val_acc(self) -> float:
        """Validation accuracy after the last epoch (NaN without ``val_data``)."""
        return self._at("val_acc", int(self.history["epoch"].iloc[-1]) if len(self.history) else None)

    @property
    def last_test_acc(self) -> float:
        """Test accuracy after the last epoch (NaN without ``test_data``)."""
        return self._at("test_acc", int(self.history["epoch"].iloc[-1]) if len(self.history) else None)

    def best_student(self) -> nn.Module:
        """A copy of the student with the weights of ``best_epoch`` (needs ``val_data``)."""
        if self.best_state is None:
            raise ValueError(
                "FitResult.best_student() needs the best-validation weights, which fit() keeps only when it is given "
                "val_data. Pass val_data=(inputs, labels) to fit(), or use FitResult.student (the last epoch)."
            )
        model = copy.deepcopy(self.student)
        model.load_state_dict(self.best_state)
        return model


def _optimizer(cfg: DistillConfig, params: list[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """The optimizer of ``cfg`` over ``params`` (one parameter group)."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay
        )
    if cfg.optimizer in ("adam", "adamw"):
        cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        return cls(params, lr=lr, weight_decay=cfg.weight_decay)
    opt = cfg.optimizer(params, lr=lr)
    if not isinstance(opt, torch.optim.Optimizer):
        raise TypeError(
            f"DistillConfig.optimizer must return a torch.optim.Optimizer; the factory returned {describe(opt)}."
        )
    return opt


def _loader(
    data: Any, batch_size: int, shuffle: bool, gen: torch.Generator | None, *, name: str, pin: bool = False
) -> tuple[Iterable[Any], torch.Tensor | None]:
    """Batches of ``data`` and, for an (inputs, labels) pair, all its labels (checked before training).

    A pair is batched by :class:`~pidkd.distill._data.TensorBatches` (index gathers on the tensors' own
    device; host batches pinned when ``pin``), with the batches and random draws of a DataLoader."""
    pair = as_tensor_pair(data, name=name, caller="fit()")
    if pair is not None:
        return TensorBatches(*pair, batch_size, shuffle, gen, pin=pin), pair[1]
    if isinstance(data, Iterable) and not isinstance(data, (str, bytes, torch.Tensor, np.ndarray)):
        return data, None
    raise TypeError(
        f"fit() expects {name} as an (inputs, labels) pair of tensors or numpy arrays (a tuple or a list of two) "
        f"or an iterable of (inputs, labels) batches (e.g. a DataLoader); got {describe(data)}."
    )


def _shard_train(
    data: Any, cfg: DistillConfig, gen: torch.Generator, ddp: _distributed.Dist
) -> tuple[Iterable[Any], torch.Tensor | None, Any]:
    """This rank's batches of the training data (several processes), its labels as :func:`_loader`, and
    the DistributedSampler, whose ``set_epoch`` the loop calls every epoch."""
    pair = as_tensor_pair(data, name="train_data", caller="fit()")
    if pair is not None:
        if cfg.batch_size % ddp.world:
            lower = cfg.batch_size - cfg.batch_size % ddp.world
            raise ValueError(
                f"fit() runs in {ddp.world} processes (torchrun), and DistillConfig.batch_size is the global batch "
                f"size, split evenly between them; {cfg.batch_size} is not divisible by {ddp.world}. Use "
                f"batch_size={max(lower, ddp.world)} or {lower + ddp.world}."
            )
        ds = torch.utils.data.TensorDataset(*pair)
        sampler = torch.utils.data.distributed.DistributedSampler(
            ds, num_replicas=ddp.world, rank=ddp.rank, shuffle=True, seed=cfg.seed
        )
        loader = torch.utils.data.DataLoader(ds, batch_size=cfg.batch_size // ddp.world, sampler=sampler, generator=gen)
        return loader, pair[1], sampler
    data, _ = _loader(data, cfg.batch_size, True, gen, name="train_data")  # refuses what is no iterable
    sampler = _distributed_sampler(data)
    how = (
        "Pass an (inputs, labels) pair, which fit() shards itself (batch_size is then the global batch size), or a "
        "DataLoader(dataset, batch_size=<per-process batch>, sampler=DistributedSampler(dataset, shuffle=True, "
        "seed=...)), built after torch.distributed.init_process_group()."
    )
    if sampler is None:
        raise ValueError(
            f"fit() runs in {ddp.world} processes (torchrun) and got train_data as {describe(data)} without a "
            f"DistributedSampler: every process would train on all of it, silently making each epoch {ddp.world} "
            f"epochs. {how}"
        )
    if (sampler.num_replicas, sampler.rank) != (ddp.world, ddp.rank):
        raise ValueError(
            f"fit(): the DistributedSampler of train_data splits the data for rank {sampler.rank} of "
            f"{sampler.num_replicas} processes, but this is rank {ddp.rank} of {ddp.world}. {how}"
        )
    return data, None, sampler


def _shard_eval(data: Any, ddp: _distributed.Dist, *, name: str) -> tuple[Any, _distributed.Dist | None]:
    """What this rank evaluates of ``data``, and ``ddp`` when the ranks' counts are to be summed.

    An (inputs, labels) pair: every ``world``-th sample from ``rank`` on (no padding), summed. A DataLoader
    with a DistributedSampler: its share, summed (the sampler's padding counts a few samples twice). Any
    other iterable: all of it on every rank, which gives every rank the same accuracy.
    """
    pair = as_tensor_pair(data, name=name, caller="fit()")
    if pair is not None:
        return (pair[0][ddp.rank :: ddp.world], pair[1][ddp.rank :: ddp.world]), ddp
    if _distributed_sampler(data) is not None:
        return data, ddp
    return data, None


def _distributed_sampler(data: Any) -> Any:
    """The DistributedSampler of a DataLoader (as its sampler or its batch sampler's), else None."""
    if not isinstance(data, torch.utils.data.DataLoader):
        return None
    samplers = (data.sampler, getattr(data.batch_sampler, "sampler", None))
    return next((s for s in samplers if isinstance(s, torch.utils.data.distributed.DistributedSampler)), None)


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


def _check_same_teacher(teacher: nn.Module, ddp: _distributed.Dist, dev: torch.device) -> None:
    """Warn (on rank 0) when the ranks hold different teachers: each would distil its own."""
    every = ddp.all_gather(_distributed.checksum([*teacher.parameters(), *teacher.buffers()], dev))
    if ddp.main and not bool((every == every[0]).all()):
        warnings.warn(
            f"fit(): the teacher's weights differ between the {ddp.world} processes, so each distils from its own "
            "teacher. Load or build the same teacher on every rank (e.g. from one file, or seeded).",
            stacklevel=4,
        )


def _device(
    teacher: nn.Module, student: nn.Module, device: str | torch.device | None, local_rank: int | None = None
) -> torch.device:
    """The training device. ``local_rank``: this process's index on its machine when there are several
    processes (each then takes the GPU of that index by default, and for ``device="cuda"``)."""
    if device is not None:
        dev = torch.device(device)
        if local_rank is not None and dev.type == "cuda" and dev.index is None:
            return torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
        return dev
    found = {p.device for m in (teacher, student) for p in m.parameters()}
    t_dev = {p.device for p in teacher.parameters()}
    s_dev = {p.device for p in student.parameters()}
    if t_dev and s_dev and t_dev != s_dev:
        raise ValueError(
            f"fit(): the teacher is on {sorted(map(str, t_dev))} and the student on {sorted(map(str, s_dev))}. "
            "Move both to one device, or pass device=... and fit() moves them."
        )
    if found and next(iter(found)).type != "cpu":
        return next(iter(found))
    if local_rank is not None and torch.cuda.is_available():  # one GPU per process: the one of its LOCAL_RANK
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def fit(
    teacher: nn.Module,
    student: nn.Module,
    train_data: Any,
    *,
    method: str | DistillMethod = "rid",
    teacher_layers: Sequence[str] = (),
    student_layers: Sequence[str] = (),
    epochs: int | None = None,
    val_data: Any = None,
    device: str | torch.device | None = None,
    config: DistillConfig | None = None,
    resume_from: str | os.PathLike[str] | None = None,
    probes: Sequence[Any] = (),
    test_data: Any = None,
) -> FitResult:
    """Train ``student`` with ``method``; the teacher stays frozen (eval mode, no gradients).

    Every argument, the first training batch and both models' outputs on it (and, in the same way,
    the validation, test and probe data) are checked before any training: a wrong argument fails at
    once with a message naming it.

    Parameters
    ----------
    teacher, student : nn.Module
        Classifiers returning logits (a tensor of shape (batch, classes); a model that returns a
        tuple or a dict must be wrapped).
    train_data, val_data, test_data
        An (inputs, labels) pair of tensors or numpy arrays, as a tuple or a list of two (batched
        with ``config.batch_size``, shuffled with a generator seeded by ``config.seed``), or an
        iterable of (inputs, labels) batches such as a DataLoader. Labels are integer class indices
        in [0, number of logits). ``val_data`` selects the best epoch (``FitResult.best_epoch``,
        :meth:`FitResult.best_student`); ``test_data`` is only measured (``test_acc`` column), so no
        number is selected on the test set.
    method : {"student", "kd", "vid", "ted", "rid"} or DistillMethod
        ``"student"``: task loss only (the paper's BAS); ``"kd"``: Hinton soft targets;
        ``"vid"``: variational information distillation; ``"ted"``: task-aware filters with heads on
        both sides (stage 1 = ``warmup_epochs``), then plain MSE between the filters; ``"rid"``:
        redundant information distillation. Or an instance of a
        :class:`~pidkd.distill.methods.DistillMethod` subclass: your own method, which the training
        loop asks what to build, which phase each epoch is, what it trains and what its loss is.
    teacher_layers, student_layers : sequence of str
        Paired layer names (``model.named_modules()``) for VID, TED and RID.
    epochs : int, optional
        Overrides ``config.epochs`` for this call (``config`` itself is not changed).
    device : str or torch.device, optional
        Default: the models' device if it is an accelerator, else CUDA when available, else CPU.
    config : DistillConfig, optional
        ``DistillConfig.preset("authors")`` reproduces the RID authors' code. Never modified:
        ``fit`` works on a checked copy, returned as ``FitResult.config``.
    resume_from : str or path, optional
        A checkpoint written with ``config.checkpoint_every``; training continues where it stopped
        with the same history and random streams (exactly, for tensor-tuple data). It is loaded
        with ``torch.load(weights_only=True)``, which runs no code from the file; a file that is
        not a pidkd checkpoint of this format version raises ``ValueError``, and so does one
        written with another teacher, other layers, another configuration or schedule, or more
        epochs than ``epochs`` (a run is never truncated).
    probes : sequence of PIDProbe
        Live PID measurements added to the history (see :class:`pidkd.distill.PIDProbe`), each
        under its own ``name`` (two probes with one name are refused). The training thread only
        runs the probe set through the networks; the PID analysis runs in a worker thread and its
        columns are complete when ``fit`` returns.

    Returns
    -------
    FitResult
        ``student`` is the model passed in, trained in place (and moved to the device), as after
        the last epoch; ``best_epoch``, ``best_val_acc``, ``best_test_acc``, ``last_val_acc`` and
        ``last_test_acc`` give both the selected and the last epoch.

    Warns
    -----
    UserWarning
        Once per term, when a distillation term's mean over the first epoch of its phase is more
        than 100 times the task loss's: the message names the term, the ratio and the weight to
        lower. When every epoch of the run is a warm-up epoch (it never distils). When the student
        ends a run of 3 or more epochs no better than predicting the most frequent label.

    Notes
    -----
    What ``fit`` does to the models passed in: both are moved to the device and stay there. The
    student is trained in place. The teacher is put in eval mode with ``requires_grad=False`` on
    every parameter while ``fit`` runs; its weights never change, and its ``requires_grad`` flags
    and the train/eval mode of each of its modules are restored when ``fit`` returns or raises.
    ``fit`` seeds torch's global random generator with ``config.seed``.

    Under ``torchrun --nproc_per_node=N`` (or in a process group initialised before the call, which
    every rank must then enter) ``fit`` trains data-parallel: each rank trains on its share of an
    (inputs, labels) pair (``config.batch_size`` is the global batch size and must be divisible by
    N) or of a DataLoader with a ``DistributedSampler``; gradients are averaged over the ranks
    every step, buffers and the epoch's metrics synchronised every epoch, so every rank returns the
    same student and history. Rank 0 alone writes checkpoints, shows progress and runs the probes
    (its history, probe columns included, is every rank's). See "Several processes" in the
    distillation guide.
    """
    pd = import_optional("pandas", purpose="fit()")
    teacher = check_module(teacher, name="teacher", caller="fit()")
    student = check_module(student, name="student", caller="fit()")
    check_distinct(teacher, student)
    cfg = effective_config(config, epochs)
    method = resolve(method, cfg).for_run(cfg)  # the knobs left unset that scale with the run, set
    t_layers = _layer_names(teacher_layers, "teacher_layers")
    s_layers = _layer_names(student_layers, "student_layers")
    if method.needs_layers and (not t_layers or len(t_layers) != len(s_layers)):
        raise ValueError(
            f"fit(method={method.name!r}) needs paired layers: teacher_layers and student_layers of equal, non-zero "
            f"length; got {t_layers} and {s_layers}."
        )
    if len(t_layers) != len(s_layers):
        raise ValueError(
            f"fit(): teacher_layers and student_layers pair up one to one; got {len(t_layers)} and {len(s_layers)}."
        )
    method.check(cfg)
    probes = check_probes(probes, teacher, student, method=method, pairs=list(zip(t_layers, s_layers)))
    state = load_checkpoint(resume_from, method.name) if resume_from is not None else None
    if state is not None:
        check_resume(state, cfg, method, teacher, t_layers, s_layers)
    check_checkpoint_files(cfg, method.name, state["epoch"] if state else 0)
    several = _distributed.world_from_env() > 1
    dev = _device(teacher, student, device, _distributed.local_rank() if several else None)
    ddp = _distributed.start(dev)  # one process: Dist() (rank 0 of 1), and nothing below synchronises
    try:
        frozen = _freeze(teacher)
        try:
            data = {"train": train_data, "val": val_data, "test": test_data}
            rows, student, mods, best = _train(
                method, cfg, teacher.to(dev), student.to(dev), data, dev, t_layers, s_layers, state, probes, ddp
            )
        finally:
            _unfreeze(teacher, frozen)
    finally:
        _distributed.stop(ddp)
    history = pd.DataFrame(rows)
    history.attrs["config"] = asdict(cfg) | {"method": method.name}
    history.attrs["method"] = {"name": method.name} | method.settings()
    return FitResult(
        student=student,
        modules=mods,
        history=history,
        config=cfg,
        best_epoch=best["epoch"],
        best_state=best["state"],
        method=method,
    )


def _layer_names(layers: Any, name: str) -> list[str]:
    names = list(layers) if isinstance(layers, Iterable) and not isinstance(layers, str) else None
    if names is None or not all(isinstance(n, str) for n in names):
        raise TypeError(
            f"The {name!r} parameter of fit() must be a sequence of module names (e.g. ['layer3']). "
            f"Got {layers!r} instead."
        )
    return names


def _freeze(model: nn.Module) -> tuple[list[bool], list[bool]]:
    """Eval mode and no gradients for ``model``; returns its flags and modes for :func:`_unfreeze`."""
    saved = [p.requires_grad for p in model.parameters()], [m.training for m in model.modules()]
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return saved


def _unfreeze(model: nn.Module, saved: tuple[list[bool], list[bool]]) -> None:
    flags, modes = saved
    for p, flag in zip(model.parameters(), flags):
        p.requires_grad_(flag)
    for m, mode in zip(model.modules(), modes):
        m.training = mode


def _first_batch(
    train: Iterable[Any],
    labels: torch.Tensor | None,
    method: DistillMethod,
    teacher: nn.Module,
    student: nn.Module,
    dev: torch.device,
    use_amp: bool,
    t_layers: list[str],
    s_layers: list[str],
    others: Sequence[tuple[str, Any, dict[str, nn.Module]]] = (),
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], Any, torch.Tensor]:
    """Run both models once on the first training batch and check it and their logits (before any training).

    Returns the captured teacher and student layers (they size the filters), the teacher's output and
    the labels checked: ``labels``, all training labels when the data is one tensor pair, else the first
    batch's. ``others``: (name, data, models) of the data that is only evaluated (validation and test
    data, the probes' sets), checked as the training data by :func:`_check_eval_data`.
    """
    try:
        batch = next(iter(train))
    except StopIteration:
        raise ValueError("fit(): train_data is empty; give at least one batch.") from None
    x0, y0 = check_batch(batch, name="train_data")
    if not use_amp:  # under autocast, matrix products cast both sides to bfloat16
        check_dtypes(x0, {"teacher": teacher, "student": student})
    x0 = x0.to(dev)
    with torch.no_grad(), capture(teacher, t_layers) as ta, capture(student, s_layers) as sa:
        t_out = teacher(x0)
        was = student.training
        student.eval()
        s_out = student(x0)
        student.train(was)
    n_student = check_logits(s_out, who="student", n_samples=len(x0))
    n_classes, who = n_student, "student"
    if not isinstance(method, Student):  # the plain student never uses the teacher's output
        n_teacher = check_logits(t_out, who="teacher", n_samples=len(x0))
        if method.same_logits and n_teacher != n_student:
            raise ValueError(
                f"fit(method={method.name!r}): the teacher gives {n_teacher} logits and the student {n_student}; KD "
                "compares their softened class distributions class by class, so both need one logit per class "
                "of the same task."
            )
        if n_teacher < n_student:
            n_classes, who = n_teacher, "teacher"
    labels = labels if labels is not None else y0
    check_labels(labels, n_classes, who=who)
    for name, data, models in others:
        _check_eval_data(data, models, name=name, n_classes=n_classes, who=who, like=x0, dev=dev)
    return ta, sa, t_out, labels


def _check_eval_data(
    data: Any,
    models: dict[str, nn.Module],
    *,
    name: str,
    n_classes: int,
    who: str,
    like: torch.Tensor,
    dev: torch.device,
) -> None:
    """Check data that is only evaluated as the training data is checked, before any training.

    ``data``: an (inputs, labels) pair (all its labels checked, the models run on its first samples) or a
    re-iterable of batches (its first batch; a one-pass iterator is left alone). Labels: as
    :func:`check_labels`; inputs: the dtype of the models (evaluation runs without autocast), and ``models``
    must run on them and give logits for ``n_classes`` classes. Draws no random numbers, changes no state.
    """
    pair = as_tensor_pair(data, name=name, caller="fit()")
    if pair is not None:
        x, y = pair[0][: len(like)], pair[1]
    else:
        if iter(data) is data:  # a one-pass iterator: taking its first batch would lose it
            return
        rng = torch.get_rng_state()  # a DataLoader's iterator draws a seed from the global generator
        try:
            batch = next(iter(data), None)
        finally:
            torch.set_rng_state(rng)
        if batch is None:
            raise ValueError(f"fit(): {name} is empty; give at least one batch of (inputs, labels), or None.")
        x, y = check_batch(batch, name=name)
    check_labels(y, n_classes, who=who, name=name)
    check_dtypes(x, models, name=name)
    for model_name, model in models.items():
        was = model.training
        model.eval()
        try:
            with torch.no_grad():
                out = model(x.to(dev))
        except (RuntimeError, ValueError, TypeError, IndexError) as err:
            reason = (str(err).strip().splitlines() or [""])[0][:200]
            raise ValueError(
                f"fit(): the {model_name} cannot run on the {name} inputs, of shape {tuple(x.shape[1:])} per sample "
                f"(train_data's: {tuple(like.shape[1:])}): {type(err).__name__}: {reason}. Give {name} inputs like "
                "train_data's."
            ) from err
        finally:
            model.train(was)
        n = check_logits(out, who=model_name, n_samples=len(x))
        if model_name == "student" and n != n_classes and who == "student":
            raise ValueError(
                f"fit(): the student gives {n} logits on the {name} inputs and {n_classes} on train_data's; give "
                f"{name} inputs like train_data's."
            )


def _train(method, cfg, teacher, student, data, dev, t_layers, s_layers, state, probes, ddp):
    """Everything of :func:`fit` after the argument checks: returns (rows, student, modules, best epoch)."""
    torch.manual_seed(cfg.seed)  # the same seed on every rank: they draw the same random numbers
    gen = torch.Generator().manual_seed(cfg.seed)
    sampler, eval_ddp = None, {"val": None, "test": None}
    pin = dev.type == "cuda"  # host batches page-locked: their copies to the GPU do not wait
    given = dict(data)  # before sharding, for the checks
    if ddp.main:
        _warn_never_distils(method, cfg)
    if ddp.active:
        train, train_labels, sampler = _shard_train(data["train"], cfg, gen, ddp)
        _check_same_lengths(ddp, data, train, dev)
        for k in ("val", "test"):
            if data[k] is not None:
                data[k], eval_ddp[k] = _shard_eval(data[k], ddp, name=f"{k}_data")
    else:
        train, train_labels = _loader(data["train"], cfg.batch_size, True, gen, name="train_data", pin=pin)
    val, test = (
        _loader(data[k], cfg.batch_size, False, None, name=f"{k}_data", pin=pin)[0] if data[k] is not None else None
        for k in ("val", "test")
    )
    use_amp = cfg.amp and dev.type == "cuda"

    # One batch sizes the filters and fails early on wrong layer names, shapes, labels or empty data.
    others = [(f"{k}_data", given[k], {"student": student}) for k in ("val", "test") if given[k] is not None]
    others += [(f"PIDProbe {p.name!r}", p.data, {"teacher": teacher, "student": student}) for p in probes]
    ta, sa, t_out, labels = _first_batch(
        train, train_labels, method, teacher, student, dev, use_amp, t_layers, s_layers, others
    )
    n_classes = 0 if isinstance(method, Student) else t_out.shape[1]  # heads predict the teacher's classes
    mods = method.build([ta[n] for n in t_layers], [sa[n] for n in s_layers], n_classes, cfg)
    if not isinstance(mods, nn.ModuleDict):
        raise TypeError(f"{type(method).__name__}.build() must return an nn.ModuleDict; got {describe(mods)}.")
    mods = mods.to(dev)

    def params_of(prefixes):
        return [p_ for name, m in mods.items() if name.startswith(prefixes) for p_ in m.parameters()]

    opt_s = _optimizer(cfg, list(student.parameters()) + params_of(method.student_modules), cfg.lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt_s, list(cfg.lr_milestones), cfg.lr_gamma)
    filter_side = method.filter_modules
    opt_t = _optimizer(cfg, params_of(filter_side), cfg.filter_lr or cfg.lr) if filter_side else None

    rows: list[dict[str, Any]] = []
    start_epoch = 0
    best: dict[str, Any] = {"epoch": None, "val_acc": -math.inf, "state": None}
    if state is not None:
        rows, start_epoch = restore_checkpoint(state, student, mods, opt_s, opt_t, sched, gen, dev)
        if state.get("best") is not None:
            best = dict(state["best"])
    if ddp.active:  # every rank starts from rank 0's student and modules
        _distributed.broadcast_([*student.parameters(), *student.buffers(), *mods.parameters(), *mods.buffers()])
        _check_same_teacher(teacher, ddp, dev)

    tqdm = import_optional("tqdm", purpose="fit(progress=True)").tqdm if cfg.progress and ddp.main else None
    start = time.perf_counter() - (rows[-1].get("wall_time", 0.0) if rows else 0.0)
    # Hooks are registered once for the whole run (not per step) and removed at the end.
    with capture(teacher, t_layers) as ta, capture(student, s_layers) as sa:
        passes = _forward_passes(teacher, student, cfg.compile)
        cache = _teacher_cache(method, cfg, train, ddp, passes["forward_teacher"], ta, t_layers, dev, use_amp, tqdm)
        if cache is not None:  # the same batches and random draws, with the teacher's outputs alongside
            train = TensorBatches(train.x, train.y, cfg.batch_size, True, gen, pin=pin, extras=cache)
        run = _Run(
            method=method,
            cfg=cfg,
            teacher=teacher,
            student=student,
            mods=mods,
            train=train,
            val=val,
            test=test,
            best=best,
            dev=dev,
            use_amp=use_amp,
            t_layers=t_layers,
            s_layers=s_layers,
            ta=ta,
            sa=sa,
            opt_s=opt_s,
            opt_t=opt_t,
            sched=sched,
            gen=gen,
            tqdm=tqdm,
            probes=ProbeRunner(probes, t_layers, s_layers) if probes and ddp.main else None,
            ddp=ddp,
            sampler=sampler,
            val_ddp=eval_ddp["val"],
            test_ddp=eval_ddp["test"],
            cached=cache is not None,
            **passes,
        )
        try:
            rows = _epochs(run, rows, start_epoch, start)
        finally:
            if run.probes is not None:
                run.probes.close()
    if ddp.main:
        _warn_learned_nothing(method, rows, labels)
    return rows, student, mods, run.best


def _warn_never_distils(method: DistillMethod, cfg: DistillConfig) -> None:
    """Warn when every epoch of the run is a warm-up epoch (RID or TED with too few epochs for their
    schedule): the distillation term never trains the student."""
    if cfg.epochs and all(method.phase(e, cfg) == "warmup" for e in range(cfg.epochs)):
        warnings.warn(
            f"fit(method={method.name!r}): all {cfg.epochs} epoch(s) of this run are warm-up epochs "
            f"({schedule_text(method)}), so the run never leaves the warm-up and the student is never distilled "
            "(at most trained on the task). Give more epochs, or a schedule whose warm-up ends within them "
            f"({type(method).__name__}(warmup_epochs=...{', coupling_from_cycle=0' if method.name == 'rid' else ''})).",
            stacklevel=4,  # the caller of fit()
        )


def _check_same_lengths(ddp: _distributed.Dist, data: dict[str, Any], train: Iterable[Any], dev: torch.device) -> None:
    """Under torchrun, before the first collective: every rank must have as many training samples and steps per
    epoch (else the ranks' gradient all-reduces stop matching and the run hangs), and as many validation and
    test samples, else ``ValueError`` on every rank."""

    def size(d: Any) -> int:
        pair = as_tensor_pair(d, name="data", caller="fit()") if d is not None else None
        if pair is not None:
            return len(pair[1])
        try:
            return len(d.dataset) if isinstance(d, torch.utils.data.DataLoader) else -1
        except TypeError:  # an IterableDataset without a length
            return -1

    try:
        steps = len(train)
    except TypeError:
        steps = -1
    names = ["train_data samples", "steps per epoch", "val_data samples", "test_data samples"]
    mine = [size(data["train"]), steps, size(data["val"]), size(data["test"])]
    every = ddp.all_gather(torch.tensor(mine, dtype=torch.int64, device=dev)).tolist()
    for i, name in enumerate(names):
        if len({row[i] for row in every}) > 1:
            counts = ", ".join(f"{row[i]} on rank {r}" for r, row in enumerate(every))
            raise ValueError(
                f"fit() runs in {ddp.world} processes (torchrun), and they have different numbers of {name}: "
                f"{counts}. Every rank must pass the same data (fit() shards an (inputs, labels) pair itself), or a "
                "DataLoader whose DistributedSampler gives every rank as many batches; otherwise the ranks wait for "
                "each other in a step some of them never take."
            )


#: The student "learned nothing" when, after a run of at least LEARNED_NOTHING_EPOCHS epochs, its last
#: epoch's validation accuracy (training accuracy without val_data) is at most CHANCE_MARGIN above the
#: frequency of the most frequent training label (what a constant prediction scores).
CHANCE_MARGIN = 0.02
LEARNED_NOTHING_EPOCHS = 3


def _warn_learned_nothing(method: DistillMethod, rows: list[dict[str, Any]], labels: torch.Tensor) -> None:
    """Warn when the student ends a run no better than predicting the most frequent label (the defaults
    benchmark met a student whose ReLUs died: docs/distill.md). ``labels``: all training labels, or the
    first batch's for a DataLoader (an estimate of the label frequencies)."""
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
        f"Compare method='student' on the same seed: if it learns, lower {type(method).__name__}'s {knob} or try "
        "another seed."
        if knob
        else "Try another seed or a lower learning rate, and check that the labels belong to the inputs."
    )
    warnings.warn(
        f"fit(method={method.name!r}): after {rows[-1]['epoch']} epochs the student's {which} accuracy is "
        f"{acc:.3f}, no better than always predicting the most frequent label ({majority:.3f}): it knows "
        f"nothing.{lost} A student that starts on a plateau can lose its last active ReLUs before the task moves "
        f"it, to a distillation term or to a large step. {advice}",
        stacklevel=4,  # the caller of fit()
    )


def _forward_passes(teacher: nn.Module, student: nn.Module, mode: bool | str) -> dict[str, Any]:
    """The teacher's and the student's forward passes: the models themselves, or their ``torch.compile``
    (the hooks that capture layers are traced with them).

    torch.compile's caches are cleared first: a teacher compiled by an earlier run, without this run's
    capture hooks, was otherwise replayed without them (torch 2.11 and 2.13: the captured layers stayed
    empty; a test repeats it)."""
    if mode is False:
        return {"forward_teacher": teacher, "forward_student": student}
    torch.compiler.reset()
    opts = {"mode": None if mode is True else mode}
    return {"forward_teacher": torch.compile(teacher, **opts), "forward_student": torch.compile(student, **opts)}


def _cache_budget(store: torch.device) -> int:
    """Bytes that ``cache_teacher="auto"`` may take on ``store``: :data:`CACHE_TEACHER_FRACTION` of its free
    memory (of 4 GiB where the free host memory cannot be read)."""
    if store.type == "cuda":
        free = torch.cuda.mem_get_info(store)[0]
    else:
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):  # no such sysconf name (macOS, Windows)
            free = 4 * 2**30
    return int(CACHE_TEACHER_FRACTION.get(store.type, CACHE_TEACHER_FRACTION["cuda"]) * free)


def _teacher_cache(method, cfg, train, ddp, forward_teacher, ta, t_layers, dev, use_amp, tqdm):
    """The teacher's logits and captured layers on every training sample, in sample order, or None when
    ``cfg.cache_teacher`` does not ask for them (or, "auto", cannot have them: a DataLoader, several
    processes, or more than :func:`_cache_budget`). Stored where the inputs are; computed in
    batches of ``cfg.batch_size`` under the steps' autocast, without drawing random numbers."""
    want = cfg.cache_teacher
    if want is False or not method.uses_teacher:
        return None
    why = None
    if ddp.active:
        why = "in several processes (torchrun)"
    elif not isinstance(train, TensorBatches):
        why = "with train_data as an iterable of batches (a DataLoader may augment, so the outputs change)"
    if why is not None:
        if want is True:
            raise ValueError(
                f"DistillConfig(cache_teacher=True) caches the teacher's outputs on an (inputs, labels) pair in one "
                f"process; fit() runs {why}. Use cache_teacher='auto' or False."
            )
        return None
    x, n, bs = train.x, len(train.y), cfg.batch_size
    store, cache = x.device, None
    to_host = store.type == "cpu" and dev.type == "cuda"  # pinned, so that the copies to the host do not wait
    starts = range(0, n, bs)
    graphs = cfg.compile == "reduce-overhead" and dev.type == "cuda"
    with torch.no_grad():
        for start in tqdm(starts, desc="caching the teacher's outputs", leave=False) if tqdm else starts:
            if graphs:
                torch.compiler.cudagraph_mark_step_begin()
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
                outs = [forward_teacher(x[start : start + bs].to(dev, non_blocking=True))]
            outs += [ta[name] for name in t_layers]
            if cache is None:  # the first batch decides whether and how the outputs are cached
                other = [type(t).__name__ for t in outs if not isinstance(t, torch.Tensor)]
                if other:
                    if want is True:
                        raise ValueError(
                            "DistillConfig(cache_teacher=True) caches tensors; the teacher's output or a captured "
                            f"teacher layer is a {other[0]}. Use cache_teacher='auto' or False."
                        )
                    return None
                size = sum(t[0].numel() * t.element_size() for t in outs) * n
                if want == "auto" and size > _cache_budget(store):
                    return None
                cache = [torch.empty((n, *t.shape[1:]), dtype=t.dtype, device=store, pin_memory=to_host) for t in outs]
            for buf, t in zip(cache, outs):
                buf[start : start + len(t)].copy_(t, non_blocking=True)
    if to_host:
        torch.cuda.current_stream(dev).synchronize()  # once: the host reads the cache from the first step on
    return cache


@dataclass
class _Run:
    """Everything the epoch loop needs, built once by :func:`fit`."""

    method: Any
    cfg: Any
    teacher: Any
    student: Any
    mods: Any
    train: Any
    val: Any
    test: Any
    best: dict[str, Any]  # epoch, val_acc and student weights (on the CPU) of the best validation so far
    dev: Any
    use_amp: Any
    t_layers: Any
    s_layers: Any
    ta: Any
    sa: Any
    opt_s: Any
    opt_t: Any
    sched: Any
    gen: Any
    tqdm: Any
    probes: Any
    ddp: _distributed.Dist = field(default_factory=_distributed.Dist)
    sampler: Any = None  # the DistributedSampler of the training data (several processes)
    val_ddp: _distributed.Dist | None = None  # set: each rank evaluates its shard and the counts are summed
    test_ddp: _distributed.Dist | None = None
    seen_phases: set[str] = field(default_factory=set)
    warned: set[str] = field(default_factory=set)
    forward_teacher: Any = None  # the teacher's and the student's forward passes, compiled or not
    forward_student: Any = None
    cached: bool = False  # the training batches carry the teacher's cached outputs (logits, layers)


LOSS_SCALE_LIMIT = 100.0


def _warn_loss_scale(method: DistillMethod, row: dict[str, Any], warned: set[str]) -> None:
    """Warn once per term when a distillation term's epoch mean exceeds LOSS_SCALE_LIMIT x the task loss."""
    task = row.get("loss_task")
    if task is None or not task > 0:
        return
    for key, value in row.items():
        term = key[5:]
        if not key.startswith("loss_") or term == "task" or term in warned:
            continue
        if not value > LOSS_SCALE_LIMIT * task:
            continue
        warned.add(term)
        knob = method.knobs.get(term, f"weight of the {term!r} term in {type(method).__name__}.terms()")
        warnings.warn(
            f"fit(method={method.name!r}): the {term!r} loss term averaged {value:.4g} over epoch {row['epoch']}, "
            f"{value / task:.0f}x the task loss ({task:.4g}); a distillation term that large swamps the task and "
            f"often collapses the student. Lower {type(method).__name__}'s {knob}.",
            stacklevel=5,  # the caller of fit()
        )


def _phase_optimizers(run: _Run, prefixes: tuple[str, ...], train_student: bool) -> list[Any]:
    """The optimizers a phase steps: the student's when the student trains, the filters' when it does not
    or when the phase also trains filter modules that the student's optimizer does not hold."""
    method = run.method
    opts = [run.opt_s] if train_student else []
    own = [p_ for p_ in prefixes if p_ in method.filter_modules and p_ not in method.student_modules]
    if run.opt_t is not None and (not train_student or own):
        opts.append(run.opt_t)
    return opts


def _epochs(run: _Run, rows: list[dict[str, Any]], start_epoch: int, start: float) -> list[dict[str, Any]]:
    """The epoch loop of :func:`fit`: it asks ``run.method`` for each epoch's phase, what the phase trains
    and the loss terms of each step (captured activations arrive in ``run.ta`` and ``run.sa``)."""
    method, cfg, student, dev, ddp = run.method, run.cfg, run.student, run.dev, run.ddp
    uses_teacher = method.uses_teacher  # the plain student's steps skip the teacher's forward pass
    graphs = cfg.compile == "reduce-overhead" and dev.type == "cuda"  # torch.compile with CUDA graphs
    for epoch in range(start_epoch, cfg.epochs):
        if run.sampler is not None:
            run.sampler.set_epoch(epoch)  # each epoch its own shuffle, the same on every rank and on resume
        phase = method.phase(epoch, cfg)
        prefixes, train_student = method.trains(phase, cfg)
        student.train(train_student)
        for name, m in run.mods.items():  # only the modules trained in this phase update BN statistics
            m.train(name.startswith(prefixes))
        opts = _phase_optimizers(run, prefixes, train_student)
        if not opts:
            raise ValueError(
                f"fit(method={method.name!r}): phase {phase!r} trains neither the student nor any of the method's "
                "filter_modules, so no optimizer updates anything; check the method's trains() and filter_modules."
            )
        lr = opts[0].param_groups[0]["lr"]  # the rate this epoch runs at (the history's lr column)
        params = [[p_ for g in o.param_groups for p_ in g["params"]] for o in opts]
        # A parameter both optimizers hold (TED's student filter) is clipped, averaged and stepped once,
        # by the filters' optimizer, when a phase steps both.
        both = {id(p_) for p_ in params[0]} & {id(p_) for p_ in params[-1]} if len(opts) > 1 else set()
        shared = [p_ for p_ in params[-1] if id(p_) in both]
        params[0] = [p_ for p_ in params[0] if id(p_) not in both]
        synced = [p_ for ps in params for p_ in ps] if ddp.active else []
        sums: dict[str, torch.Tensor] = {}
        correct = torch.zeros((), device=dev)
        count = torch.zeros((), device=dev)
        bad_step = torch.full((), -1, device=dev, dtype=torch.long)
        step = -1
        it = (
            run.tqdm(run.train, desc=f"epoch {epoch + 1}/{cfg.epochs} [{phase}]", leave=False)
            if run.tqdm
            else run.train
        )
        for step, batch in enumerate(it):
            if run.cached:
                x, y, *cached = batch
            else:
                x, y = batch
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True).long()  # int32 labels too
            if graphs:
                torch.compiler.cudagraph_mark_step_begin()  # the previous step's graph outputs are dead
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=run.use_amp):
                t_logits, t_acts = None, []
                if run.cached:
                    t_logits, *t_acts = (t.to(dev, non_blocking=True) for t in cached)
                elif uses_teacher:
                    with torch.no_grad():
                        t_logits = run.forward_teacher(x)
                    t_acts = [run.ta[a] for a in run.t_layers]
                    if graphs:  # copied out of the teacher graph's memory before the student's graph runs
                        t_logits, t_acts = t_logits.clone(), [t.clone() for t in t_acts]
                with torch.set_grad_enabled(train_student):
                    logits = run.forward_student(x)
                captured = Step(
                    y=y,
                    logits=logits,
                    teacher_logits=t_logits,
                    teacher=t_acts,
                    student=[run.sa[b] for b in run.s_layers],
                )
                terms = method.terms(phase, cfg, run.mods, captured)
            if step == 0:  # a method of the user's: a clear error before its terms are summed
                check_terms(terms, method=method, phase=phase)
            loss = sum(terms.values())
            for o in opts:
                o.zero_grad(set_to_none=True)
            loss.backward()
            if ddp.active:  # one all-reduce: the mean gradient over the ranks, as DDP
                _distributed.average_gradients_(synced, ddp.world)
            if cfg.grad_clip:
                for ps in params:  # each optimizer's parameters on their own
                    nn.utils.clip_grad_norm_(ps, cfg.grad_clip)
            for o in reversed(opts):
                o.step()
                for p_ in shared:  # stepped by the filters' optimizer: the student's skips it
                    p_.grad = None
            for name, v in terms.items():
                sums[name] = sums.get(name, torch.zeros((), device=dev)) + v.detach().float()
            bad_step = torch.where((bad_step < 0) & ~torch.isfinite(loss.detach()), step, bad_step)
            correct += (logits.detach().argmax(1) == y).sum()
            count += y.numel()
        if step < 0:
            raise ValueError(f"fit(): train_data gave no batches in epoch {epoch + 1}.")
        if train_student:
            run.sched.step()
        n_steps = step + 1
        if ddp.active:  # one collective: every rank's history row holds the sums over all ranks
            sums, correct, count, bad_step, n_steps = _reduce_epoch(ddp, sums, correct, count, bad_step, n_steps)
        # One host synchronisation per epoch: the first bad step, the accuracy and the loss sums at once.
        bad, acc, *totals = torch.stack(
            [bad_step.double(), (correct / count).double(), *(v.double() for v in sums.values())]
        ).tolist()
        totals = dict(zip(sums, totals))
        if bad >= 0:
            bad_terms = [k for k, v in totals.items() if not math.isfinite(v)]
            raise FloatingPointError(
                f"fit(method={method.name!r}): non-finite loss at epoch {epoch + 1}, step {int(bad) + 1} "
                f"(phase {phase}; non-finite terms: {bad_terms}). Lower the learning rate, enable grad_clip, or "
                "check the inputs for NaN."
            )
        row: dict[str, Any] = {"epoch": epoch + 1, "phase": phase}
        row.update({f"loss_{k}": v / n_steps for k, v in totals.items()})
        if phase not in run.seen_phases:  # the first epoch of this phase in this run
            run.seen_phases.add(phase)
            if ddp.main:
                _warn_loss_scale(method, row, run.warned)
        row["train_acc"] = acc
        if ddp.active:  # BatchNorm statistics: rank 0's on every rank, as DDP's broadcast_buffers
            buffers = [*student.buffers(), *run.mods.buffers()]
            if buffers:
                _distributed.broadcast_(buffers)
        row["val_acc"] = _accuracy(student, run.val, dev, run.val_ddp) if run.val is not None else math.nan
        if run.test is not None:
            row["test_acc"] = _accuracy(student, run.test, dev, run.test_ddp)  # reported, never used to select
        if run.val is not None and row["val_acc"] > run.best["val_acc"]:
            weights = {k: v.detach().to("cpu", copy=True) for k, v in student.state_dict().items()}
            run.best = {"epoch": epoch + 1, "val_acc": row["val_acc"], "state": weights}
        row["lr"] = lr
        row["wall_time"] = time.perf_counter() - start
        if run.probes is not None:  # captures now; the PID analysis runs in a worker while training goes on
            run.probes.run(epoch + 1, row, run.teacher, student, run.mods, dev)
            run.probes.collect(wait=False)
        rows.append(row)
        if run.tqdm:
            run.tqdm.write(
                f"epoch {epoch + 1} [{phase}] "
                + " ".join(f"{k}={v:.4g}" for k, v in row.items() if k.startswith(("loss", "train", "val")))
            )
        if cfg.checkpoint_every and (epoch + 1) % cfg.checkpoint_every == 0:
            if run.probes is not None:
                run.probes.collect(wait=True)  # a checkpoint holds complete rows
            if ddp.main:
                save_checkpoint(run, epoch + 1, rows)
            if ddp.active:
                ddp.barrier()  # the other ranks go on once the file is there
    if run.probes is not None:
        run.probes.collect(wait=True)
    if ddp.active:  # rank 0's rows (its wall times and probe columns) on every rank
        rows = ddp.broadcast_object(rows, dev)
    return rows


@torch.no_grad()
def _accuracy(model: nn.Module, data: Iterable[Any], dev: torch.device, ddp: _distributed.Dist | None = None) -> float:
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
