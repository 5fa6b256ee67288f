"""Distillation methods as objects: the plain student, KD, VID, TED and RID, and the protocol for your own.

``fit(method=...)`` takes a name (:data:`METHODS`, the method with its default knobs) or a
:class:`DistillMethod` instance, which owns its knobs (``KD(alpha=0.7)``); the training loop asks
the method what to build, which phase each epoch is, what each phase trains and what the loss
terms are.
"""

from __future__ import annotations

import warnings
from typing import Any

from pidkd.distill._checks import describe
from pidkd.distill.methods.base import DistillMethod, Step, check_pairs
from pidkd.distill.methods.filtered import RID, TED
from pidkd.distill.methods.simple import KD, Student
from pidkd.distill.methods.vid import VID

__all__ = [
    "CONFIG_KNOBS",
    "KD",
    "METHODS",
    "RID",
    "TED",
    "VID",
    "DistillMethod",
    "Step",
    "Student",
    "check_pairs",
    "resolve",
]

#: The shipped methods by name.
METHODS: dict[str, type[DistillMethod]] = {"student": Student, "kd": KD, "vid": VID, "ted": TED, "rid": RID}

#: The DistillConfig fields that were method knobs (deprecated; they moved to the methods).
CONFIG_KNOBS: tuple[str, ...] = tuple(dict.fromkeys(f for cls in METHODS.values() for f in cls._config_fields))


def resolve(method: Any, config: Any = None) -> DistillMethod:
    """A method object from a name or an instance (checked).

    ``config``: a :class:`~pidkd.distill.DistillConfig`. For one release, a method given by name takes
    the knobs that ``config`` still sets in the old spelling (``DistillConfig(kd_alpha=0.7)``), over those
    of ``config.variant`` (``DistillConfig.preset("paper")``: ``KD.preset("paper")``), with a
    ``DeprecationWarning`` naming the new spelling. A method object owns its knobs: ``config`` setting
    one of them too is an error.
    """
    if isinstance(method, DistillMethod):
        if not isinstance(method.name, str) or not method.name:
            raise ValueError(
                f"fit(): a DistillMethod needs a non-empty str `name`; {type(method).__name__} has {method.name!r}."
            )
        return _object_with_config(method, config) if config is not None else method
    if isinstance(method, str):
        if method not in METHODS:
            raise ValueError(
                f"The 'method' parameter of fit() must be one of {list(METHODS)} or a DistillMethod instance. "
                f"Got {method!r} instead."
            )
        return _named_with_config(METHODS[method], config) if config is not None else METHODS[method]()
    if isinstance(method, type) and issubclass(method, DistillMethod):
        raise TypeError(f"fit(method=...) takes a DistillMethod instance; got the class {method.__name__}: call it.")
    raise TypeError(
        f"The 'method' parameter of fit() must be one of {list(METHODS)} or a DistillMethod instance. "
        f"Got {describe(method)} instead."
    )


def _config_knobs(config: Any) -> dict[str, Any]:
    """The deprecated knob fields that ``config`` sets (not None)."""
    return {f: getattr(config, f) for f in CONFIG_KNOBS if getattr(config, f, None) is not None}


def _spelling(cls: type[DistillMethod], variant: str | None, knobs: dict[str, Any]) -> str:
    """How to write the method in the new spelling, e.g. ``KD(alpha=0.7)`` or ``RID.preset('paper')``."""
    args = ", ".join(f"{k}={v!r}" for k, v in knobs.items())
    if variant is not None:
        return f"{cls.__name__}.preset({variant!r}{', ' if args else ''}{args})"
    return f"{cls.__name__}({args})"


def _named_with_config(cls: type[DistillMethod], config: Any) -> DistillMethod:
    """``cls`` with the knobs of ``config``'s preset variant and deprecated knob fields (warned about)."""
    given = _config_knobs(config)
    variant = getattr(config, "variant", None)
    variant = variant if variant in cls.presets else None
    knobs = {cls._config_fields[f]: v for f, v in given.items() if f in cls._config_fields}
    ignored = [f for f in given if f not in cls._config_fields]
    notes = []
    if variant is not None or knobs:
        old = [f"DistillConfig.preset({variant!r})"] if variant is not None else []
        old += [f"DistillConfig({f}={v!r})" for f, v in given.items() if f in cls._config_fields]
        new = _spelling(cls, variant, knobs)
        notes.append(
            f"{' and '.join(old)} set the knobs of method={cls.name!r}; the method owns them now: use "
            f"method={new} (DistillConfig keeps the loop settings)"
        )
    if ignored:
        notes.append(
            f"DistillConfig({', '.join(f'{f}=...' for f in ignored)}) has no effect on method={cls.name!r}: "
            "leave it unset"
        )
    if notes:
        warnings.warn(
            f"fit(): {'; '.join(notes)}. The old spelling is deprecated and will be removed in the next release.",
            DeprecationWarning,
            stacklevel=4,  # the caller of fit()
        )
    return cls.preset(variant, **knobs) if variant is not None else cls(**knobs)


def _object_with_config(method: DistillMethod, config: Any) -> DistillMethod:
    """``method`` itself; a deprecated knob field of ``config`` that it owns is an error, another a warning."""
    given = _config_knobs(config)
    own = type(method)._config_fields
    clash = {f: v for f, v in given.items() if f in own}
    if clash:
        listed = ", ".join(f"{f}={v!r}" for f, v in clash.items())
        knobs = {own[f]: v for f, v in clash.items()}
        raise ValueError(
            f"fit(): DistillConfig({listed}) sets a knob of the method object {type(method).__name__}, which sets "
            f"its own ({', '.join(f'{k}={getattr(method, k)!r}' for k in knobs)}). Set knobs on the method only: "
            f"method={_spelling(type(method), None, knobs)}, and leave DistillConfig's unset."
        )
    if given:
        warnings.warn(
            f"fit(): DistillConfig({', '.join(f'{f}=...' for f in given)}) has no effect on method="
            f"{type(method).__name__}: method knobs belong to the method objects, and these fields are deprecated "
            "(removed in the next release). Leave them unset.",
            DeprecationWarning,
            stacklevel=4,  # the caller of fit()
        )
    return method
