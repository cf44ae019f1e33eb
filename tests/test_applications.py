"""A network of `keras.applications` converts on every backend.

MobileNetV2 has depthwise convolutions, ReLU6, frozen batch normalisation,
residual `Add`s and zero padding, and Keras names it with a '.'
("mobilenetv2_0.35_32"). Its smaller width keeps the test fast.
"""

import keras
import numpy as np

import keras_gsmooth


def _frozen_mobilenet():
    model = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    return model


def test_mobilenet_v2_converts_and_equals_the_original_at_sigma_zero():
    model = _frozen_mobilenet()
    images = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype("float32")

    smoothed = keras_gsmooth.smooth_model(model, sigma=0.0, regularization=1e-3)
    assert smoothed.name == "mobilenetv2_0_35_32_smoothed"
    # Every ReLU6 smoothed; an input penalty on every convolution and on the
    # classifier, except the first convolution, which sees the images.
    smoothed_relus = [layer for layer in smoothed.layers if isinstance(layer, keras_gsmooth.layers.SmoothActivation)]
    assert len(smoothed_relus) == sum(isinstance(layer, keras.layers.ReLU) for layer in model.layers) == 35
    penalized = {layer.name.removesuffix("_input_penalty") for layer in smoothed.layers if isinstance(layer, keras_gsmooth.layers.InputPenalty)}
    convolutions = {layer.name for layer in model.layers if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense))}
    assert penalized == convolutions - {"Conv1"}
    np.testing.assert_allclose(smoothed.predict(images, verbose=0), model.predict(images, verbose=0), rtol=1e-4, atol=1e-6)

    keras_gsmooth.set_sigma(smoothed, 0.1)  # read by the compiled predict function, not traced into it
    smoothed_outputs = smoothed.predict(images, verbose=0)
    assert np.isfinite(smoothed_outputs).all()
    assert not np.allclose(smoothed_outputs, model.predict(images, verbose=0), atol=1e-6)
