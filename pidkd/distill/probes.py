"""Live PID probes: Red and Uni(Y:T\\S) of chosen layers, measured during training.

A :class:`PIDProbe` given to :func:`pidkd.distill.fit` (``probes=[...]``) runs the teacher and the
student on a fixed, held-out probe set every ``every`` epochs, captures one layer pair, quantizes
each side (fitted on the first capture of each run, then reused so codes mean the same thing across
epochs; the paper-compatible default: flatten, L2-normalise, PCA, k-means, T and S separately)
and records the PID atoms with bootstrap intervals and the shuffled-label null level into the
training history. With RID it also probes the filter outputs f_t(T) and f_s(S), which are what
RID optimises; ``on="filters"`` probes them alone. ``measure="maps"`` records the map redundancy
(a certified lower bound on BROJA's Red carried by deterministic features of both sides) instead of
BROJA's: on the filter outputs, how much of the redundancy RID's features make explicit.

Only the forward passes on the probe set run on the training thread. Quantizing and the PID solves
(the plug-in estimate, the bootstrap resamples and the label permutations, decomposed as one
batch) run in a worker thread while training goes on (``background=True``, the default); their
columns are filled into the epoch's history row when they finish, and at the latest before a
checkpoint is written and when :func:`fit` returns. The numbers do not depend on the timing: the
analysis of an epoch sees only that epoch's captured activations and a seed derived from the epoch.
"""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from pidkd._validation import check_bool, check_choice, check_int
from pidkd.distill._checks import as_tensor_pair, describe
from pidkd.distill.filters import to_module_dtype
from pidkd.distill.hooks import capture, module_names
from pidkd.estimators.api import resolve_measure
from pidkd.estimators.broja.measure import BROJA
from pidkd.estimators.intersection import Intersection
from pidkd.estimators.measure import Measure
from pidkd.estimators.quantize import Quantizer, fresh_quantizer
from pidkd.estimators.samples import (
    ATOMS,
    MIN_SAMPLES_PER_CELL,
    SampleSizeWarning,
    check_bias_correction,
    pid_from_samples,
)

__all__ = ["PIDProbe"]

#: What a probe decomposes: the probed layers (and, with RID or TED, their filters too) or the filters alone.
PROBE_ON = ("layers", "filters")


@dataclass
class PIDProbe:
    """Measure the PID of (teacher_layer, student_layer) on ``data`` every ``every`` epochs.

    Parameters
    ----------
    data : (inputs, labels) tensors
        A held-out probe set (a few hundred to a few thousand samples; at least the quantizer's
        ``n_bins``). A tuple or list of two tensors or numpy arrays (converted to tensors).
    teacher_layer, student_layer : str
        Module names.
    every : int, default 1
    quantizer : Quantizer, optional
        Template (default: k-means to 10 clusters after L2 normalisation and PCA to 10). Each side
        gets its own copy, fitted on the probe's first capture in a :func:`~pidkd.distill.fit` run and
        reused for the rest of that run. Every run starts afresh (:meth:`reset`): a probe passed to
        several runs gives each the numbers a new probe would, and a resumed run fits them again on
        its first capture.
    n_bootstrap, n_permutations : int
        For the intervals and the null level (defaults 20 and 2; 0 turns them off).
    bias_correction : {"jackknife", "bootstrap", "none"}, default "jackknife"
        As in :func:`~pidkd.estimators.pid_from_samples`: the atom columns hold the corrected
        estimates, ``*_plugin`` the plug-in atoms, ``*_samples_per_cell`` the samples per occupied
        cell. A probe set too small for that (fewer than 5 per occupied cell) is warned about once per
        run.
    background : bool, default True
        Quantize and decompose in a worker thread, off the training loop (the training thread only
        runs the probe set through the two networks). ``False``: everything inline.
    name : str, optional
        Column prefix, unique among the probes of one :func:`~pidkd.distill.fit` call. Default:
        ``"probe_<teacher_layer>_<student_layer>"`` with every character other than letters, digits
        and ``_`` replaced by ``_`` (``"probe_layer3_0_layer3_0"`` for ``"layer3.0"``), followed by
        ``"_<measure's name>"`` when ``measure`` is not BROJA's (``"probe_layer3_0_layer3_0_maps"``).
        Pass ``name=`` to tell two probes of the same layers and measure apart, or for short column
        names.
    measure : {"broja", "intersection", "maps"} or pidkd.Measure, default "broja"
        The PID measure, as in :func:`~pidkd.estimators.pid_from_samples`, stored as the
        :class:`~pidkd.Measure` instance it names (Red is that measure's
        redundancy; the other atoms follow from the identities). ``"maps"``: the map redundancy, a
        certified lower bound on BROJA's Red (compare it with its null level: the search over maps
        inflates the plug-in value). ``"intersection"`` refuses more than 7 codes a side.
    on : {"layers", "filters"}, default "layers"
        ``"layers"``: the probed layers, and with a method that has filters (RID, TED) whose
        distilled layer pairs include ``teacher_layer``, also the outputs of that pair's teacher
        filter f_t(T) and student filter f_s(S). ``"filters"``: those filter outputs only; the pair
        (``teacher_layer``, ``student_layer``) must be one of the distilled pairs of a method with
        filters, or :func:`~pidkd.distill.fit` refuses it before training. With ``measure="maps"``
        it shows how much of the redundancy RID's features make explicit.

    Notes
    -----
    **Columns.** A probe writes ``<name>_<column>`` for the layers and ``<name>_filters_<column>``
    for the filter outputs (``on="filters"`` writes only the latter); ``<column>`` is ``red``,
    ``uni_t``, ``uni_s``, ``syn`` (the estimates), ``mi_t``, ``mi_s``, ``<atom>_plugin``,
    ``<atom>_lo`` / ``<atom>_hi`` (the interval), ``<atom>_null`` and ``samples_per_cell``. The
    measure appears in the column names only through the default ``name``, so a BROJA probe's
    columns are those of pidkd releases without ``measure``, and a BROJA and a maps probe of the same
    layers never collide. Typical pair for RID: ``PIDProbe(d, t, s)`` (BROJA Red of the layers,
    ``probe_<t>_<s>_red``, and of the filters) and ``PIDProbe(d, t, s, on="filters",
    measure="maps")`` (``probe_<t>_<s>_maps_filters_red``), drawn side by side by
    :func:`pidkd.plotting.plot_training`.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> x = torch.randn(300, 8); y = (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()
    >>> teacher = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    >>> student = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 4))
    >>> probe = PIDProbe((x, y), teacher_layer="1", student_layer="1", n_bootstrap=5)
    >>> probe.name
    'probe_1_1'
    >>> row = probe(teacher, student, epoch=1)  # measured now, on these weights
    >>> abs(row["probe_1_1_red_plugin"] + row["probe_1_1_uni_t_plugin"] - row["probe_1_1_mi_t"]) < 1e-9
    True

    Given to :func:`~pidkd.distill.fit` (``probes=[probe]``, or among its ``callbacks``), the probe
    measures every ``every`` epochs into the history; in Lightning,
    :class:`pidkd.distill.lightning.PIDProbeCallback` logs the same columns.
    """

    data: tuple[torch.Tensor, torch.Tensor]
    teacher_layer: str
    student_layer: str
    every: int = 1
    quantizer: Quantizer | None = None
    n_bootstrap: int = 20
    n_permutations: int = 2
    background: bool = True
    name: str | None = None
    bias_correction: str = "jackknife"
    measure: str | Measure = "broja"
    on: str = "layers"
    _quantizers: dict[str, Quantizer] = field(default_factory=dict, repr=False)
    _warned: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        caller = "PIDProbe()"
        pair = as_tensor_pair(self.data, name="data", caller=caller)
        if pair is None:
            raise TypeError(
                f"The 'data' parameter of {caller} must be an (inputs, labels) pair of tensors or numpy arrays. "
                f"Got {describe(self.data)} instead."
            )
        self.data = pair
        for arg in ("teacher_layer", "student_layer"):
            value = getattr(self, arg)
            if not isinstance(value, str) or not value:
                raise (ValueError if isinstance(value, str) else TypeError)(
                    f"The {arg!r} parameter of {caller} must be a module name (a non-empty str, as in "
                    f"model.named_modules()). Got {value!r} instead."
                )
        self.every = check_int(self.every, name="every", caller=caller, minimum=1)
        self.n_bootstrap = check_int(self.n_bootstrap, name="n_bootstrap", caller=caller, minimum=0)
        self.n_permutations = check_int(self.n_permutations, name="n_permutations", caller=caller, minimum=0)
        self.background = check_bool(self.background, name="background", caller=caller)
        check_bias_correction(self.bias_correction, self.n_bootstrap, caller)
        self.measure = resolve_measure(self.measure, caller=caller)
        self.on = check_choice(self.on, PROBE_ON, name="on", caller=caller)
        if self.quantizer is not None and not isinstance(self.quantizer, Quantizer):
            raise TypeError(
                f"The 'quantizer' parameter of {caller} must be a pidkd Quantizer or None. "
                f"Got {type(self.quantizer).__name__} instead."
            )
        n_bins = fresh_quantizer(self.quantizer).n_bins
        if isinstance(self.measure, Intersection) and n_bins > 7:  # Bell(8)^2 > MAX_PAIRS: refused at every measurement
            raise ValueError(
                f"{caller} with measure='intersection' searches all pairs of set partitions of the codes, at most 7 a "
                f"side; the quantizer gives n_bins={n_bins}. Pass quantizer=Quantizer(n_bins=7) or fewer, or "
                "measure='maps' (its relaxation, defined at any number of codes)."
            )
        if len(pair[0]) < n_bins:
            raise ValueError(
                f"{caller} got {len(pair[0])} samples in 'data', fewer than the quantizer's n_bins={n_bins} codes; "
                f"give at least {n_bins} probe samples (a few hundred or more), or a Quantizer with fewer bins."
            )
        if self.name is None:
            suffix = "" if isinstance(self.measure, BROJA) else f"_{self.measure.name}"
            self.name = re.sub(r"[^A-Za-z0-9_]", "_", f"probe_{self.teacher_layer}_{self.student_layer}{suffix}")
        elif not isinstance(self.name, str) or not self.name:
            raise (ValueError if isinstance(self.name, str) else TypeError)(
                f"The 'name' parameter of {caller} must be a non-empty str (the column prefix) or None. "
                f"Got {self.name!r} instead."
            )

    def reset(self) -> None:
        """Forget what the probe learned in a run: its fitted quantizers and its sample-size warning.

        :func:`~pidkd.distill.fit` calls it when a run starts, so that a probe reused across runs (a loop
        over methods or seeds) codes each run's activations with quantizers fitted on that run's.
        """
        self._quantizers = {}
        self._warned = False

    @torch.no_grad()
    def capture(
        self, teacher: nn.Module, student: nn.Module, modules: nn.ModuleDict, pair: int | None, device: torch.device
    ) -> dict[str, np.ndarray]:
        """Run the probe set through both networks (and the RID filters of ``pair``): host copies.

        Modes of the student and the filters are restored; no random numbers are drawn.
        """
        x, y = self.data
        was = student.training
        student.eval()
        with capture(teacher, [self.teacher_layer]) as ta, capture(student, [self.student_layer]) as sa:
            teacher(x.to(device))
            student(x.to(device))
        student.train(was)
        t, s = ta[self.teacher_layer], sa[self.student_layer]
        out = {"y": y.cpu().numpy().copy(), "t": _host(t), "s": _host(s)}
        if pair is not None and f"ft{pair}" in modules and f"fs{pair}" in modules:
            states = {k: m.training for k, m in modules.items()}
            modules.eval()
            ft, fs = modules[f"ft{pair}"], modules[f"fs{pair}"]
            out["ft"], out["fs"] = _host(ft(to_module_dtype(t, ft))), _host(fs(to_module_dtype(s, fs)))
            for k, m in modules.items():
                m.train(states[k])
        return out

    def analyse(self, captured: dict[str, np.ndarray], epoch: int) -> dict[str, float]:
        """History columns of one capture (quantize, decompose); runs on any thread."""
        if self.on == "filters" and "ft" not in captured:
            raise ValueError(
                f"PIDProbe {self.name!r} has on='filters' but its capture holds no filter outputs: the layer pair "
                f"({self.teacher_layer!r}, {self.student_layer!r}) is not a distilled pair of a method with filters "
                "(RID, TED). Probe on='layers', or distil that pair with method='rid' or 'ted'."
            )
        row = {} if self.on == "filters" else self._atoms(self.name, captured["y"], captured["t"], captured["s"], epoch)
        if "ft" in captured:
            row |= self._atoms(f"{self.name}_filters", captured["y"], captured["ft"], captured["fs"], epoch)
        return row

    def run(
        self,
        teacher: nn.Module,
        student: nn.Module,
        modules: nn.ModuleDict,
        pair: int | None,
        device: torch.device,
        epoch: int,
    ) -> dict[str, float]:
        """Capture and analyse at once: the atoms of the layer pair (and of the filters of ``pair``).

        The positional form the training loop calls; ``probe(teacher, student, ...)`` (:meth:`__call__`)
        is the same with defaults. (Named ``measure`` before PIDProbe took a ``measure=`` parameter, the
        PID measure; ``measure`` is that parameter now.)
        """
        return self.analyse(self.capture(teacher, student, modules, pair, device), epoch)

    def __call__(
        self,
        teacher: nn.Module,
        student: nn.Module,
        *,
        modules: nn.ModuleDict | None = None,
        pair: int | None = None,
        device: torch.device | str | None = None,
        epoch: int = 0,
    ) -> dict[str, float]:
        """Measure now, outside :func:`~pidkd.distill.fit`: the probe's columns on these models' weights.

        ``modules`` and ``pair``: a method's modules and the index of the distilled layer pair whose
        filters to probe as well (``Distiller.method_modules``; :meth:`pair_of` finds the index).
        ``device``: where the models run (default: the student's). ``epoch`` seeds the intervals and
        the null level, as the epoch does in a run. The quantizers are fitted on the probe's first
        measurement and reused after; :meth:`reset` forgets them. Returns ``{"<name>_red": ...,
        "<name>_uni_t": ..., ...}``, the columns :func:`~pidkd.distill.fit` adds to its history.
        """
        if device is None:
            device = next((p.device for p in student.parameters()), torch.device("cpu"))
        modules = nn.ModuleDict() if modules is None else modules
        return self.run(teacher, student, modules, pair, torch.device(device), epoch)

    def pair_of(self, teacher_layers: Sequence[str], student_layers: Sequence[str] | None = None) -> int | None:
        """The index of the distilled layer pair whose filters the probe measures too, or None.

        ``on="layers"``: the first pair whose teacher layer is ``teacher_layer``; ``on="filters"``: the pair
        (``teacher_layer``, ``student_layer``) itself (a teacher layer may be distilled twice).
        """
        teacher_layers = list(teacher_layers)
        if self.on == "filters":
            pairs = list(zip(teacher_layers, student_layers)) if student_layers is not None else []
            key = (self.teacher_layer, self.student_layer)
            return pairs.index(key) if key in pairs else None
        return teacher_layers.index(self.teacher_layer) if self.teacher_layer in teacher_layers else None

    def _codes(self, key: str, arr: np.ndarray) -> np.ndarray:
        if key not in self._quantizers:
            self._quantizers[key] = fresh_quantizer(self.quantizer).fit(arr)
        return self._quantizers[key].transform(arr)

    def _atoms(self, prefix: str, y: np.ndarray, t: np.ndarray, s: np.ndarray, seed: int) -> dict[str, float]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SampleSizeWarning)
            r = pid_from_samples(
                y,
                self._codes(f"{prefix}/t", t),
                self._codes(f"{prefix}/s", s),
                n_bootstrap=self.n_bootstrap,
                n_permutations=self.n_permutations,
                rng=seed,
                bias_correction=self.bias_correction,
                measure=self.measure,
                progress=False,  # a probe runs inside training, whose progress is the loop's
            )
        caught = [w for w in caught if issubclass(w.category, SampleSizeWarning)]
        if not self._warned and caught:
            self._warned = True
            few = r.samples_per_cell < MIN_SAMPLES_PER_CELL  # else: an estimate projected onto the bounds
            warnings.warn(
                SampleSizeWarning(
                    f"PIDProbe {self.name!r}: {r.samples_per_cell:.2g} samples per occupied cell ({r.n_samples} probe "
                    f"samples, {r.occupied_cells} cells), fewer than {MIN_SAMPLES_PER_CELL:g}: its atoms keep much of "
                    "the plug-in bias (column *_samples_per_cell). Give more probe samples or a Quantizer with fewer "
                    "bins. Warned once per run."
                    if few
                    else f"PIDProbe {self.name!r} (column prefix {prefix!r}): {caught[0].message} Warned once per run."
                ),
                stacklevel=2,
            )
        # plain floats: history rows go into checkpoints loaded with weights_only=True
        out = {f"{prefix}_{a}": float(r.estimate[a]) for a in ATOMS}
        out |= {f"{prefix}_{a}": float(getattr(r.pid, a)) for a in ("mi_t", "mi_s")}
        for a in ATOMS:
            out[f"{prefix}_{a}_plugin"] = float(getattr(r.pid, a))
            if r.ci:
                out[f"{prefix}_{a}_lo"], out[f"{prefix}_{a}_hi"] = (float(v) for v in r.ci[a])
            if r.null_mean:
                out[f"{prefix}_{a}_null"] = float(r.null_mean[a])
        out[f"{prefix}_samples_per_cell"] = float(r.samples_per_cell)
        return out


def check_probes(
    probes: Sequence[Any],
    teacher: nn.Module | None = None,
    student: nn.Module | None = None,
    *,
    method: Any = None,
    pairs: Sequence[tuple[str, str]] | None = None,
) -> list[PIDProbe]:
    """The probes of one :func:`~pidkd.distill.fit` call as a list, checked before any training.

    Every item must be a :class:`PIDProbe`; no two may write the same columns (equal names, or one
    named like the other's filter columns, ``<name>_filters``); with the models given, the probed
    layers must exist. With ``method`` (a :class:`~pidkd.distill.DistillMethod`) and ``pairs`` (the
    distilled (teacher layer, student layer) pairs) given, a probe ``on="filters"`` needs a method with
    filters (see :func:`has_filters`) and its layers among ``pairs``.
    """
    if isinstance(probes, PIDProbe):
        probes = [probes]
    if isinstance(probes, (str, bytes)) or not isinstance(probes, Sequence):
        raise TypeError(f"fit(probes=...) expects a list of PIDProbe objects; got {describe(probes)}.")
    for p in probes:
        if not isinstance(p, PIDProbe):
            raise TypeError(f"fit(probes=...) expects PIDProbe objects; got {type(p).__name__}.")
    names = [p.name for p in probes]
    for name in names:
        if names.count(name) > 1:
            raise ValueError(
                f"fit(): {names.count(name)} PIDProbes are named {name!r}, so their columns ({name}_red, ...) would "
                "overwrite each other; give each probe its own name= (e.g. PIDProbe(..., name='probe_a'))."
            )
        if name.endswith("_filters") and name[: -len("_filters")] in names:
            raise ValueError(
                f"fit(): the PIDProbe named {name!r} would write the same columns as the RID filter columns of the "
                f"probe named {name[: -len('_filters')]!r} ({name}_red, ...); give it another name=."
            )
    for who, model, attr in (("teacher", teacher, "teacher_layer"), ("student", student, "student_layer")):
        if model is None:
            continue
        available = module_names(model)
        for p in probes:
            if getattr(p, attr) not in available:
                raise ValueError(
                    f"fit(): the PIDProbe {p.name!r} probes the {who} layer {getattr(p, attr)!r}: no module named "
                    f"[{getattr(p, attr)!r}] in the {who} ({type(model).__name__}). Available names: {available}."
                )
    for p in probes:
        if p.on != "filters":
            continue
        if method is not None and not has_filters(method):
            raise ValueError(
                f"fit(method={getattr(method, 'name', type(method).__name__)!r}): the PIDProbe {p.name!r} has "
                "on='filters', which measures the outputs of the teacher and student filters f_t(T), f_s(S) of a "
                "method that has them (method='rid' or 'ted'); this method has none. Use on='layers' (the default)."
            )
        if pairs is not None and (p.teacher_layer, p.student_layer) not in list(pairs):
            raise ValueError(
                f"fit(): the PIDProbe {p.name!r} has on='filters' for the layer pair ({p.teacher_layer!r}, "
                f"{p.student_layer!r}), which is not distilled, so it has no filters; the distilled pairs "
                f"(teacher_layers, student_layers) are {[tuple(x) for x in pairs]}."
            )
    return list(probes)


def has_filters(method: Any) -> bool:
    """Whether ``method`` declares a teacher filter ``ft`` and a student filter ``fs`` per pair (RID, TED).

    Read from the module name prefixes it declares (``filter_modules`` and ``student_modules``), so
    it is known before :func:`~pidkd.distill.fit` builds the modules.
    """
    prefixes = (*getattr(method, "filter_modules", ()), *getattr(method, "student_modules", ()))
    return "ft" in prefixes and "fs" in prefixes


def _host(x: torch.Tensor) -> np.ndarray:
    return np.array(x.detach().float().cpu().numpy(), copy=True)


def _timed(probe: PIDProbe, captured: dict[str, np.ndarray], epoch: int) -> tuple[dict[str, float], float]:
    start = time.perf_counter()
    return probe.analyse(captured, epoch), time.perf_counter() - start


class ProbeRunner:
    """The probes of one :func:`fit` run: capture on the training thread, analysis in a worker.

    ``run`` adds ``probe_seconds`` (time the training thread spent on probes) to an epoch's row at
    once and each probe's ``<name>_*`` atoms plus ``probe_analysis_seconds`` when the analysis is done;
    ``collect`` fills in finished analyses (all of them with ``wait=True``); ``close`` stops the
    worker. Errors of an analysis are raised by ``collect``.
    """

    def __init__(self, probes: list[PIDProbe], teacher_layers: list[str], student_layers: list[str] | None = None):
        self.probes = check_probes(probes)
        for probe in self.probes:  # a run of its own: quantizers fitted on this run's first capture
            probe.reset()
        self.teacher_layers = teacher_layers
        self.student_layers = student_layers
        background = any(p.background for p in self.probes)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="pidkd-probe") if background else None
        self._pending: list[tuple[dict[str, Any], Future]] = []

    def run(self, epoch: int, row: dict[str, Any], teacher, student, modules, device) -> None:
        """Probe everything due at ``epoch`` (1-based) for the history row ``row``."""
        start = time.perf_counter()
        due = [p for p in self.probes if epoch % p.every == 0]
        for probe in due:
            pair = probe.pair_of(self.teacher_layers, self.student_layers)
            captured = probe.capture(teacher, student, modules, pair, device)
            if probe.background and self._pool is not None:
                self._pending.append((row, self._pool.submit(_timed, probe, captured, epoch)))
            else:
                cols, seconds = _timed(probe, captured, epoch)
                _fill(row, cols, seconds)
        if due:
            row["probe_seconds"] = time.perf_counter() - start

    def collect(self, wait: bool = False) -> None:
        """Fill finished analyses into their rows (wait for all of them with ``wait=True``)."""
        pending = []
        for row, fut in self._pending:
            if wait or fut.done():
                try:
                    cols, seconds = fut.result()
                except Exception as err:
                    raise RuntimeError(f"fit(): the PID probe of epoch {row.get('epoch')} failed: {err}") from err
                _fill(row, cols, seconds)
            else:
                pending.append((row, fut))
        self._pending = pending

    def close(self) -> None:
        """Stop the worker (pending analyses are dropped; call ``collect(wait=True)`` first to keep them)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


def _fill(row: dict[str, Any], cols: dict[str, float], seconds: float) -> None:
    row.update(cols)
    row["probe_analysis_seconds"] = row.get("probe_analysis_seconds", 0.0) + seconds
