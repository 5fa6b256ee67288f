"""One place for optional dependencies and their install hints."""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any

_EXTRA_FOR = {
    "torch": "torch",
    "dit": "crosscheck",
    "matplotlib": "plot",
    "ecos": "ecos",
    "safetensors.numpy": "io",
    "zarr": "io",
    "distributed": "distributed",
    "mnist1d": "bench",
    "lightning.pytorch": "lightning",
}


def import_optional(name: str, *, purpose: str) -> ModuleType:
    """Import an optional dependency or raise an ``ImportError`` that says how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        extra = _EXTRA_FOR.get(name)
        hint = f"pip install 'pidkd[{extra}]'" if extra else f"pip install {name}"
        raise ImportError(
            f"{purpose} needs the optional package {name!r}, which is not installed. Install it with: {hint}"
        ) from exc


def loaded_module(name: str) -> Any | None:
    """Return module ``name`` only if the user has already imported it (never imports it)."""
    return sys.modules.get(name)
