"""Forward + backward cost of `SmoothActivation("relu", λ > 0)` on one backend.

Compares, interleaved in one process, on a (128, 25, 25, 32) float32 tensor
(the paper CNN's conv output at batch 128):

- `relu`: `keras.activations.relu`, the unsmoothed baseline;
- `smooth`: `keras_gsmooth.layers.SmoothActivation("relu", regularization=λ)`
  (relu_σ and its variance penalty, fused closed-form backward pass);
- `naive`: the authors' approach written with `keras.ops`: relu_σ from its
  formula, plus the variance penalty recomputing relu_σ and (relu²)_σ,
  differentiated by autodiff.

Each variant computes `sum(output · weights) + penalty` and its gradient with
respect to the input, compiled (jax.jit / tf.function(jit_compile=True)) or
eager (torch). Medians over rounds and ratios to `relu` are printed.

Usage:

    KERAS_BACKEND=jax python benchmarks/bench_activation.py [--rounds 30]

This script is the one place in the project that imports a backend directly.
"""

import argparse
import math
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from keras_gsmooth.layers import SmoothActivation  # noqa: E402

SHAPE = (128, 25, 25, 32)
SIGMA = 0.1
LAMBDA = 1e-5


def relu_loss(x, weights):
    return ops.sum(keras.activations.relu(x) * weights)


def naive_loss(x, weights):
    sigma = ops.convert_to_tensor(SIGMA, "float32")

    def relu_s(v):
        return 0.5 * v * (1.0 + ops.erf(v / sigma)) + sigma / (2.0 * math.sqrt(math.pi)) * ops.exp(
            -ops.square(v) / ops.square(sigma)
        )

    def relu2_s(v):
        return 0.5 * (1.0 + ops.erf(v / sigma)) * (ops.square(v) + 0.5 * ops.square(sigma)) + sigma * v / (
            2.0 * math.sqrt(math.pi)
        ) * ops.exp(-ops.square(v) / ops.square(sigma))

    penalty = ops.sum(relu2_s(x) - ops.square(relu_s(x))) / x.shape[0]
    return ops.sum(relu_s(x) * weights) + LAMBDA * penalty


def smooth_loss_function():
    layer = SmoothActivation("relu", sigma=SIGMA, regularization=LAMBDA)

    def smooth_loss(x, weights):
        outputs, _, losses = layer.stateless_call([], [], x, return_losses=True)
        return ops.sum(outputs * weights) + ops.sum(ops.stack(losses))

    return smooth_loss


def compile_value_and_grad(loss):
    """Returns `step(x, weights) -> (loss, dloss/dx)` for the current backend, ready to time."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        step = jax.jit(jax.value_and_grad(loss))
        return lambda x, w: jax.block_until_ready(step(x, w))
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function(jit_compile=True)
        def step(x, w):
            with tf.GradientTape() as tape:
                tape.watch(x)
                value = loss(x, w)
            return value, tape.gradient(value, x)

        return lambda x, w: [t.numpy() for t in step(x, w)]
    if backend == "torch":
        import torch

        def step(x, w):
            x = x.detach().requires_grad_(True)
            value = loss(x, w)
            (grad,) = torch.autograd.grad(value, x)
            return value.item(), grad

        return step
    raise ValueError(f"bench_activation: unsupported backend {backend!r}.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    x = ops.convert_to_tensor(rng.standard_normal(SHAPE).astype("float32"))
    weights = ops.convert_to_tensor(rng.standard_normal(SHAPE).astype("float32"))
    variants = {
        "relu": compile_value_and_grad(relu_loss),
        "smooth": compile_value_and_grad(smooth_loss_function()),
        "naive": compile_value_and_grad(naive_loss),
    }
    for step in variants.values():  # compile and warm up
        for _ in range(3):
            step(x, weights)
    times = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, step in variants.items():
            start = time.perf_counter()
            step(x, weights)
            times[name].append(time.perf_counter() - start)

    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"backend={keras.backend.backend()} shape={SHAPE} sigma={SIGMA} lambda={LAMBDA} rounds={args.rounds}")
    for name, value in medians.items():
        print(f"  {name:7s} median {1e3 * value:8.2f} ms   x{value / medians['relu']:5.2f} relu")
    print(f"  smooth / naive = {medians['smooth'] / medians['naive']:.2f}")


if __name__ == "__main__":
    main()
