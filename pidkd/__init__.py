"""pidkd: exact partial information decomposition for machine learning.

``import pidkd`` loads the estimators only; it never imports torch or :mod:`pidkd.distill`.
"""

from pidkd.estimators import (
    Measure,
    PIDResult,
    Quantizer,
    SolverDiagnostics,
    distributions,
    joint_histogram,
    pid,
    pid_batch,
    pid_from_samples,
    quantize,
    sweep,
)
from pidkd.exceptions import ConvergenceWarning, SolverError

__version__ = "0.1.0"

__all__ = [
    "ConvergenceWarning",
    "Measure",
    "PIDResult",
    "Quantizer",
    "SolverDiagnostics",
    "SolverError",
    "__version__",
    "distributions",
    "joint_histogram",
    "pid",
    "pid_batch",
    "pid_from_samples",
    "quantize",
    "sweep",
]
