"""Separable convolutions computed as their two halves, with the penalty on the depthwise output."""

import keras
from keras import ops

from keras_gsmooth.layers.penalized import PenalizedLayer


class _SmoothSeparableConv(PenalizedLayer):
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
        self.intermediate_regularization = self._init_penalty(
            sigma, intermediate_regularization, argument="intermediate_regularization"
        )

    def call(self, inputs):
        intermediate = ops.depthwise_conv(
            inputs, self.depthwise_kernel, self.strides, self.padding, self.data_format, self.dilation_rate
        )
        if self.intermediate_regularization > 0.0:
            half_sigma2 = 0.5 * ops.square(self.current_sigma("float32"))
            squares = ops.sum(ops.square(ops.cast(intermediate, "float32")))
            self._add_per_sample_penalty(self.intermediate_regularization * self.filters * half_sigma2, squares, inputs)
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
