"""`SmoothActivation(pool_size=...)`, a smoothed activation and its average pooling in one layer,
and `smooth_model`'s fusion of a smoothed relu with the pooling that alone reads it."""

import os

import keras
import numpy as np
import pytest
from keras import ops

import keras_gsmooth
from keras_gsmooth import backend
from keras_gsmooth import layers
from keras_gsmooth.layers import SmoothActivation

CASES = [
    # (input shape, pool_size, activation)
    ((3, 25, 25, 4), (2, 2), "relu"),
    ((2, 7, 9, 3), (3, 2), "leaky_relu"),
    ((2, 11, 5), (2,), "relu"),
    ((2, 5, 4, 6, 3), (2, 2, 3), "relu"),
    ((2, 6, 6, 3), (2, 2), "gelu"),
]


def _pooled_separately(activation, sigma, regularization, pool_size):
    """The same function as two layers: the smoothed activation, then the average pooling."""
    pooling = {1: layers.AveragePooling1D, 2: layers.AveragePooling2D, 3: layers.AveragePooling3D}[len(pool_size)]
    smooth = SmoothActivation(activation, sigma=sigma, regularization=regularization)
    return smooth, pooling(pool_size)


def _values_and_gradients(call, losses, x, sigma, weights):
    """The output, the penalty, and the gradients in x and σ of `Σ weights·output + 3·penalty`."""

    def loss(v):
        outputs = call(v[0], v[1])
        penalty = losses()
        return ops.sum(weights * outputs) + 3.0 * penalty, (outputs, penalty)

    (_, (outputs, penalty)), gradients = backend.value_and_grad(
        loss, [ops.convert_to_tensor(x), ops.convert_to_tensor(sigma, "float32")], has_aux=True
    )
    return [ops.convert_to_numpy(value) for value in (outputs, penalty, *gradients)]


@pytest.mark.parametrize("shape, pool_size, activation", CASES)
def test_one_layer_equals_the_activation_then_the_pooling(shape, pool_size, activation):
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 0.5, shape).astype("float32")
    fused = SmoothActivation(activation, sigma=0.3, regularization=0.7, pool_size=pool_size)
    smooth, pooling = _pooled_separately(activation, 0.3, 0.7, pool_size)
    output_shape = fused.compute_output_shape(shape)
    assert output_shape == pooling.compute_output_shape(shape)
    weights = ops.convert_to_tensor(rng.normal(size=output_shape).astype("float32"))

    def fused_call(x, sigma):
        fused._sigma_constant = sigma  # σ as a differentiated input
        return fused(x)

    def separate_call(x, sigma):
        smooth._sigma_constant = sigma
        return pooling(smooth(x))

    got = _values_and_gradients(fused_call, lambda: fused.losses[-1], x, 0.3, weights)
    expected = _values_and_gradients(separate_call, lambda: smooth.losses[-1], x, 0.3, weights)
    assert got[0].shape == output_shape
    for name, value, reference in zip(["output", "penalty", "gradient in x", "gradient in σ"], got, expected):
        np.testing.assert_allclose(value, reference, rtol=1e-5, atol=1e-6, err_msg=name)


def test_one_int_is_the_window_along_every_spatial_axis():
    layer = SmoothActivation("relu", sigma=0.1, pool_size=2)
    assert layer.compute_output_shape((None, 6, 9, 4)) == (None, 3, 4, 4)
    assert tuple(layer(np.ones((1, 6, 9, 4), "float32")).shape) == (1, 3, 4, 4)
    assert tuple(layer(np.ones((1, 7, 4), "float32")).shape) == (1, 3, 4)


def test_config_round_trip_and_safe_mode_load(tmp_path):
    inputs = keras.Input((8, 8, 2))
    hidden = keras.layers.Conv2D(3, 3, name="conv")(inputs)
    outputs = SmoothActivation("relu", sigma=0.2, regularization=1e-2, pool_size=(2, 3), name="relu_pool")(hidden)
    model = keras.Model(inputs, outputs)
    config = model.get_layer("relu_pool").get_config()
    assert tuple(config["pool_size"]) == (2, 3)
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert loaded.get_layer("relu_pool").pool_size == (2, 3)
    x = np.random.default_rng(1).normal(size=(2, 8, 8, 2)).astype("float32")
    np.testing.assert_allclose(ops.convert_to_numpy(loaded(x)), ops.convert_to_numpy(model(x)), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("pool_size", [0, (2, 0), (), (1, 2, 3, 4), "2", (2.0, 2), (True, 2)])
def test_a_bad_pool_size_is_refused(pool_size):
    with pytest.raises(ValueError, match="SmoothActivation 'act': `pool_size` must be None, a positive int"):
        SmoothActivation("relu", pool_size=pool_size, name="act")


def test_a_pool_size_for_other_inputs_is_refused():
    layer = SmoothActivation("relu", pool_size=(2, 2), name="act")
    with pytest.raises(ValueError, match="SmoothActivation 'act': `pool_size=\\(2, 2\\)` needs inputs .* rank 3"):
        layer(np.ones((1, 6, 3), "float32"))
    with pytest.raises(ValueError, match="SmoothActivation 'act': the input's spatial sizes \\(1, 6\\) are smaller"):
        layer(np.ones((1, 1, 6, 3), "float32"))


def _paper_cnn():
    model = keras_gsmooth.models.paper_cnn(input_shape=(12, 12, 1), num_classes=10)
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.3, w.shape).astype("float32") for w in model.get_weights()])
    return model


def test_the_paper_cnn_relu_and_pooling_become_one_layer_computing_the_same():
    model = _paper_cnn()
    smoothed = keras_gsmooth.smooth_model(model, sigma=0.3, regularization=1e-2)
    fused = smoothed.get_layer("conv_relu_pool")
    assert isinstance(fused, SmoothActivation) and fused.pool_size == (2, 2) and fused.regularization == 1e-2
    assert "conv_relu" not in [layer.name for layer in smoothed.layers]
    # The same function as the smoothed activation, then the pooling, then the rest.
    x = np.random.default_rng(2).uniform(0, 1, (3, 12, 12, 1)).astype("float32")
    smooth, pooling = _pooled_separately("relu", 0.3, 1e-2, (2, 2))
    hidden = pooling(smooth(smoothed.get_layer("conv")(x)))
    for name in ("flatten", "hidden_input_penalty", "hidden", "hidden_relu", "logits_input_penalty", "logits"):
        hidden = smoothed.get_layer(name)(hidden)
    np.testing.assert_allclose(ops.convert_to_numpy(smoothed(x)), ops.convert_to_numpy(hidden), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(fused.losses[0]), float(smooth.losses[0]), rtol=1e-5)


def _model_of(build):
    inputs = keras.Input((8, 8, 2))
    hidden = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    return keras.Model(inputs, build(hidden))


def _relu(hidden):
    return keras.layers.Activation("relu", name="relu")(hidden)


NOT_FUSED = {
    "relu also an output": lambda h: (lambda r: [keras.layers.AveragePooling2D(2, name="pool")(r), r])(_relu(h)),
    "relu read by two layers": lambda h: (
        lambda r: [keras.layers.AveragePooling2D(2, name="pool")(r), keras.layers.Flatten()(r)]
    )(_relu(h)),
    "overlapping windows": lambda h: keras.layers.AveragePooling2D(2, strides=1, name="pool")(_relu(h)),
    "'same' padding": lambda h: keras.layers.AveragePooling2D(2, padding="same", name="pool")(_relu(h)),
    "channels first": lambda h: keras.layers.AveragePooling2D(2, data_format="channels_first", name="pool")(_relu(h)),
    "no native kernel": lambda h: keras.layers.AveragePooling2D(2, name="pool")(keras.layers.Activation("gelu", name="relu")(h)),
}


@pytest.mark.parametrize("case", sorted(NOT_FUSED))
def test_what_is_not_fused(case):
    model = _model_of(NOT_FUSED[case])
    smoothed = keras_gsmooth.smooth_model(model, sigma=0.1)
    names = [layer.name for layer in smoothed.layers]
    assert "relu" in names and "pool" in names and not any(name.endswith("_pool") for name in names), names
    x = np.random.default_rng(3).normal(size=(2, 8, 8, 2)).astype("float32")
    zero = keras_gsmooth.smooth_model(model, sigma=0.0)
    for got, expected in zip(keras.tree.flatten(zero(x)), keras.tree.flatten(model(x))):
        np.testing.assert_allclose(ops.convert_to_numpy(got), ops.convert_to_numpy(expected), rtol=1e-5, atol=1e-6)


def test_a_shared_activation_is_not_fused():
    inputs = keras.Input((8, 8, 2))
    relu = keras.layers.Activation("relu", name="relu")
    pooled = keras.layers.AveragePooling2D(2, name="pool")(relu(keras.layers.Conv2D(2, 3, name="conv")(inputs)))
    outputs = relu(keras.layers.Conv2D(2, 1, name="mix")(pooled))
    smoothed = keras_gsmooth.smooth_model(keras.Model(inputs, outputs), sigma=0.1)
    assert [layer.name for layer in smoothed.layers[1:]] == ["conv", "relu", "pool", "mix"]


def test_fused_activation_in_a_nested_model_and_a_one_dimensional_pooling():
    inputs = keras.Input((12, 3))
    hidden = keras.layers.Conv1D(4, 3, activation="leaky_relu", name="conv")(inputs)
    inner = keras.Model(inputs, keras.layers.AveragePooling1D(2, name="pool")(hidden), name="inner")
    outer_inputs = keras.Input((12, 3))
    outputs = keras.layers.Dense(2, name="out")(keras.layers.Flatten()(inner(outer_inputs)))
    model = keras.Model(outer_inputs, outputs)
    smoothed = keras_gsmooth.smooth_model(model, sigma=0.2, regularization=1e-2)
    fused = smoothed.get_layer("inner").get_layer("conv_activation_pool")  # the activation split off "conv"
    assert fused.pool_size == (2,)
    x = np.random.default_rng(4).normal(size=(2, 12, 3)).astype("float32")
    zero = keras_gsmooth.smooth_model(model, sigma=0.0)
    np.testing.assert_allclose(ops.convert_to_numpy(zero(x)), ops.convert_to_numpy(model(x)), rtol=1e-5, atol=1e-6)
