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

from keras_gsmooth import config


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


def closed_form_gradient(forward, backward, rematerialize: bool = False, elementwise: bool = False):
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
            call are dead code). TensorFlow keeps the residuals.
        elementwise: Whether every tensor output of `forward` is
            elementwise in the tensor arguments, or a sum over all their
            elements. On PyTorch, with
            `keras_gsmooth.config.set_fused_torch_kernels(True)`, such a
            function runs as two compiled kernels on flattened arguments,
            and its backward kernel recomputes the residuals.

    Returns:
        A function of the same arguments as `forward` returning its outputs.

    PyTorch keeps the residuals (or, with fused kernels, the arguments) in a
    `torch.autograd.Function` that computes only the gradients autograd asks
    for; TensorFlow keeps them in its gradient closure. On JAX kept residuals
    pass an optimization barrier: otherwise XLA fuses their computation into
    each consumer, and when the consumer is the transposed read of a
    convolution's weight gradient it re-derives them there from several
    strided inputs.
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
        return _torch_closed_form_gradient(forward, backward, elementwise)
    raise _unsupported("closed_form_gradient")


def _torch_closed_form_gradient(forward, backward, elementwise):
    import torch

    kernels = _FusedTorchKernels(forward, backward) if elementwise else None

    class ClosedFormGradient(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *args):
            ctx.num_args = len(args)
            ctx.fused = kernels is not None and config.fused_torch_kernels()
            if ctx.fused:
                outputs, residuals = kernels.outputs(args), ()
            else:
                outputs, residuals = forward(*args)
            ctx.save_for_backward(*args, *residuals)
            ctx.single_output = not isinstance(outputs, (tuple, list))
            return outputs

        @staticmethod
        def backward(ctx, *upstream):
            saved = ctx.saved_tensors
            args, residuals = saved[: ctx.num_args], saved[ctx.num_args :]
            if ctx.single_output:
                (upstream,) = upstream
            if ctx.fused:
                return kernels.gradients(args, upstream, ctx.needs_input_grad)
            return tuple(backward(args, residuals, upstream, ctx.needs_input_grad))

    def function(*args):
        return ClosedFormGradient.apply(*(torch.as_tensor(a) for a in args))

    return function


class _FusedTorchKernels:
    """An elementwise closed form and its gradient as two `torch.compile` kernels.

    Every tensor output of `forward` is elementwise in the tensor arguments
    or a sum over all elements, so the kernels work on flattened arguments:
    one compiled kernel, with dynamic sizes, serves every shape. The
    backward kernel recomputes the residuals from the arguments, inside
    the loop that consumes them, instead of reading them from memory.
    Kernels are compiled at their first call
    (`keras_gsmooth.config.set_fused_torch_kernels`).
    """

    def __init__(self, forward, backward):
        self._forward = forward
        self._backward = backward
        self._compiled = None

    def _kernels(self):
        if self._compiled is None:
            import torch

            def outputs(*args):
                return self._forward(*args)[0]

            def gradients(args, upstream, wanted):
                return tuple(self._backward(args, self._forward(*args)[1], upstream, wanted))

            self._compiled = (
                torch.compile(outputs, dynamic=True, fullgraph=True),
                torch.compile(gradients, dynamic=True, fullgraph=True),
            )
        return self._compiled

    def outputs(self, args):
        outputs = _run_compiled(self._kernels()[0], *_flattened(args))
        if isinstance(outputs, (tuple, list)):
            return tuple(_shaped_like(output, args[0]) for output in outputs)
        return _shaped_like(outputs, args[0])

    def gradients(self, args, upstream, wanted):
        upstream = _flattened(upstream) if isinstance(upstream, (tuple, list)) else upstream.reshape(-1)
        gradients = _run_compiled(self._kernels()[1], _flattened(args), upstream, tuple(wanted))
        return tuple(None if g is None else g.reshape(a.shape) for g, a in zip(gradients, args))


def _flattened(tensors):
    return tuple(t.reshape(-1) if t.ndim > 0 else t for t in tensors)


def _shaped_like(output, like):
    return output.reshape(like.shape) if output.ndim > 0 else output


def _run_compiled(kernel, *args):
    try:
        return kernel(*args)
    except Exception as error:
        if not type(error).__module__.startswith(("torch._dynamo", "torch._inductor")):
            raise
        summary = " ".join(str(error).split())
        raise RuntimeError(
            "keras_gsmooth: compiling the fused PyTorch kernels of a smoothed "
            f"activation with torch.compile failed ({type(error).__name__}: "
            f"{summary[:300]}{'…' if len(summary) > 300 else ''}). They need what "
            "torch.compile needs (a working C++ compiler on a CPU, Triton on a "
            "GPU). Install it, or use the eager kernels: "
            "keras_gsmooth.config.set_fused_torch_kernels(False)."
        ) from error


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

    if torch.compiler.is_compiling():
        # Inside a fused kernel (`_FusedTorchKernels`) the fitted form
        # vectorises; TorchInductor's erfc does not.
        return None
    return torch.erfc
