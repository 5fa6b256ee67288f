"""fit() in one process against fit() under torchrun, on the digits setup of examples/rid_digits.py.

The teacher CNN (32 channels) is trained once on 70% of scikit-learn's 8x8 digits and saved; the
student CNN (4 and 8 channels) is distilled from it with each method and seed twice with the same
configuration (``DistillConfig()`` with ``epochs`` and the global ``batch_size`` set): once in this
process (2 threads) and once under ``torchrun --standalone --nproc_per_node=2`` (gloo on the CPU,
1 thread per process, so both use the machine's 2 cores). Records the last epoch's test accuracy and
the training time per epoch (the history's ``wall_time``, rank 0's under torchrun). It measures; it
asserts nothing.

Run: python benchmarks/ddp/run.py [--seeds 3] [--epochs 20] [--methods student kd vid ted rid] [--render]
Writes docs/benchmarks/ddp.{json,md} (the docs show them).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from pidkd.distill import DistillConfig, fit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared harness
from _harness import DOCS, ROOT, argument_parser, environment, write_json, write_markdown  # noqa: E402

HERE = Path(__file__).resolve().parent
OUT = DOCS
METHODS = ("student", "kd", "vid", "ted", "rid")
LAYERS = {"teacher_layers": ["3"], "student_layers": ["3"]}  # the second conv block of both CNNs


def _example():
    spec = importlib.util.spec_from_file_location("rid_digits", ROOT / "examples" / "rid_digits.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_all(teacher_file: Path, methods: list[str], seeds: int, epochs: int, batch_size: int) -> list[dict]:
    """Every (method, seed) with fit() in this process (or in this rank, under torchrun)."""
    ex = _example()
    train, test = ex.data()
    teacher = ex.cnn(32, 32, 0)
    teacher.load_state_dict(torch.load(teacher_file, weights_only=True))
    teacher.eval()
    out = []
    for method in methods:
        for seed in range(seeds):
            cfg = DistillConfig(epochs=epochs, batch_size=batch_size, seed=seed, progress=False)
            kw = LAYERS if method in ("vid", "ted", "rid") else {}
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = fit(teacher, ex.cnn(4, 8, seed), train, method=method, test_data=test, config=cfg, **kw)
            out.append(
                {
                    "method": method,
                    "seed": seed,
                    "last_test_acc": res.last_test_acc,
                    "seconds_per_epoch": float(res.history["wall_time"].iloc[-1]) / epochs,
                    "seconds_fit": time.perf_counter() - t0,
                }
            )
    return out


def worker(args: argparse.Namespace) -> None:
    """One torchrun process: the runs of run_all; rank 0 writes them to ``args.worker``."""
    torch.set_num_threads(1)
    rows = run_all(args.worker / "teacher.pt", args.methods, args.seeds, args.epochs, args.batch_size)
    if int(os.environ.get("RANK", "0")) == 0:
        (args.worker / "ddp_rows.json").write_text(json.dumps(rows))


def main(argv: list[str] | None = None) -> dict:
    parser = argument_parser(__doc__, out=OUT, render="only re-render the page from the JSON")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64, help="the global batch size of both runs")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)  # internal: one torchrun process
    args = parser.parse_args(argv)
    if args.worker is not None:
        worker(args)
        return {}
    if args.render:
        data = json.loads((args.out / "ddp.json").read_text())
        write_markdown(args.out / "ddp.md", markdown(data))
        return data
    torch.set_num_threads(2)
    load_before = os.getloadavg()[0]
    ex = _example()
    train, test = ex.data()
    teacher = ex.train_teacher(train, 15)
    teacher_acc = ex.accuracy(teacher, test)
    print(json.dumps({"teacher_test_acc": teacher_acc}), flush=True)
    results: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.save(teacher.state_dict(), tmp / "teacher.pt")
        t0 = time.perf_counter()
        for r in run_all(tmp / "teacher.pt", args.methods, args.seeds, args.epochs, args.batch_size):
            results.append(r | {"mode": "1 process"})
            print(json.dumps(results[-1]), flush=True)
        single_total = time.perf_counter() - t0
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}"]
        cmd += [str(Path(__file__).resolve()), "--worker", str(tmp), "--seeds", str(args.seeds)]
        cmd += ["--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--methods", *args.methods]
        env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, check=True)
        ddp_total = time.perf_counter() - t0
        for r in json.loads((tmp / "ddp_rows.json").read_text()):
            results.append(r | {"mode": f"torchrun x{args.nproc}"})
            print(json.dumps(results[-1]), flush=True)
    meta = environment(
        seeds=args.seeds,
        epochs=args.epochs,
        batch_size=args.batch_size,
        nproc=args.nproc,
        teacher_test_acc=teacher_acc,
        total_seconds={"1 process": single_total, f"torchrun x{args.nproc}": ddp_total},
        load_average=[load_before, os.getloadavg()[0]],  # 1-minute load before and after: others' work
    )
    data = {"meta": meta, "results": results}
    write_json(args.out / "ddp.json", data, indent=1)
    write_markdown(args.out / "ddp.md", markdown(data))
    print((args.out / "ddp.md").read_text())
    return data


def markdown(data: dict) -> str:
    meta, res = data["meta"], data["results"]
    modes = list(dict.fromkeys(r["mode"] for r in res))
    single, multi = modes[0], modes[1]
    lines = [
        "# fit() under torchrun: the digits setup in one process and in several",
        "",
        "Generated by `python benchmarks/ddp/run.py` (do not edit by hand). The digits setup of "
        "`examples/rid_digits.py` (teacher CNN 32 channels, test accuracy "
        f"{meta['teacher_test_acc']:.3f}; student CNN 4 and 8 channels), `DistillConfig()` with "
        f"{meta['epochs']} epochs and global batch size {meta['batch_size']}, {meta['seeds']} seeds. "
        f"`{single}`: 2 threads; `{multi}`: `torchrun --standalone --nproc_per_node={meta['nproc']}`, gloo on "
        f"the CPU, 1 thread per process, per-process batch {meta['batch_size'] // meta['nproc']}. Test accuracy of "
        "the last epoch (mean ± std over seeds); difference: torchrun minus one process, per seed. Time per "
        "epoch: the history's `wall_time` / epochs (rank 0's), the median over seeds. Measured "
        f"{meta['date']} on {meta['machine']}, torch {meta['torch']}"
        + (
            f" (1-minute load average {meta['load_average'][0]:.1f} before, {meta['load_average'][1]:.1f} after: "
            "times on a busy machine are not comparable)."
            if "load_average" in meta
            else "."
        ),
        "",
        f"| method | {single} | {multi} | mean difference | largest abs. difference | s/epoch, {single} | "
        f"s/epoch, {multi} |",
        "|---|---|---|---|---|---|---|",
    ]
    for method in dict.fromkeys(r["method"] for r in res):
        a = {r["seed"]: r for r in res if r["method"] == method and r["mode"] == single}
        b = {r["seed"]: r for r in res if r["method"] == method and r["mode"] == multi}
        acc_a = np.array([a[s]["last_test_acc"] for s in sorted(a)])
        acc_b = np.array([b[s]["last_test_acc"] for s in sorted(a)])
        diff = acc_b - acc_a
        t_a = np.median([r["seconds_per_epoch"] for r in a.values()])
        t_b = np.median([r["seconds_per_epoch"] for r in b.values()])
        lines.append(
            f"| {method} | {acc_a.mean():.3f} ± {acc_a.std():.3f} | {acc_b.mean():.3f} ± {acc_b.std():.3f} | "
            f"{diff.mean():+.3f} | {np.abs(diff).max():.3f} | {t_a:.3f} | {t_b:.3f} |"
        )
    within = all(
        abs(
            np.mean([r["last_test_acc"] for r in res if r["method"] == m and r["mode"] == multi])
            - np.mean([r["last_test_acc"] for r in res if r["method"] == m and r["mode"] == single])
        )
        <= 0.02
        for m in dict.fromkeys(r["method"] for r in res)
    )
    slow = []  # runs far slower than their method's median: the machine was busy with something else
    for r in res:
        same = [q["seconds_per_epoch"] for q in res if (q["method"], q["mode"]) == (r["method"], r["mode"])]
        if r["seconds_per_epoch"] > 3 * np.median(same):
            slow.append(f"{r['method']} seed {r['seed']} ({r['mode']}, {r['seconds_per_epoch']:.2f} s/epoch)")
    lines += [
        "",
        f"Target: the mean test accuracy under torchrun within 0.02 of one process's, for every method: {within}.",
        "These models are tiny (an epoch is a few dozen steps of a few milliseconds), so a step's all-reduce "
        "costs about as much as its computation and two processes are not faster than two threads; the "
        "comparison is of what is learned, and of the overhead of the synchronisation.",
    ]
    if slow:
        lines.append(
            "Runs more than 3x slower than their method's median (the machine was shared with other work; the "
            f"medians discount them): {', '.join(slow)}."
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
