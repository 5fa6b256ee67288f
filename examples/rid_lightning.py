"""Distil a digits CNN with RID in a plain Lightning Trainer (CPU), with a live PID probe as a callback.

The digits task of examples/rid_digits.py: a trained 32-channel teacher CNN, a student CNN with 4
and 8 channels, the output of each network's second convolution block distilled with RID.
``pidkd.distill.lightning.DistillModule`` is the LightningModule (the same Distiller ``fit`` trains
through: phases, filters, the filters' own optimizer); ``PIDProbeCallback`` logs Red and
Uni(Y:T\\S) of the distilled layers (and of RID's filters) as ``probe/<name>/red`` etc. Needs
``pip install 'pidkd[lightning]'``.

Run: python examples/rid_lightning.py [--epochs 10] [--quick] [--log-dir DIR]   (about a minute on 2 CPU cores)
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import lightning
import torch

from pidkd.distill import RID, DistillConfig
from pidkd.distill.lightning import DistillModule, PIDProbeCallback

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rid_digits import accuracy, cnn, data, train_teacher  # noqa: E402  (the digits task)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10, help="student epochs")
    parser.add_argument(
        "--quick", action="store_true", help="3 epochs on 320 training images, a 2-epoch teacher: a smoke test"
    )
    parser.add_argument("--log-dir", type=Path, default=None, help="write Lightning's CSV log here")
    args = parser.parse_args(argv)
    epochs = 3 if args.quick else args.epochs
    train, test = data()
    if args.quick:
        train = (train[0][:320], train[1][:320])
    teacher = train_teacher(train, 2 if args.quick else 15)
    torch.manual_seed(0)
    loaders = {
        "train_dataloaders": torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(*train),
            batch_size=64,
            shuffle=True,
            generator=torch.Generator().manual_seed(0),
        ),
        "val_dataloaders": torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*test), batch_size=256),
    }
    module = DistillModule(
        teacher,
        cnn(4, 8, 1),
        RID(lambda_distill=0.1),
        teacher_layers=["3"],
        student_layers=["3"],
        config=DistillConfig(epochs=epochs),
    )
    probe = PIDProbeCallback(test, teacher_layer="3", student_layer="3", n_bootstrap=0, n_permutations=0)
    logger = lightning.pytorch.loggers.CSVLogger(args.log_dir) if args.log_dir else False
    trainer = lightning.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        callbacks=[probe],
        logger=logger,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with warnings.catch_warnings():  # the teacher is in eval mode on purpose: it is frozen
        warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
        trainer.fit(module, **loaders)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    metrics["test_acc"] = accuracy(module.student, test)
    name = probe.name
    print(
        f"teacher test accuracy {accuracy(teacher, test):.3f}; student after {epochs} epochs of RID: "
        f"{metrics['test_acc']:.3f}; distilled layers Red {metrics[f'probe/{name}/red']:.3f}, "
        f"Uni(Y:T\\S) {metrics[f'probe/{name}/uni_t']:.3f} bits; RID's filters Red "
        f"{metrics[f'probe/{name}/filters_red']:.3f} bits"
    )
    return metrics


if __name__ == "__main__":
    main()
