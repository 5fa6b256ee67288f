"""``Distiller``: a distillation method as an ``nn.Module`` for any training loop, ``fit``'s included.

A :class:`Distiller` holds the teacher (frozen), the student, the method's modules (filters, heads,
regressors, built on the first batch) and the capture of the paired layers. It says which
parameters each phase trains, makes the optimizers :func:`~pidkd.distill.fit` uses, switches phase
at :meth:`Distiller.start_epoch` and returns one step's loss terms from ``distiller(x, y)``.
:func:`~pidkd.distill.fit` trains through the same object, so a hand-written loop with it gives
``fit``'s history (docs/own_loop.md), and :class:`pidkd.distill.lightning.DistillModule` wraps it
for Lightning.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from pidkd.distill._checks import check_distinct, check_logits, check_module, check_terms, describe
from pidkd.distill.config import DistillConfig, effective_config
from pidkd.distill.hooks import capture
from pidkd.distill.methods import CONFIG_KNOBS, DistillMethod, Step, Student, resolve

__all__ = ["Distiller", "Phase", "make_optimizer"]


@dataclass(frozen=True)
class Phase:
    """What one epoch trains: :meth:`Distiller.start_epoch`'s answer.

    ``name`` is the method's name of the phase (``"warmup"``, ``"phase1"``, ``"phase2"``,
    ``"train"``); ``epoch`` the epoch (0-based); ``modules`` the name prefixes of the method's modules
    it trains; ``student`` whether the student trains; ``parameters`` the parameters that change in
    it (the student's when it trains, then those of the method's modules it trains); ``optimizers``
    the indices, into :meth:`Distiller.configure_optimizers`'s list, of the optimizers it steps.
    """

    name: str
    epoch: int
    modules: tuple[str, ...]
    student: bool
    parameters: tuple[nn.Parameter, ...] = dataclasses.field(repr=False)
    optimizers: tuple[int, ...]


def make_optimizer(cfg: DistillConfig, params: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """The optimizer of ``cfg`` over ``params`` (one parameter group) at learning rate ``lr``."""
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


class Distiller(nn.Module):
    """A teacher, a student and a distillation method as one module: ``distiller(x, y)`` is a step's loss.

    Parameters
    ----------
    teacher, student : nn.Module
        Classifiers returning logits of shape (batch, classes). The teacher is frozen: put in eval
        mode, ``requires_grad=False`` on its parameters, and kept in eval mode by :meth:`train`.
    method : {"student", "kd", "vid", "ted", "rid"} or DistillMethod, default "rid"
        As in :func:`~pidkd.distill.fit`: a name (the method with its default knobs) or a method
        object that owns its knobs (``RID(lambda_distill=0.1)``).
    teacher_layers, student_layers : sequence of str
        Paired layer names (``model.named_modules()``), needed by VID, TED and RID. A name that is
        no module fails at once, listing the available names.
    config : DistillConfig, optional
        The loop settings the Distiller uses: ``epochs`` (the schedule of RID and TED scales with
        it; :meth:`start_epoch` can change it), the optimizer, learning rates, ``grad_clip`` and the
        learning-rate milestones of :meth:`configure_optimizers`, and ``amp`` (bf16 autocast on CUDA).

    Notes
    -----
    A loop over epochs and batches (see docs/own_loop.md for the whole 15 lines):

    1. :meth:`build` on one batch of inputs (the first training batch) creates the method's modules
       (``method_modules``), sized from the captured layers.
    2. :meth:`configure_optimizers` gives the optimizers ``fit`` uses and the learning-rate
       scheduler; or hand :meth:`parameter_groups` to optimizers of your own.
    3. :meth:`start_epoch` at the start of every epoch: the phase, the modules' train/eval modes,
       and which parameters and optimizers it trains (:class:`Phase`).
    4. Every step: ``terms = distiller(x, y)``, ``distiller.zero_grad()``,
       ``terms["loss"].backward()``, :meth:`optimizer_step` (``fit``'s gradient clipping and steps of
       the phase's optimizers). :meth:`end_epoch` steps the scheduler.

    The layer hooks stay registered on the teacher and the student until :meth:`close` (or the end
    of a ``with Distiller(...) as distiller:`` block).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> _ = torch.manual_seed(0)
    >>> teacher = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    >>> student = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    >>> x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    >>> distiller = Distiller(teacher, student, "rid", teacher_layers=["1"], student_layers=["1"],
    ...                       config=DistillConfig(epochs=3))
    >>> optimizers, scheduler = distiller.build(x).configure_optimizers()
    >>> for epoch in range(3):
    ...     phase = distiller.start_epoch(epoch)
    ...     terms = distiller(x, y)
    ...     distiller.zero_grad()
    ...     terms["loss"].backward()
    ...     distiller.optimizer_step()
    ...     distiller.end_epoch()
    ...     print(phase.name, sorted(terms))
    warmup ['filters', 'loss', 'task']
    phase2 ['loss', 'rid', 'task']
    phase2 ['loss', 'rid', 'task']
    >>> distiller.close()
    """

    def __init__(
        self,
        teacher: nn.Module,
        student: nn.Module,
        method: str | DistillMethod = "rid",
        *,
        teacher_layers: Sequence[str] = (),
        student_layers: Sequence[str] = (),
        config: DistillConfig | None = None,
    ) -> None:
        super().__init__()
        teacher = check_module(teacher, name="teacher", caller="Distiller()")
        student = check_module(student, name="student", caller="Distiller()")
        check_distinct(teacher, student)
        self.config = effective_config(config, None)
        self._user_milestones = None if config is None else config.lr_milestones
        self._given_method = method
        self.method = _resolve(method, self.config)
        self.teacher_layers = layer_names(teacher_layers, "teacher_layers")
        self.student_layers = layer_names(student_layers, "student_layers")
        paired = len(self.teacher_layers) == len(self.student_layers)
        if self.method.needs_layers and (not self.teacher_layers or not paired):
            raise ValueError(
                f"Distiller(method={self.method.name!r}) needs paired layers: teacher_layers and student_layers of "
                f"equal, non-zero length; got {self.teacher_layers} and {self.student_layers}."
            )
        if not paired:
            raise ValueError(
                "Distiller(): teacher_layers and student_layers pair up one to one; got "
                f"{len(self.teacher_layers)} and {len(self.student_layers)}."
            )
        self.method.check(self.config)
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        self.teacher = teacher
        self.student = student
        self.method_modules = nn.ModuleDict()
        self._built = False
        self._hooks = ExitStack()
        try:
            self.teacher_acts = self._hooks.enter_context(capture(teacher, self.teacher_layers))
            self.student_acts = self._hooks.enter_context(capture(student, self.student_layers))
        except ValueError as err:
            self._hooks.close()
            which = "teacher" if "teacher_acts" not in self.__dict__ else "student"
            raise ValueError(f"Distiller(): {which}_layers names a module the {which} lacks: {err}") from None
        self._passes: tuple[Any, Any] = (teacher, student)  # the forward passes, compiled or not (not submodules)
        self._compile: bool | str = False
        self.optimizers: list[torch.optim.Optimizer] = []
        self.scheduler: torch.optim.lr_scheduler.MultiStepLR | None = None
        self.phase: Phase | None = None
        self.last_step: Step | None = None
        self._checked = False
        self._split: tuple[list[list[nn.Parameter]], list[nn.Parameter]] | None = None

    # -- building ---------------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        """The student's device (the teacher's when the student has no parameters; else the CPU)."""
        for model in (self.student, self.teacher):
            for p in model.parameters():
                return p.device
        return torch.device("cpu")

    @property
    def built(self) -> bool:
        """Whether the method's modules exist (:meth:`build` ran)."""
        return self._built

    @torch.no_grad()
    def build(self, x: torch.Tensor) -> Distiller:
        """Run both models once on the inputs ``x`` (a batch) and build the method's modules from the
        captured layers' shapes, on the student's device. Returns the Distiller; does nothing when built."""
        if self._built:
            return self
        x = x.to(self.device)
        t_out = self.teacher(x)
        was = self.student.training
        self.student.eval()
        try:
            s_out = self.student(x)
        finally:
            self.student.train(was)
        check_logits(s_out, who="student", n_samples=len(x))
        if not isinstance(self.method, Student):
            check_logits(t_out, who="teacher", n_samples=len(x))
        self._build_from(self.teacher_acts, self.student_acts, t_out)
        return self

    def _build_from(self, t_acts: dict[str, torch.Tensor], s_acts: dict[str, torch.Tensor], t_out: Any) -> None:
        """Build the method's modules from one batch's captured layers and the teacher's logits ``t_out``."""
        n_classes = 0 if isinstance(self.method, Student) else t_out.shape[1]  # heads predict the teacher's classes
        mods = self.method.build(
            [t_acts[n] for n in self.teacher_layers], [s_acts[n] for n in self.student_layers], n_classes, self.config
        )
        if not isinstance(mods, nn.ModuleDict):
            raise TypeError(f"{type(self.method).__name__}.build() must return an nn.ModuleDict; got {describe(mods)}.")
        self.method_modules = mods.to(self.device)
        self._built = True

    def _need_built(self, what: str) -> None:
        if not self._built:
            raise RuntimeError(
                f"Distiller.{what} needs the method's modules, which are built on a batch: call "
                "distiller.build(inputs) first (e.g. with the first training batch)."
            )

    def set_epochs(self, epochs: int) -> None:
        """Make the run ``epochs`` long: the method's schedule (knobs left unset, e.g. RID's cycle) and the
        default learning-rate milestones scale with it (the scheduler, when made, takes the new ones)."""
        if epochs == self.config.epochs:
            return
        given = dataclasses.replace(self.config, lr_milestones=self._user_milestones)
        self.config = effective_config(given, epochs)
        self.method = _resolve(self._given_method, self.config)
        self.method.check(self.config)
        if self.scheduler is not None:
            self.scheduler.milestones = Counter(self.config.lr_milestones)

    def compile_models(self, mode: bool | str = True) -> Distiller:
        """Run the teacher's and the student's forward passes through ``torch.compile`` (``mode``: True or a
        mode of torch.compile; False: the models themselves). The layer hooks are traced with them.

        torch.compile's caches are cleared first: a teacher compiled by an earlier run, without these
        capture hooks, was otherwise replayed without them (torch 2.11 and 2.13)."""
        self._compile = mode
        if mode is False:
            self._passes = (self.teacher, self.student)
            return self
        torch.compiler.reset()
        opts = {"mode": None if mode is True else mode}
        self._passes = (torch.compile(self.teacher, **opts), torch.compile(self.student, **opts))
        return self

    @property
    def forward_teacher(self) -> Any:
        """The teacher's forward pass (compiled after :meth:`compile_models`)."""
        return self._passes[0]

    @property
    def forward_student(self) -> Any:
        """The student's forward pass (compiled after :meth:`compile_models`)."""
        return self._passes[1]

    # -- parameters and optimizers ----------------------------------------------------------------

    def _params_of(self, prefixes: tuple[str, ...]) -> list[nn.Parameter]:
        return [p for name, m in self.method_modules.items() if name.startswith(prefixes) for p in m.parameters()]

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The parameters of :meth:`configure_optimizers`'s optimizers, to hand to optimizers of your own.

        ``"student"``: the student's and the method's ``student_modules``' (RID's f_s and sigma);
        ``"filters"``: the method's ``filter_modules``' (RID's teacher filter and head), trained at
        ``config.filter_lr`` by a separate optimizer (empty for methods without them).
        """
        self._need_built("parameter_groups()")
        filters = self._params_of(self.method.filter_modules) if self.method.filter_modules else []
        return {
            "student": list(self.student.parameters()) + self._params_of(self.method.student_modules),
            "filters": filters,
        }

    def configure_optimizers(
        self,
    ) -> tuple[list[torch.optim.Optimizer], torch.optim.lr_scheduler.MultiStepLR]:
        """The optimizers :func:`~pidkd.distill.fit` trains with, and the student's learning-rate scheduler.

        Returns ``([student_optimizer], scheduler)``, or ``([student_optimizer, filter_optimizer],
        scheduler)`` for a method with ``filter_modules`` (RID, TED), made from ``config`` (optimizer,
        ``lr``, ``filter_lr``, weight decay, milestones); the Distiller keeps them for
        :meth:`optimizer_step` and :meth:`end_epoch`.
        """
        groups = self.parameter_groups()
        cfg = self.config
        opts = [make_optimizer(cfg, groups["student"], cfg.lr)]
        if self.method.filter_modules:
            opts.append(make_optimizer(cfg, groups["filters"], cfg.filter_lr or cfg.lr))
        self.optimizers = opts
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(opts[0], list(cfg.lr_milestones), cfg.lr_gamma)
        self._split = None
        return list(opts), self.scheduler

    # -- phases -----------------------------------------------------------------------------------

    def start_epoch(self, epoch: int, epochs: int | None = None) -> Phase:
        """Enter epoch ``epoch`` (0-based) of a run of ``epochs`` (default ``config.epochs``): its phase,
        the train/eval mode of the student and of each of the method's modules (only the modules the phase
        trains update BatchNorm statistics), and which parameters and optimizers it trains."""
        self._need_built("start_epoch()")
        if epochs is not None:
            self.set_epochs(epochs)
        method, cfg = self.method, self.config
        name = method.phase(epoch, cfg)
        prefixes, train_student = method.trains(name, cfg)
        params = (list(self.student.parameters()) if train_student else []) + self._params_of(prefixes)
        if not params:
            raise ValueError(
                f"Distiller(method={method.name!r}): phase {name!r} (epoch {epoch}) trains neither the student nor "
                f"any of the method's modules (trains() gives prefixes {prefixes} and student={train_student}; the "
                f"modules are {list(self.method_modules)}), so no parameter would change; check the method's "
                "trains() and build()."
            )
        own = [p for p in prefixes if p in method.filter_modules and p not in method.student_modules]
        idx = [0] if train_student else []
        if method.filter_modules and (not train_student or own):
            idx.append(1)
        if not idx:
            raise ValueError(
                f"Distiller(method={method.name!r}): phase {name!r} trains neither the student nor any of the method's "
                "filter_modules, so no optimizer updates anything; check the method's trains() and filter_modules."
            )
        self.phase = Phase(name, epoch, tuple(prefixes), bool(train_student), tuple(params), tuple(idx))
        self._checked = False
        self._split = None
        self.train(True)
        return self.phase

    def train(self, mode: bool = True) -> Distiller:
        """Train/eval mode: the teacher always in eval mode; in training mode during a phase, the student and
        the method's modules as the phase trains them (so that Lightning's ``model.train()`` keeps them)."""
        super().train(mode)
        self.teacher.eval()
        if mode and self.phase is not None:
            self.student.train(self.phase.student)
            for name, m in self.method_modules.items():
                m.train(name.startswith(self.phase.modules))
        return self

    def _need_phase(self, what: str) -> Phase:
        if self.phase is None:
            raise RuntimeError(
                f"Distiller.{what} runs in a phase: call distiller.start_epoch(epoch, epochs) at the start of every "
                "epoch (it says which phase the epoch is, and what it trains)."
            )
        return self.phase

    @property
    def phase_optimizers(self) -> list[torch.optim.Optimizer]:
        """The optimizers the current phase steps (of :meth:`configure_optimizers`'s)."""
        phase = self._need_phase("phase_optimizers")
        if not self.optimizers:
            raise RuntimeError("Distiller.phase_optimizers: call distiller.configure_optimizers() first.")
        return [self.optimizers[i] for i in phase.optimizers]

    def _phase_split(self) -> tuple[list[list[nn.Parameter]], list[nn.Parameter]]:
        """Per phase optimizer the parameters it clips, and the parameters both optimizers hold (TED's student
        filter), which the filters' optimizer alone clips and steps when a phase steps both."""
        if self._split is None:
            opts = self.phase_optimizers
            params = [[p for g in o.param_groups for p in g["params"]] for o in opts]
            both = {id(p) for p in params[0]} & {id(p) for p in params[-1]} if len(opts) > 1 else set()
            shared = [p for p in params[-1] if id(p) in both]
            params[0] = [p for p in params[0] if id(p) not in both]
            self._split = (params, shared)
        return self._split

    def optimizer_step(self, optimizers: Sequence[Any] | None = None) -> None:
        """After the backward pass: clip each of the phase's optimizers' gradients to ``config.grad_clip``
        (each on its own) and step them, as :func:`~pidkd.distill.fit` does.

        ``optimizers``: the full list of :meth:`configure_optimizers` in its order, as wrapped by a
        framework (Lightning's ``self.optimizers()``), to step those wrappers instead.
        """
        phase = self._need_phase("optimizer_step()")
        params, shared = self._phase_split()
        opts = self.phase_optimizers if optimizers is None else [list(optimizers)[i] for i in phase.optimizers]
        if self.config.grad_clip:
            for ps in params:  # each optimizer's parameters on their own
                nn.utils.clip_grad_norm_(ps, self.config.grad_clip)
        for o in reversed(opts):
            o.step()
            for p in shared:  # stepped by the filters' optimizer: the student's skips it
                p.grad = None

    def end_epoch(self) -> None:
        """At the end of an epoch: step the learning-rate scheduler when the phase trained the student."""
        phase = self._need_phase("end_epoch()")
        if phase.student and self.scheduler is not None:
            self.scheduler.step()

    # -- the step ---------------------------------------------------------------------------------

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, teacher_outputs: Sequence[torch.Tensor] | None = None
    ) -> dict[str, torch.Tensor]:
        """The loss terms of one training step on inputs ``x`` and labels ``y`` in the current phase.

        Returns the method's terms (name -> scalar tensor, e.g. ``task``, ``rid``) and their sum under
        ``"loss"``, the total to backpropagate. ``teacher_outputs``: the teacher's logits and captured
        layers on ``x``, when you have them (a cache); else the teacher runs (without gradients). The
        step's logits and captured layers are in ``distiller.last_step`` afterwards.
        """
        phase = self._need_phase("forward()")
        dev = self.device
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True).long()  # int32 labels too
        use_amp = self.config.amp and dev.type == "cuda"
        graphs = self._compile == "reduce-overhead" and dev.type == "cuda"  # torch.compile with CUDA graphs
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()  # the previous step's graph outputs are dead
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
            t_logits, t_acts = None, []
            if teacher_outputs is not None:
                t_logits, *t_acts = (t.to(dev, non_blocking=True) for t in teacher_outputs)
            elif self.method.uses_teacher:
                with torch.no_grad():
                    t_logits = self.forward_teacher(x)
                t_acts = [self.teacher_acts[a] for a in self.teacher_layers]
                if graphs:  # copied out of the teacher graph's memory before the student's graph runs
                    t_logits, t_acts = t_logits.clone(), [t.clone() for t in t_acts]
            with torch.set_grad_enabled(phase.student and torch.is_grad_enabled()):
                logits = self.forward_student(x)
            step = Step(
                y=y,
                logits=logits,
                teacher_logits=t_logits,
                teacher=t_acts,
                student=[self.student_acts[b] for b in self.student_layers],
            )
            terms = self.method.terms(phase.name, self.config, self.method_modules, step)
        if not self._checked:  # a method of the user's: a clear error before its terms are summed
            check_terms(terms, method=self.method, phase=phase.name)
            if "loss" in terms:
                raise ValueError(
                    f"Distiller: {type(self.method).__name__}.terms() returned a term named 'loss', the name of the "
                    "total the Distiller returns; give the term another name."
                )
            self._checked = True
        self.last_step = step
        return {**terms, "loss": sum(terms.values())}

    # -- hooks ------------------------------------------------------------------------------------

    def close(self) -> None:
        """Remove the layer hooks from the teacher and the student (the Distiller captures nothing after)."""
        self._hooks.close()

    def __enter__(self) -> Distiller:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _resolve(method: Any, cfg: DistillConfig) -> DistillMethod:
    """The method as it runs for ``cfg``: a name with ``cfg``'s deprecated knob fields (as ``fit``), an object
    as it is; the schedule knobs left unset set for ``cfg.epochs``."""
    if isinstance(method, DistillMethod):
        given = [f for f in CONFIG_KNOBS if getattr(cfg, f, None) is not None]
        if given:
            warnings.warn(
                f"Distiller(): DistillConfig({', '.join(f'{f}=...' for f in given)}) has no effect on a method "
                "object: method knobs belong to the method objects, and these fields are deprecated. Leave them unset.",
                DeprecationWarning,
                stacklevel=4,
            )
        return resolve(method).for_run(cfg)
    return resolve(method, cfg).for_run(cfg)


def layer_names(layers: Any, name: str, caller: str = "Distiller()") -> list[str]:
    """``layers`` as a list of module names, or a TypeError naming the parameter ``name`` of ``caller``."""
    names = list(layers) if isinstance(layers, Iterable) and not isinstance(layers, str) else None
    if names is None or not all(isinstance(n, str) for n in names):
        raise TypeError(
            f"The {name!r} parameter of {caller} must be a sequence of module names (e.g. ['layer3']). "
            f"Got {layers!r} instead."
        )
    return names
