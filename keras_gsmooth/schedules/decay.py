"""σ schedules that decrease with the training step.

Each schedule is a pure function of the zero-based step `t`, written with
`keras.ops` so that it runs inside the compiled train step on every backend.
The docstrings say which of the paper's convergence conditions each one
meets (SPEC §4):

- Theorem 3.1 (GSmoothSGD): the bound pays `Σ_t |σ_t² − σ_{t−1}²|`, so that
  sum must be finite; with square-summable σ_t (`Σ σ_t² < ∞`) the bound
  matches plain SGD's.
- Theorem C.2 (GSmoothAdam): σ_t non-increasing with σ_t → 0 (which makes
  `Σ |σ_t² − σ_{t+1}²| = σ_0²` finite).
"""

import math
from numbers import Integral
from numbers import Real

import keras
from keras import ops

from keras_gsmooth.schedules.base import SigmaSchedule
from keras_gsmooth.validation import check_sigma


class _ConfiguredSchedule(SigmaSchedule):
    """A schedule whose `repr` lists its config (used in error messages)."""

    def __repr__(self) -> str:
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"{self.__class__.__name__}({arguments})"


def _positive_steps(value, argument: str, owner: str) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"{owner}: `{argument}` must be an int >= 1. Received: {argument}={value!r}")
    return int(value)


def _positive_real(value, argument: str, owner: str, maximum: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not 0 < value <= maximum:
        bound = "" if maximum == math.inf else f" and <= {maximum}"
        raise ValueError(f"{owner}: `{argument}` must be a number > 0{bound}. Received: {argument}={value!r}")
    return float(value)


def _at_most(value: float, argument: str, limit: float, limit_argument: str, owner: str) -> float:
    if value > limit:
        raise ValueError(
            f"{owner}: `{argument}` ({value}) must not exceed `{limit_argument}` "
            f"({limit}); this schedule only decreases σ."
        )
    return value


def _float_step(step):
    return ops.cast(step, "float32")


@keras.saving.register_keras_serializable(package="keras_gsmooth")
class PiecewiseConstant(_ConfiguredSchedule):
    """σ constant between step boundaries: the paper's continuation.

    `σ_t = values[i]` for `boundaries[i−1] <= t < boundaries[i]` (with
    `boundaries[−1] = 0` and `boundaries[len] = ∞`). The continuation of
    the paper's Figure 2 (σ = 1, ½, ¼, 0, each held for 100 steps) is
    `PiecewiseConstant([100, 200, 300], [1.0, 0.5, 0.25, 0.0])`.

    Convergence conditions: σ changes finitely often, so
    `Σ|σ_t² − σ_{t−1}²|` is finite and Theorem 3.1 holds. Theorem C.2 holds
    when `values` is non-increasing and its last entry is 0.

    Args:
        boundaries: Strictly increasing ints `>= 1`, the steps at which σ
            changes.
        values: `len(boundaries) + 1` floats `>= 0`.

    Raises:
        ValueError: for unsorted or non-positive boundaries, a wrong number
            of values, or a negative, NaN or infinite value.

    Example:

    ```python
    schedule = keras_gsmooth.schedules.PiecewiseConstant([100, 200, 300], [1.0, 0.5, 0.25, 0.0])
    optimizer = keras_gsmooth.optimizers.GSmoothSGD(0.02, sigma=schedule)
    ```
    """

    def __init__(self, boundaries, values):
        owner = "PiecewiseConstant"
        boundaries = [_positive_steps(b, "boundaries", owner) for b in boundaries]
        if any(later <= earlier for earlier, later in zip(boundaries, boundaries[1:])):
            raise ValueError(f"{owner}: `boundaries` must be strictly increasing. Received: boundaries={boundaries}")
        values = [check_sigma(v, argument="values", owner=owner) for v in values]
        if len(values) != len(boundaries) + 1:
            raise ValueError(
                f"{owner}: `values` must have one more entry than `boundaries` "
                f"(one σ per interval). Received {len(values)} values for "
                f"{len(boundaries)} boundaries."
            )
        self.boundaries = boundaries
        self.values = values

    def __call__(self, step):
        if not self.boundaries:
            return ops.convert_to_tensor(self.values[0], "float32")
        passed = ops.greater_equal(ops.cast(step, "int32"), ops.array(self.boundaries, "int32"))
        interval = ops.sum(ops.cast(passed, "int32"))
        return ops.take(ops.array(self.values, "float32"), interval)

    def get_config(self) -> dict:
        return {"boundaries": list(self.boundaries), "values": list(self.values)}

    @property
    def is_constant(self) -> bool:
        return len(set(self.values)) == 1


@keras.saving.register_keras_serializable(package="keras_gsmooth")
class ExponentialDecay(_ConfiguredSchedule):
    """Geometric decay of σ with a floor.

    `σ_t = max(floor, initial_sigma · decay_rate^(t / decay_steps))`
    (with `staircase=True` the exponent is `floor(t / decay_steps)`).

    Convergence conditions: σ_t is non-increasing, so
    `Σ|σ_t² − σ_{t−1}²| = initial_sigma² − floor²` is finite (Theorem 3.1);
    with `floor=0` it is also square-summable and tends to 0, meeting
    Theorem C.2. A floor > 0 keeps σ_t away from 0, so Theorem C.2 does not
    hold.

    Args:
        initial_sigma: σ at step 0, a float `>= 0`.
        decay_steps: Steps per factor of `decay_rate`, an int `>= 1`.
        decay_rate: The factor, in `(0, 1]`.
        floor: The smallest σ, a float in `[0, initial_sigma]`.
        staircase: Whether σ drops in steps every `decay_steps`.

    Raises:
        ValueError: for a σ that is negative, NaN or infinite, a rate outside
            `(0, 1]`, non-positive `decay_steps`, or a floor above
            `initial_sigma`.

    Example:

    ```python
    schedule = keras_gsmooth.schedules.ExponentialDecay(1.0, decay_steps=1000, decay_rate=0.5)
    ```
    """

    def __init__(self, initial_sigma: float, decay_steps: int, decay_rate: float, floor: float = 0.0, staircase: bool = False):
        owner = "ExponentialDecay"
        self.initial_sigma = check_sigma(initial_sigma, argument="initial_sigma", owner=owner)
        self.decay_steps = _positive_steps(decay_steps, "decay_steps", owner)
        self.decay_rate = _positive_real(decay_rate, "decay_rate", owner, maximum=1.0)
        self.floor = _at_most(
            check_sigma(floor, argument="floor", owner=owner), "floor", self.initial_sigma, "initial_sigma", owner
        )
        self.staircase = bool(staircase)

    def __call__(self, step):
        exponent = _float_step(step) / self.decay_steps
        if self.staircase:
            exponent = ops.floor(exponent)
        decayed = self.initial_sigma * ops.power(ops.convert_to_tensor(self.decay_rate, "float32"), exponent)
        return ops.maximum(decayed, self.floor)

    def get_config(self) -> dict:
        return {
            "initial_sigma": self.initial_sigma,
            "decay_steps": self.decay_steps,
            "decay_rate": self.decay_rate,
            "floor": self.floor,
            "staircase": self.staircase,
        }


@keras.saving.register_keras_serializable(package="keras_gsmooth")
class InverseTimeDecay(_ConfiguredSchedule):
    """Polynomial decay of σ, square-summable as Theorem 3.1 wants.

    `σ_t = initial_sigma / (1 + t / decay_steps)^power`.

    Convergence conditions: σ_t is non-increasing and tends to 0, so
    `Σ|σ_t² − σ_{t−1}²| = initial_sigma²` (Theorem 3.1) and Theorem C.2
    hold; `Σ σ_t²` is finite exactly when `power > 1/2`, which is therefore
    required: the bound of Theorem 3.1 then matches plain SGD's.

    Args:
        initial_sigma: σ at step 0, a float `>= 0`.
        decay_steps: The step scale, an int `>= 1`.
        power: The decay exponent, a float `> 0.5`.

    Raises:
        ValueError: for a σ that is negative, NaN or infinite, non-positive
            `decay_steps`, or `power <= 0.5` (not square-summable).

    Example:

    ```python
    schedule = keras_gsmooth.schedules.InverseTimeDecay(0.5, decay_steps=100)
    ```
    """

    def __init__(self, initial_sigma: float, decay_steps: int, power: float = 1.0):
        owner = "InverseTimeDecay"
        self.initial_sigma = check_sigma(initial_sigma, argument="initial_sigma", owner=owner)
        self.decay_steps = _positive_steps(decay_steps, "decay_steps", owner)
        if isinstance(power, bool) or not isinstance(power, Real) or not 0.5 < power < math.inf:
            raise ValueError(
                f"{owner}: `power` must be a finite number > 0.5, so that σ_t "
                f"is square-summable (Theorem 3.1). Received: power={power!r}. "
                "For a slower decay use ExponentialDecay with a floor."
            )
        self.power = float(power)

    def __call__(self, step):
        base = 1.0 + _float_step(step) / self.decay_steps
        return self.initial_sigma / ops.power(base, self.power)

    def get_config(self) -> dict:
        return {"initial_sigma": self.initial_sigma, "decay_steps": self.decay_steps, "power": self.power}


@keras.saving.register_keras_serializable(package="keras_gsmooth")
class CosineDecay(_ConfiguredSchedule):
    """Half-cosine decay of σ from `initial_sigma` to `final_sigma`.

    `σ_t = final + (initial − final) · ½(1 + cos(π · min(t, decay_steps) / decay_steps))`,
    then `final_sigma` for every later step.

    Convergence conditions: σ_t is non-increasing and constant after
    `decay_steps`, so `Σ|σ_t² − σ_{t−1}²| = initial² − final²` is finite
    (Theorem 3.1); with `final_sigma=0` it reaches 0 and meets Theorem C.2.

    Args:
        initial_sigma: σ at step 0, a float `>= 0`.
        decay_steps: The step at which σ reaches `final_sigma`, an int `>= 1`.
        final_sigma: σ from `decay_steps` on, a float in `[0, initial_sigma]`.

    Raises:
        ValueError: for a σ that is negative, NaN or infinite, non-positive
            `decay_steps`, or `final_sigma > initial_sigma`.

    Example:

    ```python
    schedule = keras_gsmooth.schedules.CosineDecay(0.5, decay_steps=2000)
    ```
    """

    def __init__(self, initial_sigma: float, decay_steps: int, final_sigma: float = 0.0):
        owner = "CosineDecay"
        self.initial_sigma = check_sigma(initial_sigma, argument="initial_sigma", owner=owner)
        self.decay_steps = _positive_steps(decay_steps, "decay_steps", owner)
        self.final_sigma = _at_most(
            check_sigma(final_sigma, argument="final_sigma", owner=owner),
            "final_sigma",
            self.initial_sigma,
            "initial_sigma",
            owner,
        )

    def __call__(self, step):
        progress = ops.minimum(_float_step(step), float(self.decay_steps)) / self.decay_steps
        weight = 0.5 * (1.0 + ops.cos(math.pi * progress))
        return self.final_sigma + (self.initial_sigma - self.final_sigma) * weight

    def get_config(self) -> dict:
        return {"initial_sigma": self.initial_sigma, "decay_steps": self.decay_steps, "final_sigma": self.final_sigma}
