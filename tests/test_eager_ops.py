"""`keras_gsmooth.eager_ops` gives what `keras.ops` gives, on every backend."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_gsmooth import eager_ops

X = np.array([[-9.0, -1.5, -0.0, 0.0, 1e-30, 0.25, 3.0, 40.0]])
Y = np.array([[2.0, -2.0, 1.0, -1.0, 0.0, 0.5, 4.0, -40.0]])

# name -> (eager_ops call, keras.ops call, NumPy reference), each of x and y.
CASES = {
    "exp": (lambda x, y: eager_ops.exp(x), lambda x, y: ops.exp(x), lambda x, y: np.exp(x)),
    "square": (lambda x, y: eager_ops.square(x), lambda x, y: ops.square(x), lambda x, y: np.square(x)),
    "relu": (lambda x, y: eager_ops.relu(x), lambda x, y: ops.relu(x), lambda x, y: np.maximum(x, 0.0)),
    "clip": (
        lambda x, y: eager_ops.clip(x, -7.5, 7.5),
        lambda x, y: ops.clip(x, -7.5, 7.5),
        lambda x, y: np.clip(x, -7.5, 7.5),
    ),
    "maximum with a number": (
        lambda x, y: eager_ops.maximum(x, 0.1),
        lambda x, y: ops.maximum(x, 0.1),
        lambda x, y: np.maximum(x, x.dtype.type(0.1)),
    ),
    "maximum with a tensor": (
        lambda x, y: eager_ops.maximum(x, y),
        lambda x, y: ops.maximum(x, y),
        lambda x, y: np.maximum(x, y),
    ),
    "sum": (lambda x, y: eager_ops.sum(x), lambda x, y: ops.sum(x), lambda x, y: np.sum(x)),
}


def _tensor(array, dtype):
    tensor = ops.convert_to_tensor(array.astype(dtype))
    if keras.backend.standardize_dtype(tensor.dtype) != dtype:
        pytest.skip(f"this backend keeps no {dtype} tensors (JAX without x64)")
    return tensor


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_each_function_gives_the_values_and_dtype_of_its_input(case, dtype):
    ours, theirs, numpy = CASES[case]
    x, y = _tensor(X, dtype), _tensor(Y, dtype)
    got = ours(x, y)
    # The input's dtype, as keras.ops gives on JAX and TensorFlow (Keras's
    # PyTorch `maximum` returns float32 for a float64 tensor and a number).
    assert keras.backend.standardize_dtype(got.dtype) == dtype
    expected = numpy(X.astype(dtype), Y.astype(dtype))
    np.testing.assert_allclose(ops.convert_to_numpy(got), expected, rtol=1e-6 if dtype == "float32" else 1e-13, atol=0)
    if dtype == "float32":
        np.testing.assert_array_equal(ops.convert_to_numpy(got), ops.convert_to_numpy(theirs(x, y)))


@pytest.mark.parametrize("case", sorted(CASES))
def test_symbolic_tensors_go_through_keras_ops(case):
    ours, theirs, _ = CASES[case]
    x, y = keras.KerasTensor((None, 8), dtype="float32"), keras.KerasTensor((None, 8), dtype="float32")
    got, expected = ours(x, y), theirs(x, y)
    assert isinstance(got, keras.KerasTensor)
    assert (got.shape, got.dtype) == (expected.shape, expected.dtype)


def test_cast_keeps_a_tensor_of_the_dtype_and_casts_anything_else():
    x = _tensor(X, "float32")
    assert eager_ops.cast(x, "float32") is x
    as_float16 = eager_ops.cast(x, "float16")
    assert keras.backend.standardize_dtype(as_float16.dtype) == "float16"
    np.testing.assert_array_equal(ops.convert_to_numpy(as_float16), X.astype("float16"))
    number = eager_ops.cast(0.5, "float32")
    assert ops.is_tensor(number) and keras.backend.standardize_dtype(number.dtype) == "float32"
