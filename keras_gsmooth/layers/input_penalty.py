"""`InputPenalty`: the identity layer that carries a layer's input penalty."""

import keras


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
