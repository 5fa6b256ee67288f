"""``DistillConfig``: the settings of :func:`~pidkd.distill.fit`'s training loop (the methods own their knobs)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pidkd._validation import check_bool, check_choice, check_int, check_number
from pidkd.distill.methods import CONFIG_KNOBS, DistillMethod
from pidkd.distill.methods import METHODS as _METHODS

__all__ = ["COMPILE_MODES", "DECAY_FROM_EPOCHS", "OPTIMIZERS", "DistillConfig"]

#: Optimizers by name (DistillConfig.optimizer); a callable factory(params, lr=...) is taken as well.
OPTIMIZERS = ("sgd", "adamw", "adam")
#: Modes of ``DistillConfig(compile=...)`` besides True (torch.compile's default) and False.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass
class DistillConfig:
    """The settings of :func:`~pidkd.distill.fit`'s training loop; the methods own their knobs (``KD(alpha=0.7)``).

    Defaults: SGD with Nesterov momentum (lr 0.05, as the paper, times ``lr_gamma`` = 0.2 at half and at
    three quarters of a run of 10 epochs or more) with gradient-norm clipping at 5. ``filter_lr`` is the
    learning rate of the separate optimizer of a method's ``filter_modules`` (RID's and TED's teacher
    filters). ``DistillConfig.preset("paper")`` is the loop of the RID paper's CIFAR-10 settings (SGD
    with Nesterov momentum, lr 0.05, no clipping) and ``preset("authors")`` that of the authors' code;
    the methods' knobs of the same variants are ``RID.preset("paper")`` etc. ``compile=True`` runs the
    teacher's and the student's forward passes through ``torch.compile``; ``compile="reduce-overhead"``
    adds CUDA graphs, the one that paid on a GPU for small models (docs/distill.md, "On a GPU"). The
    teacher is frozen, so its outputs on an (inputs, labels) pair are the same every epoch:
    ``cache_teacher`` ("auto" by default) computes them once and replays them, which saves the
    teacher's forward pass in every step of every distillation method (the replayed outputs are
    bit-for-bit those of the forward pass on a CPU; a DataLoader, which may augment, always runs the
    teacher). Every value is checked when the configuration is made (and again by :func:`fit`, which
    works on a copy): counts are ints, rates finite numbers in range, switches real bools (``amp="no"``
    is refused, not read as true).

    The method knobs that were fields here (``kd_alpha``, ``kd_temperature``, ``vid_lambda``,
    ``ted_lambda``, ``lambda_task``, ``lambda_distill``, ``reduction``, ``sigma_penalty``,
    ``filter_channels``, ``train_student_in_phase1``, ``warmup_epochs``, ``cycle_epochs``,
    ``phase1_fraction``, ``coupling_from_cycle``) are deprecated and default to None (unset). For one
    release, with a method given by name, :func:`fit` applies the ones set, over the knobs of
    ``variant`` (set by :meth:`preset`), with a ``DeprecationWarning`` naming the new spelling; with a
    method object, setting one that the method owns is an error.

    Examples
    --------
    >>> cfg = DistillConfig(epochs=20, lr=0.1)
    >>> cfg.epochs, cfg.optimizer, cfg.grad_clip
    (20, 'sgd', 5.0)
    """

    epochs: int = 10
    batch_size: int = 64
    optimizer: Any = "sgd"  # "sgd", "adamw", "adam", or a factory(params, lr=...) -> torch.optim.Optimizer
    lr: float = 0.05
    momentum: float = 0.9  # SGD only
    nesterov: bool = True  # SGD only
    weight_decay: float = 5e-4
    lr_milestones: Sequence[int] | None = None  # None: lr * lr_gamma at 1/2 and 3/4 of a run of >= 10 epochs
    lr_gamma: float = 0.2
    filter_lr: float | None = None  # learning rate of the method's filter_modules, e.g. RID's f_t and g_t (default: lr)
    grad_clip: float | None = 5.0
    checkpoint_every: int = 0  # epochs between checkpoints (0: none)
    checkpoint_dir: str | None = None
    overwrite_checkpoints: bool = False  # replace checkpoint files that exist (default: refuse before training)
    amp: bool = True  # bf16 autocast on CUDA
    # torch.compile the teacher's and the student's forward passes: True, or a mode of torch.compile
    # ("reduce-overhead": CUDA graphs). Compiling takes a while; it pays off in long runs of small steps.
    compile: bool | str = False
    # Compute the teacher's outputs (logits and captured layers) once, before the first epoch, and replay
    # them every epoch: True, False, or "auto" (when the training data is an (inputs, labels) pair, in
    # one process, and the outputs take at most a quarter of the free host memory, or a tenth of the free
    # GPU memory, where the inputs are).
    cache_teacher: bool | str = "auto"
    seed: int = 0
    progress: bool = True
    # Deprecated (one release): method knobs, now set on the method objects (None: unset), and the preset
    # variant whose method knobs fit(method=<name>) applies.
    variant: str | None = None
    warmup_epochs: int | None = None  # RID(warmup_epochs=...), TED(warmup_epochs=...)
    cycle_epochs: int | None = None  # RID(cycle_epochs=...)
    phase1_fraction: float | None = None  # RID(phase1_fraction=...)
    coupling_from_cycle: int | None = None  # RID(coupling_from_cycle=...)
    lambda_task: float | None = None  # RID(lambda_task=...)
    lambda_distill: float | None = None  # RID(lambda_distill=...)
    vid_lambda: float | None = None  # VID(lambda_distill=...)
    ted_lambda: float | None = None  # TED(lambda_distill=...)
    kd_alpha: float | None = None  # KD(alpha=...)
    kd_temperature: float | None = None  # KD(temperature=...)
    filter_channels: int | None = None  # RID(filter_channels=...), TED(filter_channels=...)
    reduction: str | None = None  # RID(reduction=...)
    sigma_penalty: str | None = None  # RID(sigma_penalty=...)
    train_student_in_phase1: bool | None = None  # RID(...), TED(train_student_in_phase1=...)

    def __post_init__(self) -> None:
        c = "DistillConfig()"
        for name in ("epochs", "batch_size"):
            setattr(self, name, check_int(getattr(self, name), name=name, caller=c, minimum=1))
        for name in ("checkpoint_every", "seed"):
            setattr(self, name, check_int(getattr(self, name), name=name, caller=c, minimum=0))
        numbers = {
            "lr": "positive",
            "lr_gamma": "positive",
            "momentum": "non-negative",
            "weight_decay": "non-negative",
        }
        for name, kind in numbers.items():
            setattr(self, name, check_number(getattr(self, name), name=name, caller=c, kind=kind))
        for name in ("filter_lr", "grad_clip"):
            setattr(self, name, check_number(getattr(self, name), name=name, caller=c, optional=True))
        for name in ("nesterov", "amp", "progress", "overwrite_checkpoints"):
            setattr(self, name, check_bool(getattr(self, name), name=name, caller=c))
        if not isinstance(self.cache_teacher, bool) and self.cache_teacher != "auto":
            raise ValueError(
                f"The 'cache_teacher' parameter of {c} must be True, False or 'auto'. "
                f"Got {self.cache_teacher!r} instead."
            )
        if not isinstance(self.compile, bool):
            self.compile = check_choice(self.compile, list(COMPILE_MODES), name="compile", caller=c)
        if self.variant is not None:
            self.variant = check_choice(self.variant, ["paper", "authors"], name="variant", caller=c)
        _check_config_knobs(self)
        milestones = self.lr_milestones
        if milestones is not None:
            if isinstance(milestones, (str, bytes)) or not isinstance(milestones, Iterable):
                raise TypeError(
                    f"The 'lr_milestones' parameter of {c} must be None or a sequence of epochs (ints). "
                    f"Got {milestones!r} instead."
                )
            self.lr_milestones = tuple(check_int(m, name="lr_milestones", caller=c, minimum=1) for m in milestones)
        if isinstance(self.optimizer, str):
            self.optimizer = check_choice(self.optimizer.lower(), list(OPTIMIZERS), name="optimizer", caller=c)
        elif not callable(self.optimizer):
            raise TypeError(
                f"The 'optimizer' parameter of {c} must be one of {list(OPTIMIZERS)} or a callable "
                f"factory(params, lr=...) returning a torch.optim.Optimizer. Got {self.optimizer!r} instead."
            )
        if self.optimizer == "sgd" and self.nesterov and self.momentum == 0:
            raise ValueError(
                f"The 'momentum' parameter of {c} must be positive with nesterov=True (Nesterov momentum needs "
                "momentum). Got 0.0 instead; set momentum > 0 or nesterov=False."
            )
        if self.checkpoint_dir is not None and not isinstance(self.checkpoint_dir, (str, os.PathLike)):
            raise TypeError(
                f"The 'checkpoint_dir' parameter of {c} must be a directory path (str or os.PathLike) or None. "
                f"Got {self.checkpoint_dir!r} instead."
            )
        self.checkpoint_dir = None if self.checkpoint_dir is None else os.fspath(self.checkpoint_dir)
        if self.checkpoint_every and not self.checkpoint_dir:
            raise ValueError(
                f"The 'checkpoint_dir' parameter of {c} must be a directory when checkpoint_every="
                f"{self.checkpoint_every} (the checkpoints are written there). Got {self.checkpoint_dir!r} instead."
            )

    @classmethod
    def preset(cls, variant: str = "paper", **overrides: Any) -> DistillConfig:
        """The training loop of the RID paper (``"paper"``) or of the authors' code (``"authors"``).

        The paper (arXiv 2411.07483, CIFAR-10): SGD with Nesterov momentum 0.9, lr 0.05, weight
        decay 5e-4, no gradient clipping (pidkd 0.1.0's defaults). The authors' code: gradient-norm
        clipping at 100, a constant student learning rate of 0.0025 (a scheduler bug in their code)
        and a teacher-filter learning rate of 0.05. Both keep a constant rate (``lr_milestones=()``).
        The knobs of the methods in the same variants are ``RID.preset(variant)``,
        ``TED.preset(variant)``, ``VID.preset(variant)`` and ``KD.preset(variant)``: pass them as
        ``fit(method=...)``. For one release, a method given by name still takes them from the
        configuration's ``variant`` (with a ``DeprecationWarning``), and ``overrides`` may still name
        the deprecated knob fields.

        Examples
        --------
        >>> cfg = DistillConfig.preset("authors", epochs=30)
        >>> cfg.lr, cfg.filter_lr, cfg.grad_clip, cfg.epochs
        (0.0025, 0.05, 100.0, 30)
        """
        variant = check_choice(variant, ["paper", "authors"], name="variant", caller="DistillConfig.preset()")
        base: dict[str, Any] = dict(
            variant=variant,
            optimizer="sgd",
            lr=0.05,
            lr_milestones=(),  # a constant rate; the paper's CIFAR schedule: benchmarks/cifar10
            momentum=0.9,
            nesterov=True,
            weight_decay=5e-4,
            grad_clip=None,
        )
        if variant == "authors":
            base |= dict(grad_clip=100.0, lr=0.0025, filter_lr=0.05)
        return cls(**(base | overrides))


def _check_config_knobs(cfg: DistillConfig) -> None:
    """Check the deprecated knob fields that ``cfg`` sets with the constructor of a method that owns them."""
    for name in CONFIG_KNOBS:
        value = getattr(cfg, name)
        if value is None:
            continue
        cls = next(m for m in _METHODS.values() if name in m._config_fields)
        knob = cls._config_fields[name]
        try:
            cls(**{knob: value})
        except (TypeError, ValueError) as err:
            raise type(err)(
                f"DistillConfig({name}={value!r}) is deprecated and sets {cls.__name__}({knob}=...), which refuses "
                f"it: {err}"
            ) from err


def effective_config(config: DistillConfig | None, epochs: int | None) -> DistillConfig:
    """A checked copy of ``config`` (the caller's object is never changed) with ``epochs`` applied and
    the default learning-rate milestones set."""
    if config is not None and not isinstance(config, DistillConfig):
        raise TypeError(
            f"The 'config' parameter of fit() must be a DistillConfig or None. Got {type(config).__name__} instead."
        )
    changes = {}
    if epochs is not None:
        changes["epochs"] = check_int(epochs, name="epochs", caller="fit()", minimum=1)
    # replace() runs __post_init__ again: a config changed after it was made is checked too
    cfg = dataclasses.replace(config or DistillConfig(), **changes)
    if cfg.lr_milestones is None:  # decay at half and at three quarters of the run
        cfg = dataclasses.replace(cfg, lr_milestones=_default_milestones(cfg.epochs))
    return cfg


#: Runs of at least this many epochs get the default learning-rate decay (lr_milestones=None).
DECAY_FROM_EPOCHS = 10


def _default_milestones(epochs: int) -> tuple[int, ...]:
    """The default learning-rate milestones of a run: half and three quarters of its epochs, from
    :data:`DECAY_FROM_EPOCHS` epochs on; a shorter run keeps a constant rate (a decay would take a
    third to a half of its budget at the full rate: a 3-epoch run of the defaults benchmark lost
    0.08 test accuracy to it).

    Examples
    --------
    >>> _default_milestones(20), _default_milestones(12), _default_milestones(3)
    ((10, 15), (6, 9), ())
    """
    if epochs < DECAY_FROM_EPOCHS:
        return ()
    return tuple(sorted({round(epochs / 2), round(3 * epochs / 4)}))


def schedule_text(method: DistillMethod) -> str:
    """The method's schedule knobs as ``name=value, ...`` (for messages)."""
    values = {k: getattr(method, k, None) for k in method.schedule_knobs}
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
