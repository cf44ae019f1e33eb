"""The base class of σ schedules and the constant schedule."""

import math

import keras
from keras import ops

from keras_gsmooth.validation import check_sigma


class SigmaSchedule:
    """Base class of σ schedules: a pure function from the training step to σ.

    A schedule maps the (zero-based) training step `t` to the smoothing
    radius `σ_t ≥ 0` used for that step's gradient. It is evaluated inside
    the compiled train step on every backend, so `__call__` must be written
    with `keras.ops` and must not branch in Python on the value of `step`.

    Subclasses implement `__call__(step)` and `get_config()`, and document
    which of the paper's convergence conditions they meet (Theorem 3.1:
    `Σ|σ_t² − σ_{t−1}²| < ∞`; Theorem C.2: σ_t non-increasing with σ_t → 0).

    Example:

    ```python
    class Halving(keras_gsmooth.schedules.SigmaSchedule):
        def __init__(self, initial, period):
            self.initial, self.period = initial, period

        def __call__(self, step):
            exponent = keras.ops.floor(keras.ops.cast(step, "float32") / self.period)
            return self.initial * keras.ops.power(0.5, exponent)

        def get_config(self):
            return {"initial": self.initial, "period": self.period}
    ```
    """

    def __call__(self, step):
        raise NotImplementedError(
            f"{self.__class__.__name__} must implement `__call__(step)`."
        )

    def get_config(self) -> dict:
        raise NotImplementedError(
            f"{self.__class__.__name__} must implement `get_config()`."
        )

    @classmethod
    def from_config(cls, config: dict) -> "SigmaSchedule":
        return cls(**config)

    @property
    def is_constant(self) -> bool:
        """Whether σ is the same at every step."""
        return False


@keras.saving.register_keras_serializable(package="keras_gsmooth")
class Constant(SigmaSchedule):
    """The same σ at every step.

    Meets every condition of Theorem 3.1 (no cost for changing σ); it does
    not meet Theorem C.2's σ_t → 0 unless `sigma` is 0.

    Args:
        sigma: The smoothing radius, a finite float `≥ 0`.
    """

    def __init__(self, sigma: float):
        self.sigma = check_sigma(sigma, argument="sigma", owner="Constant")

    def __call__(self, step):
        return ops.convert_to_tensor(self.sigma, dtype="float32")

    def get_config(self) -> dict:
        return {"sigma": self.sigma}

    @property
    def is_constant(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"Constant(sigma={self.sigma})"


def _probe_steps():
    return [0, 1, 2, 10, 100, 1_000, 10_000, 100_000, 1_000_000]


def validate_schedule(schedule: SigmaSchedule, owner: str) -> None:
    """Evaluates `schedule` at a range of steps and rejects bad values.

    Inside a compiled step a schedule cannot raise, so every schedule is
    probed eagerly when it is attached to a model or optimizer.

    Raises:
        ValueError: if σ is negative, NaN or infinite at a probed step.
    """
    for step in _probe_steps():
        value = float(ops.convert_to_numpy(schedule(ops.convert_to_tensor(step, "int32"))))
        if not math.isfinite(value) or value < 0:
            raise ValueError(
                f"{owner}: the σ schedule {schedule!r} gives σ = {value} at "
                f"step {step}. σ must be finite and >= 0 at every step; fix "
                "the schedule (for example clip it at 0)."
            )
