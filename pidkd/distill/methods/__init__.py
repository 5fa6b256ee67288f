"""Distillation methods as objects: the plain student, KD, VID, TED and RID, and the protocol for your own.

``fit(method=...)`` takes a name (:data:`METHODS`) or a :class:`DistillMethod` instance; the
training loop asks the method what to build, which phase each epoch is, what each phase trains
and what the loss terms are.
"""

from __future__ import annotations

from typing import Any

from pidkd.distill._checks import describe
from pidkd.distill.methods.base import DistillMethod, Step, check_pairs
from pidkd.distill.methods.filtered import RID, TED
from pidkd.distill.methods.simple import KD, Student
from pidkd.distill.methods.vid import VID

__all__ = ["KD", "METHODS", "RID", "TED", "VID", "DistillMethod", "Step", "Student", "check_pairs", "resolve"]

#: The shipped methods by name.
METHODS: dict[str, type[DistillMethod]] = {"student": Student, "kd": KD, "vid": VID, "ted": TED, "rid": RID}


def resolve(method: Any) -> DistillMethod:
    """A method object from a name or an instance (checked)."""
    if isinstance(method, DistillMethod):
        if not isinstance(method.name, str) or not method.name:
            raise ValueError(
                f"fit(): a DistillMethod needs a non-empty str `name`; {type(method).__name__} has {method.name!r}."
            )
        return method
    if isinstance(method, str):
        if method not in METHODS:
            raise ValueError(
                f"The 'method' parameter of fit() must be one of {list(METHODS)} or a DistillMethod instance. "
                f"Got {method!r} instead."
            )
        return METHODS[method]()
    if isinstance(method, type) and issubclass(method, DistillMethod):
        raise TypeError(f"fit(method=...) takes a DistillMethod instance; got the class {method.__name__}: call it.")
    raise TypeError(
        f"The 'method' parameter of fit() must be one of {list(METHODS)} or a DistillMethod instance. "
        f"Got {describe(method)} instead."
    )
