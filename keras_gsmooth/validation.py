"""Argument checks shared by every public constructor."""

import math
from numbers import Real


def check_sigma(value, argument: str = "sigma", owner: str = "keras_gsmooth") -> float:
    """Returns `value` as a float if it is a valid smoothing radius.

    Raises:
        ValueError: if `value` is not a real number, or is negative, NaN or
            infinite. The message names `owner` and `argument`.
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(
            f"{owner}: `{argument}` must be a float >= 0 (or a σ schedule "
            f"where one is accepted). Received: {argument}={value!r}"
        )
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(
            f"{owner}: `{argument}` must be finite and >= 0. Received: "
            f"{argument}={value}. Use sigma=0 for the unsmoothed network."
        )
    return value


def check_regularization(value, argument: str = "regularization", owner: str = "keras_gsmooth") -> float:
    """Returns `value` as a float if it is a valid penalty weight λ ≥ 0.

    Raises:
        ValueError: if `value` is not a finite real number `>= 0`.
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(
            f"{owner}: `{argument}` (the penalty weight λ) must be a float "
            f">= 0. Received: {argument}={value!r}"
        )
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(
            f"{owner}: `{argument}` (the penalty weight λ) must be finite "
            f"and >= 0. Received: {argument}={value}. Use 0 to switch the "
            "penalty off."
        )
    return value
