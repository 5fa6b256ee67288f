"""The RID paper's toy examples and theorems, checked numerically, and the nuisance-teacher figure.

Run: python examples/theory_checks.py [--plot docs/img/theorem31.png]
(the same as the command `pidkd toys [--plot PATH]`).

Prints, example by example and theorem by theorem, the value the paper claims and the value pidkd
computes. The figure follows Theorem 3.1: a teacher T = (Z, G) whose Z carries the label (Y = Z)
and whose G is nuisance, and a student with capacity H(S) <= max(H(Z), H(G)). As H(G) grows past
H(Z), the student that maximises I(T;S) switches from Z to G and its redundancy Red(Y:T,S) drops
to 0, while the student that maximises Red stays at Z.
"""

from __future__ import annotations

import argparse

from pidkd.toys import check_all, format_checks, plot_theorem31


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plot", help="write the Theorem 3.1 figure to this PNG path")
    args = parser.parse_args(argv)
    rows = check_all()
    print(format_checks(rows))
    if args.plot:
        plot_theorem31(args.plot)
        print(f"figure written to {args.plot}")
    return 0 if all(r["holds"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
