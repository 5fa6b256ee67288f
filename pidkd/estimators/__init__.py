"""PID estimators: information measures, reference distributions and the BROJA decomposition.

This subpackage never imports torch.
"""

from pidkd.estimators import distributions
from pidkd.estimators._result import PIDResult, SolverDiagnostics
from pidkd.estimators.api import pid, pid_batch
from pidkd.estimators.intersection import gacs_korner_redundancy, intersection_redundancy
from pidkd.estimators.information import (
    conditional_entropy,
    conditional_mutual_information,
    entropy,
    mutual_information,
)

__all__ = [
    "PIDResult",
    "SolverDiagnostics",
    "conditional_entropy",
    "conditional_mutual_information",
    "distributions",
    "entropy",
    "gacs_korner_redundancy",
    "intersection_redundancy",
    "mutual_information",
    "pid",
    "pid_batch",
]
