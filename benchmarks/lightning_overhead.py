"""RID in Lightning against fit: test accuracy on digits and the time per epoch, in one run (CPU).

The digits task of examples/rid_digits.py (a trained 32-channel teacher CNN, a 2-convolution
student CNN with 4 and 8 channels, 1,257 training images, batch 64), RID with the example's
knobs (``RID(lambda_distill=0.1)``) for ``--epochs`` epochs, per seed: ``fit`` and
``pidkd.distill.lightning.DistillModule`` in a plain ``lightning.Trainer`` (CPU, one device), the
same student initialisation and loop settings; the test accuracy of the last epoch's student
(no selection). Then the wall time per training epoch (median, the first epoch left out) of
``fit`` (with its teacher cache, the default, and without), of the 15-line hand-written
Distiller loop (docs/own_loop.md) and of Lightning: the Distiller loop and Lightning run the
teacher in every step, as ``fit`` without the cache does, so Lightning's own overhead is its time
less the hand-written loop's. Writes docs/benchmarks/lightning.json and lightning.md.

Run: python benchmarks/lightning_overhead.py [--epochs 10] [--seeds 3] [--quick] [--out DIR]
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
import time
import warnings
from pathlib import Path

import lightning
import torch

from pidkd.distill import RID, Callback, DistillConfig, Distiller, fit
from pidkd.distill.lightning import DistillModule

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import DOCS, ROOT, argument_parser, environment, write_json, write_markdown  # noqa: E402

OUT = DOCS
LAYERS = {"teacher_layers": ["3"], "student_layers": ["3"]}


def method() -> RID:
    return RID(lambda_distill=0.1)


def config(epochs: int, seed: int, **changes) -> DistillConfig:
    return DistillConfig(epochs=epochs, batch_size=64, seed=seed, progress=False, **changes)


def loader(train, seed: int) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(*train),
        batch_size=64,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )


def clocks() -> tuple[float, float]:
    """(wall, CPU) seconds now: the CPU time of this process is what other work on the cores leaves alone."""
    return time.perf_counter(), time.process_time()


class EpochTimer(lightning.Callback):
    """(wall, CPU) seconds of every training epoch of a lightning.Trainer, from its start hook to its end hook."""

    def __init__(self) -> None:
        self.seconds: list[tuple[float, float]] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.start = clocks()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.seconds.append(tuple(b - a for a, b in zip(self.start, clocks())))


class FitEpochTimer(Callback):
    """The same for fit, from its on_epoch_start hook to its on_epoch_end hook."""

    def __init__(self) -> None:
        self.seconds: list[tuple[float, float]] = []

    def on_epoch_start(self, state) -> None:
        self.start = clocks()

    def on_epoch_end(self, state, row) -> None:
        self.seconds.append(tuple(b - a for a, b in zip(self.start, clocks())))


def run_lightning(ex, teacher, train, epochs: int, seed: int) -> tuple[torch.nn.Module, list[tuple[float, float]]]:
    """The student after ``epochs`` of RID in a lightning.Trainer, and the (wall, CPU) seconds of each epoch."""
    student = ex.cnn(4, 8, 1 + seed)
    torch.manual_seed(seed)
    module = DistillModule(teacher, student, method(), config=config(epochs, seed), **LAYERS)
    timer = EpochTimer()
    trainer = lightning.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        callbacks=[timer],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the frozen teacher's eval mode, Lightning's tips
        trainer.fit(module, loader(train, seed))
    return student, timer.seconds


def run_fit(ex, teacher, train, epochs: int, seed: int, **changes) -> tuple[torch.nn.Module, list[tuple[float, float]]]:
    """The student after ``epochs`` of RID with fit, and the (wall, CPU) seconds of each epoch."""
    timer = FitEpochTimer()
    cfg = config(epochs, seed, **changes)
    res = fit(teacher, ex.cnn(4, 8, 1 + seed), train, method=method(), config=cfg, callbacks=[timer], **LAYERS)
    return res.student, timer.seconds


def run_own_loop(ex, teacher, train, epochs: int, seed: int) -> list[tuple[float, float]]:
    """The (wall, CPU) seconds of each epoch of the hand-written Distiller loop of docs/own_loop.md."""
    cfg = config(epochs, seed)
    torch.manual_seed(cfg.seed)
    data = loader(train, seed)
    seconds = []
    with Distiller(teacher, ex.cnn(4, 8, 1 + seed), method(), config=cfg, **LAYERS) as distiller:
        distiller.build(next(iter(data))[0])
        distiller.configure_optimizers()
        for epoch in range(cfg.epochs):
            start = clocks()
            distiller.start_epoch(epoch)
            for x, y in data:
                terms = distiller(x, y)
                distiller.zero_grad()
                terms["loss"].backward()
                distiller.optimizer_step()
            distiller.end_epoch()
            seconds.append(tuple(b - a for a, b in zip(start, clocks())))
    return seconds


def main(argv: list[str] | None = None) -> dict:
    parser = argument_parser(
        __doc__, out=OUT, out_help="folder of lightning.json and lightning.md", quick="2 epochs, 1 seed (a smoke run)"
    )
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--timing-epochs", type=int, default=4, help="epochs of each timed run (the first dropped)")
    parser.add_argument("--rounds", type=int, default=3, help="timed runs of each loop, in turn")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: steady times when other work shares the cores)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    epochs, seeds, timing_epochs = (2, 1, 3) if args.quick else (args.epochs, args.seeds, args.timing_epochs)
    rounds = 1 if args.quick else args.rounds
    spec = importlib.util.spec_from_file_location("rid_digits", ROOT / "examples" / "rid_digits.py")
    ex = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ex)
    train, test = ex.data()
    teacher = ex.train_teacher(train, 2 if args.quick else 15)
    teacher_acc = ex.accuracy(teacher, test)

    accuracy = []
    for seed in range(seeds):
        fit_student, _ = run_fit(ex, teacher, train, epochs, seed)
        pl_student, _ = run_lightning(ex, teacher, train, epochs, seed)
        accuracy.append(
            {"seed": seed, "fit": ex.accuracy(fit_student, test), "lightning": ex.accuracy(pl_student, test)}
        )
        print(f"seed {seed}: test accuracy fit {accuracy[-1]['fit']:.4f}, Lightning {accuracy[-1]['lightning']:.4f}")
    mean = {k: statistics.fmean(r[k] for r in accuracy) for k in ("fit", "lightning")}

    # Rounds of every loop in turn: work that shares the cores slows them alike, and each is timed
    # (timing_epochs - 1) * rounds times; the page gives the medians of its CPU and wall times.
    runs = {
        "fit (teacher cached: the default)": lambda: run_fit(ex, teacher, train, timing_epochs, 0)[1],
        "fit (teacher run every step)": lambda: run_fit(ex, teacher, train, timing_epochs, 0, cache_teacher=False)[1],
        "hand-written Distiller loop": lambda: run_own_loop(ex, teacher, train, timing_epochs, 0),
        "Lightning DistillModule": lambda: run_lightning(ex, teacher, train, timing_epochs, 0)[1],
    }
    epoch_seconds: dict[str, list[tuple[float, float]]] = {k: [] for k in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            epoch_seconds[name] += run()[1:]
    median = {
        k: {"wall": statistics.median(w for w, _ in v), "cpu": statistics.median(c for _, c in v)}
        for k, v in epoch_seconds.items()
    }
    for k, v in median.items():
        print(f"{k}: {1000 * v['cpu']:.0f} ms CPU, {1000 * v['wall']:.0f} ms wall per epoch")
    meta = environment(device="cpu", threads=torch.get_num_threads(), lightning=lightning.__version__)
    meta |= {"epochs": epochs, "seeds": seeds, "timing_epochs": timing_epochs, "rounds": rounds}
    meta["teacher_test_acc"] = teacher_acc
    meta["steps_per_epoch"] = len(loader(train, 0))
    data = {
        "meta": meta,
        "accuracy": accuracy,
        "mean_test_acc": mean,
        "epoch_seconds": epoch_seconds,
        "median": median,
    }
    write_json(args.out / "lightning.json", data, indent=2, newline=True)
    write_markdown(args.out / "lightning.md", page(data))
    return data


def page(data: dict) -> list[str]:
    meta, mean, med = data["meta"], data["mean_test_acc"], data["median"]
    own, pl = med["hand-written Distiller loop"]["cpu"], med["Lightning DistillModule"]["cpu"]
    base = med["fit (teacher run every step)"]["cpu"]
    n = (meta["timing_epochs"] - 1) * meta["rounds"]
    lines = [
        "# RID in Lightning against fit (digits, CPU)",
        "",
        f"Measured {meta['date']} on {meta['machine']} ({meta['threads']} torch threads), torch {meta['torch']}, "
        f"Lightning {meta['lightning']}, pidkd {meta['pidkd']} ({meta['commit']}), by "
        "`benchmarks/lightning_overhead.py`. Digits (1,257 training and 540 test images), a trained "
        f"teacher CNN (test accuracy {meta['teacher_test_acc']:.3f}), the 2-convolution student of "
        "`examples/rid_digits.py`, `RID(lambda_distill=0.1)` with `DistillConfig` defaults (SGD, lr 0.05, "
        f"batch 64, {meta['steps_per_epoch']} steps per epoch). Other work shared the 2 cores, so the times "
        "carry some noise; one torch thread keeps them steady (with two, a step waits for the thread that another "
        "process holds off its core: epochs took up to 25 times longer).",
        "",
        f"## Test accuracy after {meta['epochs']} epochs ({meta['seeds']} seeds)",
        "",
        "Each seed: the same student initialisation and loop settings in `fit` and in "
        "`lightning.Trainer(...).fit(DistillModule(...))`; the last epoch's student, no selection. The two "
        "shuffle the data differently (`fit` draws its first batch from the loader's generator to size the "
        "filters, `DistillModule` restores it), so the runs are not the same run.",
        "",
        "| seed | fit | Lightning | difference |",
        "|---|---|---|---|",
    ]
    for r in data["accuracy"]:
        lines.append(f"| {r['seed']} | {r['fit']:.4f} | {r['lightning']:.4f} | {r['lightning'] - r['fit']:+.4f} |")
    lines.append(
        f"| **mean** | **{mean['fit']:.4f}** | **{mean['lightning']:.4f}** | "
        f"**{mean['lightning'] - mean['fit']:+.4f}** |"
    )
    lines += [
        "",
        "Target: the means within 0.02 of each other.",
        "",
        f"## Time per training epoch ({n} epochs of each loop)",
        "",
        f"{meta['rounds']} rounds of every loop in turn, {meta['timing_epochs']} epochs each, the first epoch of "
        "each left out; medians. CPU time is the process's (one torch thread), which the other work on the "
        "cores does not inflate as it does the wall time.",
        "",
        "| loop | CPU ms per epoch | wall ms per epoch |",
        "|---|---|---|",
    ]
    lines += [f"| {k} | {1000 * v['cpu']:.0f} | {1000 * v['wall']:.0f} |" for k, v in med.items()]
    lines += [
        "",
        f"Lightning's own overhead (CPU time), against the hand-written Distiller loop that does the same work: "
        f"{1000 * (pl - own):+.0f} ms per epoch ({100 * (pl / own - 1):+.0f}%); against `fit` running the teacher "
        f"every step: {1000 * (pl - base):+.0f} ms ({100 * (pl / base - 1):+.0f}%). `fit`'s default replays "
        "the frozen teacher's cached outputs instead of running it, which `DistillModule` does not do, and "
        "`fit` batches an (inputs, labels) pair by index gathers where the hand-written loop and Lightning "
        "read a `DataLoader` sample by sample: the difference between `fit` and the hand-written loop is the "
        "data loading, not the Distiller.",
        "",
        "Not measured here: a GPU and Lightning's DDP strategy (no GPU was lent to this run).",
        "",
    ]
    return lines


if __name__ == "__main__":
    main()
