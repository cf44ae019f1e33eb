"""Monte-Carlo estimators of the Gaussian-smoothed loss and of its gradient.

Every trainable weight θ is perturbed with σu, u ~ N(0, I/2) (the package's
convention, SPEC §1), and the estimators target the smoothing of the loss
of the *composed* network,

    L_σ(θ) = E[L(θ + σu)],

with two estimators of ∇L_σ(θ), over K random directions u_1, …, u_K:

- first order: the mean of the gradients ∇L(θ + σu_k); with antithetic
  pairs, the mean of ½(∇L(θ + σu_k) + ∇L(θ − σu_k)).
- zero order (function values only): (2/σ)·mean[(L(θ + σu_k) − L(θ))·u_k];
  with antithetic pairs, (1/σ)·mean[(L(θ + σu_k) − L(θ − σu_k))·u_k].
  Both follow from Stein's identity E[g(u)·u] = ½E[∇g(u)] for u ~ N(0, I/2).

The loss estimate is the mean of L over the perturbed weights (both signs
with antithetic pairs), an unbiased estimate of L_σ(θ).

This is not the package's closed form. `smooth_model` smooths the lifted,
layer-wise objective of SPEC §3 (each activation replaced by h_σ plus
penalties); the two coincide, up to a constant, only for a single linear
layer with λ = 1. For a deeper network, Monte Carlo over the weights
estimates a different objective.
"""

import math
from numbers import Integral

import keras
from keras import ops

from keras_gsmooth import backend
from keras_gsmooth.validation import check_sigma

FIRST_ORDER = "first_order"
ZERO_ORDER = "zero_order"
METHODS = (FIRST_ORDER, ZERO_ORDER)

# u ~ N(0, I/2): each coordinate has standard deviation 1/√2.
_DIRECTION_STDDEV = math.sqrt(0.5)


def check_num_samples(num_samples, owner: str) -> int:
    """Returns `num_samples` as an int if it is a valid sample count K ≥ 1.

    Raises:
        ValueError: if `num_samples` is not an integer `>= 1`.
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, Integral) or num_samples < 1:
        raise ValueError(
            f"{owner}: `num_samples` (the number K of random directions per "
            f"estimate) must be an integer >= 1. Received: num_samples={num_samples!r}"
        )
    return int(num_samples)


def check_method(method, owner: str) -> str:
    """Returns `method` if it names an estimator ('first_order' or 'zero_order').

    Raises:
        ValueError: for any other value.
    """
    if method not in METHODS:
        raise ValueError(
            f"{owner}: `method` must be one of {METHODS}: 'first_order' "
            "averages gradients at perturbed weights, 'zero_order' uses loss "
            f"values only. Received: method={method!r}"
        )
    return method


def check_model(model, owner: str) -> keras.Model:
    """Returns `model` if it is a built Keras model with trainable weights.

    Raises:
        TypeError: if `model` is not a `keras.Model`.
        ValueError: if it is not built or has no trainable weights.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"{owner}: `model` must be a keras.Model, received "
            f"{type(model).__name__}. Wrap layers in a model first, e.g. "
            "`keras.Sequential([keras.Input(shape), layer, ...])`."
        )
    if not model.built:
        raise ValueError(
            f"{owner}: the model {model.name!r} is not built, so its weights do "
            "not exist yet. Build it first: give it an `keras.Input`, call it "
            "once on a batch, or call `model.build(input_shape)`."
        )
    if not model.trainable_variables:
        raise ValueError(
            f"{owner}: the model {model.name!r} has no trainable weights to "
            "perturb. Make some of its layers trainable."
        )
    return model


def check_zero_order_sigma(sigma: float, method: str, owner: str, where: str = "") -> None:
    """Rejects σ = 0 for the zero-order estimator, which divides by σ.

    Raises:
        ValueError: if `method` is 'zero_order' and `sigma` is 0.
    """
    if method == ZERO_ORDER and sigma <= 0:
        raise ValueError(
            f"{owner}: the zero-order estimator divides by σ, so σ must be > 0"
            f"{where}. Received: sigma={sigma}. Use method='first_order' "
            "(σ = 0 gives the exact gradient) or a σ that stays positive."
        )


def draw_directions(variables, num_samples: int, seed) -> list:
    """Draws K random directions u ~ N(0, I/2), one tensor per variable each.

    Args:
        variables: The trainable variables (or tensors) to perturb; only their
            shapes and dtypes are used.
        num_samples: The number K of directions.
        seed: A `keras.random.SeedGenerator` (advanced by each draw), or
            anything `keras.random.normal` accepts as a seed.

    Returns:
        A list of K lists, each aligned with `variables`.
    """
    return [
        [
            keras.random.normal(
                tuple(variable.shape), stddev=_DIRECTION_STDDEV, dtype=variable.dtype, seed=seed
            )
            for variable in variables
        ]
        for _ in range(num_samples)
    ]


def _shift(values, direction, scale):
    return [value + ops.cast(scale, value.dtype) * step for value, step in zip(values, direction)]


def first_order_objective(loss_at, values, sigma, directions, antithetic: bool):
    """The mean loss over the perturbed weights θ ± σu_k.

    Its value is the Monte-Carlo estimate of L_σ(θ), and its gradient with
    respect to `values` is the first-order estimate of ∇L_σ(θ) (the
    directions are constants). Costs one loss evaluation per direction (two
    with antithetic pairs), plus the backward pass.

    Args:
        loss_at: A function from a list of weight tensors to the scalar loss.
        values: The current weights θ, aligned with `loss_at`'s argument.
        sigma: σ, a float or scalar tensor `>= 0`.
        directions: The output of `draw_directions`.
        antithetic: Whether to also evaluate at θ − σu_k.

    Returns:
        A scalar tensor.
    """
    signs = (1.0, -1.0) if antithetic else (1.0,)
    total = 0.0
    for direction in directions:
        for sign in signs:
            total = total + loss_at(_shift(values, direction, sign * sigma))
    return total / (len(directions) * len(signs))


def zero_order_estimate(loss_at, values, sigma, directions, antithetic: bool):
    """The zero-order estimates of L_σ(θ) and ∇L_σ(θ), from loss values only.

    Nothing here is differentiated: the weights are wrapped in
    `stop_gradient`. Costs K + 1 loss evaluations (2K with antithetic pairs).

    Args:
        loss_at: A function from a list of weight tensors to the scalar loss.
        values: The current weights θ.
        sigma: σ, a float or scalar tensor `> 0`.
        directions: The output of `draw_directions`.
        antithetic: Whether to use the central difference L(θ + σu) − L(θ − σu).

    Returns:
        A tuple `(loss, gradients)`, `gradients` aligned with `values`.
    """
    values = [ops.stop_gradient(value) for value in values]
    base = None if antithetic else loss_at(values)
    gradients = [ops.zeros_like(value) for value in values]
    loss_total = 0.0
    for direction in directions:
        plus = loss_at(_shift(values, direction, sigma))
        if antithetic:
            minus = loss_at(_shift(values, direction, -sigma))
            weight = (plus - minus) / sigma
            loss_total = loss_total + plus + minus
        else:
            weight = 2.0 * (plus - base) / sigma
            loss_total = loss_total + plus
        gradients = [
            gradient + ops.cast(weight, gradient.dtype) * step
            for gradient, step in zip(gradients, direction)
        ]
    num_evaluations = len(directions) * (2 if antithetic else 1)
    return loss_total / num_evaluations, [gradient / len(directions) for gradient in gradients]


def model_loss_function(model: keras.Model, loss, x, y, training: bool):
    """Returns `loss_at(weights)`: the loss of `model` on `(x, y)` at other trainable weights.

    The model is called with `model.stateless_call`, so its own trainable
    weights are neither read nor modified (its non-trainable state is read,
    and updates to it are discarded). The result is `loss(y, y_pred)` plus
    the model's own losses (weight regularizers, `add_loss`) at those
    weights.

    Args:
        model: A built `keras.Model`.
        loss: A callable `loss(y_true, y_pred)` returning a scalar.
        x: The input batch.
        y: The targets.
        training: Passed to the model's call, where it takes one.
    """
    non_trainable = [variable.value for variable in model.non_trainable_variables]
    call_kwargs = {"training": training} if model._call_has_training_arg else {}

    def loss_at(trainable):
        y_pred, _, extra_losses = model.stateless_call(
            trainable, non_trainable, x, return_losses=True, **call_kwargs
        )
        value = loss(y, y_pred)
        for extra in extra_losses:
            value = value + ops.cast(extra, value.dtype)
        return value

    return loss_at


def _batch_mean_loss(loss):
    function = loss
    if not callable(loss):
        try:
            function = keras.losses.get(loss)
        except (ValueError, TypeError):
            function = None
    if function is None:
        raise ValueError(
            "keras_gsmooth.montecarlo.smoothed_loss_and_gradients: `loss` must be "
            "a Keras loss (a name like 'mse', a keras.losses.Loss, or a callable "
            f"`loss(y_true, y_pred)`). Received: loss={loss!r}"
        )
    return lambda y_true, y_pred: ops.mean(function(y_true, y_pred))


def _seed_generator(seed):
    if isinstance(seed, keras.random.SeedGenerator):
        return seed
    if seed is None or (isinstance(seed, Integral) and not isinstance(seed, bool)):
        return keras.random.SeedGenerator(seed)
    raise ValueError(
        "keras_gsmooth.montecarlo.smoothed_loss_and_gradients: `seed` must be "
        "an int, None or a keras.random.SeedGenerator. Received: "
        f"seed={seed!r}"
    )


def smoothed_loss_and_gradients(
    model: keras.Model,
    loss,
    x,
    y,
    *,
    sigma: float,
    num_samples: int = 1,
    method: str = FIRST_ORDER,
    antithetic: bool = False,
    seed=None,
    training: bool = False,
) -> tuple:
    """Monte-Carlo estimates of the smoothed loss E[L(θ + σu)] and its gradient.

    Perturbs every trainable weight θ of `model` with σu, u ~ N(0, I/2), and
    averages over `num_samples` random directions. The model's weights are
    never modified (`model.stateless_call`). Runs eagerly.

    This estimates the smoothing of the composed network's loss, not the
    lifted, layer-wise objective that `keras_gsmooth.smooth_model` optimises
    in closed form; they agree up to a constant only for a single linear
    layer with λ = 1 (SPEC §4).

    Cost, in loss evaluations on the batch: 'first_order' K forward and
    backward passes (2K with `antithetic`); 'zero_order' K + 1 forward
    passes (2K with `antithetic`), no backward pass.

    Args:
        model: A built `keras.Model`.
        loss: A Keras loss: a name (`"mse"`), a `keras.losses.Loss`, or a
            callable `loss(y_true, y_pred)`; its batch mean is used.
        x: The input batch.
        y: The targets.
        sigma: The smoothing radius σ, a float `>= 0` ('first_order') or
            `> 0` ('zero_order').
        num_samples: The number K `>= 1` of random directions.
        method: `"first_order"` (mean of gradients at perturbed weights) or
            `"zero_order"` (loss values only).
        antithetic: Whether to evaluate each direction at both θ + σu and
            θ − σu (lower variance; exact for the first-order estimate of a
            quadratic loss).
        seed: An int (the same int gives the same estimate), `None` (fresh
            randomness), or a `keras.random.SeedGenerator` (advanced by the
            call). For independent estimates use one generator, or int seeds
            far apart: on the torch backend Keras adds the generator's
            counter to the seed, so seeds s and s + 1 give overlapping
            random streams.
        training: Passed to the model's call (e.g. dropout on or off).

    Returns:
        A tuple `(loss_estimate, gradients)`: a scalar tensor and a list of
        tensors aligned with `model.trainable_variables`.

    Raises:
        TypeError: if `model` is not a `keras.Model`.
        ValueError: for an unbuilt model, K < 1, σ < 0, σ = 0 with
            'zero_order', an unknown `method`, `loss` or `seed`.

    Example:

    ```python
    loss, grads = keras_gsmooth.montecarlo.smoothed_loss_and_gradients(
        model, "mse", x, y, sigma=0.1, num_samples=16, seed=0)
    ```
    """
    owner = "keras_gsmooth.montecarlo.smoothed_loss_and_gradients"
    model = check_model(model, owner)
    num_samples = check_num_samples(num_samples, owner)
    method = check_method(method, owner)
    sigma = check_sigma(sigma, argument="sigma", owner=owner)
    check_zero_order_sigma(sigma, method, owner)
    loss_at = model_loss_function(model, _batch_mean_loss(loss), x, y, training)
    variables = model.trainable_variables
    directions = draw_directions(variables, num_samples, _seed_generator(seed))
    values = [variable.value for variable in variables]
    if method == ZERO_ORDER:
        return zero_order_estimate(loss_at, values, sigma, directions, antithetic)
    return backend.value_and_grad(
        lambda weights: first_order_objective(loss_at, weights, sigma, directions, antithetic),
        values,
    )
