"""`SmoothActivation` (h_σ and its variance penalty) and `SmoothPReLU` (the same with a trainable slope)."""

import keras
from keras import ops

from keras_gsmooth import activations
from keras_gsmooth import regularizers
from keras_gsmooth.layers.penalized import PenalizedLayer
from keras_gsmooth.layers.pooling import average_pool

_RELU = activations.ReLU()


@keras.saving.register_keras_serializable(package="keras_gsmooth")
class SmoothActivation(keras.layers.Layer, PenalizedLayer):
    """Applies the Gaussian-smoothed activation `h_σ` and adds its variance penalty.

    The smoothed replacement of an `Activation(h)` layer (SPEC §3): the
    output is `h_σ(x)`, and when `regularization = λ > 0` the layer adds
    `λ · Σ_units Var_σ[h](x)` per sample, averaged over the batch, to its
    losses (so the total loss does not change with the batch size). The
    smoothed value and the variance share their transcendental evaluations;
    for relu and leaky relu the backward pass is the fused closed form of
    `keras_gsmooth.activations.ReLU`.

    With `pool_size`, the layer also average-pools `h_σ(x)` over
    non-overlapping windows, as `AveragePooling{1,2,3}D(pool_size)` with
    'valid' padding and channels last does after it; the penalty stays the
    variance of every element of `x`. `smooth_model` fuses a smoothed relu
    or leaky relu with the average pooling that alone reads it this way: on
    TensorFlow's CPU one native kernel per pass then computes both
    (`keras_gsmooth.native_tensorflow`) and `h_σ` in full is never stored.

    With `output_penalty`, a `DenseInputPenalty`, the layer also adds that
    penalty of its output per sample, averaged over the batch, as an
    `InputPenalty` layer after it would. The fused kernel sums the output's
    squares as it pools, and adds their gradient as it reads the pooled
    gradient, so the penalty costs no pass of its own. `smooth_model` moves
    a Dense layer's input penalty here when the fused layer's output reaches
    that Dense layer alone, directly or through `Flatten` or `Reshape`.

    σ is the constant `sigma` given here until a `keras_gsmooth.SmoothedModel`
    binds the layer to the model's shared σ variable.

    Args:
        activation: Anything `keras_gsmooth.activations.get` accepts: a Keras
            activation name or function, an elementwise callable, a config
            dict, or a `SmoothedActivation`.
        sigma: The smoothing radius used while unbound, a float `>= 0`.
        regularization: The penalty weight λ `>= 0` (0 switches it off).
        pool_size: None (no pooling), or the pooling window along each of
            the input's 1 to 3 spatial axes, positive ints (one int is the
            same window along every spatial axis of the input).
        output_penalty: None, or a `keras_gsmooth.regularizers.DenseInputPenalty`
            (or its config) of the layer's output.
        **kwargs: Base `keras.layers.Layer` arguments (`name`, `dtype`, …).

    Raises:
        ValueError: for a negative, NaN or infinite `sigma` or
            `regularization`, a `pool_size` that is not 1 to 3 positive
            ints, an `output_penalty` that is not a `DenseInputPenalty`, or
            an activation `get` rejects.

    Example:

    ```python
    inputs = keras.Input((16,))
    hidden = keras.layers.Dense(32)(inputs)
    hidden = keras_gsmooth.layers.SmoothActivation("relu", regularization=1e-5)(hidden)
    model = keras_gsmooth.SmoothedModel(inputs, keras.layers.Dense(1)(hidden), sigma=0.1)
    ```
    """

    def __init__(
        self,
        activation,
        sigma: float = 0.0,
        regularization: float = 0.0,
        pool_size=None,
        output_penalty=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.regularization = self._init_penalty(sigma, regularization)
        self.activation = activations.get(activation)
        self.pool_size = None if pool_size is None else self._checked_pool_size(pool_size)
        self.output_penalty = None if output_penalty is None else self._checked_output_penalty(output_penalty)
        # A pooled output no longer matches the input's mask, as after Keras's pooling.
        self.supports_masking = pool_size is None
        self.built = True

    def _checked_pool_size(self, pool_size) -> tuple:
        sizes = (pool_size,) if isinstance(pool_size, int) else pool_size
        if (
            not isinstance(sizes, (tuple, list))
            or not 1 <= len(sizes) <= 3
            or not all(isinstance(size, int) and not isinstance(size, bool) and size >= 1 for size in sizes)
        ):
            raise ValueError(
                f"SmoothActivation {self.name!r}: `pool_size` must be None, a positive int, or a tuple "
                f"of 1 to 3 positive ints (one per spatial axis). Received: pool_size={pool_size!r}"
            )
        return tuple(sizes)

    def _checked_output_penalty(self, output_penalty):
        penalty = keras.regularizers.get(output_penalty)
        if not isinstance(penalty, regularizers.DenseInputPenalty):
            raise ValueError(
                f"SmoothActivation {self.name!r}: `output_penalty` must be a "
                "keras_gsmooth.regularizers.DenseInputPenalty or its config. Received: "
                f"output_penalty={output_penalty!r}. Give any other penalty of the output as the "
                "layer's `activity_regularizer`."
            )
        return penalty

    def _owned_sigma_consumers(self) -> tuple:
        return () if self.output_penalty is None else (self.output_penalty,)

    def _pool_size_for(self, shape) -> tuple:
        """The window along each spatial axis of an input of `shape`, checked against it."""
        spatial = tuple(shape[1:-1])
        pool_size = self.pool_size * len(spatial) if len(self.pool_size) == 1 else self.pool_size
        if not spatial or len(pool_size) != len(spatial):
            raise ValueError(
                f"SmoothActivation {self.name!r}: `pool_size={self.pool_size}` needs inputs "
                f"(batch, {len(self.pool_size)} spatial axes, channels); received an input of rank {len(shape)}. "
                "Give one window per spatial axis."
            )
        if any(size is not None and size < pool for size, pool in zip(spatial, pool_size)):
            raise ValueError(
                f"SmoothActivation {self.name!r}: the input's spatial sizes {spatial} are smaller than "
                f"`pool_size={pool_size}`, so no window fits. Use a smaller `pool_size`."
            )
        return pool_size

    def call(self, inputs):
        sigma = self.current_sigma("float32")
        outputs, summed_variance, output_squares = self._outputs_and_sums(inputs, sigma)
        if self.regularization > 0.0:
            self._add_per_sample_penalty(self.regularization, summed_variance, inputs)
        if self.output_penalty is not None:
            if output_squares is None:
                penalty = self.output_penalty(outputs)
            else:
                penalty = self.output_penalty.of_sum_of_squares(output_squares)
            self._add_per_sample_penalty(1.0, penalty, inputs)
        return outputs

    def _outputs_and_sums(self, inputs, sigma):
        """The layer's output (pooled, with `pool_size`), `Σ Var_σ` and `Σ output²`.

        The sums are None where they are not computed: the variance where
        λ = 0 leaves it out, and the squares except by the fused kernel.
        """
        pool_size = None if self.pool_size is None else self._pool_size_for(inputs.shape)
        if pool_size is not None:
            fused = self.activation.average_pooled_mean_and_sums(inputs, sigma, pool_size)
            if fused is not None:
                return fused
        if self.regularization <= 0.0:
            outputs, summed_variance = self.activation.mean(inputs, sigma), None
        else:
            outputs, summed_variance = self.activation.mean_and_summed_variance(inputs, sigma)
        if pool_size is not None:
            outputs = average_pool(outputs, pool_size, pool_size, "valid", "channels_last")
        return outputs, summed_variance, None

    def compute_output_shape(self, input_shape):
        if self.pool_size is None:
            return input_shape
        pool_size = self._pool_size_for(input_shape)
        spatial = [None if size is None else size // pool for size, pool in zip(input_shape[1:-1], pool_size)]
        return (input_shape[0], *spatial, input_shape[-1])

    @property
    def fast_without_xla(self) -> bool:
        return self.compute_dtype == "float32" and self.activation.native_tensorflow_kernels

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "activation": activations.serialize(self.activation),
                "sigma": self._sigma_constant,
                "regularization": self.regularization,
                "pool_size": self.pool_size,
                "output_penalty": (
                    None if self.output_penalty is None else keras.regularizers.serialize(self.output_penalty)
                ),
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_gsmooth")
class SmoothPReLU(keras.layers.PReLU, PenalizedLayer):
    """Gaussian-smoothed parametric relu, with the variance penalty of its input and its slope.

    The smoothed replacement of `keras.layers.PReLU`, which computes
    `relu(x) − α·relu(−x)` with a trainable slope α. The slope is a weight,
    perturbed like every other weight, independently of the input: with
    `z = x + σu`, `α̃ = α + σv` and `u, v ~ N(0, 1/2)`, the output is the mean

    `E[relu(z) − α̃·relu(−z)] = relu_σ(x) − α·relu_σ(−x)`,

    (the smoothed leaky relu of slope α), and when `regularization = λ > 0`
    the layer adds `λ · Σ_units Var` per sample, averaged over the batch,
    to its losses, where

    `Var = Var_σ[relu](x) + α²·Var_σ[relu](−x) + 2α·relu_σ(x)·relu_σ(−x) + (σ²/2)·(relu²)_σ(−x)`.

    The last term is the slope's own noise: the variance of a leaky relu
    with a fixed slope lacks it. Every part is the closed form of
    `keras_gsmooth.activations.ReLU`, with its closed-form gradients, so σ = 0
    gives Keras's `PReLU` exactly and the gradients stay finite there.

    Arguments and weights are `keras.layers.PReLU`'s, so `smooth_model`
    copies a `PReLU`'s slope into it.

    Args:
        sigma: The smoothing radius used while the layer is not bound to a
            `keras_gsmooth.SmoothedModel`'s σ, a float `>= 0`.
        regularization: The penalty weight λ `>= 0` (0 switches it off).
        **kwargs: `keras.layers.PReLU` arguments (`alpha_initializer`,
            `alpha_regularizer`, `alpha_constraint`, `shared_axes`) and base
            layer arguments (`name`, `dtype`, …).

    Raises:
        ValueError: for a negative, NaN or infinite `sigma` or `regularization`.

    Example:

    ```python
    inputs = keras.Input((16,))
    hidden = keras.layers.Dense(32)(inputs)
    hidden = keras_gsmooth.layers.SmoothPReLU(regularization=1e-5)(hidden)
    model = keras_gsmooth.SmoothedModel(inputs, keras.layers.Dense(1)(hidden), sigma=0.1)
    ```
    """

    def __init__(self, sigma: float = 0.0, regularization: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.regularization = self._init_penalty(sigma, regularization)

    def call(self, inputs):
        sigma = self.current_sigma("float32")
        x = ops.cast(inputs, "float32")
        alpha = ops.cast(self.alpha, "float32")
        if self.regularization <= 0.0:
            outputs = _RELU.mean(x, sigma) - alpha * _RELU.mean(-x, sigma)
            return ops.cast(outputs, inputs.dtype)
        positive, positive_variance = _RELU.mean_and_variance(x, sigma)
        negative, negative_variance = _RELU.mean_and_variance(-x, sigma)
        outputs = positive - alpha * negative
        negative_second_moment = negative_variance + ops.square(negative)
        variance = (
            positive_variance
            + ops.square(alpha) * negative_variance
            + 2.0 * alpha * positive * negative
            + (0.5 * ops.square(sigma)) * negative_second_moment
        )
        # Rounding can leave a tiny negative value where the variance is ~0.
        self._add_per_sample_penalty(self.regularization, ops.sum(ops.maximum(variance, 0.0)), inputs)
        return ops.cast(outputs, inputs.dtype)

    @property
    def fast_without_xla(self) -> bool:
        return False  # elementwise variances of relu_σ(x) and relu_σ(−x), as keras.ops

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"sigma": self._sigma_constant, "regularization": self.regularization})
        return config
