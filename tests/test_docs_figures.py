"""The benchmark figures README.md and the docs quote are the ones on the generated pages.

Each claim below is a sentence of a document, written as a regular expression whose named groups
are the quoted numbers, and for each group the value it quotes, computed from the JSON that the
benchmark wrote next to its page (docs/benchmarks/NAME.json). A quoted number must be the page's
value rounded to as many decimals as the quote has. Whitespace (line breaks) in the documents is
ignored. When a benchmark is rerun, this test says which sentence to update and to what; when a
sentence is reworded, update its pattern here.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = ROOT / "docs" / "benchmarks"

NUM = r"([0-9][0-9,]*(?:\.[0-9]+)?)"


@functools.cache
def page(name: str) -> dict:
    return json.loads((PAGES / f"{name}.json").read_text())


@functools.cache
def text(doc: str) -> str:
    return " ".join((ROOT / doc).read_text().split())


# --- what the pages say ----------------------------------------------------------------------


def solver_s(shape: str, solver: str = "NEWTON") -> float:
    """Median seconds per PID of ``solver`` at ``shape`` (compare_solvers.py, solvers.json)."""
    (row,) = [r for r in page("solvers")["rows"] if "x".join(map(str, r["shape"])) == shape]
    return row["results"][solver]["median_s"]


def gpu_epoch(name: str, setting: str, run: str, phase: str = "train") -> float:
    """Median seconds per epoch of one run of benchmarks/cuda/run.py (cuda.json and its variants)."""
    (row,) = [r for r in page(name)["rows"] if r["setting"] == setting and r["name"] == run]
    return row["epoch_seconds"][phase]


def batch_row(name: str, shape: str, n: int) -> dict:
    """One row of the batches section of torch_batch.py's NAME.json."""
    (row,) = [r for r in page(name)["rows"] if r["shape"] == shape and r["batch"] == n]
    return row


def samples_row(name: str, labels: int) -> dict:
    """One row of the samples section of torch_batch.py's NAME.json."""
    (row,) = [r for r in page(name)["samples"] if r["labels"] == labels]
    return row


def probe_ratio(kind: str) -> float:
    return page("probe_maps")["ratios"][kind]


def probe_s(label: str) -> float:
    (row,) = [r for r in page("probe_maps")["rows"] if r["probe"] == label]
    return row["seconds"]


B64, B256, FP32 = "batch 64, bf16 autocast", "batch 256, bf16 autocast", "batch 64, fp32"
COMPILED = "batch 64, bf16 autocast, torch.compile"


def fit_over_plain() -> list[float]:
    """fit's plain-student epoch over the hand-written loop's, every setting of cuda.md."""
    return [gpu_epoch("cuda", s, "fit student") / gpu_epoch("cuda", s, "plain loop") for s in (B64, B256, FP32)]


def compiled_speedup() -> list[float]:
    """Eager hand-written loop's epoch over fit's with compile="reduce-overhead" (student, KD; cuda_compile.md)."""
    eager = gpu_epoch("cuda_compile", B64, "plain loop")
    return [eager / gpu_epoch("cuda_compile", COMPILED, f"fit {m}, compile reduce-overhead") for m in ("student", "kd")]


def rid_cache_cut() -> list[float]:
    """Percent of RID's epoch (phase 1, phase 2) that the teacher cache saved (cuda.md)."""
    return [
        100 * (1 - gpu_epoch("cuda", B64, "fit rid", p) / gpu_epoch("cuda", B64, "fit rid, teacher not cached", p))
        for p in ("phase1", "phase2")
    ]


# --- the claims -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    doc: str
    pattern: str  # NUM for each quoted number, in the order of ``values``
    values: tuple[Callable[[], float], ...]

    def __str__(self) -> str:  # the test id
        return f"{self.doc}: {self.pattern.replace(NUM, '#')[:60]}"


def claim(doc: str, pattern: str, *values: Callable[[], float]) -> Claim:
    return Claim(doc, pattern, values)


def tb(name, shape, n, key):
    return lambda: batch_row(name, shape, n)[key]


def tbs(name, labels, key):
    return lambda: samples_row(name, labels)[key]


H100 = "torch_batch_h100"
CLAIMS = [
    # README: the solver
    claim(
        "README.md",
        rf"a 1000-label PID with 10 codes a side takes {NUM} s, 10 labels with 64 codes a side {NUM} s\)",
        lambda: solver_s("1000x10x10"),
        lambda: solver_s("10x64x64"),
    ),
    # README: distillation on a GPU
    claim(
        "README.md",
        rf"an epoch of `fit`'s plain student takes {NUM}-{NUM}x a hand-written PyTorch loop's",
        lambda: min(fit_over_plain()),
        lambda: max(fit_over_plain()),
    ),
    claim(
        "README.md",
        rf"the student's and KD's epochs run {NUM}-{NUM}x faster than the eager hand-written loop",
        lambda: min(compiled_speedup()),
        lambda: max(compiled_speedup()),
    ),
    claim(
        "README.md",
        rf"this cut KD's epoch by {NUM}% and RID's by {NUM}-{NUM}%",
        lambda: 100 * (1 - gpu_epoch("cuda", B64, "fit kd") / gpu_epoch("cuda", B64, "fit kd, teacher not cached")),
        lambda: min(rid_cache_cut()),
        lambda: max(rid_cache_cut()),
    ),
    # docs/solvers.md: the default path on 2 cores
    claim(
        "docs/solvers.md",
        rf"100x10x10 in {NUM} ms \(Woodbury\), 200x10x10 in {NUM} ms, 1000x10x10 in {NUM} s",
        lambda: 1e3 * solver_s("100x10x10"),
        lambda: 1e3 * solver_s("200x10x10"),
        lambda: solver_s("1000x10x10"),
    ),
    claim(
        "docs/solvers.md",
        rf"10x64x64 in {NUM} s \({NUM} s with the cheaper factorisation, {NUM} s with Clarabel\), "
        rf"100x64x64 in {NUM} s \({NUM} s\)",
        lambda: solver_s("10x64x64"),
        lambda: solver_s("10x64x64", "NEWTON-factored"),
        lambda: solver_s("10x64x64", "CLARABEL"),
        lambda: solver_s("100x64x64"),
        lambda: solver_s("100x64x64", "NEWTON-factored"),
    ),
    claim(
        "docs/solvers.md",
        rf"10x256x256 takes {NUM} s \({NUM} s factored\)",
        lambda: solver_s("10x256x256"),
        lambda: solver_s("10x256x256", "NEWTON-factored"),
    ),
    # docs/solvers.md: the PyTorch path on an H100 (run 4) and earlier H200 runs (2, 3)
    *[
        claim(
            "docs/solvers.md",
            rf"\| {label} \| {step} \| {NUM} s \| {NUM} s \| {NUM}x \(run {run}: {NUM}x\) \|",
            tb(H100, shape, n, "default_seconds"),
            tb(H100, shape, n, "device_seconds"),
            tb(H100, shape, n, "speedup"),
            tb(earlier, shape, n, "speedup"),
        )
        for label, step, shape, n, run, earlier in [
            ("1,000 4x4x4", "Schur", "4x4x4", 1000, 2, "torch_batch"),
            ("10,000 4x4x4", "Schur", "4x4x4", 10000, 2, "torch_batch"),
            ("200 10x10x10", "Schur", "10x10x10", 200, 2, "torch_batch"),
            ("2,000 10x10x10", "Schur", "10x10x10", 2000, 2, "torch_batch"),
            ("1,000 20x10x10", "Woodbury", "20x10x10", 1000, 3, "torch_batch_woodbury"),
            ("200 100x10x10", "Woodbury", "100x10x10", 200, 3, "torch_batch_woodbury"),
        ]
    ],
    *[
        claim(
            "docs/solvers.md",
            rf"\| `pid_from_samples`, 10,000 samples, {k} labels \(240 resamples\) \| {step} \| {NUM} s \| {NUM} s \| "
            rf"{NUM}x \(run 3: {NUM}x\) \|",
            tbs(H100, k, "default_seconds"),
            tbs(H100, k, "device_seconds"),
            tbs(H100, k, "speedup"),
            tbs("torch_batch_woodbury", k, "speedup"),
        )
        for k, step in [(10, "Schur"), (100, "Woodbury")]
    ],
    claim(
        "docs/solvers.md",
        rf"`pid_from_samples\(..., device=\"cuda\"\)` took {NUM} s against {NUM} s on that host's default path: "
        rf"the compiled kernels narrowed that gap \({NUM}x in run 3\)",
        tbs(H100, 100, "device_seconds"),
        tbs(H100, 100, "default_seconds"),
        tbs("torch_batch_woodbury", 100, "speedup"),
    ),
    # docs/solvers.md: the PyTorch path on this CPU
    claim(
        "docs/solvers.md",
        rf"the PyTorch path is the slower one: {NUM}x at 1,000 4x4x4 pmfs, {NUM}x at 200 10x10x10 ones, and for "
        rf"`pid_from_samples` {NUM}x at 10 labels and {NUM}x at 100 labels \({NUM} s against {NUM} s;",
        lambda: 1 / batch_row("torch_batch_cpu", "4x4x4", 1000)["speedup"],
        lambda: 1 / batch_row("torch_batch_cpu", "10x10x10", 200)["speedup"],
        lambda: 1 / samples_row("torch_batch_cpu", 10)["speedup"],
        lambda: 1 / samples_row("torch_batch_cpu", 100)["speedup"],
        tbs("torch_batch_cpu", 100, "device_seconds"),
        tbs("torch_batch_cpu", 100, "default_seconds"),
    ),
    # docs/distill.md: the maps probe
    claim(
        "docs/distill.md",
        rf"a maps probe takes {NUM}x \(layers\) to {NUM}x \(filters\) the BROJA probe's time per measurement, "
        rf"{NUM} to {NUM} s",
        lambda: probe_ratio("layers"),
        lambda: probe_ratio("filters"),
        lambda: probe_s("maps, layers"),
        lambda: probe_s("maps, RID filters"),
    ),
]


@pytest.mark.parametrize("c", CLAIMS, ids=str)
def test_quoted_figures_match_the_generated_pages(c: Claim):
    found = list(re.finditer(c.pattern, text(c.doc)))
    assert len(found) == 1, (
        f"{c.doc}: expected the sentence matching {c.pattern!r} once, found it {len(found)} times "
        "(reworded? update the claim in tests/test_docs_figures.py)"
    )
    m = found[0]
    assert len(m.groups()) == len(c.values)
    wrong = []
    for quoted, value in zip(m.groups(), c.values):
        value = value()
        digits = quoted.replace(",", "")
        decimals = len(digits.partition(".")[2])
        expected = f"{value:.{decimals}f}"
        if expected != digits:
            wrong.append(f"quotes {quoted}, the page says {value!r} (as quoted: {expected})")
    assert not wrong, f'{c.doc}: "{m.group(0)}": ' + "; ".join(wrong)


def test_every_page_a_claim_reads_exists():
    """The JSON files the claims read are committed next to their pages."""
    for name in ("solvers", "cuda", "cuda_compile", H100, "torch_batch", "torch_batch_woodbury", "torch_batch_cpu"):
        assert (PAGES / f"{name}.json").exists() and (PAGES / f"{name}.md").exists(), name


def test_api_reference_lists_public_paths_only():
    """docs/api.md documents every object under a path without private (underscore) parts."""
    paths = re.findall(r"^::: (\S+)", (ROOT / "docs" / "api.md").read_text(), flags=re.M)
    assert paths
    private = [p for p in paths if any(part.startswith("_") for part in p.split("."))]
    assert not private, f"docs/api.md documents private paths: {private}"
