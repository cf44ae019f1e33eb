"""`SmoothDense`: a Dense layer that adds its kernel penalty as it applies its kernel."""

import keras
from keras import ops

from keras_gsmooth import backend
from keras_gsmooth import regularizers


@keras.saving.register_keras_serializable(package="keras_gsmooth")
class SmoothDense(keras.layers.Dense):
    """`keras.layers.Dense` that adds its kernel penalty `λ·(σ²/2)‖θ‖²` in each call.

    The outputs are `keras.layers.Dense`'s. In each call the layer also adds
    `kernel_penalty`, a `keras_gsmooth.regularizers.DenseKernelPenalty` of
    its kernel, to its losses, as the same penalty given as the
    `kernel_regularizer` of a Dense layer called once adds it to the
    model's losses. It sums the kernel's squares with the product
    (`keras_gsmooth.backend.matmul_and_sum_of_squares`): on PyTorch the
    penalty's gradient is then added into the kernel's gradient as that is
    written, where a kernel regularizer's gradient is a tensor of its own
    that autograd then adds. `smooth_model` smooths a Dense layer called
    once into this layer; a Dense layer called several times keeps the
    penalty as its `kernel_regularizer`, paid once for all its calls.

    The kernel penalty is per sample, like a kernel regularizer: it is not
    divided by the batch size.

    Args:
        units: As `keras.layers.Dense`.
        kernel_penalty: A `keras_gsmooth.regularizers.DenseKernelPenalty`,
            or its config.
        **kwargs: The other arguments of `keras.layers.Dense` (`activation`,
            `use_bias`, `kernel_regularizer`, …). A `kernel_regularizer` is
            added besides the penalty, as Keras adds it.

    Raises:
        ValueError: for a `kernel_penalty` that is not a
            `DenseKernelPenalty`, and for a quantized dtype policy or from
            `quantize()`: a quantized layer applies its kernel outside
            `call`, and would skip the penalty.

    Example:

    ```python
    penalty = keras_gsmooth.regularizers.DenseKernelPenalty(1e-5, sigma=0.1)
    dense = keras_gsmooth.layers.SmoothDense(128, kernel_penalty=penalty)
    ```
    """

    def __init__(self, units, kernel_penalty, **kwargs):
        super().__init__(units, **kwargs)
        penalty = keras.regularizers.get(kernel_penalty)
        if not isinstance(penalty, regularizers.DenseKernelPenalty):
            raise ValueError(
                f"SmoothDense {self.name!r}: `kernel_penalty` must be a "
                "keras_gsmooth.regularizers.DenseKernelPenalty or its config. Received: "
                f"kernel_penalty={kernel_penalty!r}. Give any other penalty of the kernel as the "
                "layer's `kernel_regularizer`."
            )
        if self.quantization_mode is not None:
            raise self._quantized_error()
        self.kernel_penalty = penalty

    def call(self, inputs, training=None):
        outputs, kernel_squares = backend.matmul_and_sum_of_squares(inputs, self.kernel)
        self.add_loss(self.kernel_penalty.of_sum_of_squares(kernel_squares))
        if self.bias is not None:
            outputs = ops.add(outputs, self.bias)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def quantize(self, mode=None, type_check=True, config=None):
        raise self._quantized_error()

    def _quantized_error(self) -> ValueError:
        return ValueError(
            f"SmoothDense {self.name!r}: a quantized layer applies its kernel outside `call`, so its "
            "kernel penalty would be skipped. Quantize the unsmoothed model's layers, or give the "
            "penalty as the `kernel_regularizer` of a keras.layers.Dense."
        )

    def _owned_sigma_consumers(self) -> tuple:
        return (self.kernel_penalty,)

    def get_config(self) -> dict:
        return {**super().get_config(), "kernel_penalty": keras.regularizers.serialize(self.kernel_penalty)}
