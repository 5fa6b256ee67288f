"""The RID paper's toy examples and theorems, as executable checks.

Source: Dissanayake et al., "Quantifying knowledge distillation using partial information
decomposition", arXiv:2411.07483 (AISTATS 2025), Section 3 and 4. Values here are in bits.

A *deterministic student* is a map S = f(T) of the teacher's alphabet, represented by a label
per teacher symbol (a set partition of the alphabet). :func:`search_students` enumerates all of
them under a capacity limit and reports the one that maximises I(T;S) (what plain
representation matching rewards) and the one that maximises Red(Y:T,S) (the task knowledge the
student takes from the teacher), which Theorem 3.1 shows can differ: the nuisance-teacher effect
that motivates RID.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import brentq

from pidkd._optional import import_optional
from pidkd.estimators.api import pid, pid_batch
from pidkd.estimators.information import _cmi, _h
from pidkd.estimators.intersection import gacs_korner_redundancy, intersection_redundancy, set_partitions
from pidkd.estimators.maps import co_information, map_redundancy

__all__ = [
    "StudentSearch",
    "Toy",
    "binary_entropy_inverse",
    "check_all",
    "example1",
    "example2",
    "example3",
    "format_checks",
    "joint_with_student",
    "plot_theorem31",
    "search_students",
    "theorem31_curves",
    "theorem31_family",
]

_LN2 = np.log(2.0)


@dataclass(frozen=True)
class Toy:
    """A teacher distribution p[y, t] with named deterministic students S = f(T).

    ``students`` maps a name to labels (one per teacher symbol); ``claims`` holds the values the
    paper states, in bits, keyed by what they describe.
    """

    name: str
    p_yt: NDArray[np.float64]
    students: dict[str, NDArray[np.int64]]
    claims: dict[str, float] = field(default_factory=dict)


def joint_with_student(p_yt: NDArray[np.float64], f: Sequence[int]) -> NDArray[np.float64]:
    """p[y, t, s] for the deterministic student s = f[t].

    Examples
    --------
    >>> joint_with_student(np.array([[0.5, 0.0], [0.0, 0.5]]), [0, 0]).shape
    (2, 2, 1)
    """
    f = np.asarray(f, dtype=np.int64)
    if f.shape != (p_yt.shape[1],) or f.min() < 0:
        raise ValueError(
            f"joint_with_student() expects one non-negative label per teacher symbol "
            f"({p_yt.shape[1]}); got {f.tolist()}."
        )
    out = np.zeros((*p_yt.shape, int(f.max()) + 1))
    out[:, np.arange(p_yt.shape[1]), f] = p_yt
    return out


def _bits(n: int) -> list[tuple[int, int]]:
    return [(u1, u2) for u1 in range(n) for u2 in range(2)]


def example1() -> Toy:
    """Uninformative teacher: U1, U2 fair bits, Y = U1, T = U2. Uni = Red = 0 for every S = f(T)."""
    p_yt = np.full((2, 2), 0.25)
    return Toy(
        "Example 1 (uninformative teacher)",
        p_yt,
        {"U2 (= T)": np.array([0, 1]), "constant": np.array([0, 0])},
        {"I(Y;T)": 0.0},
    )


def example2() -> Toy:
    """Over-complex teacher: U1 ~ Ber(0.2), U2 ~ Ber(0.5), Y = U1, T = (U1, U2), one-bit student.

    T's symbol is 2*u1 + u2. I(T;S) prefers S = U2 (1 bit > h(0.2)), which gives Red = 0 and
    Uni(Y:T\\S) = h(0.2) = 0.7219 bit; S = U1 gives Red = I(Y;T) = 0.7219 bit.
    """
    p_yt = np.zeros((2, 4))
    for u1, u2 in _bits(2):
        p_yt[u1, 2 * u1 + u2] = (0.2 if u1 else 0.8) * 0.5
    h02 = float(-(0.2 * np.log2(0.2) + 0.8 * np.log2(0.8)))
    return Toy(
        "Example 2 (over-complex teacher)",
        p_yt,
        {"U1": np.array([0, 0, 1, 1]), "U2": np.array([0, 1, 0, 1])},
        {"I(T;U1)": h02, "I(T;U2)": 1.0, "Red(S=U1)": h02, "Red(S=U2)": 0.0, "Uni(S=U2)": h02},
    )


def example3() -> NDArray[np.float64]:
    """Synergy: U1, U2 fair bits, Y = U1, T = U1 xor U2, S = U2; returns p[y, t, s].

    I(Y;T|S) = 1 bit suggests knowledge left to distil, but Uni = Red = 0 and Syn = 1 bit.
    """
    p = np.zeros((2, 2, 2))
    for u1, u2 in _bits(2):
        p[u1, u1 ^ u2, u2] = 0.25
    return p


def binary_entropy_inverse(h: float) -> float:
    """The θ in [0, 1/2] with binary entropy h(θ) = h bits.

    Examples
    --------
    >>> round(binary_entropy_inverse(1.0), 6), round(binary_entropy_inverse(0.721928), 4)
    (0.5, 0.2)
    """
    if not 0.0 <= h <= 1.0:
        raise ValueError(f"binary_entropy_inverse() expects h in [0, 1] bits; got {h!r}.")
    if h == 0.0:
        return 0.0
    if h == 1.0:
        return 0.5
    return float(brentq(lambda x: -(x * np.log2(x) + (1 - x) * np.log2(1 - x)) - h, 1e-300, 0.5, xtol=1e-15))


def theorem31_family(h_z: float, h_g: float) -> Toy:
    """Theorem 3.1's teacher T = (Z, G): Y = Z, Z ~ Ber(θ_z), G ~ Ber(θ_g) independent of Z.

    θ_z and θ_g are chosen so that H(Z) = h_z and H(G) = h_g bits (both in (0, 1]). Then
    I(Y;T) = I(Y;Z) and I(Y;G) = 0. T's symbol is 2*z + g; students ``"Z"`` and ``"G"``.
    """
    tz, tg = binary_entropy_inverse(h_z), binary_entropy_inverse(h_g)
    p_yt = np.zeros((2, 4))
    for z, g in _bits(2):
        p_yt[z, 2 * z + g] = (tz if z else 1 - tz) * (tg if g else 1 - tg)
    return Toy(
        f"Theorem 3.1 (H(Z) = {h_z:.3g}, H(G) = {h_g:.3g})",
        p_yt,
        {"Z": np.array([0, 0, 1, 1]), "G": np.array([0, 1, 0, 1])},
        {"H(Z)": h_z, "H(G)": h_g},
    )


@dataclass(frozen=True)
class StudentSearch:
    """All deterministic students S = f(T) within a capacity, with I(T;S) and the PID atoms.

    ``labels[k]`` is student k's map; ``mi_ts``, ``red``, ``uni_t``, ``entropy`` are in bits.
    ``best_mi`` indexes the first maximiser of I(T;S); ``best_red`` the maximiser of Red with the
    smallest entropy (several students can carry all of I(Y;T); the simplest is reported).
    :meth:`maximisers` lists every maximiser.
    """

    labels: NDArray[np.int64]
    entropy: NDArray[np.float64]
    mi_ts: NDArray[np.float64]
    red: NDArray[np.float64]
    uni_t: NDArray[np.float64]

    @property
    def best_mi(self) -> int:
        return int(np.argmax(self.mi_ts))

    @property
    def best_red(self) -> int:
        tied = self.maximisers(self.red, atol=1e-9)
        return tied[int(np.argmin(self.entropy[tied]))]

    def maximisers(self, values: NDArray[np.float64], atol: float = 1e-7) -> list[int]:
        """Indices of every student within ``atol`` bits of the maximum of ``values``."""
        return [int(i) for i in np.flatnonzero(values >= values.max() - atol)]


def search_students(
    p_yt: NDArray[np.float64], *, max_entropy: float | None = None, max_symbols: int | None = None
) -> StudentSearch:
    """Exhaustive search over deterministic students S = f(T) with H(S) <= max_entropy bits.

    Enumerates every partition of the teacher's alphabet (Bell(|T|) of them, |T| <= 10), keeps
    those within the capacity (entropy and/or number of symbols), and computes I(T;S) = H(S) and
    the BROJA PID of (Y; T, S) for each, in one batch.

    Examples
    --------
    >>> toy = example2()
    >>> res = search_students(toy.p_yt, max_symbols=2)
    >>> res.labels[res.best_mi].tolist(), res.labels[res.best_red].tolist()
    ([0, 1, 0, 1], [0, 0, 1, 1])
    """
    n_t = p_yt.shape[1]
    if n_t > 10:
        raise ValueError(
            f"search_students() enumerates all Bell(|T|) maps and is limited to |T| <= 10 symbols; "
            f"got {n_t}. Merge teacher symbols first."
        )
    parts = set_partitions(n_t)
    p_t = p_yt.sum(axis=0)
    n_blocks = parts.max(axis=1) + 1
    ent = np.array([_h(np.bincount(f, weights=p_t)) for f in parts]) / _LN2
    keep = np.ones(len(parts), dtype=bool)
    if max_entropy is not None:
        keep &= ent <= max_entropy + 1e-9
    if max_symbols is not None:
        keep &= n_blocks <= max_symbols
    parts, ent = parts[keep], ent[keep]
    results = pid_batch([joint_with_student(p_yt, f) for f in parts])
    return StudentSearch(
        labels=parts,
        entropy=ent,
        mi_ts=ent.copy(),  # S = f(T) deterministic: I(T;S) = H(S)
        red=np.array([r.red for r in results]),
        uni_t=np.array([r.uni_t for r in results]),
    )


def check_all(h_grid: Sequence[float] = (0.3, 0.6, 0.9), n_random: int = 20) -> list[dict[str, object]]:
    """Every example and theorem check of the paper: rows of claim, expected, computed, verdict.

    Examples 1-3 against the paper's values; Theorem 3.1 (i) and (ii) over a grid of (H(Z), H(G))
    including H(Z) = H(G); Theorem 4.1 extended by the map redundancy (I(Y;T∧S) <= Red∩ <=
    Red_map <= Red) on ``n_random`` random 3x3x3 pmfs and its equality case T = S; the map
    redundancy on the three examples and on a noisy shared code where Red∩ is 0.
    """
    rows: list[dict[str, object]] = []

    def add(item: str, claim: str, expected: float, computed: float, atol: float = 1e-6) -> None:
        rows.append(
            {
                "item": item,
                "claim": claim,
                "expected": expected,
                "computed": computed,
                "holds": bool(abs(expected - computed) <= atol),
            }
        )

    t1 = example1()
    s1 = search_students(t1.p_yt)
    add("Example 1", "max over S=f(T) of Red", 0.0, float(s1.red.max()))
    add("Example 1", "max over S=f(T) of Uni(Y:T\\S)", 0.0, float(s1.uni_t.max()))
    add(
        "Example 1",
        "I(T;S)-maximiser is S = U2 (1 = yes)",
        1.0,
        float(s1.labels[s1.best_mi].tolist() == t1.students["U2 (= T)"].tolist()),
    )

    t2 = example2()
    s2 = search_students(t2.p_yt, max_symbols=2)
    r_u1 = pid(joint_with_student(t2.p_yt, t2.students["U1"]))
    r_u2 = pid(joint_with_student(t2.p_yt, t2.students["U2"]))
    add("Example 2", "Red(Y:T,U1) = h(0.2)", t2.claims["Red(S=U1)"], r_u1.red)
    add("Example 2", "Red(Y:T,U2) = 0", 0.0, r_u2.red)
    add("Example 2", "Uni(Y:T\\U2) = h(0.2)", t2.claims["Uni(S=U2)"], r_u2.uni_t)
    add(
        "Example 2",
        "I(T;S)-argmax over one-bit S is U2 (1 = yes)",
        1.0,
        float(s2.labels[s2.best_mi].tolist() == t2.students["U2"].tolist()),
    )
    add(
        "Example 2",
        "Red-argmax over one-bit S is U1 (1 = yes)",
        1.0,
        float(s2.labels[s2.best_red].tolist() == t2.students["U1"].tolist()),
    )

    p3 = example3()
    r3 = pid(p3)
    add("Example 3", "I(Y;T|S) = 1 bit", 1.0, _cmi(p3) / _LN2)
    add("Example 3", "Uni(Y:T\\S) = 0", 0.0, r3.uni_t)
    add("Example 3", "Red = 0", 0.0, r3.red)
    add("Example 3", "Syn = 1 bit", 1.0, r3.syn)

    for h_z in h_grid:
        for h_g in h_grid:
            toy = theorem31_family(h_z, h_g)
            res = search_students(toy.p_yt, max_entropy=max(h_z, h_g))
            z, g = toy.students["Z"].tolist(), toy.students["G"].tolist()
            winners = [res.labels[i].tolist() for i in res.maximisers(res.mi_ts)]
            expected = z if h_z > h_g else g
            item = f"Theorem 3.1, H(Z)={h_z:g}, H(G)={h_g:g}"
            if h_z == h_g:
                add(item, "(i) Z and G both maximise I(T;S) (1 = yes)", 1.0, float(z in winners and g in winners))
            else:
                add(
                    item,
                    f"(i) I(T;S) maximised by S = {'Z' if h_z > h_g else 'G'} (1 = yes)",
                    1.0,
                    float(expected in winners),
                )
            red_winners = [res.labels[i].tolist() for i in res.maximisers(res.red)]
            add(item, "(ii) Red maximised by S = Z (1 = yes)", 1.0, float(z in red_winners))

    rng = np.random.default_rng(0)
    gaps = []
    for _ in range(n_random):
        p = rng.random((3, 3, 3)) * (rng.random((3, 3, 3)) < 0.6)
        p /= p.sum()
        gk, ri, rm, red = (
            gacs_korner_redundancy(p).red,
            intersection_redundancy(p).red,
            map_redundancy(p).red,
            pid(p).red,
        )
        gaps.append((ri - gk, rm - ri, red - rm))
    item = f"Theorem 4.1 and the map redundancy, {n_random} random 3x3x3"
    claims = ("min(Red∩ - I(Y;T∧S)) >= 0", "min(Red_map - Red∩) >= 0", "min(Red - Red_map) >= 0")
    for claim, low in zip(claims, np.min(gaps, axis=0)):
        rows.append(
            {"item": item, "claim": claim, "expected": 0.0, "computed": float(low), "holds": bool(low >= -1e-9)}
        )
    p = joint_with_student(theorem31_family(0.6, 0.9).p_yt, np.arange(4))  # T = S
    vals = [gacs_korner_redundancy(p).red, intersection_redundancy(p).red, map_redundancy(p).red, pid(p).red]
    add(
        "Theorem 4.1, T = S",
        "I(Y;T∧S) = Red∩ = Red_map = Red = I(Y;T): spread",
        0.0,
        float(np.ptp(vals + [pid(p).mi_t])),
    )
    add("Map redundancy, Example 3", "Red_map = 0 (synergy only)", 0.0, map_redundancy(p3).red)
    p2 = joint_with_student(t2.p_yt, t2.students["U1"])
    add("Map redundancy, Example 2, S = U1", "Red_map = Red = h(0.2)", t2.claims["Red(S=U1)"], map_redundancy(p2).red)
    noisy = noisy_shared_code()
    add(
        "Map redundancy, noisy shared code",
        "Red∩ = 0 (full support of P(t, s))",
        0.0,
        intersection_redundancy(noisy).red,
    )
    add(
        "Map redundancy, noisy shared code",
        "Red_map = I(Y;C_t) - I(Y;C_t|C_s) > 0 (found maps attain it)",
        float(map_redundancy(noisy).red),
        _shared_code_value(noisy),
        atol=1e-9,
    )
    return rows


def noisy_shared_code(noise: float = 0.1) -> NDArray[np.float64]:
    """Y a fair bit; T = (C_t, U), S = (C_s, V): C_t, C_s copies of Y each flipped w.p. ``noise``,
    U, V private fair bits. Every (t, s) has positive probability, so Red∩ = 0, while the maps
    t -> C_t, s -> C_s credit the shared part: Red_map >= I(Y;C_t) - I(Y;C_t|C_s) > 0."""
    flip = np.array([[1 - noise, noise], [noise, 1 - noise]])
    p = np.einsum("y,yt,ys->yts", np.full(2, 0.5), flip, flip)
    return np.repeat(np.repeat(p, 2, axis=1), 2, axis=2) / 4


def _shared_code_value(p: NDArray[np.float64]) -> float:
    """I(Y;C_t) - I(Y;C_t|C_s) of :func:`noisy_shared_code` in bits, from its definition."""
    code = np.array([0, 0, 1, 1])
    return co_information(p, code, code)


def format_checks(rows: list[dict[str, object]]) -> str:
    """The rows of :func:`check_all` as a text table with a verdict line."""
    wi = max(len(str(r["item"])) for r in rows)
    wc = max(len(str(r["claim"])) for r in rows)
    lines = [f"{'item':<{wi}}  {'claim':<{wc}}  {'expected':>9}  {'computed':>10}  verdict"]
    for r in rows:
        lines.append(
            f"{r['item']:<{wi}}  {r['claim']:<{wc}}  {r['expected']:>9.4f}  {r['computed']:>10.4f}  "
            f"{'holds' if r['holds'] else 'FAILS'}"
        )
    n_ok = sum(bool(r["holds"]) for r in rows)
    lines.append(f"\n{n_ok} of {len(rows)} checks hold (values in bits).")
    return "\n".join(lines)


def theorem31_curves(h_z: float = 0.6, h_gs: Sequence[float] | None = None) -> dict[str, NDArray[np.float64]]:
    """I(T;S) and Red of the I(T;S)-optimal and the Red-optimal student as H(G) varies."""
    hs = np.linspace(0.05, 1.0, 39) if h_gs is None else np.asarray(h_gs, dtype=float)
    out = {k: np.empty(hs.size) for k in ("mi_of_mi", "red_of_mi", "mi_of_red", "red_of_red")}
    for k, h_g in enumerate(hs):
        res = search_students(theorem31_family(h_z, float(h_g)).p_yt, max_entropy=max(h_z, float(h_g)))
        i, j = res.best_mi, res.best_red
        out["mi_of_mi"][k], out["red_of_mi"][k] = res.mi_ts[i], res.red[i]
        out["mi_of_red"][k], out["red_of_red"][k] = res.mi_ts[j], res.red[j]
    out["h_g"] = hs
    return out


def plot_theorem31(path: str, h_z: float = 0.6) -> None:
    """Draw the nuisance-teacher figure of Theorem 3.1 to ``path`` (needs matplotlib)."""
    matplotlib = import_optional("matplotlib", purpose="plot_theorem31()")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = theorem31_curves(h_z)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(c["h_g"], c["red_of_mi"], "C3-", lw=2, label="Red(Y:T,S) of the I(T;S)-optimal student")
    ax.plot(c["h_g"], c["red_of_red"], "C0--", lw=2, label="Red(Y:T,S) of the Red-optimal student")
    ax.plot(c["h_g"], c["mi_of_mi"], "C3:", label="I(T;S) of the I(T;S)-optimal student")
    ax.plot(c["h_g"], c["mi_of_red"], "C0:", label="I(T;S) of the Red-optimal student")
    ax.axvline(h_z, color="grey", lw=0.8)
    ax.text(h_z + 0.01, 0.02, "H(G) = H(Z)", color="grey")
    ax.set_xlabel("H(G): entropy of the nuisance part of the teacher (bits)")
    ax.set_ylabel("bits")
    ax.set_title(f"Theorem 3.1: T = (Z, G), Y = Z, H(Z) = {h_z} bit, H(S) <= max(H(Z), H(G))", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
