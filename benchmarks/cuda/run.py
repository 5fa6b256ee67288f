"""GPU throughput of pidkd.distill.fit against a plain PyTorch training loop, with host-sync counts.

The RID paper's CIFAR-10 models: WRN-40-2 teacher -> WRN-16-1 student, distilled on the outputs of
the three WRN groups, on CIFAR-shaped tensors (random pixels and labels: a step's cost does not
depend on them, and nothing can be downloaded on the GPU machine). Measured per configuration
(batch size, bf16 autocast on or off):

- ``plain loop``: a hand-written PyTorch loop for the student alone (SGD with Nesterov momentum,
  cross-entropy, batches gathered on the GPU, bf16 autocast when AMP is on): the peer.
- ``fit`` with each method (student, kd, vid, ted, rid) on the same data held on the GPU, the
  default ``DistillConfig`` (RID with a warm-up epoch and cycles of 2 phase-1 + 2 phase-2 epochs;
  the teacher's outputs cached, ``cache_teacher="auto"``), and KD and RID with
  ``cache_teacher=False`` (the teacher's forward pass in every step).
- the student through ``fit`` with the data on the host (pinned batches), and through a user's
  per-sample ``DataLoader`` (the path every pair took before ``TensorBatches``);
- last, ``torch.compile`` (modes ``--compile-modes``): the plain loop, and fit's student and RID
  with ``DistillConfig(compile=...)``; their compilation is in the first epoch's time.

Per run: the median epoch time after the first epoch (cuDNN autotuning, allocator warm-up), per
phase for the two-phase methods; images per second; peak GPU memory; and the synchronising CUDA
calls (``torch.cuda.set_sync_debug_mode("warn")``), per epoch and by source line. Writes
``cuda.json`` and ``cuda.md`` (``--name``) to ``--out`` (default docs/benchmarks).

Run (GPU): python benchmarks/cuda/run.py
           python benchmarks/cuda/run.py --sections compile --name cuda_compile
Smoke test (CPU, seconds; writes nothing unless --out is given): python benchmarks/cuda/run.py --smoke
"""

from __future__ import annotations

import functools
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "cifar10"))
from wrn import wrn  # noqa: E402

sys.path.insert(0, str(ROOT))  # benchmarks/: the shared harness
from _harness import DOCS, argument_parser, environment, write_json, write_markdown  # noqa: E402

from pidkd.distill import DistillConfig, fit  # noqa: E402
from pidkd.distill._checks import host_syncs  # noqa: E402

LAYERS = ["group1", "group2", "group3"]
METHODS = ["student", "kd", "vid", "ted", "rid"]


def config(epochs: int, batch: int, amp: bool) -> DistillConfig:
    return DistillConfig(
        epochs=epochs,
        batch_size=batch,
        amp=amp,
        warmup_epochs=1,
        cycle_epochs=4,
        phase1_fraction=0.5,
        progress=False,
        lr_milestones=(),
    )


def plain_loop(
    student: nn.Module, forward, x: torch.Tensor, y: torch.Tensor, epochs: int, batch: int, amp: bool
) -> list:
    """Seconds per epoch of a hand-written training loop (the peer): no checks, no bookkeeping."""
    dev = x.device
    opt = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    gen = torch.Generator(device=dev).manual_seed(0)
    times = []
    for _ in range(epochs):
        sync(dev)
        t0 = time.perf_counter()
        order = torch.randperm(len(y), device=dev, generator=gen)
        for start in range(0, len(y), batch):
            idx = order[start : start + batch]
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp and dev.type == "cuda"):
                loss = nn.functional.cross_entropy(forward(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sync(dev)
        times.append(time.perf_counter() - t0)
    return times


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def measure(name: str, run, n_images: int, dev: torch.device) -> dict[str, Any]:
    """Run one configuration; its per-phase epoch times, throughput, memory and host syncs."""
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
    t0 = time.perf_counter()
    try:
        (times, phases), syncs = host_syncs(run)
    except Exception as exc:  # noqa: BLE001 - a failed configuration is recorded, the others go on
        print(f"{name}: FAILED {type(exc).__name__}: {exc}", flush=True)
        return {"name": name, "error": f"{type(exc).__name__}: {exc}"}
    per_phase: dict[str, list[float]] = {}
    for t, ph in list(zip(times, phases))[1:]:  # the first epoch warms up
        per_phase.setdefault(ph, []).append(t)
    med = {ph: float(np.median(v)) for ph, v in per_phase.items()}
    mean_epoch = float(np.mean(times[1:]))
    row = {
        "name": name,
        "epoch_seconds": med,
        "images_per_second": {ph: n_images / s for ph, s in med.items()},
        "mean_epoch_seconds": mean_epoch,
        "first_epoch_seconds": float(times[0]),
        "images_per_second_mean": n_images / mean_epoch,
        "peak_gpu_mib": torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None,
        "host_syncs": sum(syncs.values()),
        "host_syncs_per_epoch": sum(syncs.values()) / len(times),
        "host_sync_lines": syncs,
        "total_seconds": time.perf_counter() - t0,
    }
    print(
        f"{name}: "
        + ", ".join(f"{ph} {s * 1e3:.0f} ms/epoch ({n_images / s:.0f} img/s)" for ph, s in med.items())
        + f"; {row['host_syncs_per_epoch']:.1f} syncs/epoch; peak {row['peak_gpu_mib'] or 0:.0f} MiB",
        flush=True,
    )
    return row


def via_fit(
    teacher, method, data, epochs, batch, amp, dev, compile=False, cache="auto"
) -> tuple[list[float], list[str]]:
    layers = {"teacher_layers": LAYERS, "student_layers": LAYERS} if method in ("vid", "ted", "rid") else {}
    cfg = config(epochs, batch, amp)
    cfg.compile = {False: False, "default": True}.get(compile, compile)
    cfg.cache_teacher = cache
    h = fit(teacher, wrn(16, 1), data, method=method, config=cfg, device=dev, **layers).history
    wall = np.diff(np.concatenate([[0.0], h["wall_time"].to_numpy()]))
    return list(wall), list(h["phase"])


def via_plain(x, y, epochs, batch, amp, dev, compile=False) -> tuple[list[float], list[str]]:
    torch.manual_seed(0)
    student = wrn(16, 1).to(dev)
    forward = student if not compile else torch.compile(student, mode=None if compile == "default" else compile)
    return plain_loop(student, forward, x, y, epochs, batch, amp), ["train"] * epochs


def main(argv: list[str] | None = None) -> dict:
    parser = argument_parser(__doc__, out=None)
    parser.add_argument("--n", type=int, default=10240, help="training images per epoch")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--out", type=Path, default=None, help="folder for cuda.json and cuda.md")
    parser.add_argument("--compile-modes", nargs="*", default=["default", "reduce-overhead"])
    parser.add_argument("--sections", nargs="+", choices=("eager", "compile"), default=["eager", "compile"])
    parser.add_argument("--name", default="cuda", help="file names: NAME.json and NAME.md")
    parser.add_argument("--compile", action="store_true", help="with --smoke: the torch.compile runs too")
    parser.add_argument("--smoke", action="store_true", help="CPU, 128 images, 3 epochs")
    args = parser.parse_args(argv)
    if args.smoke:
        dev, args.n, args.epochs, args.batches = torch.device("cpu"), 128, 3, [64]
        args.compile_modes = [m for m in args.compile_modes if m == "default"]  # CUDA graphs need a GPU
    else:
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device: run with --smoke on a CPU")
        dev = torch.device("cuda")
        torch.backends.cudnn.benchmark = True  # both the peer and fit
        args.out = args.out or DOCS
    g = torch.Generator().manual_seed(0)
    x_host = torch.randn(args.n, 3, 32, 32, generator=g)
    y_host = torch.randint(0, 10, (args.n,), generator=g)
    x, y = x_host.to(dev), y_host.to(dev)
    torch.manual_seed(0)
    teacher = wrn(40, 2).to(dev)
    meta = environment(
        device=torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
        cuda=torch.version.cuda,
        n_images=args.n,
        epochs=args.epochs,
    )
    result: dict[str, Any] = {"meta": meta, "rows": []}

    def record(setting: str, name: str, run) -> None:
        result["rows"].append({"setting": setting, **measure(name, run, args.n, dev)})
        if args.out is not None:  # after every run: a run cut short keeps what it measured
            write_json(args.out / f"{args.name}.json", result, indent=1)
            write_markdown(args.out / f"{args.name}.md", markdown(result))

    first = args.batches[0]
    eager = [(b, True) for b in args.batches] + [(first, False)] if "eager" in args.sections else []
    if "eager" not in args.sections:  # the compiled runs are compared with this
        tag = f"batch {first}, bf16 autocast"
        record(tag, "plain loop", functools.partial(via_plain, x, y, args.epochs, first, True, dev))
    for batch, amp in eager:
        tag = f"batch {batch}, {'bf16 autocast' if amp else 'fp32'}"
        record(tag, "plain loop", functools.partial(via_plain, x, y, args.epochs, batch, amp, dev))
        for method in METHODS if amp else ["student"]:
            record(
                tag, f"fit {method}", functools.partial(via_fit, teacher, method, (x, y), args.epochs, batch, amp, dev)
            )
        if amp and batch == first:
            for method in ("kd", "rid"):  # the teacher's forward pass in every step, as before the cache
                run = functools.partial(via_fit, teacher, method, (x, y), args.epochs, batch, amp, dev, cache=False)
                record(tag, f"fit {method}, teacher not cached", run)
            run = functools.partial(via_fit, teacher, "student", (x_host, y_host), args.epochs, batch, amp, dev)
            record(tag, "fit student, data on the host", run)
            loader = torch.utils.data.DataLoader(
                torch.utils.data.TensorDataset(x_host, y_host),
                batch_size=batch,
                shuffle=True,
                pin_memory=dev.type == "cuda",
                generator=torch.Generator().manual_seed(0),
            )
            run = functools.partial(via_fit, teacher, "student", loader, args.epochs, batch, amp, dev)
            record(tag, "fit student, per-sample DataLoader", run)
    if "compile" in args.sections and (not args.smoke or args.compile):  # torch.compile last: compiling takes long
        tag = f"batch {first}, bf16 autocast, torch.compile"
        for mode in args.compile_modes:
            run = functools.partial(via_plain, x, y, args.epochs, first, True, dev, compile=mode)
            record(tag, f"plain loop, compile {mode}", run)
            for method in ("student", "kd", "rid"):
                run = functools.partial(via_fit, teacher, method, (x, y), args.epochs, first, True, dev, compile=mode)
                record(tag, f"fit {method}, compile {mode}", run)
    return result


def markdown(result: dict) -> str:
    meta, rows = result["meta"], result["rows"]
    lines = [
        "# pidkd.distill.fit on a GPU: throughput and host synchronisations",
        "",
        "Generated by `python benchmarks/cuda/run.py` (do not edit by hand). WRN-40-2 teacher -> WRN-16-1 student "
        f"(the RID paper's CIFAR-10 pair), {meta['n_images']} CIFAR-shaped random images per epoch, "
        f"{meta['epochs']} epochs per run; time per epoch: the median over the epochs after the first, per phase. "
        f"Measured {meta['date']} on {meta['device']}, torch {meta['torch']} (CUDA {meta['cuda']}), "
        f"Python {meta['python']}. `plain loop`: a hand-written PyTorch loop for the student alone (the peer); "
        "`fit ...`: `pidkd.distill.fit` with the default `DistillConfig` (constant learning rate; the teacher's "
        'outputs cached, `cache_teacher="auto"`, unless said otherwise; RID and TED: '
        "a warm-up epoch, then cycles of 2 phase-1 and 2 phase-2 epochs), data on the GPU unless said "
        "otherwise, no validation data. Host syncs: synchronising CUDA calls per epoch "
        "(`torch.cuda.set_sync_debug_mode`), the first-batch checks included.",
        "",
    ]
    for setting in dict.fromkeys(r["setting"] for r in rows):
        group = [r for r in rows if r["setting"] == setting]
        eager = setting.split(", torch.compile")[0]  # compiled runs are compared with the eager plain loop
        plain = next(
            (r for r in rows if r["setting"] == eager and r["name"] == "plain loop" and "error" not in r), None
        )
        base = plain["images_per_second"]["train"] if plain else None
        lines += [
            f"## {setting}",
            "",
            "| run | phase | ms/epoch | images/s | vs plain loop | first epoch s | peak GPU MiB | host syncs/epoch |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in group:
            if "error" in r:
                lines.append(f"| {r['name']} | failed: {r['error'][:200]} | | | | | | |")
                continue
            for ph, s in r["epoch_seconds"].items():
                ips = r["images_per_second"][ph]
                ratio = f"{ips / base:.2f}x" if base else ""
                mem = f"{r['peak_gpu_mib']:.0f}" if r["peak_gpu_mib"] is not None else ""
                lines.append(
                    f"| {r['name']} | {ph} | {s * 1e3:.0f} | {ips:.0f} | {ratio} | {r['first_epoch_seconds']:.1f} "
                    f"| {mem} | {r['host_syncs_per_epoch']:.1f} |"
                )
        lines.append("")
    lines += ["## Where the host syncs are", ""]
    for r in rows:
        if r.get("host_sync_lines"):
            where = ", ".join(f"{k} ({v})" for k, v in sorted(r["host_sync_lines"].items(), key=lambda kv: -kv[1]))
            lines.append(f"- {r['setting']}, {r['name']}: {where}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
