"""How accurate is a Monte-Carlo smoothed gradient, against the exact one, and what it costs.

Usage: `KERAS_BACKEND=jax python benchmarks/montecarlo_accuracy.py [--samples 1 4 16 64] [--seeds 10]`

The test problem is the one where the package's closed form and Monte Carlo
over the weights smooth the same objective (SPEC §4): a single Dense layer
(a linear classifier, 784 inputs, 10 outputs) with the MSE loss, converted
with λ = 1. For a linear model with squared loss, perturbing the weights
θ = (W, b) by σu, u ~ N(0, I/2), gives

    E[L(θ + σu)] = L(θ) + (σ²/2)·(mean_n ‖x_n‖² + 1),

a θ-independent constant, so the exact smoothed gradient is the plain
gradient ∇L(θ), computed here in float64 with numpy. `smooth_model` puts no
penalty on a layer that sees raw data (SPEC §3), so its objective is L(θ)
itself. Both identities are checked numerically before anything is
measured.

For each estimator (first or zero order, with or without antithetic pairs)
and K, the relative error ‖ĝ − ∇L‖ / ‖∇L‖ is averaged over seeds; the
closed form's error is float32 rounding. The cost is the median
`train_on_batch` time of a `MonteCarloModel` on the same problem, interleaved
with the plain and the closed-form step.
"""

import argparse
import functools
import math
import os
import statistics
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from suite import FULL  # noqa: E402
from timing import interleaved_medians  # noqa: E402

import keras_gsmooth  # noqa: E402
from keras_gsmooth import backend  # noqa: E402
from keras_gsmooth import montecarlo  # noqa: E402
from keras_gsmooth.montecarlo.estimators import model_loss_function  # noqa: E402

SIGMA = 0.1
INPUTS = 784
OUTPUTS = 10
BATCH = 128


def problem(seed: int = 0):
    """The linear model (built, random weights and bias) and one batch `(x, y)`."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((INPUTS,)), keras.layers.Dense(OUTPUTS, bias_initializer="random_normal")])
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (BATCH, INPUTS)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, OUTPUTS, BATCH), OUTPUTS).astype("float32")
    return model, x, y


def float64_loss_and_gradient(weights: list, x, y):
    """L(θ) = mean((xW + b − y)²) and its flattened gradient, in float64."""
    kernel, bias = (np.asarray(w, dtype="float64") for w in weights)
    x, y = np.asarray(x, dtype="float64"), np.asarray(y, dtype="float64")
    residual = x @ kernel + bias - y
    scale = 2.0 / residual.size
    gradient = np.concatenate([(scale * x.T @ residual).ravel(), (scale * residual.sum(axis=0)).ravel()])
    return float(np.mean(residual**2)), gradient


def check_identities(model, smoothed, x, y, num_draws: int, seed: int = 0) -> dict:
    """Checks numerically the two identities that make ∇L(θ) the exact answer.

    1. E[L(θ + σu)] − L(θ) = (σ²/2)(mean_n ‖x_n‖² + 1): float64 samples of
       L at perturbed weights, u ~ N(0, I/2); their mean minus L(θ) must lie
       within 4 standard errors of the constant.
    2. The objective of `smoothed = smooth_model(model, σ, regularization=1)`,
       loss and model losses together, equals L(θ) up to float32 rounding.

    Returns:
        A dict of the measured quantities.

    Raises:
        RuntimeError: if either identity fails.
    """
    weights = [np.asarray(w, dtype="float64") for w in model.get_weights()]
    loss, _ = float64_loss_and_gradient(weights, x, y)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(num_draws):
        shifted = [w + SIGMA * rng.normal(0.0, math.sqrt(0.5), w.shape) for w in weights]
        draws.append(float64_loss_and_gradient(shifted, x, y)[0] - loss)
    shift = statistics.fmean(draws)
    standard_error = statistics.stdev(draws) / math.sqrt(num_draws)
    constant = SIGMA**2 / 2 * (float(np.mean(np.sum(np.asarray(x, "float64") ** 2, axis=1))) + 1.0)
    if not abs(shift - constant) < 4 * standard_error:
        raise RuntimeError(
            f"benchmarks/montecarlo_accuracy.py: sampled E[L(θ + σu)] − L(θ) = {shift:.5f} ± "
            f"{standard_error:.5f}, but the linear-model identity gives {constant:.5f}."
        )

    closed_form = closed_form_objective(smoothed, x, y)
    value = float(keras.ops.convert_to_numpy(closed_form([v.value for v in smoothed.trainable_variables])))
    if not abs(value - loss) <= 1e-5 * abs(loss):
        raise RuntimeError(
            "benchmarks/montecarlo_accuracy.py: the closed-form objective of the smoothed "
            f"linear model is {value!r}, but L(θ) = {loss!r}; they must agree to float32 rounding."
        )
    return {
        "loss": loss,
        "mc_shift": shift,
        "mc_shift_standard_error": standard_error,
        "constant": constant,
        "closed_form_minus_loss": value - loss,
    }


def closed_form_objective(smoothed, x, y):
    """The training objective of a smoothed model as a function of its weights."""
    return model_loss_function(smoothed, keras.losses.MeanSquaredError(), x, y, training=True)


def relative_error(gradients: list, exact) -> float:
    """‖ĝ − g‖ / ‖g‖, with ĝ the float32 `gradients` flattened and `exact` the float64 g."""
    estimate = np.concatenate([np.asarray(keras.ops.convert_to_numpy(g), "float64").ravel() for g in gradients])
    return float(np.linalg.norm(estimate - exact) / np.linalg.norm(exact))


def gradient_errors(model, smoothed, x, y, samples: tuple, seeds: int, estimators: tuple) -> dict:
    """Relative errors of the closed form and of each Monte-Carlo estimator.

    Returns:
        A dict `(method, antithetic, K) -> (mean, standard error)` over
        `seeds` independent estimates, and `"closed_form" -> (error, 0)`.
    """
    _, exact = float64_loss_and_gradient(model.get_weights(), x, y)
    _, gradients = backend.value_and_grad(
        closed_form_objective(smoothed, x, y), [v.value for v in smoothed.trainable_variables]
    )
    errors = {"closed_form": (relative_error(gradients, exact), 0.0)}
    generator = keras.random.SeedGenerator(0)
    for method, antithetic in estimators:
        for num_samples in samples:
            values = [
                relative_error(
                    montecarlo.smoothed_loss_and_gradients(
                        model, "mse", x, y, sigma=SIGMA, num_samples=num_samples,
                        method=method, antithetic=antithetic, seed=generator,
                    )[1],
                    exact,
                )
                for _ in range(seeds)
            ]
            spread = statistics.stdev(values) / math.sqrt(seeds) if seeds > 1 else 0.0
            errors[(method, antithetic, num_samples)] = (statistics.fmean(values), spread)
    return errors


def copy_of(model):
    """A new model with the architecture and the weights of `model`."""
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def step_costs(model, smoothed, x, y, samples: tuple, rounds: int, warmup: int, estimators: tuple) -> dict:
    """Median `train_on_batch` seconds: plain, closed form, each Monte-Carlo estimator.

    Returns:
        A dict with keys `"plain"`, `"closed_form"` and `(method, antithetic, K)`.
    """
    models = {"plain": copy_of(model), "closed_form": smoothed}
    for method, antithetic in estimators:
        for num_samples in samples:
            models[(method, antithetic, num_samples)] = montecarlo.MonteCarloModel(
                copy_of(model), sigma=SIGMA, num_samples=num_samples, method=method, antithetic=antithetic, seed=0
            )
    for candidate in models.values():
        candidate.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
    steps = {key: functools.partial(candidate.train_on_batch, x, y) for key, candidate in models.items()}
    return interleaved_medians(steps, rounds=rounds, warmup=warmup)


def samples_to_match(errors: dict, method: str, antithetic: bool, samples: tuple, target: float):
    """The K at which an estimator's error reaches `target`, from error ≈ c/√K.

    c is taken at the largest measured K. Returns the smallest measured K if
    its error is already within 10× of the target: the estimator is then
    exact up to rounding on this problem (first-order antithetic pairs on a
    quadratic loss), and c/√K does not describe it.
    """
    if errors[(method, antithetic, samples[0])][0] <= 10 * target:
        return samples[0]
    largest = samples[-1]
    constant = errors[(method, antithetic, largest)][0] * math.sqrt(largest)
    return math.ceil((constant / target) ** 2)


def measure(samples: tuple, seeds: int, rounds: int, warmup: int, draws: int, estimators: tuple) -> dict:
    """Runs the identity checks, the gradient errors and the step costs.

    Args:
        samples: The values of K, increasing.
        seeds: Independent estimates per estimator and K.
        rounds: Timed train steps per candidate.
        warmup: Untimed train steps per candidate.
        draws: Float64 samples of the identity check.
        estimators: `(method, antithetic)` pairs.

    Returns:
        A dict with `identities` (see `check_identities`) and `rows`: one
        dict per candidate with `candidate`, `method`, `antithetic`, `K`,
        `passes` (network evaluations per step), `error`, `error_se`,
        `median_ms`, `ratio` (to the plain step), `k_closed_form` and
        `k_one_percent` (K needed for the closed form's error and for a 1%
        error; `None` for the closed form).
    """
    model, x, y = problem()
    smoothed = keras_gsmooth.smooth_model(model, sigma=SIGMA, regularization=1.0)
    identities = check_identities(model, smoothed, x, y, num_draws=draws)
    errors = gradient_errors(model, smoothed, x, y, samples, seeds, estimators)
    medians = step_costs(model, smoothed, x, y, samples, rounds, warmup, estimators)
    plain = medians["plain"]
    closed_form_error = errors["closed_form"][0]
    rows = [
        {
            "candidate": "closed form (smooth_model)", "method": "closed_form", "antithetic": False, "K": None,
            "passes": "1 forward + backward", "error": closed_form_error, "error_se": 0.0,
            "median_ms": medians["closed_form"] * 1e3, "ratio": medians["closed_form"] / plain,
            "k_closed_form": None, "k_one_percent": None,
        }
    ]
    for method, antithetic in estimators:
        for num_samples in samples:
            key = (method, antithetic, num_samples)
            factor = 2 if antithetic else 1
            passes = (
                f"{factor * num_samples} forward + backward"
                if method == "first_order"
                else f"{factor * num_samples + (0 if antithetic else 1)} forward"
            )
            rows.append(
                {
                    "candidate": f"MC {method.replace('_', '-')}{' antithetic' if antithetic else ''}, K={num_samples}",
                    "method": method, "antithetic": antithetic, "K": num_samples, "passes": passes,
                    "error": errors[key][0], "error_se": errors[key][1],
                    "median_ms": medians[key] * 1e3, "ratio": medians[key] / plain,
                    "k_closed_form": samples_to_match(errors, method, antithetic, samples, closed_form_error),
                    "k_one_percent": samples_to_match(errors, method, antithetic, samples, 0.01),
                }
            )
    return {"identities": identities, "plain_ms": plain * 1e3, "rows": rows}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, nargs="+", default=list(FULL.accuracy_samples), help="values of K")
    parser.add_argument("--seeds", type=int, default=FULL.accuracy_seeds, help="independent estimates per K")
    parser.add_argument("--rounds", type=int, default=FULL.accuracy_rounds, help="timed steps per candidate")
    args = parser.parse_args()
    result = measure(
        tuple(args.samples), args.seeds, args.rounds, FULL.warmup, FULL.identity_draws, FULL.accuracy_estimators
    )
    print(f"linear model, {keras.backend.backend()}: identities {result['identities']}")
    print("| candidate | passes | relative error | step (ms) | × plain | K for closed-form error | K for 1% |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for row in result["rows"]:
        print(
            f"| {row['candidate']} | {row['passes']} | {row['error']:.2e} | {row['median_ms']:.2f} | "
            f"{row['ratio']:.2f} | {row['k_closed_form'] or '-'} | {row['k_one_percent'] or '-'} |"
        )


if __name__ == "__main__":
    main()
