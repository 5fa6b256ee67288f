"""MNIST-1D (Greydanus 2020) for the resilience experiment: data and 1-d CNNs.

The data are generated procedurally by the ``mnist1d`` package (``pip install mnist1d``; nothing is
downloaded): 6,000 sequences of length 40 in 10 classes, split 4,800 / 1,200 by the package. On
this benchmark CNNs clearly beat MLPs, and a 4/8-channel student stays far below a 32-channel
teacher, which leaves room for distillation to help. Same interface as examples/rid_digits.py
(``data``, ``cnn``, ``train_teacher``, ``accuracy``); the distilled layer is ``"3"``, the output of
the second convolution block, (channels, 40).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

from pidkd._optional import import_optional

_EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "rid_digits.py"
N_SAMPLES = 6000


def _example():
    spec = importlib.util.spec_from_file_location("rid_digits", _EXAMPLE)
    ex = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ex)
    return ex


def data(n_samples: int = N_SAMPLES):
    """(train, test) tuples of tensors: inputs (N, 1, 40) float32, labels (N,) int64."""
    import_optional("mnist1d", purpose="the MNIST-1D resilience benchmark")
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()  # the package's defaults, seed 42: the same data on every machine
    args.num_samples = n_samples
    d = make_dataset(args)

    def pair(x, y):
        return torch.tensor(x, dtype=torch.float32)[:, None], torch.tensor(y, dtype=torch.int64)

    return pair(d["x"], d["y"]), pair(d["x_test"], d["y_test"])


def cnn(c1: int, c2: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv1d(1, c1, 5, padding=2),
        nn.ReLU(),
        nn.Conv1d(c1, c2, 5, padding=2),
        nn.ReLU(),  # "3": the distilled layer, (c2, 40)
        nn.AvgPool1d(2),
        nn.Flatten(),
        nn.Linear(c2 * 20, 10),
    )


def train_teacher(train, epochs: int) -> nn.Module:
    return _example().train_teacher(train, epochs, net=cnn(32, 32, 0))


def accuracy(net: nn.Module, test) -> float:
    return _example().accuracy(net, test)
