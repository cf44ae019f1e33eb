"""CI's guard against a slow smoothing path: fails if smoothed/plain > 2.0.

Measures the train step of the paper CNN at batch 128 on the current
backend (CI runs it on JAX), plain against smoothed, interleaved, and prints
the ratio. The naive composition of `keras.ops` calls measured 2.8× here;
the current path measures 0.9–1.1× on a 2-core machine (CI's dry runs
printed 1.08–1.09×; the target is 1.2×). A ratio over the limit is measured again, up to
`ATTEMPTS` times in all, and the guard fails only if every measurement is
over it: a slow path is slow every time, a burst of load on a shared
machine is not.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from train_step import measure  # noqa: E402

THRESHOLD = 2.0
ATTEMPTS = 3


def main() -> int:
    for attempt in range(1, ATTEMPTS + 1):
        medians = measure(batch=128, rounds=25)
        ratio = medians["smoothed"] / medians["plain"]
        print(
            f"paper CNN train step, batch 128 (measurement {attempt}): plain {medians['plain'] * 1e3:.1f} ms, "
            f"smoothed {medians['smoothed'] * 1e3:.1f} ms, ratio {ratio:.2f} (limit {THRESHOLD})"
        )
        if ratio <= THRESHOLD:
            return 0
    print(f"FAIL: smoothing cost more than {THRESHOLD}x in {ATTEMPTS} measurements; see benchmarks/train_step.py")
    return 1


if __name__ == "__main__":
    sys.exit(main())
