"""PID of the logic gates and reference distributions, and of a noisy copy channel.

Run: python examples/pid_of_logic_gates.py
"""

import numpy as np

import pidkd
from pidkd.estimators import distributions


def noisy_student(eps: float) -> np.ndarray:
    """Y = T a fair bit; the student S sees T through a binary symmetric channel with flip eps."""
    p = np.zeros((2, 2, 2))
    for t in (0, 1):
        p[t, t, t] = 0.5 * (1 - eps)
        p[t, t, 1 - t] = 0.5 * eps
    return p


def main() -> None:
    print(f"{'distribution':>14}  {'red':>8} {'uni_t':>8} {'uni_s':>8} {'syn':>8}  gap (bits)")
    for name, ref in distributions.REFERENCE.items():
        r = pidkd.pid(ref.make())
        print(f"{name:>14}  {r.red:8.4f} {r.uni_t:8.4f} {r.uni_s:8.4f} {r.syn:8.4f}  {r.diagnostics.gap:.1e}")
    print("\nA student that copies the teacher through a noisy channel: knowledge left to distil")
    for eps in (0.0, 0.05, 0.1, 0.25, 0.5):
        r = pidkd.pid(noisy_student(eps))
        print(f"  flip probability {eps:4.2f}: Red = {r.red:.4f} bits, Uni(Y:T\\S) = {r.uni_t:.4f} bits")


if __name__ == "__main__":
    main()
