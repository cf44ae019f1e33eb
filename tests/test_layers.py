"""`SmoothActivation`: Keras layer checks (config, symbolic/eager, fit, .keras
save/load), its variance penalty, σ binding and bad arguments."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_gsmooth
from keras_gsmooth import activations
from keras_gsmooth.layers import SmoothActivation


def _numpy(t):
    return np.asarray(ops.convert_to_numpy(t), dtype="float64")


def _model(activation="relu", sigma=0.3, regularization=1e-2):
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(8, name="dense")(inputs)
    hidden = SmoothActivation(activation, sigma=sigma, regularization=regularization, name="smooth")(hidden)
    return keras.Model(inputs, keras.layers.Dense(1, name="out")(hidden))


def test_config_round_trip():
    layer = SmoothActivation("leaky_relu", sigma=0.25, regularization=1e-3, name="act")
    config = layer.get_config()
    assert config["sigma"] == 0.25 and config["regularization"] == 1e-3
    restored = SmoothActivation.from_config(config)
    assert restored.activation == activations.ReLU(negative_slope=0.2)
    assert restored.get_config() == config
    assert restored.name == "act"


def test_symbolic_and_eager_calls_agree(rng):
    layer = SmoothActivation("gelu", sigma=0.5)
    symbolic = layer(keras.Input((3, 4)))
    assert tuple(symbolic.shape) == (None, 3, 4)
    assert layer.compute_output_shape((2, 3, 4)) == (2, 3, 4)
    x = rng.standard_normal((2, 3, 4)).astype("float32")
    np.testing.assert_allclose(_numpy(layer(x)), _numpy(activations.GELU().mean(x, 0.5)), rtol=1e-6)
    assert layer.losses == []


def test_penalty_is_lambda_times_batch_mean_of_summed_variance(rng):
    lam, sigma = 0.1, 0.4
    layer = SmoothActivation("relu", sigma=sigma, regularization=lam)
    x = rng.standard_normal((5, 7)).astype("float32")
    y = layer(x)
    variance = _numpy(activations.get("relu").variance(x, sigma))
    (loss,) = layer.losses
    assert float(_numpy(loss)) == pytest.approx(lam * variance.sum(axis=1).mean(), rel=1e-5)
    np.testing.assert_allclose(_numpy(y), _numpy(activations.get("relu").mean(x, sigma)), rtol=1e-6)
    # Repeating the batch does not change the penalty.
    layer(np.concatenate([x, x]))
    assert float(_numpy(layer.losses[0])) == pytest.approx(float(_numpy(loss)), rel=1e-5)


def test_one_fit_step_adds_the_penalty_and_updates_weights(rng):
    model = _model()
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    x = rng.standard_normal((16, 6)).astype("float32")
    y = rng.standard_normal((16, 1)).astype("float32")
    before = [_numpy(w) for w in model.trainable_weights]
    data_loss = float(np.mean((_numpy(model(x)) - y) ** 2))
    (penalty,) = model.losses
    history = model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    # The one step's loss is the data loss plus the penalty, both before the update.
    assert float(_numpy(penalty)) > 0.0
    assert history.history["loss"][0] == pytest.approx(data_loss + float(_numpy(penalty)), rel=1e-4)
    assert any(np.any(b != _numpy(w)) for b, w in zip(before, model.trainable_weights))


def test_keras_save_and_load_in_safe_mode(tmp_path, rng):
    model = _model(activation="hard_sigmoid", sigma=0.2)
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    x = rng.standard_normal((4, 6)).astype("float32")
    np.testing.assert_array_equal(_numpy(restored(x)), _numpy(model(x)))
    layer = restored.get_layer("smooth")
    assert isinstance(layer, SmoothActivation) and layer.activation == activations.get("hard_sigmoid")


def test_bound_to_a_smoothed_model_it_reads_the_model_sigma(rng):
    inputs = keras.Input((4,))
    outputs = SmoothActivation("relu", name="smooth")(inputs)
    model = keras_gsmooth.SmoothedModel(inputs, outputs, sigma=0.5)
    x = rng.standard_normal((3, 4)).astype("float32")
    relu = activations.get("relu")
    np.testing.assert_allclose(_numpy(model(x)), _numpy(relu.mean(x, 0.5)), rtol=1e-6)
    keras_gsmooth.set_sigma(model, 0.0)
    np.testing.assert_array_equal(_numpy(model(x)), np.maximum(x, 0.0))


def test_half_precision_policy(rng):
    layer = SmoothActivation("relu", sigma=0.3, regularization=1e-3, dtype="mixed_float16")
    y = layer(rng.standard_normal((2, 5)).astype("float32"))
    assert keras.backend.standardize_dtype(y.dtype) == "float16"
    assert np.all(np.isfinite(_numpy(y))) and np.isfinite(float(_numpy(layer.losses[0])))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"activation": "relu", "sigma": -1.0}, "sigma"),
        ({"activation": "relu", "sigma": float("nan")}, "sigma"),
        ({"activation": "relu", "sigma": float("inf")}, "sigma"),
        ({"activation": "relu", "regularization": -1e-3}, "regularization"),
        ({"activation": "relu7"}, "unknown activation"),
        ({"activation": "softmax"}, "not elementwise"),
    ],
)
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SmoothActivation(**kwargs)
