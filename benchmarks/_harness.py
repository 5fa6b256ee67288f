"""The pieces every script in benchmarks/ shares: timing, environment metadata, writing results.

A script imports it after putting this folder on ``sys.path`` (so that ``python benchmarks/x.py``,
``python benchmarks/sub/run.py`` and ``runpy.run_path`` all find it)::

    sys.path.insert(0, str(Path(__file__).resolve().parent))  # parents[1] from a subfolder
    from _harness import argument_parser, environment, time_repeats, write_json, write_markdown

- :func:`time_repeats`: median (and all) wall times of repeated calls, after warm-up calls;
- :func:`environment`: date, machine, cores, Python, numpy/numba/torch versions, pidkd version and
  git commit: the ``meta`` of a results file;
- :func:`write_json` and :func:`write_markdown`: the results file and the generated page (folders
  created as needed);
- :func:`argument_parser`: an ``argparse`` parser with the usual options (``--out``, ``--quick``,
  ``--repeats``, ``--render``) for the scripts that have them.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: where the generated pages and their JSON live (the docs show them)
DOCS = ROOT / "docs" / "benchmarks"


@dataclasses.dataclass
class Timing:
    """Wall times (s) of repeated calls, and the last call's return value."""

    times: list[float]
    result: Any = None

    @property
    def median(self) -> float:
        return float(statistics.median(self.times))

    @property
    def best(self) -> float:
        return float(min(self.times))


def time_repeats(fn: Callable[..., Any], repeats: int = 5, *, warmup: int = 1, index: bool = False) -> Timing:
    """Call ``fn`` ``warmup`` times untimed, then ``repeats`` times timed (``time.perf_counter``).

    With ``index=True`` the timed calls get the repeat number, ``fn(0)``, ``fn(1)``, ... (and the
    warm-up calls none of it: give ``warmup=0``). ``Timing.median`` is the figure the pages report.
    """
    for _ in range(warmup):
        fn()
    times, result = [], None
    for i in range(repeats):
        start = time.perf_counter()
        result = fn(i) if index else fn()
        times.append(time.perf_counter() - start)
    return Timing(times, result)


def _version(name: str) -> str | None:
    module = sys.modules.get(name)  # the version actually imported, where it is
    if module is not None and hasattr(module, "__version__"):
        return str(module.__version__)
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_commit(root: Path = ROOT) -> str | None:
    """Short hash of the checkout's HEAD, with ``+dirty`` when pidkd/ has uncommitted changes."""
    try:
        run = dict(cwd=root, capture_output=True, text=True, timeout=10, check=True)
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], **run).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "pidkd"], **run).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "") if commit else None


def environment(**extra: Any) -> dict[str, Any]:
    """The ``meta`` of a results file: when, where and with what it was measured, plus ``extra``.

    Keys: ``date`` (YYYY-MM-DD), ``machine`` ("x86_64, 16 cores"), ``cores``, ``python``, ``numpy``,
    ``numba``, ``torch`` (None where not installed), ``pidkd`` (version) and ``commit`` (see
    :func:`git_commit`). ``extra`` is added last, so a script may override any of them.
    """
    cores = os.cpu_count()
    meta: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {cores} cores",
        "cores": cores,
        "python": platform.python_version(),
    }
    meta |= {name: _version(name) for name in ("numpy", "numba", "torch", "pidkd")}
    meta["commit"] = git_commit()
    return meta | extra


def write_json(path: Path, data: Any, *, indent: int = 1, newline: bool = False) -> Path:
    """Write ``data`` as JSON to ``path`` (its folder created); ``newline``: end with one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=indent) + ("\n" if newline else ""))
    return path


def write_markdown(path: Path, page: str | Iterable[str]) -> Path:
    """Write a generated page (its text, or its lines joined by newlines) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page if isinstance(page, str) else "\n".join(page))
    return path


def argument_parser(
    doc: str | None,
    *,
    out: Path | None = None,
    out_help: str | None = None,
    quick: str | None = None,
    repeats: int | None = None,
    repeats_help: str | None = None,
    render: str | None = None,
) -> argparse.ArgumentParser:
    """A parser described by the first line of ``doc``, with the usual options a script asks for.

    ``out``: ``--out`` (a folder, default ``out``); ``quick``: ``--quick`` with this help;
    ``repeats``: ``--repeats`` with this default; ``render``: ``--render`` with this help (only
    re-render the page from the JSON). Options left at None are not added.
    """
    parser = argparse.ArgumentParser(description=(doc or "").strip().split("\n")[0])
    if quick is not None:
        parser.add_argument("--quick", action="store_true", help=quick)
    if repeats is not None:
        parser.add_argument("--repeats", type=int, default=repeats, help=repeats_help)
    if out is not None:
        parser.add_argument("--out", type=Path, default=out, help=out_help)
    if render is not None:
        parser.add_argument("--render", action="store_true", help=render)
    return parser
