"""Cost of a PIDProbe with measure="maps" against the BROJA probe, on the digits example (issue 31).

The CNNs of examples/rid_digits.py: a teacher trained 5 epochs, a student distilled with RID for
3 epochs (layer pair "3"/"3", 8x8 maps), then each probe measured on the 540 test digits with its
defaults (k-means to 10 codes a side, 20 bootstrap resamples, 2 label permutations, the jackknife:
43 decompositions per measurement). Per probe: one warm-up measurement (fits the quantizers, as
the first epoch of a run does), then the median of ``--repeats`` measurements (``PIDProbe.run``,
epochs 2, 3, ...: the forward passes on the training thread plus the analysis). The probes:

- BROJA and maps of the layers (the probe's layer columns, no filters);
- BROJA and maps of RID's filter outputs f_t(T), f_s(S) alone (``on="filters"``);
- the pid_from_samples calls alone on the probe's codes, to split the cost.

Writes docs/benchmarks/probe_maps.json and probe_maps.md.

Run: python benchmarks/probe_maps.py [--repeats 5] [--out DIR]   (about a minute on 2 CPU cores)
"""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
import warnings
from pathlib import Path

import torch

from pidkd.distill import PIDProbe, fit
from pidkd.estimators import pid_from_samples

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import DOCS, ROOT, argument_parser, environment, time_repeats, write_json, write_markdown  # noqa: E402

OUT = DOCS


def timed(fn, repeats: int) -> tuple[float, list[float]]:
    """Median seconds of ``fn(i)`` over ``repeats`` calls (i = 0, 1, ...), and all of them."""
    timing = time_repeats(fn, repeats, warmup=0, index=True)
    return timing.median, timing.times


def probe_cost(label: str, probe: PIDProbe, pair: int | None, nets: tuple, repeats: int) -> dict[str, object]:
    """Median seconds of ``probe.run`` after a warm-up, and of its pid_from_samples calls alone."""
    teacher, student, modules, dev = nets
    probe.run(teacher, student, modules, pair, dev, epoch=1)  # fits the quantizers
    total, times = timed(lambda i: probe.run(teacher, student, modules, pair, dev, epoch=2 + i), repeats)
    captured = probe.capture(teacher, student, modules, pair, dev)
    a, b = ("ft", "fs") if probe.on == "filters" else ("t", "s")
    prefix = f"{probe.name}_filters" if probe.on == "filters" else probe.name
    ct, cs = probe._codes(f"{prefix}/t", captured[a]), probe._codes(f"{prefix}/s", captured[b])
    solve, _ = timed(
        lambda i: pid_from_samples(
            captured["y"], ct, cs, n_bootstrap=20, n_permutations=2, rng=2 + i, measure=probe.measure
        ),
        repeats,
    )
    row = probe.analyse(captured, 2)
    return {
        "probe": label,
        "measure": getattr(probe.measure, "name", probe.measure),  # a Measure object, or its name
        "on": probe.on,
        "seconds": total,
        "seconds_all": times,
        "pid_from_samples_seconds": solve,
        "red_plugin": row[f"{prefix}_red_plugin"],
        "red": row[f"{prefix}_red"],
        "red_null": row[f"{prefix}_red_null"],
    }


def main() -> None:
    parser = argument_parser(__doc__, repeats=5, out=OUT, out_help="folder of probe_maps.json and probe_maps.md")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # sample-size notes of the probe set are not what is measured here
    spec = importlib.util.spec_from_file_location("rid_digits", ROOT / "examples" / "rid_digits.py")
    ex = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ex)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    train, test = ex.data()
    teacher = ex.train_teacher(train, 5)
    res = fit(teacher, ex.cnn(4, 8, 1), train, method="rid", config=ex.config(3), teacher_layers=["3"],
              student_layers=["3"], device="cpu")  # fmt: skip
    nets = (teacher, res.student, res.modules, torch.device("cpu"))

    rows = []
    for label, kw, pair in (
        ("BROJA, layers", {}, None),
        ("maps, layers", {"measure": "maps"}, None),
        ("BROJA, RID filters", {"on": "filters"}, 0),
        ("maps, RID filters", {"on": "filters", "measure": "maps"}, 0),
    ):
        rows.append(probe_cost(label, PIDProbe(test, "3", "3", background=False, **kw), pair, nets, args.repeats))
        r = rows[-1]
        print(f"{label:>20}: {r['seconds']:.3f} s per measurement ({r['pid_from_samples_seconds']:.3f} s in "
              "pid_from_samples)", flush=True)  # fmt: skip
    by = {r["probe"]: r for r in rows}
    ratios = {
        "layers": by["maps, layers"]["seconds"] / by["BROJA, layers"]["seconds"],
        "filters": by["maps, RID filters"]["seconds"] / by["BROJA, RID filters"]["seconds"],
    }
    for r in rows:
        base = by[f"BROJA, {r['probe'].split(', ')[1]}"]["seconds"]
        r["ratio"] = r["seconds"] / base
    meta = environment(
        machine=f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}",
        n_probe=len(test[1]),
        repeats=args.repeats,
        target="maps probe < 2x the BROJA probe's cost",
    )
    write_json(args.out / "probe_maps.json", {"meta": meta, "rows": rows, "ratios": ratios}, indent=2, newline=True)
    lines = [
        '# Benchmark: cost of a PIDProbe with measure="maps" (issue 31)',
        "",
        f"`python benchmarks/probe_maps.py --repeats {args.repeats}`, {meta['date']}, {meta['machine']}. The digits "
        "example's CNNs (`examples/rid_digits.py`; teacher 5 epochs, student distilled with RID for 3), layer pair "
        f"`3`/`3`, probe set the {meta['n_probe']} test digits, PIDProbe defaults (10 k-means codes a side, "
        "20 bootstrap resamples, 2 permutations, jackknife: 43 decompositions per measurement). Seconds per "
        "measurement: median `PIDProbe.run` (forward passes + quantizing + decompositions) after a warm-up that fits "
        "the quantizers; `pid_from_samples`: the decompositions alone, on the same codes.",
        "",
        "| probe | seconds per measurement | of which pid_from_samples | ratio to BROJA | Red plug-in (bits) "
        "| Red estimate | Red null |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['probe']} | {r['seconds']:.3f} | {r['pid_from_samples_seconds']:.3f} | {r['ratio']:.1f}x | "
            f"{r['red_plugin']:.3f} | {r['red']:.3f} | {r['red_null']:.3f} |"
        )
    verdict = "met" if max(ratios.values()) < 2 else "not met"
    lines += [
        "",
        f"Target ({meta['target']}): **{verdict}** (layers {ratios['layers']:.1f}x, filters {ratios['filters']:.1f}x).",
        "",
    ]
    write_markdown(args.out / "probe_maps.md", lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
