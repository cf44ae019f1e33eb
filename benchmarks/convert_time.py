"""How long `smooth_model` takes on a deep model (50 Dense + activation pairs).

Usage: `KERAS_BACKEND=jax python benchmarks/convert_time.py [--depth 50] [--rounds 5]`

Prints the median conversion time next to the time Keras takes to clone the
same model (`keras.models.clone_model`), measured interleaved.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
from timing import interleaved_medians  # noqa: E402
from timing import ratio_table  # noqa: E402

import keras_gsmooth  # noqa: E402


def deep_model(depth: int, width: int = 64) -> keras.Model:
    """`depth` Dense layers with fused relu, then a linear output."""
    inputs = keras.Input((width,))
    x = inputs
    for index in range(depth):
        x = keras.layers.Dense(width, activation="relu", name=f"dense_{index}")(x)
    return keras.Model(inputs, keras.layers.Dense(1, name="output")(x))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depth", type=int, default=50, help="number of Dense+relu layers")
    parser.add_argument("--rounds", type=int, default=5, help="timed conversions per candidate")
    args = parser.parse_args()
    model = deep_model(args.depth)
    medians = interleaved_medians(
        {
            "keras.models.clone_model": lambda: keras.models.clone_model(model),
            "keras_gsmooth.smooth_model": lambda: keras_gsmooth.smooth_model(model, sigma=0.1, regularization=1e-5),
        },
        rounds=args.rounds,
        warmup=1,
    )
    print(ratio_table(medians, "keras.models.clone_model", f"conversion of a {args.depth}-layer model, {keras.backend.backend()}"))


if __name__ == "__main__":
    main()
