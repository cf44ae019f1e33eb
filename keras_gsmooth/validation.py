"""Argument checks shared by every public constructor."""

import math
from numbers import Real


def _check_non_negative(value, argument: str, owner: str, meaning: str, fix: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{owner}: `{argument}` ({meaning}) must be a float >= 0. Received: {argument}={value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{owner}: `{argument}` ({meaning}) must be finite and >= 0. Received: {argument}={value}. {fix}")
    return value


def check_sigma(value, argument: str = "sigma", owner: str = "keras_gsmooth") -> float:
    """Returns `value` as a float if it is a valid smoothing radius σ ≥ 0.

    Raises:
        ValueError: if `value` is not a real number, or is negative, NaN or
            infinite. The message names `owner` and `argument`.
    """
    return _check_non_negative(value, argument, owner, "the smoothing radius σ", "Use sigma=0 for the unsmoothed network.")


def check_regularization(value, argument: str = "regularization", owner: str = "keras_gsmooth") -> float:
    """Returns `value` as a float if it is a valid penalty weight λ ≥ 0.

    Raises:
        ValueError: if `value` is not a finite real number `>= 0`.
    """
    return _check_non_negative(value, argument, owner, "the penalty weight λ", "Use 0 to switch the penalty off.")
