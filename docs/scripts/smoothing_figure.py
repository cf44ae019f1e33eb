"""Draws docs/img/smoothing.png: a non-convex 1-D function and its Gaussian smoothings.

    f(x) = x⁴/4 − x³/3 − x² + sin(10x)/5

is smoothed in closed form with the package's convention (SPEC §1):
f_σ(x) = E[f(x + σu)], u ~ N(0, 1/2), i.e. every coordinate is perturbed
with variance σ²/2. With s² = σ²/2 the Gaussian moments give

    E[(x+su)²] = x² + s²,   E[(x+su)³] = x³ + 3xs²,
    E[(x+su)⁴] = x⁴ + 6x²s² + 3s⁴,   E[sin(a(x+su))] = sin(ax)·e^(−a²σ²/4).

The σ above which f_σ is convex is computed (smallest σ with
min_x f_σ''(x) ≥ 0 on a fine grid), not assumed.

Run from the repository root: `python docs/scripts/smoothing_figure.py`.
"""

import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

FREQUENCY = 10.0
AMPLITUDE = 0.2
OUTPUT = pathlib.Path(__file__).resolve().parents[1] / "img" / "smoothing.png"


def smoothed(x: np.ndarray, sigma: float) -> np.ndarray:
    """f_σ(x) in closed form (σ = 0 gives f itself)."""
    s2 = sigma**2 / 2
    quartic = (x**4 + 6 * x**2 * s2 + 3 * s2**2) / 4
    cubic = (x**3 + 3 * x * s2) / 3
    square = x**2 + s2
    wiggle = AMPLITUDE * np.sin(FREQUENCY * x) * np.exp(-(FREQUENCY**2) * sigma**2 / 4)
    return quartic - cubic - square + wiggle


def second_derivative(x: np.ndarray, sigma: float) -> np.ndarray:
    """f_σ''(x) in closed form."""
    s2 = sigma**2 / 2
    damping = np.exp(-(FREQUENCY**2) * sigma**2 / 4)
    return 3 * x**2 + 3 * s2 - 2 * x - 2 - AMPLITUDE * FREQUENCY**2 * np.sin(FREQUENCY * x) * damping


def convexity_threshold(grid: np.ndarray) -> float:
    """The smallest σ (to 1e-4) with f_σ'' ≥ 0 everywhere on `grid`, by bisection."""
    low, high = 0.0, 5.0
    while high - low > 1e-4:
        middle = (low + high) / 2
        if second_derivative(grid, middle).min() >= 0:
            high = middle
        else:
            low = middle
    return high


def main() -> None:
    x = np.linspace(-2.2, 2.8, 2001)
    sigma_convex = convexity_threshold(np.linspace(-10, 10, 200_001))
    sigmas = [0.0, 0.2, 0.6, sigma_convex]
    figure, axis = plt.subplots(figsize=(7.5, 4.2), dpi=120)
    colours = ["0.35", "tab:blue", "tab:orange", "tab:green"]
    for sigma, colour in zip(sigmas, colours):
        values = smoothed(x, sigma)
        label = r"$f$ ($\sigma = 0$)" if sigma == 0 else rf"$f_\sigma$, $\sigma = {sigma:.2f}$"
        if sigma == sigma_convex:
            label += ": convex from here on"
        axis.plot(x, values, color=colour, lw=1.1 if sigma == 0 else 2.0, label=label)
        minimiser = x[np.argmin(values)]
        axis.plot(minimiser, values.min(), "o", color=colour, ms=5)
    axis.set_xlabel("x")
    axis.set_ylabel("value")
    axis.set_title(r"$f(x) = x^4/4 - x^3/3 - x^2 + \sin(10x)/5$ and its Gaussian smoothings $f_\sigma$")
    axis.legend(frameon=False, fontsize=9, loc="upper center")
    axis.set_ylim(-3.2, 4.0)
    axis.grid(alpha=0.25)
    figure.tight_layout()
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(OUTPUT)
    print(f"wrote {OUTPUT} (f_σ is convex for σ ≥ {sigma_convex:.4f})")


if __name__ == "__main__":
    main()
