"""How σ lives in a model: one σ per smoothed model, shared by every part.

A smoothed model is a `SmoothedModel`, a functional `keras.Model` that owns
two non-trainable variables, `sigma` and `sigma_step`, and a σ schedule.
Every smoothed layer and penalty regularizer of the model is a
`SigmaConsumer` bound to that one `sigma` variable. When the model is called
with `training=True` (the train step of `fit` or of a custom loop) it first
writes `schedule(step)` into `sigma` and advances `sigma_step`, in the graph:
on JAX the stateless train step returns the new values like any other
non-trainable state (the pattern of BatchNormalization's moving averages), on
TensorFlow and PyTorch the writes are ordinary variable assignments.
Evaluation and prediction read `sigma` as it is and never advance it. Both
variables are saved with the model, so training resumes mid-schedule.

See `docs/architecture.md` ("The σ design") for why σ lives here and not in
the optimizer or a callback.
"""

import keras
from keras import ops

from keras_gsmooth import backend
from keras_gsmooth import eager_ops
from keras_gsmooth import schedules
from keras_gsmooth.validation import check_sigma


class _SigmaBinding:
    """An untracked handle on a model's σ variable.

    Keras tracks `keras.Variable` attributes of layers; holding the model's
    variable through this plain object keeps it owned (and saved) by the model
    alone.
    """

    __slots__ = ("variable",)

    def __init__(self, variable):
        self.variable = variable


class SigmaConsumer:
    """Mixin for every layer and regularizer whose value depends on σ.

    A consumer has its own constant `sigma` (used when it stands alone, for
    example a penalty regularizer on a hand-built layer) until a
    `SmoothedModel` binds it to the model's shared σ variable.
    """

    def _init_sigma(self, sigma, owner: str) -> None:
        self._sigma_constant = check_sigma(sigma, argument="sigma", owner=owner)
        self._sigma_binding = None

    def bind_sigma(self, variable) -> None:
        """Makes this object read σ from `variable` (a scalar `keras.Variable`)."""
        self._sigma_binding = _SigmaBinding(variable)

    def _owned_sigma_consumers(self) -> tuple:
        """The consumers this layer holds apart from its regularizers (a layer's output penalty).

        `sigma_consumers` also asks a layer that is not a consumer itself
        (`keras_gsmooth.layers.SmoothDense`) for its own.
        """
        return ()

    @property
    def is_sigma_bound(self) -> bool:
        return self._sigma_binding is not None

    def current_sigma(self, dtype="float32"):
        """σ as a scalar tensor of `dtype`: the bound variable's value, or the constant."""
        if self._sigma_binding is None:
            return ops.convert_to_tensor(self._sigma_constant, dtype=dtype)
        return eager_ops.cast(self._sigma_binding.variable.value, dtype)

    @property
    def fast_without_xla(self) -> bool:
        """Whether this part runs fast in a TensorFlow step without XLA.

        True for the penalties (a few reductions and products), and for the
        smoothed relu and leaky relu, which have native kernels
        (`keras_gsmooth.native_tensorflow`); False for the other closed
        forms, long chains of elementwise `keras.ops` that need XLA's fusion.
        """
        return True


def _sigma_consumers_of(layer):
    if isinstance(layer, SigmaConsumer):
        yield layer
    # A layer may hold penalties apart from its regularizers (`SmoothDense`'s kernel penalty).
    owned = getattr(layer, "_owned_sigma_consumers", None)
    if owned is not None:
        yield from owned()
    if isinstance(layer.activity_regularizer, SigmaConsumer):
        yield layer.activity_regularizer
    for weight in layer._trainable_variables + layer._non_trainable_variables:
        if isinstance(getattr(weight, "regularizer", None), SigmaConsumer):
            yield weight.regularizer


def sigma_consumers(model):
    """Every `SigmaConsumer` (layer or regularizer) inside `model`, nested models included."""
    found = []
    for layer in model._flatten_layers(include_self=False):
        found.extend(_sigma_consumers_of(layer))
    return found


@keras.saving.register_keras_serializable(package="keras_gsmooth")
class SmoothedModel(keras.Model):
    """A functional model whose smoothed layers share one σ.

    `keras_gsmooth.smooth_model()` returns one of these. It is built like a
    functional model (`SmoothedModel(inputs, outputs, sigma=...)`), so it can
    also wrap a graph built by hand from `SmoothActivation` layers and
    penalty regularizers: every σ-dependent part is bound to the model's σ.

    Args:
        sigma: The smoothing radius: a float `>= 0`, a
            `keras_gsmooth.schedules.SigmaSchedule`, or a callable
            `step -> σ` (see `keras_gsmooth.schedules.get`).
        *args, **kwargs: Passed to the functional `keras.Model` constructor.

    `SmoothedModel.from_config(model.get_config())` copies the structure
    with σ and its schedule; `keras.models.clone_model` rebuilds a
    functional subclass from its inputs, outputs and name only, so its
    clone starts at σ = 0 (set it with `keras_gsmooth.set_sigma`).

    Attributes:
        sigma: The scalar σ variable every smoothed part reads.
        sigma_step: How many training calls the schedule has advanced.
        sigma_schedule: The schedule that writes `sigma` at each train step.

    Example:

    ```python
    inputs = keras.Input((16,))
    hidden = keras.layers.Dense(32)(inputs)
    hidden = keras_gsmooth.layers.SmoothActivation("relu", regularization=1e-5)(hidden)
    outputs = keras.layers.Dense(1)(hidden)
    model = keras_gsmooth.SmoothedModel(inputs, outputs, sigma=0.1)
    ```
    """

    def __init__(self, *args, sigma=0.0, **kwargs):
        super().__init__(*args, **kwargs)
        if "." in self.name:
            # The σ variable's path is "<name>/sigma", and PyTorch refuses a
            # parameter name with a dot; refused on every backend, so that a
            # saved model loads on each.
            raise ValueError(
                f"SmoothedModel: `name` {self.name!r} contains '.', which PyTorch does not "
                "allow in the path of the model's σ variable. Use a name without '.', "
                f"e.g. {self.name.replace('.', '_')!r}."
            )
        schedule = schedules.get(sigma)
        self._sigma_schedule = schedule
        self.sigma = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(self._initial_sigma(schedule)),
            dtype="float32",
            trainable=False,
            name="sigma",
        )
        self.sigma_step = self.add_weight(
            shape=(),
            initializer="zeros",
            dtype="int32",
            trainable=False,
            name="sigma_step",
        )
        for consumer in sigma_consumers(self):
            consumer.bind_sigma(self.sigma)

    @staticmethod
    def _initial_sigma(schedule):
        return float(ops.convert_to_numpy(schedule(ops.convert_to_tensor(0, "int32"))))

    @property
    def sigma_schedule(self) -> "schedules.SigmaSchedule":
        return self._sigma_schedule

    def set_sigma_schedule(self, sigma) -> None:
        """Replaces the σ schedule (a float, schedule or callable).

        `sigma_step` is kept, so a new schedule continues from the current
        step; `sigma` is set to the new schedule's value at that step.
        """
        schedule = schedules.get(sigma)
        self._sigma_schedule = schedule
        step = ops.convert_to_tensor(self.sigma_step.value, "int32")
        self.sigma.assign(ops.cast(schedule(step), "float32"))

    def call(self, inputs, training=None, mask=None):
        if training:
            self._advance_sigma()
        return super().call(inputs, training=training, mask=mask)

    def train_step(self, *args):
        """One train step, as `keras.Model.train_step` on the current backend.

        An optimizer that needs more than the one gradient of the standard
        step (`keras_gsmooth.svrg.GSmoothSVRG`) provides the whole step as
        `optimizer.train_step(model, *args)`; the model hands it over.
        """
        optimizer_step = getattr(self.optimizer, "train_step", None)
        if optimizer_step is None:
            return super().train_step(*args)
        return optimizer_step(self, *args)

    def _advance_sigma(self):
        step = self.sigma_step.value
        self.sigma.assign(eager_ops.cast(self._sigma_schedule(step), "float32"))
        self.sigma_step.assign(step + 1)

    def compile(self, optimizer="rmsprop", *args, **kwargs):
        """Configures the model for training, as `keras.Model.compile`.

        A GSmooth optimizer (`GSmoothSGD`, `GSmoothAdam`, `GSmoothSVRG`)
        hands its σ schedule to the model here. The model must then have
        been created with the default `sigma=0.0` or the same schedule:
        giving σ to both is an error, never a silent override.

        On TensorFlow, `jit_compile="auto"` (the default) compiles the train
        step with XLA (`keras_gsmooth.backend.smoothed_jit_compile`) where a
        smoothed closed form is a long elementwise expression, which XLA
        fuses; a model whose smoothed activations are all relu or leaky relu
        trains without XLA, as Keras trains the plain model on a CPU, with
        native kernels (`keras_gsmooth.config.set_native_tensorflow_kernels`).
        Pass `jit_compile=True` or `False` to choose yourself.
        """
        kwargs["jit_compile"] = backend.smoothed_jit_compile(
            kwargs.get("jit_compile", "auto"),
            kwargs.get("run_eagerly", False),
            fast_without_xla=all(consumer.fast_without_xla for consumer in sigma_consumers(self)),
        )
        take_schedule = getattr(optimizer, "take_sigma_schedule", None)
        schedule = take_schedule() if take_schedule is not None else None
        if schedule is not None:
            if not (_is_default(self._sigma_schedule) or _same_schedule(schedule, self._sigma_schedule)):
                raise ValueError(
                    f"{self.name}: σ is given twice, to the model "
                    f"({self._sigma_schedule!r}) and to the optimizer "
                    f"{optimizer.__class__.__name__} ({schedule!r}). Give it "
                    "once: either `smooth_model(model, sigma=...)` with a plain "
                    "Keras optimizer, or `smooth_model(model)` (σ = 0 until "
                    "compiled) with a GSmooth optimizer that takes `sigma=`."
                )
            self.set_sigma_schedule(schedule)
        super().compile(optimizer, *args, **kwargs)

    def compile_from_config(self, config):
        """Compiles the model from its saved compile config (what `load_model` calls).

        Keras skips this for models that override `compile`; this one only
        adds the σ hand-over, so the saved optimizer, loss and metrics are
        restored as for any model.
        """
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def get_config(self):
        config = super().get_config()
        config["sigma"] = keras.saving.serialize_keras_object(self._sigma_schedule)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["sigma"] = schedules.get(config.get("sigma", 0.0))
        return super().from_config(config, custom_objects=custom_objects)


def _is_default(schedule) -> bool:
    return schedule.is_constant and schedule.sigma == 0.0


def _same_schedule(first, second) -> bool:
    return keras.saving.serialize_keras_object(first) == keras.saving.serialize_keras_object(second)


def _require_smoothed(model, function: str):
    """`model` if it owns a σ schedule (`SmoothedModel`, `montecarlo.MonteCarloModel`)."""
    if not callable(getattr(model, "set_sigma_schedule", None)):
        raise TypeError(
            f"keras_gsmooth.{function}: expected a smoothed model (the result "
            "of `keras_gsmooth.smooth_model()`, a `SmoothedModel` or a "
            "`keras_gsmooth.montecarlo.MonteCarloModel`), received "
            f"{type(model).__name__} {getattr(model, 'name', '')!r}. Convert "
            "it first: `smoothed = keras_gsmooth.smooth_model(model, sigma=...)`."
        )
    return model


def set_sigma(model: keras.Model, value) -> None:
    """Sets a smoothed model's σ, or its σ schedule.

    Args:
        model: A `SmoothedModel` (or a `montecarlo.MonteCarloModel`).
        value: A float `>= 0` (a constant σ from now on), or a schedule or
            callable `step -> σ`, which continues from the model's current
            `sigma_step`.

    Example:

    ```python
    keras_gsmooth.set_sigma(smoothed, 0.0)   # evaluate the unsmoothed network
    ```
    """
    _require_smoothed(model, "set_sigma").set_sigma_schedule(value)


def get_sigma(model: keras.Model) -> float:
    """Returns the σ a smoothed model currently uses, as a Python float."""
    return float(ops.convert_to_numpy(_require_smoothed(model, "get_sigma").sigma.value))
