"""GSmoothSGD and GSmoothAdam: Keras optimizers that carry a σ schedule.

The paper's Algorithms 1 and 2 are SGD and Adam applied to the gradient of
the smoothed loss f_{k_t,σ_t}. The gradient itself comes from the smoothed
model (`keras_gsmooth.smooth_model`), whose σ lives in the model as a
variable written by the compiled train step (see `docs/architecture.md`,
"The σ design"). These optimizers are Keras's own SGD and Adam plus one
thing: a σ schedule, which `SmoothedModel.compile` takes from them, so that
σ and learning rate are configured together:

```python
smoothed = keras_gsmooth.smooth_model(model, regularization=1e-5)
smoothed.compile(
    optimizer=keras_gsmooth.optimizers.GSmoothAdam(
        1e-3, sigma=keras_gsmooth.schedules.ExponentialDecay(0.5, 1000, 0.5)
    ),
    loss="mse",
)
```

With a constant σ a GSmooth optimizer updates the weights exactly as the
Keras optimizer it extends.
"""

import keras

from keras_gsmooth import backend
from keras_gsmooth import schedules


class SigmaScheduleMixin:
    """The σ plumbing shared by the GSmooth optimizers.

    Holds an optional σ schedule, hands it to the `SmoothedModel` that is
    compiled with the optimizer (the model calls `take_sigma_schedule` in
    its `compile`), serializes it in `get_config`, and refuses to build for a
    model that never took the schedule: a plain `keras.Model.compile` does
    not know about σ, so the schedule would be silently ignored.
    """

    #: Whether the optimizer only makes sense on a `SmoothedModel`, even
    #: without a schedule of its own (GSmoothSVRG).
    _needs_smoothed_model = False

    def _init_sigma_schedule(self, sigma) -> None:
        self._sigma_schedule = None if sigma is None else schedules.get(sigma)
        self._sigma_handed_over = False

    @property
    def sigma_schedule(self):
        """The σ schedule this optimizer carries, or `None` (the model's own σ is used)."""
        return self._sigma_schedule

    def take_sigma_schedule(self):
        """Hands the schedule over to the `SmoothedModel` being compiled with this optimizer.

        `SmoothedModel.compile` calls it; training refuses to start on a
        model that never took the schedule.

        Returns:
            The schedule, or `None`.
        """
        self._sigma_handed_over = True
        return self._sigma_schedule

    def build(self, variables):
        if not self._sigma_handed_over and (self._sigma_schedule is not None or self._needs_smoothed_model):
            raise ValueError(
                f"{self.__class__.__name__}: the model it trains is not a "
                "smoothed model, so there is no σ to drive (a plain "
                "`keras.Model.compile` never hands σ to the model, and the "
                "schedule would be silently ignored). Smooth the model first "
                "and compile that: `smoothed = keras_gsmooth.smooth_model(model)` "
                f"then `smoothed.compile(optimizer={self.__class__.__name__}(...), ...)`; "
                "or use the plain Keras optimizer for an unsmoothed model."
            )
        super().build(variables)

    def get_config(self) -> dict:
        config = super().get_config()
        config["sigma"] = None if self._sigma_schedule is None else keras.saving.serialize_keras_object(self._sigma_schedule)
        return config

    @classmethod
    def from_config(cls, config: dict, custom_objects=None):
        config = dict(config)
        if config.get("sigma") is not None:
            config["sigma"] = schedules.get(config["sigma"])
        return super().from_config(config, custom_objects=custom_objects)


@keras.saving.register_keras_serializable(package="keras_gsmooth")
class GSmoothSGD(SigmaScheduleMixin, backend.optimizer_class(keras.optimizers.SGD)):
    """GSmoothSGD (the paper's Algorithm 1): SGD on the smoothed loss with σ_t from a schedule.

    `x_t = x_{t−1} − η ∇f_{k_t,σ_t}(x_{t−1})` (with optional momentum, as
    `keras.optimizers.SGD`). Theorem 3.1 bounds the cost of changing σ by
    `Σ|σ_t² − σ_{t−1}²|`; every schedule in `keras_gsmooth.schedules` keeps
    that sum finite, and square-summable ones (`InverseTimeDecay`,
    `ExponentialDecay` without a floor) give the bound of plain SGD.

    Args:
        learning_rate: As `keras.optimizers.SGD` (a float or a learning-rate
            schedule).
        momentum: As `keras.optimizers.SGD`.
        nesterov: As `keras.optimizers.SGD`.
        sigma: The σ schedule: a float `>= 0`, a
            `keras_gsmooth.schedules.SigmaSchedule`, or a callable
            `step -> σ`; `None` (default) leaves σ to the model (the `sigma`
            given to `smooth_model`). Giving σ to both the model and the
            optimizer is an error at `compile`.
        name: The optimizer's name.
        **kwargs: Passed to `keras.optimizers.SGD` (`weight_decay`,
            `clipnorm`, `use_ema`, ...).

    Raises:
        ValueError: for a bad σ or schedule (negative, NaN or infinite), and
            when training starts on a model that is not a `SmoothedModel`
            while a schedule is given.

    Example:

    ```python
    continuation = keras_gsmooth.schedules.PiecewiseConstant([100, 200, 300], [1.0, 0.5, 0.25, 0.0])
    smoothed.compile(optimizer=keras_gsmooth.optimizers.GSmoothSGD(0.02, sigma=continuation), loss="mse")
    ```
    """

    def __init__(self, learning_rate=0.01, momentum: float = 0.0, nesterov: bool = False, sigma=None, name: str = "GSmoothSGD", **kwargs):
        super().__init__(learning_rate=learning_rate, momentum=momentum, nesterov=nesterov, name=name, **kwargs)
        self._init_sigma_schedule(sigma)


@keras.saving.register_keras_serializable(package="keras_gsmooth")
class GSmoothAdam(SigmaScheduleMixin, backend.optimizer_class(keras.optimizers.Adam)):
    """GSmoothAdam (the paper's Algorithm 2): Adam on the smoothed loss with σ_t from a schedule.

    Theorem C.2 needs σ_t non-increasing with σ_t → 0, so that
    `Σ|σ_t² − σ_{t+1}²|` is finite: `PiecewiseConstant` ending at 0 with
    non-increasing values, `ExponentialDecay` with `floor=0`,
    `InverseTimeDecay` and `CosineDecay` with `final_sigma=0` meet it. (The
    text of Theorem 4.1 also bounds `√|σ_t² − σ_{t+1}²|` by a multiple of the
    step size η_t; it is garbled in the paper, so it is not enforced: choose
    a decay no faster than the learning rate's.) A constant σ > 0 trains on
    the fixed surrogate f_σ, which is what the paper's experiments do.

    Args:
        learning_rate: As `keras.optimizers.Adam`.
        beta_1: As `keras.optimizers.Adam`.
        beta_2: As `keras.optimizers.Adam`.
        epsilon: As `keras.optimizers.Adam`.
        amsgrad: As `keras.optimizers.Adam`.
        sigma: The σ schedule, as for `GSmoothSGD`; `None` leaves σ to the
            model.
        name: The optimizer's name.
        **kwargs: Passed to `keras.optimizers.Adam`.

    Raises:
        ValueError: as `GSmoothSGD`.

    Example:

    ```python
    sigma = keras_gsmooth.schedules.ExponentialDecay(0.5, decay_steps=1000, decay_rate=0.5)
    smoothed.compile(optimizer=keras_gsmooth.optimizers.GSmoothAdam(1e-3, sigma=sigma), loss="mse")
    ```
    """

    def __init__(
        self,
        learning_rate=0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        amsgrad: bool = False,
        sigma=None,
        name: str = "GSmoothAdam",
        **kwargs,
    ):
        super().__init__(
            learning_rate=learning_rate,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            amsgrad=amsgrad,
            name=name,
            **kwargs,
        )
        self._init_sigma_schedule(sigma)
