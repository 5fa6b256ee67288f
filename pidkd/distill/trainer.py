"""``fit``: one training loop for every distillation method; the method objects say what differs.

``fit`` checks its arguments, builds the run (data, filters from the method, optimizers, a resumed
checkpoint's state) as a :class:`~pidkd.distill.loop.FitState`, and hands it to
:func:`pidkd.distill.loop.run` with its callbacks (:mod:`pidkd.distill.callbacks`: best-model
selection, probes, checkpoints, warnings) and the user's. The loop asks the
:class:`~pidkd.distill.methods.DistillMethod` for each epoch's phase, the modules that phase trains
and the loss terms of each step; the shipped methods (plain student, KD, VID, TED, RID) live in
:mod:`pidkd.distill.methods`. The loop's settings are :class:`~pidkd.distill.config.DistillConfig`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from pidkd._optional import import_optional
from pidkd.distill import _distributed, loop
from pidkd.distill._checks import (
    as_tensor_pair,
    check_batch,
    check_distinct,
    check_dtypes,
    check_labels,
    check_logits,
    check_module,
    describe,
)
from pidkd.distill._data import TensorBatches, batches, check_same_lengths, shard_eval, shard_train
from pidkd.distill.callbacks import (
    BestModel,
    Callback,
    Checkpoints,
    LearnedNothingWarning,
    LossScaleWarning,
    Probes,
)
from pidkd.distill.checkpoints import (
    check_checkpoint_files,
    check_resume,
    load_checkpoint,
    restore_checkpoint,
)
from pidkd.distill.config import DistillConfig, effective_config, schedule_text
from pidkd.distill.distiller import Distiller, layer_names
from pidkd.distill.hooks import capture
from pidkd.distill.loop import BestEpoch, FitState
from pidkd.distill.methods import CONFIG_KNOBS, DistillMethod, Student, resolve
from pidkd.distill.methods import METHODS as _METHODS
from pidkd.distill.probes import PIDProbe, check_probes

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
    callbacks: Sequence[Callback] = (),
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
    callbacks : sequence of Callback or PIDProbe
        Code of yours run at the hook points of the loop (:class:`pidkd.distill.Callback`: at the
        start and end of the run and of each epoch, and after each step); ``on_epoch_end`` may add
        columns to the epoch's history row. They run after fit's own (best-model selection,
        probes) and before the checkpoint of the epoch is written. A :class:`PIDProbe` among them is
        one of ``probes``.

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
    t_layers = layer_names(teacher_layers, "teacher_layers", "fit()")
    s_layers = layer_names(student_layers, "student_layers", "fit()")
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
    mine = _check_callbacks(callbacks)
    probes = [*(probes if isinstance(probes, Sequence) else [probes]), *(p for p in mine if isinstance(p, PIDProbe))]
    mine = [cb for cb in mine if not isinstance(cb, PIDProbe)]
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
            run = _train(
                method, cfg, teacher.to(dev), student.to(dev), data, dev, t_layers, s_layers, state, probes, ddp, mine
            )
        finally:
            _unfreeze(teacher, frozen)
    finally:
        _distributed.stop(ddp)
    history = pd.DataFrame(run.rows)
    history.attrs["config"] = asdict(cfg) | {"method": method.name}
    history.attrs["method"] = {"name": method.name} | method.settings()
    return FitResult(
        student=run.student,
        modules=run.modules,
        history=history,
        config=cfg,
        best_epoch=run.best.epoch,
        best_state=run.best.state,
        method=method,
    )


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


def _train(
    method: DistillMethod,
    cfg: DistillConfig,
    teacher: nn.Module,
    student: nn.Module,
    data: dict[str, Any],
    dev: torch.device,
    t_layers: list[str],
    s_layers: list[str],
    state: dict[str, Any] | None,
    probes: list[Any],
    ddp: _distributed.Dist,
    user: list[Callback],
) -> FitState:
    """Everything of :func:`fit` after the argument checks: builds the run and its callbacks, and runs the
    loop; returns the run's final state."""
    torch.manual_seed(cfg.seed)  # the same seed on every rank: they draw the same random numbers
    gen = torch.Generator().manual_seed(cfg.seed)
    sampler, eval_ddp = None, {"val": None, "test": None}
    pin = dev.type == "cuda"  # host batches page-locked: their copies to the GPU do not wait
    given = dict(data)  # before sharding, for the checks
    if ddp.main:
        _warn_never_distils(method, cfg)
    if ddp.active:
        train, train_labels, sampler = shard_train(data["train"], cfg, gen, ddp)
        check_same_lengths(ddp, data, train, dev)
        for k in ("val", "test"):
            if data[k] is not None:
                data[k], eval_ddp[k] = shard_eval(data[k], ddp, name=f"{k}_data")
    else:
        train, train_labels = batches(data["train"], cfg.batch_size, True, gen, name="train_data", pin=pin)
    val, test = (
        batches(data[k], cfg.batch_size, False, None, name=f"{k}_data", pin=pin)[0] if data[k] is not None else None
        for k in ("val", "test")
    )
    use_amp = cfg.amp and dev.type == "cuda"

    # One batch sizes the filters and fails early on wrong layer names, shapes, labels or empty data.
    others = [(f"{k}_data", given[k], {"student": student}) for k in ("val", "test") if given[k] is not None]
    others += [(f"PIDProbe {p.name!r}", p.data, {"teacher": teacher, "student": student}) for p in probes]
    ta, sa, t_out, labels = _first_batch(
        train, train_labels, method, teacher, student, dev, use_amp, t_layers, s_layers, others
    )
    distiller = Distiller(
        teacher, student, method, teacher_layers=t_layers, student_layers=s_layers, config=_loop_settings(cfg)
    )
    try:  # the Distiller's layer hooks stay registered for the whole run and leave the models at its end
        distiller._build_from(ta, sa, t_out)
        mods = distiller.method_modules
        (opt_s, *rest), sched = distiller.configure_optimizers()
        opt_t = rest[0] if rest else None
        best = BestEpoch()
        rows: list[dict[str, Any]] = []
        start_epoch = 0
        if state is not None:
            rows, start_epoch = restore_checkpoint(state, student, mods, opt_s, opt_t, sched, gen, dev)
            if state.get("best") is not None:
                best = BestEpoch(**state["best"])
        if ddp.active:  # every rank starts from rank 0's student and modules
            _distributed.broadcast_([*student.parameters(), *student.buffers(), *mods.parameters(), *mods.buffers()])
            _check_same_teacher(teacher, ddp, dev)

        tqdm = import_optional("tqdm", purpose="fit(progress=True)").tqdm if cfg.progress and ddp.main else None
        start = time.perf_counter() - (rows[-1].get("wall_time", 0.0) if rows else 0.0)
        probing = Probes(probes, t_layers, s_layers) if probes and ddp.main else None
        callbacks = [LossScaleWarning(), BestModel(), *([probing] if probing else []), *user]
        callbacks += [Checkpoints(), LearnedNothingWarning()]
        distiller.compile_models(cfg.compile)
        ta = distiller.teacher_acts
        cache = _teacher_cache(method, cfg, train, ddp, distiller.forward_teacher, ta, t_layers, dev, use_amp, tqdm)
        if cache is not None:  # the same batches and random draws, with the teacher's outputs alongside
            train = TensorBatches(train.x, train.y, cfg.batch_size, True, gen, pin=pin, extras=cache)
        run = FitState(
            method=method,
            config=cfg,
            teacher=teacher,
            student=student,
            modules=mods,
            device=dev,
            optimizer=opt_s,
            filter_optimizer=opt_t,
            scheduler=sched,
            generator=gen,
            teacher_layers=t_layers,
            student_layers=s_layers,
            labels=labels,
            distiller=distiller,
            ddp=ddp,
            rows=rows,
            epoch=start_epoch,
            best=best,
            train=train,
            val=val,
            test=test,
            val_ddp=eval_ddp["val"],
            test_ddp=eval_ddp["test"],
            sampler=sampler,
            cached=cache is not None,
            progress=tqdm,
            start_time=start,
        )
        try:
            loop.run(run, callbacks)
        finally:
            if probing is not None:
                probing.close()
    finally:
        distiller.close()
    return run


def _loop_settings(cfg: DistillConfig) -> DistillConfig:
    """``cfg`` without the deprecated method-knob fields, which :func:`fit` has applied to the method already."""
    return dataclasses.replace(cfg, variant=None, **{f: None for f in CONFIG_KNOBS})


def _check_callbacks(callbacks: Any) -> list[Callback]:
    """The user's callbacks as a list, each a :class:`~pidkd.distill.callbacks.Callback`."""
    if isinstance(callbacks, Callback) or not isinstance(callbacks, Iterable):
        raise TypeError(
            "The 'callbacks' parameter of fit() must be a sequence of pidkd.distill.Callback objects (e.g. "
            f"callbacks=[MyCallback()]). Got {describe(callbacks)} instead."
        )
    callbacks = list(callbacks)
    for cb in callbacks:
        if not isinstance(cb, (Callback, PIDProbe)):
            raise TypeError(
                "fit(callbacks=[...]) takes pidkd.distill.Callback objects (subclass it and override its hooks); "
                f"got {describe(cb)}."
            )
    return callbacks


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
