"""`SmoothActivation(pool_size=..., output_penalty=...)`, a smoothed activation, its average
pooling and a penalty of the pooled output in one layer, and `smooth_model`'s fusion of a
smoothed relu with the pooling that alone reads it and the input penalty of the Dense layer after."""

import os

import keras
import numpy as np
import pytest
from keras import ops

import keras_gsmooth
from keras_gsmooth import backend
from keras_gsmooth import layers
from keras_gsmooth import regularizers
from keras_gsmooth.layers import InputPenalty
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

    def evaluate(x, sigma):
        return backend.value_and_grad(loss, [x, sigma], has_aux=True)

    if keras.backend.backend() == "jax":
        import jax

        evaluate = jax.jit(evaluate)  # one compilation per case, not one per operation
    (_, (outputs, penalty)), gradients = evaluate(ops.convert_to_tensor(x), ops.convert_to_tensor(sigma, "float32"))
    return [ops.convert_to_numpy(value) for value in (outputs, penalty, *gradients)]


@pytest.mark.parametrize("shape, pool_size, activation", CASES)
@pytest.mark.parametrize("with_output_penalty", [False, True])
def test_one_layer_equals_the_activation_then_the_pooling(shape, pool_size, activation, with_output_penalty):
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 0.5, shape).astype("float32")
    output_penalty = regularizers.DenseInputPenalty(5, 0.3, sigma=0.6) if with_output_penalty else None
    fused = SmoothActivation(activation, sigma=0.3, regularization=0.7, pool_size=pool_size, output_penalty=output_penalty)
    smooth, pooling = _pooled_separately(activation, 0.3, 0.7, pool_size)
    # Without an output penalty, an identity layer that adds nothing.
    penalty_layer = InputPenalty(activity_regularizer=output_penalty)
    output_shape = fused.compute_output_shape(shape)
    assert output_shape == pooling.compute_output_shape(shape)
    weights = ops.convert_to_tensor(rng.normal(size=output_shape).astype("float32"))

    def fused_call(x, sigma):
        fused._sigma_constant = sigma  # σ as a differentiated input
        return fused(x)

    def separate_call(x, sigma):
        smooth._sigma_constant = sigma
        return penalty_layer(pooling(smooth(x)))

    got = _values_and_gradients(fused_call, lambda: sum(fused.losses), x, 0.3, weights)
    expected = _values_and_gradients(separate_call, lambda: sum(smooth.losses + penalty_layer.losses), x, 0.3, weights)
    assert len(fused.losses) == len(smooth.losses + penalty_layer.losses) == 1 + with_output_penalty
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
    penalty = regularizers.DenseInputPenalty(4, 1e-1, sigma=0.2)
    outputs = SmoothActivation(
        "relu", sigma=0.2, regularization=1e-2, pool_size=(2, 3), output_penalty=penalty, name="relu_pool"
    )(hidden)
    model = keras.Model(inputs, outputs)
    config = model.get_layer("relu_pool").get_config()
    assert tuple(config["pool_size"]) == (2, 3)
    assert config["output_penalty"]["config"] == penalty.get_config()
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    layer = loaded.get_layer("relu_pool")
    assert layer.pool_size == (2, 3) and layer.output_penalty.get_config() == penalty.get_config()
    x = np.random.default_rng(1).normal(size=(2, 8, 8, 2)).astype("float32")
    np.testing.assert_allclose(ops.convert_to_numpy(loaded(x)), ops.convert_to_numpy(model(x)), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose([float(v) for v in loaded.losses], [float(v) for v in model.losses], rtol=1e-6)
    assert len(model.losses) == 2


@pytest.mark.parametrize("output_penalty", ["l2", keras.regularizers.L2(0.1), regularizers.DenseKernelPenalty(0.1)])
def test_an_output_penalty_that_is_no_dense_input_penalty_is_refused(output_penalty):
    with pytest.raises(ValueError, match="SmoothActivation 'act': `output_penalty` must be a .*DenseInputPenalty"):
        SmoothActivation("relu", pool_size=2, output_penalty=output_penalty, name="act")


def test_an_output_penalty_without_pooling_is_the_penalty_of_the_output():
    penalty = regularizers.DenseInputPenalty(3, 0.5, sigma=0.2)
    layer = SmoothActivation("relu", sigma=0.2, output_penalty=penalty)
    x = np.random.default_rng(9).normal(size=(4, 6)).astype("float32")
    outputs = ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(float(layer.losses[0]), 0.5 * (0.2**2 * 3 / 2) * np.sum(outputs**2) / 4, rtol=1e-5)


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
    # The hidden layer's input penalty moved into the fused layer.
    assert "hidden_input_penalty" not in [layer.name for layer in smoothed.layers]
    assert fused.output_penalty.get_config() == regularizers.DenseInputPenalty(128, 1e-2).get_config()
    x = np.random.default_rng(2).uniform(0, 1, (3, 12, 12, 1)).astype("float32")
    smooth, pooling = _pooled_separately("relu", 0.3, 1e-2, (2, 2))
    hidden_input_penalty = InputPenalty(activity_regularizer=regularizers.DenseInputPenalty(128, 1e-2, sigma=0.3))
    hidden = hidden_input_penalty(smoothed.get_layer("flatten")(pooling(smooth(smoothed.get_layer("conv")(x)))))
    for name in ("hidden", "hidden_relu", "logits"):
        hidden = smoothed.get_layer(name)(hidden)
    np.testing.assert_allclose(ops.convert_to_numpy(smoothed(x)), ops.convert_to_numpy(hidden), rtol=1e-5, atol=1e-6)
    expected = [float(smooth.losses[0]), float(hidden_input_penalty.losses[0])]
    np.testing.assert_allclose([float(value) for value in fused.losses], expected, rtol=1e-5)


def _pooled_relu(hidden):
    return keras.layers.AveragePooling2D(2, name="pool")(keras.layers.Activation("relu", name="relu")(hidden))


MOVED = {
    "through Flatten": lambda h: keras.layers.Dense(3, name="dense")(keras.layers.Flatten()(_pooled_relu(h))),
    "through Reshape and Flatten": lambda h: keras.layers.Dense(3, name="dense")(
        keras.layers.Flatten()(keras.layers.Reshape((6, 6))(_pooled_relu(h)))
    ),
    "directly, on every position": lambda h: keras.layers.Dense(3, name="dense")(_pooled_relu(h)),
}

KEPT = {
    "a Conv2D after": lambda h: keras.layers.Conv2D(3, 2, name="dense")(_pooled_relu(h)),
    "the flattened tensor read twice": lambda h: (
        lambda f: [keras.layers.Dense(3, name="dense")(f), keras.layers.Dense(2, name="other")(f)]
    )(keras.layers.Flatten()(_pooled_relu(h))),
    "the flattened tensor also an output": lambda h: (lambda f: [keras.layers.Dense(3, name="dense")(f), f])(
        keras.layers.Flatten()(_pooled_relu(h))
    ),
    "a shared Dense layer": lambda h: (
        lambda dense, pooled: [dense(keras.layers.Flatten()(pooled)), dense(keras.layers.Flatten()(pooled * 2.0))]
    )(keras.layers.Dense(3, name="dense"), keras.layers.Dropout(0.0)(_pooled_relu(h))),
}


@pytest.mark.parametrize("case", sorted(MOVED) + sorted(KEPT))
def test_which_dense_input_penalty_moves_into_the_fused_layer(case):
    model = _model_of(MOVED.get(case) or KEPT[case])
    smoothed = keras_gsmooth.smooth_model(model, sigma=0.3, regularization=0.1)
    names = [layer.name for layer in smoothed.layers]
    fused = smoothed.get_layer("relu_pool") if "relu_pool" in names else None
    if case in MOVED:
        assert "dense_input_penalty" not in names and isinstance(fused.output_penalty, regularizers.DenseInputPenalty)
    elif case != "a shared Dense layer":  # there the Dropout reads the activation's pooled output
        assert "dense_input_penalty" in names and fused.output_penalty is None
    # Moved or not, the same outputs and the same total penalty as the layers apart.
    x = np.random.default_rng(7).normal(size=(2, 8, 8, 2)).astype("float32")
    # The pooled output also an output of the model: the penalty stays in its own layer.
    with_pooled_output = keras.Model(model.inputs, [*keras.tree.flatten(model.outputs), model.get_layer("pool").output])
    apart = keras_gsmooth.smooth_model(with_pooled_output, sigma=0.3, regularization=0.1)
    assert "dense_input_penalty" in [layer.name for layer in apart.layers]
    outputs, outputs_apart = keras.tree.flatten(smoothed(x)), keras.tree.flatten(apart(x))
    for got, expected in zip(outputs, outputs_apart):
        np.testing.assert_allclose(ops.convert_to_numpy(got), ops.convert_to_numpy(expected), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(sum(smoothed.losses)), float(sum(apart.losses)), rtol=1e-5)


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
