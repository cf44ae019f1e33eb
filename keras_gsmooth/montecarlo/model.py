"""`MonteCarloModel`: train any Keras model on its Monte-Carlo smoothed loss with `fit`."""

import keras
from keras import ops

from keras_gsmooth import schedules
from keras_gsmooth.montecarlo import estimators
from keras_gsmooth.schedules.base import _probe_steps


@keras.saving.register_keras_serializable(package="keras_gsmooth")
class MonteCarloModel(keras.Model):
    """Wraps a model so that `fit` follows Monte-Carlo estimates of ∇E[L(θ + σu)].

    The Monte-Carlo counterpart of a smoothed model: no closed form is
    needed, so it works for every model, including those `smooth_model`
    refuses (MaxPooling). Each train step draws K random directions
    u ~ N(0, I/2) over all trainable weights, evaluates the compiled loss
    (plus the model's own losses) at the perturbed weights with
    `stateless_call`, and hands the optimizer the first-order or zero-order
    estimate of the smoothed gradient (see
    `keras_gsmooth.montecarlo.smoothed_loss_and_gradients`). The training
    `loss` logged by `fit` is the Monte-Carlo estimate of E[L(θ + σu)].
    Metrics, `evaluate` and `predict` use the unperturbed model.

    σ follows a schedule as in a `SmoothedModel`: the compiled train step
    reads the step counter `sigma_step`, writes `schedule(sigma_step)` into
    `sigma` and advances the counter, so train step t uses `schedule(t)` on
    every backend, also with `steps_per_execution > 1`.

    This smooths the composed network's loss, not the lifted, layer-wise
    objective of `smooth_model`; the two agree up to a constant only for a
    single linear layer with λ = 1 (SPEC §4).

    Cost per step, in passes over the batch (besides the unperturbed
    forward pass for the metrics): 'first_order' K forward and backward
    passes (2K with `antithetic`); 'zero_order' K + 1 forward passes (2K
    with `antithetic`) and no backward pass through the network.

    Args:
        model: A built `keras.Model` whose trainable weights are smoothed.
        sigma: The smoothing radius: a float, a
            `keras_gsmooth.schedules.SigmaSchedule`, or a serialized one.
            Must be `> 0` at every step for 'zero_order'.
        num_samples: The number K `>= 1` of random directions per step.
        method: `"first_order"` or `"zero_order"`.
        antithetic: Whether each direction is evaluated at θ ± σu.
        seed: An int or `None`, the seed of the model's own
            `keras.random.SeedGenerator`.
        **kwargs: Passed to `keras.Model` (e.g. `name`).

    Attributes:
        model: The wrapped model (its variables are this model's variables).
        sigma: The σ variable used by the last train step.
        sigma_step: How many train steps the schedule has advanced.

    Raises:
        TypeError: if `model` is not a `keras.Model`.
        ValueError: for an unbuilt model, K < 1, an unknown method, a bad σ
            or a schedule that reaches σ = 0 with 'zero_order'.

    Example:

    ```python
    cnn = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(8, 3),
                            keras.layers.MaxPooling2D(), keras.layers.Flatten(),
                            keras.layers.Dense(10)])
    mc = keras_gsmooth.montecarlo.MonteCarloModel(cnn, sigma=0.1, num_samples=4, seed=0)
    mc.compile(optimizer="adam", loss="mse")
    mc.fit(x, y, epochs=1)
    ```
    """

    def __init__(
        self,
        model: keras.Model,
        sigma,
        num_samples: int = 1,
        method: str = estimators.FIRST_ORDER,
        antithetic: bool = False,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        owner = f"MonteCarloModel {self.name!r}"
        self.model = estimators.check_model(model, owner)
        self.num_samples = estimators.check_num_samples(num_samples, owner)
        self.method = estimators.check_method(method, owner)
        self.antithetic = bool(antithetic)
        self.seed = seed
        self._sigma_schedule = self._checked_schedule(sigma)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.sigma = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(self._sigma_at(self._sigma_schedule, 0)),
            dtype="float32",
            trainable=False,
            name="sigma",
        )
        self.sigma_step = self.add_weight(
            shape=(), initializer="zeros", dtype="int32", trainable=False, name="sigma_step"
        )
        self.built = True

    @staticmethod
    def _sigma_at(schedule, step: int) -> float:
        return float(ops.convert_to_numpy(schedule(ops.convert_to_tensor(step, "int32"))))

    def _checked_schedule(self, sigma):
        schedule = schedules.get(sigma)
        if self.method == estimators.ZERO_ORDER:
            for step in _probe_steps():
                estimators.check_zero_order_sigma(
                    self._sigma_at(schedule, step),
                    self.method,
                    owner=f"MonteCarloModel {self.name!r}",
                    where=f" at every step, but the schedule {schedule!r} gives 0 at step {step}",
                )
        return schedule

    @property
    def sigma_schedule(self) -> "schedules.SigmaSchedule":
        return self._sigma_schedule

    def set_sigma_schedule(self, sigma) -> None:
        """Replaces the σ schedule; it continues from the current `sigma_step`."""
        schedule = self._checked_schedule(sigma)
        self._sigma_schedule = schedule
        step = ops.convert_to_tensor(self.sigma_step.value, "int32")
        self.sigma.assign(ops.cast(schedule(step), "float32"))

    def call(self, inputs, training=None):
        return self.model(inputs, training=training)

    def compile(self, optimizer="rmsprop", *args, **kwargs):
        """Configures training, as `keras.Model.compile`, with a plain Keras optimizer.

        Raises:
            ValueError: if no `loss` is given, or if the optimizer carries its
                own σ (a GSmooth optimizer): σ belongs to this model.
        """
        if kwargs.get("loss", args[0] if args else None) is None:
            raise ValueError(
                f"MonteCarloModel {self.name!r}: `compile` needs a `loss`; it is "
                "the function whose smoothing E[L(θ + σu)] is estimated."
            )
        if getattr(optimizer, "sigma_schedule", None) is not None:
            raise ValueError(
                f"MonteCarloModel {self.name!r}: the optimizer "
                f"{optimizer.__class__.__name__} carries a σ schedule, but σ is "
                "given to the MonteCarloModel (`sigma=`). Use the plain Keras "
                "optimizer (keras.optimizers.SGD or Adam) with the same "
                "learning rate."
            )
        super().compile(optimizer, *args, **kwargs)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """In training, a scalar whose value is the Monte-Carlo estimate of
        E[L(θ + σu)] and whose gradient is the chosen estimate of its
        gradient; otherwise the plain loss at the unperturbed weights.

        It also advances the σ schedule and the model's seed generator (new
        random directions at every step).
        """
        if not training:
            return super().compute_loss(x, y, y_pred, sample_weight, training=training)
        sigma = self._advance_sigma()
        loss_at = estimators.model_loss_function(
            self.model,
            # The compiled loss alone: `Model.compute_loss` would add the
            # losses of the unperturbed forward pass; `model_loss_function`
            # adds those at the perturbed weights instead.
            lambda y_true, y_pred: self._compile_loss(y_true, y_pred, sample_weight),
            x,
            y,
            training=True,
        )
        variables = self.model.trainable_variables
        directions = estimators.draw_directions(variables, self.num_samples, self.seed_generator)
        values = [variable.value for variable in variables]
        if self.method == estimators.FIRST_ORDER:
            return estimators.first_order_objective(loss_at, values, sigma, directions, self.antithetic)
        loss, gradients = estimators.zero_order_estimate(loss_at, values, sigma, directions, self.antithetic)
        # A scalar whose value is the loss estimate and whose gradient with
        # respect to the weights is the zero-order estimate.
        linear = 0.0
        for value, gradient in zip(values, gradients):
            linear = linear + ops.sum(value * ops.stop_gradient(gradient))
        return loss + linear - ops.stop_gradient(linear)

    def _advance_sigma(self):
        step = self.sigma_step.value
        sigma = ops.cast(self._sigma_schedule(step), "float32")
        self.sigma.assign(sigma)
        self.sigma_step.assign(step + 1)
        return sigma

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            model=keras.saving.serialize_keras_object(self.model),
            sigma=keras.saving.serialize_keras_object(self._sigma_schedule),
            num_samples=self.num_samples,
            method=self.method,
            antithetic=self.antithetic,
            seed=self.seed,
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["model"] = keras.saving.deserialize_keras_object(config["model"], custom_objects=custom_objects)
        return cls(**config)
