"""Pipeline 3: the paper's 1-D figures, with the convexity threshold computed.

Figure 1: a quartic plus sin(10x) and its Gaussian smoothings f_σ.
Figure 2: f(x) = ⅓(x⁴ − 2x²) + sin(8x); gradient descent from a grid of
starting points, plain (σ = 0) against GSmoothSGD with the continuation
σ = 1, ½, ¼, 0 (each stage starts where the previous one stopped), and the
basin of attraction of the global minimiser for each.

Smoothing is in closed form (SPEC.md §1, u ~ N(0, I/2)): for a polynomial,
E[(x + σu)^k] = Σ_j C(k, j) x^(k−j) σ^j E[u^j] with E[u^j] = (j−1)!!/2^(j/2)
for even j (0 for odd j); sin(ωx)_σ = sin(ωx)·e^(−ω²σ²/4). Smoothing
commutes with d/dx, so f_σ'' is closed form too, and the σ above which f_σ
is convex is found by bisection on min_x f_σ''(x) ≥ 0 (f_σ'' is increasing
in σ for a quartic with a positive leading term, and its minimum lies where
the quadratic part is below the sine's amplitude, a bounded interval that is
scanned densely). The paper's formula for Figure 1 is garbled in the text;
the default coefficients are its literal reading, ¼x⁴ − 2x³ − 5x² + 6x
(`--fig1-coefficients` to change them).

Writes `figure1.png`, `figure2.png`, `basins.csv` (start, end point of each
method) and `thresholds.csv` (σ of convexity) to `--output-dir`.

    python examples/one_dimensional_figures.py --output-dir runs/one_dimensional
"""

import argparse
import csv
import math
import os

import numpy as np

from keras_gsmooth.experiments import cli
from keras_gsmooth.experiments.plots import pyplot


class SmoothedFunction:
    """f(x) = polynomial(x) + amplitude·sin(frequency·x), and its smoothing f_σ in closed form.

    Args:
        coefficients: Polynomial coefficients, highest degree first (as `numpy.polyval`).
        amplitude: The sine's amplitude.
        frequency: The sine's angular frequency ω.
    """

    def __init__(self, coefficients, amplitude: float, frequency: float):
        self.polynomial = np.poly1d(coefficients)
        self.amplitude, self.frequency = amplitude, frequency

    @staticmethod
    def _smooth_polynomial(polynomial: np.poly1d, sigma: float) -> np.poly1d:
        result = np.poly1d([0.0])
        for power, coefficient in enumerate(polynomial.coeffs[::-1]):
            for j in range(0, power + 1, 2):
                moment = math.prod(range(j - 1, 0, -2)) / 2 ** (j / 2)  # E[u^j], u ~ N(0, 1/2)
                term = np.poly1d([1.0] + [0.0] * (power - j))
                result = result + coefficient * math.comb(power, j) * sigma**j * moment * term
        return result

    def function(self, sigma: float = 0.0, derivative: int = 0):
        """f_σ^(derivative) as a vectorised callable (smoothing commutes with d/dx)."""
        polynomial = self._smooth_polynomial(self.polynomial.deriv(derivative) if derivative else self.polynomial, sigma)
        scale = self.amplitude * self.frequency**derivative * math.exp(-(self.frequency * sigma) ** 2 / 4)
        phase = derivative * math.pi / 2  # d^n/dx^n sin(ωx) = ω^n sin(ωx + nπ/2)
        return lambda x: polynomial(x) + scale * np.sin(self.frequency * x + phase)

    def value(self, x, sigma: float = 0.0, derivative: int = 0):
        """f_σ^(derivative)(x)."""
        return self.function(sigma, derivative)(x)

    def convexity_threshold(self, sigma_max: float = 10.0, tolerance: float = 1e-6) -> float:
        """The smallest σ with f_σ'' ≥ 0 everywhere, by bisection.

        Raises:
            ValueError: if the polynomial is not a quartic with a positive
                leading term, or f_σ is not convex even at `sigma_max`.
        """
        if self.polynomial.order != 4 or self.polynomial.coeffs[0] <= 0:
            raise ValueError("convexity_threshold: needs a quartic with a positive leading coefficient.")
        curvature = self.polynomial.deriv(2)  # a quadratic; the sine's f'' has amplitude a·ω²
        reach = self.amplitude * self.frequency**2
        roots = (curvature - reach).roots  # outside them, f_σ'' > 0 for every σ
        low, high = float(np.min(roots.real)) - 1.0, float(np.max(roots.real)) + 1.0
        x = np.linspace(low, high, int((high - low) * self.frequency * 200) + 1)

        def convex(sigma):
            return self.value(x, sigma, derivative=2).min() >= 0

        if not convex(sigma_max):
            raise ValueError(f"convexity_threshold: f_σ is not convex at σ = {sigma_max}.")
        below, above = 0.0, sigma_max
        if convex(below):
            return 0.0
        while above - below > tolerance:
            middle = (below + above) / 2
            below, above = (below, middle) if convex(middle) else (middle, above)
        return above


def gradient_descent(function: SmoothedFunction, starts: np.ndarray, sigmas, steps: int, learning_rate: float):
    """Runs gradient descent on f_σ for each σ in turn (continuation), from every start at once."""
    x = starts.astype("float64")
    for sigma in sigmas:
        gradient = function.function(sigma, derivative=1)
        for _ in range(steps):
            x = x - learning_rate * gradient(x)
    return x


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default="runs/one_dimensional", help="Where the figures and CSVs go.")
    parser.add_argument("--fig1-coefficients", type=float, nargs=5, default=[0.25, -2.0, -5.0, 6.0, 0.0],
                        help="Figure 1's quartic, highest degree first (plus sin(10x)).")
    parser.add_argument("--continuation", type=cli.non_negative_float, nargs="+", default=[1.0, 0.5, 0.25, 0.0],
                        help="Figure 2's σ stages of GSmoothSGD.")
    parser.add_argument("--starts", type=cli.positive_int, default=601, help="Number of starting points in [-3, 3].")
    parser.add_argument("--steps", type=cli.positive_int, default=2000, help="Gradient steps per σ stage.")
    parser.add_argument("--learning-rate", type=cli.positive_float, default=0.005, help="The step size.")
    parser.add_argument("--quick", action="store_true", help="Few starts and steps (the smoke test).")
    return parser.parse_args(argv)


def figure1(function: SmoothedFunction, threshold: float, path: str) -> None:
    plt = pyplot()
    minimum = float(np.min(function.polynomial.deriv().roots.real))
    x = np.linspace(minimum - 3, float(np.max(function.polynomial.deriv().roots.real)) + 3, 2000)
    figure, axis = plt.subplots(figsize=(6, 4))
    for sigma in (0.0, threshold / 4, threshold / 2, threshold):
        label = f"σ = {sigma:.3g}" + (" (convex from here)" if sigma == threshold else "")
        axis.plot(x, function.value(x, sigma), label=label)
    axis.set_title("Figure 1: f(x) = quartic + sin(10x) and its smoothings f_σ")
    axis.set_xlabel("x")
    axis.legend(fontsize=8)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)


def figure2(function, starts, ends, global_minimum, threshold, continuation, path) -> dict:
    plt = pyplot()
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(6, 6), sharex=True)
    x = np.linspace(starts.min(), starts.max(), 2000)
    for sigma in continuation:
        top.plot(x, function.value(x, sigma), label=f"f_σ, σ = {sigma:g}")
    top.axvline(global_minimum, color="k", linestyle=":", label="global minimiser")
    top.set_title(f"Figure 2: ⅓(x⁴ − 2x²) + sin(8x); f_σ convex for σ ≥ {threshold:.3f}")
    top.legend(fontsize=7)
    basins = {}
    for offset, (name, end) in enumerate(ends.items()):
        found = np.abs(end - global_minimum) < 1e-3
        basins[name] = float(found.mean())
        bottom.scatter(starts[found], np.full(found.sum(), offset), s=4, color="tab:green")
        bottom.scatter(starts[~found], np.full((~found).sum(), offset), s=4, color="tab:red")
    bottom.set_yticks(range(len(ends)), [f"{name}\n{100 * basins[name]:.0f}% of starts" for name in ends])
    bottom.set_xlabel("starting point (green: reaches the global minimiser)")
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
    return basins


def main(argv=None) -> dict:
    args = parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    starts_count, steps = (41, 1000) if args.quick else (args.starts, args.steps)

    first = SmoothedFunction(args.fig1_coefficients, amplitude=1.0, frequency=10.0)
    first_threshold = first.convexity_threshold()
    figure1(first, first_threshold, os.path.join(args.output_dir, "figure1.png"))

    second = SmoothedFunction([1 / 3, 0.0, -2 / 3, 0.0, 0.0], amplitude=1.0, frequency=8.0)
    second_threshold = second.convexity_threshold()
    grid = np.linspace(-3, 3, 600_001)
    global_minimum = float(grid[np.argmin(second.value(grid))])
    starts = np.linspace(-3, 3, starts_count)
    ends = {
        "SGD (σ = 0)": gradient_descent(second, starts, [0.0], steps * len(args.continuation), args.learning_rate),
        "GSmoothSGD (σ = " + ", ".join(f"{s:g}" for s in args.continuation) + ")": gradient_descent(
            second, starts, args.continuation, steps, args.learning_rate
        ),
    }
    # Polish the global minimiser with the same descent, so both are compared at equal precision.
    global_minimum = float(gradient_descent(second, np.array([global_minimum]), [0.0], steps, args.learning_rate)[0])
    basins = figure2(second, starts, ends, global_minimum, second_threshold, args.continuation,
                     os.path.join(args.output_dir, "figure2.png"))

    with open(os.path.join(args.output_dir, "basins.csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["start", *ends])
        writer.writerows(zip(starts, *ends.values()))
    with open(os.path.join(args.output_dir, "thresholds.csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["figure", "function", "convex_for_sigma_at_least", "global_minimiser"])
        writer.writerow(["1", f"poly{args.fig1_coefficients} + sin(10x)", first_threshold, ""])
        writer.writerow(["2", "(x^4 - 2x^2)/3 + sin(8x)", second_threshold, global_minimum])
    print(f"Figure 1: f_σ convex for σ ≥ {first_threshold:.4f}")
    print(f"Figure 2: f_σ convex for σ ≥ {second_threshold:.4f}; global minimiser x* = {global_minimum:.4f}")
    for name, share in basins.items():
        print(f"  {name}: reaches x* from {100 * share:.1f}% of the starts in [-3, 3]")
    return {"thresholds": (first_threshold, second_threshold), "basins": basins}


if __name__ == "__main__":
    main()
