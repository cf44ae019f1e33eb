"""`Callable`: a σ schedule from a user function of the step."""

import keras
from keras import ops

from keras_gsmooth.schedules.base import SigmaSchedule


@keras.saving.register_keras_serializable(package="keras_gsmooth")
class Callable(SigmaSchedule):
    """Wraps a function `step -> σ` as a σ schedule.

    The function receives the zero-based training step as an int32 scalar
    tensor and must return σ ≥ 0 as a scalar, computed with `keras.ops`
    (it runs inside the compiled train step: no Python branching on the
    value of `step`). It is probed eagerly at a range of steps when it is
    attached, so a negative or NaN σ is reported early.

    Which convergence conditions of the paper hold depends on the function
    (Theorem 3.1: `Σ|σ_t² − σ_{t−1}²| < ∞`; Theorem C.2: σ_t non-increasing
    with σ_t → 0); prefer a built-in schedule when one fits.

    Serialization: the function is saved with
    `keras.saving.serialize_keras_object`. A named function loads back when
    it is registered with `@keras.saving.register_keras_serializable()` (or
    passed in `custom_objects`). A lambda is saved as Python bytecode, which
    Keras loads only with `safe_mode=False` (as for `keras.layers.Lambda`).

    Args:
        fn: A callable `step -> σ`.

    Raises:
        ValueError: if `fn` is not callable.

    Example:

    ```python
    @keras.saving.register_keras_serializable(package="my_project")
    def halving(step):
        return 0.5 ** keras.ops.floor(keras.ops.cast(step, "float32") / 1000)

    schedule = keras_gsmooth.schedules.Callable(halving)
    ```
    """

    def __init__(self, fn):
        if not callable(fn) or isinstance(fn, SigmaSchedule):
            raise ValueError(
                "Callable: `fn` must be a function step -> σ (a σ schedule is "
                f"used as it is, without wrapping). Received: fn={fn!r}"
            )
        self.fn = fn

    def __call__(self, step):
        return ops.cast(ops.convert_to_tensor(self.fn(step)), "float32")

    def get_config(self) -> dict:
        return {"fn": keras.saving.serialize_keras_object(self.fn)}

    @classmethod
    def from_config(cls, config: dict) -> "Callable":
        return cls(keras.saving.deserialize_keras_object(config["fn"]))

    def __repr__(self) -> str:
        return f"Callable(fn={getattr(self.fn, '__name__', self.fn)!r})"
