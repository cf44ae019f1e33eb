"""Fits the polynomial behind `keras_gsmooth.activations.base.normal_tails`.

The scaled complementary error function erfcx(u) = e^(u²)·erfc(u), u ≥ 0,
is written as t·P(t) with t = 1/(1 + u/2) ∈ (0, 1]: P is smooth on [0, 1]
(P(0) is the limit of erfcx(u)·(1 + u/2) as u → ∞, 1/(2√π)), so a degree-10 polynomial fitted by weighted least squares on
Chebyshev nodes gives erfc to a relative error of about 1e-8 in float64, well
below float32 rounding. With it, relu_σ, Φ and the Gaussian density need one
`exp` in all (erfc = e^(−u²)·t·P(t)), instead of XLA's erfc expansion (both
of its branches are evaluated) plus a separate exp.

Run `python tools/fit_erfcx.py` to print the coefficients (lowest degree
first) and the fit's maximum relative error.
"""

import numpy as np
from scipy.special import erfcx

DEGREE = 10
NODES = 4000


def fit() -> np.ndarray:
    k = np.arange(NODES)
    t = np.clip(0.5 * (1 - np.cos(np.pi * (k + 0.5) / NODES)), 1e-12, 1.0)
    u = 2.0 * (1.0 / t - 1.0)
    target = erfcx(u) / t
    design = np.vander(t, DEGREE + 1, increasing=True)
    weights = 1.0 / target  # relative error
    coefficients, *_ = np.linalg.lstsq(design * weights[:, None], target * weights, rcond=None)
    return coefficients


def main():
    coefficients = fit()
    t = np.linspace(1e-6, 1.0, 200_001)
    u = 2.0 * (1.0 / t - 1.0)
    relative = np.abs(np.polynomial.polynomial.polyval(t, coefficients) * t / erfcx(u) - 1.0)
    print("coefficients (lowest degree first):")
    for value in coefficients:
        print(f"    {float(value)!r},")
    print(f"max relative error of erfc: {relative.max():.3e}")


if __name__ == "__main__":
    main()
