"""Knowledge distillation with PID: Redundant Information Distillation (RID) and baselines.

Needs PyTorch (``pip install 'pidkd[torch]'``); :mod:`pidkd` and :mod:`pidkd.estimators` work
without it. :func:`fit` trains a student with a method: :class:`Student` (the task loss only),
:class:`KD`, :class:`VID`, :class:`TED` or :class:`RID`, each owning its knobs
(``fit(method=KD(alpha=0.7))``; a name, ``method="kd"``, means the method with its defaults), and
:class:`DistillConfig` holds the training loop's settings. :class:`Distiller` is the method as an
``nn.Module`` for a training loop of your own (``fit`` trains through it; for Lightning see
:mod:`pidkd.distill.lightning`, an optional extra that ``import pidkd.distill`` never loads). The
building blocks are :func:`capture` (activations by module name), the RID and VID filters, the
losses as functions of tensors, :class:`DistillMethod` for methods of your own, and
:class:`Callback` for code of your own in the training loop (``fit(callbacks=[...])``).
"""

from pidkd._optional import import_optional

import_optional("torch", purpose="pidkd.distill")

from pidkd.distill.callbacks import Callback  # noqa: E402
from pidkd.distill.distiller import Distiller, Phase  # noqa: E402
from pidkd.distill.filters import Head, StudentFilter, TeacherFilter, VIDRegressor  # noqa: E402
from pidkd.distill.hooks import capture, module_names  # noqa: E402
from pidkd.distill.losses import kd_loss, rid_phase1_loss, rid_phase2_loss, vid_loss  # noqa: E402
from pidkd.distill.methods import KD, RID, TED, VID, DistillMethod, Step, Student  # noqa: E402
from pidkd.distill.nuisance import noisy_copy, untrained_copy  # noqa: E402
from pidkd.distill.probes import PIDProbe  # noqa: E402
from pidkd.distill.trainer import DistillConfig, FitResult, fit  # noqa: E402

__all__ = [
    "KD",
    "RID",
    "TED",
    "VID",
    "Callback",
    "DistillConfig",
    "DistillMethod",
    "Distiller",
    "FitResult",
    "Head",
    "PIDProbe",
    "Phase",
    "Step",
    "Student",
    "StudentFilter",
    "TeacherFilter",
    "VIDRegressor",
    "capture",
    "fit",
    "kd_loss",
    "module_names",
    "noisy_copy",
    "rid_phase1_loss",
    "rid_phase2_loss",
    "untrained_copy",
    "vid_loss",
]
