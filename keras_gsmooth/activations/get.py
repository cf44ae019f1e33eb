"""`keras_gsmooth.activations.get`: from what a user passes to a smoothed activation."""

import functools

import keras

from keras_gsmooth.activations.approximate import Sigmoid
from keras_gsmooth.activations.approximate import Tanh
from keras_gsmooth.activations.base import SmoothedActivation
from keras_gsmooth.activations.base import keras_activation_name
from keras_gsmooth.activations.erf_based import GELU
from keras_gsmooth.activations.erf_based import Erf
from keras_gsmooth.activations.exponential import Exponential
from keras_gsmooth.activations.periodic import Cos
from keras_gsmooth.activations.periodic import Sin
from keras_gsmooth.activations.piecewise import KERAS_PIECEWISE_NAMES
from keras_gsmooth.activations.piecewise import KerasPiecewiseLinear
from keras_gsmooth.activations.piecewise import ReLU
from keras_gsmooth.activations.quadrature import GaussHermite

# Activations that act on a whole axis, not element by element.
NON_ELEMENTWISE = ("softmax", "log_softmax", "glu", "sparsemax")

# Names with a closed form (or the documented approximation) other than the
# piecewise-linear ones. `abs`, `erf`, `sin`, `cos` are keras_gsmooth extras.
_CLOSED_FORMS = {
    "relu": lambda: ReLU(),
    "leaky_relu": lambda: ReLU(negative_slope=0.2),
    "gelu": GELU,
    "exponential": Exponential,
    "tanh": Tanh,
    "sigmoid": Sigmoid,
    "erf": Erf,
    "sin": Sin,
    "cos": Cos,
}

# Elementwise Keras activations without a closed form: Gauss–Hermite.
_QUADRATURE = (
    "silu", "swish", "softplus", "softsign", "elu", "selu", "celu", "mish",
    "log_sigmoid", "tanh_shrink", "hard_silu", "hard_swish", "sparse_plus", "squareplus",
)


def get(identifier) -> SmoothedActivation:
    """Returns the smoothed activation that `identifier` describes.

    Args:
        identifier: One of
            - a Keras activation name (`"relu"`, `"gelu"`, `"silu"`, …) or
              one of the extras `"abs"`, `"erf"`, `"sin"`, `"cos"`;
            - a Keras activation function (`keras.activations.relu`), or a
              `functools.partial` of one with its keyword options;
            - any other elementwise callable (smoothed by Gauss–Hermite;
              checked on probe values, see `GaussHermite`);
            - a serialized smoothed activation (a config dict);
            - a `SmoothedActivation` (returned as is);
            - `None` (the identity, as in Keras).

    Returns:
        A `SmoothedActivation`: an exact closed form for the piecewise-linear
        activations (relu, leaky_relu, relu6, hard_tanh, hard_sigmoid,
        sparse_sigmoid, hard_shrink, soft_shrink, linear), gelu (exact),
        exponential, erf, sin, cos; the documented approximations for tanh
        and sigmoid; Gauss–Hermite quadrature for everything else.

    Raises:
        ValueError: for a non-elementwise activation (softmax, log_softmax,
            glu, sparsemax), an unknown name, or an identifier of no
            supported kind.

    Example:

    ```python
    keras_gsmooth.activations.get("relu")                   # ReLU(negative_slope=0.0)
    keras_gsmooth.activations.get(keras.activations.silu)   # GaussHermite(silu)
    ```
    """
    if isinstance(identifier, SmoothedActivation):
        return identifier
    if identifier is None:
        return KerasPiecewiseLinear("linear")
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        return _from_name(identifier, {})
    if isinstance(identifier, functools.partial):
        name = keras_activation_name(identifier.func)
        if name is not None and not identifier.args:
            return _from_name(name, dict(identifier.keywords))
    if callable(identifier):
        name = keras_activation_name(identifier)
        if name is not None:
            return _from_name(name, {})
        return GaussHermite(identifier)
    raise ValueError(
        "keras_gsmooth.activations.get: `identifier` must be an activation "
        "name, a Keras activation function, an elementwise callable, a "
        f"config dict or a SmoothedActivation. Received: {identifier!r}"
    )


def serialize(activation: SmoothedActivation) -> dict:
    """Returns the config dict of a smoothed activation (`keras.saving` format)."""
    return keras.saving.serialize_keras_object(activation)


def deserialize(config: dict, custom_objects=None) -> SmoothedActivation:
    """Rebuilds a smoothed activation from `serialize`'s output.

    Raises:
        ValueError: if the config does not describe a `SmoothedActivation`.
    """
    activation = keras.saving.deserialize_keras_object(config, custom_objects=custom_objects)
    if not isinstance(activation, SmoothedActivation):
        raise ValueError(
            "keras_gsmooth.activations.deserialize: the config does not describe "
            f"a smoothed activation; it gave {activation!r}. Config: {config!r}"
        )
    return activation


def _from_name(name: str, options: dict) -> SmoothedActivation:
    if name in NON_ELEMENTWISE:
        raise ValueError(
            f"keras_gsmooth.activations.get: {name!r} is not elementwise (each "
            "output depends on a whole axis of the input), so it has no "
            "per-unit Gaussian smoothing. Keep it unsmoothed (smooth_model "
            "leaves a final softmax as it is) or use an elementwise activation."
        )
    if name == "relu" and set(options) <= {"negative_slope"}:
        return ReLU(**options)
    if name == "leaky_relu":
        return ReLU(negative_slope=options.get("negative_slope", 0.2))
    if name == "threshold" and not options:
        raise ValueError(
            "keras_gsmooth.activations.get: 'threshold' needs its `threshold` "
            "and `default_value`: use KerasPiecewiseLinear('threshold', "
            "threshold=..., default_value=...)."
        )
    if name in KERAS_PIECEWISE_NAMES:
        return KerasPiecewiseLinear(name, **options)
    if name == "gelu" and options.get("approximate", False):
        return GaussHermite(functools.partial(keras.activations.gelu, approximate=True))
    if name in _CLOSED_FORMS and not (set(options) - {"approximate"}):
        return _CLOSED_FORMS[name]()
    if name in _QUADRATURE:
        function = keras.activations.get(name)
        return GaussHermite(functools.partial(function, **options) if options else function)
    raise ValueError(
        f"keras_gsmooth.activations.get: unknown activation {name!r}"
        + (f" with options {options}" if options else "")
        + ". Known names: "
        + ", ".join(sorted(set(KERAS_PIECEWISE_NAMES) | set(_CLOSED_FORMS) | set(_QUADRATURE)))
        + ". For another elementwise function pass the callable itself "
        "(it is smoothed by Gauss–Hermite quadrature)."
    )

