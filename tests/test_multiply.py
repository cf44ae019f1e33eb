"""`SmoothMultiply` and `SmoothDot`: their variance penalties against
Monte-Carlo sampling of the factors, broadcasting, σ = 0, save/load, and
their conversion by `smooth_model` (gates, squeeze-and-excitation, a
two-tower score, raw inputs, x·x and cosine similarity refused)."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_gsmooth
from keras_gsmooth.layers import SmoothDot
from keras_gsmooth.layers import SmoothMultiply


def _numpy(t):
    return np.asarray(ops.convert_to_numpy(t), dtype="float64")


def _penalty(layer, inputs):
    layer([ops.convert_to_tensor(x) for x in inputs])
    return float(_numpy(sum(layer.losses)))


@pytest.mark.montecarlo
@pytest.mark.parametrize("perturbed", [[True, True, True], [True, False, True]])
def test_penalty_matches_monte_carlo_of_the_product(perturbed):
    # Three factors, one broadcast over the middle axis, so that the
    # penalty's terms of every order (σ², σ⁴, σ⁶) count.
    sigma, samples = 0.8, 400_000
    rng = np.random.default_rng(8)
    factors = [
        rng.normal(size=(1, 3, 2)).astype("float32"),
        rng.normal(size=(1, 1, 2)).astype("float32"),
        rng.normal(size=(1, 3, 2)).astype("float32"),
    ]
    layer = SmoothMultiply(sigma=sigma, regularization=1.5, perturbed=perturbed)
    penalty = _penalty(layer, factors)
    np.testing.assert_allclose(_numpy(layer(factors)), factors[0] * factors[1] * factors[2], rtol=1e-6)

    noise_scale = sigma * np.sqrt(0.5)
    noisy = [
        x + flag * noise_scale * rng.standard_normal((samples,) + x.shape[1:])
        for x, flag in zip(factors, perturbed)
    ]
    products = noisy[0] * noisy[1] * noisy[2]  # (samples, 3, 2): the broadcast factor's noise is shared
    mean = products.mean(axis=0)
    summed_squares = ((products - mean) ** 2).sum(axis=(1, 2))
    standard_error = summed_squares.std() / np.sqrt(samples)
    assert abs(penalty / 1.5 - summed_squares.mean()) < 5 * standard_error
    np.testing.assert_array_less(np.abs(mean - factors[0][0] * factors[1][0] * factors[2][0]), 5 * products.std(axis=0) / np.sqrt(samples))


def test_two_factors_give_the_closed_form_and_nothing_at_sigma_zero():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(4, 5)).astype("float32"), rng.normal(size=(4, 5)).astype("float32")
    s2 = 0.3**2 / 2
    expected = 0.2 * np.sum(s2 * (a.astype("float64") ** 2 + b**2) + s2**2) / 4
    assert _penalty(SmoothMultiply(sigma=0.3, regularization=0.2), [a, b]) == pytest.approx(expected, rel=1e-5)
    only_b = 0.2 * np.sum(s2 * a.astype("float64") ** 2) / 4  # a is data: only b is perturbed
    assert _penalty(SmoothMultiply(sigma=0.3, regularization=0.2, perturbed=[False, True]), [a, b]) == pytest.approx(only_b, rel=1e-5)
    assert _penalty(SmoothMultiply(sigma=0.0, regularization=0.2), [a, b]) == 0.0
    # Large factors and a small σ: no cancellation.
    big = np.full((1, 3), 300.0, "float32")
    tiny = _penalty(SmoothMultiply(sigma=1e-3, regularization=1.0), [big, big + 1.0])
    assert tiny == pytest.approx(3 * (0.5e-6 * (300.0**2 + 301.0**2) + 0.25e-12), rel=1e-5)


def test_masked_entries_are_constant_ones():
    # Keras multiplies by 1 where a mask hides an entry: no noise there.
    inputs = keras.Input((4, 3))
    masked = keras.layers.Masking(mask_value=0.0)(inputs)
    a = keras.layers.Dense(3, name="a")(masked)
    b = keras.layers.Dense(3, name="b")(masked)
    layer = SmoothMultiply(sigma=0.6, regularization=1.0, name="product")
    model = keras.Model(inputs, layer([a, b]))
    x = np.random.default_rng(1).normal(size=(2, 4, 3)).astype("float32")
    x[0, 1:] = 0.0  # steps 1..3 of the first sample are masked
    model(x)
    values = [_numpy(keras.Model(inputs, model.get_layer(name).output)(x)) for name in ("a", "b")]
    kept = np.ones((2, 4, 1))
    kept[0, 1:] = 0.0
    s2 = 0.6**2 / 2
    expected = np.sum(kept * (s2 * (values[0] ** 2 + values[1] ** 2) + s2**2)) / 2
    assert float(_numpy(layer.losses[0])) == pytest.approx(expected, rel=1e-5)


def test_config_save_load_and_a_wrong_perturbed_list(tmp_path):
    a, b = keras.Input((3,)), keras.Input((3,))
    product = SmoothMultiply(sigma=0.2, regularization=1e-2, perturbed=[True, False], name="product")([a, b])
    model = keras.Model([a, b], product)
    config = model.get_layer("product").get_config()
    assert config["perturbed"] == [True, False] and config["sigma"] == 0.2
    data = [np.random.default_rng(0).normal(size=(2, 3)).astype("float32") for _ in range(2)]
    model.save(tmp_path / "multiply.keras")
    restored = keras.saving.load_model(tmp_path / "multiply.keras", safe_mode=True)
    np.testing.assert_array_equal(_numpy(restored(data)), _numpy(model(data)))
    np.testing.assert_allclose(_numpy(sum(restored.losses)), _numpy(sum(model.losses)), rtol=1e-6)
    with pytest.raises(ValueError, match="`perturbed` has 1 entries"):
        SmoothMultiply(sigma=0.2, regularization=1.0, perturbed=[True])(data)


def _squeeze_and_excitation_network():
    inputs = keras.Input((6, 6, 3))
    mask = keras.Input((6, 6, 1), name="mask")
    features = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    features = keras.layers.Activation("silu", name="conv_silu")(features)
    squeezed = keras.layers.GlobalAveragePooling2D(keepdims=True, name="squeeze")(features)
    excitation = keras.layers.Conv2D(4, 1, activation="sigmoid", name="excite")(squeezed)
    scaled = keras.layers.Multiply(name="scale")([features, excitation])
    masked = keras.layers.Multiply(name="masked")([scaled, mask])
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(masked)
    return keras.Model([inputs, mask], keras.layers.Dense(2, name="out")(pooled))


def test_smooth_model_converts_multiply_with_data_inputs_unperturbed():
    model = _squeeze_and_excitation_network()
    rng = np.random.default_rng(4)
    data = [rng.normal(size=(3, 6, 6, 3)).astype("float32"), (rng.random((3, 6, 6, 1)) > 0.3).astype("float32")]
    at_zero = keras_gsmooth.smooth_model(model, sigma=0.0, regularization=1.0)
    np.testing.assert_allclose(_numpy(at_zero(data)), _numpy(model(data)), rtol=1e-5, atol=1e-6)

    smoothed = keras_gsmooth.smooth_model(model, sigma=0.5, regularization={"scale": 0.5, "masked": 2.0})
    scale, masked = smoothed.get_layer("scale"), smoothed.get_layer("masked")
    assert isinstance(scale, SmoothMultiply) and scale.perturbed == [True, True]
    assert masked.perturbed == [True, False]  # the mask is data
    smoothed(data)
    features = _numpy(keras.Model(smoothed.inputs, smoothed.get_layer("conv_silu").output)(data))
    excitation = _numpy(keras.Model(smoothed.inputs, smoothed.get_layer("excite_activation").output)(data))
    scaled = _numpy(keras.Model(smoothed.inputs, scale.output)(data))
    s2 = 0.5**2 / 2
    expected_scale = 0.5 * np.sum(s2 * (features**2 + excitation**2) + s2**2) / 3
    expected_masked = 2.0 * np.sum(s2 * np.broadcast_to(data[1], scaled.shape) ** 2) / 3
    np.testing.assert_allclose(float(_numpy(scale.losses[0])), expected_scale, rtol=1e-5)
    np.testing.assert_allclose(float(_numpy(masked.losses[0])), expected_masked, rtol=1e-5)


def test_a_tensor_times_itself_is_refused():
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(4, name="hidden")(inputs)
    squared = keras.layers.Multiply(name="square")([hidden, hidden])
    model = keras.Model(inputs, keras.layers.Dense(1)(squared))
    with pytest.raises(ValueError, match=r"square \(Multiply\): it multiplies a tensor by itself.*Activation"):
        keras_gsmooth.smooth_model(model, sigma=0.1)


@pytest.mark.montecarlo
@pytest.mark.parametrize(
    "axes, shapes, perturbed, contraction",
    [
        (1, [(1, 5), (1, 5)], [True, True], "sk,sk->s"),
        ((2, 1), [(1, 3, 4), (1, 4, 2)], [True, False], "sik,skj->sij"),
        ((1, 1), [(1, 4, 3), (1, 4, 2)], [False, True], "ski,skj->sij"),
    ],
)
def test_dot_penalty_matches_monte_carlo_of_the_dot_product(axes, shapes, perturbed, contraction):
    sigma, samples = 0.7, 200_000
    rng = np.random.default_rng(11)
    a, b = (rng.normal(size=shape).astype("float32") for shape in shapes)
    layer = SmoothDot(axes=axes, sigma=sigma, regularization=2.0, perturbed=perturbed)
    penalty = _penalty(layer, [a, b])
    exact = np.einsum(contraction, a, b)
    np.testing.assert_allclose(_numpy(layer([a, b])).reshape(exact.shape), exact, rtol=1e-5, atol=1e-6)  # Keras keeps a unit axis for vectors

    noise_scale = sigma * np.sqrt(0.5)
    noisy_a, noisy_b = (
        x[0] + flag * noise_scale * rng.standard_normal((samples,) + x.shape[1:]) for x, flag in zip((a, b), perturbed)
    )
    dots = np.einsum(contraction, noisy_a, noisy_b)
    summed_squares = ((dots - exact[0]) ** 2).reshape(samples, -1).sum(axis=1)
    standard_error = summed_squares.std() / np.sqrt(samples)
    assert abs(penalty / 2.0 - summed_squares.mean()) < 5 * standard_error


def test_dot_closed_form_at_large_values_and_sigma_zero():
    a = np.full((2, 3), 300.0, "float32")
    b = a + 1.0
    s2 = 1e-6 / 2  # σ = 1e-3
    expected = 3 * (s2 * (300.0**2 + 301.0**2) + s2**2)  # per sample
    assert _penalty(SmoothDot(axes=1, sigma=1e-3, regularization=1.0), [a, b]) == pytest.approx(expected, rel=1e-5)
    assert _penalty(SmoothDot(axes=1, sigma=0.0, regularization=1.0), [a, b]) == 0.0


def test_dot_refuses_normalize_and_a_wrong_perturbed_list():
    with pytest.raises(ValueError, match="normalize=True.*cosine similarity"):
        SmoothDot(axes=1, normalize=True)
    with pytest.raises(ValueError, match="one bool for each of the two inputs"):
        SmoothDot(axes=1, perturbed=[True])


def _two_tower_network(normalize=False):
    users, items = keras.Input((6,), name="users"), keras.Input((5,), name="items")
    user_vector = keras.layers.Dense(4, activation="relu", name="user_tower")(users)
    item_vector = keras.layers.Dense(4, name="item_tower")(items)
    score = keras.layers.Dot(axes=1, normalize=normalize, name="score")([user_vector, item_vector])
    return keras.Model([users, items], keras.layers.Activation("sigmoid", name="probability")(score))


def test_smooth_model_converts_dot_and_refuses_cosine_similarity(tmp_path):
    model = _two_tower_network()
    rng = np.random.default_rng(6)
    data = [rng.normal(size=(3, 6)).astype("float32"), rng.normal(size=(3, 5)).astype("float32")]
    at_zero = keras_gsmooth.smooth_model(model, sigma=0.0, regularization=1.0)
    np.testing.assert_allclose(_numpy(at_zero(data)), _numpy(model(data)), rtol=1e-5, atol=1e-6)

    smoothed = keras_gsmooth.smooth_model(model, sigma=0.4, regularization={"score": 1.5})
    score = smoothed.get_layer("score")
    assert isinstance(score, SmoothDot) and score.perturbed == [True, True]
    smoothed(data)
    towers = [_numpy(keras.Model(smoothed.inputs, smoothed.get_layer(name).output)(data)) for name in ("user_tower_activation", "item_tower")]
    s2 = 0.4**2 / 2
    expected = 1.5 * np.sum(s2 * (towers[0] ** 2 + towers[1] ** 2) + s2**2) / 3
    np.testing.assert_allclose(float(_numpy(score.losses[0])), expected, rtol=1e-5)

    smoothed.save(tmp_path / "towers.keras")
    restored = keras.saving.load_model(tmp_path / "towers.keras")
    np.testing.assert_allclose(_numpy(restored(data)), _numpy(smoothed(data)), rtol=1e-6)
    np.testing.assert_allclose(_numpy(sum(restored.losses)), _numpy(sum(smoothed.losses)), rtol=1e-5)

    with pytest.raises(ValueError, match=r"score \(Dot\): with `normalize=True` it computes a cosine similarity"):
        keras_gsmooth.smooth_model(_two_tower_network(normalize=True), sigma=0.1)
