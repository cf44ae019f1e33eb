"""CI's guard against a slow smoothing path: fails if smoothed/plain > 2.0.

Measures the train step of the paper CNN at batch 128 on the current
backend (CI runs it on JAX), plain against smoothed, interleaved, and prints
the ratio. The threshold is far above noise (the target is ≤ 1.2×): only a
change that brings back a naive, several-times-slower path trips it.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from train_step import measure  # noqa: E402

THRESHOLD = 2.0


def main() -> int:
    medians = measure(batch=128, rounds=25)
    ratio = medians["smoothed"] / medians["plain"]
    print(
        f"paper CNN train step, batch 128: plain {medians['plain'] * 1e3:.1f} ms, "
        f"smoothed {medians['smoothed'] * 1e3:.1f} ms, ratio {ratio:.2f} (limit {THRESHOLD})"
    )
    if ratio > THRESHOLD:
        print("FAIL: smoothing costs more than the limit; see benchmarks/train_step.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
