"""The `keras.ops` functions of the smoothed relu and the penalties, cheap on eager PyTorch.

The closed forms and penalties are written once, in `keras.ops` and Python
operators. On JAX and TensorFlow a train step is traced once and compiled,
so what a `keras.ops` call costs in Python is paid once. Eager PyTorch pays
it in every step, and on a small tensor Keras's handling of the arguments
(converting each to a tensor, standardising dtypes, checking for symbolic
tensors) costs several times the operation itself: `keras.ops.maximum(x,
0.0)` took 26 µs against 3–6 µs for the torch function on 128 values, and
the smoothed relu's forward pass spent two thirds of its 280 µs there.

The smoothed relu's closed form, the penalties and σ's schedule step call
these in every step; other closed forms, rarer or already compiled, use
`keras.ops`. Each function here is the `keras.ops` function of the same
name and gives the same values: on PyTorch, given torch tensors, it calls the torch
function directly; otherwise it calls `keras.ops`. `cast` returns a tensor
that already has the dtype unchanged, on every backend.
"""

import numbers

import keras
from keras import ops

from keras_gsmooth.backend import is_torch_tensor as _is_torch_tensor


def cast(x, dtype: str):
    """`keras.ops.cast(x, dtype)`; `x` itself where it is a tensor of `dtype` already."""
    if ops.is_tensor(x) and keras.backend.standardize_dtype(x.dtype) == dtype:
        return x
    return ops.cast(x, dtype)


def exp(x):
    """`keras.ops.exp(x)`."""
    return x.exp() if _is_torch_tensor(x) else ops.exp(x)


def square(x):
    """`keras.ops.square(x)`."""
    return x.square() if _is_torch_tensor(x) else ops.square(x)


def relu(x):
    """`keras.ops.relu(x)`."""
    return x.relu() if _is_torch_tensor(x) else ops.relu(x)


def clip(x, x_min: float, x_max: float):
    """`keras.ops.clip(x, x_min, x_max)` with Python-number bounds."""
    return x.clamp(x_min, x_max) if _is_torch_tensor(x) else ops.clip(x, x_min, x_max)


def maximum(x, y):
    """`keras.ops.maximum(x, y)` of a tensor `x` and a tensor or Python number `y`."""
    if _is_torch_tensor(x):
        return x.clamp_min(y) if isinstance(y, numbers.Real) else x.maximum(y)
    return ops.maximum(x, y)


def sum(x):
    """`keras.ops.sum(x)` over every element."""
    return x.sum() if _is_torch_tensor(x) else ops.sum(x)
