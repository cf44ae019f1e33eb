"""The native TensorFlow kernels of the smoothed relu (`keras_gsmooth.native_tensorflow`):
half precision, compiled and exported steps, a model that trains alike with
and without them, when a model compiles without XLA, and clear errors when
the kernels do not compile. Their values and gradients, shared with the
PyTorch kernels, are in `test_native_kernels.py`."""

import keras
import numpy as np
import pytest

import keras_gsmooth
from keras_gsmooth import activations
from keras_gsmooth import config
from keras_gsmooth import native_build
from keras_gsmooth import native_tensorflow

pytestmark = pytest.mark.requires_backend("tensorflow")


@pytest.fixture
def restore_setting():
    before = config.native_tensorflow_kernels()
    yield
    config.set_native_tensorflow_kernels(before)


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
    native_build._warn_once.cache_clear()
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
        native_build._warn_once.cache_clear()


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
