"""The checkpoints of :func:`~pidkd.distill.fit` (``DistillConfig(checkpoint_every=...)``): write, load, check, restore.

A checkpoint holds tensors and plain Python values only, so ``torch.load(weights_only=True)`` reads it; a
resumed run must share the teacher, the layer pairs, the loop settings (:data:`RESUME_SETTINGS`) and the
method's knobs with the run that wrote it, which :func:`check_resume` verifies before any training.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from pidkd.distill import _distributed
from pidkd.distill._checks import describe
from pidkd.distill.config import DistillConfig, schedule_text
from pidkd.distill.methods import CONFIG_KNOBS, DistillMethod

if TYPE_CHECKING:
    from pidkd.distill.loop import FitState

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "RESUME_SETTINGS"]

#: The marker and format version of the checkpoints :func:`fit` writes (``checkpoint_every``).
CHECKPOINT_FORMAT = "pidkd-checkpoint"
CHECKPOINT_VERSION = 1
_CHECKPOINT_KEYS = (
    "format",
    "version",
    "method",
    "epoch",
    "student",
    "modules",
    "opt_s",
    "opt_t",
    "sched",
    "history",
    "rng",
    "data_rng",
    "cuda_rng",
)


def _checkpoint_path(cfg: DistillConfig, method: str, epoch: int) -> Path:
    return Path(cfg.checkpoint_dir) / f"{method}_epoch{epoch:04d}.pt"


def check_checkpoint_files(cfg: DistillConfig, method: str, start_epoch: int) -> None:
    """Before any training: ``checkpoint_dir`` must be a directory (or creatable as one), and the checkpoints
    this run will write must not replace files unasked."""
    if not cfg.checkpoint_every:
        return
    folder = Path(cfg.checkpoint_dir)
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        where = "is" if existing == folder else f"lies under {str(existing)!r}, which is"
        raise ValueError(
            f"The 'checkpoint_dir' parameter of DistillConfig() must be a directory, or a path where fit() can "
            f"create one, to write checkpoints in. Got {cfg.checkpoint_dir!r}, which {where} an existing file, "
            "instead. Choose another checkpoint_dir."
        )
    if cfg.overwrite_checkpoints:
        return
    every = cfg.checkpoint_every
    planned = [_checkpoint_path(cfg, method, e) for e in range(start_epoch + 1, cfg.epochs + 1) if e % every == 0]
    existing = [str(p) for p in planned if p.exists()]
    if existing:
        raise FileExistsError(
            f"fit() would replace {len(existing)} existing checkpoint file(s) in {cfg.checkpoint_dir!r} (first: "
            f"{existing[0]!r}). Choose another checkpoint_dir, resume_from the last one, or pass "
            "DistillConfig(overwrite_checkpoints=True)."
        )


def save_checkpoint(state: FitState, epoch: int, rows: list[dict[str, Any]]) -> Path:
    """Write the run's state; tensors and plain Python values only, so ``weights_only=True`` loads it."""
    path = _checkpoint_path(state.config, state.method.name, epoch)
    path.parent.mkdir(parents=True, exist_ok=True)
    best, dev = state.best, state.device
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "method": state.method.name,
            "epoch": epoch,
            "student": state.student.state_dict(),
            "modules": state.modules.state_dict(),
            "opt_s": state.optimizer.state_dict(),
            "opt_t": None if state.filter_optimizer is None else state.filter_optimizer.state_dict(),
            "sched": state.scheduler.state_dict(),
            "history": [{k: _plain(v) for k, v in row.items()} for row in rows],
            "rng": torch.get_rng_state(),
            "data_rng": state.generator.get_state(),
            "cuda_rng": torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None,
            "best": {"epoch": best.epoch, "val_acc": float(best.val_acc), "state": best.state},
            # what a resumed run must share with this one (check_resume)
            "teacher_layers": list(state.teacher_layers),
            "student_layers": list(state.student_layers),
            "teacher_checksum": _teacher_checksum(state.teacher),
            "settings": _settings(state.config),
            "method_settings": state.method.settings(),
        },
        path,
    )
    return path


#: The DistillConfig fields a resumed run must share with the run that wrote its checkpoint: all but the
#: run's length (epochs; the learning-rate milestones, which scale with it, are warned about) and the fields
#: that say how to run (progress, checkpoints, amp, compile, cache_teacher). The method's knobs
#: (DistillMethod.settings) must be the same too, but for its schedule_knobs, which may scale with epochs
#: (checked through the phases of the epochs done).
RESUME_SETTINGS = (
    "batch_size",
    "optimizer",
    "lr",
    "momentum",
    "nesterov",
    "weight_decay",
    "lr_gamma",
    "filter_lr",
    "grad_clip",
    "seed",
)


def _settings(cfg: DistillConfig) -> dict[str, Any]:
    """The :data:`RESUME_SETTINGS` of ``cfg`` as plain values (an optimizer factory by its qualified name)."""
    out = {}
    for name in RESUME_SETTINGS:
        value = getattr(cfg, name)
        if callable(value):
            value = f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', type(value).__name__)}"
        out[name] = value
    return out


def _teacher_checksum(teacher: nn.Module) -> torch.Tensor:
    """A float64 fingerprint of the teacher's parameters and buffers, on the CPU (see :func:`check_resume`)."""
    return _distributed.checksum([*teacher.parameters(), *teacher.buffers()], torch.device("cpu")).cpu()


def check_resume(
    state: dict[str, Any],
    cfg: DistillConfig,
    method: DistillMethod,
    teacher: nn.Module,
    t_layers: list[str],
    s_layers: list[str],
) -> None:
    """Before any training: the checkpoint ``state`` must come from a run of this teacher, these layer pairs,
    this configuration and this schedule (the phases of the epochs it did), with no more epochs done than this
    run has. (Checkpoints written before the teacher, layers and settings were recorded lack those keys, and
    are not checked for them.)"""
    shown, done = state["path"], int(state["epoch"])
    how = "Resume with the teacher, the layers and the configuration of the run that wrote it, or start a new run."
    if done > cfg.epochs:
        raise ValueError(
            f"fit(): the checkpoint resume_from={shown} holds {done} epochs of training, more than this run's "
            f"epochs={cfg.epochs}; a resumed run continues to epochs, it does not truncate. Pass epochs >= {done} "
            f"(epochs={done} returns the checkpoint's run without training), or an earlier checkpoint."
        )
    given = {"teacher_layers": list(t_layers), "student_layers": list(s_layers)}
    for key, mine in given.items():
        if key in state and list(state[key]) != mine:
            raise ValueError(
                f"fit(): the checkpoint resume_from={shown} was written with {key}={list(state[key])}, this run has "
                f"{key}={mine}. {how}"
            )
    if "teacher_checksum" in state:
        theirs, mine = state["teacher_checksum"], _teacher_checksum(teacher)
        if theirs.shape != mine.shape or not torch.allclose(theirs, mine, rtol=1e-6, atol=1e-12):
            raise ValueError(
                f"fit(): the checkpoint resume_from={shown} was written with another teacher (its parameters and "
                f"buffers differ from this run's teacher). {how}"
            )
    theirs = dict(state.get("settings", {}))
    # a checkpoint of pidkd <= 0.1 recorded the method knobs among the DistillConfig fields, by their old names
    old_knobs = {k: theirs.pop(k) for k in list(theirs) if k in CONFIG_KNOBS}
    mine = _settings(cfg)
    differ = {k: (v, mine.get(k)) for k, v in theirs.items() if mine.get(k) != v}
    if differ:
        listed = ", ".join(f"{k}={a!r} (this run: {b!r})" for k, (a, b) in differ.items())
        raise ValueError(f"fit(): the checkpoint resume_from={shown} was written with DistillConfig {listed}. {how}")
    _check_resume_knobs(state, method, old_knobs, shown, how)
    phases = [row.get("phase") for row in state["history"]]
    planned = [method.phase(e, cfg) for e in range(len(phases))]
    if phases != planned:
        knobs = f" ({schedule_text(method)}: unset, they scale with epochs)" if method.schedule_knobs else ""
        raise ValueError(
            f"fit(): the checkpoint resume_from={shown} ran the phases {phases}, where this run's schedule has "
            f"{planned}{knobs}. Set them as the run that wrote the checkpoint had them. " + how
        )


def _check_resume_knobs(
    state: dict[str, Any], method: DistillMethod, old_knobs: dict[str, Any], shown: str, how: str
) -> None:
    """The method's knobs (but its schedule knobs) must be those the checkpoint recorded: ``method_settings``,
    or, in a checkpoint written before the methods owned their knobs, the old DistillConfig fields
    ``old_knobs`` of the knobs this method has (the others did not act on the run)."""
    mine = method.settings()
    if "method_settings" in state:
        theirs = dict(state["method_settings"])
    else:
        own = type(method)._config_fields
        theirs = {own[f]: v for f, v in old_knobs.items() if f in own}
        mine = {k: mine[k] for k in theirs if k in mine}
    keys = [k for k in dict.fromkeys([*theirs, *mine]) if k not in method.schedule_knobs]
    differ = [k for k in keys if theirs.get(k, "<unset>") != mine.get(k, "<unset>")]
    if differ:
        listed = ", ".join(f"{k}={theirs.get(k, '<unset>')!r} (this run: {mine.get(k, '<unset>')!r})" for k in differ)
        raise ValueError(
            f"fit(): the checkpoint resume_from={shown} was written with the method {type(method).__name__} "
            f"{listed}. {how}"
        )


def _plain(value: Any) -> Any:
    """A numpy or one-element torch scalar as the Python number it holds; anything else as it is."""
    if isinstance(value, np.generic) or (isinstance(value, torch.Tensor) and value.numel() == 1):
        return value.item()
    return value


def load_checkpoint(resume_from: Any, method: str) -> dict[str, Any]:
    """The state of a checkpoint written by :func:`fit`, loaded safely and checked before any training."""
    if not isinstance(resume_from, (str, os.PathLike)):
        raise TypeError(
            "The 'resume_from' parameter of fit() must be the path of a checkpoint (str or os.PathLike) or None. "
            f"Got {type(resume_from).__name__} instead."
        )
    path = Path(resume_from)
    shown = repr(str(path))
    how = "Give a file that fit() wrote with DistillConfig(checkpoint_every=..., checkpoint_dir=...)."
    if not path.exists():
        raise FileNotFoundError(f"fit(): resume_from={shown}: no such file. {how}")
    if path.is_dir():
        raise ValueError(
            f"fit(): resume_from={shown} is a directory, not a pidkd checkpoint file; give one of the "
            f"<method>_epoch<NNNN>.pt files in it. {how}"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling refused, not a torch file, truncated, unreadable...
        reason = (str(err).strip().splitlines() or [""])[0][:200]
        raise ValueError(
            f"fit(): resume_from={shown} is not a pidkd checkpoint, or could not be read safely "
            f"({type(err).__name__}: {reason}). Checkpoints are loaded with torch.load(weights_only=True), which "
            f"runs no code from the file; a checkpoint of an older pidkd must be re-created. {how}"
        ) from err
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        if isinstance(state, dict) and {"method", "epoch", "student"} <= state.keys():
            raise ValueError(
                f"fit(): resume_from={shown} has no 'format': {CHECKPOINT_FORMAT!r} marker: it was written by an "
                f"older pidkd, whose checkpoints are not read any more; re-create it with this version. {how}"
            )
        raise ValueError(f"fit(): resume_from={shown} is not a pidkd checkpoint (it holds {describe(state)}). {how}")
    if state.get("version") != CHECKPOINT_VERSION:
        raise ValueError(
            f"fit(): resume_from={shown} is a pidkd checkpoint of format version {state.get('version')!r}; this "
            f"pidkd reads version {CHECKPOINT_VERSION}. Re-create it with this version of pidkd."
        )
    missing = [k for k in _CHECKPOINT_KEYS if k not in state]
    if missing:
        raise ValueError(f"fit(): resume_from={shown} is not a complete pidkd checkpoint: it lacks {missing}. {how}")
    if state["method"] != method:
        raise ValueError(
            f"fit(): checkpoint {str(path)!r} was written by method={state['method']!r}, not {method!r}; resume "
            "with the method that wrote it."
        )
    state["path"] = shown
    return state


def restore_checkpoint(state, student, mods, opt_s, opt_t, sched, gen, dev) -> tuple[list[dict[str, Any]], int]:
    """Load a checked checkpoint state into the run; returns (history rows, epochs done)."""
    milestones = sched.milestones  # this run's
    try:
        student.load_state_dict(state["student"])
        mods.load_state_dict(state["modules"])
        opt_s.load_state_dict(state["opt_s"])
        sched.load_state_dict(state["sched"])
        if sched.milestones != milestones:  # e.g. default milestones of a run with other epochs
            warnings.warn(
                f"fit(): the checkpoint resume_from={state['path']} was written with learning-rate milestones "
                f"{sorted(sched.milestones.elements())}, this run has {sorted(milestones.elements())} (the default "
                "milestones scale with epochs): the run goes on with its own milestones, from the checkpoint's "
                "learning rate. Resume with the epochs and lr_milestones of the run that wrote the checkpoint to "
                "continue it exactly.",
                stacklevel=3,
            )
            sched.milestones = milestones
        if opt_t is not None:
            opt_t.load_state_dict(state["opt_t"])
        rows, epoch = [dict(row) for row in state["history"]], int(state["epoch"])
        torch.set_rng_state(state["rng"])
        gen.set_state(state["data_rng"])
        if dev.type == "cuda" and state["cuda_rng"] is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], dev)
    except (RuntimeError, ValueError, TypeError, KeyError, AttributeError) as err:
        raise ValueError(
            f"fit(): the checkpoint resume_from={state['path']} does not fit this run: the student, the layer pairs "
            f"or the configuration differ from the run that wrote it ({type(err).__name__}: {err}). Resume with "
            "the same models, layers and method."
        ) from err
    return rows, epoch
