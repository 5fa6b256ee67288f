"""Live PID probes: Red and Uni(Y:T\\S) of chosen layers, measured during training.

A :class:`PIDProbe` given to :func:`pidkd.distill.fit` (``probes=[...]``) runs the teacher and the
student on a fixed, held-out probe set every ``every`` epochs, captures one layer pair, quantizes
each side (fitted once, on the first capture, then reused so codes mean the same thing across
epochs; the paper-compatible default: flatten, L2-normalise, PCA, k-means, T and S separately)
and records the PID atoms with bootstrap intervals and the shuffled-label null level into the
training history. With RID it also probes the filter outputs f_t(T) and f_s(S), which are what
RID optimises.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from pidkd.distill.hooks import capture
from pidkd.estimators.quantize import Quantizer, fresh_quantizer
from pidkd.estimators.samples import ATOMS, pid_from_samples

__all__ = ["PIDProbe"]


@dataclass
class PIDProbe:
    """Measure the PID of (teacher_layer, student_layer) on ``data`` every ``every`` epochs.

    Parameters
    ----------
    data : (inputs, labels) tensors
        A held-out probe set (a few hundred to a few thousand samples).
    teacher_layer, student_layer : str
        Module names.
    every : int, default 1
    quantizer : Quantizer, optional
        Template (default: k-means to 10 clusters after L2 normalisation and PCA to 10).
    n_bootstrap, n_permutations : int
        For the intervals and the null level (defaults 20 and 2: cheap enough to run every epoch).
    name : str, optional
        Column prefix (default ``"probe"``).
    """

    data: tuple[torch.Tensor, torch.Tensor]
    teacher_layer: str
    student_layer: str
    every: int = 1
    quantizer: Quantizer | None = None
    n_bootstrap: int = 20
    n_permutations: int = 2
    name: str = "probe"
    _quantizers: dict[str, Quantizer] = field(default_factory=dict, repr=False)

    def _codes(self, key: str, x: torch.Tensor) -> np.ndarray:
        arr = x.detach().float().cpu().numpy()
        if key not in self._quantizers:
            q = fresh_quantizer(self.quantizer)
            self._quantizers[key] = q.fit(arr)
        return self._quantizers[key].transform(arr)

    def _atoms(self, prefix: str, y: np.ndarray, t: torch.Tensor, s: torch.Tensor, seed: int) -> dict[str, float]:
        r = pid_from_samples(
            y,
            self._codes(f"{prefix}/t", t),
            self._codes(f"{prefix}/s", s),
            n_bootstrap=self.n_bootstrap,
            n_permutations=self.n_permutations,
            rng=seed,
        )
        out = {f"{prefix}_{a}": float(getattr(r.pid, a)) for a in (*ATOMS, "mi_t", "mi_s")}
        for a in ATOMS:
            if r.ci:
                out[f"{prefix}_{a}_lo"], out[f"{prefix}_{a}_hi"] = r.ci[a]
            if r.null_mean:
                out[f"{prefix}_{a}_null"] = r.null_mean[a]
        return out

    @torch.no_grad()
    def measure(
        self,
        teacher: nn.Module,
        student: nn.Module,
        modules: nn.ModuleDict,
        pair: int | None,
        device: torch.device,
        epoch: int,
    ) -> dict[str, float]:
        """Atoms of the layer pair (and of the RID filters of layer pair ``pair``) as history columns."""
        x, y = self.data
        was = student.training
        student.eval()
        with capture(teacher, [self.teacher_layer]) as ta, capture(student, [self.student_layer]) as sa:
            teacher(x.to(device))
            student(x.to(device))
        student.train(was)
        labels = y.cpu().numpy()
        t, s = ta[self.teacher_layer], sa[self.student_layer]
        row = self._atoms(self.name, labels, t, s, epoch)
        if pair is not None and f"ft{pair}" in modules and f"fs{pair}" in modules:
            states = {k: m.training for k, m in modules.items()}
            modules.eval()
            ft, fs = modules[f"ft{pair}"](t.float()), modules[f"fs{pair}"](s.float())
            for k, m in modules.items():
                m.train(states[k])
            row |= self._atoms(f"{self.name}_filters", labels, ft, fs, epoch)
        return row

    def __post_init__(self) -> None:
        if not (isinstance(self.data, tuple) and len(self.data) == 2):
            raise TypeError("PIDProbe(data=...) expects an (inputs, labels) tuple of tensors.")
        if self.every < 1:
            raise ValueError(f"The 'every' parameter of PIDProbe() must be a positive int. Got {self.every!r} instead.")


def probe_row(probes: list[PIDProbe], epoch: int, teacher, student, modules, t_layers, device) -> dict[str, Any]:
    """History columns of every probe due at ``epoch`` (1-based)."""
    row: dict[str, Any] = {}
    for probe in probes:
        if epoch % probe.every == 0:
            pair = t_layers.index(probe.teacher_layer) if probe.teacher_layer in t_layers else None
            row |= probe.measure(teacher, student, modules, pair, device, epoch)
    return row
