"""GSmoothSVRG (the paper's Algorithm 3): SVRG on the smoothed loss, through `model.fit`.

Outer loop s: take a snapshot x̃ of the weights and the full-data gradient
μ = (1/K) Σ_i ∇f_{i,τ}(x̃) at smoothing τ. Inner loop t = 1..m (ordinary
train steps of `fit`):

    v_t = ∇f_{i_t,σ_t}(x_{t−1}) − ∇f_{i_t,τ}(x̃) + μ,    x_t = x_{t−1} − η v_t.

How the pieces fit Keras:

- `GSmoothSVRG` is a `keras.optimizers.SGD` that holds x̃, μ and τ as
  optimizer variables (saved with the model, restored by
  `keras.saving.load_model` and `ModelCheckpoint`), and provides the train
  step: `SmoothedModel.train_step` hands each step to it. The step computes
  both gradients on the same batch (two forward and backward passes, the
  per-backend gradient in `keras_gsmooth.backend`) and applies v_t.
- `SVRGSnapshot` is the callback that starts each outer loop: it needs the
  data the full gradient μ is taken over (the training set, or a large
  sample of it), so it is given to `fit` with that data:

```python
smoothed.compile(optimizer=GSmoothSVRG(0.01, sigma=0.1), loss="mse")
smoothed.fit(x, y, batch_size=1, epochs=1, callbacks=[SVRGSnapshot(x, y)])
```

Deviations from the text of Algorithm 3, both standard practice: the next
outer loop starts from the last inner iterate (SVRG's "option I"; the
random inner iterate of line 9 serves the proof only), and the inner steps
draw their samples by Keras's shuffled batches (without replacement within
an epoch) rather than independently.
"""

from numbers import Integral

import keras
from keras import ops
from keras import tree

from keras_gsmooth import backend
from keras_gsmooth.optimizers import SigmaScheduleMixin
from keras_gsmooth.sigma import SmoothedModel
from keras_gsmooth.validation import check_sigma

MATCHED = "matched"


def _check_tau(tau):
    if tau == MATCHED:
        return tau
    if isinstance(tau, str):
        raise ValueError(f"GSmoothSVRG: `tau` must be 'matched' or a float >= 0. Received: tau={tau!r}")
    return check_sigma(tau, argument="tau", owner="GSmoothSVRG")


def _check_inner_steps(inner_steps):
    if inner_steps is None:
        return None
    if isinstance(inner_steps, bool) or not isinstance(inner_steps, Integral) or inner_steps < 1:
        raise ValueError(
            "GSmoothSVRG: `inner_steps` must be an int >= 1, or None for one "
            f"outer loop per epoch. Received: inner_steps={inner_steps!r}"
        )
    return int(inner_steps)


def _require_smoothed(model, owner: str) -> SmoothedModel:
    """`model` if it is a `SmoothedModel`: only its train step hands over to GSmoothSVRG."""
    if not isinstance(model, SmoothedModel):
        raise TypeError(
            f"keras_gsmooth.{owner}: expected a smoothed model (the result of "
            "`keras_gsmooth.smooth_model()` or a `SmoothedModel`), received "
            f"{type(model).__name__} {getattr(model, 'name', '')!r}. Convert it "
            "first: `smoothed = keras_gsmooth.smooth_model(model)`."
        )
    return model


class _GradientFunction:
    """A compiled full-data gradient function, remembered for one model (untracked by Keras)."""

    __slots__ = ("model", "function")

    def __init__(self, model, function):
        self.model = model
        self.function = function


@keras.saving.register_keras_serializable(package="keras_gsmooth")
class GSmoothSVRG(SigmaScheduleMixin, backend.optimizer_class(keras.optimizers.SGD)):
    """GSmoothSVRG (the paper's Algorithm 3) as a Keras optimizer for a smoothed model.

    Each train step computes the variance-reduced direction
    `v = ∇f_{i,σ_t}(x) − ∇f_{i,τ}(x̃) + μ` on the batch and takes an SGD step
    along it; the snapshot x̃ and μ are refreshed by the `SVRGSnapshot`
    callback, which must be passed to `fit`. A step costs two forward and
    backward passes.

    σ_t follows the schedule as for `GSmoothSGD`. Algorithm 3 keeps σ_s fixed
    during an outer loop: to follow it exactly, use a schedule that is
    constant between snapshots (a `PiecewiseConstant` with boundaries at
    multiples of `inner_steps`). τ is fixed for the outer loop when the
    snapshot is taken; Theorem F.1 needs `0 <= τ <= σ_s`, which is checked
    at each snapshot.

    Args:
        learning_rate: The step size η, as `keras.optimizers.SGD` (0.01 in
            the paper's experiments).
        sigma: The σ schedule (float, schedule or callable); `None` (default)
            leaves σ to the model.
        tau: The smoothing of the control variate: `"matched"` (default,
            τ = σ_s, the σ at the snapshot, as in the paper's experiments:
            SVRG on f_σ) or a float `>= 0` (0: the control variate uses the
            unsmoothed loss).
        inner_steps: m, the number of train steps per outer loop (a
            snapshot every m steps; it must be a multiple of the model's
            `steps_per_execution`). `None` (default): one outer loop per
            epoch, as in the paper's experiment (one epoch, one snapshot).
        name: The optimizer's name.
        **kwargs: Passed to `keras.optimizers.SGD` (`clipnorm`, ...).

    Raises:
        ValueError: for a bad σ, τ or `inner_steps`; when training starts
            on a model that is not a `SmoothedModel`; or when `fit` runs
            without an `SVRGSnapshot` callback.

    Example:

    ```python
    smoothed.compile(optimizer=keras_gsmooth.svrg.GSmoothSVRG(0.01, sigma=0.1), loss="mse")
    smoothed.fit(x, y, batch_size=1, callbacks=[keras_gsmooth.svrg.SVRGSnapshot(x, y)])
    ```
    """

    _needs_smoothed_model = True

    def __init__(self, learning_rate=0.01, sigma=None, tau=MATCHED, inner_steps=None, name: str = "GSmoothSVRG", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self._init_sigma_schedule(sigma)
        self.tau = _check_tau(tau)
        self.inner_steps = _check_inner_steps(inner_steps)
        self._snapshot_callback = None
        self._gradient_function = None

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._snapshot = [self.add_variable_from_reference(v, name="svrg_snapshot") for v in variables]
        self._full_gradient = [self.add_variable_from_reference(v, name="svrg_full_gradient") for v in variables]
        self._snapshot_tau = self.add_variable(shape=(), dtype="float32", name="svrg_tau")
        self._snapshot_iteration = self.add_variable(
            shape=(), dtype=self.iterations.dtype, initializer=keras.initializers.Constant(-1), name="svrg_snapshot_iteration"
        )

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"tau": self.tau, "inner_steps": self.inner_steps})
        return config

    @property
    def snapshot_iteration(self) -> int:
        """The optimizer iteration at which the last snapshot was taken (-1: none yet)."""
        return int(ops.convert_to_numpy(self._snapshot_iteration.value))

    def _snapshot_state(self, optimizer_values=None):
        """x̃, μ and τ: from the variables, or from the optimizer values of JAX's state."""
        if optimizer_values is None:
            return (
                [v.value for v in self._snapshot],
                [v.value for v in self._full_gradient],
                self._snapshot_tau.value,
            )
        position = {id(v): i for i, v in enumerate(self.variables)}
        read = lambda v: optimizer_values[position[id(v)]]  # noqa: E731
        return [read(v) for v in self._snapshot], [read(v) for v in self._full_gradient], read(self._snapshot_tau)

    def train_step(self, model, *args):
        """One inner step of Algorithm 3 for `model`, as `model.train_step` on this backend.

        Called by `SmoothedModel.train_step`: `(state, data)` on JAX (returns
        `(logs, state)`), `(data,)` on TensorFlow and PyTorch (returns logs).
        """
        if self._snapshot_callback is None:
            raise ValueError(
                f"GSmoothSVRG: {model.name} is trained without a snapshot: pass "
                "`keras_gsmooth.svrg.SVRGSnapshot(x, y)` (the data of the "
                "full gradient) to `fit(..., callbacks=[...])`."
            )
        if keras.backend.backend() == "jax":
            return _stateless_step(model, self, *args)
        return _stateful_step(model, self, *args)

    def take_snapshot(self, model, x, y=None, sample_weight=None, batch_size: int = 32) -> None:
        """Starts an outer loop: x̃ ← the weights, τ, and μ, the mean gradient over the data at σ = τ.

        `SVRGSnapshot` calls this; call it directly in a custom loop.

        Args:
            model: The `SmoothedModel` this optimizer trains.
            x, y, sample_weight: The data of the full gradient (arrays or
                nested structures of arrays, sliced along the first axis).
            batch_size: How many samples per gradient evaluation.

        Raises:
            ValueError: if τ exceeds the current σ_s (Theorem F.1).
        """
        model = _require_smoothed(model, "GSmoothSVRG.take_snapshot")
        if not self.built:
            self.build(model.trainable_variables)
        step = ops.convert_to_tensor(model.sigma_step.value, "int32")
        sigma = float(ops.convert_to_numpy(model.sigma_schedule(step)))
        tau = sigma if self.tau == MATCHED else self.tau
        if tau > sigma:
            raise ValueError(
                f"GSmoothSVRG: tau={tau} exceeds σ_s={sigma} at step "
                f"{int(ops.convert_to_numpy(step))}; Theorem F.1 needs 0 <= τ <= σ_s. "
                "Use tau='matched' or a smaller tau."
            )
        weights = [v.value for v in model.trainable_variables]
        full_gradient = self._full_data_gradient(model, weights, tau, x, y, sample_weight, batch_size)
        for variable, value in zip(self._snapshot, weights):
            variable.assign(ops.copy(value))  # its own buffer: JAX donates the state's buffers
        for variable, value in zip(self._full_gradient, full_gradient):
            variable.assign(value)
        self._snapshot_tau.assign(ops.copy(ops.convert_to_tensor(tau, "float32")))
        self._snapshot_iteration.assign(ops.copy(self.iterations.value))

    def _full_data_gradient(self, model, weights, tau, x, y, sample_weight, batch_size):
        if self._gradient_function is None or self._gradient_function.model is not model:
            self._gradient_function = _GradientFunction(model, backend.compile_function(_gradient_at_tau(model)))
        gradient = self._gradient_function.function
        non_trainable = [v.value for v in model.non_trainable_variables]
        metrics = [v.value for v in model.metrics_variables]
        tau = ops.convert_to_tensor(tau, "float32")
        count = len(tree.flatten(x)[0])
        total = [ops.zeros_like(w) for w in weights]
        for start in range(0, count, batch_size):
            batch = tree.map_structure(
                lambda a: None if a is None else ops.convert_to_tensor(a[start : start + batch_size]),
                (x, y, sample_weight),
            )
            size = min(batch_size, count - start)
            gradients = gradient(weights, non_trainable, metrics, tau, *batch)
            total = [t + g * size for t, g in zip(total, gradients)]
        return [t / count for t in total]


def _objective(model, trainable, non_trainable, metrics, x, y, sample_weight, training):
    """The compiled loss (with the model's penalties) at the given variable values, statelessly."""
    mapping = (
        list(zip(model.trainable_variables, trainable))
        + list(zip(model.non_trainable_variables, non_trainable))
        + list(zip(model.metrics_variables, metrics))
    )
    with keras.StatelessScope(state_mapping=mapping, collect_losses=True) as scope:
        y_pred = model(x, training=training)
        loss = model._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)
    non_trainable = [scope.get_current_value(v) for v in model.non_trainable_variables]
    metrics = [scope.get_current_value(v) for v in model.metrics_variables]
    return loss, (y_pred, non_trainable, metrics)


def _with_sigma(model, non_trainable, sigma):
    """The non-trainable values with the model's σ replaced by `sigma` (no schedule step: training=False)."""
    return [ops.cast(sigma, "float32") if v is model.sigma else value for v, value in zip(model.non_trainable_variables, non_trainable)]


def _gradient_at_tau(model):
    def gradient(trainable, non_trainable, metrics, tau, x, y, sample_weight):
        at_tau = _with_sigma(model, non_trainable, tau)
        _, gradients = backend.value_and_grad(
            lambda values: _objective(model, values, at_tau, metrics, x, y, sample_weight, training=False),
            trainable,
            has_aux=True,
        )
        return gradients

    return gradient


def _stateless_step(model, optimizer, state, data):
    """The JAX train step: `(state, data) -> (logs, state)`."""
    trainable, non_trainable, optimizer_values, metrics = state
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    snapshot, full_gradient, tau = optimizer._snapshot_state(optimizer_values)
    (loss, (y_pred, new_non_trainable, new_metrics)), gradients = backend.value_and_grad(
        lambda values: _objective(model, values, non_trainable, metrics, x, y, sample_weight, training=True),
        trainable,
        has_aux=True,
    )
    # One gradient after the other: interleaved, their temporaries would be live at once.
    snapshot = backend.computed_after(snapshot, gradients)
    snapshot_gradients = _gradient_at_tau(model)(snapshot, non_trainable, metrics, tau, x, y, sample_weight)
    direction = backend.variance_reduced_direction(gradients, snapshot_gradients, full_gradient)
    trainable, optimizer_values = optimizer.stateless_apply(optimizer_values, direction, trainable)
    with keras.StatelessScope(state_mapping=list(zip(model.metrics_variables, new_metrics))) as scope:
        logs = _update_metrics(model, loss, x, y, y_pred, sample_weight)
    metrics = [scope.get_current_value(v) for v in model.metrics_variables]
    return logs, (trainable, new_non_trainable, optimizer_values, metrics)


def _stateful_step(model, optimizer, data):
    """The TensorFlow and PyTorch train step: `data -> logs`, updating the variables.

    The snapshot gradient is taken first, statelessly, at the current
    variable values; the gradient at the current weights then comes from
    the model's own call, as in Keras's train step, which also advances the
    σ schedule. Without a `StatelessScope` and its per-variable lookups, a
    step of the paper CNN on PyTorch, which runs it eagerly, went from
    2.03× to 1.97× an SGD step at batch 1 and 128.
    """
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    snapshot, full_gradient, tau = optimizer._snapshot_state()
    values = lambda variables: [v.value for v in variables]  # noqa: E731
    snapshot_gradients = _gradient_at_tau(model)(
        snapshot, values(model.non_trainable_variables), values(model.metrics_variables), tau, x, y, sample_weight
    )

    def loss_and_prediction():
        y_pred = model(x, training=True)
        return model._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True), y_pred

    (loss, y_pred), gradients = backend.variables_value_and_grad(loss_and_prediction, model.trainable_variables, has_aux=True)
    direction = backend.variance_reduced_direction(gradients, snapshot_gradients, full_gradient)
    with backend.variable_update_scope():
        optimizer.apply(direction, model.trainable_variables)
    return _update_metrics(model, loss, x, y, y_pred, sample_weight)


def _update_metrics(model, loss, x, y, y_pred, sample_weight):
    """Updates the loss tracker and the compiled metrics, as Keras's train step; returns the logs."""
    model._loss_tracker.update_state(loss, sample_weight=ops.shape(tree.flatten(x)[0])[0])
    return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)


class SVRGSnapshot(keras.callbacks.Callback):
    """Starts GSmoothSVRG's outer loops during `fit`: snapshot x̃ and the full gradient μ.

    At the start of training (when no snapshot exists yet) and then every
    `inner_steps` train steps of the `GSmoothSVRG` optimizer (or at the
    start of every epoch when `inner_steps` is `None`), it copies the
    weights into x̃ and computes μ, the mean gradient over the given data at
    σ = τ, in batches of `batch_size`. Pass the training set (Algorithm 3's
    full gradient) or a large sample of it. The snapshot is stored in the
    optimizer's variables, so a model saved mid-loop resumes where it was.

    Args:
        x, y, sample_weight: The data of the full gradient (arrays, or
            nested structures of arrays, sliced along the first axis).
        batch_size: How many samples per gradient evaluation (memory only:
            μ does not depend on it).

    Raises:
        ValueError: if the model is not a `SmoothedModel` compiled with
            `GSmoothSVRG`, or `inner_steps` is not a multiple of the
            model's `steps_per_execution`.

    Example:

    ```python
    smoothed.fit(x, y, batch_size=1, callbacks=[keras_gsmooth.svrg.SVRGSnapshot(x, y, batch_size=256)])
    ```
    """

    def __init__(self, x, y=None, sample_weight=None, batch_size: int = 32):
        super().__init__()
        if isinstance(batch_size, bool) or not isinstance(batch_size, Integral) or batch_size < 1:
            raise ValueError(f"SVRGSnapshot: `batch_size` must be an int >= 1. Received: batch_size={batch_size!r}")
        self._data = (x, y, sample_weight)
        self.batch_size = int(batch_size)
        self._steps_since_snapshot = None
        self._execution_begin = 0

    def set_model(self, model):
        super().set_model(model)
        _require_smoothed(model, "svrg.SVRGSnapshot")
        optimizer = getattr(model, "optimizer", None)
        if not isinstance(optimizer, GSmoothSVRG):
            raise ValueError(
                f"SVRGSnapshot: {model.name} is compiled with "
                f"{type(optimizer).__name__}, not GSmoothSVRG; compile it with "
                "`optimizer=keras_gsmooth.svrg.GSmoothSVRG(...)`, or drop this callback."
            )
        steps_per_execution = getattr(model, "steps_per_execution", 1) or 1
        if optimizer.inner_steps is not None and optimizer.inner_steps % steps_per_execution:
            raise ValueError(
                f"SVRGSnapshot: inner_steps={optimizer.inner_steps} is not a multiple "
                f"of steps_per_execution={steps_per_execution}; snapshots can only be "
                "taken between executions. Make inner_steps a multiple of it."
            )
        optimizer._snapshot_callback = self

    @property
    def _optimizer(self):
        return self.model.optimizer

    def on_train_begin(self, logs=None):
        optimizer = self._optimizer
        if not optimizer.built or optimizer.snapshot_iteration < 0:
            self._steps_since_snapshot = None
        else:
            iterations = int(ops.convert_to_numpy(optimizer.iterations.value))
            self._steps_since_snapshot = iterations - optimizer.snapshot_iteration

    def on_epoch_begin(self, epoch, logs=None):
        if self._optimizer.inner_steps is None:
            self._snapshot()

    def on_train_batch_begin(self, batch, logs=None):
        self._execution_begin = batch
        inner_steps = self._optimizer.inner_steps
        if inner_steps is not None and (self._steps_since_snapshot is None or self._steps_since_snapshot >= inner_steps):
            self._snapshot()

    def on_train_batch_end(self, batch, logs=None):
        self._steps_since_snapshot += batch - self._execution_begin + 1

    def _snapshot(self):
        sync = getattr(self.model, "jax_state_sync", None)
        if sync is not None:
            sync()
        x, y, sample_weight = self._data
        self._optimizer.take_snapshot(self.model, x, y, sample_weight, batch_size=self.batch_size)
        self._steps_since_snapshot = 0
