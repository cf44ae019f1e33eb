"""`SmoothDense` and `backend.matmul_and_sum_of_squares`: Keras Dense's outputs,
the kernel penalty and its gradient, config and .keras round trips, σ binding,
and clear errors."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_gsmooth
from keras_gsmooth import backend
from keras_gsmooth.layers import SmoothDense
from keras_gsmooth.regularizers import DenseKernelPenalty


def _numpy(t):
    return np.asarray(ops.convert_to_numpy(t), dtype="float64")


@pytest.mark.parametrize("x_shape", [(3, 5), (2, 3, 5)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_matmul_and_sum_of_squares_and_their_gradients(x_shape, dtype):
    rng = np.random.default_rng(4)
    x, kernel = rng.normal(size=x_shape).astype(dtype), rng.normal(size=(5, 4)).astype(dtype)
    weights = rng.normal(size=x_shape[:-1] + (4,))
    x_tensor, kernel_tensor = ops.convert_to_tensor(x), ops.convert_to_tensor(kernel)  # float32 on JAX without x64

    functions = []

    def loss(v):
        outputs, total = backend.matmul_and_sum_of_squares(v[0], v[1])
        functions.append(type(getattr(outputs, "grad_fn", None)).__name__)
        return ops.sum(ops.cast(weights, outputs.dtype) * outputs) + 3.0 * total, (outputs, total)

    (_, (outputs, total)), (gradient_x, gradient_kernel) = backend.value_and_grad(
        loss, [x_tensor, kernel_tensor], has_aux=True
    )
    single = keras.backend.standardize_dtype(x_tensor.dtype) == "float32"
    tolerance = {"rtol": 1e-5, "atol": 1e-5} if single else {"rtol": 1e-12}
    np.testing.assert_allclose(_numpy(outputs), x.astype("float64") @ kernel, **tolerance)
    np.testing.assert_allclose(float(total), np.sum(kernel.astype("float64") ** 2), **tolerance)
    np.testing.assert_allclose(_numpy(gradient_x), weights @ kernel.T.astype("float64"), **tolerance)
    rows, row_weights = x.reshape(-1, 5).astype("float64"), weights.reshape(-1, 4)
    np.testing.assert_allclose(_numpy(gradient_kernel), rows.T @ row_weights + 6.0 * kernel, **tolerance)
    assert total.dtype == kernel_tensor.dtype and gradient_kernel.dtype == kernel_tensor.dtype
    if keras.backend.backend() == "torch":  # float32 and float64 take the fused autograd Function
        assert functions == ["MatmulAndSumOfSquaresBackward"]


def test_a_half_precision_kernel_sums_its_squares_in_float32():
    kernel = np.full((4, 3), 200.0, "float16")  # Σ θ² = 480,000 overflows float16
    outputs, total = backend.matmul_and_sum_of_squares(ops.ones((2, 4), "float16"), ops.convert_to_tensor(kernel))
    dtypes = [keras.backend.standardize_dtype(t.dtype) for t in (outputs, total)]
    assert dtypes == ["float16", "float32"]
    assert float(total) == pytest.approx(480000.0)


def _pair(sigma=0.3, regularization=0.2, **kwargs):
    """A SmoothDense and the Keras Dense with the same penalty as its kernel regularizer, equal weights."""
    smooth = SmoothDense(4, kernel_penalty=DenseKernelPenalty(regularization, sigma=sigma), **kwargs)
    dense = keras.layers.Dense(4, kernel_regularizer=DenseKernelPenalty(regularization, sigma=sigma), **kwargs)
    for layer in (smooth, dense):
        layer.build((None, 5))
    dense.set_weights(smooth.get_weights())
    return smooth, dense


def test_outputs_penalty_and_gradients_are_those_of_dense_with_the_penalty_as_regularizer():
    smooth, dense = _pair(activation="tanh")
    x = ops.convert_to_tensor(np.random.default_rng(1).normal(size=(3, 5)).astype("float32"))
    results = []
    for layer in (smooth, dense):
        model = keras.Sequential([keras.Input((5,)), layer])

        def loss(values, model=model):
            outputs, _, losses = model.stateless_call(values, [], x, return_losses=True)
            return ops.sum(ops.square(outputs)) + sum(losses), (outputs, losses)

        (_, (outputs, losses)), gradients = backend.value_and_grad(
            loss, [v.value for v in model.trainable_variables], has_aux=True
        )
        results.append((outputs, losses, gradients))
    (smooth_outputs, smooth_losses, smooth_gradients), (outputs, losses, gradients) = results
    np.testing.assert_allclose(_numpy(smooth_outputs), _numpy(outputs), rtol=1e-6, atol=1e-7)
    assert len(smooth_losses) == len(losses) == 1
    kernel = _numpy(smooth.kernel)
    np.testing.assert_allclose(float(smooth_losses[0]), 0.2 * (0.09 / 2) * np.sum(kernel**2), rtol=1e-6)
    for smooth_gradient, gradient in zip(smooth_gradients, gradients):
        np.testing.assert_allclose(_numpy(smooth_gradient), _numpy(gradient), rtol=1e-5, atol=1e-7)


def test_a_kernel_regularizer_is_added_besides_the_penalty():
    smooth = SmoothDense(2, kernel_penalty=DenseKernelPenalty(1.0, sigma=0.5), kernel_regularizer="l2")
    outputs_model = keras.Sequential([keras.Input((3,)), smooth])
    outputs_model(np.ones((2, 3), "float32"))
    kernel = _numpy(smooth.kernel)
    losses = sorted(float(ops.convert_to_numpy(loss)) for loss in outputs_model.losses)
    expected = sorted([0.125 * np.sum(kernel**2), 0.01 * np.sum(kernel**2)])
    np.testing.assert_allclose(losses, expected, rtol=1e-6)


def test_config_and_keras_round_trip_in_safe_mode(tmp_path):
    inputs = keras.Input((5,))
    layer = SmoothDense(3, kernel_penalty=DenseKernelPenalty(0.4, sigma=0.2), activation="relu", name="head")
    model = keras.Model(inputs, layer(inputs))
    restored = SmoothDense.from_config(layer.get_config())
    assert restored.kernel_penalty.get_config() == layer.kernel_penalty.get_config()
    path = str(tmp_path / "dense.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    x = np.random.default_rng(2).normal(size=(4, 5)).astype("float32")
    np.testing.assert_allclose(_numpy(loaded(x)), _numpy(model(x)), rtol=1e-6)
    assert float(ops.convert_to_numpy(loaded.losses[0])) == pytest.approx(float(ops.convert_to_numpy(model.losses[0])))


def test_bound_to_a_smoothed_model_the_penalty_reads_the_model_sigma():
    inputs = keras.Input((5,))
    hidden = keras.layers.Dense(6, activation="relu")(inputs)
    outputs = SmoothDense(2, kernel_penalty=DenseKernelPenalty(1.0, sigma=0.9), name="head")(hidden)
    model = keras_gsmooth.SmoothedModel(inputs, outputs, sigma=0.3)
    x = np.ones((2, 5), "float32")
    model(x)
    kernel = _numpy(model.get_layer("head").kernel)
    assert float(ops.convert_to_numpy(model.losses[0])) == pytest.approx(0.045 * np.sum(kernel**2), rel=1e-6)
    keras_gsmooth.set_sigma(model, 0.0)
    model(x)
    assert float(ops.convert_to_numpy(model.losses[0])) == 0.0


def test_one_fit_step_trains_with_the_penalty():
    inputs = keras.Input((5,))
    outputs = SmoothDense(1, kernel_penalty=DenseKernelPenalty(10.0, sigma=1.0), kernel_initializer="ones")(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    x, y = np.zeros((4, 5), "float32"), np.zeros((4, 1), "float32")
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    # On zero data only the penalty 10·½·‖θ‖² moves the kernel: θ ← θ − 0.1·10·θ = 0.
    np.testing.assert_allclose(_numpy(model.layers[-1].kernel), 0.0, atol=1e-6)


def test_bad_arguments_and_quantization_are_refused():
    with pytest.raises(ValueError, match="SmoothDense 'head': `kernel_penalty` must be a keras_gsmooth.regularizers.DenseKernelPenalty"):
        SmoothDense(2, kernel_penalty=keras.regularizers.L2(0.1), name="head")
    layer = SmoothDense(2, kernel_penalty=DenseKernelPenalty(0.1), name="head")
    layer.build((None, 3))
    with pytest.raises(ValueError, match="SmoothDense 'head': a quantized layer applies its kernel outside `call`"):
        layer.quantize("int8")
    with pytest.raises(ValueError, match="SmoothDense 'quantized': a quantized layer applies its kernel outside `call`"):
        SmoothDense(2, kernel_penalty=DenseKernelPenalty(0.1), dtype="int8_from_float32", name="quantized")
