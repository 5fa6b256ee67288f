"""Saved activations -> PID per (teacher layer, student layer, checkpoint), as a pandas table.

File format (``.npz``, ``.pt`` or ``.safetensors``), one file per checkpoint:

- ``labels``: (N,) task labels;
- ``teacher/<layer>``: (N, ...) teacher activations of layer ``<layer>``;
- ``student/<layer>``: (N, ...) student activations.

A ``.pt`` file may instead hold the nested dict ``{"labels": ..., "teacher": {layer: tensor},
"student": {layer: tensor}}``. Other key names are accepted through ``labels_key``,
``teacher_prefix`` and ``student_prefix``. Rows must be the same N samples in every array.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pidkd._optional import import_optional
from pidkd._validation import check_base, check_bool, check_int
from pidkd.estimators.quantize import Quantizer, fresh_quantizer
from pidkd.estimators.samples import (
    MIN_SAMPLES_PER_CELL,
    SampleSizeWarning,
    check_bias_correction,
    pid_from_samples,
)

__all__ = ["Activations", "load_activations", "save_activations", "sweep"]


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


def _to_numpy(v: Any) -> NDArray[Any]:
    return v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)


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


def _read(path: Path, suffix: str) -> dict[str, Any]:
    """The raw key -> array mapping of one file, loaded without executing code."""
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
    st = import_optional("safetensors.numpy", purpose="load_activations() of a .safetensors file")
    return st.load_file(str(path))


def load_activations(
    path: str | Path,
    *,
    labels_key: str = "labels",
    teacher_prefix: str = "teacher/",
    student_prefix: str = "student/",
) -> Activations:
    """Read one checkpoint's labels and activations from ``.npz``, ``.pt`` or ``.safetensors``.

    Nothing in the file is executed: ``.npz`` archives are read with ``allow_pickle=False`` and
    ``.pt`` files with ``torch.load(..., weights_only=True)``, so object arrays and pickled code
    are refused with an error instead of loaded.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file for an
    unreadable, corrupt or wrongly structured file, for missing labels or teacher/student arrays
    (with the available keys), and for arrays whose row count differs from the labels'.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"load_activations(): no such file {str(path)!r}.")
    if path.is_dir():
        raise ValueError(f"load_activations(): {str(path)!r} is a directory; give the path of one activations file.")
    suffix = path.suffix.lower()
    if suffix not in (".npz", ".pt", ".safetensors"):
        raise ValueError(f"load_activations() reads .npz, .pt or .safetensors files; got {path.name!r}.")
    try:
        data = _read(path, suffix)
    except (ValueError, ImportError):
        raise
    except Exception as exc:  # corrupt, truncated or malicious files: zip, pickle, torch, safetensors errors
        raise ValueError(
            f"load_activations() could not read {str(path)!r} as {suffix} ({type(exc).__name__}: {exc}). "
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
    teacher = {k[len(teacher_prefix) :]: _to_numpy(v) for k, v in data.items() if k.startswith(teacher_prefix)}
    student = {k[len(student_prefix) :]: _to_numpy(v) for k, v in data.items() if k.startswith(student_prefix)}
    if not teacher or not student:
        missing = "teacher" if not teacher else "student"
        prefix = teacher_prefix if not teacher else student_prefix
        raise ValueError(
            f"load_activations(): {path.name} has no {missing} activations (keys starting with "
            f"{prefix!r}). Available keys: {available}. Pass {missing}_prefix=... to name them."
        )
    labels = _to_numpy(data[labels_key]).reshape(-1)
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


def _check_layers(requested: Sequence[str] | None, available: Iterable[str], side: str, name: str) -> list[str]:
    avail = list(available)
    if requested is None:
        return avail
    if isinstance(requested, str):  # one layer name, not a sequence of one-letter names
        requested = [requested]
    missing = [layer for layer in requested if layer not in avail]
    if missing:
        raise ValueError(f"sweep(): {side} layer(s) {missing} not in checkpoint {name!r}; available: {avail}.")
    return list(requested)


def _checkpoint_names(items: Sequence[str | Path | Activations]) -> list[str]:
    """The ``checkpoint`` column: file stems, or the paths where two stems coincide; never ambiguous."""
    stems = [item.name if isinstance(item, Activations) else Path(item).stem for item in items]
    if len(set(stems)) < len(stems):
        stems = [item.name if isinstance(item, Activations) else str(item) for item in items]
    seen = {n for n in stems if stems.count(n) > 1}
    if seen:
        raise ValueError(
            f"sweep() got checkpoints that would share a name in the table: {sorted(seen)}. Give each file once, "
            "and distinct Activations(name=...)."
        )
    return stems


def _one(job: tuple[Any, ...]) -> dict[str, Any]:
    name, t_layer, s_layer, y, t_codes, s_codes, kw = job
    with warnings.catch_warnings():  # sweep() sums these up in one warning
        warnings.simplefilter("ignore", SampleSizeWarning)
        res = pid_from_samples(y, t_codes, s_codes, **kw)
    return {"checkpoint": name, "teacher_layer": t_layer, "student_layer": s_layer, **res.as_dict()}


def _codes_of(x: Any, quantizer: Quantizer | None) -> NDArray[np.int64]:
    q = fresh_quantizer(quantizer)
    return q.fit_transform(x)


def sweep(
    sources: Sequence[str | Path | Activations] | str | Path | Activations,
    *,
    teacher_layers: Sequence[str] | None = None,
    student_layers: Sequence[str] | None = None,
    quantizer: Quantizer | None = None,
    n_bootstrap: int = 100,
    n_permutations: int = 10,
    confidence: float = 0.9,
    base: float = 2.0,
    n_jobs: int = 1,
    progress: bool = True,
    rng: int = 0,
    bias_correction: str = "jackknife",
) -> Any:
    """PID of every (checkpoint, teacher layer, student layer) as a tidy pandas DataFrame.

    Parameters
    ----------
    sources : path, Activations, or a sequence of them
        One entry per checkpoint, in order.
    teacher_layers, student_layers : str or sequence of str, optional
        Layers to pair (default: all in the file).
    quantizer : Quantizer, optional
        Template fitted separately on every array (default: k-means to 10 clusters after L2
        normalisation and PCA to 10 components, the RID paper's pipeline).
    n_bootstrap, n_permutations, confidence, base, rng, bias_correction
        As in :func:`pidkd.estimators.pid_from_samples`.
    n_jobs : int, default 1
        Parallel processes (joblib); -1 uses all cores.
    progress : bool, default True
        Show a progress bar (tqdm).

    Returns
    -------
    pandas.DataFrame
        One row per pair and checkpoint: red, uni_t, uni_s, syn (estimates after
        ``bias_correction``, named in the ``bias_correction`` column), their intervals (``*_lo``,
        ``*_hi``), the plug-in atoms (``*_plugin``), null levels (``*_null``), the mutual
        informations, n_samples, samples per occupied cell and ``reliable``, alphabet sizes, solver
        status and gap. ``df.to_csv(...)`` / ``df.to_parquet(...)`` save it. Pairs with too few
        samples per occupied cell are summed up in one :class:`SampleSizeWarning`.
    """
    pd = import_optional("pandas", purpose="sweep()")
    caller = "sweep()"
    base = check_base(base, caller=caller)  # checked before the (long) loading and quantizing
    progress = check_bool(progress, name="progress", caller=caller)
    n_bootstrap = check_int(n_bootstrap, name="n_bootstrap", caller=caller, minimum=0)
    check_bias_correction(bias_correction, n_bootstrap, caller)
    if check_int(n_jobs, name="n_jobs", caller=caller, minimum=-(os.cpu_count() or 1)) == 0:
        raise ValueError(f"The 'n_jobs' parameter of {caller} must be a non-zero int (-1: all cores). Got 0 instead.")
    items = [sources] if isinstance(sources, (str, Path, Activations)) else list(sources)
    if not items:
        raise ValueError("sweep() needs at least one checkpoint (a path or an Activations).")
    kw = {
        "n_bootstrap": n_bootstrap,
        "n_permutations": n_permutations,
        "confidence": confidence,
        "base": base,
        "rng": rng,
        "bias_correction": bias_correction,
    }
    jobs = []
    for item, name in zip(items, _checkpoint_names(items)):
        acts = item if isinstance(item, Activations) else load_activations(item)
        acts = replace(acts, name=name)
        tl = _check_layers(teacher_layers, acts.teacher, "teacher", acts.name)
        sl = _check_layers(student_layers, acts.student, "student", acts.name)
        # Each layer is quantized once per checkpoint, then paired with every layer of the other side.
        t_codes = {a: _codes_of(acts.teacher[a], quantizer) for a in tl}
        s_codes = {b: _codes_of(acts.student[b], quantizer) for b in sl}
        jobs += [(acts.name, a, b, acts.labels, t_codes[a], s_codes[b], kw) for a in tl for b in sl]
    if n_jobs == 1:
        tqdm = import_optional("tqdm", purpose="sweep(progress=True)").tqdm if progress else None
        it = tqdm(jobs, desc="PID sweep", unit="pair") if tqdm else jobs
        rows = [_one(j) for j in it]
    else:
        joblib = import_optional("joblib", purpose="sweep(n_jobs != 1)")
        rows = joblib.Parallel(n_jobs=n_jobs, verbose=5 if progress else 0)(joblib.delayed(_one)(j) for j in jobs)
    df = pd.DataFrame(rows)
    few = df.loc[~df["reliable"]]
    if len(few):
        worst = few.loc[few["samples_per_cell"].idxmin()]
        warnings.warn(
            SampleSizeWarning(
                f"sweep: {len(few)} of {len(df)} rows have fewer than {MIN_SAMPLES_PER_CELL:g} samples per occupied "
                f"cell (column 'reliable' is False; the fewest: {worst['samples_per_cell']:.2g} in "
                f"{worst['checkpoint']}, {worst['teacher_layer']} x {worst['student_layer']}). Their estimates keep "
                "much of the plug-in bias: use more samples or fewer codes."
            ),
            stacklevel=2,
        )
    return df
