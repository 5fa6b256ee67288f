"""Batches of BROJA PIDs: pidkd's default solver (numpy + Numba) against its PyTorch path on a device.

``pidkd.pid_batch(ps)`` against ``pidkd.pid_batch(ps, device=...)`` on the same random full-support
pmfs (seed fixed), in one process: wall time per batch (after one warm-up call of each), time per
PID, the ratio, the largest |atom difference| between the two (bits) and the largest certified
duality gap of each. The device is CUDA when PyTorch sees one, else the CPU (where the default
path is the faster one: the PyTorch path is built for GPUs). Section "samples": ``pid_from_samples`` with
its defaults (200 bootstrap resamples, 20 permutations, jackknife) on CIFAR-like and CIFAR-100-like codes
(10,000 samples, 10 or 100 labels, 10 codes per side, as benchmarks/scale/run.py), default against
``device=...``, with the largest difference of any estimate, interval end or null level. Writes
docs/benchmarks/torch_batch.json and torch_batch.md (``--name``, ``--out``).

Run: python benchmarks/torch_batch.py              (CUDA if available, else CPU)
     python benchmarks/torch_batch.py --device cpu --name torch_batch_cpu
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import pidkd
from pidkd.estimators.samples import SampleSizeWarning

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import DOCS, argument_parser, environment, write_json, write_markdown  # noqa: E402

OUT = DOCS
SEED = 0
CASES = {"cpu": [((4, 4, 4), 1000), ((10, 10, 10), 200)], "cuda": [((4, 4, 4), 1000), ((4, 4, 4), 10000)]}
CASES["cuda"] += [((10, 10, 10), 200), ((10, 10, 10), 2000), ((20, 10, 10), 1000), ((100, 10, 10), 200)]
#: pid_from_samples cases: (samples, labels), 10 codes per side
SAMPLES = [(10_000, 10), (10_000, 100)]


def atoms(rs) -> np.ndarray:
    return np.array([[r.red, r.uni_t, r.uni_s, r.syn] for r in rs])


def timed(ps, **kwargs):
    start = time.perf_counter()
    out = pidkd.pid_batch(ps, **kwargs)
    return out, time.perf_counter() - start


def main() -> None:
    parser = argument_parser(__doc__, out=OUT, out_help="folder of NAME.json and NAME.md")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--name", default="torch_batch")
    parser.add_argument("--sections", nargs="+", choices=("batches", "samples"), default=["batches", "samples"])
    parser.add_argument("--shapes", nargs="*", help="only these pmf shapes of the batches section, e.g. 20x10x10")
    args = parser.parse_args()
    dev = torch.device(args.device)
    known = ["x".join(map(str, shape)) for shape, _ in CASES[dev.type]]
    if args.shapes and set(args.shapes) - set(known):
        parser.error(f"--shapes: {sorted(set(args.shapes) - set(known))} not among {dev.type}'s cases {known}")
    meta = environment(
        device=torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({os.cpu_count()} cores)"
    )
    rows: list[dict] = []
    samples: list[dict] = []
    for shape, n in CASES[dev.type] if "batches" in args.sections else []:
        if args.shapes and "x".join(map(str, shape)) not in args.shapes:
            continue
        rng = np.random.default_rng(SEED)
        ps = rng.random((n, *shape))
        ps /= ps.sum(axis=(1, 2, 3), keepdims=True)
        pidkd.pid_batch(ps[:4])  # warm-up: compiled kernels, CUDA context
        pidkd.pid_batch(ps[:4], device=dev)
        default, t_default = timed(ps)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        on_dev, t_dev = timed(ps, device=dev)
        row = {
            "shape": "x".join(map(str, shape)),
            "batch": n,
            "default_seconds": t_default,
            "device_seconds": t_dev,
            "speedup": t_default / t_dev,
            "max_atom_diff_bits": float(np.abs(atoms(default) - atoms(on_dev)).max()),
            "default_max_gap_bits": float(max(r.diagnostics.gap for r in default)),
            "device_max_gap_bits": float(max(r.diagnostics.gap for r in on_dev)),
            "all_certified": bool(all(r.diagnostics.converged for r in default + on_dev)),
        }
        rows.append(row)
        print(row, flush=True)
        write(args.out, args.name, meta, rows, samples)  # after every row: a run cut short keeps what it measured
    for n, k in SAMPLES if "samples" in args.sections else []:
        samples.append(sample_row(n, k, dev))
        print(samples[-1], flush=True)
        write(args.out, args.name, meta, rows, samples)
    print((args.out / f"{args.name}.md").read_text())


def sample_numbers(r) -> np.ndarray:
    """Every number of a SamplePID: estimates, interval ends, null means and levels, in a fixed order."""
    keys = sorted(r.estimate)
    return np.array(
        [r.estimate[a] for a in keys]
        + [v for a in keys for v in r.ci[a]]
        + [r.null_mean[a] for a in keys]
        + [r.null_high[a] for a in keys]
    )


def sample_row(n: int, k: int, dev: torch.device) -> dict:
    """pid_from_samples (defaults) on CIFAR-like codes, on the default path and with ``device=dev``."""
    rng = np.random.default_rng(2)
    y = rng.integers(0, k, n)
    t = (y * 7 + rng.integers(0, 3, n)) % 10
    s = (y + rng.integers(0, 5, n)) % 10
    out = {"samples": n, "labels": k}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SampleSizeWarning)
        pidkd.pid_from_samples(y[:500], t[:500], s[:500], n_bootstrap=2, n_permutations=1)  # warm-up
        pidkd.pid_from_samples(y[:500], t[:500], s[:500], n_bootstrap=2, n_permutations=1, device=dev)
        for name, kwargs in (("default", {}), ("device", {"device": dev})):
            start = time.perf_counter()
            res = pidkd.pid_from_samples(y, t, s, **kwargs)
            out[f"{name}_seconds"] = time.perf_counter() - start
            out[name] = res
    out["speedup"] = out["default_seconds"] / out["device_seconds"]
    out["max_diff_bits"] = float(np.abs(sample_numbers(out.pop("default")) - sample_numbers(out.pop("device"))).max())
    return out


def write(out: Path, name: str, meta: dict, rows: list[dict], samples: list[dict]) -> None:
    write_json(out / f"{name}.json", {"meta": meta, "rows": rows, "samples": samples}, indent=1)
    lines = [
        "# Benchmark: batches of PIDs, default solver against the PyTorch path",
        "",
        "Generated by `python benchmarks/torch_batch.py` (do not edit by hand). `pidkd.pid_batch(ps)` (pidkd's "
        "Newton solver in numpy and Numba, on the CPU) against `pidkd.pid_batch(ps, device=...)` (the same "
        "algorithm in PyTorch, the whole batch in every operation), random full-support pmfs, seed "
        f"{SEED}, one process, after a warm-up call of each. Device: {meta['device']}; host "
        f"{meta['machine']}; torch {meta['torch']}, Python {meta['python']}; measured {meta['date']}. Both paths "
        "are certified on the host by the same code (duality gap <= 1e-9 bits).",
        "",
        "| pmf shape | PIDs | default | on the device | default / device | max atom diff (bits) | "
        "max gap default / device (bits) | all certified |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['shape']} | {r['batch']} | {r['default_seconds']:.2f} s | {r['device_seconds']:.2f} s | "
            f"{r['speedup']:.2f}x | {r['max_atom_diff_bits']:.1e} | {r['default_max_gap_bits']:.1e} / "
            f"{r['device_max_gap_bits']:.1e} | {r['all_certified']} |"
        )
    if samples:
        lines += [
            "",
            "`pidkd.pid_from_samples(y, t, s)` with its defaults (200 bootstrap resamples, 20 label permutations, "
            "jackknife over 20 groups: 240 resample PIDs besides the plug-in) against the same call with "
            "`device=...`, which solves the resamples on the device (the plug-in stays on the default path). Codes as "
            "`benchmarks/scale/run.py`: labels uniform, T = (7 Y + U{0..2}) mod 10, S = (Y + U{0..4}) mod 10. "
            "Max diff: the largest difference of any estimate, interval end, null mean or null level (bits).",
            "",
            "| samples | labels | default | with device | default / device | max diff (bits) |",
            "|---|---|---|---|---|---|",
        ]
        for r in samples:
            lines.append(
                f"| {r['samples']:,} | {r['labels']} | {r['default_seconds']:.2f} s | {r['device_seconds']:.2f} s | "
                f"{r['speedup']:.2f}x | {r['max_diff_bits']:.1e} |"
            )
    lines.append("")
    write_markdown(out / f"{name}.md", lines)


if __name__ == "__main__":
    main()
