"""Monte-Carlo smoothing: estimators against closed forms, and training with `fit`.

The random generators differ between backends, so every statistical check
compares with an exact value within the Monte-Carlo standard error, on
each backend, with fixed seeds.
"""

import math

import keras
import numpy as np
import pytest
from keras import ops
from scipy.special import erf

from keras_gsmooth import schedules
from keras_gsmooth.montecarlo import MonteCarloModel
from keras_gsmooth.montecarlo import smoothed_loss_and_gradients

pytestmark = pytest.mark.montecarlo

SIGMA = 0.8
REPEATS = 10
SMALL_K = 1
LARGE_K = 16 * SMALL_K
Z_LIMIT = 4.5


def _numpy(tensor):
    return np.asarray(ops.convert_to_numpy(tensor), dtype=np.float64)


def _flat(gradients):
    return np.concatenate([_numpy(gradient).ravel() for gradient in gradients])


# The quadratic: linear regression with MSE, f(θ) = (1/n)‖X̃θ − y‖², X̃ = [X, 1].
# ∇f(θ) = Aθ + b with A = (2/n)X̃ᵀX̃, and f_σ = f + (σ²/4)·tr(A), ∇f_σ = ∇f.


def _quadratic_problem():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(16, 3)).astype("float32")
    y = rng.normal(size=(16, 1)).astype("float32")
    kernel = np.array([[0.5], [-1.0], [0.25]], dtype="float32")
    bias = np.array([0.3], dtype="float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.set_weights([kernel, bias])
    design = np.concatenate([x, np.ones((16, 1), "float32")], axis=1).astype(np.float64)
    theta = np.concatenate([kernel.ravel(), bias]).astype(np.float64)
    residual = design @ theta - y[:, 0]
    loss = np.mean(residual**2)
    hessian = 2.0 / 16 * design.T @ design
    exact = {
        "loss": loss + SIGMA**2 / 4 * np.trace(hessian),
        "unsmoothed_loss": loss,
        "gradient": 2.0 / 16 * design.T @ residual,
    }
    return model, "mse", x, y, exact


# One ReLU neuron, loss mean_i relu(wᵀx_i): wᵀx_i ~ N(w0ᵀx_i, σ²‖x_i‖²/2), so
# E[relu(wᵀx_i)] = relu_s(w0ᵀx_i) with radius s = σ‖x_i‖, and
# ∇ = mean_i ½(1 + erf(w0ᵀx_i / s_i))·x_i.


def _relu_sigma(z, s):
    return z / 2 * (1 + erf(z / s)) + s / (2 * math.sqrt(math.pi)) * np.exp(-((z / s) ** 2))


def _relu_problem():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(8, 3)).astype("float32")
    weights = np.array([[0.3], [-0.2], [0.1]], dtype="float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="relu", use_bias=False)])
    model.set_weights([weights])
    x64 = x.astype(np.float64)
    z = x64 @ weights[:, 0].astype(np.float64)
    radius = SIGMA * np.linalg.norm(x64, axis=1)
    exact = {
        "loss": np.mean(_relu_sigma(z, radius)),
        "unsmoothed_loss": np.mean(np.maximum(z, 0)),
        "gradient": np.mean(0.5 * (1 + erf(z / radius))[:, None] * x64, axis=0),
        "unsmoothed_gradient": np.mean((z > 0)[:, None] * x64, axis=0),
    }
    return model, (lambda y_true, y_pred: y_pred), x, np.zeros((8, 1), "float32"), exact


def _estimates(problem, num_samples, seeds, **options):
    model, loss, x, y, _ = problem
    losses, gradients = [], []
    for seed in seeds:
        value, grads = smoothed_loss_and_gradients(
            model, loss, x, y, sigma=SIGMA, num_samples=num_samples, seed=seed, **options
        )
        losses.append(float(_numpy(value)))
        gradients.append(_flat(grads))
    return np.array(losses), np.array(gradients)


def _seeds(offset):
    # Far apart: on torch, Keras adds a SeedGenerator's counter to its seed,
    # so nearby seeds give overlapping random streams.
    return [1000 * (REPEATS * offset + repeat) for repeat in range(REPEATS)]


def _z_scores(samples, target):
    standard_error = samples.std(axis=0, ddof=1) / math.sqrt(len(samples))
    return np.abs(samples.mean(axis=0) - target) / standard_error


def _rms_error(samples, target):
    return math.sqrt(np.mean((samples - target) ** 2))


CASES = [
    ("quadratic", "first_order", False),
    ("quadratic", "zero_order", False),
    ("relu", "first_order", False),
    ("relu", "zero_order", True),
]


@pytest.mark.parametrize("problem_name,method,antithetic", CASES)
def test_estimates_are_unbiased_and_error_shrinks_like_one_over_sqrt_k(problem_name, method, antithetic):
    problem = _quadratic_problem() if problem_name == "quadratic" else _relu_problem()
    exact = problem[-1]
    options = {"method": method, "antithetic": antithetic}
    small_losses, small = _estimates(problem, SMALL_K, _seeds(0), **options)
    large_losses, large = _estimates(problem, LARGE_K, _seeds(1), **options)

    assert np.all(_z_scores(large, exact["gradient"]) < Z_LIMIT)
    assert np.all(_z_scores(small, exact["gradient"]) < Z_LIMIT)
    assert _z_scores(large_losses, exact["loss"]) < Z_LIMIT
    # The checks can fail: the unsmoothed loss (and, for the ReLU, the
    # unsmoothed gradient) lies far outside the error bars.
    assert _z_scores(large_losses, exact["unsmoothed_loss"]) > Z_LIMIT
    if "unsmoothed_gradient" in exact:
        assert np.max(_z_scores(large, exact["unsmoothed_gradient"])) > Z_LIMIT

    # 1/√K predicts a ratio of 4 between K and 16K; accept exponents in
    # [1/4, 3/4], which rules out no shrinking (1) and 1/K (16).
    ratio = _rms_error(small, exact["gradient"]) / _rms_error(large, exact["gradient"])
    assert 2.0 < ratio < 8.0, f"error ratio between K={SMALL_K} and K={LARGE_K} is {ratio}, expected about 4"


def test_antithetic_first_order_is_exact_on_a_quadratic():
    problem = _quadratic_problem()
    _, gradients = _estimates(problem, 2, [0, 1], method="first_order", antithetic=True)
    np.testing.assert_allclose(gradients, np.tile(problem[-1]["gradient"], (2, 1)), rtol=1e-4, atol=1e-5)


def test_first_order_at_sigma_zero_is_the_gradient():
    model, loss, x, y, exact = _quadratic_problem()
    value, gradients = smoothed_loss_and_gradients(model, loss, x, y, sigma=0.0, num_samples=2, seed=0)
    np.testing.assert_allclose(_flat(gradients), exact["gradient"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(_numpy(value), exact["unsmoothed_loss"], rtol=1e-5)


@pytest.mark.parametrize("method", ["first_order", "zero_order"])
def test_fixed_seed_repeats_and_weights_are_untouched(method):
    model, loss, x, y, _ = _quadratic_problem()
    before = [w.copy() for w in model.get_weights()]
    first = _estimates((model, loss, x, y, None), 3, [5, 5, 6], method=method)
    np.testing.assert_array_equal(first[1][0], first[1][1])
    assert first[0][0] == first[0][1]
    assert not np.allclose(first[1][0], first[1][2])
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_a_seed_generator_advances_between_calls():
    model, loss, x, y, _ = _quadratic_problem()
    generator = keras.random.SeedGenerator(3)
    _, first = smoothed_loss_and_gradients(model, loss, x, y, sigma=SIGMA, seed=generator)
    _, second = smoothed_loss_and_gradients(model, loss, x, y, sigma=SIGMA, seed=generator)
    assert not np.allclose(_flat(first), _flat(second))


# Training with `fit`.


@pytest.mark.parametrize("method,antithetic", [("first_order", False), ("zero_order", True)])
def test_one_fit_step_follows_the_estimate_with_the_same_seed(method, antithetic):
    model, _, x, y, _ = _quadratic_problem()
    before = _flat(model.trainable_variables)
    _, expected = smoothed_loss_and_gradients(
        model, "mse", x, y, sigma=SIGMA, num_samples=3, method=method, antithetic=antithetic, seed=11
    )
    trainer = MonteCarloModel(model, sigma=SIGMA, num_samples=3, method=method, antithetic=antithetic, seed=11)
    trainer.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse")
    trainer.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_allclose(_flat(model.trainable_variables), before - 0.1 * _flat(expected), rtol=1e-4, atol=1e-5)


@keras.saving.register_keras_serializable(package="test_montecarlo")
class _Halving(schedules.SigmaSchedule):
    def __init__(self, initial):
        self.initial = initial

    def __call__(self, step):
        return self.initial * ops.power(0.5, ops.cast(step, "float32"))

    def get_config(self):
        return {"initial": self.initial}


def test_sigma_schedule_advances_once_per_train_step():
    model, _, x, y, _ = _quadratic_problem()
    trainer = MonteCarloModel(model, sigma=_Halving(1.0), num_samples=1, seed=0)
    steps_per_execution = 1 if keras.backend.backend() == "torch" else 2
    trainer.compile(optimizer="sgd", loss="mse", steps_per_execution=steps_per_execution)
    trainer.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert int(_numpy(trainer.sigma_step.value)) == 4
    np.testing.assert_allclose(_numpy(trainer.sigma.value), 0.5**3)
    trainer.evaluate(x, y, verbose=0)
    assert int(_numpy(trainer.sigma_step.value)) == 4


def test_fit_trains_a_max_pooling_cnn(rng):
    x = rng.uniform(size=(16, 6, 6, 1)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 2, size=16), 2)
    cnn = keras.Sequential(
        [
            keras.Input((6, 6, 1)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(2),
        ]
    )
    before = cnn.get_weights()
    trainer = MonteCarloModel(cnn, sigma=0.05, num_samples=2, seed=1)
    trainer.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    history = trainer.fit(x, y, batch_size=8, epochs=4, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert any(not np.allclose(old, new) for old, new in zip(before, cnn.get_weights()))
    evaluated = trainer.evaluate(x, y, verbose=0, return_dict=True)
    np.testing.assert_allclose(evaluated["loss"], np.mean((_numpy(cnn(x)) - y) ** 2), rtol=1e-4)


def test_save_and_load_keep_the_schedule_and_its_position(tmp_path):
    model, _, x, y, _ = _quadratic_problem()
    trainer = MonteCarloModel(model, sigma=_Halving(1.0), num_samples=2, antithetic=True, seed=4)
    trainer.compile(optimizer="sgd", loss="mse")
    trainer.fit(x, y, batch_size=8, epochs=1, verbose=0)
    path = str(tmp_path / "mc.keras")
    trainer.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, MonteCarloModel)
    assert (loaded.num_samples, loaded.method, loaded.antithetic) == (2, "first_order", True)
    assert int(_numpy(loaded.sigma_step.value)) == 2
    np.testing.assert_allclose(loaded.predict(x, verbose=0), trainer.predict(x, verbose=0), rtol=1e-6)


# Bad input.


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"num_samples": 0}, "num_samples"),
        ({"num_samples": 2.5}, "num_samples"),
        ({"num_samples": True}, "num_samples"),
        ({"method": "second_order"}, "method"),
        ({"sigma": -0.1}, "sigma"),
        ({"sigma": 0.0, "method": "zero_order"}, "zero-order"),
        ({"seed": "abc"}, "seed"),
    ],
)
def test_bad_arguments_are_refused(kwargs, match):
    model, loss, x, y, _ = _quadratic_problem()
    arguments = {"sigma": SIGMA, **kwargs}
    with pytest.raises(ValueError, match=match):
        smoothed_loss_and_gradients(model, loss, x, y, **arguments)


def test_a_non_model_or_unbuilt_model_is_refused():
    x, y = np.zeros((2, 3), "float32"), np.zeros((2, 1), "float32")
    with pytest.raises(TypeError, match="keras.Model"):
        smoothed_loss_and_gradients(keras.layers.Dense(1), "mse", x, y, sigma=SIGMA)
    with pytest.raises(TypeError, match="keras.Model"):
        MonteCarloModel(lambda inputs: inputs, sigma=SIGMA)
    with pytest.raises(ValueError, match="not built"):
        MonteCarloModel(keras.Sequential([keras.layers.Dense(1)]), sigma=SIGMA)
    with pytest.raises(ValueError, match="loss"):
        smoothed_loss_and_gradients(_quadratic_problem()[0], "no_such_loss", x, y, sigma=SIGMA)


def test_zero_order_trainer_refuses_a_schedule_that_reaches_zero():
    model = _quadratic_problem()[0]
    with pytest.raises(ValueError, match="at step"):
        MonteCarloModel(model, sigma=_Halving(1.0), method="zero_order")
    trainer = MonteCarloModel(model, sigma=0.0, method="first_order")
    assert trainer.sigma_schedule.is_constant


def test_compile_refuses_an_optimizer_that_carries_sigma():
    trainer = MonteCarloModel(_quadratic_problem()[0], sigma=SIGMA)
    optimizer = keras.optimizers.SGD()
    optimizer.sigma_schedule = schedules.get(0.1)
    with pytest.raises(ValueError, match="σ is given to the MonteCarloModel"):
        trainer.compile(optimizer=optimizer, loss="mse")
    with pytest.raises(ValueError, match="needs a `loss`"):
        trainer.compile(optimizer="sgd")
