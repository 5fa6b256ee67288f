"""Saved activations: one checkpoint's labels and teacher/student layers, read without running code.

Layout, one file (or directory) per checkpoint:

- ``labels``: (N,) task labels;
- ``teacher/<layer>``: (N, ...) teacher activations of layer ``<layer>``;
- ``student/<layer>``: (N, ...) student activations.

Formats: ``.npz``, ``.pt`` and ``.safetensors`` files are read into memory. For activations
larger than memory, a directory is read lazily (row ranges on demand):

- a directory of ``.npy`` files: ``labels.npy``, ``teacher/<layer>.npy``, ``student/<layer>.npy``
  (write them batch by batch with ``numpy.lib.format.open_memmap``);
- a Zarr group (``pip install zarr``) with the arrays ``labels``, ``teacher/<layer>`` and
  ``student/<layer>``; Zarr is what Dask and xarray users keep chunked arrays in, locally or on
  object storage.

A ``.pt`` file may instead hold the nested dict ``{"labels": ..., "teacher": {layer: tensor},
"student": {layer: tensor}}``. Other key names are accepted through ``labels_key``,
``teacher_prefix`` and ``student_prefix``. Rows must be the same N samples in every array.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pidkd._optional import import_optional
from pidkd._validation import check_bool

__all__ = ["Activations", "NpyArray", "load_activations", "save_activations"]


@dataclass(frozen=True)
class Activations:
    """Labels and per-layer teacher and student activations of one checkpoint."""

    labels: NDArray[Any]
    teacher: dict[str, NDArray[np.float32]]
    student: dict[str, NDArray[np.float32]]
    name: str = ""


def _flat_keys(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(v, dict):
            out.update({f"{k}/{kk}": vv for kk, vv in v.items()})
        else:
            out[k] = v
    return out


def _to_numpy(v: Any) -> Any:
    """A numpy array of ``v``; lazy arrays (NpyArray, Zarr) stay lazy.

    Half-precision values (bfloat16, what CUDA autocast produces, which numpy has no type for, and
    float16) are upcast to float32, exactly: the quantizers compute in float64 anyway.
    """
    if _is_lazy(v):
        return v
    if hasattr(v, "detach"):  # a torch tensor (torch is not imported here)
        v = v.detach().cpu()
        if str(v.dtype) in ("torch.bfloat16", "torch.float16"):
            v = v.float()
        return v.numpy()
    arr = np.asarray(v)
    return arr.astype(np.float32) if arr.dtype == np.float16 else arr


def _safetensors_header(path: Path) -> tuple[int, dict[str, Any]]:
    """Where a ``.safetensors`` file's data start, and its JSON header: per tensor its dtype, shape and
    byte range within the data."""
    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        if size > path.stat().st_size - 8:
            raise ValueError(f"the header length {size} exceeds the file")
        header = json.loads(f.read(size))
    if not isinstance(header, dict):
        raise ValueError("the header is not a JSON object")
    header.pop("__metadata__", None)
    return 8 + size, header


def _read_bf16(path: Path, info: dict[str, Any], start: int) -> NDArray[np.float32]:
    """A BF16 tensor of a .safetensors file as float32 (a bfloat16 is the upper half of a float32)."""
    shape = tuple(int(n) for n in info["shape"])
    begin, end = (int(o) for o in info["data_offsets"])
    count = int(np.prod(shape, dtype=np.int64))
    if end - begin != 2 * count:
        raise ValueError(f"a BF16 tensor of shape {shape} takes {2 * count} bytes, not {end - begin}")
    raw = np.fromfile(path, dtype="<u2", count=count, offset=start + begin)
    if raw.size != count:
        raise ValueError("the file ends inside a tensor")
    return (raw.astype(np.uint32) << 16).view(np.float32).reshape(shape)


def _read_safetensors(path: Path, keys: Any = None) -> dict[str, Any]:
    """Tensors of a ``.safetensors`` file (all, or those in ``keys``) as numpy arrays.

    safetensors' numpy reader refuses BF16 tensors (numpy has no bfloat16); they are decoded here
    from the raw bytes and upcast to float32, like F16 tensors (see :func:`_to_numpy`).
    """
    safetensors = import_optional("safetensors", purpose="load_activations() of a .safetensors file")
    out: dict[str, Any] = {}
    header: tuple[int, dict[str, Any]] | None = None
    with safetensors.safe_open(str(path), framework="np") as f:
        for key in f.keys():  # noqa: SIM118 (safe_open is no mapping)
            if keys is not None and key not in keys:
                continue
            if f.get_slice(key).get_dtype() == "BF16":
                header = header or _safetensors_header(path)
                out[key] = _read_bf16(path, header[1][key], header[0])
            else:
                out[key] = _to_numpy(f.get_tensor(key))
    return out


def _read_npz(path: Path) -> dict[str, Any]:
    """Arrays of an ``.npz`` archive; pickled (object) arrays are refused, never loaded."""
    try:
        f = np.load(path, allow_pickle=False)
    except ValueError:  # numpy's message here suggests allow_pickle=True, which would run code
        raise ValueError(
            f"load_activations() could not read {str(path)!r}: it is not a numpy .npz archive (numpy could "
            "only read it as a pickle, and pidkd never loads pickles: they can run code). Save activations "
            "with pidkd.save_activations or np.savez."
        ) from None
    if not isinstance(f, np.lib.npyio.NpzFile):
        raise ValueError(
            f"load_activations() could not read {str(path)!r}: it holds a single array (.npy format), not an "
            ".npz archive with the keys labels, teacher/<layer>, student/<layer>. Save activations with "
            "pidkd.save_activations."
        )
    with f:
        try:
            return {k: f[k] for k in f.files}
        except ValueError:
            raise ValueError(
                f"load_activations() could not read {str(path)!r}: it holds object arrays, which numpy stores "
                "as pickles; pidkd never loads pickles (they can run code). Store numeric arrays "
                "(np.asarray(x, dtype=np.float32))."
            ) from None


class NpyArray:
    """A ``.npy`` file whose rows are read on demand (``x[a:b]``, ``x[rows]``, ``np.asarray(x)``).

    Rows of a C-ordered array (what ``np.save`` writes) are read with plain file reads, not through
    a memory map (a map keeps every page it has touched resident), so a file larger than memory
    read chunk by chunk holds one chunk at a time. Other keys (tuples, Fortran-ordered files, 0-d
    arrays) go through a memory map that is closed again after the read. Object arrays are
    refused: numpy stores them as pickles, which can run code.

    Parameters
    ----------
    path : str or Path
        A ``.npy`` file.

    Attributes
    ----------
    shape : tuple of int
    dtype : numpy.dtype

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "x.npy")
    >>> np.save(path, np.arange(12.0).reshape(6, 2))
    >>> x = NpyArray(path)
    >>> x.shape, x[4:].tolist(), x[np.array([5, 0])].tolist()
    ((6, 2), [[8.0, 9.0], [10.0, 11.0]], [[10.0, 11.0], [0.0, 1.0]])
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        m = self._map()
        self.shape: tuple[int, ...] = tuple(m.shape)
        self.dtype = m.dtype
        self._offset = int(m.offset)
        self._c_order = bool(m.flags.c_contiguous)
        del m

    def _map(self) -> np.ndarray:
        try:
            return np.load(self.path, mmap_mode="r", allow_pickle=False)
        except ValueError as err:
            if "object" in str(err).lower():
                raise ValueError(
                    f"{str(self.path)!r} holds Python objects, not a numeric array (object arrays are pickles, which "
                    "pidkd never loads: they can run code). Store numeric arrays (np.asarray(x, dtype=np.float32))."
                ) from None
            raise ValueError(
                f"{str(self.path)!r} could not be read as a .npy array ({err}); is it truncated?"
            ) from None

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> NDArray[Any]:
        n = self.shape[0] if self.shape else 0
        if key is Ellipsis and self.ndim:
            key = slice(None)
        if isinstance(key, slice) and key.indices(n)[2] != 1:
            key = np.arange(*key.indices(n))
        if isinstance(key, np.ndarray) and key.dtype == bool and key.shape == (n,):
            key = np.flatnonzero(key)
        rows = key if isinstance(key, (slice, tuple)) or key is Ellipsis else np.asarray(key)
        plain = isinstance(rows, slice) or (isinstance(rows, np.ndarray) and rows.dtype.kind in "iu")
        if not self._c_order or self.ndim == 0 or not plain:
            m = self._map()  # anything but rows of a C-ordered array: numpy's own indexing
            try:
                return np.array(m[key])
            finally:
                del m
        if isinstance(rows, slice):
            start, stop, _ = rows.indices(n)
            rows = np.arange(start, max(start, stop))
        flat = rows.reshape(-1)
        if flat.size and (flat.min() < -n or flat.max() >= n):
            raise IndexError(f"row index out of range for {self!r}")
        flat = np.where(flat < 0, flat + n, flat)
        out = np.empty((flat.size, *self.shape[1:]), dtype=self.dtype)
        row_bytes = self.dtype.itemsize * int(np.prod(self.shape[1:], dtype=np.int64))
        order = np.argsort(flat, kind="stable")
        ordered = flat[order]
        cuts = np.flatnonzero(np.diff(ordered) != 1) + 1  # runs of consecutive rows: one read each
        with open(self.path, "rb") as f:
            for a, b in zip(np.r_[0, cuts], np.r_[cuts, flat.size]) if flat.size else ():
                f.seek(self._offset + int(ordered[a]) * row_bytes)
                buf = f.read(int(b - a) * row_bytes)
                out[order[a:b]] = np.frombuffer(buf, dtype=self.dtype).reshape((b - a, *self.shape[1:]))
        return out.reshape((*rows.shape, *self.shape[1:]))

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> NDArray[Any]:
        out = self[...]
        return out if dtype is None else out.astype(dtype)

    def __repr__(self) -> str:
        return f"NpyArray({str(self.path)!r}, shape={self.shape}, dtype={self.dtype})"


def _is_lazy(v: Any) -> bool:
    """An array read on demand (a .npy file or a Zarr array), kept lazy by load_activations()."""
    return isinstance(v, NpyArray) or type(v).__module__.startswith("zarr")


def _read_npy_dir(path: Path) -> dict[str, Any]:
    """Lazy arrays of a directory of .npy files, keyed by their paths without the suffix."""
    return {f.relative_to(path).with_suffix("").as_posix(): NpyArray(f) for f in sorted(path.rglob("*.npy"))}


def _read_zarr(path: Path) -> dict[str, Any]:
    """Lazy arrays of a Zarr group; arrays of Python objects (stored as pickles) are refused before any read."""
    zarr = import_optional("zarr", purpose="load_activations() of a Zarr group")
    if int(zarr.__version__.split(".")[0]) < 3:
        raise ImportError(
            f"load_activations() of a Zarr group needs zarr 3 or later (Python 3.11+); zarr {zarr.__version__} is "
            "installed. Upgrade it (pip install 'zarr>=3'), or store the activations as a directory of .npy files."
        )
    try:
        group = zarr.open_group(str(path), mode="r")
        members = sorted(group.members(max_depth=None), key=lambda m: m[0])  # a stable layer order
    except Exception as exc:
        if type(exc).__name__ == "ContainsArrayError":
            raise ValueError(
                f"load_activations(): {str(path)!r} is one Zarr array, not a Zarr group with the arrays labels, "
                "teacher/<layer> and student/<layer>; write the activations with zarr.open_group(...)."
            ) from None
        detail = " ".join(str(exc).split())
        raise ValueError(
            f"load_activations() could not read {str(path)!r} as a Zarr group ({type(exc).__name__}: {detail}); "
            "is a zarr.json (or .zgroup/.zarray) file in it corrupt or truncated?"
        ) from None
    arrays = {name: a for name, a in members if hasattr(a, "shape") and hasattr(a, "dtype")}
    _warn_missing_chunks(path, arrays)
    bad = sorted(name for name, a in arrays.items() if np.dtype(a.dtype).kind not in "biufUS")
    if bad:
        raise ValueError(
            f"load_activations(): the Zarr group {str(path)!r} holds non-numeric arrays {bad}; pidkd never decodes "
            "object arrays (their codecs unpickle, which can run code). Store numeric arrays."
        )
    return arrays


def _warn_missing_chunks(path: Path, arrays: dict[str, Any]) -> None:
    """Warn about chunks that are not in the store: Zarr reads them as the fill value, silently."""
    missing = {}
    for name, a in arrays.items():
        expected, found = getattr(a, "nchunks", None), getattr(a, "nchunks_initialized", None)
        if isinstance(expected, int) and isinstance(found, int) and found < expected:
            missing[name] = f"{expected - found} of {expected}"
    if missing:
        shown = ", ".join(f"{k}: {v}" for k, v in missing.items())
        warnings.warn(
            f"load_activations(): the Zarr group {str(path)!r} lacks chunks ({shown}); Zarr reads a missing chunk "
            "as the array's fill value. If they were never written (an interrupted or partial copy), the results "
            "are wrong: write them again. If the writer skipped chunks equal to the fill value (Zarr's "
            "write_empty_chunks=False), they are right.",
            RuntimeWarning,
            stacklevel=5,
        )


def _read(path: Path, suffix: str) -> dict[str, Any]:
    """The raw key -> array mapping of one file or directory, loaded without executing code."""
    if suffix == "zarr":
        return _read_zarr(path)
    if suffix == "dir":
        return _read_npy_dir(path)
    if suffix == ".npz":
        return _read_npz(path)
    if suffix == ".pt":
        torch = import_optional("torch", purpose="load_activations() of a .pt file")
        data = torch.load(path, map_location="cpu", weights_only=True)  # never unpickles code
        if not isinstance(data, dict):
            raise ValueError(
                f"load_activations() could not read {str(path)!r}: it holds a {type(data).__name__}, not a dict "
                "of tensors with the keys labels, teacher/<layer>, student/<layer> (or the nested "
                "{'teacher': {layer: tensor}, ...})."
            )
        return _flat_keys(data)
    return _read_safetensors(path)


def _refused_pickle(exc: BaseException) -> str | None:
    """What ``torch.load(weights_only=True)`` refused to unpickle, or None for another error.

    torch's own message advises ``weights_only=False``, which would run the file's code: it is
    never passed on; only the refused object's name is.
    """
    text = str(exc)
    if "weights_only" not in text and "Weights only" not in text:
        return None
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        return f"the global {found.group(1)}"
    found = re.search(r"WeightsUnpickler error: ([^\n.]*)", text)
    return found.group(1).strip() if found else "an object torch's safe loader does not allow"


def _format_of(path: Path) -> str:
    """``.npz``, ``.pt``, ``.safetensors``, ``"zarr"`` (a Zarr group) or ``"dir"`` (a directory of .npy files)."""
    if path.is_dir():
        if (path / "zarr.json").exists() or (path / ".zgroup").exists():
            return "zarr"
        if (path / "labels.npy").exists():
            return "dir"
        raise ValueError(
            f"load_activations(): {str(path)!r} is a directory but neither a Zarr group nor a directory of .npy "
            "files with labels.npy, teacher/<layer>.npy and student/<layer>.npy; give one activations file or "
            "such a directory."
        )
    suffix = path.suffix.lower()
    if suffix not in (".npz", ".pt", ".safetensors"):
        raise ValueError(
            f"load_activations() reads .npz, .pt or .safetensors files, directories of .npy files and Zarr groups; "
            f"got {path.name!r}."
        )
    return suffix


def load_activations(
    path: str | Path,
    *,
    labels_key: str = "labels",
    teacher_prefix: str = "teacher/",
    student_prefix: str = "student/",
) -> Activations:
    """Read one checkpoint's labels and activations from a file or a directory (see the module notes).

    ``.npz``, ``.pt`` and ``.safetensors`` files are read into memory. A directory of ``.npy``
    files or a Zarr group is read lazily: its arrays are :class:`NpyArray` or Zarr arrays that
    read rows on demand (``np.asarray(x)`` reads all), so :func:`~pidkd.estimators.sweep` can
    quantize them chunk by chunk; only the labels are read at once.

    Nothing in the file is executed: ``.npz`` and ``.npy`` files are read with
    ``allow_pickle=False``, ``.pt`` files with ``torch.load(..., weights_only=True)``, and Zarr
    arrays of Python objects are refused, so object arrays and pickled code are refused with an
    error instead of loaded.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file for an
    unreadable, corrupt or wrongly structured file, for missing labels or teacher/student arrays
    (with the available keys), and for arrays whose row count differs from the labels'.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"load_activations(): no such file {str(path)!r}.")
    suffix = _format_of(path)
    try:
        data = _read(path, suffix)
    except (ValueError, ImportError):
        raise
    except Exception as exc:  # corrupt, truncated or malicious files: zip, pickle, torch, safetensors errors
        refused = _refused_pickle(exc)
        if refused is not None:
            raise ValueError(
                f"load_activations() could not read {str(path)!r}: it holds Python objects that are not tensors "
                f"({refused}); pidkd reads .pt files with torch.load(weights_only=True) and never unpickles other "
                "objects, which can run code. Save a dict of tensors (torch.save({'labels': ..., 'teacher': {...}, "
                "'student': {...}}))."
            ) from None
        detail = " ".join(str(exc).split())  # one line
        raise ValueError(
            f"load_activations() could not read {str(path)!r} as {suffix} ({type(exc).__name__}: {detail}). "
            "The file is corrupt, truncated or not in this format."
        ) from None
    nested = sorted(k for k, v in data.items() if isinstance(v, dict))
    if nested:
        raise ValueError(
            f"load_activations(): {path.name} nests dicts more than one level deep (under {nested}); give "
            "{'labels': tensor, 'teacher': {layer: tensor}, 'student': {layer: tensor}} or flat keys."
        )
    available = sorted(data)
    if labels_key not in data:
        raise ValueError(
            f"load_activations(): {path.name} has no labels key {labels_key!r}. Available keys: "
            f"{available}. Pass labels_key=... to name it."
        )

    def array(key: str) -> Any:
        try:
            return _to_numpy(data[key])
        except (TypeError, RuntimeError) as exc:  # a dtype numpy has no type for (float8, quantized, ...)
            raise ValueError(
                f"load_activations(): {path.name} holds {key!r} as {getattr(data[key], 'dtype', type(data[key]))}, "
                f"which pidkd cannot convert to a numpy array ({exc}); store float32, float16, bfloat16 or integers."
            ) from None

    teacher = {k[len(teacher_prefix) :]: array(k) for k in data if k.startswith(teacher_prefix)}
    student = {k[len(student_prefix) :]: array(k) for k in data if k.startswith(student_prefix)}
    if not teacher or not student:
        missing = "teacher" if not teacher else "student"
        prefix = teacher_prefix if not teacher else student_prefix
        raise ValueError(
            f"load_activations(): {path.name} has no {missing} activations (keys starting with "
            f"{prefix!r}). Available keys: {available}. Pass {missing}_prefix=... to name them."
        )
    labels = np.asarray(array(labels_key)).reshape(-1)
    # Each side on its own: a layer name may occur on both sides (the same architecture).
    bad = {
        f"{prefix}{k}": v.shape[0] if v.ndim else "a scalar"
        for prefix, side in ((teacher_prefix, teacher), (student_prefix, student))
        for k, v in side.items()
        if v.ndim == 0 or v.shape[0] != labels.size
    }
    if bad:
        raise ValueError(
            f"load_activations(): {path.name} has {labels.size} labels but arrays with other row "
            f"counts: {bad}. Every array must hold the same samples in the same order."
        )
    return Activations(labels, teacher, student, name=path.stem)


def save_activations(path: str | Path, acts: Activations, *, overwrite: bool = False) -> Path:
    """Write activations in pidkd's ``.npz`` layout (see the module notes); returns the path written.

    ``.npz`` is appended to a path without it (as numpy does), and the returned path is the file
    that exists. An existing file is replaced only with ``overwrite=True``.
    """
    path = Path(path)
    if path.suffix.lower() != ".npz":
        path = path.with_name(path.name + ".npz")
    if path.exists() and not check_bool(overwrite, name="overwrite", caller="save_activations()"):
        raise FileExistsError(
            f"save_activations(): {str(path)!r} exists; pass overwrite=True to replace it, or choose another path."
        )
    arrays = {"labels": np.asarray(acts.labels)}
    arrays.update({f"teacher/{k}": np.asarray(v) for k, v in acts.teacher.items()})
    arrays.update({f"student/{k}": np.asarray(v) for k, v in acts.student.items()})
    np.savez_compressed(path, **arrays)
    return path
