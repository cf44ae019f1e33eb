"""The per-backend code of keras-gsmooth: gradients outside `keras.Model.fit`.

`keras.ops` has no gradient operation. The algorithms that need more than
the one gradient of a standard train step (GSmoothSVRG's snapshot gradient
and full-data gradient, the Monte-Carlo estimators) take it from here. This
is the only module of the package that imports jax, tensorflow or torch,
and it imports the one of the active Keras backend only.
"""

import contextlib

import keras
from keras import tree


def _unsupported(what: str):
    return ValueError(
        f"keras_gsmooth: {what} needs the jax, tensorflow or torch Keras "
        f"backend; the current backend is {keras.backend.backend()!r}. Set "
        "KERAS_BACKEND to one of those."
    )


def value_and_grad(function, values: list, has_aux: bool = False) -> tuple:
    """Evaluates `function(values)` and its gradient with respect to `values`.

    Works eagerly and inside a compiled train step (a JAX trace, a
    `tf.function`, or PyTorch's eager step).

    Args:
        function: A function from a list of tensors to a scalar tensor (or,
            with `has_aux`, to a tuple `(scalar, aux)`), written with
            `keras.ops`.
        values: The list of tensors to differentiate with respect to.
        has_aux: Whether `function` returns `(scalar, aux)`; `aux` is
            returned as is (detached from the autograd graph on PyTorch).

    Returns:
        `(value, gradients)`, or `((value, aux), gradients)` with
        `has_aux`; `gradients` is a list aligned with `values` (zeros where
        `function` does not depend on a tensor).

    Raises:
        ValueError: on a Keras backend other than jax, tensorflow or torch.

    Example:

    ```python
    value, (gradient,) = keras_gsmooth.backend.value_and_grad(
        lambda v: keras.ops.sum(v[0] ** 2), [keras.ops.ones((3,))]
    )
    ```
    """
    backend = keras.backend.backend()
    values = list(values)
    if backend == "jax":
        import jax

        return jax.value_and_grad(function, has_aux=has_aux)(values)
    if backend == "tensorflow":
        import tensorflow as tf

        values = [tf.convert_to_tensor(value) for value in values]
        with tf.GradientTape() as tape:
            tape.watch(values)
            output = function(values)
        value = output[0] if has_aux else output
        gradients = tape.gradient(value, values)
    elif backend == "torch":
        import torch

        values = [value.detach().requires_grad_(True) for value in values]
        with torch.enable_grad():
            output = function(values)
        value = output[0] if has_aux else output
        gradients = torch.autograd.grad(value, values, allow_unused=True)
        output = tree.map_structure(lambda t: t.detach() if isinstance(t, torch.Tensor) else t, output)
    else:
        raise _unsupported("value_and_grad")
    gradients = [keras.ops.zeros_like(v) if g is None else g for v, g in zip(values, gradients)]
    return output, gradients


def variable_update_scope():
    """A context in which optimizers may update variables in place.

    PyTorch forbids in-place updates of tensors that require gradients
    outside `torch.no_grad()`; the other backends need no scope.
    """
    if keras.backend.backend() == "torch":
        import torch

        return torch.no_grad()
    return contextlib.nullcontext()


def compile_function(function):
    """Compiles a pure function of tensors for repeated eager calls.

    `jax.jit` on JAX, `tf.function` on TensorFlow; PyTorch runs it eagerly.
    Used for the full-data gradient of GSmoothSVRG's snapshot, which is
    evaluated batch after batch outside `fit`.
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.jit(function)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(function, reduce_retracing=True)
    if backend == "torch":
        return function
    raise _unsupported("compile_function")



def custom_gradient(forward, backward):
    """A function with a closed-form gradient, whose saved tensors stay saved.

    Args:
        forward: `forward(*args) -> (output, residuals)`: the output (one
            tensor) and a tuple of tensors the gradient needs.
        backward: `backward(residuals, upstream) -> gradients`: one gradient
            per argument of `forward`.

    Returns:
        A function of the same arguments as `forward` returning its output.

    On JAX this is a `jax.custom_vjp` whose residuals pass an optimization
    barrier: otherwise XLA fuses their computation into each consumer, and
    when the consumer is the transposed read of a convolution's weight
    gradient it re-derives the smoothed activation's derivatives there from
    several strided inputs, which costs more than the whole plain train
    step. Elsewhere it is `keras.ops.custom_gradient`.
    """
    if keras.backend.backend() == "jax":
        import jax

        @jax.custom_vjp
        def function(*args):
            return forward(*args)[0]

        def function_forward(*args):
            output, residuals = forward(*args)
            return jax.lax.optimization_barrier((output, residuals))

        def function_backward(residuals, upstream):
            return tuple(backward(residuals, upstream))

        function.defvjp(function_forward, function_backward)
        return function

    @keras.ops.custom_gradient
    def function(*args):
        output, residuals = forward(*args)

        def grad(*grad_args, upstream=None):
            if upstream is None:
                (upstream,) = grad_args
            return tuple(backward(residuals, upstream))

        return output, grad

    return function
