"""The RID paper's CIFAR-10 setting: WRN-40-2 teacher -> WRN-16-1 student, GPU recipe.

Reads CIFAR-10 from a local directory holding the python version (``data_batch_1`` ...
``data_batch_5``, ``test_batch``; nothing is downloaded). Trains (or loads) the teacher, then
distils the student with pidkd.distill.fit on the outputs of the three WRN groups, with the
paper's schedule (SGD, momentum 0.9, Nesterov, wd 5e-4, LR 0.05 -> 0.01 at 150 -> 0.002 at 200,
300 epochs, n_w = q = 30, r = 1/4) or ``--variant authors``; ``--epochs`` shortens it
proportionally. Records test accuracy and throughput (training images per second) per method.

Run:  python benchmarks/cifar10/run.py --data ~/cifar-10-batches-py --methods student vid rid --epochs 30
      (add --compile reduce-overhead for torch.compile with CUDA graphs: 1.3-3x faster epochs on an H200,
      docs/benchmarks/cuda_compile.md)
Smoke test on random CIFAR-shaped tensors (CPU, seconds): python benchmarks/cifar10/run.py --smoke
"""

from __future__ import annotations

import pickle
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from wrn import wrn  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared harness
from _harness import argument_parser, write_json  # noqa: E402

from pidkd.distill import DistillConfig, fit, untrained_copy  # noqa: E402

LAYERS = ["group1", "group2", "group3"]
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def load_cifar(root: Path) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    def batch(name):
        path = root / name
        if not path.exists():
            raise SystemExit(
                f"CIFAR-10 file {path} not found; --data must hold the python version (data_batch_1..5, test_batch)."
            )
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="latin1")
        return np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32), np.asarray(d["labels"])

    parts = [batch(f"data_batch_{i}") for i in range(1, 6)]
    xtr, ytr = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    xte, yte = batch("test_batch")
    return (torch.tensor(xtr), torch.tensor(ytr)), (torch.tensor(xte), torch.tensor(yte))


class Augmented(torch.utils.data.Dataset):
    """uint8 images -> normalised float, random crop (pad 4) and horizontal flip when training."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, train: bool):
        self.x, self.y, self.train = x, y, train
        self.mean = torch.tensor(MEAN).view(3, 1, 1)
        self.std = torch.tensor(STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        img = self.x[i].float() / 255.0
        if self.train:
            img = nn.functional.pad(img, (4, 4, 4, 4), mode="reflect")
            a, b = torch.randint(0, 9, (2,)).tolist()
            img = img[:, a : a + 32, b : b + 32]
            if torch.rand(()) < 0.5:
                img = img.flip(2)
        return (img - self.mean) / self.std, self.y[i]


def schedule(epochs: int, variant: str) -> DistillConfig:
    scale = epochs / 300
    milestones = [max(1, round(150 * scale)), max(2, round(200 * scale))]
    q = max(2, round(30 * scale))
    r = 0.25 if q > 2 else 0.5  # round(0.25 * 2) = 0 phase-1 epochs per cycle: fit refuses it for RID
    if variant == "authors":
        return DistillConfig.preset("authors", epochs=epochs, cycle_epochs=q, phase1_fraction=r, batch_size=64)
    return DistillConfig.preset(
        "paper",
        epochs=epochs,
        lr=0.05,
        lr_milestones=milestones,
        warmup_epochs=q,
        cycle_epochs=q,
        phase1_fraction=r,
        vid_lambda=100.0,
        batch_size=64,
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argument_parser(__doc__)
    parser.add_argument("--data", type=Path, help="directory with the python version of CIFAR-10")
    parser.add_argument("--methods", nargs="+", default=["student", "vid", "rid"])
    parser.add_argument("--variant", choices=("paper", "authors"), default="paper")
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--teacher-epochs", type=int, default=200)
    parser.add_argument("--teacher-ckpt", type=Path, help="load/save the teacher's state dict here")
    parser.add_argument("--untrained-teacher", action="store_true", help="the paper's nuisance teacher")
    parser.add_argument("--device", default=None)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument(
        "--compile",
        choices=("default", "reduce-overhead"),
        help="DistillConfig(compile=...): torch.compile the forward passes (reduce-overhead: CUDA graphs)",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results.json")
    parser.add_argument("--smoke", action="store_true", help="random CIFAR-shaped tensors, 1 epoch, CPU")
    args = parser.parse_args(argv)
    if args.smoke:
        g = torch.Generator().manual_seed(0)
        x = torch.randint(0, 256, (32, 3, 32, 32), generator=g, dtype=torch.uint8)
        train = (x, torch.randint(0, 10, (32,), generator=g))
        test = (train[0][:16], train[1][:16])
        args.epochs, args.teacher_epochs, args.workers, args.device = 3, 1, 0, args.device or "cpu"
    elif args.data is None:
        raise SystemExit("give --data DIR (CIFAR-10 python version) or --smoke")
    else:
        train, test = load_cifar(args.data.expanduser())
    mk = lambda d, shuffle: torch.utils.data.DataLoader(  # noqa: E731
        d,
        batch_size=16 if args.smoke else 64,
        shuffle=shuffle,
        num_workers=args.workers,
        drop_last=shuffle,
        generator=torch.Generator().manual_seed(0),
    )
    train_loader, test_loader = mk(Augmented(*train, True), True), mk(Augmented(*test, False), False)

    teacher = wrn(40, 2)
    if args.teacher_ckpt and args.teacher_ckpt.exists():
        teacher.load_state_dict(torch.load(args.teacher_ckpt, map_location="cpu", weights_only=True))
    else:
        cfg = DistillConfig.preset(
            "paper",
            epochs=args.teacher_epochs,
            lr=0.05,
            progress=not args.smoke,
            lr_milestones=[max(1, args.teacher_epochs // 2), max(2, 3 * args.teacher_epochs // 4)],
        )
        teacher = fit(nn.Identity(), teacher, train_loader, method="student", config=cfg, device=args.device).student
        if args.teacher_ckpt:
            torch.save(teacher.state_dict(), args.teacher_ckpt)
    if args.untrained_teacher:
        teacher = untrained_copy(teacher, seed=1)
    results = {}
    for method in args.methods:
        cfg = schedule(args.epochs, args.variant)
        cfg.progress = not args.smoke
        if args.compile:
            cfg.compile = True if args.compile == "default" else args.compile
        if args.smoke:  # every RID phase once: warm-up, phase 1, phase 2 (on noise, with clipping)
            cfg.warmup_epochs, cfg.cycle_epochs, cfg.phase1_fraction = 1, 2, 0.5
            cfg.grad_clip, cfg.lambda_distill = 100.0, 0.01
        layers = {"teacher_layers": LAYERS, "student_layers": LAYERS} if method in ("vid", "ted", "rid") else {}
        t0 = time.perf_counter()
        res = fit(
            teacher,
            wrn(16, 1),
            train_loader,
            method=method,
            val_data=test_loader,
            config=cfg,
            device=args.device,
            **layers,
        )
        seconds = time.perf_counter() - t0
        h = res.history
        results[method] = {
            "test_acc": float(h["val_acc"].iloc[-1]),
            "epochs": args.epochs,
            "seconds": seconds,
            "images_per_second": len(train[1]) * args.epochs / float(h["wall_time"].iloc[-1]),
            "phases": list(h["phase"]),
            "history": h.replace({np.nan: None}).to_dict("records"),
        }
        print(
            f"{method}: test accuracy {results[method]['test_acc']:.3f}, "
            f"{results[method]['images_per_second']:.0f} images/s",
            flush=True,
        )
    if not args.smoke:
        write_json(args.out, {"variant": args.variant, "untrained_teacher": args.untrained_teacher, "results": results})
    return results


if __name__ == "__main__":
    main()
