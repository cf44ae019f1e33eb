"""The base class of smoothed activations and the numerics they share.

Convention (SPEC §1): `h_σ(x) = E[h(x + σu)]` with `u ~ N(0, 1/2)`, so the
input is perturbed with standard deviation `s = σ/√2`.
"""

import math

import keras
from keras import ops

from keras_gsmooth import eager_ops
from keras_gsmooth.backend import native_erfc
from keras_gsmooth.validation import check_sigma

SQRT_2 = math.sqrt(2.0)
SQRT_PI = math.sqrt(math.pi)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)

_HALF_PRECISION = ("float16", "bfloat16")


class SmoothedActivation:
    """Base class of smoothed activations: h_σ, (h²)_σ and Var_σ[h].

    A smoothed activation knows the Gaussian smoothing of an elementwise
    activation `h` (SPEC §1–2): `mean(x, σ) = h_σ(x) = E[h(x + σu)]` and
    `second_moment(x, σ) = (h²)_σ(x)` with `u ~ N(0, 1/2)`, and the variance
    `(h²)_σ − h_σ²` in a form that never cancels catastrophically and is
    never negative. Everything is written with `keras.ops`, so it runs inside
    compiled train steps on every backend. At `σ = 0` every method returns the
    unsmoothed value (`h(x)`, `h(x)²`, `0`) with finite gradients.

    Inputs may be any float tensor; float16 and bfloat16 inputs are computed
    in float32 and cast back. `sigma` is a scalar float or tensor.

    Subclasses implement `_mean(x, sigma)`, `_mean_and_variance(x, sigma)`,
    `raw(x)` (the activation `h` itself) and `get_config()`, all on float32
    or float64 tensors, and set the class attribute `exact` (whether both
    moments are closed forms). They may override `_second_moment` when a
    direct form is more accurate than `variance + mean²`.

    Example:

    ```python
    relu = keras_gsmooth.activations.get("relu")
    y, var = relu.mean_and_variance(keras.ops.ones((4,)), 0.1)
    ```
    """

    exact = True
    # Whether `mean`, `mean_and_summed_variance` and
    # `average_pooled_mean_and_sums` have native TensorFlow
    # kernels (`keras_gsmooth.native_tensorflow`): relu and leaky relu.
    native_tensorflow_kernels = False

    def mean(self, x, sigma):
        """Returns the smoothed activation `h_σ(x)`, elementwise."""
        x, sigma, dtype = self._prepare(x, sigma)
        return eager_ops.cast(self._mean(x, sigma), dtype)

    def second_moment(self, x, sigma):
        """Returns the smoothed square `(h²)_σ(x)`, elementwise."""
        x, sigma, dtype = self._prepare(x, sigma)
        return ops.cast(self._second_moment(x, sigma), dtype)

    def variance(self, x, sigma):
        """Returns `Var_σ[h](x) = (h²)_σ(x) − h_σ(x)² ≥ 0`, elementwise."""
        return self.mean_and_variance(x, sigma)[1]

    def mean_and_variance(self, x, sigma):
        """Returns `(h_σ(x), Var_σ[h](x))`, sharing their transcendental evaluations."""
        x, sigma, dtype = self._prepare(x, sigma)
        mean, variance = self._mean_and_variance(x, sigma)
        return ops.cast(mean, dtype), ops.cast(variance, dtype)

    def mean_and_summed_variance(self, x, sigma):
        """Returns `(h_σ(x), Σ Var_σ[h](x))`: the variance summed over all elements, in float32 or wider.

        What `SmoothActivation`'s penalty needs. Subclasses may fuse the sum
        into the closed-form backward pass (see `ReLU`).
        """
        x, sigma, dtype = self._prepare(x, sigma)
        mean, summed = self._mean_and_summed_variance(x, sigma)
        return eager_ops.cast(mean, dtype), summed

    def average_pooled_mean_and_sums(self, x, sigma, pool_size: tuple):
        """Returns `(pooled, Σ Var_σ[h](x), Σ pooled²)` from one native kernel, or None where none applies.

        `pooled` is `average_pool(h_σ(x))`, non-overlapping (strides equal to
        `pool_size`), 'valid' and channels last; the variance sums over
        every element of `x`, and the last sum serves a penalty on the
        pooled output. Only activations with native TensorFlow kernels
        (`native_tensorflow_kernels`) return anything but None, and only
        where those apply; `SmoothActivation` pools the output of
        `mean_and_summed_variance` otherwise.
        """
        x, sigma, dtype = self._prepare(x, sigma)
        fused = self._average_pooled_mean_and_sums(x, sigma, tuple(pool_size))
        if fused is None:
            return None
        pooled, summed, squares = fused
        return ops.cast(pooled, dtype), summed, squares

    def __call__(self, x):
        """Applies the unsmoothed activation `h` (σ = 0)."""
        return self.raw(x)

    def raw(self, x):
        raise NotImplementedError(f"{self.__class__.__name__} must implement `raw(x)`.")

    def _mean(self, x, sigma):
        raise NotImplementedError(f"{self.__class__.__name__} must implement `_mean(x, sigma)`.")

    def _mean_and_variance(self, x, sigma):
        raise NotImplementedError(
            f"{self.__class__.__name__} must implement `_mean_and_variance(x, sigma)`."
        )

    def _mean_and_summed_variance(self, x, sigma):
        mean, variance = self._mean_and_variance(x, sigma)
        return mean, sum_of_elements(variance)

    def _average_pooled_mean_and_sums(self, x, sigma, pool_size):
        return None  # no fused kernel: the caller pools `mean_and_summed_variance`

    def _second_moment(self, x, sigma):
        mean, variance = self._mean_and_variance(x, sigma)
        return variance + ops.square(mean)

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config: dict) -> "SmoothedActivation":
        return cls(**config)

    def __repr__(self) -> str:
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"{self.__class__.__name__}({arguments})"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash((type(self).__name__, repr(self.get_config())))

    def _prepare(self, x, sigma):
        """Casts `x` and `sigma` to the compute dtype; returns them and x's dtype."""
        if not ops.is_tensor(x):
            x = ops.convert_to_tensor(x)
        dtype = keras.backend.standardize_dtype(x.dtype)
        if not keras.backend.is_float_dtype(dtype):
            raise TypeError(
                f"{self.__class__.__name__}: `x` must be a float tensor, "
                f"received dtype {dtype}. Cast it first, e.g. keras.ops.cast(x, 'float32')."
            )
        compute_dtype = "float32" if dtype in _HALF_PRECISION else dtype
        if not ops.is_tensor(sigma):
            sigma = check_sigma(sigma, argument="sigma", owner=f"{self.__class__.__name__}")
        return eager_ops.cast(x, compute_dtype), eager_ops.cast(sigma, compute_dtype), dtype


def keras_activation_name(function):
    """The name of `function` if it is a Keras activation function, else None."""
    name = getattr(function, "__name__", None)
    if name is None or not hasattr(keras.activations, name):
        return None
    try:
        return name if keras.activations.get(name) is function else None
    except ValueError:
        return None


def safe_positive(sigma):
    """Returns `(sigma > 0, sigma where positive else 1)` for guarded divisions."""
    positive = ops.greater(sigma, 0)
    return positive, ops.where(positive, sigma, ops.ones_like(sigma))


def sum_of_elements(x):
    """Σ x over every element, as a matrix–vector product with ones.

    XLA's CPU backend fuses an elementwise producer into a scalar reduction
    loop that it does not vectorise: summing the smoothed relu's variance of
    a (128, 25, 25, 32) tensor took 26 ms that way against 3 ms as a product
    with a ones vector over the last axis (then a short sum). Large inputs
    are first folded: their rows are split into eight blocks, added
    elementwise in the producer's own loop, so that the rows written to
    memory are an eighth of the input (1.25 MB instead of 10 MB for the
    paper CNN at batch 128; its train step's temporary block on JAX went
    from 34 to 24 MB, and GSmoothSVRG's from 41 to 30 MB, under the size
    above which glibc maps fresh pages for every step). TensorFlow computes
    the same; PyTorch uses its own vectorised sum, which also fuses into the
    kernels of `keras_gsmooth.config.set_fused_torch_kernels`.
    """
    if keras.backend.backend() == "torch":
        return eager_ops.sum(x)
    columns = x.shape[-1] if x.shape and x.shape[-1] is not None else 1
    rows = _folded_rows(ops.reshape(x, (-1, columns)))
    return ops.sum(ops.matmul(rows, ops.ones((columns,), dtype=x.dtype)))


_FOLDS = 8


def _folded_rows(rows):
    """The sum of `_FOLDS` equal blocks of `rows` (elementwise: XLA fuses it with the producer), or `rows` when small or not divisible."""
    count = rows.shape[0]
    if count is None or count % _FOLDS or count < 64 * _FOLDS:
        return rows
    blocks = ops.reshape(rows, (_FOLDS, count // _FOLDS, rows.shape[1]))
    folded = blocks[0]
    for block in range(1, _FOLDS):
        folded = folded + blocks[block]
    return folded


# erfcx(u) = e^(u²)·erfc(u) ≈ t·P(t), t = 1/(1 + u/2), for u ≥ 0 (lowest
# degree first): fitted by tools/fit_erfcx.py, relative error 1.2e-8.
_ERFCX_COEFFICIENTS = (
    0.2820947951888851,
    0.2820937538083044,
    0.24688457471655845,
    0.17531597581202293,
    0.09346243445705632,
    -0.059211358141391515,
    0.1321770452506322,
    -0.45497398936981776,
    0.49369493279975446,
    -0.2347335932904198,
    0.043195433358153595,
)


# PyTorch computes with subnormal floats, where XLA flushes them to zero,
# and arithmetic on them is about 100× slower (a fused kernel took 6× longer
# on pre-activations of scale σ). Beyond |z| = 7.5 both e^(−z²) and
# ½erfc(|z|) are below 1e-24, so on PyTorch z is clamped there, and
# subtracting (a hair more than) the values at the clamp makes the clamped
# results exactly 0 while every intermediate stays a normal float.
_TORCH_LIMIT = 7.5
_GAUSSIAN_AT_LIMIT = math.exp(-_TORCH_LIMIT**2) * (1.0 + 2.0**-12)
_HALF_TAIL_AT_LIMIT = 0.5 * math.erfc(_TORCH_LIMIT) * (1.0 + 2.0**-12)


def normal_tails(z, upper: bool = True):
    """Returns `(½·erfc(−z), ½·erfc(z), e^(−z²))`.

    The first two are `Φ(√2·z)` and `1 − Φ(√2·z)` (`Φ` the standard normal
    CDF), each with full accuracy in its own small tail (computing
    `1 − Φ` by subtraction loses everything there); the third is the
    Gaussian factor that every smoothed piecewise-linear form needs. `z = ±inf`
    gives the exact limits `(0, 1, 0)` or `(1, 0, 0)`. With `upper=False`
    the second is None (one pass less on eager backends).

    `erfc(|z|)` is `e^(−z²)·erfcx(|z|)` with `erfcx` a fitted polynomial
    (relative error 1.2e-8, below float32 rounding), sharing the one `exp`:
    inside a fused loop (JAX and TensorFlow with XLA, PyTorch's fused
    kernels) XLA's own `erfc` evaluates both of its branches and an `exp` of
    its own, and costs several times more on CPU. Eager PyTorch, where every
    operation is a pass over memory, uses its native vectorised `erfc` and
    `exp` (`keras_gsmooth.backend.native_erfc`). On PyTorch, whose CPU
    kernels keep subnormal floats, values below 1e-24 are set to exactly 0.
    """
    if keras.backend.backend() != "torch":
        return _fitted_normal_tails(z, upper)
    clamped = eager_ops.clip(z, -_TORCH_LIMIT, _TORCH_LIMIT)
    erfc = native_erfc()
    if erfc is None:
        lower, upper_tail, gaussian = _fitted_normal_tails(clamped, upper)
    else:
        gaussian = eager_ops.exp(-eager_ops.square(clamped))
        lower = 0.5 * erfc(-clamped)
        upper_tail = 0.5 * erfc(clamped) if upper else None
    gaussian = eager_ops.relu(gaussian - _GAUSSIAN_AT_LIMIT)
    lower = eager_ops.relu(lower - _HALF_TAIL_AT_LIMIT)
    if upper_tail is not None:
        upper_tail = eager_ops.relu(upper_tail - _HALF_TAIL_AT_LIMIT)
    return lower, upper_tail, gaussian


def _fitted_normal_tails(z, upper):
    gaussian = ops.exp(-ops.square(z))
    t = 1.0 / (1.0 + 0.5 * ops.absolute(z))
    polynomial = _ERFCX_COEFFICIENTS[-1]
    for coefficient in _ERFCX_COEFFICIENTS[-2::-1]:
        polynomial = coefficient + t * polynomial
    tail = 0.5 * gaussian * t * polynomial
    negative = ops.less(z, 0)
    lower = ops.where(negative, tail, 1.0 - tail)
    return lower, ops.where(negative, 1.0 - tail, tail) if upper else None, gaussian


def gaussian_tails(y):
    """Returns `(Φ(y), 1 − Φ(y))` with full accuracy in both tails.

    `Φ` is the standard normal CDF; see `normal_tails`.
    """
    lower, upper, _ = normal_tails(y / SQRT_2)
    return lower, upper
