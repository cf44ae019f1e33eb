"""Gauss–Hermite smoothing of any elementwise activation (SPEC §1).

`h_σ(x) = π^(−1/2) ∫ h(x + σt) e^(−t²) dt ≈ Σ_k w_k·h(x + σ·t_k)` with the
physicists' Hermite nodes `t_k` and normalised weights `w_k`: exact for
polynomials of degree < 2n, and the fallback for every elementwise
activation without a closed form (silu, softplus, elu, selu, mish, …, and
user functions).
"""

import functools

import numpy as np
import keras
from keras import ops

from keras_gsmooth.activations.base import SmoothedActivation
from keras_gsmooth.activations.base import keras_activation_name

DEFAULT_NUM_POINTS = 32


@keras.saving.register_keras_serializable(package="keras_gsmooth")
class GaussHermite(SmoothedActivation):
    """Smooths any elementwise function with `num_points`-node Gauss–Hermite quadrature.

    The mean and variance are accumulated in one pass over the nodes with a
    weighted Welford update, so the variance is a sum of non-negative terms
    (no cancellation) and σ = 0 returns `h(x)` exactly. Cost: `num_points`
    evaluations of `h` per element.

    Accuracy of the default 32 nodes, measured against float64 adaptive
    quadrature (largest error over x, relative to max(1, |value|), mean /
    variance):

    | h | σ = 0.1 | σ = 1 | σ = 3 | σ = 10 |
    |---|---|---|---|---|
    | silu | 2e-7 / 2e-8 | 1e-7 / 8e-7 | 9e-7 / 9e-6 | 1e-2 / 9e-3 |
    | softplus | 2e-7 / 8e-9 | 9e-8 / 8e-7 | 2e-7 / 4e-7 | 2e-3 / 2e-3 |
    | mish | 2e-7 / 2e-8 | 9e-8 / 8e-7 | 2e-5 / 1e-4 | 2e-2 / 9e-3 |
    | elu | 1e-7 / 1e-7 | 2e-4 / 3e-4 | 5e-4 / 8e-4 | 1e-2 / 1e-2 |
    | selu (kink) | 3e-4 / 9e-6 | 3e-3 / 9e-5 | 7e-3 / 4e-3 | 7e-3 / 1e-2 |

    Smooth functions are at float32 precision up to σ ≈ 1–3; at large σ the
    nodes (±7.1σ) resolve the bend at 0 coarsely, and a kink in `h` or `h′`
    converges slowly at any σ. 64 nodes divide the σ = 10 errors by 3–10.

    Args:
        function: An elementwise callable on tensors (`keras.ops` only, to
            run on every backend), or a Keras activation name.
        num_points: Number of Gauss–Hermite nodes (default 32).

    Raises:
        ValueError: if `function` is not elementwise: it is evaluated once on
            six numbers shaped (2, 3) and (6, 1), which must give the same
            values (a softmax or a normalisation over an axis does not); or
            if `num_points < 1`.

    Example:

    ```python
    silu = keras_gsmooth.activations.GaussHermite("silu")
    mine = keras_gsmooth.activations.GaussHermite(lambda x: x * keras.ops.tanh(x), num_points=48)
    ```
    """

    exact = False

    def __init__(self, function, num_points: int = DEFAULT_NUM_POINTS):
        if isinstance(function, str):
            function = keras.activations.get(function)
        if not callable(function):
            raise ValueError(
                f"GaussHermite: `function` must be a callable or a Keras activation name. Received: {function!r}."
            )
        if isinstance(num_points, bool) or not isinstance(num_points, (int, np.integer)) or num_points < 1:
            raise ValueError(f"GaussHermite: `num_points` must be an integer >= 1. Received: num_points={num_points!r}.")
        if not is_elementwise(function):
            raise ValueError(
                f"GaussHermite: `function` {function!r} is not elementwise: on the same six numbers as a "
                "(2, 3) array and as a column it gives different values, so it has no per-unit Gaussian "
                "smoothing. Use an elementwise function, or keep a non-elementwise one unsmoothed on the "
                "model's output layer."
            )
        self.function = function
        self.num_points = int(num_points)
        nodes, weights = np.polynomial.hermite.hermgauss(self.num_points)
        order = np.argsort(-weights)  # largest weight first
        self._nodes = [float(t) for t in nodes[order]]
        self._weights = [float(w) for w in weights[order] / np.sqrt(np.pi)]

    def get_config(self) -> dict:
        return {"function": _serialize_function(self.function), "num_points": self.num_points}

    @classmethod
    def from_config(cls, config: dict) -> "GaussHermite":
        config = dict(config)
        config["function"] = _deserialize_function(config["function"])
        return cls(**config)

    def raw(self, x):
        return self.function(ops.convert_to_tensor(x))

    def _evaluate(self, x, sigma, node):
        return ops.cast(self.function(x + sigma * node), x.dtype)

    def _mean(self, x, sigma):
        return self._accumulate(x, sigma, with_variance=False)[0]

    def _mean_and_variance(self, x, sigma):
        return self._accumulate(x, sigma, with_variance=True)

    def _accumulate(self, x, sigma, with_variance):
        # Weighted running mean: at σ = 0 every node gives h(x), so the mean
        # is h(x) exactly (a plain weighted sum would round Σw ≠ 1).
        mean = ops.zeros_like(x)
        spread = ops.zeros_like(x)
        seen = 0.0
        for node, weight in zip(self._nodes, self._weights):
            value = ops.cast(self.function(x + sigma * node), x.dtype)
            seen += weight
            delta = value - mean
            mean = mean + (weight / seen) * delta
            if with_variance:
                spread = spread + weight * delta * (value - mean)
        return mean, (spread / seen if with_variance else None)


def is_elementwise(function) -> bool:
    """Whether `function` gives the same values on six numbers as a (2, 3) array and as a column.

    Quadrature smooths each element on its own; a function that mixes the
    elements of an axis (a softmax, a normalisation) would be smoothed
    wrongly without any error, so user functions are probed once.

    Raises:
        ValueError: if `function` cannot be evaluated on the probe arrays.
    """
    probe = np.array([-2.5, -0.7, 0.0, 0.4, 1.3, 3.1], dtype="float32")
    try:
        rows = ops.convert_to_numpy(function(ops.convert_to_tensor(probe.reshape(2, 3))))
        column = ops.convert_to_numpy(function(ops.convert_to_tensor(probe.reshape(6, 1))))
    except Exception as error:
        raise ValueError(
            f"the activation function {function!r} could not be evaluated on probe arrays of shapes "
            f"(2, 3) and (6, 1) to check that it is elementwise: {type(error).__name__}: {error}"
        ) from error
    return (
        rows.size == probe.size
        and column.size == probe.size
        and np.allclose(rows.reshape(-1), column.reshape(-1), rtol=1e-5, atol=1e-6, equal_nan=True)
    )


def _serialize_function(function):
    """A Keras activation (or a `functools.partial` of one) by name, else Keras's own serialization."""
    if isinstance(function, functools.partial) and not function.args:
        name = keras_activation_name(function.func)
        if name is not None:
            return {"keras_activation": name, "options": dict(function.keywords)}
    name = keras_activation_name(function)
    if name is not None:
        return name
    return keras.saving.serialize_keras_object(function)


def _deserialize_function(config):
    if isinstance(config, str) and keras_activation_name(getattr(keras.activations, config, None)):
        return keras.activations.get(config)
    if isinstance(config, dict) and "keras_activation" in config:
        return functools.partial(keras.activations.get(config["keras_activation"]), **config["options"])
    return keras.saving.deserialize_keras_object(config)
