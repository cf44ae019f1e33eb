"""The converter's table: which smoothed layer replaces which Keras layer.

A *rule* is a function `rule(layer, context) -> Replacement`. It receives
the original layer (never to be modified) and a `RuleContext`, and returns
the new layer to call in its place plus the penalties that come with it
(SPEC §3). `smooth_model` looks rules up by the layer's exact class, so a
subclass of `Dense` with its own `call` is not silently treated as a
`Dense`: register a rule for it with `register_rule`.
"""

import collections
import dataclasses
import functools
import math
from typing import Callable
from typing import Optional

import keras

from keras_gsmooth import activations
from keras_gsmooth import layers
from keras_gsmooth import regularizers
from keras_gsmooth.activations import quadrature
from keras_gsmooth.activations.base import keras_activation_name
from keras_gsmooth.layers import InputPenalty
from keras_gsmooth.layers import SmoothActivation


@dataclasses.dataclass(frozen=True)
class RuleContext:
    """What a rule knows about the layer it rewrites.

    Attributes:
        regularization: The penalty weight λ of this layer (0 when the layer
            only ever sees raw data, whose smoothing adds constants only).
        input_shapes: The shape of the layer's first input (batch axis
            included) in each call, as the functional graph knows it.
        penalized_input_shapes: The same for the calls on inputs that are
            not raw data. A shared layer's kernel penalty counts once per
            such call, with that call's shape.
        is_output: Whether every call of the layer gives an output of the
            whole model (not only of a nested model).
        replace_max_pooling: Whether the user opted in to replacing
            MaxPooling by AveragePooling.
        inputs_raw: One bool per input of the layer: whether that input is
            raw data in every call; None when the calls disagree.
        repeated_input: Whether a call passes the same tensor as two of the
            layer's inputs (as in `Multiply()([x, x])`).
    """

    regularization: float
    input_shapes: tuple
    penalized_input_shapes: tuple
    is_output: bool
    replace_max_pooling: bool = False
    inputs_raw: Optional[tuple] = None
    repeated_input: bool = False

    @property
    def input_shape(self) -> tuple:
        """The shape of the layer's first input in its first call."""
        return self.input_shapes[0]

    @property
    def calls(self) -> int:
        """How many times the layer is called, on raw data or not."""
        return len(self.input_shapes)

    @property
    def penalized_calls(self) -> int:
        """How many times the layer is called on inputs that are not raw data."""
        return len(self.penalized_input_shapes)

    @property
    def penalized(self) -> bool:
        """Whether the layer's penalties are switched on."""
        return self.regularization > 0 and self.penalized_calls > 0


@dataclasses.dataclass(frozen=True)
class Replacement:
    """What a rule returns: the new layer and the penalties it carries.

    Attributes:
        layer: The new layer, called with the original call arguments. It
            must be a new object (the original model is never changed);
            `smooth_model` copies the original weights into it after it is
            built, so its weights must have the original's shapes.
        input_penalty: A regularizer of the layer's input (e.g.
            `DenseInputPenalty`), applied through an identity layer placed
            before every call on non-raw data, or `None`.
        activation: A `SmoothActivation` applied to the layer's output (a
            fused activation split off the layer), or `None`.
    """

    layer: keras.layers.Layer
    input_penalty: Optional[keras.regularizers.Regularizer] = None
    activation: Optional[SmoothActivation] = None


Rule = Callable[[keras.layers.Layer, RuleContext], Replacement]


class UnsupportedLayer(Exception):
    """Raised by a rule that cannot smooth the layer it was given.

    `smooth_model` collects these for every layer of the model and raises
    one `ValueError` listing them all.
    """


def clone_layer(layer: keras.layers.Layer, **config_overrides) -> keras.layers.Layer:
    """A new, unbuilt layer of the same class and configuration, with overrides.

    A `Lambda` layer is cloned with its Python function: the configuration
    comes from the live layer in this process, not from a file, so Keras's
    safe mode (which refuses to load Python code from saved models) does not
    apply. For the same reason a layer's activation function is passed on
    as the function itself, so a user function that is not registered for
    serialization (or a lambda) is kept.
    """
    config = _live_config(layer, **config_overrides)
    if isinstance(layer, keras.layers.Lambda):
        return layer.__class__.from_config(config, safe_mode=False)
    return layer.__class__.from_config(config)


def _live_config(layer: keras.layers.Layer, **config_overrides) -> dict:
    """The layer's configuration with its live activation function, and overrides."""
    config = layer.get_config()
    if "activation" in config and callable(getattr(layer, "activation", None)):
        config["activation"] = layer.activation
    config.update(config_overrides)
    return config


def _is_linear(activation) -> bool:
    return activation is None or activation is keras.activations.linear


def _keras_name(activation):
    """Keras's name for an activation (a name, a Keras function or a partial of one), else None."""
    if isinstance(activation, str):
        return activation
    function = activation.func if isinstance(activation, functools.partial) else activation
    return keras_activation_name(function)


def is_elementwise_activation(activation) -> bool:
    """Whether an activation (a Keras name or function, or any callable) acts element by element.

    Keras's activations are known by name; any other callable is probed
    (`activations.quadrature.is_elementwise`).
    """
    name = _keras_name(activation)
    if name is None:
        try:
            return quadrature.is_elementwise(activation)
        except ValueError as error:
            raise UnsupportedLayer(str(error)) from None
    return name not in activations.NON_ELEMENTWISE


def activation_of_layer(layer: keras.layers.Layer):
    """The activation function an activation layer applies, with its options."""
    if isinstance(layer, keras.layers.Activation):
        return layer.activation
    if isinstance(layer, keras.layers.ReLU):
        options = {"negative_slope": float(layer.negative_slope), "threshold": float(layer.threshold)}
        if layer.max_value is not None:
            options["max_value"] = float(layer.max_value)
        options = {key: value for key, value in options.items() if value != 0.0}
        return functools.partial(keras.activations.relu, **options) if options else keras.activations.relu
    if isinstance(layer, keras.layers.LeakyReLU):
        return functools.partial(keras.activations.leaky_relu, negative_slope=float(layer.negative_slope))
    if isinstance(layer, keras.layers.ELU):
        return functools.partial(keras.activations.elu, alpha=float(layer.alpha))
    if isinstance(layer, keras.layers.Softmax):
        return keras.activations.softmax
    raise UnsupportedLayer("it is not one of the activation layers this rule knows")


def _activation_name(activation) -> str:
    """The name of an activation: a Keras name, or the callable's own name."""
    return _keras_name(activation) or getattr(activation, "__name__", repr(activation))


def _split_activation(layer, context) -> tuple:
    """Splits a fused activation off `layer`: (config overrides, SmoothActivation or None)."""
    activation = getattr(layer, "activation", None)
    if _is_linear(activation):
        return {}, None
    if not is_elementwise_activation(activation):
        if context.is_output:
            # A final softmax stays part of the data loss, unsmoothed.
            return {}, None
        raise UnsupportedLayer(
            f"its activation {_activation_name(activation)!r} is not "
            "elementwise; only a model's output layer may keep a "
            "non-elementwise activation (it then stays unsmoothed)"
        )
    smoothed = SmoothActivation(
        activation,
        regularization=context.regularization,
        name=f"{layer.name}_activation",
    )
    return {"activation": "linear"}, smoothed


def _applied_weight(context: RuleContext) -> float:
    """λ where the layer's penalties are on, else 0."""
    return context.regularization if context.penalized else 0.0


def _with_extra_regularizer(existing, *penalties):
    parts = ([] if existing is None else [existing]) + list(penalties)
    return parts[0] if len(parts) == 1 else regularizers.RegularizerSum(parts)


def dense_rule(layer: keras.layers.Dense, context: RuleContext) -> Replacement:
    """Dense: (σ²/2)‖θ‖² on the kernel per position and (σ²·units/2)‖x‖² on the input.

    A Dense layer on inputs of shape `(batch, ..., features)` applies its
    kernel at every position of the middle axes (a 1×1 convolution), and
    each position's input is a variable of its own: the kernel penalty
    counts once per position, as a convolution's counts its taps. Those
    axes must then have a static size.

    A penalized Dense layer called once becomes a
    `keras_gsmooth.layers.SmoothDense`, which adds the kernel penalty as it
    applies the kernel; one called several times (or quantized) keeps it as
    its `kernel_regularizer`, paid once for all its calls.
    """
    return _with_dense_penalties(
        layer,
        context,
        lambda shape: math.prod(_position_axes(shape)),
        lambda: layer.units,
        penalty_in_call=context.calls == 1 and layer.quantization_mode is None,
    )


def einsum_dense_rule(layer: keras.layers.EinsumDense, context: RuleContext) -> Replacement:
    """EinsumDense: the penalties of Dense, with positions and units read off the equation.

    Every axis the equation sums over must belong to both the input and the
    kernel (a contraction, as in Dense); the input's other axes after the
    batch axis are positions, where one kernel entry meets one input entry
    each, and the kernel's other axes are units, where one input entry meets
    one kernel entry each. The kernel penalty (σ²/2)‖θ‖² then counts once per
    position and the input penalty (σ²·units/2)‖x‖² once per unit, exactly
    (a Dense on `(batch, ..., features)` is `"...b,bc->...c"`). Equations
    that sum an input axis the kernel does not have (a sum of inputs
    before the product) are refused when the layer is penalized.
    """

    def positions_of(shape):
        input_axes, kernel_axes = _einsum_axes(layer.equation, len(shape))
        return math.prod(_static_sizes(tuple(size for axis, size in zip(input_axes[1:], shape[1:]) if axis not in kernel_axes)))

    def units():
        input_axes, kernel_axes = _einsum_axes(layer.equation, len(context.input_shape))
        return math.prod(size for axis, size in zip(kernel_axes, layer.kernel.shape) if axis not in input_axes)

    return _with_dense_penalties(layer, context, positions_of, units)


def _with_dense_penalties(layer, context: RuleContext, positions_of, units, penalty_in_call=False) -> Replacement:
    """The layer with its activation split off and, where penalized, the Dense penalties.

    `positions_of(shape)` is the number of positions the kernel is applied
    at in a call on an input of `shape`, and `units()` the number of kernel
    entries each input entry meets; both are read only where the layer is
    penalized (they may refuse it). With `penalty_in_call`, a penalized
    layer becomes a `SmoothDense` carrying the kernel penalty.
    """
    overrides, activation = _split_activation(layer, context)
    if not context.penalized:
        return Replacement(clone_layer(layer, **overrides), None, activation)
    positions = sum(positions_of(shape) for shape in context.penalized_input_shapes)
    kernel_penalty = regularizers.DenseKernelPenalty(context.regularization * positions)
    input_penalty = regularizers.DenseInputPenalty(units(), context.regularization)
    if penalty_in_call:
        smoothed = layers.SmoothDense.from_config({**_live_config(layer, **overrides), "kernel_penalty": kernel_penalty})
    else:
        overrides["kernel_regularizer"] = _with_extra_regularizer(layer.kernel_regularizer, kernel_penalty)
        smoothed = clone_layer(layer, **overrides)
    return Replacement(smoothed, input_penalty, activation)


def _einsum_axes(equation: str, input_rank: int) -> tuple:
    """The axis labels of an EinsumDense's input and kernel, an ellipsis expanded to the input's rank.

    Raises:
        UnsupportedLayer: if the equation sums an input axis that the
            kernel does not have, or repeats a label within an operand.
    """
    input_spec, rest = equation.replace(" ", "").split(",")
    kernel_spec, output_spec = rest.split("->")
    elided = input_rank - (len(input_spec) - 3 if "..." in input_spec else len(input_spec))

    def labels(spec):
        head, ellipsis, tail = spec.partition("...")
        return (*head, *((("...", i) for i in range(elided)) if ellipsis else ()), *tail)

    input_axes, kernel_axes, output_axes = labels(input_spec), labels(kernel_spec), labels(output_spec)
    if len(set(input_axes)) < len(input_axes) or len(set(kernel_axes)) < len(kernel_axes):
        raise UnsupportedLayer(f"its equation {equation!r} repeats an axis label within an operand (a diagonal)")
    # Keras itself refuses kernel axes that are in neither the input nor the output.
    summed_input_axes = [str(axis) for axis in input_axes if axis not in kernel_axes and axis not in output_axes]
    if summed_input_axes:
        raise UnsupportedLayer(
            f"its equation {equation!r} sums input axes {summed_input_axes} that the kernel "
            "does not have; the smoothed penalties are exact when every summed axis belongs to "
            "both the input and the kernel, as in Dense (sum those axes in a layer of their own)"
        )
    return input_axes, kernel_axes


_DEPTHWISE_CONVOLUTIONS = (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)
_TRANSPOSED_CONVOLUTIONS = (keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose, keras.layers.Conv3DTranspose)


def _spatial_shape(layer: keras.layers.Layer, shape: tuple) -> tuple:
    """The spatial sizes in a convolution's input or output shape, which must be static."""
    channels_last = tuple(shape) if layer.data_format == "channels_last" else (shape[0], *shape[2:], shape[1])
    return _position_axes(channels_last)


def _position_axes(shape: tuple) -> tuple:
    """The sizes between the batch and the feature axis of a shape, which must be static."""
    return _static_sizes(tuple(shape[1:-1]))


def _static_sizes(sizes: tuple) -> tuple:
    """`sizes` of the axes a kernel is applied along; refused if one is dynamic."""
    if any(size is None for size in sizes):
        raise UnsupportedLayer(
            f"its input has a dynamic shape {sizes} along the axes its kernel is applied at; "
            "the kernel penalty counts the positions the kernel is applied at and needs a "
            "static shape (give the model's Input a full shape)"
        )
    return sizes


def _per_spatial_shape(layer: keras.layers.Layer, shapes, penalty) -> list:
    """One kernel penalty per distinct spatial shape among a convolution's calls.

    `penalty(spatial_shape, count)` makes the penalty of `count` calls on
    inputs of that shape; a layer shared between inputs of one shape gets
    one penalty.
    """
    counts = collections.Counter(_spatial_shape(layer, shape) for shape in shapes)
    return [penalty(spatial_shape, count) for spatial_shape, count in counts.items()]


def _geometry(layer: keras.layers.Layer) -> dict:
    """A convolution's strides, padding, dilation and data format, as the conv penalties take them."""
    return dict(
        strides=layer.strides,
        padding=layer.padding,
        dilation_rate=layer.dilation_rate,
        data_format=layer.data_format,
    )


def conv_rule(layer: keras.layers.Layer, context: RuleContext) -> Replacement:
    """Convolutions: kernel penalty weighted by tap counts N_i, input penalty by coverage counts.

    Serves Conv1D/2D/3D, DepthwiseConv1D/2D and Conv1D/2D/3DTranspose. Each
    input channel feeds `filters // groups` output channels of a
    convolution, `depth_multiplier` of a depthwise one (a convolution with
    one group per input channel) and `filters` of a transposed one; that
    number multiplies the input penalty. A transposed convolution counts the
    taps that land inside its output
    (`keras_gsmooth.regularizers.ConvTransposeKernelPenalty`).
    """
    overrides, activation = _split_activation(layer, context)
    input_penalty = None
    if context.penalized:
        geometry = _geometry(layer)
        kernel_penalty, input_penalty_class = regularizers.ConvKernelPenalty, regularizers.ConvInputPenalty
        if isinstance(layer, _DEPTHWISE_CONVOLUTIONS):
            kernel_argument, outputs_per_input_channel = "depthwise_regularizer", layer.depth_multiplier
        elif isinstance(layer, _TRANSPOSED_CONVOLUTIONS):
            kernel_argument, outputs_per_input_channel = "kernel_regularizer", layer.filters
            kernel_penalty = regularizers.ConvTransposeKernelPenalty
            input_penalty_class = regularizers.ConvTransposeInputPenalty
            geometry["output_padding"] = layer.output_padding
        else:
            kernel_argument, outputs_per_input_channel = "kernel_regularizer", layer.filters // layer.groups
        overrides[kernel_argument] = _with_extra_regularizer(
            getattr(layer, kernel_argument),
            *_per_spatial_shape(
                layer,
                context.penalized_input_shapes,
                lambda spatial_shape, count: kernel_penalty(spatial_shape, regularization=context.regularization * count, **geometry),
            ),
        )
        input_penalty = input_penalty_class(
            outputs_per_input_channel,
            layer.kernel_size,
            regularization=context.regularization,
            **geometry,
        )
    return Replacement(clone_layer(layer, **overrides), input_penalty, activation)


_SMOOTH_SEPARABLE_FOR = {
    keras.layers.SeparableConv1D: layers.SmoothSeparableConv1D,
    keras.layers.SeparableConv2D: layers.SmoothSeparableConv2D,
}


def separable_conv_rule(layer: keras.layers.Layer, context: RuleContext) -> Replacement:
    """SeparableConv1D/2D: the penalties of a depthwise convolution and of a 1×1 convolution after it.

    The lifted objective gets one constraint per half, with the depthwise
    output as a variable between them: the smoothing of the same network
    written as `DepthwiseConv` + `Conv(1×1)`. The depthwise half follows
    `conv_rule` (no penalty on raw data); the pointwise half's input is that
    variable, so its penalties apply in every call
    (`keras_gsmooth.layers.SmoothSeparableConv2D`).
    """
    overrides, activation = _split_activation(layer, context)
    input_penalty = None
    if context.penalized:
        geometry = _geometry(layer)
        overrides["depthwise_regularizer"] = _with_extra_regularizer(
            layer.depthwise_regularizer,
            *_per_spatial_shape(
                layer,
                context.penalized_input_shapes,
                lambda spatial_shape, count: regularizers.ConvKernelPenalty(
                    spatial_shape, regularization=context.regularization * count, **geometry
                ),
            ),
        )
        input_penalty = regularizers.ConvInputPenalty(
            layer.depth_multiplier, layer.kernel_size, regularization=context.regularization, **geometry
        )
    if context.regularization > 0:
        overrides["pointwise_regularizer"] = _with_extra_regularizer(
            layer.pointwise_regularizer,
            *_per_spatial_shape(
                layer,
                [layer.compute_output_shape(shape) for shape in context.input_shapes],
                lambda spatial_shape, count: regularizers.ConvKernelPenalty(
                    spatial_shape,
                    strides=1,
                    padding="valid",
                    dilation_rate=1,
                    data_format=layer.data_format,
                    regularization=context.regularization * count,
                ),
            ),
        )
        overrides["intermediate_regularization"] = context.regularization
    smoothed = _SMOOTH_SEPARABLE_FOR[type(layer)].from_config(_live_config(layer, **overrides))
    return Replacement(smoothed, input_penalty, activation)


def activation_rule(layer: keras.layers.Layer, context: RuleContext) -> Replacement:
    """Activation layers: h → h_σ with the variance penalty `Σ Var_σ[h](x)`."""
    identifier = activation_of_layer(layer)
    if not is_elementwise_activation(identifier):
        if context.is_output:
            return Replacement(clone_layer(layer))
        raise UnsupportedLayer(
            "its activation is not elementwise; only a model's output layer "
            "may keep a non-elementwise activation (it then stays unsmoothed)"
        )
    return Replacement(
        SmoothActivation(
            identifier,
            regularization=_applied_weight(context),
            name=layer.name,
        )
    )


def prelu_rule(layer: keras.layers.PReLU, context: RuleContext) -> Replacement:
    """PReLU → `SmoothPReLU`: the smoothed leaky relu of slope α, with a variance penalty that counts α's noise."""
    config = layer.get_config()
    config["regularization"] = _applied_weight(context)
    return Replacement(layers.SmoothPReLU.from_config(config))


def batch_normalization_rule(layer: keras.layers.BatchNormalization, context: RuleContext) -> Replacement:
    """BatchNormalization, frozen (`trainable = False`): kept as it is, a fixed affine map per channel.

    Keras runs a frozen BatchNormalization in inference mode, with its moving
    statistics: `γ·(x − mean)/√(variance + ε) + β` with nothing trainable,
    so smoothing with respect to its input adds constants only. A trainable
    one normalises with each batch's statistics, which couple the samples,
    and is refused.
    """
    if layer.trainable:
        raise UnsupportedLayer(
            "in training it normalises with each batch's statistics, which couple the samples of "
            "a batch; no closed-form smoothing is derived for that. Freeze it "
            "(`layer.trainable = False` before converting): Keras then normalises with its moving "
            "statistics, a fixed affine map that the converter keeps"
        )
    return Replacement(clone_layer(layer))


def embedding_rule(layer: keras.layers.Embedding, context: RuleContext) -> Replacement:
    """Embedding on the model's integer inputs: kept as it is, with no penalty.

    A lookup `E[i]` is a Dense without bias on the one-hot vector of `i`,
    which is raw data, so its constraint's smoothing adds a constant: the
    first-layer rule (SPEC §3). Indices computed by the model are refused:
    a lookup is not a differentiable function of its indices.
    """
    if context.penalized_calls > 0:
        raise UnsupportedLayer(
            "its indices are computed by the model, not taken from the model's inputs; "
            "a lookup is not a differentiable function of its indices, so there is nothing "
            "to smooth. Feed it the integer data directly (an Input, or preprocessing "
            "layers without trainable weights), or register a rule for Embedding"
        )
    return Replacement(clone_layer(layer))


def multiply_rule(layer: keras.layers.Multiply, context: RuleContext) -> Replacement:
    """Multiply → `SmoothMultiply`: the same product, with the variance of the product of perturbed inputs as penalty.

    Inputs that are raw data in every call are not perturbed. A product of a
    tensor with itself is refused: its factors are not independent.
    """
    config = layer.get_config()
    config["regularization"] = _applied_weight(context)
    config["perturbed"] = _perturbed_factors(context)
    return Replacement(layers.SmoothMultiply.from_config(config))


def dot_rule(layer: keras.layers.Dot, context: RuleContext) -> Replacement:
    """Dot → `SmoothDot`: the same dot product, with the summed variance of its products as penalty.

    As for Multiply, raw-data inputs are not perturbed and a dot product of
    a tensor with itself is refused; so is `normalize=True`, a cosine
    similarity, which is not a product of the inputs.
    """
    if layer.normalize:
        raise UnsupportedLayer(
            "with `normalize=True` it computes a cosine similarity, which is not a product of its "
            "inputs and has no closed-form smoothing; use `normalize=False`"
        )
    config = layer.get_config()
    config["regularization"] = _applied_weight(context)
    config["perturbed"] = _perturbed_factors(context)
    return Replacement(layers.SmoothDot.from_config(config))


def _perturbed_factors(context: RuleContext) -> list:
    """Which factors of a product are perturbed: those that are not raw data in any call."""
    if context.repeated_input:
        raise UnsupportedLayer(
            "it multiplies a tensor by itself, whose perturbations are not independent; write the "
            "power as an activation (e.g. `keras.layers.Activation(keras.ops.square)`), which is "
            "smoothed elementwise"
        )
    if context.inputs_raw is None:
        raise UnsupportedLayer(
            "its inputs are raw data in some calls and not in others, so which of them are perturbed "
            "is not one choice; use a separate layer for each kind of call"
        )
    return [not is_raw for is_raw in context.inputs_raw]


def dropout_rule(layer: keras.layers.Layer, context: RuleContext) -> Replacement:
    """Dropout(p) → identity with the penalty (p/(1−p))‖x‖² (Keras's inverted dropout).

    The penalty is the expectation of ‖noise(x) − x‖² over the layer's noise,
    a sum of one term per unit, so masks shared across positions
    (`SpatialDropout1D/2D/3D`) give the same value; `GaussianDropout(p)`
    multiplies by noise of mean 1 and variance p/(1−p), which gives it too.
    """
    penalty = None
    if context.penalized:
        penalty = regularizers.DropoutInputPenalty(layer.rate, context.regularization)
    return Replacement(InputPenalty(activity_regularizer=penalty, name=layer.name))


def additive_noise_rule(layer: keras.layers.GaussianNoise, context: RuleContext) -> Replacement:
    """GaussianNoise → identity: additive noise adds only a constant to the expected ‖noise(x) − x‖²."""
    return Replacement(keras.layers.Identity(name=layer.name))


def time_distributed_rule(layer: keras.layers.TimeDistributed, context: RuleContext) -> Replacement:
    """TimeDistributed: the wrapped layer's rule, its penalties counted once per step.

    The input of every step is a variable of the lifted objective, as the
    input of every call of a shared layer is: the wrapped layer's rule sees
    one call per step (its kernel penalty counts every step), its input
    penalty applies to every step (`TimeDistributedPenalty`), a penalty the
    smoothed layer adds when called is added step by step, and a split
    activation applies to the whole output. Elementwise replacements (a
    smoothed activation, dropout's identity) work on any shape and replace
    the wrapper itself. With λ > 0 the step axis must be static.
    """
    inner = layer.layer
    if isinstance(inner, keras.Model):
        raise UnsupportedLayer(
            f"it wraps the model {inner.name!r}, and smooth_model converts TimeDistributed "
            "around single layers only; wrap each layer of that model in TimeDistributed instead"
        )
    # Penalties count steps (a separable convolution's pointwise penalty,
    # those of raw calls too): with λ > 0 the steps must be known.
    static = context.regularization > 0
    inner_context = dataclasses.replace(
        context,
        input_shapes=_per_step_shapes(context.input_shapes, static),
        penalized_input_shapes=_per_step_shapes(context.penalized_input_shapes, static),
    )
    try:
        replacement = get_rule(inner)(inner, inner_context)
    except UnsupportedLayer as error:
        raise UnsupportedLayer(f"its layer {inner.name!r} ({type(inner).__name__}) cannot be smoothed: {error}") from None
    new_inner = replacement.layer
    if isinstance(new_inner, (SmoothActivation, InputPenalty, keras.layers.Identity)):
        new_inner.name = layer.name
        return replacement
    input_penalty = replacement.input_penalty
    if replacement.activation is not None:
        replacement.activation.name = f"{layer.name}_activation"
    return Replacement(
        keras.layers.TimeDistributed(new_inner, name=layer.name),
        None if input_penalty is None else regularizers.TimeDistributedPenalty(input_penalty),
        replacement.activation,
    )


def _per_step_shapes(shapes, static: bool) -> tuple:
    """The input shape of one step, `(batch, *rest)`, once per step of each call.

    A call on a dynamic number of steps counts once; with `static` it is
    refused (penalties count the steps).
    """
    per_step = []
    for batch, steps, *rest in shapes:
        if static:
            (steps,) = _static_sizes((steps,))
        per_step.extend([(batch, *rest)] * (steps or 1))
    return tuple(per_step)


def structural_rule(layer: keras.layers.Layer, context: RuleContext) -> Replacement:
    """Fixed linear or affine layers (pooling by averaging, reshapes, merges, upsampling, rescaling, normalization): unchanged.

    None has a trainable weight (a Normalization's statistics are fixed once
    adapted), so smoothing with respect to its input adds constants only.
    """
    return Replacement(clone_layer(layer))


_AVERAGE_POOLING_FOR = {
    keras.layers.AveragePooling1D: layers.AveragePooling1D,
    keras.layers.AveragePooling2D: layers.AveragePooling2D,
    keras.layers.AveragePooling3D: layers.AveragePooling3D,
    keras.layers.MaxPooling1D: layers.AveragePooling1D,
    keras.layers.MaxPooling2D: layers.AveragePooling2D,
    keras.layers.MaxPooling3D: layers.AveragePooling3D,
    keras.layers.GlobalMaxPooling1D: keras.layers.GlobalAveragePooling1D,
    keras.layers.GlobalMaxPooling2D: keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalMaxPooling3D: keras.layers.GlobalAveragePooling3D,
}


def average_pooling_rule(layer: keras.layers.Layer, context: RuleContext) -> Replacement:
    """Average pooling is linear and weightless: the same pooling, as `keras_gsmooth.layers.AveragePooling*D`.

    Those compute the same outputs as Keras's layers, faster around a
    smoothed activation: as a reduction on JAX, without Keras's layout copy
    on PyTorch.
    """
    return _average_pooling_like(layer)


def max_pooling_rule(layer: keras.layers.Layer, context: RuleContext) -> Replacement:
    """MaxPooling has no closed-form smoothing (paper, Note D.1): average pooling, on request."""
    if not context.replace_max_pooling:
        raise UnsupportedLayer(
            "max pooling has no closed-form Gaussian smoothing (paper, Note "
            "D.1); pass `replace_max_pooling=True` to replace it by the "
            "average pooling of the same geometry, or train the unconverted "
            "model with keras_gsmooth.montecarlo"
        )
    return _average_pooling_like(layer)


def _average_pooling_like(layer: keras.layers.Layer) -> Replacement:
    return Replacement(_AVERAGE_POOLING_FOR[type(layer)].from_config(layer.get_config()))


_RULES: dict = {}

_ALREADY_SMOOTHED = "a layer of an already smoothed model; smooth_model takes the original, unsmoothed model"

_KNOWN_UNSUPPORTED = {
    keras.layers.LayerNormalization: "normalisation is not elementwise; no closed-form smoothing is derived for it",
    keras.layers.GroupNormalization: "normalisation is not elementwise; no closed-form smoothing is derived for it",
    keras.layers.LSTM: "recurrent layers are not covered by the layer rules of SPEC §3",
    keras.layers.GRU: "recurrent layers are not covered by the layer rules of SPEC §3",
    keras.layers.SimpleRNN: "recurrent layers are not covered by the layer rules of SPEC §3",
    keras.layers.Bidirectional: "recurrent layers are not covered by the layer rules of SPEC §3",
    keras.layers.MultiHeadAttention: "attention (softmax over inputs) is not elementwise",
    keras.layers.Lambda: (
        "an arbitrary Python function, whose smoothing is not known; build it from layers "
        "that have rules, or register a rule for Lambda"
    ),
    SmoothActivation: _ALREADY_SMOOTHED,
    layers.SmoothPReLU: _ALREADY_SMOOTHED,
    layers.SmoothDense: _ALREADY_SMOOTHED,
    layers.SmoothMultiply: _ALREADY_SMOOTHED,
    layers.SmoothDot: _ALREADY_SMOOTHED,
    layers.SmoothSeparableConv1D: _ALREADY_SMOOTHED,
    layers.SmoothSeparableConv2D: _ALREADY_SMOOTHED,
    InputPenalty: _ALREADY_SMOOTHED,
}


def register_rule(layer_class: type, rule: Rule) -> None:
    """Registers (or replaces) the smoothing rule for a layer class.

    Args:
        layer_class: The exact layer class the rule handles (subclasses
            need their own registration).
        rule: A function `rule(layer, context) -> Replacement`. It must
            return a *new* layer (see `clone_layer`), never `layer` itself.

    Example:

    ```python
    class Scale(keras.layers.Layer):
        def call(self, x):
            return 2.0 * x

    def scale_rule(layer, context):
        # A weightless linear map: its smoothing adds constants only.
        return keras_gsmooth.rules.Replacement(keras_gsmooth.rules.clone_layer(layer))

    keras_gsmooth.register_rule(Scale, scale_rule)
    ```
    """
    if not (isinstance(layer_class, type) and issubclass(layer_class, keras.layers.Layer)):
        raise TypeError(
            "register_rule: `layer_class` must be a keras.layers.Layer "
            f"subclass. Received: {layer_class!r}"
        )
    if not callable(rule):
        raise TypeError(
            "register_rule: `rule` must be a callable (layer, context) -> "
            f"Replacement. Received: {rule!r}"
        )
    _RULES[layer_class] = rule


def unregister_rule(layer_class: type) -> None:
    """Removes the rule registered for `layer_class` (no error if there is none)."""
    _RULES.pop(layer_class, None)


def get_rule(layer: keras.layers.Layer) -> Rule:
    """The rule for `layer`'s exact class.

    Raises:
        UnsupportedLayer: if no rule is registered for the class.
    """
    rule = _RULES.get(type(layer))
    if rule is not None:
        return rule
    reason = _KNOWN_UNSUPPORTED.get(type(layer), "no smoothing rule is registered for this layer class")
    raise UnsupportedLayer(reason)


def _register_builtin_rules():
    builtin = {
        dense_rule: [keras.layers.Dense],
        einsum_dense_rule: [keras.layers.EinsumDense],
        separable_conv_rule: [keras.layers.SeparableConv1D, keras.layers.SeparableConv2D],
        conv_rule: [
            keras.layers.Conv1D,
            keras.layers.Conv2D,
            keras.layers.Conv3D,
            keras.layers.DepthwiseConv1D,
            keras.layers.DepthwiseConv2D,
            keras.layers.Conv1DTranspose,
            keras.layers.Conv2DTranspose,
            keras.layers.Conv3DTranspose,
        ],
        activation_rule: [
            keras.layers.Activation,
            keras.layers.ReLU,
            keras.layers.LeakyReLU,
            keras.layers.ELU,
            keras.layers.Softmax,
        ],
        prelu_rule: [keras.layers.PReLU],
        batch_normalization_rule: [keras.layers.BatchNormalization],
        multiply_rule: [keras.layers.Multiply],
        dot_rule: [keras.layers.Dot],
        embedding_rule: [keras.layers.Embedding],
        dropout_rule: [
            keras.layers.Dropout,
            keras.layers.SpatialDropout1D,
            keras.layers.SpatialDropout2D,
            keras.layers.SpatialDropout3D,
            keras.layers.GaussianDropout,
        ],
        additive_noise_rule: [keras.layers.GaussianNoise],
        time_distributed_rule: [keras.layers.TimeDistributed],
        average_pooling_rule: [keras.layers.AveragePooling1D, keras.layers.AveragePooling2D, keras.layers.AveragePooling3D],
        structural_rule: [
            layers.AveragePooling1D,
            layers.AveragePooling2D,
            layers.AveragePooling3D,
            keras.layers.GlobalAveragePooling1D,
            keras.layers.GlobalAveragePooling2D,
            keras.layers.GlobalAveragePooling3D,
            keras.layers.Flatten,
            keras.layers.Reshape,
            keras.layers.Permute,
            keras.layers.Identity,
            keras.layers.Add,
            keras.layers.Subtract,
            keras.layers.Average,
            keras.layers.Concatenate,
            keras.layers.ZeroPadding1D,
            keras.layers.ZeroPadding2D,
            keras.layers.ZeroPadding3D,
            keras.layers.Cropping1D,
            keras.layers.Cropping2D,
            keras.layers.Cropping3D,
            keras.layers.UpSampling1D,
            keras.layers.UpSampling2D,
            keras.layers.UpSampling3D,
            keras.layers.RepeatVector,
            keras.layers.Rescaling,
            keras.layers.Normalization,
        ],
        max_pooling_rule: [
            keras.layers.MaxPooling1D,
            keras.layers.MaxPooling2D,
            keras.layers.MaxPooling3D,
            keras.layers.GlobalMaxPooling1D,
            keras.layers.GlobalMaxPooling2D,
            keras.layers.GlobalMaxPooling3D,
        ],
    }
    for rule, classes in builtin.items():
        for layer_class in classes:
            _RULES[layer_class] = rule


_register_builtin_rules()
