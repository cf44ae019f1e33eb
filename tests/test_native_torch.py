"""The native PyTorch kernels of the smoothed relu (`keras_gsmooth.native_torch`):
permuted inputs, which tensors they serve, a model that trains alike with and
without them, and clear errors when they do not compile. Their values and
gradients, shared with the TensorFlow kernels, are in `test_native_kernels.py`."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_gsmooth
from keras_gsmooth import activations
from keras_gsmooth import config
from keras_gsmooth import native_build
from keras_gsmooth import native_torch

pytestmark = pytest.mark.requires_backend("torch")


@pytest.fixture
def restore_setting():
    before = config.native_torch_kernels()
    yield
    config.set_native_torch_kernels(before)


@pytest.mark.parametrize("pool_size", [None, 2])
def test_a_permuted_input_gives_what_its_contiguous_copy_gives(pool_size, restore_setting):
    # Keras's channels-last convolution output on PyTorch is a permuted view.
    import torch

    config.set_native_torch_kernels(True)
    layer = keras_gsmooth.layers.SmoothActivation("relu", sigma=0.3, regularization=0.1, pool_size=pool_size)
    channels_first = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    results = []
    for x in (channels_first.permute(0, 2, 3, 1), channels_first.permute(0, 2, 3, 1).contiguous()):
        x = x.detach().requires_grad_(True)
        outputs = layer(x)
        (gradient,) = torch.autograd.grad((outputs * outputs).sum() + layer.losses[0], [x])
        results.append((outputs.detach(), layer.losses[0].detach(), gradient))
    for permuted, contiguous in zip(*results):
        torch.testing.assert_close(permuted, contiguous, rtol=0, atol=0)


def test_which_tensors_the_native_kernels_serve(restore_setting):
    import torch

    relu = activations.ReLU()
    sigma = torch.tensor(0.1)
    config.set_native_torch_kernels(True)
    assert native_torch.smoothed_leaky_relu(torch.ones(8), sigma, 0.0, relu._sigma_derivatives) is not None
    # float64 and the tensors the fused kernels take run as eager operations.
    assert native_torch.smoothed_leaky_relu(torch.ones(8, dtype=torch.float64), sigma, 0.0, None) is None
    fused_before = config.fused_torch_kernels()
    try:
        config.set_fused_torch_kernels(True)
        assert native_torch.smoothed_leaky_relu(torch.ones(8), sigma, 0.0, None) is None
        config.set_fused_torch_kernels(False)
        big = torch.ones(config.AUTO_MIN_ELEMENTS)
        assert native_torch.smoothed_leaky_relu(big, sigma, 0.0, relu._sigma_derivatives) is not None
    finally:
        config.set_fused_torch_kernels(fused_before)
    # Pooling over three spatial axes has no kernel.
    assert native_torch.smoothed_leaky_relu_average_pool(torch.ones(1, 2, 2, 2, 1), sigma, 0.0, (2, 2, 2), None) is None
    config.set_native_torch_kernels(False)
    assert native_torch.smoothed_leaky_relu(torch.ones(8), sigma, 0.0, None) is None
    assert not native_torch.kernels_available()


def test_a_model_trains_alike_with_and_without_the_native_kernels(restore_setting):
    x = np.random.default_rng(3).uniform(0.0, 1.0, (4, 28, 28, 1)).astype("float32")
    y = keras.utils.to_categorical(np.arange(4) % 10, 10).astype("float32")
    weights = {}
    for native in (False, True):
        config.set_native_torch_kernels(native)
        keras.utils.set_random_seed(0)
        model = keras_gsmooth.smooth_model(keras_gsmooth.models.paper_cnn(), sigma=0.2, regularization=1e-2)
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
        model.fit(x, y, batch_size=1, epochs=2, verbose=0)
        weights[native] = [ops.convert_to_numpy(w) for w in model.weights]
    for with_native, without in zip(weights[True], weights[False]):
        np.testing.assert_allclose(with_native, without, rtol=1e-4, atol=1e-6)


def test_the_library_is_compiled_once_into_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_GSMOOTH_CACHE", str(tmp_path))
    built = native_build.built_library(
        "smoothed_leaky_relu_c", native_torch._SOURCE, "", native_torch._build_command, native_torch._WHAT
    )
    assert built.parent == tmp_path and built.name.startswith("smoothed_leaky_relu_c-") and built.suffix == ".so"
    stamp = built.stat().st_mtime_ns
    again = native_build.built_library(
        "smoothed_leaky_relu_c", native_torch._SOURCE, "", native_torch._build_command, native_torch._WHAT
    )
    assert again == built and built.stat().st_mtime_ns == stamp
    assert [path.name for path in tmp_path.iterdir()] == [built.name]  # no scratch files left


def test_a_missing_compiler_is_an_error_or_a_warning(monkeypatch, tmp_path, restore_setting):
    monkeypatch.setenv("KERAS_GSMOOTH_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    native_torch._library.cache_clear()
    native_build._warn_once.cache_clear()
    x = np.linspace(-1.0, 1.0, 9).astype("float32")
    config.set_native_torch_kernels(False)
    eager = ops.convert_to_numpy(activations.ReLU().mean(x, 0.5))
    try:
        config.set_native_torch_kernels(True)
        with pytest.raises(native_build.KernelBuildError, match="/nonexistent/c\\+\\+.*Install g\\+\\+ or set CXX"):
            activations.ReLU().mean(x, 0.5)
        config.set_native_torch_kernels("auto")
        with pytest.warns(UserWarning, match="set_native_torch_kernels\\(False\\)"):
            mean = activations.ReLU().mean(x, 0.5)
        np.testing.assert_array_equal(ops.convert_to_numpy(mean), eager)  # the eager closed form ran
    finally:
        native_torch._library.cache_clear()
        native_build._warn_once.cache_clear()


def test_a_failed_compilation_names_the_compiler(monkeypatch, tmp_path, restore_setting):
    monkeypatch.setenv("KERAS_GSMOOTH_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", "false")
    native_torch._library.cache_clear()
    try:
        config.set_native_torch_kernels(True)
        with pytest.raises(native_build.KernelBuildError, match="compiling the native PyTorch kernels with false failed"):
            native_torch.kernels_available()
    finally:
        native_torch._library.cache_clear()
