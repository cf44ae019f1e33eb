"""Tests of the penalty regularizers (SPEC.md §3)."""

import json
import math

import keras
import numpy as np
import pytest
from keras import ops

import keras_gsmooth
from keras_gsmooth import backend
from keras_gsmooth import regularizers
from keras_gsmooth.regularizers import ConvInputPenalty
from keras_gsmooth.regularizers import ConvKernelPenalty
from keras_gsmooth.regularizers import ConvTransposeInputPenalty
from keras_gsmooth.regularizers import ConvTransposeKernelPenalty
from keras_gsmooth.regularizers import DenseInputPenalty
from keras_gsmooth.regularizers import DenseKernelPenalty
from keras_gsmooth.regularizers import DropoutInputPenalty
from keras_gsmooth.regularizers import RegularizerSum
from keras_gsmooth.regularizers import TimeDistributedPenalty
from keras_gsmooth.sigma import SigmaConsumer

# --------------------------------------------------------------------------
# Brute-force convolution geometry, written independently of the module: pad
# the input as Keras does, then gather every (output position, tap) window.
# --------------------------------------------------------------------------


def _keras_pads(length, kernel, stride, dilation, padding):
    span = (kernel - 1) * dilation + 1
    if padding == "valid":
        return 0, 0
    if padding == "causal":
        return span - 1, 0
    total = max((math.ceil(length / stride) - 1) * stride + span - length, 0)
    return total // 2, total - total // 2


def _patches(x, kernel_size, strides, dilation_rate, padding):
    """(batch, *spatial, C) → (batch, positions, taps, C), zeros where a tap falls in the padding."""
    rank = len(kernel_size)
    axes = zip(x.shape[1:-1], kernel_size, strides, dilation_rate)
    pads = [_keras_pads(n, k, s, d, padding) for n, k, s, d in axes]
    padded = np.pad(x, [(0, 0), *pads, (0, 0)])
    index = []
    for axis, (k, s, d) in enumerate(zip(kernel_size, strides, dilation_rate)):
        length = padded.shape[axis + 1]
        starts = [o * s for o in range(length) if o * s + (k - 1) * d + 1 <= length]
        grid = np.array(starts)[:, None] + np.arange(k)[None, :] * d
        shape = [1] * (2 * rank)
        shape[axis], shape[rank + axis] = grid.shape
        index.append(grid.reshape(shape))
    windows = padded[(slice(None), *index)]
    outputs = windows.shape[1 : rank + 1]
    return windows.reshape(x.shape[0], int(np.prod(outputs)), int(np.prod(kernel_size)), x.shape[-1]), outputs


def _brute_force_counts(spatial_shape, kernel_size, strides, dilation_rate, padding):
    """N (kernel shape) and M (spatial shape) by enumerating every window."""
    ones = np.ones((1, *spatial_shape, 1))
    tap_counts = _patches(ones, kernel_size, strides, dilation_rate, padding)[0].sum(axis=(0, 1, 3))
    labels = np.arange(1, int(np.prod(spatial_shape)) + 1, dtype=float).reshape(1, *spatial_shape, 1)
    landed = _patches(labels, kernel_size, strides, dilation_rate, padding)[0].astype(int).ravel()
    input_counts = np.bincount(landed, minlength=labels.size + 1)[1:]
    return tap_counts.reshape(kernel_size), input_counts.reshape(spatial_shape)


GEOMETRIES = [
    ((9,), (3,), (1,), (1,), "valid"),
    ((9,), (3,), (2,), (2,), "same"),
    ((10,), (4,), (3,), (1,), "same"),
    ((8,), (3,), (2,), (2,), "causal"),
    ((7, 6), (3, 2), (2, 1), (1, 2), "same"),
    ((7, 6), (2, 3), (3, 2), (2, 1), "valid"),
    ((8, 8), (4, 4), (2, 2), (1, 1), "same"),
    ((5, 6, 4), (3, 2, 2), (2, 1, 2), (1, 2, 1), "same"),
    ((5, 6, 4), (2, 3, 2), (1, 2, 1), (2, 1, 1), "valid"),
]


def test_counts_match_brute_force_enumeration():
    # One test looping over the geometries: each test costs the conftest's clear_session.
    for geometry in GEOMETRIES:
        expected_taps, expected_inputs = _brute_force_counts(*geometry)
        taps = regularizers._coverage(*geometry, per="tap")
        inputs = regularizers._coverage(*geometry, per="input")
        np.testing.assert_array_equal(taps, expected_taps, err_msg=str(geometry))
        np.testing.assert_array_equal(inputs, expected_inputs, err_msg=str(geometry))
        if geometry[-1] == "same":
            assert expected_taps.min() < expected_taps.max()  # the border effect is exercised


def _reference_conv(x, kernel, strides, padding, dilation_rate):
    """keras.ops.conv, or a Conv1D layer for 'causal' (ops.conv has no causal mode)."""
    if padding != "causal":
        return ops.conv(x, kernel, strides=strides, padding=padding, dilation_rate=dilation_rate)
    layer = keras.layers.Conv1D(
        kernel.shape[-1],
        kernel.shape[0],
        strides=strides,
        padding="causal",
        dilation_rate=dilation_rate,
        use_bias=False,
    )
    layer.build(x.shape)
    layer.kernel.assign(kernel)
    return layer(x)


# TensorFlow's convolution rejects strides > 1 together with dilation > 1 (on any axes).
KERAS_CONV_GEOMETRIES = [
    ((9,), (3,), (1,), (1,), "valid"),
    ((10,), (4,), (3,), (1,), "same"),
    ((8,), (3,), (1,), (2,), "causal"),
    ((8,), (3,), (2,), (1,), "causal"),
    ((7, 6), (3, 2), (1, 1), (2, 2), "same"),
    ((8, 7), (4, 3), (2, 3), (1, 1), "same"),
    ((5, 6, 4), (3, 2, 2), (2, 1, 2), (1, 1, 1), "same"),
    ((5, 6, 4), (2, 3, 2), (1, 1, 1), (2, 1, 1), "valid"),
]


def test_conv_penalties_match_keras_conv(rng):
    """SPEC.md §3's definitions through Keras's own convolution: conv(x², ones) and conv(ones, θ²)."""
    c_in, filters, lam, sigma = 3, 4, 0.7, 0.9
    scale = lam * sigma**2 / 2
    for spatial_shape, kernel_size, strides, dilation_rate, padding in KERAS_CONV_GEOMETRIES:
        geometry = (strides, padding, dilation_rate)
        x = rng.normal(size=(2, *spatial_shape, c_in)).astype("float32")
        kernel = rng.normal(size=(*kernel_size, c_in, filters)).astype("float32")
        ones_kernel = np.ones((*kernel_size, c_in, 1), "float32")
        conv_of_squares = np.sum(ops.convert_to_numpy(_reference_conv(np.square(x), ones_kernel, *geometry)))
        for data_format, x_in_format in (("channels_last", x), ("channels_first", np.moveaxis(x, -1, 1))):
            penalty = ConvInputPenalty(
                filters, kernel_size, *geometry, data_format, regularization=lam, sigma=sigma
            )
            np.testing.assert_allclose(
                ops.convert_to_numpy(penalty(x_in_format)),
                scale * filters * conv_of_squares,
                rtol=1e-5,
                err_msg=f"{spatial_shape} {kernel_size} {geometry} {data_format}",
            )
        ones_input = np.ones((1, *spatial_shape, c_in), "float32")
        conv_of_ones = np.sum(ops.convert_to_numpy(_reference_conv(ones_input, np.square(kernel), *geometry)))
        penalty = ConvKernelPenalty(spatial_shape, *geometry, regularization=lam, sigma=sigma)
        np.testing.assert_allclose(
            ops.convert_to_numpy(penalty(kernel)),
            scale * conv_of_ones,
            rtol=1e-5,
            err_msg=f"{spatial_shape} {kernel_size} {geometry}",
        )


# (spatial shape, kernel, strides, dilation, padding, output padding). TensorFlow's
# oneDNN transposed convolution rejects some 'same' geometries with an
# explicit output padding, and strides > 1 together with dilation > 1.
KERAS_CONV_TRANSPOSE_GEOMETRIES = [
    ((5,), (3,), (2,), (1,), "same", None),
    ((5,), (4,), (3,), (1,), "valid", None),
    ((6,), (2,), (3,), (1,), "valid", (2,)),
    ((5,), (3,), (1,), (2,), "same", None),
    ((4, 5), (3, 2), (2, 3), (1, 1), "same", None),
    ((4, 5), (3, 3), (2, 2), (1, 1), "valid", (1, 0)),
    ((4, 5), (3, 4), (2, 2), (1, 1), "same", (1, 1)),
    ((3, 4, 2), (2, 3, 2), (2, 1, 2), (1, 1, 1), "same", None),
]


def test_conv_transpose_penalties_match_keras_conv_transpose(rng):
    """The transposed penalties through Keras's own operation: its sums over the output of
    conv_transpose(Σ_c x², ones) (the taps of each input position in bounds) and
    conv_transpose(ones, θ²) (the input positions of each tap)."""
    c_in, filters, lam, sigma = 3, 2, 0.7, 0.9
    scale = lam * sigma**2 / 2
    for spatial_shape, kernel_size, strides, dilation_rate, padding, output_padding in KERAS_CONV_TRANSPOSE_GEOMETRIES:
        message = f"{spatial_shape} {kernel_size} {strides} {dilation_rate} {padding} {output_padding}"

        def conv_transpose(inputs, kernel):
            outputs = ops.conv_transpose(inputs, kernel, strides, padding, output_padding, dilation_rate=dilation_rate)
            return float(np.sum(ops.convert_to_numpy(outputs)))

        x = rng.normal(size=(2, *spatial_shape, c_in)).astype("float32")
        kernel = rng.normal(size=(*kernel_size, filters, c_in)).astype("float32")
        squares = np.sum(np.square(x), axis=-1, keepdims=True)
        expected_input = scale * filters * conv_transpose(squares, np.ones((*kernel_size, 1, 1), "float32"))
        for data_format, x_in_format in (("channels_last", x), ("channels_first", np.moveaxis(x, -1, 1))):
            penalty = ConvTransposeInputPenalty(
                filters, kernel_size, strides, padding, dilation_rate, output_padding, data_format, lam, sigma
            )
            np.testing.assert_allclose(ops.convert_to_numpy(penalty(x_in_format)), expected_input, rtol=1e-5, err_msg=message)
        ones_input = np.ones((1, *spatial_shape, c_in), "float32")
        penalty = ConvTransposeKernelPenalty(spatial_shape, strides, padding, dilation_rate, output_padding, regularization=lam, sigma=sigma)
        expected_kernel = scale * conv_transpose(ones_input, np.square(kernel))
        np.testing.assert_allclose(ops.convert_to_numpy(penalty(kernel)), expected_kernel, rtol=1e-5, err_msg=message)
        if padding == "same":  # the border effect is exercised
            counts = regularizers._coverage(spatial_shape, kernel_size, strides, dilation_rate, padding, "input",
                                            output_padding or (None,) * len(spatial_shape))
            assert counts.min() < counts.max(), message


# --------------------------------------------------------------------------
# Each penalty against a hand-written NumPy computation of its formula.
# --------------------------------------------------------------------------


def test_dense_penalties_match_numpy(rng):
    kernel = rng.normal(size=(5, 3)).astype("float32")
    x = rng.normal(size=(4, 5)).astype("float32")
    lam, sigma = 0.3, 0.7
    np.testing.assert_allclose(
        ops.convert_to_numpy(DenseKernelPenalty(lam, sigma)(kernel)),
        lam * sigma**2 / 2 * np.sum(kernel.astype(float) ** 2),
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        ops.convert_to_numpy(DenseInputPenalty(3, lam, sigma)(x)),
        lam * sigma**2 * 3 / 2 * np.sum(x.astype(float) ** 2),
        rtol=1e-6,
    )


def test_conv_penalties_match_numpy(rng):
    for geometry in GEOMETRIES[1::2]:
        _check_against_numpy_formula(*geometry, rng)


def _check_against_numpy_formula(spatial_shape, kernel_size, strides, dilation_rate, padding, rng):
    lam, sigma, filters = 0.4, 1.3, 5
    x = rng.normal(size=(3, *spatial_shape, 2)).astype("float32")
    kernel = rng.normal(size=(*kernel_size, 2, filters)).astype("float32")
    taps, inputs = _brute_force_counts(spatial_shape, kernel_size, strides, dilation_rate, padding)
    expected_kernel = lam * sigma**2 / 2 * np.sum(taps[..., None, None] * kernel.astype(float) ** 2)
    expected_input = lam * sigma**2 * filters / 2 * np.sum(inputs[None, ..., None] * x.astype(float) ** 2)
    geometry = (strides, padding, dilation_rate)
    kernel_penalty = ConvKernelPenalty(spatial_shape, *geometry, regularization=lam, sigma=sigma)
    input_penalty = ConvInputPenalty(filters, kernel_size, *geometry, regularization=lam, sigma=sigma)
    np.testing.assert_allclose(ops.convert_to_numpy(kernel_penalty(kernel)), expected_kernel, rtol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(input_penalty(x)), expected_input, rtol=1e-5)


def test_dropout_penalty_matches_numpy(rng):
    x = rng.normal(size=(4, 6)).astype("float32")
    np.testing.assert_allclose(
        ops.convert_to_numpy(DropoutInputPenalty(0.25, 2.0)(x)),
        2.0 * (0.25 / 0.75) * np.sum(x.astype(float) ** 2),
        rtol=1e-6,
    )


# --------------------------------------------------------------------------
# Monte-Carlo smoothing of each layer's own term of the lifted objective.
# --------------------------------------------------------------------------


def _assert_mean_matches(samples, expected, discrimination=20.0):
    """|mean − expected| within 5 standard errors, and the check able to tell `expected` from 0."""
    error = samples.std(ddof=1) / math.sqrt(samples.size)
    assert abs(samples.mean() - expected) < 5 * error, (samples.mean(), expected, error)
    assert abs(expected) > discrimination * error, (expected, error)


def _check_smoothed_term(excess, kernel_penalty, input_penalty, constants):
    """Each penalty is the excess of its own perturbation; both, plus constants, of all three.

    `excess(perturb_input, perturb_kernel, perturb_target)` returns Monte-Carlo
    samples of the smoothed term minus the unsmoothed one.
    """
    kernel_penalty = float(ops.convert_to_numpy(kernel_penalty))
    input_penalty = float(ops.convert_to_numpy(input_penalty))
    _assert_mean_matches(excess(True, False, False), kernel_penalty)
    _assert_mean_matches(excess(False, True, False), input_penalty)
    _assert_mean_matches(excess(True, True, True) - constants, kernel_penalty + input_penalty)


@pytest.mark.montecarlo
def test_dense_penalties_are_the_smoothed_dense_term(rng):
    """E‖(W+σU)(x+σv) + b − (y+σw)‖² = ‖Wx+b−y‖² + both penalties + constants.

    U, v, w ~ N(0, I/2), the convention of SPEC.md §1.
    """
    d_in, units, sigma, n = 4, 3, 0.6, 400_000
    kernel, bias = rng.normal(size=(d_in, units)), rng.normal(size=units)
    x, y = rng.normal(size=d_in), rng.normal(size=units)
    s = sigma / math.sqrt(2)
    unsmoothed = np.sum((x @ kernel + bias - y) ** 2)

    def excess(perturb_input, perturb_kernel, perturb_target):
        x_ = x + perturb_input * s * rng.normal(size=(n, d_in))
        kernel_ = kernel + perturb_kernel * s * rng.normal(size=(n, d_in, units))
        y_ = y + perturb_target * s * rng.normal(size=(n, units))
        return np.sum((np.einsum("ni,nij->nj", x_, kernel_) + bias - y_) ** 2, axis=1) - unsmoothed

    _check_smoothed_term(
        excess,
        DenseKernelPenalty(1.0, sigma)(kernel.astype("float32")),
        DenseInputPenalty(units, 1.0, sigma)(x[None].astype("float32")),
        constants=sigma**4 * d_in * units / 4 + sigma**2 * units / 2,
    )


@pytest.mark.montecarlo
def test_conv_penalties_are_the_smoothed_conv_term(rng):
    """The same for a 'same'-padded, strided Conv2D: E‖conv(x+σv; θ+σU) + b − (y+σw)‖²."""
    spatial, kernel_size, strides, c_in, filters, sigma, n = (5, 6), (3, 3), (2, 2), 2, 3, 0.5, 30_000
    geometry = (kernel_size, strides, (1, 1), "same")
    kernel, bias = rng.normal(size=(*kernel_size, c_in, filters)), rng.normal(size=filters)
    x = rng.normal(size=(1, *spatial, c_in))
    windows, outputs = _patches(x, *geometry)
    y = rng.normal(size=(int(np.prod(outputs)), filters))
    s = sigma / math.sqrt(2)

    def convolve(windows_, kernel_):
        taps = kernel_.reshape(*kernel_.shape[:-4], -1, c_in, filters)
        return np.einsum("...ptc,...tcf->...pf", windows_, taps)

    def residual(windows_, kernel_, y_):
        return convolve(windows_, kernel_) + bias - y_

    np.testing.assert_allclose(  # the NumPy convolution is Keras's
        convolve(windows, kernel).reshape(1, *outputs, filters),
        ops.convert_to_numpy(ops.conv(x.astype("float32"), kernel.astype("float32"), strides, "same")),
        rtol=1e-4,
        atol=1e-5,
    )
    unsmoothed = np.sum(residual(windows, kernel, y) ** 2)

    def excess(perturb_input, perturb_kernel, perturb_target):
        windows_ = _patches(x + perturb_input * s * rng.normal(size=(n, *spatial, c_in)), *geometry)[0]
        kernel_ = kernel + perturb_kernel * s * rng.normal(size=(n, *kernel.shape))
        y_ = y + perturb_target * s * rng.normal(size=(n, *y.shape))
        return np.sum(residual(windows_, kernel_, y_) ** 2, axis=(1, 2)) - unsmoothed

    in_bounds_pairs = _patches(np.ones((1, *spatial, 1)), *geometry)[0].sum()
    kernel_penalty = ConvKernelPenalty(spatial, strides, "same", 1, regularization=1.0, sigma=sigma)
    input_penalty = ConvInputPenalty(filters, kernel_size, strides, "same", 1, regularization=1.0, sigma=sigma)
    _check_smoothed_term(
        excess,
        kernel_penalty(kernel.astype("float32")),
        input_penalty(x.astype("float32")),
        constants=sigma**4 / 4 * in_bounds_pairs * c_in * filters + sigma**2 / 2 * y.size,
    )


def _conv_transpose_scatter(length, kernel_size, stride, padding):
    """A[o, p, i] = 1 where tap i of input position p lands on output o, read from Keras's own 1-D operation."""
    one_hots = np.eye(length, dtype="float32")[:, :, None]
    columns = []
    for tap in range(kernel_size):
        kernel = np.zeros((kernel_size, 1, 1), "float32")
        kernel[tap] = 1.0
        columns.append(ops.convert_to_numpy(ops.conv_transpose(one_hots, kernel, stride, padding))[:, :, 0].T)
    return np.stack(columns, axis=-1)


@pytest.mark.montecarlo
def test_conv_transpose_penalties_are_the_smoothed_term(rng):
    """E‖conv_transpose(x+σv; θ+σU) + b − (y+σw)‖² for a 'same'-padded, strided Conv1DTranspose."""
    length, kernel_size, stride, c_in, filters, sigma, n = 5, 3, 2, 2, 3, 0.5, 30_000
    scatter = _conv_transpose_scatter(length, kernel_size, stride, "same")  # (outputs, length, taps)
    kernel, bias = rng.normal(size=(kernel_size, filters, c_in)), rng.normal(size=filters)
    x = rng.normal(size=(length, c_in))
    y = rng.normal(size=(scatter.shape[0], filters))
    s = sigma / math.sqrt(2)

    def residual(x_, kernel_, y_):
        return np.einsum("opi,...ifc,...pc->...of", scatter, kernel_, x_) + bias - y_

    np.testing.assert_allclose(  # the NumPy transposed convolution is Keras's
        residual(x, kernel, 0.0) - bias,
        ops.convert_to_numpy(ops.conv_transpose(x[None].astype("float32"), kernel.astype("float32"), stride, "same"))[0],
        rtol=1e-4,
        atol=1e-5,
    )
    unsmoothed = np.sum(residual(x, kernel, y) ** 2)

    def excess(perturb_input, perturb_kernel, perturb_target):
        x_ = x + perturb_input * s * rng.normal(size=(n, *x.shape))
        kernel_ = kernel + perturb_kernel * s * rng.normal(size=(n, *kernel.shape))
        y_ = y + perturb_target * s * rng.normal(size=(n, *y.shape))
        return np.sum(residual(x_, kernel_, y_) ** 2, axis=(1, 2)) - unsmoothed

    assert scatter.sum() < length * kernel_size  # 'same' crops taps at the border
    _check_smoothed_term(
        excess,
        ConvTransposeKernelPenalty((length,), stride, "same", 1, regularization=1.0, sigma=sigma)(kernel.astype("float32")),
        ConvTransposeInputPenalty(filters, kernel_size, stride, "same", 1, regularization=1.0, sigma=sigma)(x[None].astype("float32")),
        constants=sigma**4 / 4 * scatter.sum() * c_in * filters + sigma**2 / 2 * y.size,
    )


@pytest.mark.montecarlo
def test_dropout_penalty_is_the_expected_dropout_error(rng):
    """E over Keras's dropout mask of ‖dropout(x) − x‖² = (p/(1−p))‖x‖²."""
    rate, n = 0.3, 20_000
    x = rng.normal(size=(1, 6)).astype("float32")
    dropped = keras.layers.Dropout(rate)(np.repeat(x, n, axis=0), training=True)
    errors = np.sum((ops.convert_to_numpy(dropped).astype(float) - x) ** 2, axis=1)
    _assert_mean_matches(errors, float(ops.convert_to_numpy(DropoutInputPenalty(rate, 1.0)(x))))


# --------------------------------------------------------------------------
# Inside Keras models: model.losses, σ binding, serialization.
# --------------------------------------------------------------------------

LAM, SIGMA = 0.5, 0.8


def _penalty_layer(penalty, name):
    """An identity layer carrying `penalty` as its activity regularizer.

    Set after construction: `keras.layers.Identity(activity_regularizer=...)`
    cannot be saved (Identity has no `get_config` of its own, and Keras's
    automatic config skips non-plain constructor arguments).
    """
    layer = keras.layers.Identity(name=name)
    layer.activity_regularizer = penalty
    return layer


def _penalized_model(rng):
    """A small CNN carrying all five penalties (and an L2 next to one of them).

    Conv2D → [conv input penalty] → Conv2D → Flatten → [dropout penalty] →
    [dense input penalty] → Dense.

    Built with zero weights, then given random ones (on JAX, compiling the
    random initializers costs seconds).
    """
    inputs = keras.Input((6, 6, 2))
    hidden = keras.layers.Conv2D(3, 3, padding="same", kernel_initializer="zeros", name="conv_a")(inputs)
    conv_input_penalty = ConvInputPenalty(4, 3, 2, "same", 1, regularization=LAM, sigma=SIGMA)
    hidden = _penalty_layer(conv_input_penalty, "conv_in")(hidden)
    hidden = keras.layers.Conv2D(
        4,
        3,
        strides=2,
        padding="same",
        kernel_initializer="zeros",
        kernel_regularizer=RegularizerSum(
            [keras.regularizers.L2(0.01), ConvKernelPenalty((6, 6), 2, "same", 1, regularization=LAM, sigma=SIGMA)]
        ),
        name="conv_b",
    )(hidden)
    hidden = keras.layers.Flatten()(hidden)
    hidden = _penalty_layer(DropoutInputPenalty(0.2, LAM), "drop_in")(hidden)
    hidden = _penalty_layer(DenseInputPenalty(2, LAM, SIGMA), "dense_in")(hidden)
    outputs = keras.layers.Dense(
        2, kernel_initializer="zeros", kernel_regularizer=DenseKernelPenalty(LAM, SIGMA), name="dense"
    )(hidden)
    model = keras.Model(inputs, outputs)
    model.set_weights([rng.normal(size=weight.shape).astype("float32") for weight in model.get_weights()])
    return model


def _expected_losses(model, x, sigma):
    """NumPy value of the model's penalties: kernel terms once, activity terms / batch size."""
    batch = x.shape[0]
    conv_in = ops.convert_to_numpy(model.get_layer("conv_a")(x)).astype(float)
    flat = ops.convert_to_numpy(keras.Model(model.input, model.get_layer("drop_in").output)(x)).astype(float)
    kernel_b = ops.convert_to_numpy(model.get_layer("conv_b").kernel).astype(float)
    dense_kernel = ops.convert_to_numpy(model.get_layer("dense").kernel).astype(float)
    taps, inputs = _brute_force_counts((6, 6), (3, 3), (2, 2), (1, 1), "same")
    half = LAM * sigma**2 / 2
    return (
        half * 4 * np.sum(inputs[None, ..., None] * conv_in**2) / batch
        + half * np.sum(taps[..., None, None] * kernel_b**2)
        + 0.01 * np.sum(kernel_b**2)
        + LAM * (0.2 / 0.8) * np.sum(flat**2) / batch
        + half * 2 * np.sum(flat**2) / batch
        + half * np.sum(dense_kernel**2)
    )


def test_penalties_reach_model_losses(rng):
    model = _penalized_model(rng)
    x = rng.normal(size=(5, 6, 6, 2)).astype("float32")
    model(x)
    assert len(model.losses) == 5
    total = sum(float(ops.convert_to_numpy(loss)) for loss in model.losses)
    np.testing.assert_allclose(total, _expected_losses(model, x, SIGMA), rtol=1e-5)


def test_bound_sigma_is_read_at_call_time(rng):
    kernel = rng.normal(size=(3, 2)).astype("float32")
    penalty = DenseKernelPenalty(2.0, sigma=0.1)
    assert isinstance(penalty, SigmaConsumer)
    variable = keras.Variable(0.5, dtype="float32", trainable=False)
    penalty.bind_sigma(variable)
    squares = float(np.sum(kernel.astype(float) ** 2))
    np.testing.assert_allclose(ops.convert_to_numpy(penalty(kernel)), 2.0 * 0.25 / 2 * squares, rtol=1e-6)
    variable.assign(1.5)
    np.testing.assert_allclose(ops.convert_to_numpy(penalty(kernel)), 2.0 * 2.25 / 2 * squares, rtol=1e-6)
    config = penalty.get_config()
    assert config["sigma"] == 0.1
    json.dumps(config)  # plain values only, never the bound variable


def test_smoothed_model_binds_penalties_in_compiled_evaluate(rng):
    """Inside a SmoothedModel the penalties read the model's σ, in the compiled loss."""
    plain = _penalized_model(rng)
    model = keras_gsmooth.SmoothedModel(plain.inputs, plain.outputs, sigma=0.3)
    penalties = [
        penalty
        for layer in model.layers
        for penalty in (layer.activity_regularizer, getattr(layer, "kernel_regularizer", None))
        if penalty is not None
    ]
    consumers = [penalty for penalty in penalties if isinstance(penalty, SigmaConsumer)]
    assert (len(penalties), len(consumers)) == (5, 4)  # the Dropout penalty does not depend on σ
    assert all(consumer.is_sigma_bound for consumer in consumers)
    model.compile(optimizer="sgd", loss="mse")
    x = rng.normal(size=(4, 6, 6, 2)).astype("float32")
    y = rng.normal(size=(4, 2)).astype("float32")
    mse = np.mean((ops.convert_to_numpy(model(x)) - y) ** 2)
    for sigma in (0.3, 0.7):
        keras_gsmooth.set_sigma(model, sigma)
        loss = model.evaluate(x, y, batch_size=4, verbose=0)
        np.testing.assert_allclose(loss, mse + _expected_losses(model, x, sigma), rtol=1e-4)


ALL_PENALTIES = [
    DenseKernelPenalty(0.1, sigma=0.2),
    DenseInputPenalty(7, 0.1, sigma=0.2),
    ConvKernelPenalty((8, 9), (2, 1), "same", (1, 2), "channels_first", regularization=0.1, sigma=0.2),
    ConvInputPenalty(5, (3, 2), 1, "valid", (2, 1), regularization=0.1, sigma=0.2),
    ConvTransposeKernelPenalty((8, 9), 2, "same", 1, (1, 0), "channels_first", regularization=0.1, sigma=0.2),
    ConvTransposeInputPenalty(5, (3, 2), (2, 1), "valid", 1, (1, 0), regularization=0.1, sigma=0.2),
    DropoutInputPenalty(0.4, 0.1),
    RegularizerSum([keras.regularizers.L1(0.3), DenseKernelPenalty(0.1, sigma=0.2)]),
    TimeDistributedPenalty(ConvInputPenalty(5, 2, 1, "valid", 1, regularization=0.1, sigma=0.2)),
]


def test_config_round_trip():
    weight = np.linspace(-1.0, 1.0, 8 * 9 * 2 * 3, dtype="float32").reshape(8, 9, 2, 3)
    for penalty in ALL_PENALTIES:
        restored = keras.regularizers.deserialize(json.loads(json.dumps(keras.regularizers.serialize(penalty))))
        assert type(restored) is type(penalty)
        assert restored.get_config() == penalty.get_config()
        np.testing.assert_allclose(ops.convert_to_numpy(restored(weight)), ops.convert_to_numpy(penalty(weight)))


def test_keras_file_round_trip(rng, tmp_path):
    model = _penalized_model(rng)
    x = rng.normal(size=(3, 6, 6, 2)).astype("float32")
    model(x)
    path = tmp_path / "penalized.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    restored(x)
    np.testing.assert_allclose(ops.convert_to_numpy(restored(x)), ops.convert_to_numpy(model(x)), rtol=1e-6)
    np.testing.assert_allclose(
        [float(ops.convert_to_numpy(loss)) for loss in restored.losses],
        [float(ops.convert_to_numpy(loss)) for loss in model.losses],
        rtol=1e-6,
    )


# --------------------------------------------------------------------------
# Numerics and bad input.
# --------------------------------------------------------------------------


def test_sigma_zero_gives_zero_and_low_precision_does_not_overflow():
    x = np.full((2, 4, 4, 3), 300.0, "float16")
    assert float(ops.convert_to_numpy(ConvInputPenalty(2, 3, 1, "same", 1, regularization=1.0)(x))) == 0.0
    value = ops.convert_to_numpy(DenseInputPenalty(2, 1.0, sigma=1.0)(x))
    np.testing.assert_allclose(value, 96 * 300.0**2, rtol=1e-6)  # 8.6e6: past float16's range


BAD_ARGUMENTS = [
    (lambda: DenseKernelPenalty(-1.0), "regularization"),
    (lambda: DenseInputPenalty(3, 0.1, sigma=float("nan")), "sigma"),
    (lambda: DenseInputPenalty(0, 0.1), "units"),
    (lambda: RegularizerSum([]), "non-empty"),
    (lambda: TimeDistributedPenalty(None), "must be a regularizer"),
    (lambda: DropoutInputPenalty(1.0, 0.1), "rate"),
    (lambda: DropoutInputPenalty(-0.1, 0.1), "rate"),
    (lambda: ConvKernelPenalty((8, 8), 1, "full", 1, regularization=0.1), "padding"),
    (lambda: ConvKernelPenalty((8, 8), 1, "causal", 1, regularization=0.1), "causal"),
    (lambda: ConvKernelPenalty((8, 8), (1, 1, 1), "same", 1, regularization=0.1), "strides"),
    (lambda: ConvKernelPenalty(8, 1, "same", 1, regularization=0.1), "input_shape"),
    (lambda: ConvInputPenalty(4, (3, 3), (1, 1, 1), "same", 1, regularization=0.1), "strides"),
    (lambda: ConvInputPenalty(4, 3, 0, "same", 1, regularization=0.1), "strides"),
    (lambda: ConvInputPenalty(4, (3, 3), 1, "causal", 1, regularization=0.1), "causal"),
    (lambda: ConvInputPenalty(4, 3, 1, "same", 1, "NHWC", regularization=0.1), "data_format"),
    (lambda: ConvTransposeKernelPenalty((8,), 1, "causal", 1, regularization=0.1), "'valid' or 'same'"),
    (lambda: ConvTransposeKernelPenalty((8, 8), 2, "same", 1, (2, 1), regularization=0.1), "smaller than the stride"),
    (lambda: ConvTransposeInputPenalty(4, 3, 2, "same", 1, -1, regularization=0.1), "output_padding"),
    (lambda: ConvTransposeInputPenalty(4, (3, 3), 2, "same", 1, (1, 0, 0), regularization=0.1), "output_padding"),
]


def test_bad_arguments_raise_clear_errors():
    for make, message in BAD_ARGUMENTS:
        with pytest.raises(ValueError, match=message):
            make()


def test_time_distributed_penalty_is_the_sum_of_the_steps_penalties(rng):
    per_frame = ConvInputPenalty(3, 2, 1, "same", 1, regularization=0.4, sigma=0.5)
    clips = rng.normal(size=(2, 4, 5, 5, 3)).astype("float32")
    expected = sum(float(ops.convert_to_numpy(per_frame(clips[:, step]))) for step in range(4))
    assert float(ops.convert_to_numpy(TimeDistributedPenalty(per_frame)(clips))) == pytest.approx(expected, rel=1e-5)
    penalty = TimeDistributedPenalty(keras.regularizers.serialize(per_frame))  # from its config
    assert isinstance(penalty, SigmaConsumer) and not penalty.is_sigma_bound
    penalty.bind_sigma(keras.Variable(0.0))
    assert penalty.is_sigma_bound
    assert float(ops.convert_to_numpy(penalty(clips))) == 0.0


def test_bad_calls_raise_clear_errors():
    with pytest.raises(ValueError, match="a batch axis, a step axis"):
        TimeDistributedPenalty(DenseInputPenalty(3, 0.1, sigma=0.2))(np.ones((3, 2), "float32"))
    with pytest.raises(ValueError, match="rank 4"):
        ConvKernelPenalty((8, 8), 1, "same", 1, regularization=0.1)(np.ones((3, 2, 4), "float32"))
    with pytest.raises(ValueError, match="does not fit"):
        ConvInputPenalty(2, 5, 1, "valid", 2, regularization=0.1)(np.ones((1, 6, 6, 1), "float32"))
    with pytest.raises(ValueError, match="1 spatial dimension"):
        ConvInputPenalty(2, (3, 3), 1, "same", 1, regularization=0.1)(np.ones((1, 6, 1), "float32"))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sum_of_squares_and_its_gradient(dtype):
    # The penalties' one reduction; on PyTorch with a hand-written gradient.
    x = np.random.default_rng(7).normal(size=(6, 5, 3)).astype(dtype)
    tensor = ops.convert_to_tensor(x)  # float32 on JAX without x64
    total, (gradient,) = backend.value_and_grad(lambda v: backend.sum_of_squares(v[0]), [tensor])
    np.testing.assert_allclose(float(total), np.sum(x.astype("float64") ** 2), rtol=1e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(gradient), 2.0 * x, rtol=1e-6)
    assert gradient.dtype == tensor.dtype
