"""Train-step cost of the paper CNN: plain, explicit (closed form), references and Monte-Carlo smoothing.

Usage: `KERAS_BACKEND=jax python benchmarks/montecarlo_cost.py [--batch 128 1] [--rounds 20]`

Every candidate of `candidates.py` is one `train_on_batch` call of a
compiled model (SGD, MSE), timed interleaved in one process (medians, ratios
against the plain network). The first call of each candidate, which traces
and compiles its train step, is timed separately: Monte-Carlo steps unroll
their K passes into one graph, so their compile time grows with K.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
from candidates import build  # noqa: E402
from candidates import candidate_step  # noqa: E402
from candidates import candidate_list  # noqa: E402
from timing import interleaved_medians  # noqa: E402
from timing import ratio_table  # noqa: E402
from suite import FULL  # noqa: E402


def measure(batch: int, montecarlo: tuple, rounds: int, warmup: int) -> list:
    """Times one train step of every candidate at one batch size.

    Args:
        batch: The batch size.
        montecarlo: `(method, K)` pairs of the Monte-Carlo candidates.
        rounds: Timed steps per candidate, interleaved.
        warmup: Untimed steps per candidate after the first call.

    Returns:
        A list of dicts, one per candidate, in order (plain first), with
        `candidate`, `key`, `median_ms`, `ratio` (to plain), `per_sample_ratio`
        (ratio / K for Monte Carlo, else `None`) and `first_call_s`.
    """
    candidates = candidate_list(montecarlo)
    models = build(candidates)
    steps = {}
    first_call = {}
    for candidate, (label, model) in zip(candidates, models.items()):
        steps[label] = candidate_step(candidate, model, batch)
        start = time.perf_counter()
        steps[label]()
        first_call[label] = time.perf_counter() - start
    medians = interleaved_medians(steps, rounds=rounds, warmup=warmup)
    plain = medians[candidates[0].label]
    rows = []
    for candidate in candidates:
        ratio = medians[candidate.label] / plain
        rows.append(
            {
                "candidate": candidate.label,
                "key": candidate.key,
                "median_ms": medians[candidate.label] * 1e3,
                "ratio": ratio,
                "per_sample_ratio": ratio / candidate.num_samples if candidate.num_samples else None,
                "first_call_s": first_call[candidate.label],
            }
        )
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, nargs="+", default=list(FULL.batches), help="batch sizes to measure")
    parser.add_argument("--rounds", type=int, default=FULL.rounds, help="timed steps per candidate")
    args = parser.parse_args()
    for batch in args.batch:
        rows = measure(batch, FULL.montecarlo, rounds=args.rounds, warmup=FULL.warmup)
        medians = {row["candidate"]: row["median_ms"] / 1e3 for row in rows}
        print(ratio_table(medians, rows[0]["candidate"], f"paper CNN train step, {keras.backend.backend()}, batch {batch}"))
        print()


if __name__ == "__main__":
    main()
