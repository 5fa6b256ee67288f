"""The protocol every distillation method follows, and what one training step hands it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["DistillMethod", "Step", "check_pairs"]


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

    :func:`~pidkd.distill.fit` asks the method, and nothing else, what to do:

    - :meth:`schedule`: the schedule fields the configuration leaves unset, for the run's length;
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
        Name prefixes of modules trained by a separate optimizer at ``filter_lr`` (RID and TED's
        filters; default none).
    knobs : dict
        Loss term -> the :class:`~pidkd.distill.DistillConfig` field that scales it (named in the
        loss-scale warning).
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
    """

    name: str = "method"
    needs_layers: bool = False
    student_modules: tuple[str, ...] = ("",)
    filter_modules: tuple[str, ...] = ()
    knobs: dict[str, str] = {}
    same_logits: bool = False
    uses_teacher: bool = True

    def check(self, cfg: Any) -> None:
        """Refuse a configuration the method cannot run (before any training). Default: accept."""

    def schedule(self, cfg: Any) -> dict[str, Any]:
        """The schedule fields of ``cfg`` that are None (unset), set for a run of ``cfg.epochs`` epochs.

        Default: no warm-up, cycles of epochs // 3 epochs (at least 3) with a quarter in phase 1 (a
        third of a 3-epoch cycle), coupling from the first cycle; one-phase methods ignore them.
        """
        cycle = cfg.cycle_epochs if cfg.cycle_epochs is not None else max(3, cfg.epochs // 3)
        fraction = cfg.phase1_fraction if cfg.phase1_fraction is not None else (1 / 3 if cycle == 3 else 0.25)
        return {
            "warmup_epochs": cfg.warmup_epochs if cfg.warmup_epochs is not None else 0,
            "cycle_epochs": cycle,
            "phase1_fraction": fraction,
            "coupling_from_cycle": cfg.coupling_from_cycle if cfg.coupling_from_cycle is not None else 0,
        }

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
