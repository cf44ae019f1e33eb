"""Penalty regularizers of the smoothed lifted objective (SPEC.md §3).

Smoothing a layer's term `λ·‖layer(x; θ) − y‖²` of the lifted objective over
θ, x and y (each perturbed by σ·u, u ~ N(0, I/2)) leaves the unsmoothed term
plus penalties; these regularizers add them to the loss:

| layer | regularizer | attached as | value |
|---|---|---|---|
| Dense, d₊ units | `DenseKernelPenalty` | the Dense `kernel_regularizer` | λ(σ²/2)‖θ‖² |
| | `DenseInputPenalty` | activity regularizer on the Dense input | λ(σ²d₊/2)‖x‖² |
| Conv, C_out filters | `ConvKernelPenalty` | the Conv `kernel_regularizer` | λ(σ²/2)Σ_i N_i‖θ_i‖² |
| | `ConvInputPenalty` | activity regularizer on the Conv input | λ(σ²C_out/2)Σ_q M_q‖x_q‖² |
| ConvTranspose, C_out filters | `ConvTransposeKernelPenalty` | its `kernel_regularizer` | λ(σ²/2)Σ_i N_i‖θ_i‖² |
| | `ConvTransposeInputPenalty` | activity regularizer on its input | λ(σ²C_out/2)Σ_p M_p‖x_p‖² |
| Dropout(p) | `DropoutInputPenalty` | activity regularizer on its input | λ(p/(1−p))‖x‖² |

Kernel penalties are per model; activity penalties return the sum over the
batch, which Keras (≥ 3.14) divides by the batch size, so every penalty is a
per-sample value. Attach an activity penalty to a `keras.layers.Identity` by
assignment (`carrier.activity_regularizer = penalty`), not through the
constructor: Identity has no `get_config` of its own, and Keras's automatic
config cannot save a regularizer object passed to `__init__`. The
σ-dependent penalties are `SigmaConsumer`s: a `SmoothedModel` binds them to
its shared σ variable, read at call time. `RegularizerSum` puts a penalty
next to a weight's existing regularizer, and `TimeDistributedPenalty`
applies a layer's input penalty to every step of a `TimeDistributed` input.
"""

import functools
from numbers import Integral
from numbers import Real

import keras
import numpy as np
from keras import ops

from keras_gsmooth import backend
from keras_gsmooth import eager_ops
from keras_gsmooth.sigma import SigmaConsumer
from keras_gsmooth.validation import check_regularization

_PADDINGS = ("valid", "same", "causal")
_DATA_FORMATS = ("channels_last", "channels_first")


def _sum_of_squares(x, axis=None):
    """Σ x² over `axis`; over every element, one reduction (`keras_gsmooth.backend.sum_of_squares`)."""
    if axis is None:
        return backend.sum_of_squares(x)
    return ops.sum(ops.square(x), axis=axis)


def _accumulation_dtype(x) -> str:
    # float16/bfloat16 sums of squares overflow or lose precision: add up in float32.
    dtype = keras.backend.standardize_dtype(x.dtype)
    return dtype if dtype in ("float32", "float64") else keras.backend.result_type(dtype, "float32")


class _Penalty(keras.regularizers.Regularizer):
    """λ · factor · (a weighted sum of squares of the tensor it is called on).

    Subclasses implement `_factor(dtype)` (a scalar tensor) and
    `_weighted_square_sum(x)`; this class validates λ and serializes it.
    """

    def __init__(self, regularization):
        self.regularization = check_regularization(
            regularization, argument="regularization", owner=self.__class__.__name__
        )

    def __call__(self, x):
        if isinstance(x, keras.Variable):  # a kernel regularizer is called on the weight itself
            x = x.value
        x = eager_ops.cast(x, _accumulation_dtype(x))
        return self._scaled(self._weighted_square_sum(x))

    def _scaled(self, total):
        """λ · factor · `total`, in `total`'s dtype.

        Products of tensors with Python floats: on eager PyTorch each
        `keras.ops` call on a Python scalar first converts it to a tensor,
        which costs more than the product of two scalars.
        """
        factor = self._factor(keras.backend.standardize_dtype(total.dtype))
        return (self.regularization * factor) * total

    def _factor(self, dtype):
        raise NotImplementedError

    def _weighted_square_sum(self, x):
        raise NotImplementedError

    def get_config(self) -> dict:
        return {"regularization": self.regularization}


class _SmoothingPenalty(_Penalty, SigmaConsumer):
    """A penalty whose factor is `multiplicity · σ²/2`, σ read at call time."""

    multiplicity = 1

    def __init__(self, regularization, sigma):
        super().__init__(regularization)
        self._init_sigma(sigma, owner=self.__class__.__name__)

    def _factor(self, dtype):
        sigma = self.current_sigma(dtype)
        return eager_ops.square(sigma) * (0.5 * self.multiplicity)

    def get_config(self) -> dict:
        return {**super().get_config(), "sigma": self._sigma_constant}


def _int_at_least(value, minimum: int, argument: str, owner: str) -> int:
    """`value` as an int, if it is an integer `>= minimum` (1 or 0)."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        kind = "a positive integer" if minimum == 1 else "a non-negative integer"
        raise ValueError(f"{owner}: `{argument}` must be {kind}. Received: {argument}={value!r}")
    return int(value)


def _positive_int(value, argument: str, owner: str) -> int:
    return _int_at_least(value, 1, argument, owner)


def _conv_ints(value, argument: str, owner: str, minimum: int = 1):
    """A conv argument: an int, or a tuple of 1 to 3 ints, each `>= minimum` (a list, as from a config, is accepted)."""
    if isinstance(value, (tuple, list)):
        if not 1 <= len(value) <= 3:
            raise ValueError(
                f"{owner}: `{argument}` must be an int or a tuple of 1 to 3 ints "
                f"(Conv1D/2D/3D). Received: {argument}={value!r}"
            )
        return tuple(_int_at_least(item, minimum, argument, owner) for item in value)
    return _int_at_least(value, minimum, argument, owner)


def _per_axis(value, rank: int, argument: str, owner: str) -> tuple:
    if isinstance(value, int):
        return (value,) * rank
    if len(value) != rank:
        raise ValueError(
            f"{owner}: `{argument}`={value!r} has {len(value)} entries, but the "
            f"convolution has {rank} spatial dimension(s). Give one int, or one per dimension."
        )
    return value


def _axis_hits(length: int, kernel: int, stride: int, dilation: int, padding: str) -> np.ndarray:
    """hits[i, q]: how many output positions put kernel tap i on input position q (one axis).

    Keras's convention: 'same' gives ceil(length/stride) outputs and puts the
    odd pad at the end; 'causal' pads only at the start.
    """
    span = (kernel - 1) * dilation + 1
    if padding == "valid":
        outputs, before = (length - span) // stride + 1, 0
    elif padding == "same":
        outputs = -(-length // stride)
        before = max((outputs - 1) * stride + span - length, 0) // 2
    else:
        outputs, before = -(-length // stride), span - 1
    taps = np.arange(kernel)
    positions = np.arange(max(outputs, 0))[:, None] * stride - before + taps[None, :] * dilation
    inside = (positions >= 0) & (positions < length)
    hits = np.zeros((kernel, length), dtype=np.int64)
    np.add.at(hits, (np.broadcast_to(taps, positions.shape)[inside], positions[inside]), 1)
    return hits


def _axis_hits_transposed(
    length: int, kernel: int, stride: int, dilation: int, output_padding, padding: str
) -> np.ndarray:
    """hits[i, p]: whether tap i of input position p lands inside a transposed convolution's output (one axis).

    Input position p spreads over the output positions
    `p·stride + i·dilation − before`. Keras's convention
    (`keras.ops.conv_transpose`): 'valid' crops nothing and gives
    `(length − 1)·stride + max(span, stride)` outputs, or
    `(length − 1)·stride + span + output_padding`; 'same' gives
    `length·stride` outputs, or `(length − 1)·stride + span % 2 +
    output_padding`, cropping the larger half of the excess at the start.
    """
    span = (kernel - 1) * dilation + 1
    if padding == "valid":
        extra = max(stride - span, 0) if output_padding is None else output_padding
        outputs, before = (length - 1) * stride + span + extra, 0
    else:
        cropped = stride + span - 2 if output_padding is None else span + span % 2 - 2 + output_padding
        outputs = (length - 1) * stride + 2 + cropped - span
        before = span - 1 - min((cropped + 1) // 2, span - 1)
    positions = np.arange(length)[None, :] * stride + np.arange(kernel)[:, None] * dilation - before
    return ((positions >= 0) & (positions < outputs)).astype(np.int64)


@functools.lru_cache(maxsize=64)
def _coverage(
    spatial_shape: tuple,
    kernel_size: tuple,
    strides: tuple,
    dilation_rate: tuple,
    padding: str,
    per: str,
    output_padding: tuple = None,
) -> np.ndarray:
    """Counts of (output position, tap) pairs, as a float32 array.

    `per="tap"`: N_i, how many output positions put tap i inside the input
    (kernel-spatial shape). `per="input"`: M_q, how many (output position,
    tap) pairs land on input position q (input-spatial shape). Both factor
    over the spatial axes, so they are outer products of per-axis counts.

    For a transposed convolution pass its `output_padding`, one entry (an
    int or None) per axis: N_i then counts the input positions whose tap i
    lands inside the output, and M_p the taps of input position p that do.
    """
    axis = 1 if per == "tap" else 0
    if output_padding is None:
        hits = [_axis_hits(*geometry, padding) for geometry in zip(spatial_shape, kernel_size, strides, dilation_rate)]
    else:
        geometries = zip(spatial_shape, kernel_size, strides, dilation_rate, output_padding)
        hits = [_axis_hits_transposed(*geometry, padding) for geometry in geometries]
    factors = [axis_hits.sum(axis=axis) for axis_hits in hits]
    counts = functools.reduce(np.multiply.outer, factors).astype("float32")
    counts.setflags(write=False)
    return counts


class _ConvPenalty(_SmoothingPenalty):
    """Validates and serializes the geometry shared by the two conv penalties."""

    def __init__(self, strides, padding, dilation_rate, data_format, regularization, sigma):
        super().__init__(regularization, sigma)
        owner = self.__class__.__name__
        self.strides = _conv_ints(strides, "strides", owner)
        self.dilation_rate = _conv_ints(dilation_rate, "dilation_rate", owner)
        if not isinstance(padding, str) or padding.lower() not in _PADDINGS:
            raise ValueError(
                f"{owner}: `padding` must be one of {_PADDINGS} (the conv layer's "
                f"padding). Received: padding={padding!r}"
            )
        self.padding = padding.lower()
        data_format = keras.config.image_data_format() if data_format is None else data_format
        if data_format not in _DATA_FORMATS:
            raise ValueError(
                f"{owner}: `data_format` must be one of {_DATA_FORMATS}. Received: data_format={data_format!r}"
            )
        self.data_format = data_format

    def _check_rank(self, rank: int) -> None:
        if self.padding == "causal" and rank != 1:
            raise ValueError(
                f"{self.__class__.__name__}: padding='causal' exists only for Conv1D; "
                f"this convolution has {rank} spatial dimensions."
            )

    def _output_padding(self, rank: int):
        """The per-axis output padding of a transposed convolution; None for a convolution."""
        return None

    def _geometry(self, rank: int, kernel_size) -> tuple:
        """(kernel_size, strides, dilation_rate), one entry per spatial axis, checked against `rank`."""
        owner = self.__class__.__name__
        self._check_rank(rank)
        return (
            _per_axis(kernel_size, rank, "kernel_size", owner),
            _per_axis(self.strides, rank, "strides", owner),
            _per_axis(self.dilation_rate, rank, "dilation_rate", owner),
        )

    def _counts(self, spatial_shape: tuple, kernel_size, per: str, dtype):
        """N (`per="tap"`) or M (`per="input"`) for this geometry, as a constant of `dtype`."""
        owner = self.__class__.__name__
        geometry = self._geometry(len(spatial_shape), kernel_size)
        kernel, _, dilation = geometry
        output_padding = self._output_padding(len(spatial_shape))
        spans = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
        if output_padding is None and self.padding == "valid" and any(span > n for span, n in zip(spans, spatial_shape)):
            raise ValueError(
                f"{owner}: with padding='valid' the dilated kernel {kernel} (dilation "
                f"{dilation}) does not fit in the input of spatial shape {spatial_shape}: "
                "the convolution has no output."
            )
        counts = _coverage(tuple(spatial_shape), *geometry, self.padding, per, output_padding)
        return ops.convert_to_tensor(counts, dtype=dtype)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "strides": self.strides,
            "padding": self.padding,
            "dilation_rate": self.dilation_rate,
            "data_format": self.data_format,
        }


class _SumOfSquaresPenalty(_SmoothingPenalty):
    """A smoothing penalty of the plain sum of squares of its tensor, which a layer may also sum itself."""

    def _weighted_square_sum(self, x):
        return _sum_of_squares(x)

    def of_sum_of_squares(self, total):
        """The penalty of a tensor whose `Σ x²` is `total`, a scalar tensor summed already.

        `SmoothDense` sums its kernel's squares as it applies the kernel, and
        `SmoothActivation`'s fused kernel its output's as it pools.
        """
        return self._scaled(eager_ops.cast(total, _accumulation_dtype(total)))


@keras.saving.register_keras_serializable(package="keras_gsmooth")
class DenseKernelPenalty(_SumOfSquaresPenalty):
    """λ·(σ²/2)·‖θ‖²_F: the kernel penalty of a smoothed Dense layer.

    Smoothing the Dense term ‖xθ + b − y‖² of the lifted objective over the
    layer's input x adds (σ²/2)‖θ‖²_F per sample (SPEC.md §3). Use it as the
    Dense layer's `kernel_regularizer`, or as the `kernel_penalty` of a
    `keras_gsmooth.layers.SmoothDense`, which adds it as it applies the
    kernel; its λ is the layer's λ_l, shared with the `DenseInputPenalty` on
    the layer's input. A Dense layer on inputs of
    shape `(batch, ..., features)` applies its kernel at every position of
    the middle axes and pays the penalty at each: `smooth_model` passes λ_l
    times their number.

    Args:
        regularization: λ, a float `>= 0`.
        sigma: The constant σ used until a `SmoothedModel` binds the
            penalty to its σ variable.

    Example:

    ```python
    dense = keras.layers.Dense(
        128, kernel_regularizer=keras_gsmooth.regularizers.DenseKernelPenalty(1e-5, sigma=0.1)
    )
    ```
    """

    def __init__(self, regularization, sigma=0.0):
        super().__init__(regularization, sigma)


@keras.saving.register_keras_serializable(package="keras_gsmooth")
class DenseInputPenalty(_SumOfSquaresPenalty):
    """λ·(σ²·units/2)·‖x‖²: the input penalty of a smoothed Dense layer.

    Smoothing the Dense term ‖xθ + b − y‖² over the kernel θ adds
    (σ²·d₊/2)‖x‖² per sample, d₊ the layer's number of units (SPEC.md §3).
    Use it as the `activity_regularizer` of an identity layer placed on the
    Dense layer's input: it returns the sum over the whole batch tensor, and
    Keras divides activity regularizers by the batch size. Its λ is the Dense
    layer's λ_l, shared with `DenseKernelPenalty`. The first layer of a model
    (whose input is the raw data) gets no input penalty.

    Args:
        units: d₊, the Dense layer's number of units.
        regularization: λ, a float `>= 0`.
        sigma: The constant σ used until a `SmoothedModel` binds the
            penalty to its σ variable.

    Example:

    ```python
    carrier = keras.layers.Identity()
    carrier.activity_regularizer = keras_gsmooth.regularizers.DenseInputPenalty(10, 1e-5, sigma=0.1)
    outputs = keras.layers.Dense(10)(carrier(hidden))
    ```
    """

    def __init__(self, units, regularization, sigma=0.0):
        super().__init__(regularization, sigma)
        self.units = _positive_int(units, "units", self.__class__.__name__)

    @property
    def multiplicity(self) -> int:
        return self.units

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="keras_gsmooth")
class ConvKernelPenalty(_ConvPenalty):
    """λ·(σ²/2)·Σ_{tap i, c_in, c_out} N_i·θ²: the kernel penalty of a smoothed Conv.

    Smoothing a convolution's term ‖conv(x; θ) + b − y‖² over its input x
    adds (σ²/2)·Σ θ²_{i,c_in,c_out}·N_i per sample, where N_i is the number
    of output positions whose kernel tap i lands inside the input (SPEC.md
    §3): every output position for 'valid' padding, fewer near the border
    for 'same' and 'causal'. The counts depend only on the geometry and are
    computed once; the kernel size is read from the weight. Use it as the
    Conv1D/2D/3D layer's `kernel_regularizer`; its λ is the layer's λ_l,
    shared with the `ConvInputPenalty` on the layer's input.

    Args:
        input_shape: The spatial shape of the layer's input (one int per
            spatial dimension, without batch and channels).
        strides: The layer's strides (an int or one per dimension).
        padding: The layer's padding: `"valid"`, `"same"` or (Conv1D)
            `"causal"`.
        dilation_rate: The layer's dilation rate (an int or one per dimension).
        data_format: The layer's data format. Keras stores conv kernels as
            `(*kernel_size, channels_in, filters)` in both formats, so it
            does not change the value; it is validated and kept so both conv
            penalties take a layer's geometry alike.
        regularization: λ, a float `>= 0`.
        sigma: The constant σ used until a `SmoothedModel` binds the
            penalty to its σ variable.

    Example:

    ```python
    conv = keras.layers.Conv2D(
        32, 3, strides=2, padding="same",
        kernel_regularizer=keras_gsmooth.regularizers.ConvKernelPenalty(
            (28, 28), strides=2, padding="same", dilation_rate=1,
            regularization=1e-5, sigma=0.1,
        ),
    )
    ```
    """

    def __init__(
        self,
        input_shape,
        strides,
        padding,
        dilation_rate,
        data_format="channels_last",
        regularization=0.0,
        sigma=0.0,
    ):
        super().__init__(strides, padding, dilation_rate, data_format, regularization, sigma)
        owner = self.__class__.__name__
        if not isinstance(input_shape, (tuple, list)):
            raise ValueError(
                f"{owner}: `input_shape` must be the spatial shape of the conv "
                f"input, a tuple of 1 to 3 ints. Received: input_shape={input_shape!r}"
            )
        self.input_shape = _conv_ints(input_shape, "input_shape", owner)
        self._geometry(len(self.input_shape), 1)  # validates strides, dilation and padding now

    def _weighted_square_sum(self, kernel):
        rank = len(self.input_shape)
        if len(kernel.shape) != rank + 2:
            raise ValueError(
                f"{self.__class__.__name__}: built for a {rank}-D convolution "
                f"(input_shape={self.input_shape}), so it expects a kernel of rank "
                f"{rank + 2} (*kernel_size, channels_in, filters). Received a weight "
                f"of shape {tuple(kernel.shape)}."
            )
        counts = self._counts(self.input_shape, tuple(kernel.shape[:rank]), "tap", kernel.dtype)
        return ops.sum(counts * _sum_of_squares(kernel, axis=(-2, -1)))

    def get_config(self) -> dict:
        return {**super().get_config(), "input_shape": self.input_shape}


@keras.saving.register_keras_serializable(package="keras_gsmooth")
class ConvInputPenalty(_ConvPenalty):
    """λ·(σ²·filters/2)·Σ_q M_q·Σ_c x²_{q,c}: the input penalty of a smoothed Conv.

    Smoothing a convolution's term ‖conv(x; θ) + b − y‖² over its kernel
    adds, per sample, (σ²·C_out/2)·Σ_p Σ_{taps i in bounds} Σ_c x²_{p+i,c}
    (SPEC.md §3), that is (σ²·C_out/2)·sum(conv(x², ones kernel)). Written as
    Σ_q M_q·Σ_c x²_q, where M_q counts the (output position, tap) pairs that
    land on input position q, it costs one weighted sum instead of a
    convolution; M is computed from the static spatial shape of x (once per
    shape). Use it as the `activity_regularizer` of an identity layer placed
    on the Conv layer's input: it returns the sum over the batch, which Keras
    divides by the batch size. Its λ is the conv layer's λ_l, shared with
    `ConvKernelPenalty`.

    Args:
        filters: C_out, the layer's number of filters. For a grouped
            convolution each output sees only its group's channels: pass
            `filters // groups`.
        kernel_size: The layer's kernel size (an int or one per dimension).
        strides: The layer's strides (an int or one per dimension).
        padding: The layer's padding: `"valid"`, `"same"` or (Conv1D)
            `"causal"`.
        dilation_rate: The layer's dilation rate (an int or one per dimension).
        data_format: `"channels_last"` or `"channels_first"`, as the layer.
        regularization: λ, a float `>= 0`.
        sigma: The constant σ used until a `SmoothedModel` binds the
            penalty to its σ variable.

    Example:

    ```python
    penalty = keras_gsmooth.regularizers.ConvInputPenalty(
        64, 3, strides=1, padding="same", dilation_rate=1, regularization=1e-5, sigma=0.1
    )
    carrier = keras.layers.Identity()
    carrier.activity_regularizer = penalty
    hidden = keras.layers.Conv2D(64, 3, padding="same")(carrier(hidden))
    ```
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides,
        padding,
        dilation_rate,
        data_format="channels_last",
        regularization=0.0,
        sigma=0.0,
    ):
        super().__init__(strides, padding, dilation_rate, data_format, regularization, sigma)
        owner = self.__class__.__name__
        self.filters = _positive_int(filters, "filters", owner)
        self.kernel_size = _conv_ints(kernel_size, "kernel_size", owner)
        per_axis = (self.kernel_size, self.strides, self.dilation_rate)
        ranks = [len(value) for value in per_axis if isinstance(value, tuple)]
        if ranks:  # the rank is known: validate the geometry now, not at the first call
            self._geometry(ranks[0], self.kernel_size)

    @property
    def multiplicity(self) -> int:
        return self.filters

    def _weighted_square_sum(self, x):
        owner = self.__class__.__name__
        if len(x.shape) < 3:
            raise ValueError(
                f"{owner}: expects a conv input (batch, *spatial, channels) or "
                f"(batch, channels, *spatial). Received shape {tuple(x.shape)}."
            )
        channel_axis = len(x.shape) - 1 if self.data_format == "channels_last" else 1
        spatial_shape = tuple(dim for axis, dim in enumerate(x.shape[1:], 1) if axis != channel_axis)
        if any(dim is None for dim in spatial_shape):
            raise ValueError(
                f"{owner}: needs the static spatial shape of its input; received "
                f"shape {tuple(x.shape)}. Give the model's Input a fixed spatial shape."
            )
        counts = self._counts(spatial_shape, self.kernel_size, "input", x.dtype)
        return ops.sum(counts * _sum_of_squares(x, axis=(0, channel_axis)))

    def get_config(self) -> dict:
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size}


class _TransposedConvolution:
    """Mixin for the penalties of a transposed convolution: its output padding, validated and serialized."""

    def _init_output_padding(self, output_padding) -> None:
        if output_padding is not None:
            output_padding = _conv_ints(output_padding, "output_padding", self.__class__.__name__, minimum=0)
        self.output_padding = output_padding

    def _check_rank(self, rank: int) -> None:
        owner = self.__class__.__name__
        if self.padding == "causal":
            raise ValueError(f"{owner}: a transposed convolution's `padding` is 'valid' or 'same'. Received: padding='causal'")
        if self.output_padding is None:
            return
        output_padding = _per_axis(self.output_padding, rank, "output_padding", owner)
        strides = _per_axis(self.strides, rank, "strides", owner)
        if any(extra >= stride for extra, stride in zip(output_padding, strides)):
            raise ValueError(
                f"{owner}: each `output_padding` must be smaller than the stride along its axis, "
                f"as Keras requires. Received: output_padding={self.output_padding}, strides={self.strides}"
            )

    def _output_padding(self, rank: int) -> tuple:
        if self.output_padding is None:
            return (None,) * rank
        return _per_axis(self.output_padding, rank, "output_padding", self.__class__.__name__)

    def get_config(self) -> dict:
        return {**super().get_config(), "output_padding": self.output_padding}


@keras.saving.register_keras_serializable(package="keras_gsmooth")
class ConvTransposeKernelPenalty(_TransposedConvolution, ConvKernelPenalty):
    """λ·(σ²/2)·Σ_{tap i, c_in, c_out} N_i·θ²: the kernel penalty of a smoothed transposed convolution.

    A transposed convolution spreads each input position p over the output
    positions its kernel taps reach; tap i of position p carries
    θ_i·x_p. Smoothing its term ‖conv_transpose(x; θ) + b − y‖² over x adds
    (σ²/2)·Σ θ²_{i,c_out,c_in}·N_i per sample, where N_i is the number of
    input positions whose tap i lands inside the output (all of them for
    'valid' padding; 'same' crops the output, so fewer near the border).
    Use it as the Conv1DTranspose/2D/3D layer's `kernel_regularizer`; its
    λ is the layer's, shared with the `ConvTransposeInputPenalty` on the
    layer's input.

    Args:
        input_shape: The spatial shape of the layer's input (one int per
            spatial dimension, without batch and channels).
        strides: The layer's strides (an int or one per dimension).
        padding: The layer's padding, `"valid"` or `"same"`.
        dilation_rate: The layer's dilation rate (an int or one per dimension).
        output_padding: The layer's output padding: None, or an int or one
            per dimension, each smaller than its stride.
        data_format: The layer's data format (the kernel layout does not
            depend on it).
        regularization: λ, a float `>= 0`.
        sigma: The constant σ used until a `SmoothedModel` binds the
            penalty to its σ variable.

    Example:

    ```python
    upsample = keras.layers.Conv2DTranspose(
        16, 3, strides=2, padding="same",
        kernel_regularizer=keras_gsmooth.regularizers.ConvTransposeKernelPenalty(
            (7, 7), strides=2, padding="same", dilation_rate=1, regularization=1e-5, sigma=0.1
        ),
    )
    ```
    """

    def __init__(
        self,
        input_shape,
        strides,
        padding,
        dilation_rate,
        output_padding=None,
        data_format="channels_last",
        regularization=0.0,
        sigma=0.0,
    ):
        self._init_output_padding(output_padding)
        super().__init__(input_shape, strides, padding, dilation_rate, data_format, regularization, sigma)


@keras.saving.register_keras_serializable(package="keras_gsmooth")
class ConvTransposeInputPenalty(_TransposedConvolution, ConvInputPenalty):
    """λ·(σ²·filters/2)·Σ_p M_p·Σ_c x²_{p,c}: the input penalty of a smoothed transposed convolution.

    Smoothing a transposed convolution's term over its kernel adds, per
    sample, (σ²·C_out/2)·Σ_p M_p·‖x_p‖², where M_p is the number of kernel
    taps of input position p that land inside the output (the kernel size
    for 'valid' padding, fewer near the border for 'same'). Use it as the
    `activity_regularizer` of an identity layer on the layer's input, as
    `ConvInputPenalty`.

    Args:
        filters: C_out, the layer's number of filters.
        kernel_size: The layer's kernel size (an int or one per dimension).
        strides: The layer's strides (an int or one per dimension).
        padding: The layer's padding, `"valid"` or `"same"`.
        dilation_rate: The layer's dilation rate (an int or one per dimension).
        output_padding: The layer's output padding: None, or an int or one
            per dimension, each smaller than its stride.
        data_format: `"channels_last"` or `"channels_first"`, as the layer.
        regularization: λ, a float `>= 0`.
        sigma: The constant σ used until a `SmoothedModel` binds the
            penalty to its σ variable.

    Example:

    ```python
    penalty = keras_gsmooth.regularizers.ConvTransposeInputPenalty(
        16, 3, strides=2, padding="same", dilation_rate=1, regularization=1e-5, sigma=0.1
    )
    ```
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides,
        padding,
        dilation_rate,
        output_padding=None,
        data_format="channels_last",
        regularization=0.0,
        sigma=0.0,
    ):
        self._init_output_padding(output_padding)
        super().__init__(filters, kernel_size, strides, padding, dilation_rate, data_format, regularization, sigma)


def _check_rate(rate, owner: str) -> float:
    if isinstance(rate, bool) or not isinstance(rate, Real) or not 0.0 <= float(rate) < 1.0:
        raise ValueError(
            f"{owner}: `rate` (the Dropout layer's drop probability) must be a "
            f"float with 0 <= rate < 1. Received: rate={rate!r}"
        )
    return float(rate)


@keras.saving.register_keras_serializable(package="keras_gsmooth")
class DropoutInputPenalty(_Penalty):
    """λ·(rate/(1−rate))·‖x‖²: the penalty replacing a Dropout layer.

    A smoothed model replaces Dropout(rate) by the identity plus this
    penalty on its input. It is the expectation over the dropout mask of
    ‖dropout(x) − x‖² for Keras's *inverted* dropout (kept units scaled by
    1/(1−rate)); the paper's rate·‖x‖² is for dropout without that scaling
    (SPEC.md §3). Use it as the `activity_regularizer` of the identity layer
    that replaces the Dropout: it returns the sum over the batch, which Keras
    divides by the batch size. Its λ is the Dropout layer's λ_l.

    It does not depend on σ (smoothing x and the next layer's auxiliary
    variable only adds constants to this term), so it is not a
    `SigmaConsumer`, and it stays on at σ = 0.

    Args:
        rate: The Dropout layer's rate, `0 <= rate < 1`.
        regularization: λ, a float `>= 0`.

    Example:

    ```python
    carrier = keras.layers.Identity()  # replaces keras.layers.Dropout(0.5)
    carrier.activity_regularizer = keras_gsmooth.regularizers.DropoutInputPenalty(0.5, 1e-5)
    hidden = carrier(hidden)
    ```
    """

    def __init__(self, rate, regularization):
        super().__init__(regularization)
        self.rate = _check_rate(rate, self.__class__.__name__)

    def _factor(self, dtype):
        return ops.convert_to_tensor(self.rate / (1.0 - self.rate), dtype=dtype)

    def _weighted_square_sum(self, x):
        return _sum_of_squares(x)

    def get_config(self) -> dict:
        return {**super().get_config(), "rate": self.rate}


class _CompositeRegularizer(keras.regularizers.Regularizer, SigmaConsumer):
    """A regularizer built from other regularizers, which hands σ's binding on to them.

    Subclasses list their parts in `_parts()`; `bind_sigma` binds every
    σ-dependent part, so a `SmoothedModel` finds the penalties inside.
    """

    def _parts(self) -> list:
        raise NotImplementedError(f"{self.__class__.__name__} must implement `_parts()`.")

    def bind_sigma(self, variable) -> None:
        for part in self._sigma_parts:
            part.bind_sigma(variable)

    @property
    def is_sigma_bound(self) -> bool:
        return all(part.is_sigma_bound for part in self._sigma_parts)

    @property
    def _sigma_parts(self) -> list:
        return [part for part in self._parts() if isinstance(part, SigmaConsumer)]

    def current_sigma(self, dtype="float32"):
        raise TypeError(f"{self.__class__.__name__} holds no σ of its own; read it from one of its parts.")


@keras.saving.register_keras_serializable(package="keras_gsmooth")
class RegularizerSum(_CompositeRegularizer):
    """The sum of several regularizers on one weight.

    A Keras weight takes one regularizer; when a layer already has one (a
    user's `L2`, say) and smoothing adds a penalty, the converter puts both
    in a `RegularizerSum`. It is a `SigmaConsumer` that hands the binding on:
    `bind_sigma` binds every σ-dependent part, so a `SmoothedModel` finds
    the penalties inside it.

    Args:
        regularizers: A list of regularizers (objects, identifiers or
            configs, as `keras.regularizers.get` accepts), at least one.

    Example:

    ```python
    dense = keras.layers.Dense(
        64,
        kernel_regularizer=keras_gsmooth.regularizers.RegularizerSum(
            [keras.regularizers.L2(1e-4), keras_gsmooth.regularizers.DenseKernelPenalty(1e-5, sigma=0.1)]
        ),
    )
    ```
    """

    def __init__(self, regularizers):
        if not isinstance(regularizers, (list, tuple)) or not regularizers:
            raise ValueError(
                "RegularizerSum: `regularizers` must be a non-empty list of "
                f"regularizers. Received: regularizers={regularizers!r}"
            )
        parts = [keras.regularizers.get(regularizer) for regularizer in regularizers]
        if any(part is None for part in parts):
            raise ValueError(
                f"RegularizerSum: `regularizers` contains None. Received: regularizers={regularizers!r}"
            )
        self.regularizers = parts

    def _parts(self) -> list:
        return self.regularizers

    def __call__(self, x):
        return functools.reduce(ops.add, [part(x) for part in self.regularizers])

    def get_config(self) -> dict:
        return {"regularizers": [keras.regularizers.serialize(part) for part in self.regularizers]}


@keras.saving.register_keras_serializable(package="keras_gsmooth")
class TimeDistributedPenalty(_CompositeRegularizer):
    """A layer's input penalty, applied to every time step of a `(batch, steps, ...)` input.

    `keras.layers.TimeDistributed` applies its layer to each step of its
    input; this applies that layer's input penalty the same way, by merging
    the batch and step axes before calling it, so that a convolution's
    input penalty (`ConvInputPenalty`) sees the rank it expects. The result
    is the sum over the steps; as an activity regularizer Keras divides it
    by the batch size.

    Args:
        penalty: The input penalty of the wrapped layer (an object, or a
            config as `keras.regularizers.get` accepts).

    Example:

    ```python
    per_frame = keras_gsmooth.regularizers.ConvInputPenalty(
        8, 3, strides=1, padding="valid", dilation_rate=1, regularization=1e-5, sigma=0.1
    )
    penalty = keras_gsmooth.regularizers.TimeDistributedPenalty(per_frame)
    penalty(keras.ops.ones((2, 4, 6, 6, 3)))  # 2 clips of 4 frames
    ```
    """

    def __init__(self, penalty):
        penalty = keras.regularizers.get(penalty)
        if penalty is None:
            raise ValueError("TimeDistributedPenalty: `penalty` must be a regularizer. Received: penalty=None")
        self.penalty = penalty

    def _parts(self) -> list:
        return [self.penalty]

    def __call__(self, x):
        if len(x.shape) < 3:
            raise ValueError(
                "TimeDistributedPenalty: the input must have a batch axis, a step axis and "
                f"the wrapped layer's axes. Received: shape={tuple(x.shape)}"
            )
        return self.penalty(ops.reshape(x, (-1, *x.shape[2:])))

    def get_config(self) -> dict:
        return {"penalty": keras.regularizers.serialize(self.penalty)}
