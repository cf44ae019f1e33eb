"""What the native kernels of the smoothed relu do alike on TensorFlow
(`keras_gsmooth.native_tensorflow`) and PyTorch (`keras_gsmooth.native_torch`):
the values and gradients of the `keras.ops` (or eager) closed forms, alone and
fused with the average pooling, against each other and against float64, and
σ = 0 exact. Each backend's own behaviour is in `test_native_tensorflow.py`
and `test_native_torch.py`."""

import keras
import numpy as np
import pytest
from keras import ops
from scipy.special import erfc

import keras_gsmooth
from keras_gsmooth import activations
from keras_gsmooth import backend
from keras_gsmooth import config

pytestmark = pytest.mark.requires_backend("tensorflow", "torch")

FUSED_CASES = [
    # (input shape, pool_size): trailing rows and columns that fill no window, 1-D inputs, odd windows
    ((4, 25, 25, 8), (2, 2)),
    ((3, 7, 9, 5), (3, 2)),
    ((2, 6, 4, 3), (1, 1)),
    ((3, 11, 6), (2,)),
    ((2, 5, 3), (5,)),
]


@pytest.fixture
def use_native():
    """The current backend's native-kernel setter; the setting is restored afterwards."""
    if keras.backend.backend() == "tensorflow":
        setter, getter = config.set_native_tensorflow_kernels, config.native_tensorflow_kernels
    else:
        setter, getter = config.set_native_torch_kernels, config.native_torch_kernels
    before = getter()
    yield setter
    setter(before)


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


def _values_and_gradients(activation, x, sigma):
    """Mean, summed variance, and the gradients of a weighted sum of both in x and σ."""
    weights = ops.convert_to_tensor(np.linspace(0.5, 1.5, x.size).reshape(x.shape).astype("float32"))

    def loss(v):
        mean, summed = activation.mean_and_summed_variance(v[0], v[1])
        return ops.sum(weights * mean) + 3.0 * summed, (mean, summed)

    arguments = [ops.convert_to_tensor(x), ops.convert_to_tensor(sigma, "float32")]
    (_, (mean, summed)), (gradient_x, gradient_sigma) = backend.value_and_grad(loss, arguments, has_aux=True)
    only_mean, gradient_only_mean = backend.value_and_grad(
        lambda v: ops.sum(weights * activation.mean(v[0], v[1])), arguments
    )
    return {
        "mean": mean,
        "summed": summed,
        "gradient_x": gradient_x,
        "gradient_sigma": gradient_sigma,
        "only_mean": only_mean,
        "gradient_only_mean": gradient_only_mean[0],
    }


def _pooled_values_and_gradients(layer, x, sigma):
    """A fused layer's output, penalties, and the gradients of a weighted sum of them in x and σ."""

    def loss(v):
        layer._sigma_constant = v[1]  # σ as a differentiated input
        outputs = layer(v[0])
        weights = ops.reshape(ops.linspace(0.5, 1.5, int(np.prod(outputs.shape))), outputs.shape)
        total = ops.sum(weights * outputs) + 3.0 * layer.losses[0] + 5.0 * sum(layer.losses[1:], 0.0)
        return total, (outputs, *layer.losses)

    arguments = [ops.convert_to_tensor(x), ops.convert_to_tensor(sigma, "float32")]
    (_, (outputs, *losses)), (gradient_x, gradient_sigma) = backend.value_and_grad(loss, arguments, has_aux=True)
    values = {"output": outputs, "penalty": losses[0], "gradient_x": gradient_x, "gradient_sigma": gradient_sigma}
    if layer.output_penalty is not None:
        values["output_penalty"] = losses[1]
    return {name: ops.convert_to_numpy(value) for name, value in values.items()}


def _assert_close(got, expected, rtol, message):
    for name in expected:
        value, reference = ops.convert_to_numpy(got[name]), ops.convert_to_numpy(expected[name])
        scale = np.max(np.abs(reference))
        np.testing.assert_allclose(value, reference, rtol=rtol, atol=2e-6 * scale, err_msg=f"{name}, {message}")


@pytest.mark.parametrize("alpha", [0.0, 0.2, -0.5, 1.7])
def test_native_kernels_equal_the_closed_forms(alpha, use_native):
    activation = activations.ReLU(negative_slope=alpha)
    x = np.concatenate([np.linspace(-40.0, 40.0, 4001), [0.0, 1e-30, -1e-30, 3e30, -3e30]]).astype("float32")
    for sigma in (1e-3, 0.1, 1.0, 10.0):
        use_native(False)
        expected = _values_and_gradients(activation, x, sigma)
        use_native(True)
        got = _values_and_gradients(activation, x, sigma)
        _assert_close(got, expected, 2e-4, f"σ = {sigma}")
        # Against float64: the kernels are as accurate as the keras.ops forms.
        mean, summed, slope = _reference(x, sigma, alpha)
        np.testing.assert_allclose(ops.convert_to_numpy(got["mean"]), mean, rtol=2e-6, atol=2e-7 * sigma)
        np.testing.assert_allclose(float(got["summed"]), summed, rtol=2e-5)
        gradient = ops.convert_to_numpy(got["gradient_only_mean"])
        np.testing.assert_allclose(gradient, np.linspace(0.5, 1.5, x.size) * slope, rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("alpha", [0.0, 0.2])
def test_native_kernels_at_sigma_zero_are_exactly_keras(alpha, use_native):
    use_native(True)
    x = np.linspace(-3.0, 3.0, 25).astype("float32")
    results = _values_and_gradients(activations.ReLU(negative_slope=alpha), x, 0.0)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(results["mean"]), ops.convert_to_numpy(keras.activations.leaky_relu(x, alpha))
    )
    assert float(results["summed"]) == 0.0
    # At the kink, Φ(0) = ½ gives the mean of the two slopes, as the keras.ops form does.
    slope = np.where(x > 0.0, 1.0, np.where(x < 0.0, alpha, 0.5 + 0.5 * alpha)).astype("float32")
    np.testing.assert_array_equal(
        ops.convert_to_numpy(results["gradient_only_mean"]), np.linspace(0.5, 1.5, x.size).astype("float32") * slope
    )


@pytest.mark.parametrize("shape, pool_size", FUSED_CASES)
@pytest.mark.parametrize("alpha", [0.0, 0.2, -0.5])
@pytest.mark.parametrize("with_output_penalty", [False, True])
def test_fused_pooling_kernels_equal_the_closed_forms_then_the_pooling(
    shape, pool_size, alpha, with_output_penalty, use_native
):
    x = np.random.default_rng(5).normal(0.0, 0.5, shape).astype("float32")
    # The output penalty's Σ pooled² comes from the forward kernel, its gradient from the backward one.
    output_penalty = keras_gsmooth.regularizers.DenseInputPenalty(3, 0.2, sigma=0.4) if with_output_penalty else None
    layer = keras_gsmooth.layers.SmoothActivation(
        activations.ReLU(negative_slope=alpha), regularization=0.5, pool_size=pool_size, output_penalty=output_penalty
    )
    for sigma in (1e-3, 0.3, 10.0):
        use_native(False)
        expected = _pooled_values_and_gradients(layer, x, sigma)
        use_native(True)
        got = _pooled_values_and_gradients(layer, x, sigma)
        _assert_close(got, expected, 2e-5, f"σ = {sigma}")
        # Against float64: the pooled mean of SciPy's, and the variance of every element.
        mean, summed, _ = _reference(x, sigma, alpha)
        windows = [size // pool for size, pool in zip(shape[1:-1], pool_size)]
        crop = mean[(slice(None), *[slice(0, count * pool) for count, pool in zip(windows, pool_size)])]
        split = [shape[0], *[n for count, pool in zip(windows, pool_size) for n in (count, pool)], shape[-1]]
        pooled = crop.reshape(split).mean(axis=tuple(range(2, 2 * len(pool_size) + 1, 2)))
        # A window's mean may cancel (leaky relu): errors scale with the largest mean.
        np.testing.assert_allclose(got["output"], pooled, rtol=2e-6, atol=2e-7 * (sigma + np.max(np.abs(mean))))
        np.testing.assert_allclose(float(got["penalty"]), 0.5 * summed / shape[0], rtol=2e-5)
        if with_output_penalty:
            expected_penalty = 0.2 * (0.4**2 * 3 / 2) * np.sum(pooled**2) / shape[0]
            np.testing.assert_allclose(float(got["output_penalty"]), expected_penalty, rtol=2e-5)
