"""Piecewise-linear activations, smoothed exactly with truncated-Gaussian moments.

One engine serves every piecewise-linear activation, continuous or not:
`linear`, `relu` (with Keras's `negative_slope`, `max_value`, `threshold`),
`leaky_relu`, `relu6`, `hard_tanh`, `hard_sigmoid`, `sparse_sigmoid`,
`hard_shrink`, `soft_shrink`, `threshold`, `abs`. `ReLU` is the hot path of
relu and leaky relu: the same closed forms with a fused, closed-form
backward pass (`keras.ops.custom_gradient`).

With `z = x + s·ξ`, `s = σ/√2`, `ξ ~ N(0, 1)`, the variance is computed as
the variance of `g = h − ℓ`, where `ℓ` is the linear piece that contains
`x`, plus the exact linear part: `Var h(z) = Var g + 2bs·E[gξ] + b²s²`
(`b` = slope of `ℓ`). `g` vanishes on x's own piece, so the large `x²`
terms never enter. Measured float32 accuracy against float64 quadrature
(x/σ ∈ [−30, 30], σ ∈ [1e-3, 10]): mean and second moment within
1e-6 + 1e-5·|value|; the variance within 1e-6 + 3e-5·|value| (a few bits are
lost when a narrow middle piece lies a few s from x, e.g. hard_tanh at
σ = 10, x = 10: 1.6e-5 relative).
"""

import collections
import functools
import math

import keras
import numpy as np
from keras import ops

from keras_gsmooth import eager_ops
from keras_gsmooth import native_tensorflow
from keras_gsmooth import native_torch
from keras_gsmooth.activations.base import INV_SQRT_2PI
from keras_gsmooth.activations.base import SQRT_2
from keras_gsmooth.activations.base import SQRT_PI
from keras_gsmooth.activations.base import SmoothedActivation
from keras_gsmooth.activations.base import gaussian_tails
from keras_gsmooth.activations.base import normal_tails
from keras_gsmooth.activations.base import safe_positive
from keras_gsmooth.activations.base import sum_of_elements
from keras_gsmooth.backend import closed_form_gradient
from keras_gsmooth.backend import separate_fusion


@keras.saving.register_keras_serializable(package="keras_gsmooth")
class PiecewiseLinear(SmoothedActivation):
    """Any piecewise-linear function, possibly with jumps, smoothed exactly.

    Between consecutive breakpoints `t_1 < … < t_K` the function is
    `intercepts[k] + slopes[k]·x` (piece 0 is `x < t_1`, piece K is
    `x > t_K`). Jumps at breakpoints are allowed. At a breakpoint the
    unsmoothed function takes the value of the piece on its right.

    Args:
        breakpoints: Increasing floats `t_1 < … < t_K` (may be empty).
        intercepts: `K + 1` floats, the intercept of each piece.
        slopes: `K + 1` floats, the slope of each piece.

    Raises:
        ValueError: if the lengths disagree, the breakpoints are not strictly
            increasing, or a value is not finite.

    Example:

    ```python
    # A "hard tanh" between -2 and 2.
    clip2 = keras_gsmooth.activations.PiecewiseLinear(
        breakpoints=[-2.0, 2.0], intercepts=[-2.0, 0.0, 2.0], slopes=[0.0, 1.0, 0.0]
    )
    clip2.mean(keras.ops.linspace(-3.0, 3.0, 7), 0.5)
    ```
    """

    exact = True

    def __init__(self, breakpoints, intercepts, slopes):
        self.breakpoints = [float(t) for t in breakpoints]
        self.intercepts = [float(a) for a in intercepts]
        self.slopes = [float(b) for b in slopes]
        _check_pieces(self.__class__.__name__, self.breakpoints, self.intercepts, self.slopes)

    def get_config(self) -> dict:
        return {"breakpoints": self.breakpoints, "intercepts": self.intercepts, "slopes": self.slopes}

    def raw(self, x):
        x = ops.convert_to_tensor(x)
        value = self.intercepts[0] + self.slopes[0] * x
        for t, a, b in zip(self.breakpoints, self.intercepts[1:], self.slopes[1:]):
            value = ops.where(ops.greater_equal(x, t), a + b * x, value)
        return ops.cast(value, x.dtype)

    def _mean(self, x, sigma):
        return self._moments(x, sigma, with_variance=False)[0]

    def _mean_and_variance(self, x, sigma):
        return self._moments(x, sigma, with_variance=True)

    def _moments(self, x, sigma, with_variance):
        positive, sigma_safe = safe_positive(sigma)
        s = sigma_safe / SQRT_2
        # The linear piece l(z) = a + b·z that contains x.
        a = ops.full_like(x, self.intercepts[0])
        b = ops.full_like(x, self.slopes[0])
        for t, a_k, b_k in zip(self.breakpoints, self.intercepts[1:], self.slopes[1:]):
            inside = ops.greater_equal(x, t)
            a = ops.where(inside, a_k, a)
            b = ops.where(inside, b_k, b)
        # Truncated moments of ξ over each piece: M0 = P, M1 = E[ξ·1], M2 = E[ξ²·1].
        ends = [_standard_point(t, x, s) for t in self.breakpoints]
        # With no breakpoint h is linear everywhere and g = 0.
        lower = [None] + ends if ends else []
        upper = ends + [None]
        mean_g = ops.zeros_like(x)
        mean_g_xi = ops.zeros_like(x)
        mean_g2 = ops.zeros_like(x)
        for lo, hi, a_k, b_k in zip(lower, upper, self.intercepts, self.slopes):
            m0, m1, m2 = _truncated_moments(lo, hi)
            # g = d + e·s·ξ on this piece.
            d = (a_k - a) + (b_k - b) * x
            es = (b_k - b) * s
            mean_g = mean_g + d * m0 + es * m1
            if with_variance:
                mean_g_xi = mean_g_xi + d * m1 + es * m2
                mean_g2 = mean_g2 + ops.square(d) * m0 + 2.0 * d * es * m1 + ops.square(es) * m2
        mean = ops.where(positive, a + b * x + mean_g, self.raw(x))
        if not with_variance:
            return mean, None
        bs = b * s
        variance = mean_g2 - ops.square(mean_g) + bs * (2.0 * mean_g_xi + bs)
        variance = ops.where(positive, ops.maximum(variance, 0.0), ops.zeros_like(x))
        return mean, variance


def _standard_point(t, x, s):
    """A breakpoint in standard units, `y = (t − x)/s`, with its Φ, 1 − Φ and φ."""
    y = (t - x) / s
    cdf, survival = gaussian_tails(y)
    density = INV_SQRT_2PI * ops.exp(-0.5 * ops.square(y))
    return y, cdf, survival, density


def _truncated_moments(lower, upper):
    """`(P, E[ξ·1], E[ξ²·1])` of ξ ~ N(0, 1) over (lower, upper); None is ±∞."""
    if lower is None:
        y, cdf, _, density = upper
        return cdf, -density, cdf - y * density
    if upper is None:
        y, _, survival, density = lower
        return survival, density, survival + y * density
    y_lo, cdf_lo, survival_lo, density_lo = lower
    y_hi, cdf_hi, survival_hi, density_hi = upper
    # Subtract the two tails on the side where they are small.
    probability = ops.where(ops.greater_equal(y_lo, 0), survival_lo - survival_hi, cdf_hi - cdf_lo)
    return (
        probability,
        density_lo - density_hi,
        probability + y_lo * density_lo - y_hi * density_hi,
    )


def _check_pieces(owner, breakpoints, intercepts, slopes):
    if len(intercepts) != len(breakpoints) + 1 or len(slopes) != len(breakpoints) + 1:
        raise ValueError(
            f"{owner}: `intercepts` and `slopes` need one entry per piece, "
            f"len(breakpoints) + 1 = {len(breakpoints) + 1}. Received "
            f"{len(intercepts)} intercepts and {len(slopes)} slopes."
        )
    values = breakpoints + intercepts + slopes
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{owner}: breakpoints, intercepts and slopes must be finite. Received {values}.")
    if any(t1 >= t2 for t1, t2 in zip(breakpoints, breakpoints[1:])):
        raise ValueError(f"{owner}: `breakpoints` must be strictly increasing. Received {breakpoints}.")


def pieces_of(function, candidates):
    """Breakpoints, intercepts and slopes of a piecewise-linear float function.

    `function` maps a Python float to a float and is linear between the
    sorted `candidates`. Each piece is read off from two interior points (in
    float64); breakpoints where nothing changes are dropped.
    """
    points = sorted(set(float(c) for c in candidates))
    if points:
        edges = [points[0] - 2.0] + points + [points[-1] + 2.0]
    else:
        edges = [0.0, 3.0]
    intercepts, slopes = [], []
    for lo, hi in zip(edges, edges[1:]):
        p, q = lo + (hi - lo) / 3.0, lo + 2.0 * (hi - lo) / 3.0
        slope = (function(q) - function(p)) / (q - p)
        intercepts.append(function(p) - slope * p)
        slopes.append(slope)
    kept = [0]
    for k in range(1, len(points) + 1):
        last = kept[-1]
        if not (np.isclose(intercepts[k], intercepts[last], rtol=0, atol=1e-12)
                and np.isclose(slopes[k], slopes[last], rtol=0, atol=1e-12)):
            kept.append(k)
    return (
        [points[k - 1] for k in kept[1:]],
        [intercepts[k] for k in kept],
        [slopes[k] for k in kept],
    )


def _relu_float(v, negative_slope=0.0, max_value=None, threshold=0.0):
    y = v if v > threshold else 0.0
    if max_value is not None:
        y = min(max(y, 0.0), max_value)
    return y - negative_slope * max(threshold - v, 0.0)


# Keras's piecewise-linear activations: (float64 definition, breakpoint candidates).
_KERAS_PIECEWISE = {
    "linear": (lambda v: v, lambda: []),
    "relu": (
        _relu_float,
        lambda negative_slope=0.0, max_value=None, threshold=0.0: [threshold, 0.0]
        + ([] if max_value is None else [max_value]),
    ),
    "leaky_relu": (lambda v, negative_slope=0.2: v if v >= 0 else negative_slope * v, lambda negative_slope=0.2: [0.0]),
    "relu6": (lambda v: min(max(v, 0.0), 6.0), lambda: [0.0, 6.0]),
    "hard_tanh": (lambda v: min(max(v, -1.0), 1.0), lambda: [-1.0, 1.0]),
    "hard_sigmoid": (lambda v: min(max(v / 6.0 + 0.5, 0.0), 1.0), lambda: [-3.0, 3.0]),
    "sparse_sigmoid": (lambda v: 0.5 * min(max(v + 1.0, 0.0), 2.0), lambda: [-1.0, 1.0]),
    "hard_shrink": (lambda v, threshold=0.5: v if abs(v) > threshold else 0.0, lambda threshold=0.5: [-threshold, threshold]),
    "soft_shrink": (
        lambda v, threshold=0.5: v - threshold if v > threshold else (v + threshold if v < -threshold else 0.0),
        lambda threshold=0.5: [-threshold, threshold],
    ),
    "threshold": (lambda v, threshold, default_value: v if v > threshold else default_value, lambda threshold, default_value: [threshold]),
    "abs": (abs, lambda: [0.0]),
}

KERAS_PIECEWISE_NAMES = tuple(_KERAS_PIECEWISE)


@keras.saving.register_keras_serializable(package="keras_gsmooth")
class KerasPiecewiseLinear(PiecewiseLinear):
    """A piecewise-linear Keras activation, by name and options, smoothed exactly.

    The unsmoothed function (`raw`, used at σ = 0) is the Keras activation
    itself, so its values at breakpoints follow Keras exactly.

    Args:
        activation: One of `"linear"`, `"relu"`, `"leaky_relu"`, `"relu6"`,
            `"hard_tanh"`, `"hard_sigmoid"`, `"sparse_sigmoid"`,
            `"hard_shrink"`, `"soft_shrink"`, `"threshold"`, `"abs"`.
        **options: The Keras activation's keyword arguments, e.g.
            `max_value=6.0, threshold=1.0` for relu, `threshold=0.5` for
            hard_shrink, `threshold` and `default_value` for threshold.

    Raises:
        ValueError: if the name is not one of the above or an option is unknown.

    Example:

    ```python
    capped = keras_gsmooth.activations.KerasPiecewiseLinear("relu", max_value=4.0)
    ```
    """

    def __init__(self, activation: str, **options):
        if activation not in _KERAS_PIECEWISE:
            raise ValueError(
                f"KerasPiecewiseLinear: unknown `activation`={activation!r}. "
                f"Expected one of {sorted(_KERAS_PIECEWISE)}."
            )
        definition, candidates = _KERAS_PIECEWISE[activation]
        try:
            points = candidates(**options)
        except TypeError as error:
            raise ValueError(
                f"KerasPiecewiseLinear: bad options {options} for activation {activation!r}: {error}."
            ) from None
        self.activation = activation
        self.options = dict(options)
        super().__init__(*pieces_of(lambda v: float(definition(v, **options)), points))

    def get_config(self) -> dict:
        return {"activation": self.activation, **self.options}

    def raw(self, x):
        x = ops.convert_to_tensor(x)
        if self.activation == "abs":
            return ops.absolute(x)
        return ops.cast(getattr(keras.activations, self.activation)(x, **self.options), x.dtype)


@keras.saving.register_keras_serializable(package="keras_gsmooth")
class ReLU(SmoothedActivation):
    """Smoothed relu and leaky relu, with a fused closed-form backward pass.

    With `Φ = ½ erfc(−x/σ)` and `p = σ/(2√π)·e^(−x²/σ²)` (SPEC §2):
    `relu_σ(x) = x·Φ + p` and
    `Var_σ[relu](x) = x²Φ(1−Φ) + (σ²/2)Φ + x·p·(1 − 2Φ) − p²`, a sum of
    terms that are small wherever the result is, so it does not cancel
    (x = 100, σ = 0.01 gives σ²/2 in float32). Leaky relu with slope α is `αx + (1−α)·relu`, so
    `Var = (1−α)²Var[relu] + α(1−α)σ²Φ + α²σ²/2` (Stein: Cov(z, relu z) = s²Φ).

    The backward pass uses the closed-form derivatives
    `relu_σ′ = Φ`, `Var[relu]′ = 2·relu_σ·(1 − Φ)` and their σ-derivatives,
    computed from the same tails and Gaussian factor as the forward pass
    (`keras_gsmooth.backend.closed_form_gradient`), instead of autodiff
    re-deriving them; the σ-derivatives only when σ is differentiated. On
    PyTorch the forward and backward passes can each run as one compiled
    kernel (`keras_gsmooth.config.set_fused_torch_kernels`); on TensorFlow's
    CPU as one native kernel each, alone or fused with the average pooling
    that follows (`average_pooled_mean_and_sums`,
    `keras_gsmooth.config.set_native_tensorflow_kernels`).

    Args:
        negative_slope: Slope α for `x < 0` (0 for relu; Keras's leaky_relu
            default is 0.2).

    Example:

    ```python
    leaky = keras_gsmooth.activations.ReLU(negative_slope=0.1)
    leaky.mean(keras.ops.array([-1.0, 0.0, 1.0]), 0.5)
    ```
    """

    exact = True
    native_tensorflow_kernels = True

    def __init__(self, negative_slope: float = 0.0):
        negative_slope = float(negative_slope)
        if not math.isfinite(negative_slope):
            raise ValueError(f"ReLU: `negative_slope` must be finite. Received: negative_slope={negative_slope}.")
        self.negative_slope = negative_slope

    def get_config(self) -> dict:
        return {"negative_slope": self.negative_slope}

    def raw(self, x):
        if self.negative_slope == 0.0:
            return keras.activations.relu(x)
        return keras.activations.leaky_relu(x, negative_slope=self.negative_slope)

    def _mean(self, x, sigma):
        native = self._native(x, sigma)
        if native is not None:
            return native[0]
        return _relu_mean_function(self.negative_slope)(x, sigma)

    def _mean_and_variance(self, x, sigma):
        return (
            _relu_mean_function(self.negative_slope)(x, sigma),
            _relu_variance_function(self.negative_slope)(x, sigma),
        )

    def _mean_and_summed_variance(self, x, sigma):
        native = self._native(x, sigma)
        if native is not None:
            return native
        return _relu_summed_variance_function(self.negative_slope)(x, sigma)

    def _average_pooled_mean_and_sums(self, x, sigma, pool_size):
        for native in (native_tensorflow, native_torch):
            fused = native.smoothed_leaky_relu_average_pool(
                x, sigma, self.negative_slope, pool_size, self._sigma_derivatives
            )
            if fused is not None:
                return fused
        return None

    def _native(self, x, sigma):
        """The native kernels' `(h_σ, Σ Var_σ)`, or None (`keras_gsmooth.native_tensorflow`, `native_torch`)."""
        for native in (native_tensorflow, native_torch):
            outputs = native.smoothed_leaky_relu(x, sigma, self.negative_slope, self._sigma_derivatives)
            if outputs is not None:
                return outputs
        return None

    def _sigma_derivatives(self, x, sigma):
        return _relu_sigma_derivatives(x, sigma, self.negative_slope)


class _ReluParts(collections.namedtuple("_ReluParts", "cdf survival x_cdf p gaussian mean")):
    """Φ, 1 − Φ, x·Φ, p = σ·e^(−x²/σ²)/(2√π), e^(−x²/σ²) and relu_σ = xΦ + p."""


def _relu_parts(x, sigma, survival: bool = True):
    """The elementwise quantities every smoothed-relu formula is built from.

    `survival=False` leaves out `1 − Φ` (None), which the relu mean does not need.

    `Φ = ½erfc(−x/σ)` and `1 − Φ = ½erfc(x/σ)` are each exact in their own
    tail, and share the Gaussian factor (`normal_tails`).

    At σ = 0 the ratio x/σ is ±inf (x ≠ 0) or 0, which gives the exact
    unsmoothed limits; no autodiff runs through these values.
    """
    tiny = float(np.finfo(keras.backend.standardize_dtype(x.dtype)).tiny)
    # One scalar division, then a product per element (σ may change every step).
    cdf, upper, gaussian = normal_tails(x * (1.0 / eager_ops.maximum(sigma, tiny)), upper=survival)
    x_cdf = x * cdf
    # σ/(2√π) is one scalar, so that p costs one product per element.
    p = gaussian * (sigma * (0.5 / SQRT_PI))
    return _ReluParts(cdf, upper, x_cdf, p, gaussian, x_cdf + p)


def _relu_mean(x, parts, alpha):
    """`h_σ` and its slope `dh_σ/dx`.

    Relu: `(xΦ + p, Φ)`. Leaky relu: `(x·slope + (1−α)p, α + (1−α)Φ)`, the
    slope written so that it is exactly 1 where Φ = 1 and exactly α where
    Φ = 0 (σ = 0 then reproduces Keras's leaky_relu bit for bit).
    """
    if alpha == 0.0:
        return parts.mean, parts.cdf
    slope = ops.where(
        ops.greater_equal(parts.cdf, 0.5), 1.0 - (1.0 - alpha) * parts.survival, alpha + (1.0 - alpha) * parts.cdf
    )
    return x * slope + (1.0 - alpha) * parts.p, slope


def _relu_variance(x, sigma, parts, alpha):
    """Leaky-relu variance, not yet clipped at 0.

    `Var[relu] = x(1−Φ)·xΦ + (σ²/2)Φ + p·(x(1−Φ) − xΦ − p)` is the stable
    form `x²Φ(1−Φ) + (σ²/2)Φ + xp(1 − 2Φ) − p²`, a sum of terms that are
    small wherever the result is, arranged to reuse `x(1−Φ)` and `xΦ`
    (fewer passes over memory on eager backends).
    Leaky relu with slope α is `αx + (1−α)·relu`, so
    `Var = (1−α)²Var[relu] + α(1−α)σ²Φ + α²σ²/2` (Stein: Cov(z, relu z) = s²Φ).
    Rounding may leave a tiny negative value where the variance is ~0:
    callers clip the elementwise variance, or its sum.
    """
    half_sigma2 = 0.5 * eager_ops.square(sigma)
    x_survival = x * parts.survival
    variance = x_survival * parts.x_cdf + half_sigma2 * parts.cdf + parts.p * (x_survival - parts.x_cdf - parts.p)
    if alpha == 0.0:
        return variance
    beta = 1.0 - alpha
    return beta * beta * variance + (2.0 * alpha * beta) * half_sigma2 * parts.cdf + (alpha * alpha) * half_sigma2


def _relu_half_variance_derivative(parts, alpha):
    """`½·dVar_σ/dx` of leaky relu: `(1−α)²·relu_σ·(1 − Φ) + α(1−α)·p`."""
    half_derivative = parts.mean * parts.survival
    if alpha == 0.0:
        return half_derivative
    beta = 1.0 - alpha
    return beta * beta * half_derivative + alpha * beta * parts.p


def _relu_sigma_derivatives(x, sigma, alpha):
    """`(∂h_σ/∂σ, ∂Var_σ/∂σ)` elementwise, for the rare gradient with respect to σ."""
    beta = 1.0 - alpha
    parts = _relu_parts(x, sigma)
    c = parts.gaussian * (0.5 / SQRT_PI)
    sigma_cdf = sigma * parts.cdf
    variance = beta * beta * (sigma_cdf - 2.0 * parts.mean * c)
    if alpha != 0.0:
        variance = variance + 2.0 * alpha * beta * (sigma_cdf - x * c) + alpha * alpha * sigma
    return beta * c, variance


def _sigma_gradient(args, upstream, alpha, wanted, which):
    """Σ upstream·∂(output)/∂σ when autodiff asks for it, else None."""
    if not wanted[1]:
        return None
    x, sigma = args
    derivative = _relu_sigma_derivatives(x, sigma, alpha)[which]
    return ops.sum(upstream * derivative)


@functools.cache
def _relu_mean_function(alpha):
    def forward(x, sigma):
        mean, slope = _relu_mean(x, _relu_parts(x, sigma, survival=alpha != 0.0), alpha)
        return mean, (slope,)

    def backward(args, residuals, upstream, wanted):
        (slope,) = residuals
        return upstream * slope, _sigma_gradient(args, upstream, alpha, wanted, 0)

    return closed_form_gradient(forward, backward, elementwise=True)


@functools.cache
def _relu_variance_function(alpha):
    def forward(x, sigma):
        parts = _relu_parts(x, sigma)
        variance = _relu_variance(x, sigma, parts, alpha)
        return eager_ops.maximum(variance, 0.0), (_relu_half_variance_derivative(parts, alpha),)

    def backward(args, residuals, upstream, wanted):
        (half_derivative,) = residuals
        return (2.0 * upstream) * half_derivative, _sigma_gradient(args, upstream, alpha, wanted, 1)

    return closed_form_gradient(forward, backward, elementwise=True)


def _summed_relu_variance(x, sigma, parts, alpha):
    """`Σ Var_σ` of leaky relu over all elements of `x`, clipped at 0."""
    return eager_ops.maximum(sum_of_elements(_relu_variance(x, sigma, parts, alpha)), 0.0)


@functools.cache
def _relu_summed_variance_function(alpha):
    """`(h_σ, Σ Var_σ)` with one fused backward pass: the gradient with
    respect to x is `upstream·slope + upstream_sum·Var′`.

    On JAX and TensorFlow the variance starts from `separate_fusion(x)`, so
    that XLA fuses the mean and the variance each into one loop instead of
    writing their shared intermediates to memory, and the backward pass
    recomputes the slopes inside the loop that consumes them
    (`rematerialize`). The slopes come from the mean's chain only, so that
    recomputation evaluates the transcendental functions once. On eager
    PyTorch the mean and the variance share their intermediates and the
    slopes are kept; the fused PyTorch kernels recompute them, as XLA does
    (`elementwise`).
    """

    def forward(x, sigma):
        parts = _relu_parts(x, sigma)
        rows = separate_fusion(x)
        summed = _summed_relu_variance(rows, sigma, parts if rows is x else _relu_parts(rows, sigma), alpha)
        mean, slope = _relu_mean(x, parts, alpha)
        return (mean, summed), (slope, _relu_half_variance_derivative(parts, alpha))

    def backward(args, residuals, upstream, wanted):
        slope, half_derivative = residuals
        upstream_mean, upstream_sum = upstream
        gradient = upstream_mean * slope + (2.0 * upstream_sum) * half_derivative
        if not wanted[1]:
            return gradient, None
        x, sigma = args
        mean_derivative, variance_derivative = _relu_sigma_derivatives(x, sigma, alpha)
        return gradient, ops.sum(upstream_mean * mean_derivative) + upstream_sum * sum_of_elements(variance_derivative)

    return closed_form_gradient(forward, backward, rematerialize=True, elementwise=True)
