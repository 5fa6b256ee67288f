"""Scaling out: Dask against joblib, a sweep of a 2 GB activation directory, per-task costs and sizing.

Parts (all by default; ``--part`` picks one and keeps the others' results in the JSON):

- ``engines``: a 16-pair sweep (4 checkpoints x 2 teacher x 2 student layers, 10,000 samples,
  10 labels, k-means to 10 codes, sweep's defaults) serially, with joblib ``n_jobs=2`` and on a
  Dask ``LocalCluster`` of 2 single-threaded worker processes; both pools are warmed up by one
  small sweep first (a running cluster is the normal case; its start-up is reported on its own).
  Checks that the tables are identical (but for ``solve_time``).
- ``memory``: a directory of .npy files, 2 GB of float32 activations (200,000 samples, one teacher
  and one student layer of 1,280 features each), swept in a child process whose peak resident
  memory is read from ``/proc/self/status`` (VmHWM); next to it, the peak of reading the same arrays into memory
  and quantizing them there (what a single-file format does).
- ``costs``: the time of one quantization task (50,000 x 512 and 50,000 x 2,048 features) and of
  one PID task (10,000 and 50,000 samples; 10 and 100 labels; 200 bootstrap resamples and 20
  permutations, the defaults of pid_from_samples, jackknife), from which the docs' sizing table
  is computed.

Writes docs/benchmarks/scale.json and scale.md. Measures; asserts nothing.
Run: python benchmarks/scale/run.py [--part engines|memory|costs] [--workdir DIR]
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from pidkd.estimators import Quantizer, pid_from_samples, sweep
from pidkd.estimators.activations import Activations
from pidkd.estimators.quantize import quantize_in_chunks
from pidkd.estimators.samples import SampleSizeWarning
from pidkd.estimators.sweeps import TIMING_COLUMNS

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared harness
from _harness import DOCS, argument_parser, environment, write_json, write_markdown  # noqa: E402

OUT = DOCS
GiB = 2**30


def synthetic(n: int, n_labels: int, dims: dict[str, int], seed: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Labels and layers whose features carry the label to different degrees (float32)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_labels, n)
    layers = {}
    for i, (name, d) in enumerate(dims.items()):
        centres = rng.normal(size=(n_labels, d)).astype(np.float32)
        layers[name] = (centres[y] * (0.5 + 0.5 * i) + rng.normal(size=(n, d)).astype(np.float32)).astype(np.float32)
    return y, layers


# --------------------------------------------------------------------------------------------- engines


def part_engines(workdir: Path) -> dict:
    from distributed import Client, LocalCluster

    sources = []
    for c in range(4):
        y, layers = synthetic(10_000, 10, {"t1": 64, "t2": 64, "s1": 32, "s2": 32}, seed=c)
        teacher = {k: v for k, v in layers.items() if k.startswith("t")}
        student = {k: v for k, v in layers.items() if k.startswith("s")}
        d = workdir / f"engines/ck{c}"
        for side, arrays in (("teacher", teacher), ("student", student)):
            (d / side).mkdir(parents=True, exist_ok=True)
            for k, v in arrays.items():
                np.save(d / side / f"{k}.npy", v)
        np.save(d / "labels.npy", y)
        sources.append(d)
    small = [Activations(np.arange(300) % 3, {"t": np.arange(300.0)[:, None]}, {"s": np.arange(300.0)[:, None]})]
    kw = {"progress": False}
    out: dict = {"pairs": 16, "samples": 10_000, "labels": 10}
    t0 = time.perf_counter()
    serial = sweep(sources, **kw)
    out["serial_s"] = time.perf_counter() - t0
    sweep(small, n_jobs=2, n_bootstrap=5, n_permutations=2, progress=False)  # warm the joblib pool
    t0 = time.perf_counter()
    joblib_df = sweep(sources, n_jobs=2, **kw)
    out["joblib_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            out["dask_startup_s"] = time.perf_counter() - t0
            sweep(small, client=client, n_bootstrap=5, n_permutations=2, progress=False)  # warm the workers
            t0 = time.perf_counter()
            dask_df = sweep(sources, client=client, **kw)
            out["dask_s"] = time.perf_counter() - t0
    cols = [c for c in serial.columns if c not in TIMING_COLUMNS]
    out["joblib_identical"] = bool(serial[cols].equals(joblib_df[cols]))
    out["dask_identical"] = bool(serial[cols].equals(dask_df[cols]))
    out["dask_over_joblib"] = out["dask_s"] / out["joblib_s"]
    print(json.dumps(out, indent=1))
    return out


# --------------------------------------------------------------------------------------------- memory


def write_big(directory: Path, n: int, d: int) -> float:
    """A .npy directory written chunk by chunk (never whole in memory); returns its size in GiB."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, n)
    (directory / "teacher").mkdir(parents=True, exist_ok=True)
    (directory / "student").mkdir(exist_ok=True)
    np.save(directory / "labels.npy", y)
    centres = rng.normal(size=(10, d)).astype(np.float32)
    for side, scale in (("teacher", 0.2), ("student", 0.1)):  # label signal spread over all features
        x = np.lib.format.open_memmap(directory / side / "layer.npy", mode="w+", dtype=np.float32, shape=(n, d))
        for i in range(0, n, 10_000):
            j = min(i + 10_000, n)
            x[i:j] = scale * centres[y[i:j]] + rng.normal(size=(j - i, d)).astype(np.float32)
        x.flush()
        del x
    return sum(f.stat().st_size for f in directory.rglob("*.npy")) / GiB


def peak_mib() -> float:
    """This process's peak resident memory (VmHWM; getrusage's ru_maxrss would include the parent's
    memory at fork time)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**10
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # not Linux: an upper bound


def child_sweep(directory: str) -> None:
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SampleSizeWarning)
        df = sweep(directory, progress=False)
    row = df.iloc[0]
    peak = peak_mib()
    wall = time.perf_counter() - t0
    print(json.dumps({"peak_mib": peak, "wall_s": wall, "red": row["red"], "status": row["status"]}))


def child_in_memory(directory: str) -> None:
    t0 = time.perf_counter()
    q = Quantizer()
    for side in ("teacher", "student"):
        x = np.load(Path(directory) / side / "layer.npy")  # the whole array, as from a single file
        q.clone().fit_transform(x)
        del x
    peak = peak_mib()
    print(json.dumps({"peak_mib": peak, "wall_s": time.perf_counter() - t0}))


def run_child(fn: str, directory: Path) -> dict:
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import run; run.{fn}({str(directory)!r})"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def part_memory(workdir: Path, n: int = 200_000, d: int = 1_280) -> dict:
    directory = workdir / "big"
    if not (directory / "student" / "layer.npy").exists():
        size = write_big(directory, n, d)
    else:
        size = sum(f.stat().st_size for f in directory.rglob("*.npy")) / GiB
    out = {"samples": n, "features": d, "size_gib": size}
    out["sweep"] = run_child("child_sweep", directory)
    out["in_memory"] = run_child("child_in_memory", directory)
    print(json.dumps(out, indent=1))
    return out


# --------------------------------------------------------------------------------------------- costs


def part_costs() -> dict:
    """Per-task costs on one core: Numba, BLAS and OpenMP limited to one thread, as in a one-core worker."""
    import numba
    from threadpoolctl import threadpool_limits

    numba.set_num_threads(1)
    with threadpool_limits(1):
        return _costs()


def _costs() -> dict:
    out: dict = {"quantize": [], "pid": []}
    for n, d in ((50_000, 512), (50_000, 2_048)):
        _, layers = synthetic(n, 10, {"x": d}, seed=1)
        t0 = time.perf_counter()
        quantize_in_chunks(layers["x"], None)
        out["quantize"].append({"samples": n, "features": d, "seconds": time.perf_counter() - t0})
        print(out["quantize"][-1])
    rng = np.random.default_rng(2)
    for n, k in ((10_000, 10), (10_000, 100), (50_000, 10), (50_000, 100)):
        y = rng.integers(0, k, n)
        t = (y * 7 + rng.integers(0, 3, n)) % 10
        s = (y + rng.integers(0, 5, n)) % 10
        pid_from_samples(y[:500], t[:500], s[:500], n_bootstrap=2, n_permutations=1)  # compile
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SampleSizeWarning)
            pid_from_samples(y, t, s)  # defaults: 200 bootstrap, 20 permutations, jackknife
        out["pid"].append({"samples": n, "labels": k, "codes": 10, "seconds": time.perf_counter() - t0})
        print(out["pid"][-1])
    return out


def sizing(costs: dict) -> list[dict]:
    """Wall time of 1,000 checkpoints x 50 layer pairs (10 teacher x 5 student layers) on W workers."""
    q = next(c["seconds"] for c in costs["quantize"] if c["features"] == 2_048)
    rows = []
    for n, k in ((10_000, 10), (10_000, 100), (50_000, 100)):
        p = next(c["seconds"] for c in costs["pid"] if c["samples"] == n and c["labels"] == k)
        q_n = q * n / 50_000
        cpu = 1_000 * (15 * q_n + 50 * p)  # per checkpoint: 15 layers quantized once, 50 PID tasks
        rows.append(
            {
                "samples": n,
                "labels": k,
                "cpu_hours": cpu / 3600,
                **{f"hours_{w}": cpu / w / 3600 for w in (8, 64, 512)},
            }
        )
    return rows


# --------------------------------------------------------------------------------------------- report


def render(res: dict) -> str:
    lines = [
        "# Scaling out: Dask, larger-than-memory activations, per-task costs",
        "",
        f"Measured on {res['machine']} ({_dates(res)}) with `python benchmarks/scale/run.py`. Nothing here",
        "is asserted; the numbers are one run's.",
        "",
    ]
    if "engines" in res:
        e = res["engines"]
        lines += [
            "## Dask against joblib (16 pairs, one machine)",
            "",
            f"{e['pairs']} pairs ({e['samples']:,} samples, {e['labels']} labels, k-means to 10 codes, "
            "sweep's defaults).",
            "Pools warmed up by one small sweep first.",
            "",
            "| engine | wall time | table identical to serial |",
            "|---|---|---|",
            f"| serial | {e['serial_s']:.1f} s | (reference) |",
            f"| joblib, `n_jobs=2` | {e['joblib_s']:.1f} s | {e['joblib_identical']} |",
            f"| Dask `LocalCluster`, 2 single-threaded worker processes | {e['dask_s']:.1f} s | "
            f"{e['dask_identical']} |",
            "",
            f"Dask / joblib: **{e['dask_over_joblib']:.2f}x** (target: within 1.2x). Starting the local cluster took",
            f"{e['dask_startup_s']:.1f} s more (once per session; an existing cluster is reached by address).",
            "'Identical' compares every column but `solve_time`.",
            "",
        ]
    if "memory" in res:
        m = res["memory"]
        lines += [
            "## A 2 GB activation directory",
            "",
            f"{m['samples']:,} samples; one teacher and one student layer of {m['features']:,} float32 features; "
            f"{m['size_gib']:.2f} GiB of `.npy` files. Peak resident memory of the whole process (Python, numpy,",
            "scikit-learn and Numba included; VmHWM of a fresh process):",
            "",
            "| run | peak memory | wall time |",
            "|---|---|---|",
            f"| `sweep(directory)` (defaults; fit on 20,000 rows, coded chunk by chunk) | "
            f"{m['sweep']['peak_mib']:.0f} MiB | {m['sweep']['wall_s']:.1f} s |",
            f"| reading each array into memory and quantizing it there | {m['in_memory']['peak_mib']:.0f} MiB | "
            f"{m['in_memory']['wall_s']:.1f} s |",
            "",
            "Target: under 500 MB for the sweep.",
            "",
        ]
    if "costs" in res:
        c = res["costs"]
        lines += [
            "## Per-task costs (one core)",
            "",
            "| task | size | seconds |",
            "|---|---|---|",
        ]
        lines += [
            f"| quantize one layer (fit on {min(20_000, max(1_000, 2**23 // r['features'])):,} rows, code all) | "
            f"{r['samples']:,} x {r['features']:,} | "
            f"{r['seconds']:.2f} |"
            for r in c["quantize"]
        ]
        lines += [
            f"| PID of one pair (200 bootstrap, 20 permutations, jackknife) | {r['samples']:,} samples, "
            f"{r['labels']} labels, 10 x 10 codes | {r['seconds']:.2f} |"
            for r in c["pid"]
        ]
        lines += [
            "",
            "## Sizing: 1,000 checkpoints x 50 layer pairs",
            "",
            "10 teacher x 5 student layers of 2,048 features per checkpoint (15 quantization tasks and 50 PID",
            "tasks each), computed from the costs above: CPU time / workers (one core each), ignoring",
            "scheduling overhead (about a millisecond per task in Dask) and the reading of the files.",
            "",
            "| samples | labels | CPU hours | 8 workers | 64 workers | 512 workers |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['samples']:,} | {r['labels']} | {r['cpu_hours']:.0f} | {r['hours_8']:.1f} h | "
            f"{r['hours_64']:.2f} h | {r['hours_512'] * 60:.1f} min |"
            for r in res["sizing"]
        ]
        lines.append("")
    return "\n".join(lines)


def _dates(res: dict) -> str:
    """When each part was measured: one date, or one per part where reruns of single parts differ."""
    dates = res.get("dates") or {}
    if len(set(dates.values())) <= 1:
        return next(iter(dates.values()), res["date"])
    return ", ".join(f"{part} {day}" for part, day in dates.items())


def main() -> None:
    ap = argument_parser(
        __doc__, out=OUT, out_help="folder of scale.json and scale.md", render="only rewrite scale.md from scale.json"
    )
    ap.add_argument("--part", choices=("engines", "memory", "costs", "all"), default="all")
    ap.add_argument("--workdir", type=Path, help="where the generated data go (default: a temporary directory)")
    args = ap.parse_args()
    path = args.out / "scale.json"
    res = json.loads(path.read_text()) if path.exists() else {}
    if not args.render:
        res |= environment(machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores")
        today = res["date"]
        dates = res.setdefault("dates", {})  # per part: a rerun of one part keeps the others' dates
        for part in ("engines", "memory", "costs"):
            if args.part in (part, "all"):
                dates[part] = today
        with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
            work = Path(tmp)
            if args.part in ("engines", "all"):
                res["engines"] = part_engines(work)
            if args.part in ("memory", "all"):
                res["memory"] = part_memory(work)
        if args.part in ("costs", "all"):
            res["costs"] = part_costs()
            res["sizing"] = sizing(res["costs"])
        write_json(path, res, indent=1, newline=True)
    write_markdown(args.out / "scale.md", render(res))
    print(f"wrote {args.out / 'scale.md'}")


if __name__ == "__main__":
    main()
