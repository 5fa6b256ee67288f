"""PID estimators: information measures, reference distributions, the BROJA decomposition,
intersection and map redundancy, and the path from activations to PIDs (quantize, histogram, samples,
sweeps). This subpackage never imports torch.
"""

from pidkd.estimators import distributions
from pidkd.estimators._result import PIDResult, SolverDiagnostics
from pidkd.estimators.activations import Activations, load_activations, save_activations
from pidkd.estimators.api import pid, pid_batch
from pidkd.estimators.histogram import JointHistogram, joint_histogram
from pidkd.estimators.information import (
    conditional_entropy,
    conditional_mutual_information,
    entropy,
    mutual_information,
)
from pidkd.estimators.intersection import gacs_korner_redundancy, intersection_redundancy
from pidkd.estimators.maps import map_redundancy
from pidkd.estimators.measure import Measure
from pidkd.estimators.quantize import Quantizer, quantize
from pidkd.estimators.samples import SamplePID, pid_from_samples
from pidkd.estimators.sweeps import sweep

__all__ = [
    "Activations",
    "JointHistogram",
    "Measure",
    "PIDResult",
    "Quantizer",
    "SamplePID",
    "SolverDiagnostics",
    "conditional_entropy",
    "conditional_mutual_information",
    "distributions",
    "entropy",
    "gacs_korner_redundancy",
    "intersection_redundancy",
    "joint_histogram",
    "load_activations",
    "map_redundancy",
    "mutual_information",
    "pid",
    "pid_batch",
    "pid_from_samples",
    "quantize",
    "save_activations",
    "sweep",
]
