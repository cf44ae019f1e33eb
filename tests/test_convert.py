"""Tests of `smooth_model`: structure, exact penalties, equivalence at σ = 0, errors."""

import json
import math
import os

import keras
import numpy as np
import pytest
from scipy.special import erf

import keras_gsmooth
from keras_gsmooth import rules
from keras_gsmooth.layers import SmoothActivation


def relu_mean_and_variance(x, sigma):
    """float64 reference: relu_σ(x) and Var_σ[relu](x) (SPEC §2)."""
    s = x / sigma
    mean = 0.5 * x * (1 + erf(s)) + sigma / (2 * np.sqrt(np.pi)) * np.exp(-(s**2))
    second = 0.5 * (1 + erf(s)) * (x**2 + sigma**2 / 2) + sigma * x / (2 * np.sqrt(np.pi)) * np.exp(-(s**2))
    return mean, second - mean**2


def total_penalty(model, x):
    model(x)  # the losses of the last call
    return float(sum(keras.ops.convert_to_numpy(loss) for loss in model.losses))


def outputs_of(model, x):
    return [keras.ops.convert_to_numpy(y) for y in keras.tree.flatten(model(x))]


def snapshot(model):
    return json.dumps(model.get_config(), sort_keys=True, default=str), [w.copy() for w in model.get_weights()]


def assert_unchanged(model, before):
    config, weights = snapshot(model)
    assert config == before[0]
    for old, new in zip(before[1], weights):
        np.testing.assert_array_equal(old, new)


class TestPaperCNN:
    sigma = 0.3
    lambdas = {"conv_relu": 0.7, "hidden": 0.2, "hidden_relu": 0.3, "logits": 0.5}

    def setup_method(self):
        self.model = keras_gsmooth.models.paper_cnn(input_shape=(12, 12, 1), num_classes=10)
        rng = np.random.default_rng(0)
        self.model.set_weights([rng.normal(0, 0.3, w.shape).astype("float32") for w in self.model.get_weights()])
        self.x = rng.uniform(0, 1, (3, 12, 12, 1)).astype("float32")

    def test_layers_and_penalties_are_those_of_table_5(self):
        smoothed = keras_gsmooth.smooth_model(self.model, sigma=self.sigma, regularization=self.lambdas)
        names = [layer.name for layer in smoothed.layers]
        assert names == ["image", "conv", "conv_relu_pool", "flatten", "hidden", "hidden_relu", "logits"]
        assert smoothed.get_layer("conv").kernel_regularizer is None  # raw data: no penalty
        # The smoothed relu and the pooling that alone reads it, as one layer, which also carries
        # the input penalty of the hidden layer after the flatten (tests/test_fused_pooling.py);
        # the second smoothed relu carries the input penalty of the logits layer.
        relu_and_pooling = smoothed.get_layer("conv_relu_pool")
        assert isinstance(relu_and_pooling, SmoothActivation) and relu_and_pooling.pool_size == (2, 2)
        for carrier, dense, units in ((relu_and_pooling, "hidden", 128), (smoothed.get_layer("hidden_relu"), "logits", 10)):
            input_penalty = carrier.output_penalty
            assert isinstance(input_penalty, keras_gsmooth.regularizers.DenseInputPenalty)
            assert (input_penalty.units, input_penalty.regularization) == (units, self.lambdas[dense])
            assert input_penalty.is_sigma_bound

    def test_penalty_values_match_numpy(self):
        smoothed = keras_gsmooth.smooth_model(self.model, sigma=self.sigma, regularization=self.lambdas)
        s, lam = self.sigma, self.lambdas
        w = {layer.name: [v.astype("float64") for v in layer.get_weights()] for layer in self.model.layers}
        x = self.x.astype("float64")
        batch = x.shape[0]
        conv = keras.ops.convert_to_numpy(self.model.get_layer("conv")(self.x)).astype("float64")
        relu1, var1 = relu_mean_and_variance(conv, s)
        pooled = relu1[:, :8, :8].reshape(batch, 4, 2, 4, 2, 32).mean(axis=(2, 4))  # 'valid' pooling drops row/col 9
        flat = pooled.reshape(batch, -1)
        hidden = flat @ w["hidden"][0] + w["hidden"][1]
        relu2, var2 = relu_mean_and_variance(hidden, s)
        expected = (
            lam["conv_relu"] * var1.sum() / batch
            + lam["hidden"] * (s**2 * 128 / 2 * (flat**2).sum() / batch + s**2 / 2 * (w["hidden"][0] ** 2).sum())
            + lam["hidden_relu"] * var2.sum() / batch
            + lam["logits"] * (s**2 * 10 / 2 * (relu2**2).sum() / batch + s**2 / 2 * (w["logits"][0] ** 2).sum())
        )
        np.testing.assert_allclose(total_penalty(smoothed, self.x), expected, rtol=2e-5)

    def test_sigma_zero_reproduces_the_original(self):
        smoothed = keras_gsmooth.smooth_model(self.model, sigma=0.0, regularization=1e-3)
        np.testing.assert_allclose(outputs_of(smoothed, self.x)[0], outputs_of(self.model, self.x)[0], rtol=1e-5, atol=1e-6)
        assert total_penalty(smoothed, self.x) == pytest.approx(0.0, abs=1e-7)

    def test_original_is_untouched(self):
        before = snapshot(self.model)
        smoothed = keras_gsmooth.smooth_model(self.model, sigma=0.5, regularization=1e-2)
        smoothed.compile(optimizer="sgd", loss="mse")
        smoothed.fit(self.x, np.zeros((3, 10), "float32"), epochs=1, verbose=0)
        assert_unchanged(self.model, before)

    def test_save_and_load(self, tmp_path):
        smoothed = keras_gsmooth.smooth_model(self.model, sigma=0.25, regularization=self.lambdas)
        path = os.path.join(tmp_path, "smoothed.keras")
        smoothed.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
        assert isinstance(loaded, keras_gsmooth.SmoothedModel)
        assert keras_gsmooth.get_sigma(loaded) == pytest.approx(0.25)
        np.testing.assert_allclose(outputs_of(loaded, self.x)[0], outputs_of(smoothed, self.x)[0], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(total_penalty(loaded, self.x), total_penalty(smoothed, self.x), rtol=1e-6)
        keras_gsmooth.set_sigma(loaded, 0.5)
        keras_gsmooth.set_sigma(smoothed, 0.5)
        np.testing.assert_allclose(total_penalty(loaded, self.x), total_penalty(smoothed, self.x), rtol=1e-6)

    def test_penalties_reach_fit_loss(self):
        smoothed = keras_gsmooth.smooth_model(self.model, sigma=self.sigma, regularization=self.lambdas)
        smoothed.compile(optimizer="sgd", loss="mse")
        y = np.zeros((3, 10), "float32")
        data_loss = float(np.mean(outputs_of(smoothed, self.x)[0] ** 2))
        evaluated = smoothed.evaluate(self.x, y, batch_size=3, verbose=0)
        np.testing.assert_allclose(evaluated, data_loss + total_penalty(smoothed, self.x), rtol=1e-5)

    def test_summary_reads_naturally(self):
        smoothed = keras_gsmooth.smooth_model(self.model, sigma=0.1)
        lines = []
        smoothed.summary(print_fn=lines.append, line_length=100)
        text = "\n".join(lines)
        assert "conv_relu_pool (SmoothActivation)" in text
        assert "hidden (Dense)" in text


def test_sequential_with_fused_activations_and_dropout():
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(5, activation="relu"), keras.layers.Dropout(0.25), keras.layers.Dense(3, activation="softmax")]
    )
    smoothed = keras_gsmooth.smooth_model(model, sigma=0.0, regularization=0.1)
    x = np.random.default_rng(1).normal(size=(4, 6)).astype("float32")
    np.testing.assert_allclose(outputs_of(smoothed, x)[0], outputs_of(model, x)[0], rtol=1e-5, atol=1e-6)
    types = [type(layer).__name__ for layer in smoothed.layers]
    assert types == ["InputLayer", "Dense", "SmoothActivation", "InputPenalty", "InputPenalty", "SmoothDense"]
    # The final softmax stays fused and unsmoothed.
    assert smoothed.layers[-1].activation is keras.activations.softmax
    # Dropout penalty (p/(1-p))·‖x‖² with σ-free weight; Dense penalties vanish at σ = 0.
    hidden = keras.ops.convert_to_numpy(smoothed.layers[2](smoothed.layers[1](x)))
    np.testing.assert_allclose(total_penalty(smoothed, x), 0.1 * (0.25 / 0.75) * (hidden**2).sum() / 4, rtol=1e-5)


def test_noise_layers_and_weightless_linear_layers():
    # Spatial and Gaussian dropout carry dropout's penalty (p/(1-p))·‖x‖²;
    # GaussianNoise, UpSampling, Rescaling, an adapted Normalization and
    # RepeatVector add constants only.
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(3, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.SpatialDropout2D(0.2, name="spatial")(x)
    x = keras.layers.UpSampling2D(2, interpolation="bilinear", name="up")(x)
    x = keras.layers.Rescaling(0.5, offset=0.1, name="rescale")(x)
    x = keras.layers.GaussianNoise(0.3, name="noise")(x)
    x = keras.layers.Flatten(name="flat")(x)
    x = keras.layers.GaussianDropout(0.4, name="gaussian")(x)
    normalization = keras.layers.Normalization(name="normalization")
    normalization.adapt(np.random.default_rng(0).normal(2.0, 3.0, size=(16, 3)).astype("float32"))
    x = normalization(keras.layers.Dense(3, name="dense")(x))
    x = keras.layers.RepeatVector(2, name="repeat")(x)
    model = keras.Model(inputs, keras.layers.Flatten(name="out")(x))
    regularization = {"spatial": 0.5, "gaussian": 2.0}
    smoothed = keras_gsmooth.smooth_model(model, sigma=0.0, regularization=regularization)
    data = random_inputs(model, batch=3)
    np.testing.assert_allclose(outputs_of(smoothed, data)[0], outputs_of(model, data)[0], rtol=1e-5, atol=1e-6)
    assert isinstance(smoothed.get_layer("noise"), keras.layers.Identity)
    conv = keras.ops.convert_to_numpy(keras.Model(smoothed.inputs, smoothed.get_layer("spatial").output)(data[0]))
    flat = keras.ops.convert_to_numpy(keras.Model(smoothed.inputs, smoothed.get_layer("flat").output)(data[0]))
    expected = 0.5 * (0.2 / 0.8) * (conv**2).sum() / 3 + 2.0 * (0.4 / 0.6) * (flat**2).sum() / 3
    np.testing.assert_allclose(total_penalty(smoothed, data), expected, rtol=1e-5)


@pytest.mark.parametrize("rank", [1, 2])
def test_depthwise_convolution_has_the_penalties_of_its_grouped_convolution(rank):
    # DepthwiseConv(k, depth_multiplier=m) on C channels is Conv(C·m, k,
    # groups=C) with the kernel reshaped; the smoothed models must agree.
    depthwise_class = keras.layers.DepthwiseConv1D if rank == 1 else keras.layers.DepthwiseConv2D
    conv_class = keras.layers.Conv1D if rank == 1 else keras.layers.Conv2D
    geometry = dict(kernel_size=3, strides=2, padding="same", activation="relu", name="dw")

    def build(layer):
        inputs = keras.Input((7,) * rank + (3,))
        features = conv_class(3, 2, name="first")(inputs)
        return keras.Model(inputs, keras.layers.Dense(1, name="out")(keras.layers.Flatten()(layer(features))))

    depthwise = build(depthwise_class(depth_multiplier=2, **geometry))
    grouped = build(conv_class(6, groups=3, **geometry))
    kernel, bias = depthwise.get_layer("dw").get_weights()
    grouped.get_layer("first").set_weights(depthwise.get_layer("first").get_weights())
    grouped.get_layer("dw").set_weights([kernel.reshape(kernel.shape[:-2] + (1, 6)), bias])
    grouped.get_layer("out").set_weights(depthwise.get_layer("out").get_weights())
    x = random_inputs(depthwise, batch=3)
    np.testing.assert_allclose(outputs_of(grouped, x)[0], outputs_of(depthwise, x)[0], rtol=1e-5, atol=1e-6)
    smoothed = [keras_gsmooth.smooth_model(m, sigma=0.4, regularization={"dw": 1.0}) for m in (depthwise, grouped)]
    assert smoothed[0].get_layer("dw").depthwise_regularizer is not None
    np.testing.assert_allclose(outputs_of(smoothed[0], x)[0], outputs_of(smoothed[1], x)[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(total_penalty(smoothed[0], x), total_penalty(smoothed[1], x), rtol=1e-5)
    assert total_penalty(smoothed[0], x) > 0


@pytest.mark.parametrize("rank", [1, 2])
def test_transposed_convolution_carries_its_penalties(rank):
    # Penalties through Keras's own operation: the sums of conv_transpose(ones, θ²)
    # and conv_transpose(Σ_c x², ones), as in the regularizer tests.
    layer_class = keras.layers.Conv1DTranspose if rank == 1 else keras.layers.Conv2DTranspose
    geometry = dict(kernel_size=3, strides=2, padding="same", output_padding=1)
    inputs = keras.Input((5,) * rank + (2,))
    features = (keras.layers.Conv1D if rank == 1 else keras.layers.Conv2D)(3, 2, name="first")(inputs)
    upsampled = layer_class(4, name="up", **geometry)(features)
    model = keras.Model(inputs, keras.layers.Flatten()(upsampled))
    lam, sigma = 0.5, 0.4
    smoothed = keras_gsmooth.smooth_model(model, sigma=sigma, regularization={"up": lam})
    x = random_inputs(model, batch=3)
    np.testing.assert_allclose(
        outputs_of(keras_gsmooth.smooth_model(model, sigma=0.0), x)[0], outputs_of(model, x)[0], rtol=1e-5, atol=1e-6
    )

    def summed_conv_transpose(values, kernel):
        outputs = keras.ops.conv_transpose(values, kernel, (2,) * rank, "same", (1,) * rank)
        return float(np.sum(keras.ops.convert_to_numpy(outputs)))

    kernel = model.get_layer("up").get_weights()[0]
    first = keras.ops.convert_to_numpy(keras.Model(model.inputs, model.get_layer("first").output)(x[0]))
    kernel_term = summed_conv_transpose(np.ones((1,) + first.shape[1:], "float32"), np.square(kernel))
    squares = np.sum(np.square(first), axis=-1, keepdims=True)
    input_term = 4 * summed_conv_transpose(squares, np.ones((3,) * rank + (1, 1), "float32")) / 3
    np.testing.assert_allclose(total_penalty(smoothed, x), lam * sigma**2 / 2 * (kernel_term + input_term), rtol=1e-5)


@pytest.mark.parametrize("rank, on_raw_data", [(1, False), (2, False), (2, True)])
def test_separable_convolution_has_the_penalties_of_depthwise_then_pointwise(rank, on_raw_data, tmp_path):
    # SeparableConv(F, k, depth_multiplier=m) is DepthwiseConv(k, m) without
    # bias followed by Conv(F, 1); the lifted objective has the depthwise
    # output as a variable between them, so the smoothed models must agree,
    # on raw data too (where only the depthwise half has no penalty).
    separable_class = keras.layers.SeparableConv1D if rank == 1 else keras.layers.SeparableConv2D
    depthwise_class = keras.layers.DepthwiseConv1D if rank == 1 else keras.layers.DepthwiseConv2D
    conv_class = keras.layers.Conv1D if rank == 1 else keras.layers.Conv2D
    geometry = dict(kernel_size=3, strides=2, padding="same")

    def build(*layers):
        inputs = keras.Input((7,) * rank + (3,))
        features = inputs if on_raw_data else conv_class(3, 2, name="first")(inputs)
        for layer in layers:
            features = layer(features)
        return keras.Model(inputs, keras.layers.Dense(1, name="out")(keras.layers.Flatten()(features)))

    separable = build(separable_class(4, depth_multiplier=2, activation="relu", name="sep", **geometry))
    split = build(
        depthwise_class(depth_multiplier=2, use_bias=False, name="dw", **geometry),
        conv_class(4, 1, activation="relu", name="pw"),
    )
    split.set_weights(separable.get_weights())
    x = random_inputs(separable, batch=3)
    np.testing.assert_allclose(outputs_of(split, x)[0], outputs_of(separable, x)[0], rtol=1e-5, atol=1e-5)
    smoothed_separable = keras_gsmooth.smooth_model(separable, sigma=0.4, regularization={"sep": 0.5})
    smoothed_split = keras_gsmooth.smooth_model(split, sigma=0.4, regularization={"dw": 0.5, "pw": 0.5})
    assert isinstance(smoothed_separable.get_layer("sep"), keras_gsmooth.layers.SmoothSeparableConv1D
                      if rank == 1 else keras_gsmooth.layers.SmoothSeparableConv2D)
    np.testing.assert_allclose(outputs_of(smoothed_separable, x)[0], outputs_of(smoothed_split, x)[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(total_penalty(smoothed_separable, x), total_penalty(smoothed_split, x), rtol=1e-5)
    assert total_penalty(smoothed_separable, x) > 0
    smoothed_separable.save(tmp_path / "separable.keras")
    restored = keras.saving.load_model(tmp_path / "separable.keras", safe_mode=True)
    np.testing.assert_array_equal(outputs_of(restored, x)[0], outputs_of(smoothed_separable, x)[0])
    assert total_penalty(restored, x) == pytest.approx(total_penalty(smoothed_separable, x), rel=1e-6)


def functional_zoo():
    """Models covering residual Add, nested, shared layer, multi-io, Conv1D/3D, padding and strides."""
    a = keras.Input((8,), name="a")
    b = keras.Input((8,), name="b")
    shared = keras.layers.Dense(8, activation="tanh", name="shared")
    h_a, h_b = shared(a), shared(b)
    h = keras.layers.Add(name="residual")([h_a, keras.layers.Dense(8, name="skip")(h_a)])
    inner_in = keras.Input((8,))
    inner_out = keras.layers.Dense(4, activation="gelu", name="inner_dense")(inner_in)
    inner = keras.Model(inner_in, inner_out, name="inner")
    out1 = inner(h)
    out2 = keras.layers.Concatenate(name="concat")([h_b, out1])
    multi = keras.Model([a, b], {"first": out1, "second": out2}, name="multi")

    seq_in = keras.Input((16, 3))
    c = keras.layers.Conv1D(4, 3, strides=2, padding="same", activation="relu", name="c1")(seq_in)
    c = keras.layers.Conv1D(4, 3, dilation_rate=2, padding="valid", name="c2")(c)
    c = keras.layers.GlobalAveragePooling1D(name="gap")(c)
    conv1d = keras.Model(seq_in, keras.layers.Dense(2, name="out")(c), name="conv1d")

    vol_in = keras.Input((6, 6, 6, 2))
    v = keras.layers.Conv3D(3, 2, padding="valid", name="v1")(vol_in)
    v = keras.layers.Activation("sigmoid", name="v1_act")(v)
    v = keras.layers.Conv3D(2, 3, strides=2, padding="same", name="v2")(v)
    v = keras.layers.Flatten(name="flat")(v)
    conv3d = keras.Model(vol_in, v, name="conv3d")
    return [multi, conv1d, conv3d]


def random_inputs(model, batch=2):
    rng = np.random.default_rng(5)
    return [rng.normal(size=(batch,) + tuple(t.shape[1:])).astype("float32") for t in model.inputs]


@pytest.mark.parametrize("index", range(3))
def test_zoo_sigma_zero_equivalence_and_untouched(index):
    model = functional_zoo()[index]
    before = snapshot(model)
    smoothed = keras_gsmooth.smooth_model(model, sigma=0.0, regularization=0.05)
    x = random_inputs(model)
    for new, old in zip(outputs_of(smoothed, x), outputs_of(model, x)):
        np.testing.assert_allclose(new, old, rtol=1e-5, atol=1e-5)
    assert_unchanged(model, before)
    keras_gsmooth.set_sigma(smoothed, 0.2)
    assert total_penalty(smoothed, x) > 0
    assert all(np.isfinite(y).all() for y in outputs_of(smoothed, x))


def test_shared_layer_penalized_once_per_hidden_call():
    a = keras.Input((4,))
    first = keras.layers.Dense(4, name="first")(a)
    shared = keras.layers.Dense(4, name="shared")
    out = shared(shared(first))
    model = keras.Model(a, out)
    smoothed = keras_gsmooth.smooth_model(model, sigma=0.5, regularization={"shared": 1.0})
    # A layer called twice keeps its kernel penalty as its kernel regularizer, paid once for both calls.
    assert type(smoothed.get_layer("shared")) is keras.layers.Dense
    kernel_penalty = smoothed.get_layer("shared").kernel_regularizer
    assert kernel_penalty.regularization == pytest.approx(2.0)


def test_a_dense_layer_called_once_adds_its_kernel_penalty_as_it_applies_its_kernel():
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(4, activation="tanh", name="first")(inputs)
    head = keras.layers.Dense(2, kernel_regularizer=keras.regularizers.L2(0.3), name="head")
    model = keras.Model(inputs, head(hidden))
    smoothed = keras_gsmooth.smooth_model(model, sigma=0.5, regularization={"head": 0.7})
    layer = smoothed.get_layer("head")
    assert isinstance(layer, keras_gsmooth.layers.SmoothDense)
    assert isinstance(layer.kernel_penalty, keras_gsmooth.regularizers.DenseKernelPenalty)
    assert layer.kernel_penalty.regularization == pytest.approx(0.7) and layer.kernel_penalty.is_sigma_bound
    assert layer.kernel_regularizer.get_config() == head.kernel_regularizer.get_config()  # the user's, kept
    x = random_inputs(model, batch=3)
    kernel = keras.ops.convert_to_numpy(head.kernel).astype("float64")
    first = keras.ops.convert_to_numpy(keras.Model(smoothed.inputs, smoothed.get_layer("first_activation").output)(x[0]))
    expected = (
        0.7 * (0.25 / 2) * (kernel**2).sum()  # the kernel penalty
        + 0.7 * (0.25 * 2 / 2) * (first.astype("float64") ** 2).sum() / 3  # the input penalty, per sample
        + 0.3 * (kernel**2).sum()  # the user's L2
    )
    assert total_penalty(smoothed, x) == pytest.approx(expected, rel=1e-5)


def test_nested_model_survives_save_and_load(tmp_path):
    model = functional_zoo()[0]
    smoothed = keras_gsmooth.smooth_model(model, sigma=0.3, regularization=0.01)
    path = os.path.join(tmp_path, "nested.keras")
    smoothed.save(path)
    loaded = keras.saving.load_model(path)
    x = random_inputs(model)
    for new, old in zip(outputs_of(loaded, x), outputs_of(smoothed, x)):
        np.testing.assert_allclose(new, old, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(total_penalty(loaded, x), total_penalty(smoothed, x), rtol=1e-5)
    keras_gsmooth.set_sigma(loaded, 0.0)
    assert total_penalty(loaded, x) == pytest.approx(0.0, abs=1e-6)


def test_copies_keep_sigma_as_documented():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="relu"), keras.layers.Dense(1)])
    schedule = keras_gsmooth.schedules.ExponentialDecay(0.4, decay_steps=2, decay_rate=0.5)
    smoothed = keras_gsmooth.smooth_model(model, sigma=schedule, regularization=1e-3)
    copy = keras_gsmooth.SmoothedModel.from_config(smoothed.get_config())
    copy.set_weights(smoothed.get_weights())
    assert copy.sigma_schedule.get_config() == schedule.get_config()
    x = random_inputs(model)
    np.testing.assert_allclose(outputs_of(copy, x)[0], outputs_of(smoothed, x)[0], rtol=1e-6)
    # keras.models.clone_model builds the clone from inputs, outputs and name.
    clone = keras.models.clone_model(smoothed)
    assert isinstance(clone, keras_gsmooth.SmoothedModel)
    assert keras_gsmooth.get_sigma(clone) == 0.0 and clone.sigma_schedule.is_constant
    keras_gsmooth.set_sigma(clone, 0.4)
    assert keras_gsmooth.get_sigma(clone) == pytest.approx(0.4)


def test_every_unsupported_layer_is_listed_at_once():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(2, 3, name="c")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.MaxPooling2D(name="mp")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(3, activation="softmax", name="attention_like")(x)
    x = keras.layers.Dense(2, name="out")(x)
    model = keras.Model(inputs, x)
    before = snapshot(model)
    with pytest.raises(ValueError) as error:
        keras_gsmooth.smooth_model(model, sigma=0.1)
    message = str(error.value)
    for expected in ["bn (BatchNormalization)", "mp (MaxPooling2D)", "attention_like (Dense)", "register_rule", "replace_max_pooling=True"]:
        assert expected in message
    assert_unchanged(model, before)
    # Inside a nested model too, and the layers after it are still walked.
    nested = keras.Sequential([keras.Input((3, 3, 2)), keras.layers.MaxPooling2D(name="inner_mp"), keras.layers.Flatten()], name="inner")
    outer = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="mid")(nested(keras.layers.Conv2D(2, 6, name="c6")(inputs))))
    outer = keras.Model(inputs, keras.layers.MaxPooling1D(name="outer_mp")(keras.layers.Reshape((2, 1))(outer.output)))
    with pytest.raises(ValueError) as error:
        keras_gsmooth.smooth_model(outer, sigma=0.1)
    message = str(error.value)
    assert "3 layer(s) or operation(s)" in message
    for expected in ["inner_mp (MaxPooling2D)", "mid (Dense): its activation 'softmax' is not elementwise", "outer_mp (MaxPooling1D)"]:
        assert expected in message


def test_frozen_batch_normalization_is_kept_and_a_trainable_one_refused():
    # A MobileNetV2-style residual block. Frozen, BatchNormalization is a
    # fixed affine map (its moving statistics), kept as it is.
    inputs = keras.Input((8, 8, 4))
    x = keras.layers.Conv2D(8, 1, use_bias=False, name="expand")(inputs)
    x = keras.layers.BatchNormalization(name="expand_bn")(x)
    x = keras.layers.ReLU(6.0, name="expand_relu")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="depthwise")(x)
    x = keras.layers.BatchNormalization(name="depthwise_bn")(x)
    x = keras.layers.ReLU(6.0, name="depthwise_relu")(x)
    x = keras.layers.Conv2D(4, 1, use_bias=False, name="project")(x)
    x = keras.layers.BatchNormalization(name="project_bn")(x)
    x = keras.layers.Add(name="residual")([inputs, x])
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="out")(pooled))
    data = random_inputs(model, batch=4)[0]
    rng = np.random.default_rng(9)
    for layer in model.layers:  # moving statistics away from their initial values
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([rng.normal(1.0, 0.2, gamma.shape), rng.normal(0.0, 0.2, beta.shape),
                               rng.normal(0.0, 0.5, mean.shape), rng.uniform(0.5, 2.0, variance.shape)])

    with pytest.raises(ValueError, match=r"(?s)expand_bn \(BatchNormalization\).*trainable = False"):
        keras_gsmooth.smooth_model(model, sigma=0.1)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    smoothed = keras_gsmooth.smooth_model(model, sigma=0.0, regularization=1e-2)
    for training in (False, True):  # a frozen BatchNormalization runs in inference mode either way
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(smoothed(data, training=training)),
            keras.ops.convert_to_numpy(model(data, training=training)),
            rtol=1e-5,
            atol=1e-5,
        )
    statistics = [w.copy() for w in smoothed.get_layer("project_bn").get_weights()]
    keras_gsmooth.set_sigma(smoothed, 0.3)
    smoothed(data, training=True)  # a trainable BatchNormalization would update its statistics here
    assert not smoothed.get_layer("project_bn").trainable
    for weight, before in zip(smoothed.get_layer("project_bn").get_weights(), statistics):
        np.testing.assert_array_equal(weight, before)


def _text_classifier(first_layer, inputs):
    x = first_layer(inputs)
    x = keras.layers.GlobalAveragePooling1D(name="mean_over_tokens")(x)
    x = keras.layers.Dense(6, activation="relu", name="hidden")(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))


def test_embedding_has_the_penalties_of_a_dense_layer_on_one_hot_data():
    # A lookup E[i] is a Dense without bias on the one-hot vector of i, raw
    # data: no penalty of its own, every penalty after it as for that Dense.
    vocabulary, length = 7, 5
    text = _text_classifier(keras.layers.Embedding(vocabulary, 4, name="tokens"), keras.Input((length,), dtype="int32"))
    one_hot = _text_classifier(keras.layers.Dense(4, use_bias=False, name="tokens"), keras.Input((length, vocabulary)))
    one_hot.set_weights(text.get_weights())
    before = snapshot(text)
    ids = np.random.default_rng(3).integers(0, vocabulary, size=(4, length)).astype("int32")
    one_hot_ids = np.eye(vocabulary, dtype="float32")[ids]

    smoothed_text = keras_gsmooth.smooth_model(text, sigma=0.4, regularization=0.7)
    smoothed_one_hot = keras_gsmooth.smooth_model(one_hot, sigma=0.4, regularization=0.7)
    np.testing.assert_allclose(outputs_of(smoothed_text, ids)[0], outputs_of(smoothed_one_hot, one_hot_ids)[0], rtol=1e-5, atol=1e-6)
    penalty = total_penalty(smoothed_text, ids)
    assert penalty > 0
    assert penalty == pytest.approx(total_penalty(smoothed_one_hot, one_hot_ids), rel=1e-5)
    assert not smoothed_text.get_layer("tokens").losses
    assert_unchanged(text, before)

    smoothed_text.compile(optimizer=keras.optimizers.SGD(0.1), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    table = keras.ops.convert_to_numpy(smoothed_text.get_layer("tokens").embeddings).copy()
    smoothed_text.fit(ids, np.array([0, 1, 2, 0]), epochs=1, batch_size=4, verbose=0)
    changed_rows = np.flatnonzero(np.any(keras.ops.convert_to_numpy(smoothed_text.get_layer("tokens").embeddings) != table, axis=1))
    np.testing.assert_array_equal(changed_rows, np.unique(ids))


def test_embedding_keeps_its_mask_through_conversion_and_saving(tmp_path):
    ids = np.array([[3, 1, 0, 0], [2, 2, 5, 0]], dtype="int32")  # 0 is padding
    text = _text_classifier(keras.layers.Embedding(6, 4, mask_zero=True, name="tokens"), keras.Input((4,), dtype="int32"))
    unmasked = _text_classifier(keras.layers.Embedding(6, 4, name="tokens"), keras.Input((4,), dtype="int32"))
    unmasked.set_weights(text.get_weights())
    smoothed = keras_gsmooth.smooth_model(text, sigma=0.0, regularization=0.1)
    np.testing.assert_allclose(outputs_of(smoothed, ids)[0], outputs_of(text, ids)[0], rtol=1e-5, atol=1e-6)
    assert not np.allclose(outputs_of(smoothed, ids)[0], outputs_of(unmasked, ids)[0], atol=1e-3)

    keras_gsmooth.set_sigma(smoothed, 0.3)
    path = os.path.join(tmp_path, "text.keras")
    smoothed.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(outputs_of(loaded, ids)[0], outputs_of(smoothed, ids)[0], rtol=1e-6, atol=1e-6)
    assert total_penalty(loaded, ids) == pytest.approx(total_penalty(smoothed, ids), rel=1e-5)


def test_embedding_of_computed_indices_is_refused():
    inputs = keras.Input((3,))
    scores = keras.layers.Dense(4, name="scores")(inputs)
    looked_up = keras.layers.Embedding(10, 2, name="lookup")(scores)
    model = keras.Model(inputs, keras.layers.Flatten()(looked_up))
    with pytest.raises(ValueError, match=r"(?s)lookup \(Embedding\).*indices are computed by the model.*register a rule"):
        keras_gsmooth.smooth_model(model, sigma=0.1)


def test_layers_that_cannot_be_cloned_are_listed_too():
    # A Lambda cannot be cloned from its config in Keras's safe mode; it is
    # listed with the other unsupported layers, and the original layers get
    # no new nodes.
    inputs = keras.Input((8,))
    x = keras.layers.Dense(4, activation="relu")(inputs)
    doubling = keras.layers.Lambda(lambda t: 2.0 * t, name="doubling")
    x = keras.layers.BatchNormalization(name="bn")(doubling(x))
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    before = snapshot(model)
    nodes_before = len(doubling._inbound_nodes)
    with pytest.raises(ValueError) as error:
        keras_gsmooth.smooth_model(model, sigma=0.1)
    message = str(error.value)
    assert "doubling (Lambda): an arbitrary Python function" in message
    assert "bn (BatchNormalization)" in message
    assert len(doubling._inbound_nodes) == nodes_before
    assert_unchanged(model, before)


def test_lambda_layers_on_raw_data_and_with_a_rule():
    # A Lambda on raw data is kept as preprocessing; elsewhere a user rule
    # can clone it with `rules.clone_layer`.
    inputs = keras.Input((6,))
    x = keras.layers.Lambda(lambda t: t / 4.0, name="rescale")(inputs)
    x = keras.layers.Dense(5, activation="relu")(x)
    x = keras.layers.Lambda(lambda t: 3.0 * t, name="triple")(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    keras_gsmooth.register_rule(keras.layers.Lambda, lambda layer, context: rules.Replacement(rules.clone_layer(layer)))
    try:
        smoothed = keras_gsmooth.smooth_model(model, sigma=0.0)
    finally:
        rules.unregister_rule(keras.layers.Lambda)
    assert smoothed.get_layer("triple") is not model.get_layer("triple")
    x = random_inputs(model)
    np.testing.assert_allclose(outputs_of(smoothed, x)[0], outputs_of(model, x)[0], rtol=1e-6)


def test_layers_without_trainable_weights_on_raw_data_are_preprocessing():
    # An adapted Normalization and a frozen Dense(relu) on the inputs are
    # fixed functions of the data: kept unsmoothed, and the first trainable
    # layer after them gets no input penalty.
    rng = np.random.default_rng(3)
    data = (10.0 * rng.random((32, 6))).astype("float32")
    normalization = keras.layers.Normalization(name="norm")
    normalization.adapt(data)
    frozen = keras.layers.Dense(5, activation="relu", name="frozen")
    frozen.trainable = False
    inputs = keras.Input((6,))
    features = frozen(normalization(inputs))
    outputs = keras.layers.Dense(2, name="head")(keras.layers.Dense(4, activation="relu", name="hidden")(features))
    model = keras.Model(inputs, outputs)
    before = snapshot(model)
    smoothed = keras_gsmooth.smooth_model(model, sigma=0.5, regularization=1.0)
    assert_unchanged(model, before)
    assert not smoothed.get_layer("frozen").trainable
    assert keras.activations.serialize(smoothed.get_layer("frozen").activation) == "relu"
    names = [layer.name for layer in smoothed.layers]
    # The head's input penalty moved into the smoothed relu split off `hidden` (test_activation_takes_...).
    assert "hidden_input_penalty" not in names and "head_input_penalty" not in names
    assert smoothed.get_layer("hidden_activation").output_penalty.units == 2
    feature_model = keras.Model(smoothed.inputs, smoothed.get_layer("frozen").output)
    original_features = keras.Model(model.inputs, features)
    np.testing.assert_allclose(outputs_of(feature_model, data)[0], outputs_of(original_features, data)[0], rtol=1e-6)
    keras_gsmooth.set_sigma(smoothed, 0.0)
    np.testing.assert_allclose(outputs_of(smoothed, data)[0], outputs_of(model, data)[0], rtol=1e-5, atol=1e-6)


def test_keras_ops_on_raw_data_are_preprocessing():
    # A functional model may call keras.ops directly. On the inputs such an
    # operation is a fixed function of the data, kept (cloned, so the
    # original operations get no new nodes).
    inputs = keras.Input((6,), dtype="int32")
    scaled = keras.ops.cast(inputs, "float32") / 4.0
    hidden = keras.layers.Dense(5, activation="relu", name="hidden")(scaled)
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(hidden))
    operations = [node.operation for nodes in model._nodes_by_depth.values() for node in nodes]
    nodes_before = {id(op): len(op._inbound_nodes) for op in operations}
    data = np.random.default_rng(4).integers(0, 9, size=(3, 6)).astype("int32")
    smoothed = keras_gsmooth.smooth_model(model, sigma=0.0, regularization=1.0)
    np.testing.assert_allclose(outputs_of(smoothed, data)[0], outputs_of(model, data)[0], rtol=1e-6)
    assert {id(op): len(op._inbound_nodes) for op in operations} == nodes_before
    names = [layer.name for layer in smoothed.layers]
    # The head's input penalty moved into the smoothed relu split off `hidden` (test_activation_takes_...).
    assert "hidden_input_penalty" not in names and "head_input_penalty" not in names
    assert smoothed.get_layer("hidden_activation").output_penalty.units == 2


def _feature_layers(inputs):
    return keras.layers.Dense(4, name="features")(inputs)


# Graphs from a (batch, 3, 2) input: the activation is the layer called "act"
# (or the one split off "features"), the Dense layer whose input penalty may
# move is "dense".
PENALTY_MOVES = {
    "an Activation layer, then the Dense layer": lambda h: keras.layers.Dense(3, name="dense")(
        keras.layers.Activation("tanh", name="act")(_feature_layers(h))
    ),
    "an activation split off a Dense layer": lambda h: keras.layers.Dense(3, name="dense")(
        keras.layers.Dense(4, activation="relu", name="features")(h)
    ),
    "through Flatten": lambda h: keras.layers.Dense(3, name="dense")(
        keras.layers.Flatten()(keras.layers.ReLU(name="act")(_feature_layers(h)))
    ),
}

PENALTY_STAYS = {
    "the activation's output read twice": lambda h: (
        lambda a: [keras.layers.Dense(3, name="dense")(a), keras.layers.Dense(2, name="other")(a)]
    )(keras.layers.Activation("relu", name="act")(_feature_layers(h))),
    "a shared activation layer": lambda h: (
        lambda act, f: [keras.layers.Dense(3, name="dense")(act(f)), act(f * 2.0)]
    )(keras.layers.Activation("relu", name="act"), _feature_layers(h)),
    "a Conv1D after": lambda h: keras.layers.Conv1D(3, 2, name="dense")(
        keras.layers.Activation("relu", name="act")(_feature_layers(h))
    ),
}


@pytest.mark.parametrize("case", sorted(PENALTY_MOVES) + sorted(PENALTY_STAYS))
def test_activation_takes_the_input_penalty_of_the_dense_layer_after(case, tmp_path):
    """A smoothed activation carries the input penalty of the Dense layer its output alone feeds.

    The same value, with one layer call less. Where anything else reads the
    activation's output, the penalty stays in its own layer; either way the
    outputs and the total penalty equal those of a model whose penalty stays.
    """
    inputs = keras.Input((3, 2))
    outputs = (PENALTY_MOVES.get(case) or PENALTY_STAYS[case])(inputs)
    model = keras.Model(inputs, outputs)
    smoothed = keras_gsmooth.smooth_model(model, sigma=0.4, regularization=0.3)
    names = [layer.name for layer in smoothed.layers]
    if case in PENALTY_MOVES:
        assert "dense_input_penalty" not in names
        carrier = smoothed.get_layer("act" if "act" in names else "features_activation")
        assert carrier.output_penalty.get_config() == keras_gsmooth.regularizers.DenseInputPenalty(3, 0.3).get_config()
        assert carrier.output_penalty.is_sigma_bound
    else:
        assert "dense_input_penalty" in names
        assert all(getattr(layer, "output_penalty", None) is None for layer in smoothed.layers)
    # The activation's output also an output of the model: its readers' penalties stay apart.
    activation_output = (model.get_layer("act") if "act" in [layer.name for layer in model.layers] else model.get_layer("features")).output
    apart = keras_gsmooth.smooth_model(
        keras.Model(inputs, [*keras.tree.flatten(outputs), activation_output]), sigma=0.4, regularization=0.3
    )
    assert "dense_input_penalty" in [layer.name for layer in apart.layers]
    x = np.random.default_rng(5).normal(size=(4, 3, 2)).astype("float32")
    for got, expected in zip(outputs_of(smoothed, x), outputs_of(apart, x)):
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(total_penalty(smoothed, x), total_penalty(apart, x), rtol=1e-5)
    path = os.path.join(tmp_path, "moved.keras")
    smoothed.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(total_penalty(loaded, x), total_penalty(smoothed, x), rtol=1e-6)


def _residual_block(written_with_ops):
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(5, name="first")(inputs)
    if written_with_ops:
        activated = keras.ops.leaky_relu(hidden, negative_slope=0.1)
        branch = keras.layers.Dense(5, name="branch")(activated)
        merged = keras.ops.mean(keras.ops.reshape(activated + branch, (-1, 5, 1)) * 0.5, axis=-1)
    else:
        activated = keras.layers.LeakyReLU(0.1, name="activated")(hidden)
        branch = keras.layers.Dense(5, name="branch")(activated)
        merged = keras.layers.Rescaling(0.5)(keras.layers.Add()([activated, branch]))
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(merged))


def test_keras_ops_on_computed_tensors_convert_like_the_layers_they_stand_for(tmp_path):
    # `a + b`, `* 0.5`, a reshape and a mean are fixed linear maps (kept);
    # `keras.ops.leaky_relu` is smoothed like the LeakyReLU layer.
    with_ops, with_layers = _residual_block(True), _residual_block(False)
    with_layers.set_weights(with_ops.get_weights())
    before = snapshot(with_ops)
    x = random_inputs(with_ops, batch=3)
    smoothed_ops = keras_gsmooth.smooth_model(with_ops, sigma=0.3, regularization=0.5)
    smoothed_layers = keras_gsmooth.smooth_model(with_layers, sigma=0.3, regularization=0.5)
    np.testing.assert_allclose(outputs_of(smoothed_ops, x)[0], outputs_of(smoothed_layers, x)[0], rtol=1e-5, atol=1e-6)
    penalty = total_penalty(smoothed_ops, x)
    assert penalty > total_penalty(keras_gsmooth.smooth_model(with_ops, sigma=0.3, regularization={"first": 0.5, "branch": 0.5, "head": 0.5}), x)
    assert penalty == pytest.approx(total_penalty(smoothed_layers, x), rel=1e-5)
    assert_unchanged(with_ops, before)

    path = os.path.join(tmp_path, "ops.keras")
    smoothed_ops.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(outputs_of(loaded, x)[0], outputs_of(smoothed_ops, x)[0], rtol=1e-6, atol=1e-6)
    assert total_penalty(loaded, x) == pytest.approx(penalty, rel=1e-5)
    keras_gsmooth.set_sigma(smoothed_ops, 0.0)
    np.testing.assert_allclose(outputs_of(smoothed_ops, x)[0], outputs_of(with_ops, x)[0], rtol=1e-5, atol=1e-6)


_ACTIVATION_OPERATIONS = [
    lambda x: keras.ops.relu(x),
    lambda x: keras.ops.relu6(x),
    lambda x: keras.ops.leaky_relu(x, negative_slope=0.3),
    lambda x: keras.ops.elu(x, alpha=0.5),
    lambda x: keras.ops.selu(x),
    lambda x: keras.ops.celu(x, alpha=2.0),
    lambda x: keras.ops.gelu(x, approximate=False),
    lambda x: keras.ops.gelu(x, approximate=True),
    lambda x: keras.ops.silu(x),
    lambda x: keras.ops.sigmoid(x),
    lambda x: keras.ops.hard_sigmoid(x),
    lambda x: keras.ops.hard_silu(x),
    lambda x: keras.ops.log_sigmoid(x),
    lambda x: keras.ops.softplus(x),
    lambda x: keras.ops.softsign(x),
    lambda x: keras.ops.tanh(x),
    lambda x: keras.ops.exp(x),
    lambda x: keras.ops.softmax(x, axis=-1),
    lambda x: keras.ops.log_softmax(x, axis=-1),
]


@pytest.mark.parametrize("index", range(len(_ACTIVATION_OPERATIONS)))
def test_every_activation_operation_becomes_its_keras_activation(index):
    # The table of activation operations: each one, as the model's output
    # (where a softmax may stay), gives the original's values at σ = 0.
    inputs = keras.Input((4,))
    model = keras.Model(inputs, _ACTIVATION_OPERATIONS[index](keras.layers.Dense(4, name="dense_in")(inputs)))
    smoothed = keras_gsmooth.smooth_model(model, sigma=0.0, regularization=0.1)
    x = random_inputs(model, batch=5)
    np.testing.assert_allclose(outputs_of(smoothed, x)[0], outputs_of(model, x)[0], rtol=1e-5, atol=1e-5)
    softmax = index >= len(_ACTIVATION_OPERATIONS) - 2  # kept unsmoothed on the output
    assert any(isinstance(layer, SmoothActivation) for layer in smoothed.layers) != softmax


def test_keras_ops_without_a_linear_or_activation_form_are_refused():
    inputs = keras.Input((4,))
    a = keras.layers.Dense(4, name="a")(inputs)
    b = keras.layers.Dense(4, name="b")(inputs)
    outputs = [a * b, 1.0 / a, keras.ops.matmul(keras.ops.expand_dims(a, -1), keras.ops.expand_dims(b, 1)), keras.ops.square(a), keras.ops.softmax(a) + b]
    model = keras.Model(inputs, outputs)
    before = snapshot(model)
    with pytest.raises(ValueError) as error:
        keras_gsmooth.smooth_model(model, sigma=0.1)
    message = str(error.value)
    assert "5 layer(s) or operation(s)" in message
    for expected in [
        "(Multiply): a product of tensors the model computes",
        "(TrueDivide): a division by a tensor the model computes",
        "(Matmul): a keras.ops operation on a tensor the model computes, with no smoothing rule",
        "(Square): a keras.ops operation",
        "(Softmax): its activation is not elementwise",
        "keras.layers.Multiply for a product",
    ]:
        assert expected in message
    assert_unchanged(model, before)


def test_a_smoothed_model_is_not_smoothed_again():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="relu"), keras.layers.Dense(1)])
    smoothed = keras_gsmooth.smooth_model(model, sigma=0.1)
    with pytest.raises(ValueError, match="already smoothed.*set_sigma"):
        keras_gsmooth.smooth_model(smoothed, sigma=0.2)
    # A plain functional model built from a smoothed model's layers.
    rebuilt = keras.Model(smoothed.inputs, smoothed.outputs)
    with pytest.raises(ValueError, match=r"\(SmoothActivation\): a layer of an already smoothed model"):
        keras_gsmooth.smooth_model(rebuilt, sigma=0.2)


def _centered(x):
    return x - keras.ops.mean(x, axis=-1, keepdims=True)


def _cube(x):
    return x * x * x


def test_user_activation_functions_are_probed_and_kept_where_they_belong():
    # Unregistered user functions: an elementwise one is smoothed anywhere; a
    # non-elementwise one is refused in a hidden layer and kept, unsmoothed,
    # on the output layer.
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(3, activation=_cube, name="cubed")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, activation=_centered, name="out")(hidden))
    smoothed = keras_gsmooth.smooth_model(model, sigma=0.0)
    assert isinstance(smoothed.get_layer("cubed_activation").activation, keras_gsmooth.activations.GaussHermite)
    assert smoothed.get_layer("out").activation is _centered
    x = random_inputs(model)
    np.testing.assert_allclose(outputs_of(smoothed, x)[0], outputs_of(model, x)[0], rtol=1e-5, atol=1e-6)
    inner = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Dense(3, activation=_centered, name="centered")(inputs)))
    with pytest.raises(ValueError, match=r"centered \(Dense\): its activation '_centered' is not elementwise"):
        keras_gsmooth.smooth_model(inner, sigma=0.1)
    # A function that fails on the probe arrays is listed with its layer.
    broken = keras.Model(inputs, keras.layers.Dense(4, activation=lambda x: keras.ops.reshape(x, (-1, 4)), name="reshaping")(inputs))
    with pytest.raises(ValueError, match=r"reshaping \(Dense\): the activation function .* could not be evaluated"):
        keras_gsmooth.smooth_model(broken, sigma=0.1)


def test_a_softmax_is_kept_only_where_it_gives_an_output_of_the_whole_model():
    # A nested model's last softmax that feeds further layers is a hidden
    # softmax, and so is a shared one with a hidden call: both refused.
    inputs = keras.Input((5,))
    hidden = keras.layers.Dense(5, activation="relu", name="first")(inputs)
    head = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, activation="softmax", name="probabilities")], name="head")
    with pytest.raises(ValueError, match=r"probabilities \(Dense\): its activation 'softmax' is not elementwise"):
        keras_gsmooth.smooth_model(keras.Model(inputs, keras.layers.Dense(1)(head(hidden))), sigma=0.1)
    ending = keras_gsmooth.smooth_model(keras.Model(inputs, head(hidden)), sigma=0.1)
    assert ending.get_layer("head").get_layer("probabilities").get_config()["activation"] == "softmax"
    shared = keras.layers.Dense(5, activation="softmax", name="shared")
    twice = keras.Model(inputs, [shared(hidden), keras.layers.Dense(1)(shared(hidden))])
    with pytest.raises(ValueError, match=r"shared \(Dense\): its activation 'softmax' is not elementwise"):
        keras_gsmooth.smooth_model(twice, sigma=0.1)


def test_max_pooling_opt_in():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(2, 3, name="c")(inputs)
    x = keras.layers.MaxPooling2D(2, name="mp")(x)
    model = keras.Model(inputs, keras.layers.Flatten()(x))
    smoothed = keras_gsmooth.smooth_model(model, sigma=0.1, replace_max_pooling=True)
    assert isinstance(smoothed.get_layer("mp"), keras.layers.AveragePooling2D)


class Scale(keras.layers.Layer):
    def call(self, x):
        return 3.0 * x


def test_register_rule_with_a_user_layer():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(Scale(name="scale")(keras.layers.Dense(4)(inputs))))
    with pytest.raises(ValueError, match=r"scale \(Scale\)"):
        keras_gsmooth.smooth_model(model, sigma=0.1)

    def scale_rule(layer, context):
        return rules.Replacement(rules.clone_layer(layer))

    keras_gsmooth.register_rule(Scale, scale_rule)
    try:
        smoothed = keras_gsmooth.smooth_model(model, sigma=0.0)
        x = random_inputs(model)
        np.testing.assert_allclose(outputs_of(smoothed, x)[0], outputs_of(model, x)[0], rtol=1e-6)
    finally:
        rules.unregister_rule(Scale)


def test_rule_returning_the_original_layer_is_refused():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, Scale(name="scale")(keras.layers.Dense(4)(inputs)))
    keras_gsmooth.register_rule(Scale, lambda layer, context: rules.Replacement(layer))
    try:
        with pytest.raises(ValueError, match="returned the original layer"):
            keras_gsmooth.smooth_model(model)
    finally:
        rules.unregister_rule(Scale)


def test_regularization_forms():
    model = keras_gsmooth.models.paper_cnn(input_shape=(8, 8, 1))
    by_callable = keras_gsmooth.smooth_model(model, sigma=0.2, regularization=lambda layer: 0.5 if layer.name == "hidden" else 0.0)
    assert by_callable.get_layer("hidden").kernel_penalty.regularization == pytest.approx(0.5)
    assert type(by_callable.get_layer("logits")) is keras.layers.Dense  # λ = 0: no penalty
    assert by_callable.get_layer("logits").kernel_regularizer is None
    with pytest.raises(ValueError, match="not in model"):
        keras_gsmooth.smooth_model(model, regularization={"hiden": 1.0})
    with pytest.raises(ValueError, match="regularization"):
        keras_gsmooth.smooth_model(model, regularization=-1.0)
    with pytest.raises(ValueError, match="smooth_model: `sigma`"):
        keras_gsmooth.smooth_model(model, sigma=float("nan"))


def test_unbuilt_sequential_and_subclassed_models_are_refused():
    with pytest.raises(ValueError, match="not built"):
        keras_gsmooth.smooth_model(keras.Sequential([keras.layers.Dense(2)]))

    class Custom(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="subclassed"):
        keras_gsmooth.smooth_model(Custom())


def test_a_model_name_with_a_dot_gets_a_loadable_smoothed_name():
    # PyTorch refuses '.' in the σ variable's path "<name>/sigma"; Keras names
    # some of its applications so ("mobilenetv2_1.00_224").
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs), name="net_1.5")
    before = snapshot(model)
    assert keras_gsmooth.smooth_model(model, sigma=0.1).name == "net_1_5_smoothed"
    with pytest.raises(ValueError, match=r"`name` 'mine\.v2' contains '\.'.*'mine_v2'"):
        keras_gsmooth.smooth_model(model, sigma=0.1, name="mine.v2")
    assert_unchanged(model, before)


@pytest.mark.parametrize("positions", [(5,), (3, 4)])
def test_dense_on_positions_has_the_penalties_of_a_pointwise_convolution(positions):
    # A Dense on (batch, ..., features) is a 1×1 convolution: its kernel
    # penalty counts every position, as the convolution's tap counts do.
    def network(pointwise):
        inputs = keras.Input(positions + (3,))
        hidden = keras.layers.Dense(4, activation="tanh", name="first")(inputs)
        return keras.Model(inputs, keras.layers.Dense(2, name="head")(pointwise(hidden)))

    dense = network(keras.layers.Dense(6, activation="relu", name="pointwise"))
    convolution_class = keras.layers.Conv1D if len(positions) == 1 else keras.layers.Conv2D
    convolution = network(convolution_class(6, 1, activation="relu", name="pointwise"))
    convolution.set_weights([w.reshape(c.shape) for w, c in zip(dense.get_weights(), convolution.get_weights())])
    x = random_inputs(dense, batch=2)
    smoothed_dense = keras_gsmooth.smooth_model(dense, sigma=0.4, regularization={"pointwise": 0.8})
    smoothed_convolution = keras_gsmooth.smooth_model(convolution, sigma=0.4, regularization={"pointwise": 0.8})
    np.testing.assert_allclose(outputs_of(smoothed_dense, x)[0], outputs_of(smoothed_convolution, x)[0], rtol=1e-5, atol=1e-6)
    assert total_penalty(smoothed_dense, x) == pytest.approx(total_penalty(smoothed_convolution, x), rel=1e-5)
    assert smoothed_dense.get_layer("pointwise").kernel_penalty.regularization == pytest.approx(0.8 * math.prod(positions))


def _einsum_network(equation, input_shape, output_shape, bias_axes=None, activation=None):
    inputs = keras.Input(input_shape)
    hidden = keras.layers.Dense(input_shape[-1], name="first")(inputs)
    layer = keras.layers.EinsumDense(equation, output_shape, bias_axes=bias_axes, activation=activation, name="einsum")
    return keras.Model(inputs, layer(hidden))


def _squared_jacobian_norm(function, shape):
    """Σ‖∂f/∂v_i‖² over the entries of a `v` of `shape`, f linear, from its values on the basis."""
    total = 0.0
    for index in np.ndindex(*shape):
        basis = np.zeros(shape)
        basis[index] = 1.0
        total += np.sum(function(basis) ** 2)
    return total


@pytest.mark.parametrize(
    "equation, input_shape, output_shape, bias_axes",
    [
        ("abc,cd->abd", (5, 3), (5, 4), "d"),  # a Dense on positions
        ("ab,bcd->acd", (3,), (2, 4), None),  # units on two axes
        ("abc,bcd->abd", (5, 3), (5, 4), "bd"),  # one kernel per position
        ("abcd,cde->abe", (4, 2, 3), (4, 5), None),  # two contracted axes
        ("...b,bc->...c", (2, 3, 3), (4,), "c"),  # an ellipsis
    ],
)
def test_einsum_dense_has_the_penalties_of_its_perturbed_products(equation, input_shape, output_shape, bias_axes):
    # The penalties from their definition: λσ²/2 times the squared Jacobian of
    # the layer's output with respect to its input per sample (the kernel
    # penalty, the input perturbed) plus the batch mean of that with respect
    # to the kernel (the input penalty, the kernel perturbed).
    model = _einsum_network(equation, input_shape, output_shape, bias_axes)
    rng = np.random.default_rng(3)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in model.get_weights()])
    x = rng.normal(size=(3, *input_shape)).astype("float32")
    sigma, regularization = 0.6, 0.7
    smoothed = keras_gsmooth.smooth_model(model, sigma=sigma, regularization={"einsum": regularization})
    first_kernel, first_bias = (w.astype("float64") for w in model.get_layer("first").get_weights())
    hidden = x.astype("float64") @ first_kernel + first_bias
    kernel = keras.ops.convert_to_numpy(model.get_layer("einsum").kernel).astype("float64")
    kernel_term = _squared_jacobian_norm(lambda v: np.einsum(equation, v[None], kernel), input_shape)
    input_term = np.mean([_squared_jacobian_norm(lambda w: np.einsum(equation, h[None], w), kernel.shape) for h in hidden])
    expected = regularization * sigma**2 / 2 * (kernel_term + input_term)
    assert total_penalty(smoothed, x) == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(outputs_of(smoothed, x)[0], outputs_of(model, x)[0], rtol=1e-5, atol=1e-5)


def test_einsum_dense_keeps_its_outputs_at_sigma_zero_with_its_activation_split():
    model = _einsum_network("abc,cd->abd", (5, 3), (5, 4), "d", activation="relu")
    before = snapshot(model)
    smoothed = keras_gsmooth.smooth_model(model, sigma=0.0, regularization=0.3)
    assert isinstance(smoothed.get_layer("einsum_activation"), SmoothActivation)
    assert smoothed.get_layer("einsum").get_config()["activation"] == "linear"
    x = random_inputs(model)
    np.testing.assert_allclose(outputs_of(smoothed, x)[0], outputs_of(model, x)[0], rtol=1e-5, atol=1e-6)
    assert_unchanged(model, before)


@pytest.mark.parametrize(
    "equation, reason",
    [
        ("abc,cd->ad", "sums input axes ['b'] that the kernel does not have"),
        ("abb,bd->ad", "repeats an axis label within an operand"),
    ],
)
def test_an_einsum_dense_whose_penalties_are_not_known_is_refused_when_penalized(equation, reason):
    model = _einsum_network(equation, (3, 3), (4,))
    with pytest.raises(ValueError) as error:
        keras_gsmooth.smooth_model(model, sigma=0.1, regularization=1.0)
    assert f"einsum (EinsumDense): its equation {equation!r} {reason}" in str(error.value)
    # Without penalties the layer is linear and converts as it is.
    keras_gsmooth.smooth_model(model, sigma=0.1, regularization={"first": 1.0})


def _framewise_network(make_layer, input_shape):
    inputs = keras.Input(input_shape)
    hidden = keras.layers.Dense(2, name="first")(inputs)
    hidden = make_layer()(hidden)
    return keras.Model(inputs, keras.layers.Dense(1, name="head")(keras.layers.Flatten(name="flat")(hidden)))


@pytest.mark.parametrize(
    "make_wrapped, make_equivalent, input_shape",
    [
        # A convolution of each frame is a 3-D convolution one frame deep.
        (
            lambda: keras.layers.TimeDistributed(keras.layers.Conv2D(4, 3, padding="same", activation="relu"), name="frames"),
            lambda: keras.layers.Conv3D(4, (1, 3, 3), padding="same", activation="relu", name="frames"),
            (3, 5, 5, 2),
        ),
        # A Dense of each step is a Dense on positions.
        (
            lambda: keras.layers.TimeDistributed(keras.layers.Dense(4, activation="tanh"), name="frames"),
            lambda: keras.layers.Dense(4, activation="tanh", name="frames"),
            (3, 2),
        ),
        # A PReLU of each step is a PReLU whose slopes are shared across steps;
        # its smoothed form adds its penalty when called, once per step.
        (
            lambda: keras.layers.TimeDistributed(keras.layers.PReLU(), name="frames"),
            lambda: keras.layers.PReLU(shared_axes=[1], name="frames"),
            (3, 2),
        ),
        # A separable convolution of each step is one a step deep.
        (
            lambda: keras.layers.TimeDistributed(keras.layers.SeparableConv1D(4, 3, activation="relu"), name="frames"),
            lambda: keras.layers.SeparableConv2D(4, (1, 3), activation="relu", name="frames"),
            (3, 6, 2),
        ),
    ],
)
def test_time_distributed_has_the_penalties_of_the_same_layer_across_steps(make_wrapped, make_equivalent, input_shape):
    wrapped = _framewise_network(make_wrapped, input_shape)
    equivalent = _framewise_network(make_equivalent, input_shape)
    equivalent.set_weights([w.reshape(e.shape) for w, e in zip(wrapped.get_weights(), equivalent.get_weights())])
    x = random_inputs(wrapped, batch=2)
    lambdas = {"frames": 0.8, "head": 0.3}
    smoothed_wrapped = keras_gsmooth.smooth_model(wrapped, sigma=0.4, regularization=lambdas)
    smoothed_equivalent = keras_gsmooth.smooth_model(equivalent, sigma=0.4, regularization=lambdas)
    assert isinstance(smoothed_wrapped.get_layer("frames"), keras.layers.TimeDistributed)
    # The same layers (inputs aside), named alike: input penalty, split activation.
    assert [layer.name for layer in smoothed_wrapped.layers[1:]] == [layer.name for layer in smoothed_equivalent.layers[1:]]
    np.testing.assert_allclose(outputs_of(smoothed_wrapped, x)[0], outputs_of(smoothed_equivalent, x)[0], rtol=1e-5, atol=1e-6)
    assert total_penalty(smoothed_wrapped, x) == pytest.approx(total_penalty(smoothed_equivalent, x), rel=1e-5)


def test_time_distributed_elementwise_layers_unwrap_and_the_model_saves(tmp_path):
    inputs = keras.Input((3, 4))
    hidden = keras.layers.Dense(5, name="first")(inputs)
    hidden = keras.layers.TimeDistributed(keras.layers.Activation("relu"), name="act")(hidden)
    hidden = keras.layers.TimeDistributed(keras.layers.Dropout(0.3), name="drop")(hidden)
    outputs = keras.layers.TimeDistributed(keras.layers.Dense(3, activation="softmax"), name="out")(hidden)
    model = keras.Model(inputs, outputs)
    before = snapshot(model)
    x = random_inputs(model)
    at_zero = keras_gsmooth.smooth_model(model, sigma=0.0, regularization=0.5)
    np.testing.assert_allclose(outputs_of(at_zero, x)[0], outputs_of(model, x)[0], rtol=1e-5, atol=1e-6)
    assert_unchanged(model, before)
    smoothed = keras_gsmooth.smooth_model(model, sigma=0.3, regularization=0.5)
    assert isinstance(smoothed.get_layer("act"), SmoothActivation)
    assert isinstance(smoothed.get_layer("drop"), keras_gsmooth.layers.InputPenalty)
    assert isinstance(smoothed.get_layer("out_input_penalty").activity_regularizer, keras_gsmooth.regularizers.TimeDistributedPenalty)
    smoothed.save(tmp_path / "steps.keras")
    restored = keras.saving.load_model(tmp_path / "steps.keras", safe_mode=True)
    np.testing.assert_allclose(outputs_of(restored, x)[0], outputs_of(smoothed, x)[0], rtol=1e-6, atol=1e-7)
    assert total_penalty(restored, x) == pytest.approx(total_penalty(smoothed, x), rel=1e-6)
    assert keras_gsmooth.get_sigma(restored) == pytest.approx(0.3)
    # Every σ-dependent penalty, the one inside TimeDistributedPenalty
    # included, reads the model's σ: at 0 only dropout's penalty is left.
    keras_gsmooth.set_sigma(restored, 0.0)
    assert total_penalty(restored, x) == pytest.approx(total_penalty(at_zero, x), rel=1e-6)
    assert total_penalty(restored, x) < total_penalty(smoothed, x)


def test_time_distributed_layers_that_cannot_be_smoothed_are_refused():
    inputs = keras.Input((3, 6, 6, 2))
    hidden = keras.layers.Dense(2, activation="relu", name="first")(inputs)
    outputs = keras.layers.TimeDistributed(keras.layers.MaxPooling2D(name="pool"), name="pools")(hidden)
    with pytest.raises(ValueError) as error:
        keras_gsmooth.smooth_model(keras.Model(inputs, outputs), sigma=0.1, regularization=1.0)
    message = str(error.value)
    assert "pools (TimeDistributed): its layer 'pool' (MaxPooling2D) cannot be smoothed: " in message
    assert "replace_max_pooling=True" in message
    replaced = keras_gsmooth.smooth_model(keras.Model(inputs, outputs), sigma=0.1, replace_max_pooling=True)
    assert isinstance(replaced.get_layer("pools").layer, keras_gsmooth.layers.AveragePooling2D)

    frame_model = keras.Sequential([keras.Input((6, 6, 2)), keras.layers.Conv2D(3, 3)], name="per_frame")
    outputs = keras.layers.TimeDistributed(frame_model, name="frames")(hidden)
    with pytest.raises(ValueError, match=r"frames \(TimeDistributed\): it wraps the model 'per_frame'"):
        keras_gsmooth.smooth_model(keras.Model(inputs, outputs), sigma=0.1)

    inputs = keras.Input((None, 4))
    hidden = keras.layers.Dense(2, activation="relu", name="first")(inputs)
    outputs = keras.layers.TimeDistributed(keras.layers.Dense(2), name="steps")(hidden)
    with pytest.raises(ValueError, match=r"steps \(TimeDistributed\): its input has a dynamic shape \(None,\)"):
        keras_gsmooth.smooth_model(keras.Model(inputs, outputs), sigma=0.1, regularization=1.0)
    keras_gsmooth.smooth_model(keras.Model(inputs, outputs), sigma=0.1, regularization={"first": 1.0})


def test_masks_pass_through_the_smoothed_model():
    # A masked average pools the unpadded positions only, smoothed or not:
    # more padding changes nothing (the docs' converter guide says so).
    inputs = keras.Input((None,), dtype="int32")
    hidden = keras.layers.Embedding(12, 4, mask_zero=True, name="tokens")(inputs)
    hidden = keras.layers.Dense(5, activation="relu", name="per_token")(hidden)
    hidden = keras.layers.TimeDistributed(keras.layers.Dense(3, activation="gelu"), name="steps")(hidden)
    hidden = keras.layers.Dropout(0.2, name="drop")(hidden)
    outputs = keras.layers.Dense(2, name="head")(keras.layers.GlobalAveragePooling1D(name="average")(hidden))
    model = keras.Model(inputs, outputs)
    tokens = np.array([[3, 7, 1, 0, 0], [5, 2, 0, 0, 0]])
    longer = np.concatenate([tokens, np.zeros((2, 3), tokens.dtype)], axis=1)
    at_zero = keras_gsmooth.smooth_model(model, sigma=0.0)
    np.testing.assert_allclose(outputs_of(at_zero, tokens)[0], outputs_of(model, tokens)[0], rtol=1e-6, atol=1e-7)
    smoothed = keras_gsmooth.smooth_model(model, sigma=0.4)
    np.testing.assert_allclose(outputs_of(smoothed, longer)[0], outputs_of(smoothed, tokens)[0], rtol=1e-5, atol=1e-6)
    assert not np.allclose(outputs_of(smoothed, tokens)[0], outputs_of(model, tokens)[0], atol=1e-4)


def test_a_penalized_layer_on_a_dynamic_length_is_refused():
    inputs = keras.Input((None, 3))
    hidden = keras.layers.Dense(4, activation="relu", name="first")(inputs)  # raw data: no penalty, no count
    hidden = keras.layers.Dense(4, name="per_token")(hidden)
    outputs = keras.layers.Conv1D(2, 3, name="over_tokens")(hidden)
    with pytest.raises(ValueError) as error:
        keras_gsmooth.smooth_model(keras.Model(inputs, outputs), sigma=0.1, regularization=1.0)
    message = str(error.value)
    assert "2 layer(s) or operation(s)" in message
    for name in ["per_token (Dense)", "over_tokens (Conv1D)"]:
        assert f"{name}: its input has a dynamic shape (None,)" in message
    assert "give the model's Input a full shape" in message
    keras_gsmooth.smooth_model(keras.Model(inputs, outputs), sigma=0.1, regularization={"first": 1.0})


def test_a_nested_model_called_twice_counts_its_layers_penalties_twice():
    # As shared layers do: the nested model's penalties equal those of its
    # layers shared directly between the two calls.
    inputs = [keras.Input((4,)), keras.Input((4,))]
    hidden = [keras.layers.Dense(4, activation="relu", name=f"first_{i}")(x) for i, x in enumerate(inputs)]
    dense, activation = keras.layers.Dense(3, name="dense"), keras.layers.Activation("tanh", name="tanh")
    direct = keras.Model(inputs, keras.layers.Add(name="sum")([activation(dense(h)) for h in hidden]))
    block = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="dense"), keras.layers.Activation("tanh", name="tanh")], name="block")
    nested = keras.Model(inputs, keras.layers.Add(name="sum")([block(h) for h in hidden]))
    nested.set_weights(direct.get_weights())
    x = random_inputs(direct)
    smoothed_direct = keras_gsmooth.smooth_model(direct, sigma=0.5, regularization=0.7)
    smoothed_nested = keras_gsmooth.smooth_model(nested, sigma=0.5, regularization=0.7)
    np.testing.assert_allclose(outputs_of(smoothed_nested, x)[0], outputs_of(smoothed_direct, x)[0], rtol=1e-5, atol=1e-6)
    assert total_penalty(smoothed_nested, x) == pytest.approx(total_penalty(smoothed_direct, x), rel=1e-5)


@pytest.mark.parametrize(
    "make_layer, lengths",
    [
        (lambda name: keras.layers.Dense(3, name=name), (3, 5)),
        (lambda name: keras.layers.Conv1D(3, 2, padding="same", name=name), (4, 7)),
        (lambda name: keras.layers.SeparableConv1D(3, 3, name=name), (5, 8)),
    ],
)
def test_a_layer_shared_between_inputs_of_different_lengths_counts_each_call_with_its_shape(make_layer, lengths):
    # The lifted objective has one constraint per call: the shared layer's
    # penalties equal those of separate copies with the same weights.
    def network(shared):
        inputs = [keras.Input((length, 2)) for length in lengths]
        hidden = [keras.layers.Dense(2, activation="relu", name=f"first_{i}")(x) for i, x in enumerate(inputs)]
        layers = [make_layer("shared")] * 2 if shared else [make_layer(f"copy_{i}") for i in range(2)]
        pooled = [keras.layers.GlobalAveragePooling1D()(layer(x)) for layer, x in zip(layers, hidden)]
        return keras.Model(inputs, keras.layers.Concatenate()(pooled))

    shared, separate = network(True), network(False)
    for layer in separate.layers:
        if layer.name.startswith("copy_"):
            layer.set_weights(shared.get_layer("shared").get_weights())
        elif layer.weights:
            layer.set_weights(shared.get_layer(layer.name).get_weights())
    x = random_inputs(shared, batch=2)
    smoothed_shared = keras_gsmooth.smooth_model(shared, sigma=0.3, regularization=0.7)
    smoothed_separate = keras_gsmooth.smooth_model(separate, sigma=0.3, regularization=0.7)
    np.testing.assert_allclose(outputs_of(smoothed_shared, x)[0], outputs_of(smoothed_separate, x)[0], rtol=1e-5, atol=1e-6)
    assert total_penalty(smoothed_shared, x) == pytest.approx(total_penalty(smoothed_separate, x), rel=1e-5)
