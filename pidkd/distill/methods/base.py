"""The protocol every distillation method follows, and what one training step hands it."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

__all__ = ["DistillMethod", "Step", "check_pairs", "plain_setting"]


@dataclass(frozen=True)
class Step:
    """What :func:`~pidkd.distill.fit` knows at one training step.

    ``teacher`` and ``student`` are the captured outputs of the paired layers, in the order of
    ``teacher_layers`` / ``student_layers`` (pair k is ``teacher[k]``, ``student[k]``); the teacher's
    carry no gradient, the student's do in epochs that train the student. ``teacher_logits`` is None
    (and ``teacher`` empty) for a method whose ``uses_teacher`` is False: its steps skip the teacher.
    """

    y: torch.Tensor
    logits: torch.Tensor
    teacher_logits: torch.Tensor | None
    teacher: list[torch.Tensor]
    student: list[torch.Tensor]


class DistillMethod:
    """Base class of a distillation method: subclass it to add one without editing pidkd.

    A method owns its knobs: they are its constructor's arguments (``KD(alpha=0.7)``), kept as
    public attributes and checked in the constructor. :func:`~pidkd.distill.fit` asks the method,
    and nothing else, what to do:

    - :meth:`schedule`: the values of the knobs left unset (None) that depend on the run's length
      (:meth:`for_run` returns a copy with them set);
    - :meth:`settings`: the knobs a resumed run must share with the run that wrote its checkpoint;
    - :meth:`build`: the trainable modules it needs, from the shapes of the captured layers
      (called once, on the first batch);
    - :meth:`phase`: the name of each epoch's phase;
    - :meth:`trains`: which of its modules (by name prefix) each phase trains, and whether the
      student trains (the optimizer of a phase is the student's when the student trains, else
      the filters'; see ``student_modules`` and ``filter_modules``);
    - :meth:`terms`: the loss terms of one step (a non-empty dict name -> scalar floating tensor,
      checked on the first step of every epoch; ``"task"`` is the task loss, against which the
      loss-scale warning compares the others).

    Attributes
    ----------
    name : str
        Used in checkpoints (a run resumes only with the method that wrote it) and messages.
    needs_layers : bool
        Whether ``teacher_layers`` / ``student_layers`` must be given.
    student_modules : tuple of str
        Name prefixes of the modules that the student's optimizer also trains (default ``("",)``:
        all of them).
    filter_modules : tuple of str
        Name prefixes of modules trained by a separate optimizer at ``DistillConfig.filter_lr``
        (RID and TED's filters; default none).
    knobs : dict
        Loss term -> the knob of the method that scales it (named in the loss-scale warning).
    schedule_knobs : tuple of str
        The knobs that :meth:`schedule` sets for the run when they are None; a resumed run is checked
        for them through the phases of the epochs done, not by value (default none).
    presets : dict
        Variant name -> knob values, for :meth:`preset` (default none).
    same_logits : bool
        The teacher must give as many logits as the student (KD).
    uses_teacher : bool
        Whether the steps need the teacher (default True); the plain student's do not, so ``fit``
        skips the teacher's forward pass for it.

    Examples
    --------
    >>> import torch.nn.functional as F
    >>> class PlainCE(DistillMethod):
    ...     name = "plain"
    ...     def terms(self, phase, cfg, modules, step):
    ...         return {"task": F.cross_entropy(step.logits, step.y)}
    >>> method = PlainCE()
    >>> method.phase(0, None), method.trains("train", None)
    ('train', (('',), True))

    A knob is a constructor argument kept as an attribute; :meth:`settings` reports it:

    >>> class Scaled(PlainCE):
    ...     def __init__(self, weight=1.0):
    ...         self.weight = weight
    >>> Scaled(weight=0.5).settings()
    {'weight': 0.5}
    """

    name: str = "method"
    needs_layers: bool = False
    student_modules: tuple[str, ...] = ("",)
    filter_modules: tuple[str, ...] = ()
    knobs: ClassVar[dict[str, str]] = {}
    same_logits: bool = False
    uses_teacher: bool = True
    schedule_knobs: ClassVar[tuple[str, ...]] = ()
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    #: Deprecated DistillConfig field -> the knob it sets (pidkd's own methods, for one release).
    _config_fields: ClassVar[dict[str, str]] = {}

    @classmethod
    def preset(cls, variant: str, **overrides: Any) -> DistillMethod:
        """The method with the knobs of ``variant`` (one of :attr:`presets`), then ``overrides``."""
        if variant not in cls.presets:
            known = list(cls.presets) or "none"
            raise ValueError(
                f"The 'variant' parameter of {cls.__name__}.preset() must be one of {known}. Got {variant!r} instead."
            )
        return cls(**(cls.presets[variant] | overrides))

    def check(self, cfg: Any) -> None:
        """Refuse a configuration the method cannot run (before any training). Default: accept."""

    def schedule(self, cfg: Any) -> dict[str, Any]:
        """The :attr:`schedule_knobs` that are None, set for a run of ``cfg.epochs`` epochs. Default: none."""
        return {}

    def for_run(self, cfg: Any) -> DistillMethod:
        """A copy of the method with the knobs of :meth:`schedule` set for the run (``self`` if there are none)."""
        changes = self.schedule(cfg)
        if not changes:
            return self
        method = copy.copy(self)
        for key, value in changes.items():
            setattr(method, key, value)
        return method

    def settings(self) -> dict[str, Any]:
        """The method's knobs as plain values: its public attributes (a callable by its qualified name).

        :func:`~pidkd.distill.fit` records them in checkpoints and in ``history.attrs["method"]``;
        a run resumes only with the same ones (but for :attr:`schedule_knobs`).
        """
        return {key: plain_setting(value) for key, value in vars(self).items() if not key.startswith("_")}

    def build(
        self, teacher: list[torch.Tensor], student: list[torch.Tensor], n_classes: int, cfg: Any
    ) -> nn.ModuleDict:
        """The method's trainable modules, sized from one batch of captured layers. Default: none."""
        return nn.ModuleDict()

    def phase(self, epoch: int, cfg: Any) -> str:
        """Name of the phase of ``epoch`` (0-based). Default: "train" throughout."""
        return "train"

    def trains(self, phase: str, cfg: Any) -> tuple[tuple[str, ...], bool]:
        """(module name prefixes trained in ``phase``, whether the student trains). Default: all, and yes.

        The student's optimizer steps when the student trains; the filters' optimizer (see
        ``filter_modules``) when the student does not, or when the phase also trains filter modules
        that are not ``student_modules`` (then both step, each with its own gradient clipping).
        """
        return ("",), True

    def terms(self, phase: str, cfg: Any, modules: nn.ModuleDict, step: Step) -> dict[str, torch.Tensor]:
        """The loss terms of one step."""
        raise NotImplementedError(f"{type(self).__name__} must define terms(phase, cfg, modules, step).")


def check_pairs(teacher: list[torch.Tensor], student: list[torch.Tensor]) -> list[int]:
    """Number of spatial axes of every layer pair; refuses pairs that pointwise filters cannot join."""
    dims = []
    for k, (t, s) in enumerate(zip(teacher, student)):
        spatial = t.dim() - 2  # vectors 0, sequences 1, feature maps 2, volumes 3
        if t.dim() != s.dim() or t.shape[2:] != s.shape[2:] or not 0 <= spatial <= 3:
            raise ValueError(
                f"fit(): layer pair {k} has teacher output {tuple(t.shape[1:])} and student output "
                f"{tuple(s.shape[1:])}; RID/VID filters are pointwise maps over channels (axis 1), so both must "
                "be vectors, sequences or feature maps of the same spatial size. Pick layer pairs with matching "
                "spatial size."
            )
        dims.append(spatial)
    return dims


def plain_setting(value: Any) -> Any:
    """``value`` as a checkpoint can hold it (``torch.load(weights_only=True)``): numbers, strings, bools,
    None, and tuples, lists and dicts of them as they are; a callable by its qualified name; anything else
    by its type's qualified name."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (tuple, list)):
        return type(value)(plain_setting(v) for v in value)
    if isinstance(value, dict):
        return {str(k): plain_setting(v) for k, v in value.items()}
    named = value if callable(value) else type(value)
    return f"{getattr(named, '__module__', '')}.{getattr(named, '__qualname__', type(named).__name__)}"
