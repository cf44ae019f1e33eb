"""The native TensorFlow kernels of the smoothed relu (`keras_gsmooth.native_tensorflow`):
the values and gradients of the `keras.ops` closed forms, alone and fused with
the average pooling, σ = 0 exact, a model that trains alike with and without
them, when a model compiles without XLA, and clear errors when the kernels do
not compile."""

import keras
import numpy as np
import pytest
from keras import ops
from scipy.special import erfc

import keras_gsmooth
from keras_gsmooth import activations
from keras_gsmooth import backend
from keras_gsmooth import config
from keras_gsmooth import native_tensorflow

pytestmark = pytest.mark.requires_backend("tensorflow")


@pytest.fixture
def restore_setting():
    before = config.native_tensorflow_kernels()
    yield
    config.set_native_tensorflow_kernels(before)


def _values_and_gradients(activation, x, sigma):
    """Mean, summed variance, and the gradients of a weighted sum of both in x and σ."""
    weights = np.linspace(0.5, 1.5, x.size).reshape(x.shape).astype("float32")

    def loss(v):
        mean, summed = activation.mean_and_summed_variance(v[0], v[1])
        return ops.sum(weights * mean) + 3.0 * summed, (mean, summed)

    (_, (mean, summed)), (gradient_x, gradient_sigma) = backend.value_and_grad(
        loss, [ops.convert_to_tensor(x), ops.convert_to_tensor(sigma, "float32")], has_aux=True
    )
    only_mean, gradient_only_mean = backend.value_and_grad(lambda v: ops.sum(weights * activation.mean(v[0], v[1])), [x, sigma])
    return {
        "mean": mean,
        "summed": summed,
        "gradient_x": gradient_x,
        "gradient_sigma": gradient_sigma,
        "only_mean": only_mean,
        "gradient_only_mean": gradient_only_mean[0],
    }


def _reference(x, sigma, alpha):
    """The leaky relu's mean, summed variance and slope, in float64 from SciPy's erfc."""
    x = x.astype(np.float64)
    cdf, survival = 0.5 * erfc(-x / sigma), 0.5 * erfc(x / sigma)
    p = sigma / (2.0 * np.sqrt(np.pi)) * np.exp(-((x / sigma) ** 2))
    relu_mean = x * cdf + p
    relu_variance = x * x * cdf * survival + 0.5 * sigma**2 * cdf + x * p * (1.0 - 2.0 * cdf) - p * p
    beta = 1.0 - alpha
    variance = beta**2 * relu_variance + alpha * beta * sigma**2 * cdf + 0.5 * alpha**2 * sigma**2
    return alpha * x + beta * relu_mean, variance.sum(), alpha + beta * cdf


@pytest.mark.parametrize("alpha", [0.0, 0.2, -0.5, 1.7])
def test_native_kernels_equal_the_keras_ops_closed_forms(alpha, restore_setting):
    activation = activations.ReLU(negative_slope=alpha)
    x = np.concatenate([np.linspace(-40.0, 40.0, 4001), [0.0, 1e-30, -1e-30, 3e30, -3e30]]).astype("float32")
    for sigma in (1e-3, 0.1, 1.0, 10.0):
        config.set_native_tensorflow_kernels(False)
        expected = _values_and_gradients(activation, x, sigma)
        config.set_native_tensorflow_kernels(True)
        got = _values_and_gradients(activation, x, sigma)
        for name in expected:
            value, reference = ops.convert_to_numpy(got[name]), ops.convert_to_numpy(expected[name])
            scale = np.max(np.abs(reference))
            np.testing.assert_allclose(value, reference, rtol=2e-4, atol=2e-6 * scale, err_msg=f"{name}, σ = {sigma}")
        # Against float64: the kernels are as accurate as the keras.ops forms.
        mean, summed, slope = _reference(x, sigma, alpha)
        np.testing.assert_allclose(ops.convert_to_numpy(got["mean"]), mean, rtol=2e-6, atol=2e-7 * sigma)
        np.testing.assert_allclose(float(got["summed"]), summed, rtol=2e-5)
        gradient = ops.convert_to_numpy(got["gradient_only_mean"])
        np.testing.assert_allclose(gradient, np.linspace(0.5, 1.5, x.size) * slope, rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("alpha", [0.0, 0.2])
def test_native_kernels_at_sigma_zero_are_exactly_keras(alpha, restore_setting):
    config.set_native_tensorflow_kernels(True)
    x = np.linspace(-3.0, 3.0, 25).astype("float32")
    results = _values_and_gradients(activations.ReLU(negative_slope=alpha), x, 0.0)
    np.testing.assert_array_equal(ops.convert_to_numpy(results["mean"]), ops.convert_to_numpy(keras.activations.leaky_relu(x, alpha)))
    assert float(results["summed"]) == 0.0
    # At the kink, Φ(0) = ½ gives the mean of the two slopes, as the keras.ops form does.
    slope = np.where(x > 0.0, 1.0, np.where(x < 0.0, alpha, 0.5 + 0.5 * alpha)).astype("float32")
    np.testing.assert_array_equal(ops.convert_to_numpy(results["gradient_only_mean"]), np.linspace(0.5, 1.5, x.size).astype("float32") * slope)


FUSED_CASES = [
    # (input shape, pool_size): trailing rows and columns that fill no window, 1-D inputs, odd windows
    ((4, 25, 25, 8), (2, 2)),
    ((3, 7, 9, 5), (3, 2)),
    ((2, 6, 4, 3), (1, 1)),
    ((3, 11, 6), (2,)),
    ((2, 5, 3), (5,)),
]


def _pooled_values_and_gradients(layer, x, sigma):
    """A fused layer's output, penalties, and the gradients of a weighted sum of them in x and σ."""
    import tensorflow as tf

    x, sigma = tf.constant(x), tf.constant(sigma, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch([x, sigma])
        layer._sigma_constant = sigma  # σ as a differentiated input
        outputs = layer(x)
        weights = tf.reshape(tf.linspace(0.5, 1.5, tf.size(outputs)), tf.shape(outputs))
        loss = tf.reduce_sum(weights * outputs) + 3.0 * layer.losses[0] + 5.0 * tf.add_n(layer.losses[1:] or [0.0])
    gradient_x, gradient_sigma = tape.gradient(loss, [x, sigma])
    values = {"output": outputs, "penalty": layer.losses[0], "gradient_x": gradient_x, "gradient_sigma": gradient_sigma}
    if layer.output_penalty is not None:
        values["output_penalty"] = layer.losses[1]
    return values


@pytest.mark.parametrize("shape, pool_size", FUSED_CASES)
@pytest.mark.parametrize("alpha", [0.0, 0.2, -0.5])
@pytest.mark.parametrize("with_output_penalty", [False, True])
def test_fused_pooling_kernels_equal_the_keras_ops_closed_forms_then_the_pooling(
    shape, pool_size, alpha, with_output_penalty, restore_setting
):
    x = np.random.default_rng(5).normal(0.0, 0.5, shape).astype("float32")
    # The output penalty's Σ pooled² comes from the forward kernel, its gradient from the backward one.
    output_penalty = keras_gsmooth.regularizers.DenseInputPenalty(3, 0.2, sigma=0.4) if with_output_penalty else None
    layer = keras_gsmooth.layers.SmoothActivation(
        activations.ReLU(negative_slope=alpha), regularization=0.5, pool_size=pool_size, output_penalty=output_penalty
    )
    for sigma in (1e-3, 0.3, 10.0):
        config.set_native_tensorflow_kernels(False)
        expected = _pooled_values_and_gradients(layer, x, sigma)
        config.set_native_tensorflow_kernels(True)
        got = _pooled_values_and_gradients(layer, x, sigma)
        for name in expected:
            value, reference = got[name].numpy(), expected[name].numpy()
            scale = np.max(np.abs(reference))
            np.testing.assert_allclose(value, reference, rtol=2e-5, atol=2e-6 * scale, err_msg=f"{name}, σ = {sigma}")
        # Against float64: the pooled mean of SciPy's, and the variance of every element.
        mean, summed, _ = _reference(x, sigma, alpha)
        windows = [size // pool for size, pool in zip(shape[1:-1], pool_size)]
        crop = mean[(slice(None), *[slice(0, count * pool) for count, pool in zip(windows, pool_size)])]
        split = [shape[0], *[n for count, pool in zip(windows, pool_size) for n in (count, pool)], shape[-1]]
        pooled = crop.reshape(split).mean(axis=tuple(range(2, 2 * len(pool_size) + 1, 2)))
        # A window's mean may cancel (leaky relu): errors scale with the largest mean.
        np.testing.assert_allclose(got["output"].numpy(), pooled, rtol=2e-6, atol=2e-7 * (sigma + np.max(np.abs(mean))))
        np.testing.assert_allclose(float(got["penalty"]), 0.5 * summed / shape[0], rtol=2e-5)
        if with_output_penalty:
            expected_penalty = 0.2 * (0.4**2 * 3 / 2) * np.sum(pooled**2) / shape[0]
            np.testing.assert_allclose(float(got["output_penalty"]), expected_penalty, rtol=2e-5)


def test_fused_pooling_kernels_keep_a_half_precision_dtype(restore_setting):
    # Half-precision inputs are computed in float32 and cast back, as by the keras.ops forms.
    x = np.random.default_rng(8).normal(size=(2, 6, 6, 3)).astype("float16")
    outputs = {}
    for native in (False, True):
        config.set_native_tensorflow_kernels(native)
        layer = keras_gsmooth.layers.SmoothActivation("relu", sigma=0.3, regularization=0.1, pool_size=2, dtype="mixed_float16")
        outputs[native] = (layer(x), float(layer.losses[0]))
    assert outputs[True][0].dtype == outputs[False][0].dtype == "float16"
    # The keras.ops path pools float16 values, the kernel float32 ones: float16 rounding apart.
    np.testing.assert_allclose(outputs[True][0].numpy(), outputs[False][0].numpy(), rtol=2e-3, atol=1e-3)
    np.testing.assert_allclose(outputs[True][1], outputs[False][1], rtol=1e-5)


def test_a_compiled_step_runs_the_fused_kernels(restore_setting):
    import tensorflow as tf

    config.set_native_tensorflow_kernels(True)
    layer = keras_gsmooth.layers.SmoothActivation("relu", sigma=0.1, regularization=1e-2, pool_size=2)

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x)) + layer.losses[-1]
        return tape.gradient(loss, x)

    graph = step.get_concrete_function(tf.TensorSpec((4, 9, 9, 3), tf.float32)).graph
    operations = {operation.type for operation in graph.get_operations()}
    assert {"KerasGsmoothSmoothedLeakyReluAveragePool", "KerasGsmoothSmoothedLeakyReluAveragePoolGrad"} <= operations
    assert "KerasGsmoothSmoothedLeakyRelu" not in operations and "AvgPoolGrad" not in operations


def test_the_fused_kernels_without_a_window_give_the_variance_of_every_element():
    # Keras's pooling refuses an input smaller than its window, and so does
    # SmoothActivation; the operation itself returns an empty pooled output.
    library = native_tensorflow._library()
    x = np.random.default_rng(6).normal(size=(2, 1, 6, 4)).astype("float32")
    pooled, summed, squares = library.keras_gsmooth_smoothed_leaky_relu_average_pool(
        x, 0.4, alpha=0.0, pool_height=2, pool_width=2
    )
    assert tuple(pooled.shape) == (2, 0, 3, 4) and float(squares) == 0.0
    _, elementwise_summed = library.keras_gsmooth_smoothed_leaky_relu(x, 0.4, alpha=0.0)
    np.testing.assert_allclose(float(summed), float(elementwise_summed), rtol=1e-6)
    gradient = library.keras_gsmooth_smoothed_leaky_relu_average_pool_grad(
        x, 0.4, pooled, pooled, 1.5, 0.7, alpha=0.0, pool_height=2, pool_width=2
    )
    expected = library.keras_gsmooth_smoothed_leaky_relu_grad(x, 0.4, np.zeros_like(x), 1.5, alpha=0.0)
    np.testing.assert_allclose(gradient.numpy(), expected.numpy(), rtol=1e-6)


def test_the_fused_kernels_refuse_other_shapes():
    import tensorflow as tf

    library = native_tensorflow._library()
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match="rank 4|must be rank 4|\\(batch, height, width, channels\\)"):
        library.keras_gsmooth_smoothed_leaky_relu_average_pool(np.ones((2, 6, 4), "float32"), 0.4, alpha=0.0, pool_height=2, pool_width=2)
    x, pooled, wrong = (np.ones(shape, "float32") for shape in [(2, 6, 6, 1), (2, 3, 3, 1), (2, 2, 3, 1)])
    for name, arguments in [("upstream gradient", (pooled, wrong)), ("pooled_mean", (wrong, pooled))]:
        with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match=f"{name} shape .* differs from the expected shape"):
            library.keras_gsmooth_smoothed_leaky_relu_average_pool_grad(
                x, 0.4, *arguments, 0.0, 0.0, alpha=0.0, pool_height=2, pool_width=2
            )


def test_paper_cnn_trains_alike_with_native_kernels_and_with_xla(restore_setting):
    rng = np.random.default_rng(1)
    x = rng.uniform(0.0, 1.0, (16, 28, 28, 1)).astype("float32")
    y = np.eye(10, dtype="float32")[rng.integers(0, 10, 16)]
    runs = {}
    for native in (False, True):
        config.set_native_tensorflow_kernels(native)
        keras.utils.set_random_seed(0)
        model = keras_gsmooth.smooth_model(keras_gsmooth.models.paper_cnn(), sigma=0.1, regularization=1e-3)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        assert model.jit_compile is (not native)
        history = model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
        runs[native] = (history.history["loss"], model.get_weights())
    np.testing.assert_allclose(runs[True][0], runs[False][0], rtol=1e-5)
    for native_weight, xla_weight in zip(runs[True][1], runs[False][1]):
        np.testing.assert_allclose(native_weight, xla_weight, rtol=1e-4, atol=1e-6)


def _smoothed(activation):
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(5, activation=activation)(inputs)
    return keras_gsmooth.smooth_model(keras.Model(inputs, keras.layers.Dense(2)(hidden)), sigma=0.2, regularization=1e-3)


def test_auto_compiles_without_xla_only_where_every_closed_form_is_native(restore_setting):
    config.set_native_tensorflow_kernels("auto")
    cases = {"relu": False, "leaky_relu": False, "gelu": True, "tanh": True}
    for activation, xla in cases.items():
        model = _smoothed(activation)
        model.compile(optimizer="sgd", loss="mse")
        assert model.jit_compile is xla, activation
    keras.config.set_dtype_policy("mixed_float16")
    try:
        half = _smoothed("relu")
    finally:
        keras.config.set_dtype_policy("float32")
    half.compile(optimizer="sgd", loss="mse")
    assert half.jit_compile is True  # float16 closed forms are keras.ops
    prelu_inputs = keras.Input((6,))
    prelu = keras_gsmooth.smooth_model(keras.Model(prelu_inputs, keras.layers.PReLU()(keras.layers.Dense(5)(prelu_inputs))), sigma=0.2)
    prelu.compile(optimizer="sgd", loss="mse")
    assert prelu.jit_compile is True
    config.set_native_tensorflow_kernels(False)
    model = _smoothed("relu")
    model.compile(optimizer="sgd", loss="mse")
    assert model.jit_compile is True


def test_a_step_compiled_with_xla_uses_the_keras_ops_closed_forms(restore_setting):
    config.set_native_tensorflow_kernels(True)
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(8, 6)).astype("float32"), rng.normal(size=(8, 2)).astype("float32")
    losses = []
    for jit_compile in (True, False):
        keras.utils.set_random_seed(3)
        model = _smoothed("relu")
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse", jit_compile=jit_compile)
        losses.append(model.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False).history["loss"])
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)


@pytest.mark.parametrize("network", ["dense", "paper_cnn"])
def test_an_exported_model_holds_no_native_operation(network, tmp_path, restore_setting):
    # A SavedModel with the native operations would load only where this
    # library is loaded first: saving traces the keras.ops closed forms
    # (the paper CNN: its smoothed relu fused with the pooling).
    import tensorflow as tf

    config.set_native_tensorflow_kernels(True)
    if network == "dense":
        model, shape = _smoothed("relu"), (5, 6)
    else:
        cnn = keras_gsmooth.models.paper_cnn(input_shape=(12, 12, 1), num_classes=2)
        model, shape = keras_gsmooth.smooth_model(cnn, sigma=0.2, regularization=1e-3), (5, 12, 12, 1)
    model.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(4).normal(size=shape).astype("float32")
    model.fit(x, np.zeros((5, 2), "float32"), verbose=0)
    model.export(str(tmp_path / "exported"), verbose=False)
    saved = (tmp_path / "exported" / "saved_model.pb").read_bytes()
    assert b"MatMul" in saved  # the graph is there to be read
    assert b"KerasGsmoothSmoothedLeakyRelu" not in saved
    loaded = tf.saved_model.load(str(tmp_path / "exported"))
    np.testing.assert_allclose(loaded.serve(x).numpy(), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_the_library_is_compiled_once_into_the_cache(monkeypatch, tmp_path):
    # Built only: loading a second library with the same operations would make
    # TensorFlow refuse both for the rest of the process.
    monkeypatch.setenv("KERAS_GSMOOTH_CACHE", str(tmp_path))
    built = native_tensorflow._built_library()
    assert built.parent == tmp_path and built.name.startswith("smoothed_leaky_relu-") and built.suffix == ".so"
    stamp = built.stat().st_mtime_ns
    assert native_tensorflow._built_library() == built
    assert built.stat().st_mtime_ns == stamp
    assert [path.name for path in tmp_path.iterdir()] == [built.name]  # no scratch files left


def test_a_missing_compiler_is_an_error_or_a_warning(monkeypatch, tmp_path, restore_setting):
    monkeypatch.setenv("KERAS_GSMOOTH_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    native_tensorflow._library.cache_clear()
    native_tensorflow._warn_once.cache_clear()
    try:
        config.set_native_tensorflow_kernels(True)
        with pytest.raises(native_tensorflow.KernelBuildError, match="/nonexistent/c\\+\\+.*Install g\\+\\+ or set CXX"):
            activations.ReLU().mean(np.ones(4, "float32"), 0.5)
        config.set_native_tensorflow_kernels("auto")
        with pytest.warns(UserWarning, match="set_native_tensorflow_kernels\\(False\\)"):
            assert not native_tensorflow.kernels_available()
        model = _smoothed("relu")
        model.compile(optimizer="sgd", loss="mse")
        assert model.jit_compile is True
    finally:
        native_tensorflow._library.cache_clear()
        native_tensorflow._warn_once.cache_clear()


def test_a_failed_compilation_shows_the_compiler_output(monkeypatch, tmp_path, restore_setting):
    monkeypatch.setenv("KERAS_GSMOOTH_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", "false")  # a compiler that fails
    native_tensorflow._library.cache_clear()
    try:
        config.set_native_tensorflow_kernels(True)
        with pytest.raises(native_tensorflow.KernelBuildError, match="compiling the native TensorFlow kernels with false failed"):
            native_tensorflow.kernels_available()
        assert list(tmp_path.glob("*.so")) == []
    finally:
        native_tensorflow._library.cache_clear()


@pytest.mark.requires_backend("jax", "torch")
def test_other_backends_never_use_the_native_kernels(restore_setting):
    config.set_native_tensorflow_kernels(True)
    assert not native_tensorflow.kernels_available()
    assert native_tensorflow.smoothed_leaky_relu(np.ones(3, "float32"), 0.1, 0.0, None) is None


def test_the_setting_takes_bools_or_auto(restore_setting):
    for bad in (1, "on", None):
        with pytest.raises(ValueError, match="set_native_tensorflow_kernels.*enabled"):
            config.set_native_tensorflow_kernels(bad)
    for value in (True, False, "auto"):
        config.set_native_tensorflow_kernels(value)
        assert config.native_tensorflow_kernels() == value
