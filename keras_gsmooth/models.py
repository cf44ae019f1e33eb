"""Reference architectures from the paper, as plain (unsmoothed) Keras models."""

import keras


def paper_cnn(input_shape: tuple = (28, 28, 1), num_classes: int = 10, name: str = "paper_cnn") -> keras.Model:
    """The CNN of the paper's Table 4, unsmoothed.

    Conv2D(32, 4, stride 1, 'valid') → ReLU → AveragePooling2D(2) → Flatten →
    Dense(128) → ReLU → Dense(num_classes), trained in the paper with MSE on
    one-hot labels. Convert it with `keras_gsmooth.smooth_model`.

    Args:
        input_shape: Shape of one image, channels last.
        num_classes: Number of output units.
        name: The model's name.

    Returns:
        A functional `keras.Model`.

    Example:

    ```python
    model = keras_gsmooth.models.paper_cnn()
    smoothed = keras_gsmooth.smooth_model(model, sigma=0.1, regularization=1e-5)
    ```
    """
    inputs = keras.Input(input_shape, name="image")
    x = keras.layers.Conv2D(32, 4, strides=1, padding="valid", name="conv")(inputs)
    x = keras.layers.Activation("relu", name="conv_relu")(x)
    x = keras.layers.AveragePooling2D(2, name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(128, name="hidden")(x)
    x = keras.layers.Activation("relu", name="hidden_relu")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)
