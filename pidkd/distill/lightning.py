"""RID in PyTorch Lightning: :class:`DistillModule` and :class:`PIDProbeCallback` (``pip install 'pidkd[lightning]'``).

:class:`DistillModule` is a ``LightningModule`` on a :class:`~pidkd.distill.Distiller`, with the
arguments of :func:`~pidkd.distill.fit`: a plain ``lightning.Trainer(...).fit(module,
train_dataloaders=...)`` trains the student with the method's phases, filters, optimizers and
losses (manual optimization: RID and TED step a separate optimizer for their teacher filters).
Metrics go through ``self.log`` under the names of ``fit``'s history columns (``loss_task``,
``loss_rid``, ``train_acc``, ``val_acc``, ``test_acc``, ``lr``). Lightning's checkpoints hold the
student, the method's modules, the optimizers and the scheduler, and resume with
``trainer.fit(module, ckpt_path=...)``; several devices come from Lightning's strategies (DDP needs
``strategy="ddp_find_unused_parameters_true"``: a phase leaves some modules without gradients).

:class:`PIDProbeCallback` measures a :class:`~pidkd.distill.PIDProbe` at the end of training
epochs and logs its columns as ``probe/<name>/<column>`` (``probe/<name>/red``,
``probe/<name>/uni_t``, ``probe/<name>/red_lo``, ...), so they reach ``trainer.callback_metrics``
and the Trainer's loggers.

:mod:`pidkd.distill` never imports this module, nor Lightning.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from pidkd._optional import import_optional
from pidkd.distill.config import DistillConfig
from pidkd.distill.distiller import Distiller
from pidkd.distill.methods import DistillMethod
from pidkd.distill.probes import PIDProbe

# pidkd.distill.fit and pidkd.distill.Distiller work without Lightning; this module needs it.
pl = import_optional("lightning.pytorch", purpose="pidkd.distill.lightning")

__all__ = ["DistillModule", "PIDProbeCallback"]


class DistillModule(pl.LightningModule):
    """A ``LightningModule`` that distils ``student`` from ``teacher`` with ``method``.

    Parameters
    ----------
    teacher, student, method, teacher_layers, student_layers, config
        As in :func:`~pidkd.distill.fit` (and :class:`~pidkd.distill.Distiller`, which this module
        wraps as ``self.distiller``). ``config`` gives the optimizers, learning rates, gradient
        clipping and learning-rate milestones; the run's length is the Trainer's ``max_epochs`` (the
        schedule of RID and TED scales with it), or ``config.epochs`` when the Trainer has none.
    example_input : torch.Tensor, optional
        A batch of inputs to build the method's modules on. Default: the first batch of the training
        data, drawn when training starts (torch's random state and the loader's generator are
        restored afterwards).

    Notes
    -----
    Each training epoch starts the Distiller's phase (:meth:`Distiller.start_epoch
    <pidkd.distill.Distiller.start_epoch>`); each step runs ``distiller(x, y)``, backpropagates the
    total with ``manual_backward`` and steps the phase's optimizers through Lightning's wrappers,
    clipped as ``fit`` clips (``config.grad_clip``; leave the Trainer's ``gradient_clip_val`` unset);
    each epoch's end steps the learning-rate scheduler when the phase trained the student. Batches
    are ``(inputs, labels)`` pairs. The layer hooks stay on the models after training (the module
    may train again); ``module.distiller.close()`` removes them.

    Examples
    --------
    >>> import lightning, torch
    >>> from torch import nn
    >>> from pidkd.distill import DistillConfig
    >>> _ = torch.manual_seed(0)
    >>> teacher = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    >>> student = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    >>> data = torch.utils.data.TensorDataset(torch.randn(64, 4), torch.randint(0, 3, (64,)))
    >>> module = DistillModule(teacher, student, "rid", teacher_layers=["1"], student_layers=["1"],
    ...                        config=DistillConfig(epochs=3))
    >>> trainer = lightning.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
    ...                             enable_progress_bar=False, enable_model_summary=False)
    >>> trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=32))
    >>> sorted(k for k in trainer.callback_metrics if k.startswith("loss"))
    ['loss', 'loss_filters', 'loss_rid', 'loss_task']
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
        example_input: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.distiller = Distiller(
            teacher, student, method, teacher_layers=teacher_layers, student_layers=student_layers, config=config
        )
        if example_input is not None and not isinstance(example_input, torch.Tensor):
            raise TypeError(
                "The 'example_input' parameter of DistillModule() must be a batch of inputs (a torch.Tensor) or "
                f"None. Got {type(example_input).__name__} instead."
            )
        self.example_input = example_input
        self._example: torch.Tensor | None = None  # two input samples, kept in checkpoints

    @property
    def student(self) -> nn.Module:
        """The student (trained in place)."""
        return self.distiller.student

    @property
    def teacher(self) -> nn.Module:
        """The frozen teacher."""
        return self.distiller.teacher

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The student's logits."""
        return self.distiller.student(x)

    def _epochs(self) -> int | None:
        epochs = getattr(self._trainer, "max_epochs", None) if self._trainer is not None else None
        return epochs if isinstance(epochs, int) and epochs > 0 else None

    def setup(self, stage: str) -> None:
        """Build the method's modules before Lightning sets up the optimizers and wraps the model (DDP)."""
        if stage == "fit" and not self.distiller.built:
            x = self.example_input if self.example_input is not None else self._first_inputs()
            self.distiller.build(x)
            self._example = x[:2].detach().cpu()

    def _first_inputs(self) -> torch.Tensor:
        """The inputs of the first training batch, drawn without changing the random streams."""
        trainer = self.trainer
        trainer.estimated_stepping_batches  # noqa: B018  (Lightning's documented way to load train_dataloader)
        loader = trainer.train_dataloader
        if isinstance(loader, (list, tuple)) and loader:
            loader = loader[0]
        if isinstance(loader, dict) and loader:
            loader = next(iter(loader.values()))
        gen = getattr(loader, "generator", None)
        states = torch.get_rng_state(), gen.get_state() if gen is not None else None
        try:
            batch = next(iter(loader))
        except StopIteration:
            raise ValueError("DistillModule: the training data is empty; give at least one batch.") from None
        finally:
            torch.set_rng_state(states[0])
            if gen is not None:
                gen.set_state(states[1])
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2 and isinstance(batch[0], torch.Tensor)):
            raise TypeError(
                "DistillModule trains on batches of (inputs, labels) tensors (as a DataLoader over a TensorDataset "
                f"gives); the first batch is a {type(batch).__name__}."
            )
        return batch[0]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep two input samples, so that a module made afresh can build its method modules on loading."""
        if self._example is not None:
            checkpoint["pidkd"] = {"example_input": self._example}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Build the method's modules before Lightning loads their weights (validation or test from a checkpoint)."""
        if not self.distiller.built and "pidkd" in checkpoint:
            self.distiller.build(checkpoint["pidkd"]["example_input"])

    def configure_optimizers(self) -> Any:
        """The Distiller's optimizers (the student's, and RID's / TED's filters') and the learning-rate scheduler."""
        epochs = self._epochs()
        if epochs is not None:
            self.distiller.set_epochs(epochs)
        optimizers, scheduler = self.distiller.configure_optimizers()
        return optimizers, [scheduler]

    def on_train_epoch_start(self) -> None:
        self.distiller.start_epoch(self.current_epoch, self._epochs())

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        terms = self.distiller(x, y)
        optimizers = self.optimizers()
        optimizers = list(optimizers) if isinstance(optimizers, (list, tuple)) else [optimizers]
        for i in self.distiller.phase.optimizers:
            optimizers[i].zero_grad(set_to_none=True)
        self.manual_backward(terms["loss"])
        self.distiller.optimizer_step(optimizers)
        for name, value in terms.items():  # per-step means over the epoch, as fit's history
            key = "loss" if name == "loss" else f"loss_{name}"
            self.log(key, value.detach(), on_step=False, on_epoch=True, batch_size=1, sync_dist=True)
        logits = self.distiller.last_step.logits.detach()
        acc = (logits.argmax(1) == self.distiller.last_step.y).float().mean()
        self.log("train_acc", acc, on_step=False, on_epoch=True, batch_size=len(y), sync_dist=True)
        return terms["loss"].detach()

    def on_train_epoch_end(self) -> None:
        optimizers = self.distiller.phase_optimizers
        self.log("lr", float(optimizers[0].param_groups[0]["lr"]), on_epoch=True, sync_dist=False, rank_zero_only=True)
        self.distiller.end_epoch()

    def _accuracy(self, batch: Any, key: str) -> None:
        x, y = batch
        acc = (self.distiller.student(x).argmax(1) == y).float().mean()
        self.log(key, acc, on_step=False, on_epoch=True, batch_size=len(y), sync_dist=True)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._accuracy(batch, "val_acc")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._accuracy(batch, "test_acc")


class PIDProbeCallback(pl.Callback):
    """A :class:`~pidkd.distill.PIDProbe` measured every ``every`` training epochs and logged.

    Parameters
    ----------
    data : (inputs, labels) tensors
        The held-out probe set.
    teacher_layer, student_layer : str
        Module names in the teacher and the student.
    **options
        The other :class:`~pidkd.distill.PIDProbe` parameters (``every``, ``quantizer``,
        ``n_bootstrap``, ``n_permutations``, ``bias_correction``, ``name``, ``measure``, ``on``).

    Notes
    -----
    At the end of a training epoch ``e`` (1-based) with ``e % every == 0``, rank 0 runs the probe
    on the module's teacher and student (and, with RID or TED, the filters of the pair whose
    teacher layer is ``teacher_layer``) and logs every column ``<name>_<column>`` of ``fit``'s history
    as ``probe/<name>/<column>``: ``probe/<name>/red``, ``.../uni_t``, ``.../red_lo``,
    ``.../filters_red``... The analysis runs inline; the values are those of
    ``probe(teacher, student, ...)`` on the same weights at the same epoch. The quantizers are fitted
    on the first measurement of each ``trainer.fit``.
    """

    def __init__(self, data: Any, teacher_layer: str, student_layer: str, **options: Any) -> None:
        self.probe = PIDProbe(data, teacher_layer, student_layer, **options)

    @property
    def name(self) -> str:
        """The probe's name, the middle part of the logged keys."""
        return str(self.probe.name)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.probe.reset()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if epoch % self.probe.every:
            return
        distiller = getattr(pl_module, "distiller", None)
        if not isinstance(distiller, Distiller):
            raise TypeError(
                "PIDProbeCallback measures a pidkd DistillModule (or a LightningModule with a pidkd Distiller as "
                f"`distiller`); got {type(pl_module).__name__}."
            )
        if trainer.global_rank != 0:
            return
        pair = self.probe.pair_of(distiller.teacher_layers, distiller.student_layers)
        row = self.probe(distiller.teacher, distiller.student, modules=distiller.method_modules, pair=pair, epoch=epoch)
        prefix = f"{self.name}_"
        for column, value in row.items():
            key = f"probe/{self.name}/{column[len(prefix) :]}"
            pl_module.log(key, float(value), on_step=False, on_epoch=True, rank_zero_only=True)
