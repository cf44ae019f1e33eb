"""Train steps of the paper CNN: plain against explicitly smoothed.

Usage: `KERAS_BACKEND=jax python benchmarks/train_step.py [--batch 128 1] [--rounds 20]`

Each candidate is one `train_on_batch` call of a compiled model (SGD, MSE),
timed interleaved in one process; the smoothed model has every penalty on
(λ = 1e-5 on every layer) and σ = 0.1.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from timing import interleaved_medians  # noqa: E402
from timing import ratio_table  # noqa: E402

import keras_gsmooth  # noqa: E402


def compiled_pair(seed: int = 0):
    """The plain paper CNN and its smoothed counterpart, compiled alike."""
    keras.utils.set_random_seed(seed)
    plain = keras_gsmooth.models.paper_cnn()
    smoothed = keras_gsmooth.smooth_model(plain, sigma=0.1, regularization=1e-5)
    for model in (plain, smoothed):
        model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
    return plain, smoothed


def step_function(model, batch: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (batch, 28, 28, 1)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 10, batch), 10).astype("float32")
    return lambda: model.train_on_batch(x, y)


def measure(batch: int, rounds: int) -> dict:
    """Median seconds per train step, plain and smoothed, at one batch size."""
    plain, smoothed = compiled_pair()
    return interleaved_medians(
        {"plain": step_function(plain, batch), "smoothed": step_function(smoothed, batch)},
        rounds=rounds,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, nargs="+", default=[128, 1], help="batch sizes to measure")
    parser.add_argument("--rounds", type=int, default=20, help="timed steps per candidate")
    args = parser.parse_args()
    for batch in args.batch:
        medians = measure(batch, args.rounds)
        print(ratio_table(medians, "plain", f"paper CNN train step, {keras.backend.backend()}, batch {batch}"))
        print()


if __name__ == "__main__":
    main()
