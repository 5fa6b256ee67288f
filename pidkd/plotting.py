"""Plots (matplotlib, optional): PID sweeps per layer pair and across checkpoints, and training
histories of :func:`pidkd.distill.fit` (accuracy and probed PID atoms against epoch)."""

from __future__ import annotations

from typing import Any

import numpy as np

from pidkd._optional import import_optional

__all__ = ["plot_atoms", "plot_checkpoints", "plot_sweep", "plot_training"]

_ATOMS = (
    ("red", "Red (transferred)", "C0"),
    ("uni_t", "Uni(Y:T\\S) (left to distil)", "C3"),
    ("uni_s", "Uni(Y:S\\T)", "C2"),
    ("syn", "Syn", "C7"),
)


def _plt():
    matplotlib = import_optional("matplotlib", purpose="pidkd.plotting")
    import matplotlib.pyplot as plt

    return matplotlib, plt


_SWEEP_KEYS = ("checkpoint", "teacher_layer", "student_layer")


def _check_table(df: Any, columns: tuple[str, ...], caller: str) -> None:
    """A clear error, naming what is missing, for a table that is not a non-empty sweep() result."""
    if not hasattr(df, "columns") or not hasattr(df, "iloc"):
        raise TypeError(f"{caller} expects the pandas DataFrame of pidkd.sweep(); got {type(df).__name__}.")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(
            f"{caller} needs the columns {missing} of a pidkd.sweep() table; the table has {list(df.columns)}."
        )
    if len(df) == 0:
        raise ValueError(f"{caller} got a table without rows; there is nothing to plot.")


def _pick(df: Any, column: str, value: str | None, caller: str) -> Any:
    """The rows whose ``column`` is ``value`` (default: the last row's), or an error naming the choices."""
    value = df[column].iloc[-1] if value is None else value
    sub = df[df[column] == value]
    if len(sub) == 0:
        raise ValueError(f"{caller}: no row has {column}={value!r}; the table has {sorted(map(str, set(df[column])))}.")
    return sub, value


def plot_atoms(df: Any, *, checkpoint: str | None = None, ax: Any = None) -> Any:
    """Stacked PID atoms per (teacher layer, student layer) of one checkpoint (default: last)."""
    caller = "plot_atoms()"
    _check_table(df, (*_SWEEP_KEYS, *(key for key, _, _ in _ATOMS)), caller)
    sub, ck = _pick(df, "checkpoint", checkpoint, caller)
    _, plt = _plt()
    ax = ax or plt.subplots(figsize=(7, 4))[1]
    labels = [f"{a}\n{b}" for a, b in zip(sub["teacher_layer"], sub["student_layer"])]
    bottom = np.zeros(len(sub))
    for key, name, color in _ATOMS:
        vals = np.clip(sub[key].to_numpy(dtype=float), 0, None)
        ax.bar(labels, vals, bottom=bottom, label=name, color=color)
        bottom += vals
    if all(f"{key}_null" in sub for key, _, _ in _ATOMS):
        ax.scatter(
            labels,
            sub["red_null"] + sub["uni_t_null"] + sub["uni_s_null"] + sub["syn_null"],
            marker="_",
            s=400,
            color="k",
            label="all atoms under shuffled Y (bias)",
        )
    base = float(df["base"].iloc[0]) if "base" in df else 2.0
    ax.set_ylabel(f"log base {base:g}" if base != 2 else "bits")
    ax.set_title(f"PID of I(Y; T, S) per layer pair, checkpoint {ck}")
    ax.legend(fontsize=8)
    return ax


def plot_checkpoints(
    df: Any, *, teacher_layer: str | None = None, student_layer: str | None = None, ax: Any = None
) -> Any:
    """Red and Uni(Y:T\\S) (with bootstrap intervals) across checkpoints for one layer pair."""
    caller = "plot_checkpoints()"
    _check_table(df, (*_SWEEP_KEYS, "red", "uni_t"), caller)
    sub, tl = _pick(df, "teacher_layer", teacher_layer, caller)
    sub, sl = _pick(sub, "student_layer", student_layer, caller)
    _, plt = _plt()
    ax = ax or plt.subplots(figsize=(7, 4))[1]
    x = np.arange(len(sub))
    for key, name, color in _ATOMS[:2]:
        ax.plot(x, sub[key], "o-", color=color, label=name)
        if f"{key}_lo" in sub and f"{key}_hi" in sub:
            ax.fill_between(x, sub[f"{key}_lo"], sub[f"{key}_hi"], color=color, alpha=0.2)
        if f"{key}_null" in sub:
            ax.plot(x, sub[f"{key}_null"], ":", color=color, label=f"{key} under shuffled Y")
    ax.set_xticks(x, sub["checkpoint"], rotation=20)
    ax.set_ylabel("bits")
    ax.set_title(f"teacher {tl} / student {sl} across checkpoints")
    ax.legend(fontsize=8)
    return ax


def plot_sweep(df: Any, path: str) -> None:
    """Both plots side by side, written to ``path``."""
    _check_table(df, (*_SWEEP_KEYS, *(key for key, _, _ in _ATOMS)), "plot_sweep()")
    matplotlib, plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 4.5))
    plot_atoms(df, ax=a1)
    plot_checkpoints(df, ax=a2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _probe_prefix(history: Any) -> str | None:
    """The name of the first probe of the layers in a history: a column ``<name>_red`` with ``<name>_uni_t``
    beside it, not a probe's filter columns (``<name>_filters_red``); a BROJA probe (a name without the
    suffix ``_maps`` or ``_intersection`` of PIDProbe's default names for other measures) first."""
    names = [
        col[: -len("_red")]
        for col in history.columns
        if col.endswith("_red") and not col.endswith("_filters_red") and f"{col[: -len('_red')]}_uni_t" in history
    ]
    broja = [n for n in names if not n.endswith(("_maps", "_intersection"))]
    return (broja or names or [None])[0]


def _filters_column(history: Any, probe: str | None, filters: str | None) -> str | None:
    """The column of the filters' map redundancy drawn beside ``probe``'s Red: ``<filters>_filters_red``,
    by default ``<probe>_maps_filters_red`` (PIDProbe(..., on="filters", measure="maps") of the same
    layers, default name); None when the history lacks it."""
    name = filters if filters is not None else (f"{probe}_maps" if probe else None)
    col = f"{name}_filters_red"
    return col if name and col in history and history[col].notna().any() else None


def _check_histories(histories: Any, probe: str | None, filters: str | None = None) -> dict[str, list[Any]]:
    """``{label: [history, ...]}`` of ``histories``, or a clear error naming the label and the missing columns.

    A :func:`pidkd.distill.fit` result stands for its ``history``.
    """
    caller = "plot_training()"
    if not isinstance(histories, dict) or not histories:
        raise TypeError(
            f"{caller} expects a non-empty dict {{label: history or [histories]}} of pidkd.distill.fit() histories; "
            f"got {type(histories).__name__}{' (empty)' if isinstance(histories, dict) else ''}."
        )
    out: dict[str, list[Any]] = {}
    for label, hs in histories.items():
        hs = list(hs) if isinstance(hs, (list, tuple)) else [hs]
        hs = [getattr(h, "history", h) for h in hs]  # a fit() result: its history
        for h in hs:
            if not hasattr(h, "columns"):
                raise TypeError(
                    f"{caller}: histories[{label!r}] holds a {type(h).__name__}, not a fit() history (a DataFrame)."
                )
            missing = [c for c in ("epoch", "val_acc") if c not in h.columns]
            if missing:
                raise ValueError(
                    f"{caller}: histories[{label!r}] has no column(s) {missing} (a fit() history has them); "
                    f"its columns: {list(h.columns)}."
                )
        out[label] = hs
    if probe is not None and not any(f"{probe}_red" in h and f"{probe}_uni_t" in h for hs in out.values() for h in hs):
        found = sorted({n for hs in out.values() for h in hs if (n := _probe_prefix(h))})
        raise ValueError(
            f"{caller}: no history has the columns {probe}_red and {probe}_uni_t of probe={probe!r}; "
            f"probes found: {found or 'none'}."
        )
    if filters is not None and not any(f"{filters}_filters_red" in h for hs in out.values() for h in hs):
        found = sorted(
            {c[: -len("_filters_red")] for hs in out.values() for h in hs for c in h if c.endswith("_filters_red")}
        )
        raise ValueError(
            f"{caller}: no history has the column {filters}_filters_red of filters={filters!r} (a PIDProbe named "
            f"{filters!r} with on='filters' under RID or TED writes it); probes with filter columns: {found or 'none'}."
        )
    return out


def plot_training(
    histories: dict[str, Any],
    path: str | None = None,
    *,
    title: str = "",
    probe: str | None = None,
    filters: str | None = None,
) -> Any:
    """Accuracy against epoch (left) and probed Red / Uni(Y:T\\S) against epoch (right), per method.

    Parameters
    ----------
    histories : dict
        Maps a label (e.g. the method) to a :func:`pidkd.distill.fit` history (or its result), or to
        a list of them (seeds) whose mean accuracy is drawn; a history without the columns ``epoch``
        and ``val_acc`` is a ``ValueError`` naming its label.
    path : str, optional
        Write the figure there (and close it).
    title : str, default ""
    probe : str, optional
        The :class:`~pidkd.distill.PIDProbe` whose ``<probe>_red`` and ``<probe>_uni_t`` are drawn,
        from the first history of each label that has them (default: the first probe of the layers
        found in each history, a BROJA one first).
    filters : str, optional
        The probe whose ``<filters>_filters_red`` column, the map redundancy of RID's filter outputs
        f_t(T), f_s(S), is drawn beside Red of the layers (triangles, dotted): how much of the
        redundancy RID's features make explicit. Default: ``<probe>_maps``, the default name of
        ``PIDProbe(..., on="filters", measure="maps")`` on the same layers, when a history has it.

    Returns
    -------
    matplotlib.figure.Figure
    """
    histories = _check_histories(histories, probe, filters)
    _, plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.6))
    colors = plt.get_cmap("tab10").colors
    handles = []
    drawn_filters = False
    for i, (label, hs) in enumerate(histories.items()):
        color = colors[i % len(colors)]  # one color per label in both panels
        acc = np.mean([h["val_acc"].to_numpy(dtype=float) for h in hs], axis=0)
        handles += a1.plot(np.arange(1, acc.size + 1), acc, color=color, label=label)
        names = [probe or _probe_prefix(h) for h in hs]
        probed = next(
            (
                (h, n)
                for h, n in zip(hs, names)
                if n and f"{n}_red" in h and f"{n}_uni_t" in h and h[f"{n}_red"].notna().any()
            ),
            None,
        )
        if probed is not None:
            h, n = probed
            m = h[h[f"{n}_red"].notna()]
            a2.plot(m["epoch"], m[f"{n}_red"], "o-", color=color, ms=4)
            a2.plot(m["epoch"], m[f"{n}_uni_t"], "s--", color=color, ms=4)
        for h, n in zip(hs, names):  # the map redundancy of RID's filters, from the first history with it
            col = _filters_column(h, n, filters)
            if col is not None:
                m = h[h[col].notna()]
                a2.plot(m["epoch"], m[col], "^:", color=color, ms=4)
                drawn_filters = True
                break
    a1.set_xlabel("epoch")
    a1.set_ylabel("validation accuracy")
    a2.set_xlabel("epoch")
    a2.set_ylabel("bits")
    a2.set_title("PID probe of the distilled layers")
    styles = [
        plt.Line2D([], [], color="0.3", marker="o", ls="-", label="Red"),
        plt.Line2D([], [], color="0.3", marker="s", ls="--", label="Uni(Y:T\\S)"),
    ]
    if drawn_filters:
        styles.append(
            plt.Line2D([], [], color="0.3", marker="^", ls=":", label="Red_map of the filters f_t(T), f_s(S)")
        )
    a2.legend(handles=styles, fontsize=8)
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 8), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    if path:
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig
