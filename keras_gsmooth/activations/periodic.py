"""`sin(ωx)` and `cos(ωx)`, smoothed exactly."""

import math

import keras
from keras import ops

from keras_gsmooth.activations.base import SmoothedActivation


class _Periodic(SmoothedActivation):
    """Shared closed forms of the smoothed sine and cosine.

    With damping `D = e^(−ω²σ²/4)`: `sin_σ(ωx) = sin(ωx)·D`,
    `cos_σ(ωx) = cos(ωx)·D`, and
    `Var = ½(1 − D²)(1 ± cos(2ωx)·D²)` (+ for the sine, − for the cosine),
    written with `expm1` so it neither cancels for small σ nor goes negative.
    Subclasses define `_wave(angle)` and `_sign`.
    """

    exact = True

    def __init__(self, frequency: float = 1.0):
        frequency = float(frequency)
        if not math.isfinite(frequency):
            raise ValueError(
                f"{self.__class__.__name__}: `frequency` must be finite. Received: frequency={frequency}."
            )
        self.frequency = frequency

    def get_config(self) -> dict:
        return {"frequency": self.frequency}

    def raw(self, x):
        return self._wave(self.frequency * ops.convert_to_tensor(x))

    def _exponent(self, sigma):
        return -0.25 * self.frequency**2 * ops.square(sigma)

    def _mean(self, x, sigma):
        return self._wave(self.frequency * x) * ops.exp(self._exponent(sigma))

    def _mean_and_variance(self, x, sigma):
        exponent = self._exponent(sigma)
        damping = ops.exp(exponent)
        mean = self._wave(self.frequency * x) * damping
        squared_damping = ops.square(damping)
        variance = -0.5 * ops.expm1(2.0 * exponent) * (
            1.0 + self._sign * ops.cos(2.0 * self.frequency * x) * squared_damping
        )
        return mean, ops.maximum(variance, 0.0)


@keras.saving.register_keras_serializable(package="keras_gsmooth")
class Sin(_Periodic):
    """Smoothed `sin(ωx)`: `sin(ωx)·e^(−ω²σ²/4)`; exact (SPEC §2).

    `Var = −½·expm1(−ω²σ²/2)·(1 + cos(2ωx)·e^(−ω²σ²/2))`.

    Args:
        frequency: ω.
    """

    _sign = 1.0

    def _wave(self, angle):
        return ops.sin(angle)


@keras.saving.register_keras_serializable(package="keras_gsmooth")
class Cos(_Periodic):
    """Smoothed `cos(ωx)`: `cos(ωx)·e^(−ω²σ²/4)`; exact (SPEC §2).

    `Var = −½·expm1(−ω²σ²/2)·(1 − cos(2ωx)·e^(−ω²σ²/2))`.

    Args:
        frequency: ω.
    """

    _sign = -1.0

    def _wave(self, angle):
        return ops.cos(angle)
