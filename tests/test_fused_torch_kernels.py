"""The fused PyTorch kernels of the smoothed relu (`keras_gsmooth.config`):
the same values and gradients as the eager operations, σ = 0 exact, a
clear error when compilation fails, and no effect on JAX and TensorFlow."""

import os
import subprocess
import sys
import tempfile

import keras
import numpy as np
import pytest
from keras import ops

import keras_gsmooth
from keras_gsmooth import activations
from keras_gsmooth import config
from keras_gsmooth.backend import value_and_grad


@pytest.fixture
def restore_setting():
    # The fused kernels are compared with the eager operations, not the native kernels.
    before = config.fused_torch_kernels(), config.native_torch_kernels()
    config.set_native_torch_kernels(False)
    yield
    config.set_fused_torch_kernels(before[0])
    config.set_native_torch_kernels(before[1])


def _values_and_gradients(activation, x, sigma):
    """Mean, summed variance, elementwise variance, and their gradients in x and σ."""
    weights = ops.convert_to_tensor(np.linspace(0.5, 1.5, int(np.prod(x.shape))).reshape(x.shape), x.dtype)
    results = {}
    for name, function in {
        "mean": lambda v: ops.sum(weights * activation.mean(v[0], v[1])),
        "summed": lambda v: ops.sum(weights * activation.mean_and_summed_variance(v[0], v[1])[0])
        + 3.0 * activation.mean_and_summed_variance(v[0], v[1])[1],
        "variance": lambda v: ops.sum(weights * activation.variance(v[0], v[1])),
    }.items():
        value, gradients = value_and_grad(function, [x, sigma])
        results[name] = [ops.convert_to_numpy(t) for t in (value, *gradients)]
    return results


@pytest.mark.requires_backend("torch")
@pytest.mark.parametrize("negative_slope, dtype", [(0.0, "float32"), (0.2, "float64")])
def test_fused_kernels_equal_the_eager_operations(negative_slope, dtype, restore_setting):
    activation = activations.ReLU(negative_slope=negative_slope)
    rng = np.random.default_rng(0)
    for shape in [(3, 5, 4, 2), (7, 6), "channels-last view"]:
        if shape == "channels-last view":
            # Keras's Conv2D output on PyTorch: an NCHW tensor seen as NHWC.
            x = ops.transpose(ops.convert_to_tensor(rng.normal(0.0, 1.0, (3, 2, 5, 4)).astype(dtype)), (0, 2, 3, 1))
        else:
            x = ops.convert_to_tensor(rng.normal(0.0, 1.0, shape).astype(dtype))
        sigma = ops.convert_to_tensor(0.3, dtype)
        config.set_fused_torch_kernels(False)
        eager = _values_and_gradients(activation, x, sigma)
        config.set_fused_torch_kernels(True)
        fused = _values_and_gradients(activation, x, sigma)
        # The fused kernels use the fitted erfc (relative error 1.2e-8) of JAX and
        # TensorFlow, the eager ones torch.erfc.
        tolerance = 2e-6 if dtype == "float32" else 1e-7
        for name in eager:
            for got, expected in zip(fused[name], eager[name]):
                assert got.shape == expected.shape
                np.testing.assert_allclose(got, expected, rtol=tolerance, atol=tolerance, err_msg=f"{name} {shape}")


@pytest.mark.requires_backend("torch")
def test_fused_kernels_keep_the_memory_layout_of_a_permuted_input(restore_setting):
    config.set_fused_torch_kernels(True)
    x = ops.transpose(ops.convert_to_tensor(np.random.default_rng(2).normal(size=(4, 3, 5, 6)).astype("float32")), (0, 2, 3, 1))
    x.requires_grad_(True)
    mean, summed = activations.ReLU().mean_and_summed_variance(x, 0.2)
    assert mean.stride() == x.stride()
    (ops.sum(mean) + summed).backward()
    assert x.grad.stride() == x.stride()


@pytest.mark.requires_backend("torch")
@pytest.mark.parametrize("fused", [False, True])
def test_no_subnormal_values_in_the_tails(fused, restore_setting):
    # PyTorch keeps subnormal floats, and arithmetic on them is ~100× slower:
    # x/σ where e^(−x²/σ²) underflows must give exact zeros instead.
    config.set_fused_torch_kernels(fused)
    x = ops.convert_to_tensor(np.linspace(-1.2, 1.2, 24001).astype("float32"))
    x.requires_grad_(True)
    for sigma in (0.1, 1e-3):
        mean, summed = activations.ReLU().mean_and_summed_variance(x, sigma)
        (gradient,) = __import__("torch").autograd.grad(ops.sum(mean) + summed, [x])
        for values in (mean, gradient):
            magnitude = np.abs(ops.convert_to_numpy(values))
            assert not np.any((magnitude > 0) & (magnitude < np.finfo("float32").tiny)), sigma


@pytest.mark.requires_backend("torch")
def test_each_closed_form_has_its_own_compiled_kernels(restore_setting):
    # TorchDynamo limits the compiled variants per code object (8 by
    # default): the kernels of the mean, the variance and the summed
    # variance, each with its dtypes and wanted gradients, must not share
    # one limit. With a limit of 1, three closed forms still compile.
    import torch

    config.set_fused_torch_kernels(True)
    activation = activations.ReLU(negative_slope=0.05)
    x = ops.convert_to_tensor(np.linspace(-2.0, 2.0, 12).astype("float32"))
    with torch._dynamo.config.patch(recompile_limit=1):
        for function in (activation.mean, activation.variance, lambda v, s: activation.mean_and_summed_variance(v, s)[1]):
            assert np.all(np.isfinite(ops.convert_to_numpy(function(x, 0.5))))


@pytest.mark.requires_backend("torch")
def test_fused_kernels_at_sigma_zero_are_exactly_relu(restore_setting):
    config.set_fused_torch_kernels(True)
    x = ops.convert_to_tensor(np.linspace(-3.0, 3.0, 25).astype("float32"))
    mean, summed = activations.ReLU().mean_and_summed_variance(x, 0.0)
    np.testing.assert_array_equal(ops.convert_to_numpy(mean), np.maximum(ops.convert_to_numpy(x), 0.0))
    assert float(ops.convert_to_numpy(summed)) == 0.0


@pytest.mark.requires_backend("torch")
def test_smoothed_model_trains_alike_with_fused_and_eager_kernels(restore_setting):
    rng = np.random.default_rng(1)
    x = rng.uniform(0.0, 1.0, (16, 28, 28, 1)).astype("float32")
    y = np.eye(10, dtype="float32")[rng.integers(0, 10, 16)]
    weights = []
    for fused in (False, True):
        config.set_fused_torch_kernels(fused)
        keras.utils.set_random_seed(0)
        model = keras_gsmooth.smooth_model(keras_gsmooth.models.paper_cnn(), sigma=0.1, regularization=1e-3)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
        weights.append(model.get_weights())
    for fused_weight, eager_weight in zip(weights[1], weights[0]):
        np.testing.assert_allclose(fused_weight, eager_weight, rtol=1e-5, atol=1e-6)


_FAILING_COMPILATION = """
import torch._inductor.config as inductor_config
from keras import ops
import keras_gsmooth

inductor_config.cpp.cxx = ("/nonexistent/c++",)
inductor_config.fx_graph_cache = False
keras_gsmooth.config.set_fused_torch_kernels(True)
try:
    keras_gsmooth.activations.ReLU().mean(ops.ones((4,)), 0.5)
except RuntimeError as error:
    print(error)
"""


@pytest.mark.requires_backend("torch")
def test_a_failed_compilation_names_the_way_out():
    # In a process of its own: TorchInductor remembers a broken compiler.
    environment = {**os.environ, "KERAS_BACKEND": "torch", "TORCHINDUCTOR_CACHE_DIR": tempfile.mkdtemp()}
    result = subprocess.run([sys.executable, "-c", _FAILING_COMPILATION], capture_output=True, text=True, env=environment, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "compiling the fused PyTorch kernels" in result.stdout
    assert "keras_gsmooth.config.set_fused_torch_kernels(False)" in result.stdout


@pytest.mark.requires_backend("jax", "tensorflow")
def test_the_setting_does_not_change_xla_backends(restore_setting):
    x = ops.convert_to_tensor(np.linspace(-3.0, 3.0, 24).reshape(4, 6).astype("float32"))
    sigma = ops.convert_to_tensor(0.4, "float32")
    results = []
    for fused in (False, True):
        config.set_fused_torch_kernels(fused)
        results.append(_values_and_gradients(activations.ReLU(), x, sigma))
    for name in results[0]:
        for on, off in zip(results[1][name], results[0][name]):
            np.testing.assert_array_equal(on, off)


def test_the_setting_takes_bools_or_auto(restore_setting):
    for bad in (1, "on", None):
        with pytest.raises(ValueError, match="enabled"):
            config.set_fused_torch_kernels(bad)
    for value in (True, False, "auto"):
        config.set_fused_torch_kernels(value)
        assert config.fused_torch_kernels() == value
    config.set_fused_torch_kernels()
    assert config.fused_torch_kernels() == "auto"


_VARIABLES = ["KERAS_GSMOOTH_FUSED_TORCH_KERNELS", "KERAS_GSMOOTH_NATIVE_TENSORFLOW_KERNELS"]


@pytest.mark.parametrize("variable", _VARIABLES)
@pytest.mark.parametrize(
    "value, expected", [("1", True), ("true", True), ("0", False), ("FALSE", False), ("", "auto"), ("auto", "auto")]
)
def test_the_environment_variable_sets_the_default(monkeypatch, variable, value, expected):
    monkeypatch.setenv(variable, value)
    assert config._from_environment(variable, "kernels") == expected


@pytest.mark.parametrize("variable", _VARIABLES)
def test_a_bad_environment_variable_is_refused(monkeypatch, variable):
    monkeypatch.setenv(variable, "yes")
    with pytest.raises(ValueError, match=variable):
        config._from_environment(variable, "kernels")


@pytest.mark.requires_backend("torch")
def test_auto_fuses_large_cpu_tensors_only(restore_setting):
    from keras_gsmooth import backend

    config.set_fused_torch_kernels("auto")
    assert backend.uses_fused_torch_kernels(ops.zeros((config.AUTO_MIN_ELEMENTS,)))
    assert backend.uses_fused_torch_kernels(ops.zeros((128, 25, 25, 32)))
    assert not backend.uses_fused_torch_kernels(ops.zeros((config.AUTO_MIN_ELEMENTS - 1,)))
    config.set_fused_torch_kernels(True)
    assert backend.uses_fused_torch_kernels(ops.zeros((3,)))
    config.set_fused_torch_kernels(False)
    assert not backend.uses_fused_torch_kernels(ops.zeros((128, 25, 25, 32)))


_NO_COMPILER_IN_AUTO = """
import warnings
import numpy as np
import torch._inductor.config as inductor_config
from keras import ops
import keras_gsmooth

inductor_config.cpp.cxx = ("/nonexistent/c++",)
x = ops.convert_to_tensor(np.linspace(-3.0, 3.0, 65536).astype("float32"))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for _ in range(2):
        mean = keras_gsmooth.activations.ReLU().mean(x, 0.5)
messages = [str(w.message) for w in caught if "keras_gsmooth" in str(w.message)]
print(len(messages), messages[0])
print(float(ops.convert_to_numpy(ops.max(ops.abs(mean - ops.relu(x))))))
"""


@pytest.mark.requires_backend("torch")
def test_auto_without_a_compiler_warns_once_and_runs_eagerly():
    environment = {**os.environ, "KERAS_BACKEND": "torch", "TORCHINDUCTOR_CACHE_DIR": tempfile.mkdtemp()}
    environment.pop("KERAS_GSMOOTH_FUSED_TORCH_KERNELS", None)
    result = subprocess.run([sys.executable, "-c", _NO_COMPILER_IN_AUTO], capture_output=True, text=True, env=environment, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    count, message = result.stdout.splitlines()[0].split(" ", 1)
    assert count == "1"
    assert "no C++ compiler" in message and "set_fused_torch_kernels(False)" in message
    # The eager smoothed relu: within σ/(2√π)·e^(−x²/σ²)-sized distance of relu, finite.
    assert 0.0 < float(result.stdout.splitlines()[1]) < 0.15
