"""pidkd: exact partial information decomposition for machine learning.

``import pidkd`` loads the estimators only; it never imports torch or :mod:`pidkd.distill`.
"""

from pidkd.estimators import PIDResult, SolverDiagnostics, distributions, pid, pid_batch
from pidkd.exceptions import ConvergenceWarning, SolverError

__version__ = "0.1.0"

__all__ = [
    "ConvergenceWarning",
    "PIDResult",
    "SolverDiagnostics",
    "SolverError",
    "__version__",
    "distributions",
    "pid",
    "pid_batch",
]
