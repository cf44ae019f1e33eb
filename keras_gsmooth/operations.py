"""Bare `keras.ops` calls in a functional model: kept, smoothed or refused.

A functional model may call `keras.ops` directly (`x + y`, `x * 0.5`,
`keras.ops.relu(x)`); its graph then holds `Operation`s that are not layers.
On raw data the converter keeps them as preprocessing, like layers without
trainable weights. On a tensor the model computes, `operation_rule` rewrites
them by the layer rules' mathematics:

- fixed linear maps of one perturbed variable (sums, differences, reshapes,
  transposes, slices, means, a product with a constant or with raw data) add
  constants only, and are kept as they are;
- the activation functions Keras ships become `SmoothActivation`s with their
  variance penalty, as the `Activation` layer does (a softmax on a model
  output stays, unsmoothed, as with layers);
- everything else (a product or quotient of two computed tensors, a matrix
  product, an elementwise function that is not a Keras activation) is
  refused, naming the layer to write instead.

Operations are recognised by Keras's own classes in `keras.src.ops.numpy`
and `keras.src.ops.nn`, matched by name, so that a class Keras moves or
renames is refused with the same message instead of failing at import.
"""

import functools
from typing import Sequence

import keras

from keras_gsmooth.rules import Replacement
from keras_gsmooth.rules import RuleContext
from keras_gsmooth.rules import UnsupportedLayer
from keras_gsmooth.rules import activation_rule
from keras_gsmooth.rules import is_elementwise_activation

_KERAS_OPERATION_MODULES = ("keras.src.ops.numpy", "keras.src.ops.nn")

# Linear in every tensor argument, and weightless.
_LINEAR = frozenset(
    {
        "Add",
        "Subtract",
        "Negative",
        "Reshape",
        "Transpose",
        "Moveaxis",
        "Swapaxes",
        "ExpandDims",
        "Squeeze",
        "Concatenate",
        "Stack",
        "GetItem",
        "Pad",
        "Tile",
        "Repeat",
        "Mean",
        "Sum",
    }
)

# Linear in the first argument when no other argument is perturbed.
_PRODUCTS = frozenset({"Multiply", "TrueDivide", "Divide"})

# The Keras activation each activation operation computes; the operation's
# configuration (a slope, an axis, ...) gives the activation's options.
_ACTIVATIONS = {
    "Relu": "relu",
    "Relu6": "relu6",
    "LeakyRelu": "leaky_relu",
    "Elu": "elu",
    "Selu": "selu",
    "Celu": "celu",
    "Gelu": "gelu",
    "Silu": "silu",
    "Sigmoid": "sigmoid",
    "HardSigmoid": "hard_sigmoid",
    "HardSilu": "hard_silu",
    "LogSigmoid": "log_sigmoid",
    "Softplus": "softplus",
    "Softsign": "softsign",
    "Tanh": "tanh",
    "Exp": "exponential",
    "Softmax": "softmax",
    "LogSoftmax": "log_softmax",
}

_WRITE_A_LAYER = (
    "Write it as a layer that has a rule (keras.layers.Multiply for a product of "
    "computed tensors, Dot for a dot or matrix product of them, Activation for an "
    "activation), or as a Layer subclass with a registered rule"
)


def keras_activation_of(operation) -> object:
    """The Keras activation an activation operation computes (with its options), else None."""
    name = _ACTIVATIONS.get(_keras_class_name(operation))
    if name is None:
        return None
    activation = getattr(keras.activations, name)
    options = {key: value for key, value in operation.get_config().items() if key != "name"}
    return functools.partial(activation, **options) if options else activation


def operation_rule(operation: keras.Operation, arguments_perturbed: Sequence[bool], context: RuleContext) -> Replacement:
    """The replacement of a bare `keras.ops` operation called on computed tensors.

    Args:
        operation: The original operation (never modified).
        arguments_perturbed: One bool per positional argument of the call:
            whether it holds a tensor the model computes (a variable of the
            lifted objective, perturbed by smoothing) rather than raw data or
            a constant.
        context: The `RuleContext` of the call, as for a layer.

    Returns:
        A `Replacement` whose layer is a clone of the operation (linear
        maps) or a `SmoothActivation` (activations).

    Raises:
        UnsupportedLayer: for any other operation.
    """
    class_name = _keras_class_name(operation)
    if class_name in _LINEAR:
        return Replacement(clone_operation(operation))
    if class_name in _PRODUCTS:
        return _product_rule(operation, class_name, arguments_perturbed)
    activation = keras_activation_of(operation)
    if activation is not None:
        if context.is_output and not is_elementwise_activation(activation):
            return Replacement(clone_operation(operation))  # a final softmax stays, unsmoothed
        return activation_rule(keras.layers.Activation(activation, name=operation.name), context)
    raise UnsupportedLayer(
        "a keras.ops operation on a tensor the model computes, with no smoothing rule; "
        "the converter keeps linear operations (+, -, reshapes, slices, means, products "
        f"with constants) and smooths Keras's activations. {_WRITE_A_LAYER}"
    )


def _product_rule(operation, class_name, arguments_perturbed):
    divides = class_name != "Multiply"
    if divides and any(arguments_perturbed[1:]):
        raise UnsupportedLayer(
            "a division by a tensor the model computes is not linear, and no smoothing of "
            f"1/x is derived. {_WRITE_A_LAYER}"
        )
    if sum(arguments_perturbed) > 1:
        raise UnsupportedLayer(
            "a product of tensors the model computes is not linear: its smoothing has a "
            f"penalty that keras.layers.Multiply's rule adds. {_WRITE_A_LAYER}"
        )
    return Replacement(clone_operation(operation))


def _keras_class_name(operation) -> str:
    operation_class = type(operation)
    if operation_class.__module__ not in _KERAS_OPERATION_MODULES:
        return ""
    return operation_class.__name__


def clone_operation(operation: keras.Operation) -> keras.Operation:
    """A new operation of the same class and configuration (for bare operations, not layers)."""
    return type(operation).from_config(operation.get_config())
