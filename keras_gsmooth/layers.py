"""The smoothed layers: `SmoothActivation` (h_σ and its variance penalty), `SmoothPReLU`, `SmoothMultiply`,
separable convolutions, `InputPenalty`, average pooling."""

import keras
from keras import ops

from keras_gsmooth import activations
from keras_gsmooth import backend
from keras_gsmooth.sigma import SigmaConsumer
from keras_gsmooth.validation import check_regularization


@keras.saving.register_keras_serializable(package="keras_gsmooth")
class SmoothActivation(keras.layers.Layer, SigmaConsumer):
    """Applies the Gaussian-smoothed activation `h_σ` and adds its variance penalty.

    The smoothed replacement of an `Activation(h)` layer (SPEC §3): the
    output is `h_σ(x)`, and when `regularization = λ > 0` the layer adds
    `λ · Σ_units Var_σ[h](x)` per sample, averaged over the batch, to its
    losses (so the total loss does not change with the batch size). The
    smoothed value and the variance share their transcendental evaluations;
    for relu and leaky relu the backward pass is the fused closed form of
    `keras_gsmooth.activations.ReLU`.

    σ is the constant `sigma` given here until a `keras_gsmooth.SmoothedModel`
    binds the layer to the model's shared σ variable.

    Args:
        activation: Anything `keras_gsmooth.activations.get` accepts: a Keras
            activation name or function, an elementwise callable, a config
            dict, or a `SmoothedActivation`.
        sigma: The smoothing radius used while unbound, a float `>= 0`.
        regularization: The penalty weight λ `>= 0` (0 switches it off).
        **kwargs: Base `keras.layers.Layer` arguments (`name`, `dtype`, …).

    Raises:
        ValueError: for a negative, NaN or infinite `sigma` or
            `regularization`, or an activation `get` rejects.

    Example:

    ```python
    inputs = keras.Input((16,))
    hidden = keras.layers.Dense(32)(inputs)
    hidden = keras_gsmooth.layers.SmoothActivation("relu", regularization=1e-5)(hidden)
    model = keras_gsmooth.SmoothedModel(inputs, keras.layers.Dense(1)(hidden), sigma=0.1)
    ```
    """

    def __init__(self, activation, sigma: float = 0.0, regularization: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        owner = f"SmoothActivation {self.name!r}"
        self._init_sigma(sigma, owner=owner)
        self.regularization = check_regularization(regularization, argument="regularization", owner=owner)
        self.activation = activations.get(activation)
        self.supports_masking = True
        self.built = True

    def call(self, inputs):
        sigma = self.current_sigma("float32")
        if self.regularization <= 0.0:
            return self.activation.mean(inputs, sigma)
        outputs, summed_variance = self.activation.mean_and_summed_variance(inputs, sigma)
        batch_size = ops.cast(ops.shape(inputs)[0], "float32")
        penalty = ops.cast(summed_variance, "float32") / batch_size
        self.add_loss(self.regularization * penalty)
        return outputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "activation": activations.serialize(self.activation),
                "sigma": self._sigma_constant,
                "regularization": self.regularization,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_gsmooth")
class SmoothPReLU(keras.layers.PReLU, SigmaConsumer):
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
        owner = f"SmoothPReLU {self.name!r}"
        self._init_sigma(sigma, owner=owner)
        self.regularization = check_regularization(regularization, argument="regularization", owner=owner)

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
        summed_variance = ops.sum(ops.maximum(variance, 0.0))
        batch_size = ops.cast(ops.shape(inputs)[0], "float32")
        self.add_loss(self.regularization * summed_variance / batch_size)
        return ops.cast(outputs, inputs.dtype)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"sigma": self._sigma_constant, "regularization": self.regularization})
        return config


_RELU = activations.ReLU()


@keras.saving.register_keras_serializable(package="keras_gsmooth")
class SmoothMultiply(keras.layers.Multiply, SigmaConsumer):
    """Multiplies its inputs (as `keras.layers.Multiply`) and adds the variance penalty of the product.

    The smoothed replacement of `keras.layers.Multiply`. Each input `a_j`
    that is a variable of the lifted objective is perturbed independently,
    `ã_j = a_j + σu_j` with `u_j ~ N(0, 1/2)`; an input that is raw data is
    not. The product's mean is then the product itself, so the output is
    Keras's, and when `regularization = λ > 0` the layer adds
    `λ · Σ_units Var` per sample, averaged over the batch, to its losses, where

    `Var = Π_j (a_j² + [j perturbed]·σ²/2) − Π_j a_j²`,

    computed as a sum of non-negative terms (for two perturbed inputs,
    `(σ²/2)(a² + b²) + σ⁴/4`), so it cannot cancel. Inputs of different
    shapes broadcast as in `keras.layers.Multiply`, and where a Keras mask
    hides an input's entry, Keras multiplies by 1 instead: a constant,
    which the penalty does not perturb.

    Args:
        sigma: The smoothing radius used while the layer is not bound to a
            `keras_gsmooth.SmoothedModel`'s σ, a float `>= 0`.
        regularization: The penalty weight λ `>= 0` (0 switches it off).
        perturbed: One bool per input: whether it is perturbed (False for
            raw data). None perturbs every input.
        **kwargs: Base layer arguments (`name`, `dtype`, …).

    Raises:
        ValueError: for a negative, NaN or infinite `sigma` or
            `regularization`, or a `perturbed` list whose length is not the
            number of inputs.

    Example:

    ```python
    inputs = keras.Input((8,))
    hidden = keras.layers.Dense(8)(inputs)
    gate = keras.layers.Dense(8, activation="sigmoid")(inputs)
    gated = keras_gsmooth.layers.SmoothMultiply(regularization=1e-5)([hidden, gate])
    ```
    """

    def __init__(self, sigma: float = 0.0, regularization: float = 0.0, perturbed=None, **kwargs):
        super().__init__(**kwargs)
        owner = f"SmoothMultiply {self.name!r}"
        self._init_sigma(sigma, owner=owner)
        self.regularization = check_regularization(regularization, argument="regularization", owner=owner)
        self.perturbed = None if perturbed is None else [bool(flag) for flag in perturbed]

    def call(self, inputs, mask=None):
        outputs = super().call(inputs)
        if self.regularization > 0.0:
            summed_variance = ops.sum(self._product_variance(inputs, mask or [None] * len(inputs)))
            batch_size = ops.cast(ops.shape(inputs[0])[0], "float32")
            self.add_loss(self.regularization * summed_variance / batch_size)
        return outputs

    def compute_output_spec(self, inputs, mask=None):
        return super().compute_output_spec(inputs)

    def _product_variance(self, inputs, masks):
        """`Π(a² + [perturbed]·s²) − Π a²`, built up input by input from non-negative terms."""
        perturbed = self.perturbed if self.perturbed is not None else [True] * len(inputs)
        if len(perturbed) != len(inputs):
            raise ValueError(
                f"SmoothMultiply {self.name!r}: `perturbed` has {len(perturbed)} entries, but the layer "
                f"was called on {len(inputs)} inputs. Give one bool per input."
            )
        half_sigma2 = 0.5 * ops.square(self.current_sigma("float32"))
        rank = max(len(x.shape) for x in inputs)
        variance, moment = 0.0, 1.0  # Π(a² + [perturbed]·s²) − Π a², and Π(a² + [perturbed]·s²)
        for x, mask, is_perturbed in zip(inputs, masks, perturbed):
            square = ops.square(ops.cast(x, "float32"))
            kept = None
            if mask is not None:  # Keras multiplies by 1 where the mask hides an entry
                kept = ops.expand_dims(ops.cast(mask, "float32"), axis=-1)
                square = kept * square + (1.0 - kept)
            for _ in range(rank - len(x.shape)):  # Keras's Multiply expands lower ranks at axis 1
                square = ops.expand_dims(square, axis=1)
                kept = None if kept is None else ops.expand_dims(kept, axis=1)
            noise = 0.0 if not is_perturbed else (half_sigma2 if kept is None else half_sigma2 * kept)
            variance = square * variance + noise * moment
            moment = (square + noise) * moment
        return variance

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"sigma": self._sigma_constant, "regularization": self.regularization, "perturbed": self.perturbed})
        return config


class _SmoothSeparableConv(SigmaConsumer):
    """A separable convolution computed as its two halves, with the input penalty of the pointwise half.

    The lifted objective has one constraint per half, with the depthwise
    output `z` as a variable between them (the smoothing of the same network
    written as a depthwise convolution and a 1×1 convolution). The kernel
    penalties are the layer's `depthwise_regularizer` and
    `pointwise_regularizer`, and the depthwise half's input penalty sits on
    the layer's input; the pointwise half's input penalty,
    `λ·(σ²·filters/2)·‖z‖²` per sample, needs `z`, so the layer adds it.
    """

    def __init__(self, *args, sigma: float = 0.0, intermediate_regularization: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        owner = f"{self.__class__.__name__} {self.name!r}"
        self._init_sigma(sigma, owner=owner)
        self.intermediate_regularization = check_regularization(
            intermediate_regularization, argument="intermediate_regularization", owner=owner
        )

    def call(self, inputs):
        intermediate = ops.depthwise_conv(
            inputs, self.depthwise_kernel, self.strides, self.padding, self.data_format, self.dilation_rate
        )
        if self.intermediate_regularization > 0.0:
            half_sigma2 = 0.5 * ops.square(self.current_sigma("float32"))
            squares = ops.sum(ops.square(ops.cast(intermediate, "float32")))
            batch_size = ops.cast(ops.shape(inputs)[0], "float32")
            self.add_loss(self.intermediate_regularization * self.filters * half_sigma2 * squares / batch_size)
        outputs = ops.conv(intermediate, self.pointwise_kernel, strides=1, padding="valid", data_format=self.data_format)
        if self.use_bias:
            channel_axis = len(outputs.shape) - 1 if self.data_format == "channels_last" else 1
            bias_shape = [self.filters if axis == channel_axis else 1 for axis in range(len(outputs.shape))]
            outputs = outputs + ops.reshape(self.bias, bias_shape)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"sigma": self._sigma_constant, "intermediate_regularization": self.intermediate_regularization})
        return config


@keras.saving.register_keras_serializable(package="keras_gsmooth")
class SmoothSeparableConv1D(_SmoothSeparableConv, keras.layers.SeparableConv1D):
    """`keras.layers.SeparableConv1D` with the input penalty of its pointwise half.

    `smooth_model` puts it in place of a `SeparableConv1D`. It computes
    Keras's outputs as a depthwise convolution followed by a 1×1
    convolution and, when `intermediate_regularization = λ > 0`, adds
    `λ·(σ²·filters/2)·‖z‖²` per sample (averaged over the batch) for the
    depthwise output `z`. The kernel penalties are its
    `depthwise_regularizer` and `pointwise_regularizer`.

    Args:
        sigma: The smoothing radius used while the layer is not bound to a
            `keras_gsmooth.SmoothedModel`'s σ, a float `>= 0`.
        intermediate_regularization: The penalty weight λ `>= 0` of the
            pointwise half's input penalty (0 switches it off).
        *args, **kwargs: `keras.layers.SeparableConv1D` arguments.
    """


@keras.saving.register_keras_serializable(package="keras_gsmooth")
class SmoothSeparableConv2D(_SmoothSeparableConv, keras.layers.SeparableConv2D):
    """`keras.layers.SeparableConv2D` with the input penalty of its pointwise half.

    `smooth_model` puts it in place of a `SeparableConv2D`; see
    `SmoothSeparableConv1D`.

    Args:
        sigma: The smoothing radius used while the layer is not bound to a
            `keras_gsmooth.SmoothedModel`'s σ, a float `>= 0`.
        intermediate_regularization: The penalty weight λ `>= 0` of the
            pointwise half's input penalty (0 switches it off).
        *args, **kwargs: `keras.layers.SeparableConv2D` arguments.

    Example:

    ```python
    layer = keras_gsmooth.layers.SmoothSeparableConv2D(16, 3, sigma=0.1, intermediate_regularization=1e-5)
    outputs = layer(keras.ops.ones((2, 8, 8, 4)))
    ```
    """


@keras.saving.register_keras_serializable(package="keras_gsmooth")
class InputPenalty(keras.layers.Layer):
    """Passes its input through and adds a penalty on it to the model's losses.

    `smooth_model` places one before every Dense or Conv layer whose input is
    not raw data, carrying that layer's input penalty (for example
    `DenseInputPenalty`), and uses one in place of Dropout. The penalty is
    the layer's `activity_regularizer`, so Keras divides it by the batch size
    and collects it in `model.losses` like any activity regularizer.

    Args:
        activity_regularizer: The penalty, a `keras.regularizers.Regularizer`
            (or its config).
        **kwargs: Base layer keyword arguments, such as `name`.

    Example:

    ```python
    penalty = keras_gsmooth.regularizers.DenseInputPenalty(units=8, regularization=1e-3, sigma=0.1)
    layer = keras_gsmooth.layers.InputPenalty(activity_regularizer=penalty)
    ```
    """

    def __init__(self, activity_regularizer=None, **kwargs):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.supports_masking = True
        self.built = True

    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return super().get_config()


def tiled_average_pool(inputs, pool_size: tuple, data_format: str):
    """Average pooling with strides equal to `pool_size` and 'valid' padding, as a reshape and a mean.

    The trailing rows that fill no window are dropped, as 'valid' pooling
    drops them. Needs known spatial sizes.

    Args:
        inputs: A tensor `(batch, *spatial, channels)` for `"channels_last"`
            or `(batch, channels, *spatial)` for `"channels_first"`.
        pool_size: The window (and stride) along each spatial axis.
        data_format: `"channels_last"` or `"channels_first"`.

    Returns:
        The pooled tensor, as `keras.ops.average_pool(inputs, pool_size,
        pool_size, "valid", data_format)` computes it.
    """
    first_spatial, spatial, channels = _spatial_layout(inputs.shape, len(pool_size), data_format)
    windows = [size // pool for size, pool in zip(spatial, pool_size)]
    crop = [slice(None)] * len(inputs.shape)
    split = [ops.shape(inputs)[0]] + ([channels] if data_format == "channels_first" else [])
    for axis, (count, pool) in enumerate(zip(windows, pool_size), start=first_spatial):
        crop[axis] = slice(0, count * pool)
        split += [count, pool]
    if data_format == "channels_last":
        split.append(channels)
    window_axes = tuple(first_spatial + 2 * k + 1 for k in range(len(pool_size)))
    return ops.mean(ops.reshape(inputs[tuple(crop)], split), axis=window_axes)


def _spatial_layout(shape, spatial_rank: int, data_format: str) -> tuple:
    """`(first spatial axis, spatial sizes, channels)` of a pooling input's shape."""
    first_spatial = 1 if data_format == "channels_last" else 2
    channels = shape[-1] if data_format == "channels_last" else shape[1]
    return first_spatial, tuple(shape[first_spatial : first_spatial + spatial_rank]), channels


class _FasterAveragePooling:
    """Keras's average pooling, computed the faster way on each backend.

    Where the windows tile the input (strides equal to the pool size,
    'valid' padding, or 'same' padding on sizes the pool divides) and the
    backend fuses a reduction better than its pooling operation
    (`keras_gsmooth.backend.pools_by_reduction`: JAX), `call` computes
    `tiled_average_pool`. With 'valid' padding on PyTorch it pools the
    channels-last input in place (`keras_gsmooth.backend.native_average_pool`)
    instead of Keras's contiguous copy. Elsewhere it is Keras's layer. The
    result is the same up to float rounding, and the configuration is Keras's.
    """

    def call(self, inputs):
        if backend.pools_by_reduction() and self._windows_tile(inputs.shape):
            return tiled_average_pool(inputs, self.pool_size, self.data_format)
        if self.padding == "valid":
            pooled = backend.native_average_pool(inputs, self.pool_size, self.strides, self.data_format)
            if pooled is not None:
                return pooled
        return super().call(inputs)

    def _windows_tile(self, shape) -> bool:
        if tuple(self.strides) != tuple(self.pool_size):
            return False
        _, spatial, channels = _spatial_layout(shape, len(self.pool_size), self.data_format)
        if channels is None or any(size is None for size in spatial):
            return False
        return self.padding == "valid" or all(size % pool == 0 for size, pool in zip(spatial, self.pool_size))


@keras.saving.register_keras_serializable(package="keras_gsmooth")
class AveragePooling1D(_FasterAveragePooling, keras.layers.AveragePooling1D):
    """`keras.layers.AveragePooling1D`, computed as a reduction on JAX where the windows tile the input.

    `smooth_model` uses it in place of `AveragePooling1D` and of
    `MaxPooling1D` (with `replace_max_pooling=True`). On JAX the smoothed
    activation before it then runs as one loop, and the pooling's gradient
    fuses into the activation's backward loop; on PyTorch it pools without
    Keras's copy of the input. Arguments and outputs are Keras's.
    """


@keras.saving.register_keras_serializable(package="keras_gsmooth")
class AveragePooling2D(_FasterAveragePooling, keras.layers.AveragePooling2D):
    """`keras.layers.AveragePooling2D`, computed as a reduction on JAX where the windows tile the input.

    `smooth_model` uses it in place of `AveragePooling2D` and of
    `MaxPooling2D` (with `replace_max_pooling=True`). On JAX the smoothed
    activation before it then runs as one loop, and the pooling's gradient
    fuses into the activation's backward loop (on the smoothed paper CNN, a
    train step 40 % shorter); on PyTorch it pools without Keras's copy of
    the input. Arguments and outputs are Keras's.

    Example:

    ```python
    pooled = keras_gsmooth.layers.AveragePooling2D(2)(keras.ops.ones((1, 4, 4, 3)))
    ```
    """


@keras.saving.register_keras_serializable(package="keras_gsmooth")
class AveragePooling3D(_FasterAveragePooling, keras.layers.AveragePooling3D):
    """`keras.layers.AveragePooling3D`, computed as a reduction on JAX where the windows tile the input.

    `smooth_model` uses it in place of `AveragePooling3D` and of
    `MaxPooling3D` (with `replace_max_pooling=True`), computed as
    `AveragePooling2D` is. Arguments and outputs are Keras's.
    """
