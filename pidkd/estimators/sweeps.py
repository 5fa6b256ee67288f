"""Sweeps: the PID of every (checkpoint, teacher layer, student layer) as one table.

A sweep is a small task graph. Per checkpoint, the labels are read and every layer it needs is
read and quantized once (chunk by chunk, so a layer may be larger than memory: see
:func:`~pidkd.estimators.quantize.quantize_in_chunks`); then one PID task per (teacher layer,
student layer) pair estimates the PID from the codes. Three engines run the same tasks and give
the same numbers:

- serial (the default): no extra packages, no cluster;
- ``n_jobs``: joblib processes on this machine (quantizing runs here, the PID tasks in parallel);
- ``client``: a ``dask.distributed`` client (``pip install 'pidkd[distributed]'``): every task
  runs on the cluster's workers, which read the activations from their paths (give paths the
  workers can see, e.g. on shared storage; only codes travel between workers, never raw
  activations).

A ``journal`` file gets one line per finished row as it finishes; a rerun with the same journal
skips the rows already in it, so an interrupted sweep loses nothing. A task that fails for a
data reason is reported with its checkpoint and layers while the others run on.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

from pidkd._optional import import_optional
from pidkd._validation import check_base, check_bool, check_choice, check_int, check_number
from pidkd.estimators import journal as _journal
from pidkd.estimators.activations import (
    Activations,
    _format_of,
    _read_safetensors,
    _to_numpy,
    load_activations,
)
from pidkd.estimators.api import SHIPPED, resolve_measure
from pidkd.estimators.broja.measure import BROJA
from pidkd.estimators.journal import _KEY, JOURNAL_FORMAT, Journal
from pidkd.estimators.quantize import FIT_SAMPLES, Quantizer, quantize_in_chunks
from pidkd.estimators.samples import (
    MIN_SAMPLES_PER_CELL,
    SampleSizeWarning,
    check_bias_correction,
    pid_from_samples,
)
from pidkd.exceptions import SweepError

__all__ = ["JOURNAL_FORMAT", "TIMING_COLUMNS", "sweep"]

#: Columns that measure time: the only ones that differ between two runs of one sweep.
TIMING_COLUMNS = ("solve_time",)


@dataclass(frozen=True)
class _Checkpoint:
    name: str
    source: str | Activations  # an absolute path (read where the task runs) or activations in memory
    teacher_layers: tuple[str, ...]
    student_layers: tuple[str, ...]


@dataclass(frozen=True)
class _Pair:
    index: int  # the row's place in the table
    checkpoint: str
    teacher_layer: str
    student_layer: str

    @property
    def key(self) -> tuple[str, str, str]:
        return self.checkpoint, self.teacher_layer, self.student_layer


# ---------------------------------------------------------------------------------------------
# The tasks (module-level functions: they run in joblib or Dask worker processes).


def _read_array(source: str | Activations, key: str) -> Any:
    """One array of a checkpoint (``labels``, ``teacher/<layer>``, ``student/<layer>``), read lazily where possible."""
    if isinstance(source, Activations):
        return _pick(source, key)
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(
            f"{str(path)!r} does not exist on {socket.gethostname()}: the tasks of a sweep read the activations "
            "from their paths, so with a Dask cluster they must be on storage every worker (and the client) sees."
        )
    fmt = _format_of(path)
    if fmt == ".npz":  # only this member, not the whole archive
        with np.load(path, allow_pickle=False) as f:
            if key in f.files:
                return _to_numpy(f[key])
    if fmt == ".safetensors":  # only this tensor
        with contextlib.suppress(Exception):  # load_activations() below names what is wrong
            found = _read_safetensors(path, {key})
            if key in found:
                return found[key]
    return _pick(load_activations(path), key)  # lazy for directories; a precise error for a bad file


def _pick(acts: Activations, key: str) -> Any:
    """``acts.labels`` for ``"labels"``, else the array of ``"<side>/<layer>"``."""
    if key == "labels":
        return acts.labels
    side, layer = key.split("/", 1)
    return getattr(acts, side)[layer]


def _labels_task(source: str | Activations) -> NDArray[Any]:
    return np.asarray(_read_array(source, "labels")).reshape(-1)


def _codes_task(
    source: str | Activations, side: str, layer: str, quantizer: Quantizer | None, fit_samples: int
) -> NDArray[np.int64]:
    return quantize_in_chunks(_read_array(source, f"{side}/{layer}"), quantizer, fit_samples=fit_samples)


def _pid_task(
    pair: _Pair, labels: NDArray[Any], t_codes: NDArray[np.int64], s_codes: NDArray[np.int64], kw: dict[str, Any]
) -> dict[str, Any]:
    for side, layer, codes in (("teacher", pair.teacher_layer, t_codes), ("student", pair.student_layer, s_codes)):
        if len(codes) != len(labels):
            raise ValueError(
                f"{side} layer {layer!r} has {len(codes)} rows but the checkpoint has {len(labels)} labels; every "
                "array must hold the same samples in the same order."
            )
    # One BLAS thread in every engine: multithreaded BLAS sums in an order that depends on the thread
    # count (Dask and joblib workers run one), and the table must not depend on the engine.
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        warnings.simplefilter("ignore", SampleSizeWarning)  # sweep() sums these up in one warning
        res = pid_from_samples(labels, t_codes, s_codes, progress=False, **kw)  # sweep() has its own bar
    row = dict(zip(_KEY, pair.key)) | res.as_dict()
    return json.loads(json.dumps(row, default=_plain))  # the values a journal gives back, exactly


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"sweep(): cannot store a {type(v).__name__} in a row")


@dataclass(frozen=True)
class _Failed:
    """Why a pair failed, as text: exceptions themselves need not survive pickling between processes."""

    error: str

    @classmethod
    def of(cls, err: BaseException) -> _Failed:
        return cls(f"{type(err).__name__}: {err}")


def _guarded(
    pair: _Pair, labels: Any, t_codes: Any, s_codes: Any, kw: dict[str, Any], threads: int = 0
) -> tuple[_Pair, dict[str, Any] | _Failed]:
    """(pair, row) or (pair, why it failed): one failed pair does not stop a joblib batch.

    ``threads``: the Numba threads of this process (joblib workers get 1: the processes already
    share the cores, and their solver kernels would otherwise each start a thread per core).
    """
    if threads:
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        return pair, _pid_task(pair, labels, t_codes, s_codes, kw)
    except Exception as err:  # reported with its checkpoint and layers by sweep()
        _reraise_interrupt(err)
        return pair, _Failed.of(err)


def _reraise_interrupt(err: BaseException) -> None:
    """Raise KeyboardInterrupt if ``err`` comes from one (Numba wraps a Ctrl-C in a SystemError):
    an interruption stops the sweep, it is never recorded as a failed pair."""
    from pidkd.estimators.broja._kernels import interrupted  # imports Numba: only when something failed

    if interrupted(err):
        raise KeyboardInterrupt from err


# ---------------------------------------------------------------------------------------------
# Planning: checkpoints, layers and pairs, from file listings (no activations are read here).


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


def _layers_of(source: str | Activations) -> tuple[list[str], list[str]]:
    """Teacher and student layer names of a checkpoint; an .npz archive is only listed, not read."""
    if isinstance(source, Activations):
        return list(source.teacher), list(source.student)
    path = Path(source)
    if path.is_file() and path.suffix.lower() == ".npz":
        try:
            with np.load(path, allow_pickle=False) as f:
                keys = list(f.files)
        except Exception:  # load_activations() below names what is wrong
            keys = []
        teacher = [k[len("teacher/") :] for k in keys if k.startswith("teacher/")]
        student = [k[len("student/") :] for k in keys if k.startswith("student/")]
        if "labels" in keys and teacher and student:
            return teacher, student
    acts = load_activations(path)
    return list(acts.teacher), list(acts.student)


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


def _plan(
    items: list[str | Path | Activations], teacher_layers: Any, student_layers: Any
) -> tuple[list[_Checkpoint], list[_Pair]]:
    checkpoints, pairs = [], []
    for item, name in zip(items, _checkpoint_names(items)):
        if isinstance(item, Activations):
            source: str | Activations = replace(item, name=name)
        else:
            path = Path(item)
            if not path.exists():
                raise FileNotFoundError(f"sweep(): no such file {str(path)!r}.")
            source = str(path.absolute())  # workers may run elsewhere; symlinks kept as the user sees them
        teacher, student = _layers_of(source)
        tl = _check_layers(teacher_layers, teacher, "teacher", name)
        sl = _check_layers(student_layers, student, "student", name)
        checkpoints.append(_Checkpoint(name, source, tuple(tl), tuple(sl)))
        pairs += [_Pair(len(pairs) + i, name, a, b) for i, (a, b) in enumerate((a, b) for a in tl for b in sl)]
    return checkpoints, pairs


def _params(kw: dict[str, Any], quantizer: Quantizer | None, fit_samples: int, fingerprint: str) -> dict[str, Any]:
    q = quantizer or Quantizer()
    qp = {k: getattr(q, k) for k in ("strategy", "n_bins", "n_components", "normalize", "random_state", "n_init")}
    params = kw | {"quantizer": qp, "fit_samples": fit_samples}
    # The default fingerprint and measure are not written, so that journals from before the options stay usable.
    m = params.pop("measure")
    if m != BROJA():
        shipped = type(m) in SHIPPED.values() and not isinstance(m, BROJA)
        params["measure"] = m.name if shipped else f"{type(m).__module__}.{type(m).__qualname__}: {m!r}"
    return params if fingerprint == "stat" else params | {"fingerprint": fingerprint}


# ---------------------------------------------------------------------------------------------
# The engines.


def _input(source: str | Activations, key: tuple[str, str], quantizer: Quantizer | None, fit_samples: int) -> Any:
    """The labels (``("labels", "")``) or one layer's codes, or the exception that reading them raised
    (every pair that needs this input then fails with it)."""
    try:
        if key[0] == "labels":
            return _labels_task(source)
        return _codes_task(source, key[0], key[1], quantizer, fit_samples)
    except Exception as err:
        _reraise_interrupt(err)
        return err


def _run_local(
    checkpoints: list[_Checkpoint],
    todo: list[_Pair],
    kw: dict[str, Any],
    quantizer: Quantizer | None,
    fit_samples: int,
    n_jobs: int,
    done: Callable[[_Pair, Any], None],
) -> None:
    """Checkpoint after checkpoint: quantize its layers here, then its PID tasks here (n_jobs=1) or in
    joblib processes, which already work on one checkpoint's pairs while the next one is quantized."""

    def jobs() -> Iterator[tuple[Any, ...]]:
        for ck in checkpoints:
            pairs = [p for p in todo if p.checkpoint == ck.name]
            if not pairs:
                continue
            needed = {("labels", "")}
            needed |= {("teacher", p.teacher_layer) for p in pairs} | {("student", p.student_layer) for p in pairs}
            inputs = {key: _input(ck.source, key, quantizer, fit_samples) for key in sorted(needed)}
            for p in pairs:
                args = (inputs["labels", ""], inputs["teacher", p.teacher_layer], inputs["student", p.student_layer])
                failed = next((a for a in args if isinstance(a, Exception)), None)
                if failed is None:
                    yield p, *args
                else:  # an input could not be read or quantized: the pair fails here, never dispatched
                    failures.append((p, _Failed.of(failed)))

    failures: list[tuple[_Pair, _Failed]] = []
    if n_jobs == 1:
        results: Iterable[tuple[_Pair, Any]] = (_guarded(*j, kw) for j in jobs())
    else:
        joblib = import_optional("joblib", purpose="sweep(n_jobs != 1)")
        par = joblib.Parallel(n_jobs=n_jobs, return_as="generator_unordered")
        results = par(joblib.delayed(_guarded)(*j, kw, 1) for j in jobs())
    for pair, out in results:
        done(pair, out)
        while failures:
            done(*failures.pop(0))
    while failures:
        done(*failures.pop(0))


def _run_dask(
    client: Any,
    checkpoints: list[_Checkpoint],
    todo: list[_Pair],
    kw: dict[str, Any],
    quantizer: Quantizer | None,
    fit_samples: int,
    done: Callable[[_Pair, Any], None],
) -> None:
    """Every task on the cluster: labels and codes where the files are read, then the PID tasks."""
    distributed = import_optional("distributed", purpose="sweep(client=...)")
    futures: dict[Any, _Pair] = {}
    submitted: list[Any] = []  # every future, the inputs' too: all are cancelled on an interruption
    needed = {p.checkpoint for p in todo}
    for ck in checkpoints:
        if ck.name not in needed:
            continue
        # In-memory activations go to every worker, so a task can rerun elsewhere if its worker dies.
        src = client.scatter(ck.source, broadcast=True) if isinstance(ck.source, Activations) else ck.source
        labels = client.submit(_labels_task, src, pure=False)
        submitted.append(labels)
        codes = {}
        for p in (p for p in todo if p.checkpoint == ck.name):
            for side, layer in (("teacher", p.teacher_layer), ("student", p.student_layer)):
                if (side, layer) not in codes:
                    codes[side, layer] = client.submit(
                        _codes_task, src, side, layer, quantizer, fit_samples, pure=False
                    )
                    submitted.append(codes[side, layer])
            t, s = codes["teacher", p.teacher_layer], codes["student", p.student_layer]
            futures[client.submit(_pid_task, p, labels, t, s, kw, pure=False)] = p
    submitted += list(futures)
    try:
        for fut in distributed.as_completed(list(futures)):
            pair = futures.pop(fut)
            if fut.status == "finished":
                done(pair, fut.result())
            elif fut.status == "cancelled":
                done(pair, _Failed("CancelledError: the task was cancelled on the cluster"))
            else:
                done(pair, _Failed.of(fut.exception()))
            fut.release()
    finally:
        if futures:  # interrupted: nothing keeps running on the cluster
            client.cancel(submitted)


# ---------------------------------------------------------------------------------------------


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
    client: Any = None,
    journal: str | os.PathLike[str] | None = None,
    on_error: str = "raise",
    fit_samples: int = FIT_SAMPLES,
    fingerprint: str = "stat",
    measure: Any = "broja",
) -> Any:
    """PID of every (checkpoint, teacher layer, student layer) as a tidy pandas DataFrame.

    Parameters
    ----------
    sources : path, Activations, or a sequence of them
        One entry per checkpoint, in order: ``.npz``/``.pt``/``.safetensors`` files, directories of
        ``.npy`` files or Zarr groups (read chunk by chunk: they may be larger than memory), or
        :class:`~pidkd.estimators.activations.Activations` in memory.
    teacher_layers, student_layers : str or sequence of str, optional
        Layers to pair (default: all in the file).
    quantizer : Quantizer, optional
        Template fitted separately on every array (default: k-means to 10 clusters after L2
        normalisation and PCA to 10 components, the RID paper's pipeline).
    n_bootstrap, n_permutations, confidence, base, rng, bias_correction, measure
        As in :func:`pidkd.estimators.pid_from_samples` (``measure="maps"``: the map redundancy,
        a certified lower bound on BROJA's Red; the ``measure`` column names it).
    n_jobs : int, default 1
        Parallel processes (joblib) for the PID tasks; -1 uses all cores.
    progress : bool, default True
        Show a progress bar of the finished pairs (tqdm); with ``client`` it covers the whole cluster.
    client : dask.distributed.Client, optional
        Run every task on this Dask cluster (``pip install 'pidkd[distributed]'``). Workers read
        the activation files from their paths, so give paths they can see; Activations in memory
        are copied to every worker. The numbers are those of the serial run. Dask reschedules the tasks of a
        worker that dies (``distributed.scheduler.allowed-failures`` times).
    journal : path, optional
        A file that gets one JSON line per finished row as it finishes (created if missing). If it
        exists, rows already in it are not computed again but read back exactly, so a rerun after
        an interruption loses nothing and repeats nothing; a journal written with other parameters
        is refused. A row is reused only if its checkpoint's data are unchanged (see
        ``fingerprint``); otherwise it is computed again, with a warning.
    on_error : {"raise", "warn"}, default "raise"
        A pair that fails (an unreadable layer, non-finite activations, row counts that differ)
        never stops the others. When all have run: "raise" raises
        :class:`~pidkd.exceptions.SweepError` naming every failed checkpoint and layer pair (its
        ``results`` holds the finished rows); "warn" warns and returns the finished rows, with the
        failures in ``df.attrs["failures"]``.
    fit_samples : int, default 20,000
        Each layer's quantizer is fitted on at most this many rows (a random subset seeded by the
        quantizer's ``random_state``, fewer for very wide layers; see
        :func:`~pidkd.estimators.quantize.fit_rows`) and then applied to all rows chunk by chunk.
    fingerprint : {"stat", "content"}, default "stat"
        How a journal tells that a checkpoint's files are unchanged. "stat": path, size and
        modification time of every file, instant, but blind to a rewrite that keeps both (a copy
        with ``cp -p`` or ``rsync -t``, a tool that restores the mtime, two writes within the
        file system's time resolution). "content": path and SHA-256 of every byte, which reads
        all the activations once more per run (about as long as reading them). Activations in
        memory are always hashed by content. The choice is part of the journal's parameters.

    Returns
    -------
    pandas.DataFrame
        One row per pair and checkpoint, in the order of ``sources`` and layers: red, uni_t, uni_s,
        syn (estimates after ``bias_correction``, named in the ``bias_correction`` column), their
        intervals (``*_lo``, ``*_hi``), the plug-in atoms (``*_plugin``), null levels (``*_null``),
        the mutual informations, n_samples, samples per occupied cell and ``reliable``, alphabet
        sizes, solver status and gap. Every engine gives the same table; only ``solve_time``
        (:data:`TIMING_COLUMNS`) differs between runs. Pairs with too few samples per occupied cell
        are summed up in one :class:`SampleSizeWarning`.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 400)
    >>> acts = Activations(y, {"t": np.c_[y, rng.normal(size=400)]}, {"s": rng.normal(size=(400, 2))}, name="ck")
    >>> df = sweep(acts, quantizer=Quantizer("kmeans", 4), n_bootstrap=10, n_permutations=2, progress=False)
    >>> df[["checkpoint", "teacher_layer", "student_layer", "reliable"]].values.tolist()
    [['ck', 't', 's', True]]
    """
    pd = import_optional("pandas", purpose="sweep()")
    caller = "sweep()"
    base = check_base(base, caller=caller)  # checked before the (long) loading and quantizing
    progress = check_bool(progress, name="progress", caller=caller)
    n_bootstrap = check_int(n_bootstrap, name="n_bootstrap", caller=caller, minimum=0)
    n_permutations = check_int(n_permutations, name="n_permutations", caller=caller, minimum=0)
    confidence = check_number(confidence, name="confidence", caller=caller, kind="fraction")
    rng = check_int(rng, name="rng", caller=caller, minimum=0)
    fit_samples = check_int(fit_samples, name="fit_samples", caller=caller, minimum=2)
    check_bias_correction(bias_correction, n_bootstrap, caller)
    on_error = check_choice(on_error, ("raise", "warn"), name="on_error", caller=caller)
    fingerprint = check_choice(fingerprint, ("stat", "content"), name="fingerprint", caller=caller)
    if check_int(n_jobs, name="n_jobs", caller=caller, minimum=-(os.cpu_count() or 1)) == 0:
        raise ValueError(f"The 'n_jobs' parameter of {caller} must be a non-zero int (-1: all cores). Got 0 instead.")
    if client is not None and n_jobs != 1:
        raise ValueError("sweep(): give either client= (a Dask cluster) or n_jobs= (local processes), not both.")
    if client is not None and not hasattr(client, "submit"):
        raise TypeError(f"sweep(client=...) expects a dask.distributed.Client; got {type(client).__name__}.")
    if quantizer is not None and not isinstance(quantizer, Quantizer):
        raise TypeError(f"sweep(quantizer=...) expects a pidkd Quantizer or None; got {type(quantizer).__name__}.")
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
        "measure": resolve_measure(measure, caller=caller),
    }
    checkpoints, pairs = _plan(items, teacher_layers, student_layers)
    params = _params(kw, quantizer, fit_samples, fingerprint)
    log = Journal(journal, params) if journal is not None else None
    try:
        return _sweep(
            pd, checkpoints, pairs, log, kw, quantizer, fit_samples, n_jobs, client, progress, on_error, fingerprint
        )
    finally:
        if log is not None:
            log.close()


def _sweep(
    pd, checkpoints, pairs, log, kw, quantizer, fit_samples, n_jobs, client, progress, on_error, fingerprint
) -> Any:
    """The part of :func:`sweep` after the checks and the journal's opening."""
    content = fingerprint == "content"
    sources = {ck.name: _journal.fingerprint(ck.source, content) for ck in checkpoints} if log is not None else {}
    rows: dict[int, dict[str, Any]] = {}
    stale = 0
    for p in pairs:
        if log is not None and p.key in log.rows:
            if log.rows[p.key][0] == sources[p.checkpoint]:
                rows[p.index] = log.rows[p.key][1]
            else:
                stale += 1
    if stale:
        warnings.warn(
            f"sweep: {stale} row(s) in journal={str(log.path)!r} were computed from other data under the same "
            "checkpoint names (the files changed, or other files or activations share their names); they are "
            "computed again.",
            RuntimeWarning,
            stacklevel=3,
        )
    todo = [p for p in pairs if p.index not in rows]
    failures: list[dict[str, str]] = []
    tqdm = import_optional("tqdm", purpose="sweep(progress=True)").tqdm if progress else None
    bar = tqdm(total=len(pairs), initial=len(rows), desc="PID sweep", unit="pair") if tqdm else None

    def done(pair: _Pair, out: dict[str, Any] | _Failed) -> None:
        if isinstance(out, _Failed):
            failures.append(dict(zip(_KEY, pair.key)) | {"error": out.error})
        else:
            rows[pair.index] = out
            if log is not None:
                log.add(out, sources[pair.checkpoint])
        if bar is not None:
            bar.update()

    try:
        if todo and client is not None:
            _run_dask(client, checkpoints, todo, kw, quantizer, fit_samples, done)
        elif todo:
            _run_local(checkpoints, todo, kw, quantizer, fit_samples, n_jobs, done)
    finally:
        if bar is not None:
            bar.close()
    df = pd.DataFrame([rows[i] for i in sorted(rows)])
    if failures:
        shown = "; ".join(
            f"{f['checkpoint']}, {f['teacher_layer']} x {f['student_layer']}: {f['error']}" for f in failures[:5]
        )
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        msg = (
            f"sweep: {len(failures)} of {len(pairs)} pairs failed, the other {len(rows)} finished"
            f"{' and are in the journal' if log is not None else ''}. {shown}{more}"
        )
        if on_error == "raise":
            raise SweepError(msg, failures=failures, results=df)
        warnings.warn(msg, RuntimeWarning, stacklevel=3)
        df.attrs["failures"] = failures
    _warn_unreliable(df)
    return df


def _warn_unreliable(df: Any) -> None:
    """One :class:`SampleSizeWarning` for the rows that are not ``reliable``, saying why."""
    if not len(df):
        return
    few = df.loc[df["samples_per_cell"] < MIN_SAMPLES_PER_CELL]
    beyond = df.loc[df["beyond_bounds"].astype(bool)] if "beyond_bounds" in df else df.iloc[:0]
    parts = []
    if len(few):
        worst = few.loc[few["samples_per_cell"].idxmin()]
        parts.append(
            f"{len(few)} of {len(df)} rows have fewer than {MIN_SAMPLES_PER_CELL:g} samples per occupied cell (the "
            f"fewest: {worst['samples_per_cell']:.2g} in {worst['checkpoint']}, {worst['teacher_layer']} x "
            f"{worst['student_layer']}); their estimates keep much of the plug-in bias"
        )
    if len(beyond):
        first = beyond.iloc[0]
        parts.append(
            f"{len(beyond)} of {len(df)} rows had a corrected estimate beyond the information-theoretic bounds by more "
            f"than its interval's width (column 'beyond_bounds'; the first: {first['checkpoint']}, "
            f"{first['teacher_layer']} x {first['student_layer']}, bounded: {first['bounded']}); it was projected "
            "onto them"
        )
    if parts:
        warnings.warn(
            SampleSizeWarning(
                f"sweep: {'; '.join(parts)}. Column 'reliable' is False for them: use more samples or fewer codes."
            ),
            stacklevel=4,
        )
