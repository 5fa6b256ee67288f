"""Compare BROJA solvers in one run: pidkd's NEWTON solver (and its 0.1.0 form), pidkd's cvxpy path, and dit.

Peers: ``NEWTON`` (the default); ``NEWTON-factored``, the same solver without the PCG Newton step
(the cheaper of the Schur and Woodbury factorisations, as before the PCG step existed);
``NEWTON-0.1.0``, the same solver with the dense Schur Newton step only, as pidkd 0.1.0 had it; pidkd's
exponential-cone programme through cvxpy with Clarabel and SCS; dit 2.3's ``PID_BROJA`` with
``method="cone"`` (the BROJA_2PID exponential-cone algorithm, solved by ECOS) and with its
default method.

Every (solver, size) measurement runs in a fresh subprocess, so each gets a clean peak-memory
reading (``ru_maxrss``, interpreter included) and a wall-clock limit. Random pmfs have full
support and fixed seeds. For every size the *reference* is the certified result (status optimal,
residual <= 1e-8) with the smallest duality gap, i.e. the value known most tightly; the table
reports each solver's largest atom difference to it.

Usage::

    python benchmarks/compare_solvers.py            # the full grid (about 40 minutes)
    python benchmarks/compare_solvers.py --quick    # small sizes only (a minute)
    python benchmarks/compare_solvers.py --solvers NEWTON NEWTON-factored   # rerun these, keep the rest
    python benchmarks/compare_solvers.py --solvers NEWTON NEWTON-0.1.0 --sizes 4x4x4 10x10x10

With ``--solvers`` only the named solvers are rerun; the other peers' results are kept from the
existing JSON, and the page says which run measured which solver.

Writes ``docs/benchmarks/solvers.json``, ``solvers.md`` and ``solvers.png`` (the docs show them).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
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
SEED = 20241107
OUT = DOCS

_CHILD = r"""
import json, resource, sys, time, warnings
import numpy as np
shape, solver, seed, repeats = json.loads(sys.argv[1])
p = np.random.default_rng(seed).random(shape); p /= p.sum()
times = []
if solver.startswith("dit"):
    import itertools, dit
    from dit.pid import PID_BROJA
    kw = {"method": "cone"} if solver == "dit-cone" else {}
    for _ in range(repeats):
        t0 = time.perf_counter()
        outcomes = [(t, s, y) for y, t, s in itertools.product(*map(range, shape))]
        d = dit.Distribution(outcomes, [p[y, t, s] for t, s, y in outcomes])
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
    for _ in range(repeats):
        t0 = time.perf_counter()
        r = pidkd.pid(p, solver=solver, strict=False)
        times.append(time.perf_counter() - t0)
    d = r.diagnostics
    out = {"atoms": [r.red, r.uni_t, r.uni_s, r.syn], "status": d.status, "gap": d.gap,
           "converged": d.converged, "residual": d.residual, "n_iter": d.n_iter}
out["times"] = times
out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def run_one(shape, solver, repeats, timeout):
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, json.dumps([list(shape), solver, SEED, repeats])],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timeout > {timeout} s"}
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


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
    parser.add_argument("--solvers", nargs="+", choices=SOLVERS, help="rerun only these; keep the others' results")
    parser.add_argument("--sizes", nargs="+", help="with --solvers: rerun only these sizes (e.g. 4x4x4)")
    args = parser.parse_args()
    if args.render:
        data = json.loads((args.out / "solvers.json").read_text())
        write_markdown(args.out / "solvers.md", markdown(data["rows"], data["batch"], data["meta"]))
        plot(data["rows"], args.out / "solvers.png")
        return
    sizes = QUICK_SIZES if args.quick else SIZES
    today = time.strftime("%Y-%m-%d")
    kept, measured = {}, dict.fromkeys(SOLVERS, today)
    if args.solvers:
        old = json.loads((args.out / "solvers.json").read_text())
        kept = {tuple(r["shape"]): r["results"] for r in old["rows"]}
        measured = {n: old["meta"].get("measured", {}).get(n, old["meta"]["date"]) for n in SOLVERS}
        measured.update(dict.fromkeys(args.solvers, today))
    rows = []
    for shape in sizes:
        cells = int(np.prod(shape))
        if args.solvers and args.sizes and "x".join(map(str, shape)) not in args.sizes:
            rows += [r for r in old["rows"] if tuple(r["shape"]) == tuple(shape)]
            continue
        results = {}
        for solver in SOLVERS:
            if args.solvers and solver not in args.solvers:
                results[solver] = kept.get(tuple(shape), {}).get(solver, {"error": "not measured"})
                continue
            if cells > LIMITS[solver]:
                results[solver] = {"error": f"not run (> {LIMITS[solver]} cells)"}
                continue
            if solver == "NEWTON-0.1.0" and shape[0] * max(shape[1:]) > NEWTON_MAX_SCHUR:
                results[solver] = {"error": f"not run (Newton system > {NEWTON_MAX_SCHUR} rows)"}
                continue
            first = run_one(shape, solver, 1, args.timeout)
            if "error" not in first and min(first["times"]) < 2 and args.repeats > 1:
                first = run_one(shape, solver, args.repeats, args.timeout)
            results[solver] = first
            print(shape, solver, {k: v for k, v in first.items() if k != "atoms"}, flush=True)
        certified = {
            k: v
            for k, v in results.items()
            if not k.startswith("dit") and "error" not in v and v["converged"] and v["gap"] >= -1e-10
        }
        ref_name = min(certified, key=lambda k: certified[k]["gap"]) if certified else None
        for res in results.values():
            if "error" in res:
                continue
            res["median_s"] = float(np.median(res["times"]))
            if ref_name is not None:
                res["max_atom_diff"] = float(np.max(np.abs(np.subtract(res["atoms"], results[ref_name]["atoms"]))))
        rows.append({"shape": list(shape), "cells": cells, "reference": ref_name, "results": results})
    batch = batch_benchmark()
    meta = environment(date=today, measured=measured, seed=SEED)
    write_json(args.out / "solvers.json", {"meta": meta, "rows": rows, "batch": batch}, indent=2)
    write_markdown(args.out / "solvers.md", markdown(rows, batch, meta))
    plot(rows, args.out / "solvers.png")
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
    return _dual_newton._Problems(np.ones((1, *shape))).step


def _noise(rows: list[dict]) -> str:
    """Range of the NEWTON / NEWTON-0.1.0 time ratio over the sizes where both run the same code."""
    kept = [r["results"] for r in rows if newton_step(r["shape"]) in ("dense", "schur")]
    pairs = [(res["NEWTON"], res["NEWTON-0.1.0"]) for res in kept]
    same = [new["median_s"] / old["median_s"] for new, old in pairs if "median_s" in new and "median_s" in old]
    return f"NEWTON / NEWTON-0.1.0 time {min(same):.2f} to {max(same):.2f}" if same else "not measured"


def _measured(meta: dict) -> str:
    """When each solver was measured: one date, or the date of each run."""
    by_date: dict[str, list[str]] = {}
    for name, date in meta.get("measured", dict.fromkeys(SOLVERS, meta["date"])).items():
        by_date.setdefault(date, []).append(name)
    if len(by_date) == 1:
        return next(iter(by_date))
    runs = "; ".join(f"{', '.join(names)} on {date}" for date, names in sorted(by_date.items()))
    return f"in separate runs on the same machine ({runs}; ratios across runs carry that run-to-run noise too)"


def _ratios(row: dict, peers: list[str]) -> list[str]:
    """NEWTON's speed-up over each peer that finished."""
    t = {n: r.get("median_s") for n, r in row["results"].items()}
    return [_fmt_ratio(t[n] / t["NEWTON"]) if t.get(n) and t.get("NEWTON") else "—" for n in peers]


def markdown(rows, batch, meta) -> str:
    names = SOLVERS
    peers = [n for n in names if n != "NEWTON"]
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
        f"Measured {_measured(meta)} on {meta['machine']}, Python {meta['python']}; "
        "median wall time per PID (validation included) and NEWTON's speed-up over each peer. "
        "The step column says how NEWTON solves its Newton systems at each size: dense (compiled "
        "kernel, small problems), schur (dense Schur complement), woodbury (per-label blocks and "
        "|T||S| rank-one terms) or pcg (conjugate gradients, preconditioned with the per-label blocks "
        "and the cells that matter). NEWTON-factored is NEWTON without the pcg step; on dense and "
        "schur sizes all three NEWTON columns run the same code, and their ratio shows the "
        f"run-to-run noise ({_noise(rows)} in this table).",
        "",
        *_table(
            ["size", "cells", "step", *(f"{n} time" for n in names), *(f"vs {n}" for n in peers)],
            [
                [
                    _size(row),
                    str(row["cells"]),
                    newton_step(row["shape"]),
                    *(_fmt_time(row["results"][n]) for n in names),
                    *_ratios(row, peers),
                ]
                for row in rows
            ],
        ),
        "",
        "Accuracy and memory: max |atom difference| in bits to the certified result with the "
        "smallest duality gap, NEWTON's certified duality gap, and the peak memory of the process "
        "(MB, interpreter included). dit reports no certificate.",
        "",
        *_table(
            ["size", *(f"{n} max diff" for n in names), "NEWTON gap (bits)", *(f"{n} MB" for n in names)],
            [
                [
                    _size(row),
                    *(_fmt(row["results"][n].get("max_atom_diff"), ".1e") for n in names),
                    _fmt(row["results"]["NEWTON"].get("gap"), ".1e"),
                    *(_fmt(row["results"][n].get("maxrss_mb"), ".0f") for n in names),
                ]
                for row in rows
            ],
        ),
    ]
    lines += [
        "",
        f"Batched: {batch['n']} random 4x4x4 pmfs through `pid_batch` in {batch['batch_s']:.2f} s "
        f"(a loop of `pid` calls: {batch['loop_s_extrapolated']:.1f} s, extrapolated from 100); "
        f"all certified: {batch['all_converged']}, largest gap {batch['max_gap_bits']:.1e} bits.",
        "",
    ]
    return "\n".join(lines)


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
