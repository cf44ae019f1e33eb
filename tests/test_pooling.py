"""`keras_gsmooth.layers.AveragePooling*D`: Keras's pooling, as a reduction on JAX where windows tile the input."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_gsmooth
from keras_gsmooth import backend
from keras_gsmooth import layers

TILED_CASES = [
    ((2, 7, 3), (2,), "channels_last"),
    ((2, 3, 9, 7), (3, 2), "channels_first"),
    ((2, 25, 25, 4), (2, 2), "channels_last"),
    ((1, 4, 6, 5, 2), (2, 3, 1), "channels_last"),
]


@pytest.mark.parametrize("shape, pool_size, data_format", TILED_CASES)
def test_tiled_average_pool_equals_keras_average_pool(shape, pool_size, data_format):
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    tiled = layers.tiled_average_pool(ops.convert_to_tensor(x), pool_size, data_format)
    theirs = ops.average_pool(x, pool_size, pool_size, "valid", data_format)
    assert tuple(tiled.shape) == tuple(theirs.shape)
    np.testing.assert_allclose(ops.convert_to_numpy(tiled), ops.convert_to_numpy(theirs), atol=1e-6)


LAYER_CASES = [
    (layers.AveragePooling1D, keras.layers.AveragePooling1D, dict(pool_size=2), (3, 9, 2)),
    (layers.AveragePooling2D, keras.layers.AveragePooling2D, dict(pool_size=2), (3, 25, 25, 4)),
    (layers.AveragePooling2D, keras.layers.AveragePooling2D, dict(pool_size=2, padding="same"), (3, 8, 6, 2)),
    (layers.AveragePooling2D, keras.layers.AveragePooling2D, dict(pool_size=2, padding="same"), (3, 7, 6, 2)),
    (layers.AveragePooling2D, keras.layers.AveragePooling2D, dict(pool_size=3, strides=2), (3, 9, 9, 2)),
    (layers.AveragePooling2D, keras.layers.AveragePooling2D, dict(pool_size=(2, 3), data_format="channels_first"), (3, 2, 8, 9)),
    (layers.AveragePooling3D, keras.layers.AveragePooling3D, dict(pool_size=2), (2, 5, 4, 6, 3)),
]


@pytest.mark.parametrize("ours, keras_class, kwargs, shape", LAYER_CASES)
def test_outputs_and_gradients_equal_keras_layer(ours, keras_class, kwargs, shape):
    rng = np.random.default_rng(1)
    x = ops.convert_to_tensor(rng.normal(size=shape).astype("float32"))
    layer, reference = ours(**kwargs), keras_class(**kwargs)
    np.testing.assert_allclose(ops.convert_to_numpy(layer(x)), ops.convert_to_numpy(reference(x)), atol=1e-6)
    weights = ops.convert_to_tensor(rng.normal(size=tuple(reference(x).shape)).astype("float32"))
    gradient = lambda pool: backend.value_and_grad(lambda v: ops.sum(pool(v[0]) * weights), [x])[1][0]  # noqa: E731
    np.testing.assert_allclose(ops.convert_to_numpy(gradient(layer)), ops.convert_to_numpy(gradient(reference)), atol=1e-6)


@pytest.mark.requires_backend("jax")
@pytest.mark.parametrize("kwargs, tiled", [(dict(pool_size=2), True), (dict(pool_size=3, strides=2), False), (dict(pool_size=2, padding="same"), False)])
def test_on_jax_tiling_windows_are_a_reduction_not_a_reduce_window(kwargs, tiled):
    import jax

    layer = layers.AveragePooling2D(**kwargs)
    program = str(jax.make_jaxpr(lambda x: layer(x))(np.ones((2, 7, 7, 3), "float32")))
    assert ("reduce_window" not in program) == tiled


def test_the_converter_uses_these_layers_and_keeps_the_input_model():
    # After a tanh: a smoothed relu before the pooling would be fused with it (tests/test_fused_pooling.py).
    inputs = keras.Input((9, 9, 1))
    hidden = keras.layers.Conv2D(4, 2, activation="tanh", name="conv")(inputs)
    model = keras.Model(inputs, keras.layers.AveragePooling2D(2, name="pool")(hidden))
    smoothed = keras_gsmooth.smooth_model(model, sigma=0.1)
    assert type(smoothed.get_layer("pool")) is layers.AveragePooling2D
    assert type(model.get_layer("pool")) is keras.layers.AveragePooling2D
    assert smoothed.get_layer("pool").get_config() == model.get_layer("pool").get_config()


def test_config_round_trip_and_safe_mode_load(tmp_path):
    inputs = keras.Input((6, 6, 2))
    model = keras.Model(inputs, layers.AveragePooling2D(3, name="pool")(inputs))
    path = str(tmp_path / "pool.keras")
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    assert type(restored.get_layer("pool")) is layers.AveragePooling2D
    x = np.random.default_rng(2).normal(size=(2, 6, 6, 2)).astype("float32")
    np.testing.assert_array_equal(ops.convert_to_numpy(restored(x)), ops.convert_to_numpy(model(x)))


@pytest.mark.requires_backend("torch")
def test_on_torch_valid_pooling_keeps_the_channels_last_layout():
    x = ops.convert_to_tensor(np.random.default_rng(3).normal(size=(2, 9, 9, 4)).astype("float32"))
    assert layers.AveragePooling2D(3, strides=2)(x).is_contiguous()  # no round trip through a channels-first copy
    assert not keras.layers.AveragePooling2D(3, strides=2)(x).is_contiguous()
    assert backend.native_average_pool(x, (3, 3), (2, 2), "channels_last") is not None


@pytest.mark.requires_backend("jax", "tensorflow")
def test_elsewhere_there_is_no_native_pooling():
    x = ops.ones((2, 9, 9, 4))
    assert backend.native_average_pool(x, (3, 3), (2, 2), "channels_last") is None
