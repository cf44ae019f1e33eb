"""End-to-end check: the converted network's loss is the paper's smoothed lifted objective.

The lifted objective of a two-hidden-layer network (SPEC §3) has one
auxiliary variable per layer output and one penalty term per layer, all
with λ = 1:

    mse(z3, y) + ‖W1 x0 + b1 − z1‖² + ‖relu(z1) − a1‖² + ‖W2 a1 + b2 − z2‖²
               + ‖relu(z2) − a2‖² + ‖W3 a2 + b3 − z3‖²

Its Gaussian smoothing perturbs every weight and every auxiliary variable
(not the data x0) by σu, u ~ N(0, I/2). A second network has a PReLU in
place of the first relu, whose slope α is a weight perturbed with the rest:
its term is ‖relu(z1) − α·relu(−z1) − a1‖². With the auxiliary variables set to
the smoothed network's forward values, the smoothing differs from the
package's total training loss by a constant only, so the difference between
two weight settings must agree, within the Monte-Carlo error.
"""

import keras
import numpy as np
import pytest
from scipy.special import erf

import keras_gsmooth

SIGMA = 0.5
SAMPLES = 60_000


def relu_sigma(x, sigma):
    s = x / sigma
    return 0.5 * x * (1 + erf(s)) + sigma / (2 * np.sqrt(np.pi)) * np.exp(-(s**2))


def plain_network(first_activation):
    inputs = keras.Input((3,))
    z1 = keras.layers.Dense(4, name="d1")(inputs)
    if first_activation == "prelu":
        a1 = keras.layers.PReLU(name="r1")(z1)
    else:
        a1 = keras.layers.Activation("relu", name="r1")(z1)
    z2 = keras.layers.Dense(4, name="d2")(a1)
    a2 = keras.layers.Activation("relu", name="r2")(z2)
    outputs = keras.layers.Dense(2, name="d3")(a2)
    return keras.Model(inputs, outputs)


def package_loss(weights, x, y, first_activation):
    model = plain_network(first_activation)
    model.set_weights([w.astype("float32") for w in weights])
    smoothed = keras_gsmooth.smooth_model(model, sigma=SIGMA, regularization=1.0)
    prediction = keras.ops.convert_to_numpy(smoothed(x.astype("float32"))).astype("float64")
    penalties = sum(float(keras.ops.convert_to_numpy(loss)) for loss in smoothed.losses)
    return np.mean((prediction - y) ** 2) + penalties


def lifted_smoothing_samples(weights, x, y, rng):
    """Per-sample values of the lifted objective at perturbed variables (batch-averaged).

    `weights` are the Keras model's: with a PReLU, its slope α follows the first bias.
    """
    if len(weights) == 7:
        w1, b1, alpha, w2, b2, w3, b3 = weights
    else:
        (w1, b1, w2, b2, w3, b3), alpha = weights, np.zeros(4)
    z1 = x @ w1 + b1
    a1 = relu_sigma(z1, SIGMA) - alpha * relu_sigma(-z1, SIGMA)
    z2 = a1 @ w2 + b2
    a2 = relu_sigma(z2, SIGMA)
    z3 = a2 @ w3 + b3
    batch = x.shape[0]

    def perturbed(value):
        return value + SIGMA * rng.normal(0.0, np.sqrt(0.5), (SAMPLES,) + value.shape)

    def linear(inputs, kernel, bias):
        return np.einsum("nbi,nij->nbj", inputs, kernel) + bias[:, None, :]

    def linear_on_data(kernel, bias):
        return np.einsum("bi,nij->nbj", x, kernel) + bias[:, None, :]

    w1p, b1p, alphap, w2p, b2p, w3p, b3p = (perturbed(v) for v in (w1, b1, alpha, w2, b2, w3, b3))
    if len(weights) == 6:
        alphap = np.zeros_like(alphap)  # a relu has no slope to perturb
    z1p, a1p, z2p, a2p, z3p = (perturbed(v) for v in (z1, a1, z2, a2, z3))
    prelu = np.maximum(z1p, 0) - alphap[:, None, :] * np.maximum(-z1p, 0)
    terms = (
        np.mean((z3p - y) ** 2, axis=2)
        + np.sum((linear_on_data(w1p, b1p) - z1p) ** 2, axis=2)
        + np.sum((prelu - a1p) ** 2, axis=2)
        + np.sum((linear(a1p, w2p, b2p) - z2p) ** 2, axis=2)
        + np.sum((np.maximum(z2p, 0) - a2p) ** 2, axis=2)
        + np.sum((linear(a2p, w3p, b3p) - z3p) ** 2, axis=2)
    )
    assert terms.shape == (SAMPLES, batch)
    return terms.mean(axis=1)


@pytest.mark.montecarlo
@pytest.mark.parametrize("first_activation", ["relu", "prelu"])
def test_loss_differences_equal_the_smoothed_lifted_objective(first_activation):
    rng = np.random.default_rng(42)
    shapes = [(3, 4), (4,), (4, 4), (4,), (4, 2), (2,)]
    if first_activation == "prelu":
        shapes.insert(2, (4,))
    weights_a = [rng.normal(0, 0.8, shape) for shape in shapes]
    weights_b = [w * 1.6 + rng.normal(0, 0.3, w.shape) for w in weights_a]
    x = rng.normal(0, 1, (4, 3))
    y = rng.normal(0, 1, (4, 2))

    # Common random numbers: the same perturbations at both weight settings.
    samples_a = lifted_smoothing_samples(weights_a, x, y, np.random.default_rng(7))
    samples_b = lifted_smoothing_samples(weights_b, x, y, np.random.default_rng(7))
    difference = samples_b - samples_a
    monte_carlo = difference.mean()
    standard_error = difference.std() / np.sqrt(SAMPLES)

    expected = package_loss(weights_b, x, y, first_activation) - package_loss(weights_a, x, y, first_activation)
    assert abs(expected) > 20 * standard_error  # the check has power
    assert abs(monte_carlo - expected) < 4 * standard_error + 1e-4 * abs(expected)
