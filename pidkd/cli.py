"""The pidkd command line: exact, certified partial information decomposition.

``pidkd pid``                 PID table of every reference distribution, against its known values.
``pidkd pid xor``             PID of one reference distribution.
``pidkd pid counts.npy --counts``   PID of a count (or pmf) array p[y, t, s] saved with numpy (or a
                              3-d sparse one saved with scipy.sparse.save_npz, solved on its support).
``pidkd toys``                The RID paper's examples and theorems, checked numerically.
``pidkd measure [FILES]``     PID of saved activations per layer pair and checkpoint (default:
                              the example activations that ship with pidkd).

A user error (a bad argument, a missing or unreadable file, an output that would replace a file)
prints one line ``pidkd <command>: error: ...`` and exits with status 2; an optimisation that
cannot be certified exits with status 1. Nothing is written over an input, and an existing output
file is replaced only with ``--force``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pidkd.estimators import distributions
from pidkd.estimators._result import PIDResult
from pidkd.estimators.api import MEASURES, pid, resolve_measure
from pidkd.estimators.broja import SOLVERS
from pidkd.estimators.samples import MIN_SAMPLES_PER_CELL, SampleSizeWarning
from pidkd.exceptions import SolverError

__all__ = ["main"]

_ATOMS = ("red", "uni_t", "uni_s", "syn")
_TABLE_SUFFIXES = (".csv", ".parquet", ".json")
_PLOT_SUFFIXES = (".png", ".pdf", ".svg")
#: Seconds that ``pidkd measure --scheduler ADDRESS`` waits for the scheduler to connect and answer.
SCHEDULER_TIMEOUT = 30.0


class UsageError(ValueError):
    """A user error of the command line: printed as one line, exit status 2."""


def _unit(base: float) -> str:
    return {2.0: "bits", math.e: "nats"}.get(base, f"log base {base:g}")


def _format_table(rows: list[dict[str, object]], columns: Sequence[str]) -> str:
    def cell(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.6f}" if abs(v) >= 1e-4 or v == 0 else f"{v:.2e}"
        return str(v)

    body = [[cell(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.rjust(w) for v, w in zip(b, widths)) for b in body]
    return "\n".join(lines)


def _load_target(target: str) -> tuple[str, Any]:
    path = Path(target)
    if path.suffix == ".npy" or path.exists():
        if not path.exists():
            raise UsageError(f"file {target!r} does not exist.")
        if path.is_dir():
            raise UsageError(f"{target!r} is a directory; give a .npy array p[y, t, s] or a reference name.")
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception as exc:  # numpy suggests allow_pickle=True for anything it cannot parse: never here
            raise UsageError(
                f"could not read {target!r} as a .npy array ({type(exc).__name__}); pidkd reads numeric arrays "
                "saved with np.save and never loads pickled objects, which can run code."
            ) from None
        if not isinstance(arr, np.ndarray):
            return path.name, _load_sparse(path, target, arr)
        return path.name, arr
    try:
        return target.lower(), distributions.get(target)
    except ValueError as exc:
        raise UsageError(f"{exc} Or pass the path of a .npy pmf/count array.") from None


def _load_sparse(path: Path, target: str, archive: Any) -> Any:
    """A 3-d sparse pmf/count array saved with ``scipy.sparse.save_npz`` (never made dense)."""
    import scipy.sparse

    with archive:
        is_sparse = "format" in archive.files and "shape" in archive.files
    if not is_sparse:
        raise UsageError(
            f"{target!r} is an .npz archive but not a sparse array; pidkd pid reads one array p[y, t, s] saved with "
            "np.save, or a 3-d scipy.sparse.coo_array saved with scipy.sparse.save_npz."
        )
    try:
        return scipy.sparse.load_npz(path)  # numpy arrays only (allow_pickle=False)
    except Exception as exc:
        raise UsageError(f"could not read {target!r} as a sparse array ({type(exc).__name__}: {exc}).") from None


def _check_output(flag: str, value: str | None, suffixes: tuple[str, ...], inputs: Sequence[str], force: bool) -> None:
    """Fail before any computation if writing ``value`` would lose data or cannot work."""
    if value is None:
        return
    path = Path(value)
    if any(_same_file(path, f) for f in inputs):
        raise UsageError(f"{flag} {value!r} is one of the input files; it would be overwritten. Choose another path.")
    if path.suffix.lower() not in suffixes:
        raise UsageError(f"{flag} {value!r}: the format is chosen by the suffix, one of {', '.join(suffixes)}.")
    if path.is_dir():
        raise UsageError(f"{flag} {value!r} is a directory; give a file name.")
    if path.exists() and not force:
        raise UsageError(f"{flag} {value!r} exists; pass --force to replace it, or choose another path.")
    parent = path.resolve().parent
    if not parent.is_dir():
        raise UsageError(f"{flag} {value!r}: the directory {str(parent)!r} does not exist.")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"{flag} {value!r}: the directory {str(parent)!r} is not writable.")


def _same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file: the same path after symlinks, or the same device and inode (a
    hard link, which ``resolve()`` does not see)."""
    a, b = Path(a), Path(b)
    if a.resolve() == b.resolve():
        return True
    try:
        sa, sb = a.stat(), b.stat()
    except OSError:  # one does not exist (yet): no file to share
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _check_module(name: str, flag: str, hint: str) -> None:
    if importlib.util.find_spec(name) is None:
        raise UsageError(f"{flag} needs the package {name!r}, which is not installed: {hint}")


def _cmd_pid(args: argparse.Namespace) -> int:
    base = math.e if args.nats else args.base
    kw = {"base": base, "solver": args.solver, "tol": args.tol, "strict": not args.no_strict}
    rows: list[dict[str, object]] = []
    if args.target is None:  # the built-in default: every reference distribution, checked
        for name, ref in distributions.REFERENCE.items():
            r = pid(ref.make(), **kw)
            known = np.array([ref.red, ref.uni_t, ref.uni_s, ref.syn]) / math.log2(base)
            got = np.array([getattr(r, a) for a in _ATOMS])
            rows.append(_row(name, r) | {"max_err": float(np.abs(got - known).max())})
        columns = ["name", *_ATOMS, "max_err", "status", "gap"]
    else:
        name, arr = _load_target(args.target)
        r = pid(arr, counts=args.counts, **kw)
        rows.append(_row(name, r))
        columns = ["name", *_ATOMS, "mi_t", "mi_s", "mi_ts", "status", "gap"]
    if args.json:
        print(json.dumps(rows if args.target is None else rows[0], indent=2))
    else:
        print(f"BROJA PID of I(Y; T, S) in {_unit(base)} (axis order p[y, t, s])")
        print(_format_table(rows, columns))
    return 0


def _cmd_toys(args: argparse.Namespace) -> int:
    from pidkd.toys import check_all, format_checks, plot_theorem31

    _check_output("--plot", args.plot, _PLOT_SUFFIXES, (), args.force)
    if args.plot:
        _check_module("matplotlib", "--plot", "pip install 'pidkd[plot]'")
    rows = check_all()
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print("The RID paper (arXiv:2411.07483): examples and theorems, claimed vs computed")
        print(format_checks(rows))
    if args.plot:
        plot_theorem31(args.plot)
        print(f"figure written to {args.plot}", file=sys.stderr)
    return 0 if all(r["holds"] for r in rows) else 1


def _cmd_measure(args: argparse.Namespace) -> int:
    from pidkd.estimators.quantize import Quantizer
    from pidkd.estimators.sweeps import sweep

    files = args.files or sorted(str(p) for p in (Path(__file__).parent / "data" / "digits").glob("*.npz"))
    # Every check of the outputs runs before the computation, which can take long.
    _check_output("--out", args.out, _TABLE_SUFFIXES, files, args.force)
    _check_output("--plot", args.plot, _PLOT_SUFFIXES, files, args.force)
    if args.out and args.plot and _same_file(args.out, args.plot):
        raise UsageError("--out and --plot name the same file.")
    if (
        args.out
        and args.out.lower().endswith(".parquet")
        and not any(importlib.util.find_spec(m) for m in ("pyarrow", "fastparquet"))
    ):
        raise UsageError("--out *.parquet needs pyarrow (pip install pyarrow); or write .csv or .json.")
    if args.plot:
        _check_module("matplotlib", "--plot", "pip install 'pidkd[plot]'")
    if not args.files:
        print(
            f"No ACTIVATIONS given: measuring the example that ships with pidkd ({len(files)} "
            "checkpoints of a student MLP distilled on scikit-learn's digits).",
            file=sys.stderr,
        )
    if args.bias_correction == "bootstrap" and args.bootstrap == 0:
        raise UsageError("--bias-correction bootstrap needs bootstrap resamples; give --bootstrap > 0.")
    if ":" in args.measure and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # --measure module:Class names the user's module, as python -m would
    try:
        measure = resolve_measure(args.measure, caller="pidkd measure")
    except (ValueError, TypeError) as err:
        raise UsageError(f"--measure: {err}") from None
    if args.scheduler is not None:
        _check_module("distributed", "--scheduler", "pip install 'pidkd[distributed]'")
        if args.n_jobs != 1:
            raise UsageError("give either --scheduler (a Dask cluster) or --n-jobs (local processes), not both.")
    if args.journal is not None:
        if any(_same_file(args.journal, f) for f in files):
            raise UsageError(f"--journal {args.journal!r} is one of the input files. Choose another path.")
        if any(out is not None and _same_file(out, args.journal) for out in (args.out, args.plot)):
            raise UsageError("--journal and --out/--plot name the same file; the table would replace the journal.")
    with _dask_client(args.scheduler) as client, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SampleSizeWarning)
        df = sweep(
            files,
            teacher_layers=args.teacher_layer,
            student_layers=args.student_layer,
            quantizer=Quantizer(args.quantizer, args.clusters, n_components=args.components),
            n_bootstrap=args.bootstrap,
            n_permutations=args.permutations,
            base=math.e if args.nats else 2.0,
            n_jobs=args.n_jobs,
            progress=not args.no_progress,
            bias_correction=args.bias_correction,
            measure=measure,
            client=client,
            journal=args.journal,
            fingerprint=args.fingerprint,
            on_error="warn",
            fit_samples=args.fit_samples,
        )
    failures = df.attrs.get("failures", [])
    for w in caught:
        if issubclass(w.category, SampleSizeWarning):
            print(f"pidkd measure: warning: {w.message}", file=sys.stderr)
        elif not (failures and issubclass(w.category, RuntimeWarning) and str(w.message).startswith("sweep:")):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    for f in failures:
        print(
            f"pidkd measure: error: {f['checkpoint']}, {f['teacher_layer']} x {f['student_layer']}: {f['error']}",
            file=sys.stderr,
        )
    if df.empty:
        print(f"pidkd measure: error: all {len(failures)} pairs failed; nothing to report.", file=sys.stderr)
        return 1
    cols = [
        "checkpoint",
        "teacher_layer",
        "student_layer",
        "reliable",
        "red",
        "red_lo",
        "red_hi",
        "red_null",
        "uni_t",
        "uni_t_lo",
        "uni_t_hi",
        "uni_t_null",
        "uni_s",
        "syn",
        "n_samples",
        "status",
    ]
    if args.json:
        print(df.to_json(orient="records", indent=2))
    else:
        print(
            f"{'BROJA' if measure.name == 'broja' else measure.name} PID of I(Y; T, S) in "
            f"{_unit(math.e if args.nats else 2.0)}; atoms: {args.bias_correction}-corrected "
            f"estimates (plug-in atoms: *_plugin in --out/--json); *_lo/*_hi: {int(100 * 0.9)}% interval around them; "
            "*_null: plug-in mean under shuffled labels (bias); reliable: at least "
            f"{MIN_SAMPLES_PER_CELL:g} samples per occupied cell, and the estimate not beyond the information bounds "
            "by more than its interval (columns bounded, beyond_bounds)"
        )
        print(_format_table(df[cols].to_dict("records"), cols))
    if args.out:
        out = Path(args.out)
        suffix = out.suffix.lower()
        if suffix == ".parquet":
            df.to_parquet(out)
        elif suffix == ".json":
            df.to_json(out, orient="records", indent=2)
        else:
            df.to_csv(out, index=False)
        print(f"table written to {out}", file=sys.stderr)
    if args.plot:
        from pidkd.plotting import plot_sweep

        plot_sweep(df, args.plot)
        print(f"plot written to {args.plot}", file=sys.stderr)
    if failures:
        print(f"pidkd measure: {len(failures)} pair(s) failed (above); the table holds the others.", file=sys.stderr)
        return 1
    return 0


@contextlib.contextmanager
def _dask_client(address: str | None) -> Iterator[Any]:
    """A Dask client of the cluster at ``address`` ("local": a new cluster of this machine's cores), or None."""
    if address is None:
        yield None
        return
    distributed = importlib.import_module("distributed")
    if address == "local":
        n = os.cpu_count() or 1
        with distributed.LocalCluster(n_workers=n, threads_per_worker=1, dashboard_address=None) as cluster:
            with distributed.Client(cluster) as client:
                print(f"pidkd measure: a local Dask cluster of {n} workers", file=sys.stderr)
                yield client
        return
    _probe_scheduler(address, SCHEDULER_TIMEOUT)
    with distributed.Client(address, timeout=f"{SCHEDULER_TIMEOUT}s") as client:
        yield client


def _probe_scheduler(address: str, timeout: float) -> None:
    """Fail in ``timeout`` seconds, with one line, unless a Dask scheduler answers at ``address``.

    ``distributed.Client(address, timeout=...)`` bounds only the TCP connect: an address that accepts
    connections but never answers the handshake (a dashboard port, an HTTP server, a silent socket)
    keeps it waiting for good. Here the connect and the handshake run under one deadline, in an event
    loop of their own that is closed again, before the client is made.
    """
    import asyncio

    from distributed.comm import connect

    async def handshake() -> None:
        comm = await asyncio.wait_for(connect(address, timeout=timeout), timeout)
        await comm.close()

    hint = "give the scheduler's address (e.g. tcp://HOST:8786; the dashboard's port 8787 is no scheduler)"
    try:
        asyncio.run(handshake())
    except TimeoutError:  # asyncio.wait_for's deadline (distributed's own connect timeout is an OSError)
        raise UsageError(
            f"--scheduler {address!r} accepts connections but gave no Dask handshake within {timeout:g} s; {hint}."
        ) from None
    except OSError as exc:
        raise UsageError(f"--scheduler {address!r}: could not connect ({exc}); {hint}.") from None
    except Exception as exc:  # an answer that is not a Dask handshake (an HTTP reply reads as a huge frame)
        raise UsageError(
            f"--scheduler {address!r} answered, but not as a Dask scheduler ({type(exc).__name__}); {hint}."
        ) from None


def _row(name: str, r: PIDResult) -> dict[str, object]:
    d = r.as_dict()
    return {"name": name} | {k: v for k, v in d.items() if k not in ("method",)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pidkd",
        description="pidkd: exact, certified partial information decomposition (BROJA PID) of I(Y; T, S).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "pid",
        help="BROJA PID of a reference distribution or a .npy pmf/count array",
        description="Compute the BROJA partial information decomposition of I(Y; T, S). With no "
        "TARGET, decompose every built-in reference distribution and compare with its known "
        f"values. Reference names: {', '.join(distributions.REFERENCE)}.",
    )
    p.add_argument(
        "target",
        nargs="?",
        help="reference distribution name, path to a .npy array p[y, t, s], or to a .npz 3-d sparse array "
        "(scipy.sparse.save_npz; solved on its support, never made dense)",
    )
    p.add_argument("--counts", action="store_true", help="the array holds counts, not probabilities")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--base", type=float, default=2.0, help="logarithm base (default 2: bits)")
    p.add_argument("--nats", action="store_true", help="report in nats (base e), as the RID paper")
    p.add_argument(
        "--solver",
        type=str.upper,
        choices=SOLVERS,
        default=None,
        help="optimiser, any case (default NEWTON, pidkd's own; CLARABEL, SCS, ECOS through cvxpy)",
    )
    p.add_argument(
        "--tol",
        type=float,
        default=None,
        help="largest accepted duality gap in bits (default 1e-9 for NEWTON, 1e-7 otherwise)",
    )
    p.add_argument("--no-strict", action="store_true", help="warn instead of failing on an uncertified solve")
    p.set_defaults(func=_cmd_pid)
    toys = sub.add_parser(
        "toys",
        help="check the RID paper's toy examples and theorems numerically",
        description="Examples 1-3, Theorem 3.1 over a grid of entropies and Theorem 4.1 on random "
        "pmfs: the claimed value, the computed value and whether the claim holds. Exit status 1 if "
        "any check fails.",
    )
    toys.add_argument("--json", action="store_true", help="print JSON instead of a table")
    toys.add_argument(
        "--plot", metavar="PNG", help="also draw the Theorem 3.1 figure (.png, .pdf or .svg; needs matplotlib)"
    )
    toys.add_argument("--force", action="store_true", help="replace an existing --plot file")
    toys.set_defaults(func=_cmd_toys)
    m = sub.add_parser(
        "measure",
        help="PID of saved teacher/student activations per layer pair and checkpoint",
        description="Quantize saved activations (k-means after L2 normalisation and PCA, T and S "
        "separately) and compute the BROJA PID of I(Y; T, S) for every teacher layer x student "
        "layer x checkpoint (one file per checkpoint: .npz, .pt or .safetensors with keys labels, "
        "teacher/<layer>, student/<layer>), with bootstrap intervals and a shuffled-label null. "
        "Without files it measures the example activations that ship with pidkd.",
    )
    m.add_argument(
        "files",
        nargs="*",
        metavar="ACTIVATIONS",
        help="one activations file (or .npy directory, Zarr group) per checkpoint",
    )
    m.add_argument("--teacher-layer", action="append", help="teacher layer (repeat; default all)")
    m.add_argument("--student-layer", action="append", help="student layer (repeat; default all)")
    m.add_argument("--clusters", type=int, default=10, help="codes per representation (default 10)")
    m.add_argument("--components", type=int, default=10, help="PCA components before k-means (default 10)")
    m.add_argument("--quantizer", choices=("kmeans", "uniform", "quantile"), default="kmeans")
    m.add_argument("--bootstrap", type=int, default=100, help="bootstrap resamples (default 100)")
    m.add_argument("--permutations", type=int, default=10, help="label permutations for the null (default 10)")
    m.add_argument(
        "--bias-correction",
        choices=("jackknife", "bootstrap", "none"),
        default="jackknife",
        help="correction of the plug-in bias (default jackknife; none: the plug-in)",
    )
    m.add_argument(
        "--measure",
        default="broja",
        metavar="NAME",
        help=f"PID measure: {', '.join(MEASURES)} (default broja; maps: the map redundancy, a certified lower bound "
        "on BROJA's Red), or module:Class for a pidkd.Measure of your own",
    )
    m.add_argument("--nats", action="store_true", help="report in nats")
    m.add_argument("--n-jobs", type=int, default=1, help="parallel processes on this machine (default 1)")
    m.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run on the Dask cluster at ADDRESS (e.g. tcp://10.0.0.5:8786), or 'local' for a local cluster of "
        "this machine's cores; needs pidkd[distributed]. Workers read the files from their paths",
    )
    m.add_argument(
        "--journal",
        metavar="FILE",
        help="append each finished row to FILE (JSON lines) as it finishes; a rerun with the same FILE skips them",
    )
    m.add_argument(
        "--fingerprint",
        choices=("stat", "content"),
        default="stat",
        help="how --journal tells that a file is unchanged: stat (path, size and modification time; default, "
        "instant) or content (a SHA-256 of every byte: sees a rewrite that kept size and time, reads the files "
        "once more)",
    )
    m.add_argument(
        "--fit-samples",
        type=int,
        default=20_000,
        help="fit each layer's quantizer on at most this many rows (fewer for very wide layers), then code all rows "
        "chunk by chunk (default 20000)",
    )
    m.add_argument("--out", help="write the table to this file; the suffix picks the format: .csv, .parquet or .json")
    m.add_argument("--plot", metavar="PNG", help="write the plots to this .png, .pdf or .svg file (needs matplotlib)")
    m.add_argument("--force", action="store_true", help="replace existing --out / --plot files (never an input)")
    m.add_argument("--json", action="store_true", help="print JSON records instead of a table")
    m.add_argument("--no-progress", action="store_true", help="no progress bar")
    m.set_defaults(func=_cmd_measure)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pidkd`` command."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SolverError as exc:
        print(f"pidkd {args.command}: {exc}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, OSError, MemoryError, ImportError) as exc:
        # User errors (bad arguments, unreadable files) are one line, never a traceback.
        print(f"pidkd {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return _interrupted(args)
    except Exception as exc:
        from pidkd.estimators.broja._kernels import interrupted

        if interrupted(exc):  # Numba wraps a Ctrl-C that lands in compiled code in a SystemError
            return _interrupted(args)
        raise


def _interrupted(args: argparse.Namespace) -> int:
    """Ctrl-C: one line (where the finished rows are, if a journal keeps them), exit status 130."""
    journal = getattr(args, "journal", None)
    kept = f"; the finished rows are in --journal {journal!r}, and a rerun with it skips them" if journal else ""
    print(f"pidkd {args.command}: interrupted{kept}", file=sys.stderr)
    return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
