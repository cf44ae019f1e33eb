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


def closed_form_gradient(forward, backward, rematerialize: bool = False):
    """A function whose gradient is given in closed form.

    Args:
        forward: `forward(*args) -> (outputs, residuals)`: the outputs (a
            tensor or a tuple of tensors) and a tuple of tensors the
            gradient needs.
        backward: `backward(args, residuals, upstream, wanted) -> gradients`:
            one gradient per argument of `forward`, given the arguments, the
            residuals, the upstream gradient (structured like `outputs`) and
            a tuple of booleans, one per argument, saying which gradients
            are needed. Unneeded gradients may be `None`.
        rematerialize: On JAX, keep only the arguments and call `forward`
            again in the backward pass, instead of keeping the residuals.
            XLA's CPU backend then fuses the recomputed elementwise chain
            into the one loop that consumes the gradient, which beats
            writing residual tensors to memory and reading them back when
            `forward` computes several outputs (the outputs of the second
            call are dead code). Other backends always keep the residuals.

    Returns:
        A function of the same arguments as `forward` returning its outputs.

    PyTorch keeps the residuals in a `torch.autograd.Function` that computes
    only the gradients autograd asks for; TensorFlow keeps them in its
    gradient closure. On JAX kept residuals pass an optimization barrier:
    otherwise XLA fuses their computation into each consumer, and when the
    consumer is the transposed read of a convolution's weight gradient it
    re-derives them there from several strided inputs.
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        @jax.custom_vjp
        def function(*args):
            return forward(*args)[0]

        def function_forward(*args):
            if rematerialize:
                return forward(*args)[0], jax.lax.optimization_barrier((args, None))
            outputs, residuals = forward(*args)
            return jax.lax.optimization_barrier((outputs, (args, residuals)))

        def function_backward(saved, upstream):
            args, residuals = saved
            if rematerialize:
                residuals = forward(*args)[1]
            gradients = backward(args, residuals, upstream, (True,) * len(args))
            return tuple(keras.ops.zeros_like(a) if g is None else g for a, g in zip(args, gradients))

        function.defvjp(function_forward, function_backward)
        return function
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.custom_gradient
        def function(*args):
            outputs, residuals = forward(*args)

            def gradient(*upstream):
                if not isinstance(outputs, (tuple, list)):
                    (upstream,) = upstream
                return tuple(backward(args, residuals, upstream, (True,) * len(args)))

            return outputs, gradient

        return lambda *args: function(*(tf.convert_to_tensor(a) for a in args))
    if backend == "torch":
        return _torch_closed_form_gradient(forward, backward)
    raise _unsupported("closed_form_gradient")


def _torch_closed_form_gradient(forward, backward):
    import torch

    class ClosedFormGradient(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *args):
            outputs, residuals = forward(*args)
            ctx.save_for_backward(*args, *residuals)
            ctx.num_args = len(args)
            ctx.single_output = not isinstance(outputs, (tuple, list))
            return outputs

        @staticmethod
        def backward(ctx, *upstream):
            saved = ctx.saved_tensors
            args, residuals = saved[: ctx.num_args], saved[ctx.num_args :]
            if ctx.single_output:
                (upstream,) = upstream
            return tuple(backward(args, residuals, upstream, ctx.needs_input_grad))

    def function(*args):
        return ClosedFormGradient.apply(*(torch.as_tensor(a) for a in args))

    return function


def separate_fusion(x):
    """`x` as rows `(−1, last axis)` on JAX, where XLA treats it as another tensor; `x` itself elsewhere.

    Two elementwise chains that start from the same tensor share their
    intermediates after XLA's common-subexpression elimination, and XLA's
    CPU backend, which fuses no multi-output loops, then writes every shared
    intermediate to memory. Starting the second chain from this reshaped
    view keeps the chains apart, each one loop (an optimization barrier on
    `x` did not, in the optimized HLO of the paper CNN's train step). On TensorFlow and PyTorch it returns `x` itself, so callers can
    share intermediates when `separate_fusion(x) is x`.
    """
    if keras.backend.backend() == "jax":
        return keras.ops.reshape(x, (-1, x.shape[-1] if x.shape else 1))
    return x


def native_erfc():
    """The backend's own `erfc` where that is the fast choice, else None.

    PyTorch runs eagerly, and `torch.erfc` is one vectorised kernel. JAX
    and TensorFlow (with XLA) fuse elementwise chains into one loop, where
    XLA's `erfc` expansion costs more than the fitted form the activations
    use, so they get None.
    """
    if keras.backend.backend() != "torch":
        return None
    import torch

    return torch.erfc
