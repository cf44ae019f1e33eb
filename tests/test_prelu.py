"""`SmoothPReLU`: σ = 0 against Keras's PReLU, its mean and variance penalty
against Monte-Carlo sampling of the input and the slope, gradients, config
and `.keras` save/load, and its conversion by `smooth_model`."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_gsmooth
from keras_gsmooth.layers import SmoothPReLU


def _numpy(t):
    return np.asarray(ops.convert_to_numpy(t), dtype="float64")


def _outputs_penalty_and_gradients(layer, alpha, x):
    """The layer's outputs, its penalty, and the gradients of Σoutputs + penalty w.r.t. (x, α)."""

    def objective(values):
        outputs, _, losses = layer.stateless_call([values[1]], [], values[0], return_losses=True)
        penalty = sum(losses) if losses else 0.0
        return ops.sum(outputs) + penalty, (outputs, penalty)

    (_, (outputs, penalty)), gradients = keras_gsmooth.backend.value_and_grad(
        objective, [ops.convert_to_tensor(x), ops.convert_to_tensor(alpha)], has_aux=True
    )
    return _numpy(outputs), float(_numpy(penalty)), [_numpy(g) for g in gradients]


def _built(layer, alpha, shape):
    layer.build(shape)
    layer.set_weights([alpha])
    return layer


def test_sigma_zero_is_keras_prelu_with_its_gradients():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 4, 5)).astype("float32")
    x[0, 0, :] = 0.0  # the kink, where the smoothed forms divide by σ
    alpha = rng.normal(0.2, 0.5, size=(1, 5)).astype("float32")
    ours = _built(SmoothPReLU(sigma=0.0, regularization=1.0, shared_axes=[1]), alpha, x.shape)
    theirs = _built(keras.layers.PReLU(shared_axes=[1]), alpha, x.shape)
    outputs, penalty, gradients = _outputs_penalty_and_gradients(ours, alpha, x)
    expected, _, expected_gradients = _outputs_penalty_and_gradients(theirs, alpha, x)
    np.testing.assert_array_equal(outputs, expected)
    assert penalty == 0.0
    assert all(np.all(np.isfinite(gradient)) for gradient in gradients)
    # At the kink the smoothed relu's slope tends to ½ (the mean of its one-sided slopes), Keras's is 0.
    away = x != 0.0
    np.testing.assert_allclose(gradients[0][away], expected_gradients[0][away], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(gradients[1], expected_gradients[1], rtol=1e-6, atol=1e-7)


@pytest.mark.montecarlo
def test_mean_and_variance_penalty_match_monte_carlo_over_input_and_slope():
    # Every unit's input x and slope α are perturbed independently by σ·N(0, 1/2).
    sigma, samples = 0.7, 400_000
    x = np.float32([-2.0, -0.6, -0.1, 0.0, 0.2, 0.5, 1.5, -1.0])
    alpha = np.float32([0.25, -0.5, 1.5, 0.3, 0.1, -1.0, 0.6, 0.0])
    layer = _built(SmoothPReLU(sigma=sigma, regularization=2.0), alpha, (None, 8))
    batch = np.stack([x, x])  # the penalty is a per-sample mean over the batch
    outputs, penalty, gradients = _outputs_penalty_and_gradients(layer, alpha, batch)

    rng = np.random.default_rng(11)
    noise_scale = sigma * np.sqrt(0.5)
    z = x + noise_scale * rng.standard_normal((samples, 8))
    slope = alpha + noise_scale * rng.standard_normal((samples, 8))
    values = np.maximum(z, 0.0) - slope * np.maximum(-z, 0.0)
    mean = values.mean(axis=0)
    mean_error = values.std(axis=0) / np.sqrt(samples)
    np.testing.assert_array_less(np.abs(outputs[0] - mean), 5 * mean_error + 1e-6)
    np.testing.assert_array_equal(outputs[1], outputs[0])
    # Σ_units Var, estimated per sample as Σ_units (value − mean)².
    summed_squares = ((values - mean) ** 2).sum(axis=1)
    variance_error = summed_squares.std() / np.sqrt(samples)
    assert abs(penalty / 2.0 - summed_squares.mean()) < 5 * variance_error
    # The slope's own noise matters: a fixed-slope leaky relu's variance misses it.
    fixed_slope = (np.maximum(z, 0.0) - alpha * np.maximum(-z, 0.0)).var(axis=0).sum()
    assert penalty / 2.0 - fixed_slope > 20 * variance_error
    assert all(np.all(np.isfinite(g)) for g in gradients)


def test_penalty_scales_with_lambda_and_is_off_at_zero():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(4, 6)).astype("float32")
    alpha = rng.normal(0.2, 0.3, size=(6,)).astype("float32")
    with_penalty = _outputs_penalty_and_gradients(_built(SmoothPReLU(sigma=0.4, regularization=0.5), alpha, x.shape), alpha, x)
    doubled = _outputs_penalty_and_gradients(_built(SmoothPReLU(sigma=0.4, regularization=1.0), alpha, x.shape), alpha, x)
    without = _outputs_penalty_and_gradients(_built(SmoothPReLU(sigma=0.4), alpha, x.shape), alpha, x)
    np.testing.assert_allclose(with_penalty[0], without[0], rtol=1e-6)
    assert without[1] == 0.0 and with_penalty[1] > 0.0
    assert doubled[1] == pytest.approx(2.0 * with_penalty[1], rel=1e-6)


def test_config_round_trip_and_keras_save_load(tmp_path):
    inputs = keras.Input((5, 3))
    hidden = keras.layers.Dense(3, name="dense")(inputs)
    hidden = SmoothPReLU(
        sigma=0.3,
        regularization=1e-2,
        alpha_initializer=keras.initializers.Constant(0.2),
        alpha_constraint="non_neg",
        shared_axes=[1],
        name="prelu",
    )(hidden)
    model = keras.Model(inputs, hidden)
    config = model.get_layer("prelu").get_config()
    assert config["sigma"] == 0.3 and config["regularization"] == 1e-2 and config["shared_axes"] == [1]
    assert SmoothPReLU.from_config(config).get_config() == config
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype("float32")
    path = tmp_path / "prelu.keras"
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(_numpy(restored(x)), _numpy(model(x)))
    np.testing.assert_allclose(_numpy(sum(restored.losses)), _numpy(sum(model.losses)), rtol=1e-6)


def test_half_precision_policy():
    x = np.random.default_rng(6).normal(size=(2, 5)).astype("float32")
    alpha = np.full((5,), 0.3, "float32")
    half = _built(SmoothPReLU(sigma=0.3, regularization=1e-3, dtype="mixed_float16"), alpha, x.shape)
    full = _built(SmoothPReLU(sigma=0.3, regularization=1e-3), alpha, x.shape)
    y = half(x)
    assert keras.backend.standardize_dtype(y.dtype) == "float16"
    np.testing.assert_allclose(_numpy(y), _numpy(full(x)), rtol=2e-3, atol=2e-3)
    assert float(_numpy(half.losses[0])) == pytest.approx(float(_numpy(full.losses[0])), rel=1e-2)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"sigma": -1.0}, "sigma"), ({"regularization": float("nan")}, "regularization")],
)
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SmoothPReLU(**kwargs)


def _prelu_network():
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(3, 3, name="conv")(inputs)
    x = keras.layers.PReLU(
        alpha_initializer=keras.initializers.RandomNormal(0.2, 0.4, seed=2), shared_axes=[1, 2], name="prelu"
    )(x)
    x = keras.layers.Flatten(name="flat")(x)
    x = keras.layers.Dense(4, name="hidden")(x)
    x = keras.layers.PReLU(alpha_initializer=keras.initializers.RandomNormal(0.1, 0.3, seed=3), name="prelu_dense")(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="out")(x))


def test_smooth_model_converts_prelu_with_its_slope_and_sigma():
    model = _prelu_network()
    before = [w.copy() for w in model.get_weights()]
    x = np.random.default_rng(5).normal(size=(3, 6, 6, 2)).astype("float32")
    plain = _numpy(model(x))

    at_zero = keras_gsmooth.smooth_model(model, sigma=0.0, regularization=1.0)
    np.testing.assert_allclose(_numpy(at_zero(x)), plain, rtol=1e-5, atol=1e-6)
    for name in ("prelu", "prelu_dense"):
        layer = at_zero.get_layer(name)
        assert isinstance(layer, SmoothPReLU)
        np.testing.assert_array_equal(_numpy(layer.alpha), _numpy(model.get_layer(name).alpha))

    smoothed = keras_gsmooth.smooth_model(model, sigma=0.5, regularization={"prelu": 0.5, "prelu_dense": 0.0})
    assert smoothed.get_layer("prelu").regularization == 0.5
    assert smoothed.get_layer("prelu_dense").regularization == 0.0
    assert smoothed.get_layer("prelu").is_sigma_bound
    # The layer reads the model's σ: its penalty is the standalone layer's at σ = 0.5.
    conv = _numpy(keras.Model(smoothed.inputs, smoothed.get_layer("conv").output)(x))
    alpha = _numpy(model.get_layer("prelu").alpha).astype("float32")
    reference = _built(SmoothPReLU(sigma=0.5, regularization=0.5, shared_axes=[1, 2]), alpha, conv.shape)
    smoothed(x)
    _, reference_penalty, _ = _outputs_penalty_and_gradients(reference, alpha, conv.astype("float32"))
    assert float(_numpy(smoothed.get_layer("prelu").losses[0])) == pytest.approx(reference_penalty, rel=1e-5)
    assert not np.allclose(_numpy(smoothed(x)), plain, atol=1e-3)
    keras_gsmooth.set_sigma(smoothed, 0.0)
    np.testing.assert_allclose(_numpy(smoothed(x)), plain, rtol=1e-5, atol=1e-6)
    for weight, original in zip(model.get_weights(), before):
        np.testing.assert_array_equal(weight, original)


def test_prelu_on_raw_data_gets_no_penalty():
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(1, name="out")(keras.layers.PReLU(name="first")(inputs))
    smoothed = keras_gsmooth.smooth_model(keras.Model(inputs, outputs), sigma=0.3, regularization=1.0)
    assert smoothed.get_layer("first").regularization == 0.0
