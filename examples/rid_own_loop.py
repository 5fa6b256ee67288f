"""Distil with every method in a hand-written PyTorch loop through ``pidkd.distill.Distiller`` (digits, CPU).

The digits task of examples/rid_digits.py: a trained 32-channel teacher CNN, a student CNN with 4
and 8 channels, the output of each network's second convolution block distilled. Each method
(plain student, KD, VID, TED, RID) trains once in the 15-line loop below, which a training script
of your own can hold, and once with ``pidkd.distill.fit`` on the same seed: the two students come
out with the same weights, bit for bit, because ``fit`` trains through the same Distiller.

Run: python examples/rid_own_loop.py [--epochs 9] [--quick]   (a minute or two on 2 CPU cores)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

from pidkd.distill import KD, RID, TED, VID, DistillConfig, Distiller, Student, fit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rid_digits import accuracy, cnn, data, train_teacher  # noqa: E402  (the digits task)

LAYERS = {"teacher_layers": ["3"], "student_layers": ["3"]}


def distil(teacher: nn.Module, student: nn.Module, method, train, cfg: DistillConfig) -> nn.Module:
    """Train ``student`` with ``method`` in a loop of one's own (docs/own_loop.md)."""
    torch.manual_seed(cfg.seed)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(*train),
        batch_size=cfg.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    with Distiller(teacher, student, method, config=cfg, **LAYERS) as distiller:
        distiller.build(next(iter(loader))[0])  # the method's modules, sized on a batch
        distiller.configure_optimizers()  # fit's optimizers (RID and TED: two) and scheduler
        for epoch in range(cfg.epochs):
            distiller.start_epoch(epoch)  # the phase: what trains, train/eval modes
            for x, y in loader:
                terms = distiller(x, y)  # {"task": ..., "rid": ..., "loss": the total}
                distiller.zero_grad()
                terms["loss"].backward()
                distiller.optimizer_step()  # clipped, the phase's optimizers
            distiller.end_epoch()  # the learning-rate schedule
    return student


def methods() -> dict[str, object]:
    """Every method with its defaults (RID's coupling weight lowered for this tiny student, as in rid_digits.py)."""
    return {"student": Student(), "kd": KD(), "vid": VID(), "ted": TED(), "rid": RID(lambda_distill=0.1)}


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=9, help="student epochs per method")
    parser.add_argument(
        "--quick", action="store_true", help="3 epochs on 320 training images, a 2-epoch teacher: a smoke test"
    )
    args = parser.parse_args(argv)
    epochs = 3 if args.quick else args.epochs
    train, test = data()
    if args.quick:
        train = (train[0][:320], train[1][:320])
    teacher = train_teacher(train, 2 if args.quick else 15)
    print(f"teacher test accuracy: {accuracy(teacher, test):.3f}")
    rows = []
    for name, method in methods().items():
        cfg = DistillConfig(epochs=epochs, progress=False)
        mine = distil(teacher, cnn(4, 8, 1), method, train, cfg)
        theirs = fit(teacher, cnn(4, 8, 1), train, method=method, config=cfg, device="cpu", **LAYERS).student
        same = all(torch.equal(a, b) for a, b in zip(mine.state_dict().values(), theirs.state_dict().values()))
        rows.append({"method": name, "test_acc": accuracy(mine, test), "same_as_fit": same})
        print(f"{name:>7}: test accuracy {rows[-1]['test_acc']:.3f}, the same weights as fit(): {same}", flush=True)
    return rows


if __name__ == "__main__":
    main()
