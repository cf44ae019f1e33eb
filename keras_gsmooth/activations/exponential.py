"""The exponential activation `exp(a·x)`, smoothed exactly."""

import math

import keras
from keras import ops

from keras_gsmooth.activations.base import SmoothedActivation


@keras.saving.register_keras_serializable(package="keras_gsmooth")
class Exponential(SmoothedActivation):
    """Smoothed `exp(a·x)` (Keras's `exponential` is `a = 1`).

    `h_σ(x) = e^(ax + a²σ²/4)`, `(h²)_σ(x) = e^(2ax + a²σ²)` and
    `Var = h_σ(x)²·expm1(a²σ²/2)`, which is never negative and does not
    cancel. σ = 0 needs no special case. In float32 the values overflow to
    `inf` where the true value exceeds the float32 range (as `exp` itself
    does); below that the relative error grows like `|ax|·2⁻²⁴`.

    Args:
        scale: The factor `a`.

    Example:

    ```python
    keras_gsmooth.activations.Exponential().mean(keras.ops.zeros((2,)), 1.0)  # e^(1/4)
    ```
    """

    exact = True

    def __init__(self, scale: float = 1.0):
        scale = float(scale)
        if not math.isfinite(scale):
            raise ValueError(f"Exponential: `scale` must be finite. Received: scale={scale}.")
        self.scale = scale

    def get_config(self) -> dict:
        return {"scale": self.scale}

    def raw(self, x):
        return ops.exp(self.scale * ops.convert_to_tensor(x))

    def _spread(self, sigma):
        return 0.25 * self.scale**2 * ops.square(sigma)

    def _mean(self, x, sigma):
        return ops.exp(self.scale * x + self._spread(sigma))

    def _second_moment(self, x, sigma):
        return ops.exp(2.0 * (self.scale * x + 2.0 * self._spread(sigma)))

    def _mean_and_variance(self, x, sigma):
        spread = self._spread(sigma)
        mean = ops.exp(self.scale * x + spread)
        # At σ = 0 the variance is 0 even where e^(2ax) overflows (no inf·0).
        variance = ops.where(ops.greater(sigma, 0), ops.square(mean) * ops.expm1(2.0 * spread), ops.zeros_like(x))
        return mean, variance
