"""The sweep journal: one JSON line per finished row, after a header line with the sweep's parameters.

:func:`pidkd.sweep` (``journal=``) and ``pidkd measure --journal`` write it as rows finish, and a rerun
with the same journal skips the rows already in it. :func:`fingerprint` identifies a checkpoint's data,
so that a row is reused only for the same data.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from pidkd.estimators.activations import Activations, NpyArray, _to_numpy

__all__ = ["JOURNAL_FORMAT", "JOURNAL_VERSION", "Journal", "fingerprint"]

#: The marker in the first line of a sweep journal.
JOURNAL_FORMAT = "pidkd-sweep-journal"
JOURNAL_VERSION = 1
_HEADER_START = json.dumps({"format": JOURNAL_FORMAT}).encode()[:-1]  # how every journal begins
#: A row's key columns.
_KEY = ("checkpoint", "teacher_layer", "student_layer")


class Journal:
    """An append-only file of finished rows: a header line with the sweep's parameters, then one line
    ``{"source": fingerprint, "row": {...}}`` per row, so that a row is reused only for the same data.

    The file is locked (``flock``) while a sweep writes it: two sweeps never interleave their lines.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "pid.jsonl"
    >>> log = Journal(path, {"n_bins": 8})
    >>> log.add({"checkpoint": "e1", "teacher_layer": "t", "student_layer": "s", "red": 0.5}, source="abc")
    >>> log.close()
    >>> again = Journal(path, {"n_bins": 8})  # a rerun finds the finished row
    >>> again.rows[("e1", "t", "s")]
    ('abc', {'checkpoint': 'e1', 'teacher_layer': 't', 'student_layer': 's', 'red': 0.5})
    >>> again.close()
    """

    def __init__(self, path: str | os.PathLike[str], params: dict[str, Any]):
        self.path = Path(path)
        self.rows: dict[tuple[str, str, str], tuple[str, dict[str, Any]]] = {}
        self.skipped = 0  # unreadable row lines (their pairs run again)
        header = json.loads(json.dumps({"format": JOURNAL_FORMAT, "version": JOURNAL_VERSION, "params": params}))
        shown = repr(str(self.path))
        if self.path.is_dir():
            raise ValueError(f"sweep(): journal={shown} is a directory; give a file path.")
        if self.path.exists() and not self.path.is_file():
            raise ValueError(
                f"sweep(): journal={shown} is not a regular file (a device, a pipe or a socket); a journal is read "
                "back and appended to. Give a file path, or journal=None for no journal."
            )
        fresh = not self.path.exists() or self.path.stat().st_size == 0  # an empty file: a crash before the header
        self._file = open(self.path, "a+b")  # noqa: SIM115 (held open, and locked, until close())
        try:
            self._lock(shown)
            if fresh:
                self._file.truncate(0)
                self._write(header)
                return
            self._read(header, shown)
        except BaseException:
            self._file.close()
            raise

    def _lock(self, shown: str) -> None:
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            return
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ValueError(
                f"sweep(): journal={shown} is being written by another sweep; run one sweep per journal at a time."
            ) from None

    def _read(self, header: dict[str, Any], shown: str) -> None:
        self._file.seek(0)
        data = self._file.read()
        end = data.rfind(b"\n") + 1
        if end == 0 and _HEADER_START.startswith(data[: len(_HEADER_START)]):
            # Only the start of a header, cut off by a crash while it was written: no row was ever written
            # after it, so nothing is lost by starting the journal again.
            warnings.warn(
                f"sweep(): journal={shown} holds only a header line cut off by an interruption (no rows); it is "
                "started again.",
                RuntimeWarning,
                stacklevel=4,
            )
            self._file.truncate(0)
            self._write(header)
            return
        lines = data[:end].split(b"\n")[:-1]
        try:
            old = json.loads(lines[0]) if lines else None
        except ValueError:  # not JSON, not text
            old = None
        if not isinstance(old, dict) or old.get("format") != JOURNAL_FORMAT:
            raise ValueError(
                f"sweep(): journal={shown} exists and is not a pidkd sweep journal; pidkd appends only to its own "
                "journals. Give a new path (it is created) or the journal of an earlier run of this sweep."
            )
        if old.get("version") != JOURNAL_VERSION or old.get("params") != header["params"]:
            before = old.get("params") if isinstance(old.get("params"), dict) else {}
            keys = [k for k in {**before, **header["params"]} if before.get(k) != header["params"].get(k)]
            diff = {k: header["params"].get(k, "(default)") for k in keys}
            raise ValueError(
                f"sweep(): journal={shown} was written by a sweep with other parameters (now: {diff}); its rows "
                "would not match this run's. Rerun with the same parameters, or give a new journal path."
            )
        for number, line in enumerate(lines[1:], start=2):
            try:
                entry = json.loads(line)
                self.rows[tuple(entry["row"][k] for k in _KEY)] = (entry["source"], entry["row"])
            except (ValueError, KeyError, TypeError):
                self.skipped += 1
                warnings.warn(
                    f"sweep(): line {number} of journal={shown} is not a row pidkd wrote; it is ignored (its pair, if "
                    "any, runs again).",
                    RuntimeWarning,
                    stacklevel=4,
                )
        if end < len(data):  # a line cut off by an interruption: dropped, its pair runs again
            self._file.truncate(end)

    def _write(self, entry: dict[str, Any]) -> None:
        self._file.seek(0, os.SEEK_END)
        self._file.write((json.dumps(entry) + "\n").encode())
        self._file.flush()
        os.fsync(self._file.fileno())

    def add(self, row: dict[str, Any], source: str) -> None:
        self._write({"source": source, "row": row})

    def close(self) -> None:
        self._file.close()  # releases the lock


def fingerprint(source: str | Activations, content: bool = False) -> str:
    """What identifies a checkpoint's data: path, size and modification time of its files (with
    ``content``: path and a hash of their bytes), or the content of activations in memory. A journal
    row is reused only under the same fingerprint."""
    h = hashlib.sha256()
    if isinstance(source, Activations):
        arrays = [("labels", source.labels)] + [
            (f"{side}/{k}", v) for side in ("teacher", "student") for k, v in sorted(getattr(source, side).items())
        ]
        for key, v in arrays:
            h.update(f"{key}|".encode())
            if isinstance(v, NpyArray):
                h.update(fingerprint(str(v.path), content).encode())
            elif hasattr(v, "detach") or isinstance(v, np.ndarray):
                a = np.ascontiguousarray(_to_numpy(v))
                h.update(f"{a.dtype.str}{a.shape}|".encode())
                h.update(memoryview(a).cast("B"))
            else:  # another lazy array (Zarr): where it lives
                h.update(repr(v).encode())
        return h.hexdigest()
    path = Path(source)
    files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
    for f in files:
        if content:
            h.update(f"{f.absolute()}|{_file_hash(f)}\n".encode())
        else:
            st = f.stat()
            h.update(f"{f.absolute()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _file_hash(path: Path, block: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, read block by block (the file may be larger than memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()
