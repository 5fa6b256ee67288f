"""Compare BROJA solvers in one run: pidkd's NEWTON solver (and its 0.1.0 form), pidkd's cvxpy path, and dit.

Two families of pmfs, each a table of the generated page:

- ``random``: random pmfs with full support (fixed seed). Peers: ``NEWTON`` (the default);
  ``NEWTON-factored``, the same solver without the PCG Newton step (the cheaper of the Schur and
  Woodbury factorisations, as before the PCG step existed); ``NEWTON-0.1.0``, the same solver with
  the dense Schur Newton step only, as pidkd 0.1.0 had it; pidkd's exponential-cone programme through
  cvxpy with Clarabel and SCS; dit 2.3's ``PID_BROJA`` with ``method="cone"`` (the BROJA_2PID
  exponential-cone algorithm, solved by ECOS) and with its default method. For every size the
  *reference* is the certified result (status optimal, residual <= 1e-8) with the smallest duality
  gap, i.e. the value known most tightly.
- ``copy``: BROJA_2PID's large copy (its ``testing/test_large_copy.py``): Y = (T, S) with T and S
  independent and uniform, |S| = 25, |T| = 10 ... 990; the support has |T||S| cells, the dense array
  (|T||S|)·|T|·|S|. The reference is the closed form Uni_t = log2|T|, Uni_s = log2|S|, Red = Syn = 0.
  Peers: ``NEWTON`` on the pmf as a 3-d ``scipy.sparse.coo_array`` (pidkd's support solver);
  ``NEWTON-dense`` on the same pmf as a dense array, kept on the dense path (as ``benchmarks/sparse_support.py``
  does for its dense samples case) while that array takes at most 2 GB; ``dit-cone`` on a dit
  Distribution of the support's outcomes only.

Every (family, solver, size) measurement runs in a fresh subprocess, so each gets a clean
peak-memory reading (``ru_maxrss``, interpreter included) and a wall-clock limit. The tables report
each solver's largest atom difference to the reference.

Usage::

    python benchmarks/compare_solvers.py            # both families, all sizes (about 45 minutes)
    python benchmarks/compare_solvers.py --quick    # small sizes only (two minutes)
    python benchmarks/compare_solvers.py --families copy   # rerun the copy family, keep the random one
    python benchmarks/compare_solvers.py --solvers NEWTON NEWTON-factored   # rerun these, keep the rest
    python benchmarks/compare_solvers.py --solvers NEWTON NEWTON-0.1.0 --sizes 4x4x4 10x10x10

With ``--solvers`` or ``--families`` only the named solvers (of the named families) are rerun; the
other results are kept from the existing JSON, and the page says which run measured which solver.

Writes ``docs/benchmarks/solvers.json``, ``solvers.md`` and ``solvers.png`` (the docs show them).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import DOCS, argument_parser, environment, write_json, write_markdown  # noqa: E402

SIZES = [
    (2, 2, 2),
    (4, 4, 4),
    (10, 10, 10),
    (10, 32, 32),
    (10, 64, 64),
    (100, 10, 10),
    (200, 10, 10),
    (1000, 10, 10),
    (10, 128, 128),
    (10, 256, 256),
    (100, 64, 64),
]
QUICK_SIZES = [(2, 2, 2), (4, 4, 4), (10, 10, 10), (10, 32, 32)]
# Largest problem (cells) each peer is run on; beyond it the run would take far too long
# (measured here: SCS needs 6 s at 10x10x10 and 350 s at 10x32x32; dit more than 15 minutes at
# 10x10x10). The 0.1.0 Newton step factors a dense system of |Y|·max(|T|,|S|) rows; beyond 2,600
# a step costs several seconds on 2 cores (1000x10x10 took 373 s), so it is not run there.
SOLVERS = ("NEWTON", "NEWTON-factored", "NEWTON-0.1.0", "CLARABEL", "SCS", "dit-cone", "dit")
LIMITS = {"NEWTON": 10**6, "NEWTON-factored": 10**6, "NEWTON-0.1.0": 10**6}
LIMITS.update({"CLARABEL": 45_000, "SCS": 1_000, "dit-cone": 20_000, "dit": 64})
NEWTON_MAX_SCHUR = 2_600
# The copy family: p[y, t, s] of shape (|T||S|, |T|, |S|). Its limits are in dense cells too:
# NEWTON-dense up to 2 GB of dense input (|T| = 990 would be 4.9 GB). dit's cone method builds the
# dense pmf over the whole sample space and sets its result outcome by outcome through xarray, which
# costs far more than ECOS's solve: measured here 21 s at |T| = 10 (62,500 cells) and 127 s at
# |T| = 20 (250,000), so |T| = 50 (1.6 M cells) would run past the 600 s limit; it is run up to 100,000.
COPY_S = 25
COPY_SIZES = [(n * COPY_S, n, COPY_S) for n in (10, 50, 100, 200, 400, 990)]
QUICK_COPY_SIZES = [(n * COPY_S, n, COPY_S) for n in (10, 20)]
COPY_SOLVERS = ("NEWTON", "NEWTON-dense", "dit-cone")
COPY_LIMITS = {"NEWTON-dense": 2 * 10**9 // 8, "dit-cone": 100_000}
SEED = 20241107
OUT = DOCS


@dataclass(frozen=True)
class Family:
    """One family of pmfs: its rows' key in solvers.json, its peers (NEWTON first) and their limits."""

    key: str
    solvers: tuple[str, ...]
    sizes: list[tuple[int, int, int]]
    quick_sizes: list[tuple[int, int, int]]
    limits: dict[str, int] = field(default_factory=dict)
    exact: Callable[[tuple[int, int, int]], list[float]] | None = None  # closed-form atoms, the reference

    @property
    def measured(self) -> str:
        """The key in the JSON's meta of when each of its solvers was measured."""
        return "measured" if self.key == "rows" else f"measured_{self.key}"


def copy_atoms(shape: tuple[int, int, int]) -> list[float]:
    """The copy family's exact (red, uni_t, uni_s, syn) in bits: 0, log2|T|, log2|S|, 0."""
    return [0.0, float(np.log2(shape[1])), float(np.log2(shape[2])), 0.0]


FAMILIES = {
    "random": Family("rows", SOLVERS, SIZES, QUICK_SIZES, LIMITS),
    "copy": Family("copy", COPY_SOLVERS, COPY_SIZES, QUICK_COPY_SIZES, COPY_LIMITS, copy_atoms),
}

_CHILD = r"""
import json, resource, sys, time, warnings
import numpy as np
family, shape, solver, seed, repeats = json.loads(sys.argv[1])
if family == "copy":  # BROJA_2PID's large copy, Y = (T, S), as a 3-d COO array of its support
    import scipy.sparse
    n_t, n_s = shape[1:]
    t, s = np.repeat(np.arange(n_t), n_s), np.tile(np.arange(n_s), n_t)
    p = scipy.sparse.coo_array((np.full(t.size, 1.0 / t.size), (t * n_s + s, t, s)), shape=shape)
else:
    p = np.random.default_rng(seed).random(shape); p /= p.sum()
times = []
if solver.startswith("dit"):
    import dit
    from dit.pid import PID_BROJA
    kw = {"method": "cone"} if solver == "dit-cone" else {}
    for _ in range(repeats):
        t0 = time.perf_counter()
        y, t, s = p.coords if family == "copy" else np.nonzero(p)  # the support's outcomes only
        w = p.data if family == "copy" else p[y, t, s]
        d = dit.Distribution(list(zip(t.tolist(), s.tolist(), y.tolist())), w.tolist())
        r = PID_BROJA(d, **kw)
        times.append(time.perf_counter() - t0)
    atoms = [float(r[((0,), (1,))]), float(r[((0,),)]), float(r[((1,),)]), float(r[((0, 1),)])]
    out = {"atoms": atoms, "status": "n/a", "gap": None}
else:
    import pidkd
    warnings.simplefilter("ignore")
    if solver == "NEWTON-0.1.0":  # the dense Schur Newton step only, as pidkd 0.1.0
        from pidkd.estimators.broja import _dual_newton
        _dual_newton._step_cost = lambda *shape, **sparsity: ("schur", 0.0)
        solver = "NEWTON"
    if solver == "NEWTON-factored":  # no PCG step: the cheaper factorisation, as before it existed
        from pidkd.estimators.broja import _dual_newton
        _dual_newton.PCG_MIN_FLOPS = float("inf")
        solver = "NEWTON"
    if solver == "NEWTON-dense":  # the dense array, kept on the dense path (not routed onto the support)
        from pidkd.estimators.broja import _sparse_solve
        _sparse_solve.AUTO_SPARSE_SIZE = 10**18
        p, solver = p.todense(), "NEWTON"
    for _ in range(repeats):
        t0 = time.perf_counter()
        r = pidkd.pid(p, solver=solver, strict=False)
        times.append(time.perf_counter() - t0)
    d = r.diagnostics
    out = {"atoms": [r.red, r.uni_t, r.uni_s, r.syn], "status": d.status, "gap": d.gap,
           "converged": d.converged, "residual": d.residual, "n_iter": d.n_iter, "path": d.solver}
out["times"] = times
out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def run_one(family, shape, solver, repeats, timeout):
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, json.dumps([family, list(shape), solver, SEED, repeats])],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timeout > {timeout:g} s"}
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(family: str, shape, solver: str, args) -> dict:
    """One solver at one size: its limit's reason not to run, or one run, repeated when it was fast."""
    cells = int(np.prod(shape))
    limit = FAMILIES[family].limits.get(solver)
    if limit is not None and cells > limit:
        return {"error": f"not run (> {limit:,} cells)"}
    if solver == "NEWTON-0.1.0" and shape[0] * max(shape[1:]) > NEWTON_MAX_SCHUR:
        return {"error": f"not run (Newton system > {NEWTON_MAX_SCHUR} rows)"}
    res = run_one(family, shape, solver, 1, args.timeout)
    if "error" not in res and min(res["times"]) < 2 and args.repeats > 1:
        res = run_one(family, shape, solver, args.repeats, args.timeout)
    print(family, shape, solver, {k: v for k, v in res.items() if k != "atoms"}, flush=True)
    return res


def score(results: dict, exact: list[float] | None = None) -> str | None:
    """Add median times and atom differences to the reference to ``results``; return the reference's name.

    The reference is ``exact`` (the closed form) where given, else the certified result with the
    smallest duality gap.
    """
    certified = {
        k: v
        for k, v in results.items()
        if not k.startswith("dit") and "error" not in v and v["converged"] and v["gap"] >= -1e-10
    }
    ref_name = "closed form" if exact else min(certified, key=lambda k: certified[k]["gap"]) if certified else None
    ref = exact or (results[ref_name]["atoms"] if ref_name else None)
    for res in results.values():
        if "error" in res:
            continue
        res["median_s"] = float(np.median(res["times"]))
        if ref is not None:
            res["max_atom_diff"] = float(np.max(np.abs(np.subtract(res["atoms"], ref))))
    return ref_name


def measure_family(name: str, args, old: dict | None, today: str) -> tuple[list[dict], dict[str, str]]:
    """A family's rows and when each of its solvers was measured: the solvers the options name are run
    now, the others' results kept from ``old`` (the previous JSON)."""
    fam = FAMILIES[name]
    rerun = [n for n in fam.solvers if not args.solvers or n in args.solvers] if name in args.families else []
    old_rows, old_meta = (old or {}).get(fam.key, []), (old or {}).get("meta", {})
    dates = old_meta.get(fam.measured, {})
    measured = {n: today if n in rerun else dates.get(n, old_meta.get("date")) for n in fam.solvers}
    if not rerun:
        return old_rows, measured
    kept = {tuple(r["shape"]): r for r in old_rows}
    rows = []
    for shape in fam.quick_sizes if args.quick else fam.sizes:
        if args.solvers and args.sizes and "x".join(map(str, shape)) not in args.sizes:
            rows += [kept[shape]] if shape in kept else []
            continue
        old_results = kept[shape]["results"] if shape in kept else {}
        results = {
            n: measure(name, shape, n, args) if n in rerun else old_results.get(n, {"error": "not measured"})
            for n in fam.solvers
        }
        ref = score(results, fam.exact(shape) if fam.exact else None)
        rows.append({"shape": list(shape), "cells": int(np.prod(shape)), "reference": ref, "results": results})
    return rows, measured


def batch_benchmark(n: int = 1000) -> dict:
    """n random 4x4x4 pmfs through pid_batch, and through a loop of pid calls, in this process."""
    import pidkd

    rng = np.random.default_rng(SEED)
    ps = rng.random((n, 4, 4, 4))
    ps /= ps.sum(axis=(1, 2, 3), keepdims=True)
    pidkd.pid_batch(ps[:4])  # warm-up
    t0 = time.perf_counter()
    rs = pidkd.pid_batch(ps)
    t_batch = time.perf_counter() - t0
    t0 = time.perf_counter()
    loop = [pidkd.pid(p) for p in ps[:100]]
    t_loop = (time.perf_counter() - t0) * n / 100
    diff = max(abs(a.uni_t - b.uni_t) for a, b in zip(rs, loop))
    return {
        "n": n,
        "batch_s": t_batch,
        "loop_s_extrapolated": t_loop,
        "all_converged": all(r.diagnostics.converged for r in rs),
        "max_gap_bits": max(r.diagnostics.gap for r in rs),
        "max_diff_batch_vs_loop": diff,
    }


def main() -> None:
    parser = argument_parser(
        __doc__,
        quick="small sizes only",
        repeats=5,
        repeats_help="repeats for runs under 2 s",
        out=OUT,
        render="only re-render the markdown and plot from the JSON",
    )
    parser.add_argument("--timeout", type=float, default=600, help="wall-clock limit per run (s)")
    names = list(dict.fromkeys(n for fam in FAMILIES.values() for n in fam.solvers))
    parser.add_argument("--solvers", nargs="+", choices=names, help="rerun only these; keep the others' results")
    parser.add_argument(
        "--sizes",
        nargs="+",
        help="with --solvers: rerun only these sizes (e.g. 4x4x4; 2500x100x25 is |T| = 100 of the copy family)",
    )
    parser.add_argument(
        "--families", nargs="+", choices=list(FAMILIES), default=list(FAMILIES), help="rerun only these families"
    )
    args = parser.parse_args()
    path = args.out / "solvers.json"
    if args.render:
        data = json.loads(path.read_text())
        write_markdown(args.out / "solvers.md", markdown(data))
        plot(data["rows"], args.out / "solvers.png")
        return
    partial = args.solvers or set(args.families) != set(FAMILIES)
    old = json.loads(path.read_text()) if partial and path.exists() else None
    today = time.strftime("%Y-%m-%d")
    rows, measured = {}, {}
    for name, fam in FAMILIES.items():
        rows[fam.key], measured[fam.measured] = measure_family(name, args, old, today)
    rerun_random = "random" in args.families and (not args.solvers or set(args.solvers) & set(SOLVERS))
    batch = batch_benchmark() if rerun_random else (old or {}).get("batch")
    data = {"meta": environment(date=today, seed=SEED, **measured), **rows, "batch": batch}
    write_json(path, data, indent=2)
    write_markdown(args.out / "solvers.md", markdown(data))
    plot(data["rows"], args.out / "solvers.png")
    print((args.out / "solvers.md").read_text())


def _fmt_ratio(r: float) -> str:
    return f"{r:.0f}x" if r >= 10 else f"{r:.2g}x"


def _fmt_time(res: dict) -> str:
    if "error" in res:
        return res["error"].replace("not run ", "—&nbsp;")
    flag = "" if res.get("converged", True) else " (not certified)"
    return f"{res['median_s']:.3g} s{flag}"


def _table(header: list[str], body: list[list[str]]) -> list[str]:
    """Markdown table lines."""
    return [f"| {' | '.join(r)} |" for r in (header, ["---"] * len(header), *body)]


def _size(row: dict) -> str:
    return "x".join(map(str, row["shape"]))


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def newton_step(shape) -> str:
    """How NEWTON solves the Newton systems of a random full-support pmf of this shape."""
    from pidkd.estimators.broja import _dual_newton

    if shape[0] * (shape[1] + shape[2]) <= _dual_newton.DENSE_MAX_VARS:
        return "dense"
    return _dual_newton._Problems(np.ones((1, *shape))).step.name


def _noise(rows: list[dict]) -> str:
    """Range of the NEWTON / NEWTON-0.1.0 time ratio over the sizes where both run the same code."""
    kept = [r["results"] for r in rows if newton_step(r["shape"]) in ("dense", "schur")]
    pairs = [(res["NEWTON"], res["NEWTON-0.1.0"]) for res in kept]
    same = [new["median_s"] / old["median_s"] for new, old in pairs if "median_s" in new and "median_s" in old]
    return f"NEWTON / NEWTON-0.1.0 time {min(same):.2f} to {max(same):.2f}" if same else "not measured"


def _measured(meta: dict, family: Family = FAMILIES["random"]) -> str:
    """When a family's solvers were measured: one date, or the date of each run."""
    by_date: dict[str, list[str]] = {}
    for name, date in meta.get(family.measured, dict.fromkeys(family.solvers, meta["date"])).items():
        by_date.setdefault(date or "an unknown date", []).append(name)
    if len(by_date) == 1:
        return next(iter(by_date))
    runs = "; ".join(f"{', '.join(names)} on {date}" for date, names in sorted(by_date.items()))
    return f"in separate runs on the same machine ({runs}; ratios across runs carry that run-to-run noise too)"


def _ratios(row: dict, peers: list[str]) -> list[str]:
    """NEWTON's speed-up over each peer that finished."""
    t = {n: r.get("median_s") for n, r in row["results"].items()}
    return [_fmt_ratio(t[n] / t["NEWTON"]) if t.get(n) and t.get("NEWTON") else "—" for n in peers]


def _tables(rows: list[dict], names: tuple[str, ...], lead: dict, acc_lead: dict) -> tuple[list[str], list[str]]:
    """A family's two tables: times with NEWTON's speed-ups, and accuracy and memory.

    ``lead`` and ``acc_lead`` map each table's first column headers to their cell of a row.
    """
    peers = [n for n in names if n != "NEWTON"]
    return (
        _table(
            [*lead, *(f"{n} time" for n in names), *(f"vs {n}" for n in peers)],
            [
                [
                    *(cell(row) for cell in lead.values()),
                    *(_fmt_time(row["results"][n]) for n in names),
                    *_ratios(row, peers),
                ]
                for row in rows
            ],
        ),
        _table(
            [*acc_lead, *(f"{n} max diff" for n in names), "NEWTON gap (bits)", *(f"{n} MB" for n in names)],
            [
                [
                    *(cell(row) for cell in acc_lead.values()),
                    *(_fmt(row["results"][n].get("max_atom_diff"), ".1e") for n in names),
                    _fmt(row["results"]["NEWTON"].get("gap"), ".1e"),
                    *(_fmt(row["results"][n].get("maxrss_mb"), ".0f") for n in names),
                ]
                for row in rows
            ],
        ),
    )


def _copy_section(rows: list[dict], meta: dict) -> list[str]:
    """The page's section on BROJA_2PID's large copy family."""
    dense_gb = COPY_LIMITS["NEWTON-dense"] * 8 / 1e9
    lines = [
        "",
        "## BROJA_2PID large copy",
        "",
        "Y = (T, S) with T and S independent and uniform, |S| = 25 (BROJA_2PID's "
        "`testing/test_large_copy.py`): exact atoms Uni_t = log2|T|, Uni_s = log2|S|, Red = Syn = 0. "
        "The support has |T||S| cells, the dense array (|T||S|)·|T|·|S|. NEWTON gets the pmf as a 3-d "
        "`scipy.sparse.coo_array` and solves on its support; NEWTON-dense gets the same pmf as a dense "
        "array and is kept on the dense path (pidkd would otherwise route such input onto the support), "
        f"while the dense array takes at most {dense_gb:g} GB; dit-cone gets a dit Distribution of the "
        "support's outcomes only (its cone method then builds the dense pmf over the whole sample space "
        "and sets its result outcome by outcome, so its time grows with the dense size: it is run up to "
        f"{COPY_LIMITS['dit-cone']:,} dense cells). Measured {_measured(meta, FAMILIES['copy'])}; median "
        "wall time per PID and NEWTON's speed-up over each peer, then the max |atom difference| in bits "
        "to the closed form, NEWTON's "
        "certified duality gap and the peak memory of the process (MB, interpreter included).",
        "",
    ]
    n_t = {r"\|T\|": lambda r: str(r["shape"][1])}  # p[y, t, s] has the shape (|T||S|, |T|, |S|)
    lead = n_t | {"support cells": lambda r: f"{r['shape'][0]:,}", "dense cells": lambda r: f"{r['cells']:.3g}"}
    times, accuracy = _tables(rows, COPY_SOLVERS, lead, n_t)
    return [*lines, *times, "", *accuracy]


def markdown(data: dict) -> str:
    rows, batch, meta = data["rows"], data.get("batch"), data["meta"]
    lead = {"size": _size, "cells": lambda r: str(r["cells"]), "step": lambda r: newton_step(r["shape"])}
    times, accuracy = _tables(rows, SOLVERS, lead, {"size": _size})
    lines = [
        "# Benchmark: BROJA solvers",
        "",
        "Generated by `python benchmarks/compare_solvers.py` (do not edit by hand). pidkd's own "
        "solver (NEWTON, the default) against itself without its PCG Newton step (NEWTON-factored) "
        "and in its 0.1.0 form (NEWTON-0.1.0: the dense Schur Newton step only), pidkd's "
        "exponential-cone programme solved by Clarabel and SCS through cvxpy, "
        'and dit 2.3\'s `PID_BROJA` with `method="cone"` (dit-cone: the BROJA_2PID exponential-cone '
        "algorithm) and with its default method (dit), on random pmfs with full support (seed "
        "fixed). Every run is a fresh process.",
        "",
        "![time per PID against problem size](solvers.png)",
        "",
        "## Random pmfs",
        "",
        f"Measured {_measured(meta)} on {meta['machine']}, Python {meta['python']}; "
        "median wall time per PID (validation included) and NEWTON's speed-up over each peer. "
        "The step column says how NEWTON solves its Newton systems at each size: dense (compiled "
        "kernel, small problems), schur (dense Schur complement), woodbury (per-label blocks and "
        "|T||S| rank-one terms) or pcg (conjugate gradients, preconditioned with the per-label blocks "
        "and the cells that matter). NEWTON-factored is NEWTON without the pcg step; on dense and "
        "schur sizes all three NEWTON columns run the same code, and their ratio shows the "
        f"run-to-run noise ({_noise(rows)} in this table).",
        "",
        *times,
        "",
        "Accuracy and memory: max |atom difference| in bits to the certified result with the "
        "smallest duality gap, NEWTON's certified duality gap, and the peak memory of the process "
        "(MB, interpreter included). dit reports no certificate.",
        "",
        *accuracy,
    ]
    if batch:
        lines += [
            "",
            f"Batched: {batch['n']} random 4x4x4 pmfs through `pid_batch` in {batch['batch_s']:.2f} s "
            f"(a loop of `pid` calls: {batch['loop_s_extrapolated']:.1f} s, extrapolated from 100); "
            f"all certified: {batch['all_converged']}, largest gap {batch['max_gap_bits']:.1e} bits.",
        ]
    if data.get("copy"):
        lines += _copy_section(data["copy"], meta)
    return "\n".join([*lines, ""])


def plot(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    markers = {"NEWTON": "o", "NEWTON-factored": "v", "NEWTON-0.1.0": "o"}
    markers.update({"CLARABEL": "s", "SCS": "^", "dit-cone": "D", "dit": "x"})
    for name, marker in markers.items():
        pts = [(r["cells"], r["results"][name]["median_s"]) for r in rows if "median_s" in r["results"][name]]
        if pts:
            # markers only: problems of equal size but different shape (10x32x32, 100x10x10) differ a lot
            style = {"mfc": "none", "ms": 9} if name in ("NEWTON-0.1.0", "NEWTON-factored") else {}
            label = name if name != "NEWTON" else "pidkd NEWTON"
            ax.loglog(*zip(*pts), marker=marker, ls="none", label=label, **style)
    ax.set_xlabel("support cells |Y|·|T|·|S|")
    ax.set_ylabel("median wall time per PID (s)")
    ax.set_title("BROJA PID of random pmfs: time to a certified result")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
