"""Regenerate the example activations that ship with pidkd (pidkd/data/digits/*.npz).

A teacher MLP (64 -> 32 hidden units) and a small student MLP (16 hidden units) are trained on
scikit-learn's digits (shipped inside scikit-learn, no download). The teacher's two hidden layers
and the student's hidden layer and output logits are recorded on the held-out 30% of the data at
four points of the student's training (after 1, 3, 10 and 40 epochs): one file per checkpoint, in
pidkd's activation layout (labels, teacher/<layer>, student/<layer>), stored as float16.

Run: python examples/make_digits_activations.py [--out pidkd/data/digits] [--force]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

from pidkd.estimators.activations import Activations, save_activations

CHECKPOINTS = (1, 3, 10, 40)


def hidden(model: MLPClassifier, x: np.ndarray) -> list[np.ndarray]:
    """ReLU activations of every hidden layer, then the output logits."""
    out, h = [], x
    for i, (w, b) in enumerate(zip(model.coefs_, model.intercepts_)):
        h = h @ w + b
        if i < len(model.coefs_) - 1:
            h = np.maximum(h, 0.0)
        out.append(h)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "pidkd" / "data" / "digits")
    parser.add_argument("--force", action="store_true", help="replace existing activation files in --out")
    args = parser.parse_args(argv)
    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    teacher = MLPClassifier((64, 32), max_iter=400, random_state=0).fit(x_tr, y_tr)
    t1, t2, _ = hidden(teacher, x_te)
    print(f"teacher test accuracy {teacher.score(x_te, y_te):.3f}")
    student = MLPClassifier((16,), random_state=1, learning_rate_init=0.003)
    args.out.mkdir(parents=True, exist_ok=True)
    classes = np.unique(y)
    for epoch in range(1, max(CHECKPOINTS) + 1):
        student.partial_fit(x_tr, y_tr, classes=classes)
        if epoch in CHECKPOINTS:
            s1, logits = hidden(student, x_te)
            acts = Activations(
                labels=y_te.astype(np.int64),
                teacher={"hidden1": t1.astype(np.float16), "hidden2": t2.astype(np.float16)},
                student={"hidden1": s1.astype(np.float16), "logits": logits.astype(np.float16)},
            )
            path = save_activations(args.out / f"epoch_{epoch:03d}.npz", acts, overwrite=args.force)
            print(f"epoch {epoch:3d}: student test accuracy {student.score(x_te, y_te):.3f} -> {path}")


if __name__ == "__main__":
    main()
