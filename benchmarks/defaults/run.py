"""Do fit()'s defaults train? Every method, no configuration, on networks the paper did not tune for.

Setups (issue 13): (a) MNIST-1D, a three-layer 1-d CNN student with 8 channels distilled from a
64-channel teacher (8,000 training sequences, batch 128), layers given by name and nothing else
set; (b) a small 2-d CNN on synthetic 12x12 images with two layer pairs; (c) scikit-learn's digits
with the CNNs of examples/rid_digits.py. For each: the plain student, and KD, VID, TED and RID from
a trained and from an untrained teacher, with ``DistillConfig()`` (epochs and batch size aside),
over several seeds; and the same with ``DistillConfig.preset("paper")`` and with the defaults but
AdamW (lr 3e-3) for comparison. Records
final and best-validation test accuracy and whether training stopped on a non-finite loss.

Does the teacher matter? Three seeds cannot say when the difference is smaller than the seed-to-seed
spread, so ``--paired N`` (default 20) also trains RID with the trained and with the untrained teacher,
and the plain student, with the defaults on seeds 0..N-1: each seed gives the same student
initialisation and batch order to all three, and the page gives the mean paired difference with
its 95% t-interval.

Run: python benchmarks/defaults/run.py [--seeds 3] [--paired 20] [--setups a b c] [--configs ...]
[--methods ...] [--quick] [--render]; with --configs or --methods, the other results are kept from
the JSON (--seeds 0 keeps the tables' results, --paired 0 the paired study's).
Writes docs/benchmarks/defaults.{json,md} (the docs show them).
"""

from __future__ import annotations

import importlib.util
import json
import math
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy import stats
from torch import nn

from pidkd.distill import DistillConfig, fit, untrained_copy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared harness
from _harness import DOCS, ROOT, argument_parser, environment, write_json, write_markdown  # noqa: E402

HERE = Path(__file__).resolve().parent
OUT = DOCS
METHODS = ("student", "kd", "vid", "ted", "rid")
#: --configs: the defaults, the paper preset, and the defaults with AdamW (lr 3e-3) instead of SGD
CONFIGS = {
    "default": lambda base: DistillConfig(**base),
    "paper": lambda base: DistillConfig.preset("paper", **base),
    "default, AdamW": lambda base: DistillConfig(optimizer="adamw", lr=3e-3, weight_decay=1e-4, **base),
}


def _module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _split(x, y, n_val, seed=0):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(y), generator=g)
    return (x[idx[n_val:]], y[idx[n_val:]]), (x[idx[:n_val]], y[idx[:n_val]])


def cnn1d(width: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv1d(1, width, 5, padding=2),
        nn.ReLU(),
        nn.Conv1d(width, width, 5, padding=2),
        nn.ReLU(),
        nn.Conv1d(width, width, 5, padding=2),
        nn.ReLU(),  # "5": the distilled layer, (width, 40)
        nn.Flatten(),
        nn.Linear(width * 40, 10),
    )


def cnn2d(width: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1),
        nn.ReLU(),  # "1": first layer pair, (width, 12, 12)
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.ReLU(),  # "3": second layer pair, (2 width, 12, 12)
        nn.AdaptiveAvgPool2d(3),
        nn.Flatten(),
        nn.Linear(2 * width * 9, 4),
    )


def synthetic_images(n: int, seed: int = 0):
    """12x12 images of 4 classes: a bright bar (horizontal/vertical) x a corner blob, in noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = rng.normal(0, 0.6, (n, 1, 12, 12)).astype(np.float32)
    for i, c in enumerate(y):
        pos = rng.integers(2, 10)
        if c % 2 == 0:
            x[i, 0, pos, :] += 1.5
        else:
            x[i, 0, :, pos] += 1.5
        if c >= 2:
            x[i, 0, :3, :3] += 1.0
    return torch.tensor(x), torch.tensor(y)


def setups(quick: bool) -> dict:
    """name -> (train, val, test, teacher factory, student factory, layer pairs, epochs, batch size)."""
    out = {}
    ex = _module(ROOT / "examples" / "rid_digits.py", "rid_digits")

    def train_net(net, train, epochs):  # the teachers: pinned, so that they do not follow fit()'s defaults
        cfg = DistillConfig(
            optimizer="adamw", lr=1e-3, weight_decay=1e-4, batch_size=128, lr_milestones=(), progress=False
        )
        return fit(nn.Identity(), net, train, method="student", epochs=epochs, config=cfg).student

    import_ok = importlib.util.find_spec("mnist1d") is not None
    if import_ok:
        from mnist1d.data import get_dataset_args, make_dataset

        args = get_dataset_args()
        args.num_samples = 10_000
        d = make_dataset(args)
        x = torch.tensor(d["x"], dtype=torch.float32)[:, None]
        y = torch.tensor(d["y"], dtype=torch.int64)
        test = (torch.tensor(d["x_test"], dtype=torch.float32)[:, None], torch.tensor(d["y_test"], dtype=torch.int64))
        train, val = _split(x, y, 1000)
        out["a: MNIST-1D, 1-d CNN 64 -> 8 channels"] = (
            train, val, test, lambda tr: train_net(cnn1d(64, 0), tr, 3 if quick else 15),
            lambda seed: cnn1d(8, seed), (["5"], ["5"]), 2 if quick else 20, 128,
        )  # fmt: skip
    xi, yi = synthetic_images(4000)
    train, rest = _split(xi, yi, 1600)
    val, test = _split(*rest, 800)
    out["b: synthetic 12x12 images, 2-d CNN, two layer pairs"] = (
        train, val, test, lambda tr: train_net(cnn2d(16, 0), tr, 3 if quick else 8),
        lambda seed: cnn2d(4, seed), (["1", "3"], ["1", "3"]), 2 if quick else 3, 64,
    )  # fmt: skip
    (xd, yd), test_d = ex.data()
    train_d, val_d = _split(xd, yd, 200)
    out["c: digits, 2-d CNN (examples/rid_digits.py)"] = (
        train_d, val_d, test_d, lambda tr: ex.train_teacher(tr, 3 if quick else 15),
        lambda seed: ex.cnn(4, 8, seed), (["3"], ["3"]), 2 if quick else 12, 64,
    )  # fmt: skip
    return out


def run_one(teacher, student, data, method, layers, cfg) -> dict:
    train, val, test = data
    kw = {"teacher_layers": layers[0], "student_layers": layers[1]} if method in ("vid", "ted", "rid") else {}
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = fit(teacher, student, train, method=method, val_data=val, test_data=test, config=cfg, **kw)
    except FloatingPointError as err:
        return {"finite": False, "error": str(err).split(".")[0], "seconds": time.perf_counter() - t0}
    return {
        "finite": True,
        "last_test_acc": res.last_test_acc,
        "best_test_acc": res.best_test_acc,
        "seconds": time.perf_counter() - t0,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argument_parser(__doc__, quick="", out=OUT, render="only re-render the page from the JSON")
    parser.add_argument("--seeds", type=int, default=3, help="seeds of the tables (0: keep them from the JSON)")
    parser.add_argument("--setups", nargs="+", default=["a", "b", "c"])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--paired", type=int, default=20, help="seeds of the paired teacher study (0: skip it)")
    args = parser.parse_args(argv)
    if args.render:
        data = json.loads((args.out / "defaults.json").read_text())
        write_markdown(args.out / "defaults.md", markdown(data))
        return data
    torch.set_num_threads(2)
    results: list[dict] = []
    teacher_acc: dict[str, dict[str, float]] = {}
    old = args.out / "defaults.json"
    paired: list[dict] = []
    table_seeds = args.seeds
    partial = set(args.configs) != set(CONFIGS) or set(args.methods) != set(METHODS) or not (args.seeds and args.paired)
    if partial and old.exists():  # a rerun of some configs or methods keeps the others' results
        kept = json.loads(old.read_text())
        teacher_acc = dict(kept["meta"].get("teacher_test_acc", {}))
        table_seeds = args.seeds or kept["meta"]["seeds"]
        results = [
            r
            for r in kept["results"]
            if not args.seeds
            or r["config"] not in args.configs
            or r["setup"][0] not in args.setups
            or r["method"] not in args.methods
        ]
        paired = [r for r in kept.get("paired", []) if not args.paired or r["setup"][0] not in args.setups]
    for name, (train, val, test, make_teacher, make_student, layers, epochs, bs) in setups(args.quick).items():
        if name[0] not in args.setups:
            continue
        trained = make_teacher(train)
        teachers = {"trained": trained, "untrained": untrained_copy(trained, seed=1)}
        with torch.no_grad():
            acc = {k: float((t(test[0]).argmax(1) == test[1]).float().mean()) for k, t in teachers.items()}
        teacher_acc[name] = acc
        print(json.dumps({"setup": name, "teacher_test_acc": acc}), flush=True)
        for config_name in args.configs:
            for seed in range(args.seeds):
                base = {"epochs": epochs, "batch_size": bs, "seed": seed, "progress": False}
                cfg = CONFIGS[config_name](base)
                for method in args.methods:
                    for t_name, teacher in teachers.items():
                        if method == "student" and t_name == "untrained":
                            continue
                        r = run_one(teacher, make_student(seed), (train, val, test), method, layers, cfg)
                        r |= {"setup": name, "config": config_name, "seed": seed, "method": method, "teacher": t_name}
                        results.append(r)
                        print(json.dumps(r), flush=True)
        for seed in range(args.paired):  # the paired study: the same seed for the three runs
            cfg = CONFIGS["default"]({"epochs": epochs, "batch_size": bs, "seed": seed, "progress": False})
            for method, t_name in (("student", "trained"), ("rid", "trained"), ("rid", "untrained")):
                r = run_one(teachers[t_name], make_student(seed), (train, val, test), method, layers, cfg)
                r |= {"setup": name, "seed": seed, "method": method, "teacher": t_name}
                paired.append(r)
                print(json.dumps(r), flush=True)
    meta = environment(machine=f"{platform.machine()}, 2 threads", seeds=table_seeds, teacher_test_acc=teacher_acc)
    data = {"meta": meta, "results": results, "paired": paired}
    write_json(args.out / "defaults.json", data, indent=1)
    write_markdown(args.out / "defaults.md", markdown(data))
    print((args.out / "defaults.md").read_text())
    return data


def markdown(data: dict) -> str:
    res = data["results"]
    lines = [
        "# Do fit()'s defaults train?",
        "",
        "Generated by `python benchmarks/defaults/run.py` (do not edit by hand). Test accuracy (mean ± std over "
        f"{data['meta']['seeds']} seeds) of the last epoch; `NaN k/n`: k of n runs stopped on a non-finite loss. "
        f"Measured {data['meta']['date']} on {data['meta']['machine']}.",
        "",
    ]
    for setup in dict.fromkeys(r["setup"] for r in res):
        acc = data["meta"].get("teacher_test_acc", {}).get(setup, {})
        lines += [f"## {setup}", ""]
        if acc:
            lines += [f"Teachers' test accuracy: trained {acc['trained']:.3f}, untrained {acc['untrained']:.3f}.", ""]
        lines += ["| config | method | trained teacher | untrained teacher |", "|---|---|---|---|"]
        present = {r["config"] for r in res if r["setup"] == setup}
        for config in [c for c in CONFIGS if c in present]:
            for method in METHODS:
                cells = []
                for teacher in ("trained", "untrained"):
                    runs = [
                        r for r in res
                        if (r["setup"], r["config"], r["method"], r["teacher"]) == (setup, config, method, teacher)
                    ]  # fmt: skip
                    cells.append(_cell(runs))
                lines.append(f"| {config} | {method} | {' | '.join(cells)} |")
        lines.append("")
    lines += ["## Against the targets (defaults)", ""] + targets(res)
    if data.get("paired"):
        lines += ["", *paired_section(data["paired"])]
    return "\n".join(lines) + "\n"


def paired_difference(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """Mean of a - b over paired seeds and its two-sided 95% t-interval (NaN bounds for one seed)."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if len(d) < 2:
        return float(d.mean()), math.nan, math.nan
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)


def paired_section(paired: list[dict]) -> list[str]:
    """The paired study's table: RID trained vs untrained teacher and vs the plain student, per setup."""
    lines = [
        "## Does the teacher matter? Paired seeds (defaults)",
        "",
        "RID with the trained and with the untrained teacher, and the plain student, trained with the defaults "
        "on the same seeds (same student initialisation and batch order); last-epoch test accuracy. Differences "
        "are means over the seeds with their 95% t-interval; seeds on which a run stopped on a non-finite loss "
        "are left out of the differences and counted.",
        "",
        "| setup | seeds | plain student | RID, trained teacher | RID, untrained teacher "
        "| trained - untrained | trained > untrained | RID trained - student |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for setup in dict.fromkeys(r["setup"] for r in paired):
        by = {}
        for r in paired:
            if r["setup"] == setup:
                by.setdefault(r["seed"], {})[(r["method"], r["teacher"])] = r
        keys = (("student", "trained"), ("rid", "trained"), ("rid", "untrained"))
        ok = [s for s, runs in sorted(by.items()) if all(k in runs and runs[k]["finite"] for k in keys)]
        acc = {k: [by[s][k]["last_test_acc"] for s in ok] for k in keys}
        if not ok:
            lines.append(f"| {setup} | 0 of {len(by)} finite | | | | | | |")
            continue
        tu = paired_difference(acc[keys[1]], acc[keys[2]])
        ts = paired_difference(acc[keys[1]], acc[keys[0]])
        wins = sum(a > b for a, b in zip(acc[keys[1]], acc[keys[2]]))
        bad = f" ({len(by) - len(ok)} non-finite)" if len(ok) < len(by) else ""
        cells = [f"{np.mean(acc[k]):.3f} ± {np.std(acc[k]):.3f}" for k in keys]
        lines.append(
            f"| {setup} | {len(ok)}{bad} | {' | '.join(cells)} | {tu[0]:+.4f} [{tu[1]:+.4f}, {tu[2]:+.4f}] "
            f"| {wins} of {len(ok)} | {ts[0]:+.4f} [{ts[1]:+.4f}, {ts[2]:+.4f}] |"
        )
    return lines


def _cell(runs: list[dict]) -> str:
    if not runs:
        return "—"
    acc = [r["last_test_acc"] for r in runs if r["finite"]]
    bad = sum(not r["finite"] for r in runs)
    text = f"{np.mean(acc):.3f} ± {np.std(acc):.3f}" if acc else "—"
    return text + (f" (NaN {bad}/{len(runs)})" if bad else "")


def _mean(res, **key) -> float:
    acc = [r["last_test_acc"] if r["finite"] else math.nan for r in res if all(r[k] == v for k, v in key.items())]
    return float(np.mean(acc)) if acc else math.nan


def targets(res: list[dict]) -> list[str]:
    out = []
    for setup in dict.fromkeys(r["setup"] for r in res):
        d = [r for r in res if r["setup"] == setup and r["config"] == "default"]
        if not d:
            continue
        base = _mean(d, method="student")
        nan = sum(not r["finite"] for r in d)
        ok = [m for m in ("kd", "vid", "ted", "rid") if _mean(d, method=m, teacher="trained") >= base - 0.02]
        rid_u, rid_t = _mean(d, method="rid", teacher="untrained"), _mean(d, method="rid", teacher="trained")
        out.append(
            f"- {setup}: non-finite runs {nan}; trained teacher within 0.02 of the plain student ({base:.3f}) or "
            f"above: {', '.join(ok) or 'none'}; RID untrained {rid_u:.3f} (>= student - 0.05: "
            f"{rid_u >= base - 0.05}); RID trained {rid_t:.3f} > untrained: {rid_t > rid_u}"
        )
    return out


if __name__ == "__main__":
    main()
