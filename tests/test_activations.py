"""Smoothed activations: closed forms against float64 quadrature and Monte Carlo,
numerics at the edges (σ = 0, tiny σ, huge |x|, half precision), the fused
relu gradients, cross-backend reference values, `get` and serialization."""

import functools
import math
import os
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import ops
from scipy import integrate
from scipy import special

from keras_gsmooth import activations
from keras_gsmooth import backend
from keras_gsmooth.activations import KerasPiecewiseLinear
from keras_gsmooth.backend import value_and_grad

SIGMAS = (1e-3, 1e-2, 0.1, 1.0, 10.0)
RATIOS = np.concatenate([np.linspace(-30.0, 30.0, 13), [-2.0, -1.0, -0.5, 0.5, 1.0, 2.0]])
REFERENCE_FILE = Path(__file__).parent / "reference_values" / "activations.npz"


def _phi(v):
    return 0.5 * special.erfc(-v / math.sqrt(2.0))


# name -> (identifier for get, float64 function, breakpoints)
EXACT = {
    "linear": ("linear", lambda v: v, []),
    "relu": ("relu", lambda v: max(v, 0.0), [0.0]),
    "leaky_relu": ("leaky_relu", lambda v: v if v >= 0 else 0.2 * v, [0.0]),
    "relu_capped": (
        KerasPiecewiseLinear("relu", negative_slope=0.1, max_value=2.0, threshold=0.5),
        lambda v: min(max(v if v > 0.5 else 0.0, 0.0), 2.0) - 0.1 * max(0.5 - v, 0.0),
        [0.0, 0.5, 2.0],
    ),
    "relu6": ("relu6", lambda v: min(max(v, 0.0), 6.0), [0.0, 6.0]),
    "hard_tanh": ("hard_tanh", lambda v: min(max(v, -1.0), 1.0), [-1.0, 1.0]),
    "hard_sigmoid": ("hard_sigmoid", lambda v: min(max(v / 6.0 + 0.5, 0.0), 1.0), [-3.0, 3.0]),
    "sparse_sigmoid": ("sparse_sigmoid", lambda v: 0.5 * min(max(v + 1.0, 0.0), 2.0), [-1.0, 1.0]),
    "hard_shrink": ("hard_shrink", lambda v: v if abs(v) > 0.5 else 0.0, [-0.5, 0.5]),
    "soft_shrink": (
        "soft_shrink",
        lambda v: v - 0.5 if v > 0.5 else (v + 0.5 if v < -0.5 else 0.0),
        [-0.5, 0.5],
    ),
    "threshold": (KerasPiecewiseLinear("threshold", threshold=1.0, default_value=-0.5), lambda v: v if v > 1 else -0.5, [1.0]),
    "abs": ("abs", abs, [0.0]),
    "gelu": ("gelu", lambda v: v * _phi(v), []),
    "erf": ("erf", math.erf, []),
    "exponential": ("exponential", math.exp, []),
    "sin": ("sin", math.sin, []),
    "cos": ("cos", math.cos, []),
}


REGENERATE = os.environ.get("KERAS_GSMOOTH_REGENERATE_REFERENCES") == "1"
QUADRATURE_FILE = Path(__file__).parent / "reference_values" / "quadrature.npz"


def _load_quadrature_table():
    if REGENERATE or not QUADRATURE_FILE.exists():
        return {}
    stored = np.load(QUADRATURE_FILE)
    return dict(zip(stored["keys"].tolist(), stored["values"]))


_QUADRATURE_TABLE = _load_quadrature_table()


@pytest.fixture(scope="module", autouse=True)
def _save_quadrature_table():
    yield
    if REGENERATE:
        QUADRATURE_FILE.parent.mkdir(exist_ok=True)
        keys = sorted(_QUADRATURE_TABLE)
        np.savez(QUADRATURE_FILE, keys=np.array(keys), values=np.array([_QUADRATURE_TABLE[k] for k in keys]))


def quadrature_moments(name: str, x: float, sigma: float) -> tuple:
    """float64 (E h, E h², Var h) of h(x + s·ξ), s = σ/√2, by scipy's adaptive quadrature.

    Values are stored in `reference_values/quadrature.npz` (regenerate with
    KERAS_GSMOOTH_REGENERATE_REFERENCES=1) so the suite stays fast;
    `test_stored_quadrature_is_quadrature` recomputes a sample of them.
    """
    key = f"{name}|{x:.17g}|{sigma:.17g}"
    if key not in _QUADRATURE_TABLE:
        _QUADRATURE_TABLE[key] = np.array(live_quadrature_moments(name, x, sigma))
    return tuple(_QUADRATURE_TABLE[key])


def live_quadrature_moments(name: str, x: float, sigma: float) -> tuple:
    h = _functions()[name][1]
    breakpoints = _functions()[name][2]
    s = sigma / math.sqrt(2.0)
    cuts = sorted({(b - x) / s for b in breakpoints if abs((b - x) / s) < 40.0})
    edges = [-40.0] + cuts + [40.0]
    density = lambda t: math.exp(-0.5 * t * t) / math.sqrt(2.0 * math.pi)  # noqa: E731

    def integral(f):
        return sum(integrate.quad(f, a, b, epsabs=0, epsrel=1e-12, limit=200)[0] for a, b in zip(edges, edges[1:]))

    mean = integral(lambda t: h(x + s * t) * density(t))
    second = integral(lambda t: h(x + s * t) ** 2 * density(t))
    variance = integral(lambda t: (h(x + s * t) - mean) ** 2 * density(t))
    return mean, second, variance


def test_stored_quadrature_is_quadrature():
    assert _QUADRATURE_TABLE or REGENERATE, "tests/reference_values/quadrature.npz is missing"
    keys = sorted(_QUADRATURE_TABLE)[:: max(1, len(_QUADRATURE_TABLE) // 15)]
    for key in keys:
        name, x, sigma = key.split("|")
        live = live_quadrature_moments(name, float(x), float(sigma))
        np.testing.assert_allclose(_QUADRATURE_TABLE[key], live, rtol=1e-9, atol=1e-12, err_msg=key)


@functools.lru_cache(maxsize=None)
def _functions():
    smooth = {
        "silu": ("silu", lambda v: v / (1.0 + math.exp(-v)), []),
        "softplus": ("softplus", lambda v: math.log1p(math.exp(-abs(v))) + max(v, 0.0), []),
        "elu": ("elu", lambda v: v if v > 0 else math.expm1(v), [0.0]),
        "tanh": ("tanh", math.tanh, []),
        "sigmoid": ("sigmoid", lambda v: 0.5 * (1.0 + math.tanh(0.5 * v)), []),
    }
    return {**EXACT, **smooth}


def _numpy(t):
    return np.asarray(ops.convert_to_numpy(t), dtype="float64")


def _check_against_quadrature(name, xs, sigma, rtol, atol, variance_rtol=None):
    activation = activations.get(_functions()[name][0])
    reference = np.array([quadrature_moments(name, float(x), sigma) for x in xs])
    x32 = ops.convert_to_tensor(xs.astype("float32"))
    mean, variance = activation.mean_and_variance(x32, sigma)
    results = {
        "mean": (_numpy(activation.mean(x32, sigma)), reference[:, 0]),
        "mean_and_variance[0]": (_numpy(mean), reference[:, 0]),
        "second_moment": (_numpy(activation.second_moment(x32, sigma)), reference[:, 1]),
        "variance": (_numpy(variance), reference[:, 2]),
    }
    for what, (got, want) in results.items():
        error = np.abs(got - want)
        bound = atol + (variance_rtol if what == "variance" and variance_rtol else rtol) * np.abs(want)
        worst = int(np.argmax(error / bound))
        assert np.all(error <= bound), (
            f"{name} {what} σ={sigma}: x={xs[worst]}, got {got[worst]!r}, "
            f"quadrature {want[worst]!r}, error {error[worst]:.3g} > {bound[worst]:.3g}"
        )


@pytest.mark.parametrize("sigma", SIGMAS)
@pytest.mark.parametrize("name", [n for n in EXACT if n != "exponential"])
def test_exact_forms_match_float64_quadrature(name, sigma):
    _check_against_quadrature(name, RATIOS * sigma, sigma, rtol=1e-5, atol=1e-6, variance_rtol=VARIANCE_RTOL.get(name, 1e-5))


# Relaxed honestly: the generic piecewise variance loses a few bits when a
# narrow middle piece lies several s away from x (hard_tanh at σ = 10,
# x = 10: relative error 1.6e-5).
VARIANCE_RTOL = {"hard_tanh": 3e-5, "relu6": 3e-5, "hard_sigmoid": 3e-5, "sparse_sigmoid": 3e-5, "relu_capped": 3e-5}


@pytest.mark.parametrize("sigma", SIGMAS)
def test_exponential_matches_quadrature_within_float32_range(sigma):
    # Relaxed honestly: e^(2x + σ²) must fit float32 (< 3.4e38), so only
    # x with 2x + σ² < 80 are compared; at σ = 10 that excludes x ≥ −10.
    xs = RATIOS * sigma
    xs = xs[2.0 * xs + sigma**2 < 80.0]
    _check_against_quadrature("exponential", xs, sigma, rtol=1e-5, atol=1e-6)


MONTE_CARLO_FUNCTIONS = {
    "relu": lambda z: np.maximum(z, 0.0),
    "leaky_relu": lambda z: np.where(z >= 0, z, 0.2 * z),
    "relu6": lambda z: np.clip(z, 0.0, 6.0),
    "hard_shrink": lambda z: np.where(np.abs(z) > 0.5, z, 0.0),
    "gelu": lambda z: z * 0.5 * special.erfc(-z / math.sqrt(2.0)),
    "erf": special.erf,
}


@pytest.mark.montecarlo
@pytest.mark.parametrize("name", sorted(MONTE_CARLO_FUNCTIONS))
def test_moments_match_monte_carlo(name):
    rng = np.random.default_rng(7)
    h = MONTE_CARLO_FUNCTIONS[name]
    activation = activations.get(_functions()[name][0])
    samples = 1_000_000
    for x, sigma in [(-0.3, 0.5), (0.4, 1.0), (1.5, 2.0)]:
        values = h(x + (sigma / math.sqrt(2.0)) * rng.standard_normal(samples))
        for estimate, got in [
            (values, activation.mean(np.float32([x]), sigma)),
            (values**2, activation.second_moment(np.float32([x]), sigma)),
        ]:
            standard_error = estimate.std() / math.sqrt(samples)
            assert abs(_numpy(got)[0] - estimate.mean()) <= 5.0 * standard_error + 1e-6, (name, x, sigma)


# Documented accuracy of the approximations: (σ, mean, second moment, variance).
APPROXIMATION_BOUNDS = {
    "tanh": [(0.5, 5.3e-3, 1.6e-2, 1.6e-2), (1.0, 1.5e-2, 2.3e-2, 3.3e-2), (4.0, 3.5e-2, 2.4e-2, 6.3e-2)],
    "sigmoid": [(0.5, 7.8e-4, 1.7e-3, 1.5e-3), (1.0, 2.6e-3, 4.6e-3, 4.0e-3), (4.0, 1.6e-2, 1.7e-2, 1.5e-2)],
}


@pytest.mark.parametrize("name", ["tanh", "sigmoid"])
def test_approximations_stay_within_their_documented_error(name):
    activation = activations.get(name)
    assert activation.exact is False
    for sigma, *bounds in APPROXIMATION_BOUNDS[name]:
        xs = np.linspace(-3.0, 3.0, 25) * max(sigma, 1.0)
        reference = np.array([quadrature_moments(name, float(x), sigma) for x in xs])
        x32 = xs.astype("float32")
        mean, variance = activation.mean_and_variance(x32, sigma)
        got = [_numpy(mean), _numpy(activation.second_moment(x32, sigma)), _numpy(variance)]
        for column, (values, bound) in enumerate(zip(got, bounds)):
            assert np.max(np.abs(values - reference[:, column])) <= bound, (name, sigma, column)


# Gauss–Hermite, 32 nodes: (function, σ, bound relative to max(1, |value|)), from the docstring table.
QUADRATURE_BOUNDS = [("silu", 0.1, 2e-6), ("silu", 1.0, 2e-6), ("softplus", 1.0, 2e-6), ("elu", 0.1, 2e-6), ("elu", 1.0, 3e-4)]


@pytest.mark.parametrize("name, sigma, bound", QUADRATURE_BOUNDS)
def test_gauss_hermite_matches_quadrature(name, sigma, bound):
    activation = activations.get(name)
    assert isinstance(activation, activations.GaussHermite) and activation.num_points == 32
    xs = np.linspace(-6.0, 6.0, 25) * max(sigma, 1.0)
    reference = np.array([quadrature_moments(name, float(x), sigma) for x in xs])
    mean, variance = activation.mean_and_variance(xs.astype("float32"), sigma)
    for got, want in [(_numpy(mean), reference[:, 0]), (_numpy(variance), reference[:, 2])]:
        assert np.max(np.abs(got - want) / np.maximum(1.0, np.abs(want))) <= bound


ALL_NAMES = list(EXACT) + ["tanh", "sigmoid", "silu", "elu"]


def _activation(name):
    return activations.get(_functions()[name][0])


def test_relu_variance_does_not_cancel():
    # Naively (relu²)_σ − relu_σ² at x = 100 is 10000.00005 − 10000: all noise in float32.
    for activation in (activations.get("relu"), KerasPiecewiseLinear("relu")):
        variance = _numpy(activation.variance(np.float32([100.0]), 0.01))[0]
        assert variance == pytest.approx(0.5 * 0.01**2, rel=1e-5)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_variance_is_never_negative(name, rng):
    activation = _activation(name)
    xs = (rng.standard_normal(400) * 20.0).astype("float32")
    if name == "exponential":  # keep e^(2x + σ²/2) inside float32 for σ ≤ 3
        xs = np.minimum(xs, 30.0)
    for sigma in (0.0, 1e-6, 1e-3, 0.3, 3.0):
        variance = _numpy(activation.variance(xs, sigma))
        assert np.all(variance >= 0.0) and np.all(np.isfinite(variance)), (name, sigma)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_sigma_zero_is_the_activation_with_finite_gradients(name):
    activation = _activation(name)
    xs = ops.convert_to_tensor(np.linspace(-3.0, 3.0, 13).astype("float32") + 0.05)
    raw = _numpy(activation(xs))
    mean, variance = activation.mean_and_variance(xs, 0.0)
    np.testing.assert_array_equal(_numpy(activation.mean(xs, 0.0)), raw)
    np.testing.assert_array_equal(_numpy(mean), raw)
    np.testing.assert_array_equal(_numpy(variance), 0.0)
    np.testing.assert_allclose(_numpy(activation.second_moment(xs, 0.0)), raw**2, rtol=1e-6)
    _, (grad_mean,) = value_and_grad(lambda v: ops.sum(activation.mean(v[0], 0.0)), [xs])
    _, (grad_raw,) = value_and_grad(lambda v: ops.sum(activation(v[0])), [xs])
    # (`+ 0·Σx` keeps PyTorch's graph connected where the variance is constant in x, as for linear.)
    _, (grad_variance,) = value_and_grad(lambda v: ops.sum(activation.variance(v[0], 0.0)) + 0.0 * ops.sum(v[0]), [xs])
    np.testing.assert_allclose(_numpy(grad_mean), _numpy(grad_raw), rtol=1e-6, atol=1e-7)
    assert np.all(np.isfinite(_numpy(grad_variance)))


@pytest.mark.parametrize("name", ALL_NAMES)
def test_gradients_are_finite_at_tiny_sigma_and_huge_inputs(name):
    activation = _activation(name)
    if name in ("exponential",):
        xs = np.float32([-1e4, -3.0, 0.0, 3.0, 30.0])  # e^(2x) must fit float32
    else:
        xs = np.float32([-1e4, -3.0, 0.0, 3.0, 1e4])
    xs = ops.convert_to_tensor(xs)
    for sigma in (1e-8, 1.0):
        for method in (activation.mean, activation.variance, activation.second_moment):
            value, (grad,) = value_and_grad(lambda v: ops.sum(method(v[0], sigma)) + 0.0 * ops.sum(v[0]), [xs])
            assert np.all(np.isfinite(_numpy(grad))), (name, sigma, method.__name__)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("name", ALL_NAMES)
def test_half_precision_has_no_nan_or_inf(name, dtype):
    activation = _activation(name)
    xs = ops.cast(np.linspace(-40.0, 40.0, 33).astype("float32"), dtype)
    if name == "exponential":  # (h²)_σ = e^(2x + σ²) must fit float16 (< 65504)
        xs = ops.cast(np.linspace(-40.0, -15.0, 33).astype("float32"), dtype)
    for sigma in (0.0, 1e-3, 1.0, 5.0):
        mean, variance = activation.mean_and_variance(xs, sigma)
        for value in (mean, variance, activation.mean(xs, sigma)):
            assert keras.backend.standardize_dtype(value.dtype) == dtype
            assert np.all(np.isfinite(_numpy(ops.cast(value, "float32")))), (name, dtype, sigma)


@pytest.mark.parametrize("negative_slope", [0.0, 0.2, -1.0, 1.5])
def test_fused_relu_gradients_equal_autodiff_of_the_generic_form(negative_slope):
    fused = activations.ReLU(negative_slope=negative_slope)
    generic = KerasPiecewiseLinear("relu", negative_slope=negative_slope)
    xs = ops.convert_to_tensor(np.linspace(-4.0, 4.0, 33).astype("float32") + 0.01)
    sigma = ops.convert_to_tensor(0.7, "float32")
    weights = ops.convert_to_tensor(np.linspace(0.5, 1.5, 33).astype("float32"))
    for method in ("mean", "variance"):
        results = []
        for activation in (fused, generic):
            function = getattr(activation, method)
            results.append(value_and_grad(lambda v: ops.sum(weights * function(v[0], v[1])), [xs, sigma]))
        (value_fused, grads_fused), (value_generic, grads_generic) = results
        np.testing.assert_allclose(_numpy(value_fused), _numpy(value_generic), rtol=1e-5)
        np.testing.assert_allclose(_numpy(grads_fused[0]), _numpy(grads_generic[0]), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(_numpy(grads_fused[1]), _numpy(grads_generic[1]), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("negative_slope", [0.0, 0.2])
@pytest.mark.parametrize("size", [33, 2 * backend.REMATERIALIZE_MIN_ELEMENTS])
def test_fused_summed_variance_and_its_gradients_equal_autodiff(negative_slope, size):
    """Both ways of the backward pass: residuals kept (small inputs) and recomputed (large ones)."""
    fused = activations.ReLU(negative_slope=negative_slope)
    generic = KerasPiecewiseLinear("relu", negative_slope=negative_slope)
    xs = ops.convert_to_tensor(np.resize(np.linspace(-4.0, 4.0, 33), size).astype("float32") + 0.01)
    weights = ops.convert_to_tensor(np.resize(np.linspace(0.5, 1.5, 7), size).astype("float32"))
    sigma = ops.convert_to_tensor(0.7, "float32")

    def fused_loss(v):
        mean, summed = fused.mean_and_summed_variance(v[0], v[1])
        return ops.sum(weights * mean) + summed

    value_fused, grads_fused = value_and_grad(fused_loss, [xs, sigma])
    value_generic, grads_generic = value_and_grad(
        lambda v: ops.sum(weights * generic.mean(v[0], v[1])) + ops.sum(generic.variance(v[0], v[1])), [xs, sigma]
    )
    np.testing.assert_allclose(_numpy(value_fused), _numpy(value_generic), rtol=1e-5)
    np.testing.assert_allclose(_numpy(grads_fused[0]), _numpy(grads_generic[0]), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(_numpy(grads_fused[1]), _numpy(grads_generic[1]), rtol=1e-4, atol=1e-5)


def test_closed_forms_recompute_their_residuals_only_for_large_or_unknown_sizes():
    def rematerializes(shape, asked=True):
        return backend._rematerializes(asked, keras.KerasTensor(shape))

    assert not rematerializes((1, 25, 25, 32))  # the paper CNN at batch 1: residuals kept
    assert rematerializes((128, 25, 25, 32)) and rematerializes((None, 25, 25, 32))
    assert rematerializes((backend.REMATERIALIZE_MIN_ELEMENTS,)) and not rematerializes((backend.REMATERIALIZE_MIN_ELEMENTS - 1,))
    assert not rematerializes((128, 25, 25, 32), asked=False)


def test_fused_relu_sigma_gradient_matches_finite_differences():
    relu = activations.get("relu")
    xs = np.linspace(-2.0, 2.0, 9)
    sigma, step = 0.8, 1e-3
    for method in ("mean", "variance"):
        _, (_, grad_sigma) = value_and_grad(
            lambda v: ops.sum(getattr(relu, method)(v[0], v[1])),
            [ops.convert_to_tensor(xs.astype("float32")), ops.convert_to_tensor(sigma, "float32")],
        )
        moments = [np.array([quadrature_moments("relu", float(x), s) for x in xs]) for s in (sigma + step, sigma - step)]
        column = 0 if method == "mean" else 2
        finite_difference = (moments[0][:, column].sum() - moments[1][:, column].sum()) / (2.0 * step)
        assert float(_numpy(grad_sigma)) == pytest.approx(finite_difference, rel=1e-4, abs=1e-5)


def test_heat_equation_derivative_of_relu():
    # ∂relu_σ/∂σ = e^(−x²/σ²)/(2√π) (SPEC §2).
    xs = np.float32([-1.0, 0.0, 0.5])
    sigma = ops.convert_to_tensor(0.5, "float32")
    for x in xs:
        _, (_, grad_sigma) = value_and_grad(
            lambda v: ops.sum(activations.get("relu").mean(v[0], v[1])), [ops.convert_to_tensor(np.float32([x])), sigma]
        )
        assert float(_numpy(grad_sigma)) == pytest.approx(math.exp(-(x / 0.5) ** 2) / (2 * math.sqrt(math.pi)), rel=1e-5)


# Cross-backend reference values: outputs and gradients on a fixed grid, stored once.
REFERENCE_NAMES = ["relu", "leaky_relu", "relu6", "hard_shrink", "gelu", "erf", "exponential", "tanh", "sigmoid", "sin", "silu"]
REFERENCE_X = np.linspace(-3.0, 3.0, 17).astype("float32") + np.float32(0.03)
REFERENCE_SIGMAS = (0.0, 0.1, 1.0)


def _reference_values():
    values = {}
    for name in REFERENCE_NAMES:
        activation = _activation(name)
        for sigma in REFERENCE_SIGMAS:
            xs = ops.convert_to_tensor(REFERENCE_X)
            mean, variance = activation.mean_and_variance(xs, sigma)
            _, (grad_mean,) = value_and_grad(lambda v: ops.sum(activation.mean(v[0], sigma)), [xs])
            _, (grad_variance,) = value_and_grad(lambda v: ops.sum(activation.variance(v[0], sigma)), [xs])
            key = f"{name}@{sigma}"
            values[f"{key}/mean"] = _numpy(mean)
            values[f"{key}/variance"] = _numpy(variance)
            values[f"{key}/grad_mean"] = _numpy(grad_mean)
            values[f"{key}/grad_variance"] = _numpy(grad_variance)
    return values


def test_outputs_and_gradients_equal_the_stored_cross_backend_reference():
    values = _reference_values()
    if REGENERATE:
        REFERENCE_FILE.parent.mkdir(exist_ok=True)
        np.savez(REFERENCE_FILE, **values)
    stored = np.load(REFERENCE_FILE)
    assert sorted(stored.files) == sorted(values)
    for key, value in values.items():
        np.testing.assert_allclose(value, stored[key], rtol=2e-5, atol=2e-6, err_msg=key)


# get, serialization, errors.
def test_get_accepts_names_functions_callables_configs_and_instances():
    assert activations.get("relu") == activations.ReLU()
    assert activations.get(keras.activations.relu) == activations.ReLU()
    assert activations.get("leaky_relu") == activations.ReLU(negative_slope=0.2)
    assert activations.get(functools.partial(keras.activations.leaky_relu, negative_slope=0.1)) == activations.ReLU(0.1)
    assert activations.get(functools.partial(keras.activations.relu, max_value=3.0)) == KerasPiecewiseLinear("relu", max_value=3.0)
    assert isinstance(activations.get("gelu"), activations.GELU)
    assert isinstance(activations.get(keras.activations.swish), activations.GaussHermite)
    assert activations.get(None) == KerasPiecewiseLinear("linear")
    custom = activations.get(lambda v: v * ops.tanh(v))
    assert isinstance(custom, activations.GaussHermite) and not custom.exact
    relu = activations.get("relu")
    assert activations.get(relu) is relu
    assert activations.get(activations.serialize(relu)) == relu


@pytest.mark.parametrize(
    "activation",
    [
        activations.ReLU(0.3),
        KerasPiecewiseLinear("relu", max_value=4.0, threshold=-1.0),
        KerasPiecewiseLinear("threshold", threshold=0.2, default_value=1.0),
        activations.PiecewiseLinear([-1.0, 2.0], [0.0, 1.0, 3.0], [0.0, 2.0, -1.0]),
        activations.GELU(),
        activations.Erf(scale=2.0),
        activations.Exponential(scale=0.5),
        activations.Sin(frequency=3.0),
        activations.Cos(),
        activations.Tanh(),
        activations.Sigmoid(),
        activations.GaussHermite("silu", num_points=16),
        activations.get(functools.partial(keras.activations.gelu, approximate=True)),
    ],
    ids=repr,
)
def test_serialization_round_trip(activation):
    config = activations.serialize(activation)
    with keras.saving.custom_object_scope({}):
        restored = activations.deserialize(config)
    assert type(restored) is type(activation) and restored.get_config() == activation.get_config()
    xs = np.linspace(-2.0, 2.0, 9).astype("float32")
    np.testing.assert_array_equal(_numpy(restored.mean(xs, 0.3)), _numpy(activation.mean(xs, 0.3)))


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "glu", "sparsemax"])
def test_non_elementwise_activations_are_refused(name):
    with pytest.raises(ValueError, match=f"'{name}' is not elementwise"):
        activations.get(name)
    with pytest.raises(ValueError, match="not elementwise"):
        activations.get(getattr(keras.activations, name))


def _centered(x):
    return x - ops.mean(x, axis=-1, keepdims=True)


@pytest.mark.parametrize("function", [_centered, "softmax", lambda x: x[..., :1]], ids=["centering", "softmax", "slice"])
def test_quadrature_refuses_functions_that_are_not_elementwise(function):
    # They would be smoothed unit by unit without any error otherwise.
    with pytest.raises(ValueError, match="is not elementwise"):
        activations.GaussHermite(function)
    if callable(function):
        with pytest.raises(ValueError, match="is not elementwise"):
            activations.get(function)


def test_quadrature_says_when_a_function_cannot_be_probed():
    def needs_four_columns(x):
        return ops.reshape(x, (-1, 4))

    with pytest.raises(ValueError, match="could not be evaluated on probe arrays"):
        activations.GaussHermite(needs_four_columns)


def test_bad_identifiers_and_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown activation 'relu7'"):
        activations.get("relu7")
    with pytest.raises(ValueError, match="needs its `threshold`"):
        activations.get("threshold")
    with pytest.raises(ValueError, match="`identifier` must be"):
        activations.get(3)
    with pytest.raises(ValueError, match="strictly increasing"):
        activations.PiecewiseLinear([1.0, 0.0], [0, 0, 0], [0, 0, 0])
    with pytest.raises(ValueError, match="num_points"):
        activations.GaussHermite("silu", num_points=0)
    relu = activations.get("relu")
    for sigma in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="sigma"):
            relu.mean(np.float32([1.0]), sigma)
    with pytest.raises(TypeError, match="float tensor"):
        relu.mean(np.int32([1]), 0.1)


@pytest.mark.parametrize("shape", [(1024, 3), (504, 4), (8, 5, 7), (2, 25, 25, 32)])
def test_sum_of_elements_is_the_sum_folded_or_not(shape):
    from keras_gsmooth.activations.base import sum_of_elements

    x = np.random.default_rng(4).normal(size=shape).astype("float32")
    total = ops.convert_to_numpy(sum_of_elements(ops.convert_to_tensor(x)))
    np.testing.assert_allclose(total, x.astype("float64").sum(), rtol=1e-5, atol=1e-4)


@pytest.mark.requires_backend("jax")
def test_sum_of_elements_folds_large_inputs_on_jax():
    import jax

    from keras_gsmooth.activations.base import sum_of_elements

    def summed_rows_shape(shape):
        program = jax.make_jaxpr(sum_of_elements)(np.ones(shape, "float32"))
        return [tuple(e.invars[0].aval.shape) for e in program.jaxpr.eqns if e.primitive.name == "dot_general"][0]

    assert summed_rows_shape((1024, 3)) == (128, 3)  # eight blocks of 128 rows, added
    assert summed_rows_shape((504, 4)) == (504, 4)  # too few rows to fold
    assert summed_rows_shape((1028, 4)) == (1028, 4)  # not divisible by eight
